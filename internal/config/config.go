// Package config reads Takt's settings from environment variables.
//
// Every variable has the prefix TAKT_ and a default that works with the local
// stack. An Env collects every problem it meets so that Validate-style callers
// can report all of them at once instead of one per start attempt.
package config

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Prefix is the prefix of every Takt environment variable.
const Prefix = "TAKT_"

// Env reads typed values from the environment and remembers parse errors.
// The zero value reads os.Getenv.
type Env struct {
	// Lookup replaces os.LookupEnv (tests).
	Lookup func(string) (string, bool)
	errs   []error
}

func (e *Env) lookup(name string) (string, bool) {
	if e.Lookup != nil {
		return e.Lookup(Prefix + name)
	}
	return os.LookupEnv(Prefix + name)
}

// String returns TAKT_<name>, or def when unset or empty.
func (e *Env) String(name, def string) string {
	if v, ok := e.lookup(name); ok && v != "" {
		return v
	}
	return def
}

// List returns TAKT_<name> split on commas, or def.
func (e *Env) List(name string, def []string) []string {
	v, ok := e.lookup(name)
	if !ok || strings.TrimSpace(v) == "" {
		return def
	}
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// Int returns TAKT_<name> as an int, or def.
func (e *Env) Int(name string, def int) int {
	v, ok := e.lookup(name)
	if !ok || v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s%s=%q: not an integer", Prefix, name, v))
		return def
	}
	return n
}

// Float returns TAKT_<name> as a float64, or def.
func (e *Env) Float(name string, def float64) float64 {
	v, ok := e.lookup(name)
	if !ok || v == "" {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s%s=%q: not a number", Prefix, name, v))
		return def
	}
	return f
}

// Bool returns TAKT_<name> as a bool, or def.
func (e *Env) Bool(name string, def bool) bool {
	v, ok := e.lookup(name)
	if !ok || v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s%s=%q: not a boolean", Prefix, name, v))
		return def
	}
	return b
}

// Duration returns TAKT_<name> as a time.Duration ("250ms", "2s"), or def.
func (e *Env) Duration(name string, def time.Duration) time.Duration {
	v, ok := e.lookup(name)
	if !ok || v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s%s=%q: not a duration (e.g. 500ms, 2s)", Prefix, name, v))
		return def
	}
	return d
}

// Err returns every parse error met so far, joined, or nil.
func (e *Env) Err() error { return errors.Join(e.errs...) }

// Problems collects validation problems; Err joins them.
type Problems []error

// Addf records a problem when cond is true.
func (p *Problems) Addf(cond bool, format string, args ...any) {
	if cond {
		*p = append(*p, fmt.Errorf(format, args...))
	}
}

// Err returns all problems joined, or nil.
func (p Problems) Err() error { return errors.Join(p...) }
