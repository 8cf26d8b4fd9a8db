package config

import (
	"strings"
	"testing"
	"time"
)

func env(vars map[string]string) *Env {
	return &Env{Lookup: func(k string) (string, bool) { v, ok := vars[k]; return v, ok }}
}

func TestEnvValuesAndDefaults(t *testing.T) {
	e := env(map[string]string{
		"TAKT_S": "x", "TAKT_EMPTY": "", "TAKT_L": " a, ,b ", "TAKT_I": "42", "TAKT_F": "0.5",
		"TAKT_B": "true", "TAKT_D": "250ms",
	})
	if got := e.String("S", "d"); got != "x" {
		t.Errorf("String = %q", got)
	}
	if got := e.String("EMPTY", "d"); got != "d" {
		t.Errorf("empty String = %q, want the default", got)
	}
	if got := e.String("UNSET", "d"); got != "d" {
		t.Errorf("unset String = %q", got)
	}
	if got := e.List("L", nil); strings.Join(got, "|") != "a|b" {
		t.Errorf("List = %q", got)
	}
	if got := e.List("UNSET", []string{"z"}); len(got) != 1 || got[0] != "z" {
		t.Errorf("unset List = %q", got)
	}
	if e.Int("I", 0) != 42 || e.Float("F", 0) != 0.5 || !e.Bool("B", false) || e.Duration("D", 0) != 250*time.Millisecond {
		t.Error("typed values not read")
	}
	if e.Int("UNSET", 7) != 7 || e.Duration("UNSET", time.Second) != time.Second {
		t.Error("typed defaults not used")
	}
	if err := e.Err(); err != nil {
		t.Errorf("Err = %v", err)
	}
}

// TestEnvReportsEveryProblem: a bad value keeps the default and every bad
// variable is named in one error.
func TestEnvReportsEveryProblem(t *testing.T) {
	e := env(map[string]string{"TAKT_I": "x", "TAKT_F": "y", "TAKT_B": "maybe", "TAKT_D": "5"})
	if e.Int("I", 1) != 1 || e.Float("F", 2) != 2 || e.Bool("B", true) != true || e.Duration("D", time.Second) != time.Second {
		t.Error("a bad value must leave the default")
	}
	err := e.Err()
	if err == nil {
		t.Fatal("want an error")
	}
	for _, name := range []string{"TAKT_I", "TAKT_F", "TAKT_B", "TAKT_D"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s: %v", name, err)
		}
	}
}

func TestProblems(t *testing.T) {
	var p Problems
	p.Addf(false, "not added")
	if p.Err() != nil {
		t.Fatal("no problems, want nil")
	}
	p.Addf(true, "a %d", 1)
	p.Addf(true, "b")
	if err := p.Err(); err == nil || !strings.Contains(err.Error(), "a 1") || !strings.Contains(err.Error(), "b") {
		t.Fatalf("Err = %v", err)
	}
}

func TestLogger(t *testing.T) {
	var b strings.Builder
	l, err := Logger(env(map[string]string{"TAKT_LOG_FORMAT": "text", "TAKT_LOG_LEVEL": "warn"}), &b)
	if err != nil {
		t.Fatal(err)
	}
	l.Info("hidden")
	l.Warn("shown", "k", "v")
	if got := b.String(); strings.Contains(got, "hidden") || !strings.Contains(got, "level=WARN msg=shown k=v") {
		t.Errorf("text logger at warn wrote %q", got)
	}
	b.Reset()
	l, err = Logger(env(nil), &b)
	if err != nil {
		t.Fatal(err)
	}
	l.Info("x")
	if !strings.HasPrefix(b.String(), `{"time":`) {
		t.Errorf("default logger is not JSON: %q", b.String())
	}
	_, err = Logger(env(map[string]string{"TAKT_LOG_FORMAT": "xml", "TAKT_LOG_LEVEL": "loud"}), &b)
	if err == nil || !strings.Contains(err.Error(), "TAKT_LOG_FORMAT") || !strings.Contains(err.Error(), "TAKT_LOG_LEVEL") {
		t.Errorf("bad settings: %v", err)
	}
}
