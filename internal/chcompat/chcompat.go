// Package chcompat checks that Takt's ClickHouse statements mean the same
// on a current ClickHouse as on the reference server (18.16, the local
// stack's).
//
// A Checker is a chstore.Recorder: a Store opened on the reference server
// with the Checker as its recorder runs as usual, and the Checker repeats
// each statement it sent on the current engine. Writes (DDL, inserts) are
// applied there too, so both hold the same data; every read runs on both
// (as text, TabSeparated) and the two answers must be equal. The
// statements are the Store's own, recorded as sent, so the check follows
// every change to chstore's SQL without a copy of it.
//
// The current engine is ClickHouse as a library (chDB, behind the chdb
// build tag, see chdb.go); Workload drives every statement shape the
// services send through a Store.
package chcompat

import (
	"context"
	"fmt"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/takt/takt/internal/chstore"
)

// Engine runs statements given as text. Settings are per-query settings
// with integer values.
type Engine interface {
	Exec(ctx context.Context, sql string, settings map[string]any) error
	// Query returns the answer in the TabSeparated format.
	Query(ctx context.Context, sql string, settings map[string]any) (string, error)
}

// settler is an engine that applies mutations (ALTER ... UPDATE/DELETE)
// in the background: Settle waits until it has.
type settler interface {
	Settle(ctx context.Context) error
}

// Shape is one statement text (placeholders unbound) and what the check
// saw of it.
type Shape struct {
	Kind  chstore.StatementKind
	Query string
	// Runs counts the statements of this shape; Rows the largest answer
	// (rows) of a read of it on the reference server.
	Runs, Rows int
}

// Problem is a statement the current engine failed, or answered unlike
// the reference server.
type Problem struct {
	Query string // as the Store wrote it
	SQL   string // with its values
	// Err is the current engine's error; without it, Diff says how the
	// answers differ.
	Err  error
	Diff string
}

func (p Problem) String() string {
	what := p.Diff
	if p.Err != nil {
		what = p.Err.Error()
	}
	return fmt.Sprintf("%s\n  statement: %s", what, clip(p.SQL, 2000))
}

// Checker repeats a Store's statements on the current engine. It is safe
// for concurrent use; statements are repeated one at a time.
type Checker struct {
	ref, cur Engine
	tz       string // the reference server's time zone

	mu       sync.Mutex
	shapes   map[string]*Shape
	methods  map[string]int // Store methods that sent statements
	problems []Problem
	// rename maps the reference database's name to the current one's in
	// statements that name it (parts inserts do).
	rename *strings.Replacer
}

// NewChecker compares reads of ref, the reference server the Store talks
// to, with cur, which receives the Store's writes too. refTZ is ref's time
// zone (SELECT timezone()); refDB and curDB the databases, when their names
// differ.
func NewChecker(ref, cur Engine, refTZ, refDB, curDB string) *Checker {
	c := &Checker{ref: ref, cur: cur, tz: refTZ, shapes: map[string]*Shape{}, methods: map[string]int{}}
	if refDB != curDB {
		c.rename = strings.NewReplacer("`"+refDB+"`.", "`"+curDB+"`.")
	}
	return c
}

var mutation = regexp.MustCompile(`(?is)^\s*ALTER\s+TABLE\s.*\s(UPDATE|DELETE)\s`)

// Record implements chstore.Recorder.
func (c *Checker) Record(ctx context.Context, st chstore.Statement) {
	c.mu.Lock()
	defer c.mu.Unlock()
	sh := c.shapes[st.Query]
	if sh == nil {
		sh = &Shape{Kind: st.Kind, Query: st.Query}
		c.shapes[st.Query] = sh
	}
	sh.Runs++
	c.noteMethods()
	sql, err := st.SQL(c.tz)
	if err == nil && c.rename != nil {
		sql = c.rename.Replace(sql)
	}
	switch {
	case st.Err != nil:
		c.problem(st, sql, fmt.Errorf("failed on the reference server too: %w", st.Err), "")
	case err != nil:
		c.problem(st, sql, fmt.Errorf("write the statement as text: %w", err), "")
	case st.Kind == chstore.StatementQuery:
		c.compare(ctx, st, sh, sql)
	default:
		if err := c.cur.Exec(ctx, sql, st.Settings); err != nil {
			c.problem(st, sql, err, "")
			return
		}
		if mutation.MatchString(st.Query) {
			if err := c.settle(ctx); err != nil {
				c.problem(st, sql, fmt.Errorf("wait for the mutation: %w", err), "")
			}
		}
	}
}

func (c *Checker) compare(ctx context.Context, st chstore.Statement, sh *Shape, sql string) {
	// Both engines at once: they are separate processes, or the reference
	// is one and the current engine runs in this one.
	var want string
	var refErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		want, refErr = c.ref.Query(ctx, sql, st.Settings)
	}()
	got, err := c.cur.Query(ctx, sql, st.Settings)
	<-done
	if refErr != nil {
		c.problem(st, sql, fmt.Errorf("reference server, as text: %w", refErr), "")
		return
	}
	if err != nil {
		c.problem(st, sql, err, "")
		return
	}
	sh.Rows = max(sh.Rows, strings.Count(want, "\n"))
	if d := DiffTSV(want, got, OrderedAnswer(sql)); d != "" {
		c.problem(st, sql, nil, d)
	}
}

func (c *Checker) problem(st chstore.Statement, sql string, err error, diff string) {
	if sql == "" {
		sql = st.Query
	}
	c.problems = append(c.problems, Problem{Query: st.Query, SQL: sql, Err: err, Diff: diff})
}

// settle waits until both engines applied their mutations.
func (c *Checker) settle(ctx context.Context) error {
	for _, e := range []Engine{c.ref, c.cur} {
		if s, ok := e.(settler); ok {
			if err := s.Settle(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// storeMethod is how the names of the Store's methods start in a stack.
var storeMethod = reflect.TypeFor[chstore.Store]().PkgPath() + ".(*Store)."

// noteMethods counts the exported Store methods on the caller's stack:
// the ones whose statements are being checked.
func (c *Checker) noteMethods() {
	pcs := make([]uintptr, 64)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(3, pcs)])
	for {
		f, more := frames.Next()
		if name, ok := strings.CutPrefix(f.Function, storeMethod); ok {
			name, _, _ = strings.Cut(name, ".")
			if name != "" && name[0] >= 'A' && name[0] <= 'Z' {
				c.methods[name]++
			}
		}
		if !more {
			return
		}
	}
}

// Methods returns the exported Store methods that sent the statements
// checked so far, directly or through another method.
func (c *Checker) Methods() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.methods))
	for m := range c.methods {
		out = append(out, m)
	}
	slices.Sort(out)
	return out
}

// Both runs a statement that is not the Store's (test set-up) on both
// engines, and waits for a mutation to be applied on both.
func (c *Checker) Both(ctx context.Context, sql string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.ref.Exec(ctx, sql, nil); err != nil {
		return fmt.Errorf("reference server: %w", err)
	}
	if err := c.cur.Exec(ctx, sql, nil); err != nil {
		return fmt.Errorf("current engine: %w", err)
	}
	return c.settle(ctx)
}

// Shapes returns the statement shapes seen so far, by kind and text.
func (c *Checker) Shapes() []Shape {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Shape, 0, len(c.shapes))
	for _, s := range c.shapes {
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b Shape) int {
		if a.Kind != b.Kind {
			return int(a.Kind) - int(b.Kind)
		}
		return strings.Compare(a.Query, b.Query)
	})
	return out
}

// Problems returns the problems found so far.
func (c *Checker) Problems() []Problem {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.problems)
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + fmt.Sprintf("… (%d bytes)", len(s))
}
