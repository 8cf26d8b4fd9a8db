package chcompat_test

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/takt/takt/internal/chcompat"
	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/testenv"
)

// notChecked are the Store methods the workload need not reach: they send
// no statement (Close, Ping, Database, Cluster, the record-area registry, the
// query limits: the reads go through them), or run whatever their caller
// wrote (Exec: tools' and tests' own statements).
var notChecked = []string{"Close", "Ping", "Database", "Cluster", "Areas", "WithAreas", "WithLimits", "Exec"}

// runWorkload runs the workload (thorough or not, see Workload) on a
// scratch database of the reference server with cur as the engine under
// test, and fails t with every problem the checker found and every Store
// method the workload missed.
func runWorkload(t *testing.T, cur chcompat.Engine, curDB string, cfg chstore.Config, ref *chcompat.HTTP, thorough bool) *chcompat.Checker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	server := &chcompat.HTTP{URL: ref.URL} // the database is created by Open
	tz, err := server.Query(ctx, "SELECT timezone()", nil)
	if err != nil {
		t.Fatalf("reference server over HTTP: %v", err)
	}
	c := chcompat.NewChecker(ref, cur, strings.TrimSpace(tz), cfg.Database, curDB)
	cfg.Recorder = c
	s, err := chstore.Open(ctx, cfg, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	w := chcompat.Workload{Store: s, Both: c.Both, Thorough: thorough}
	if err := w.Run(ctx); err != nil {
		t.Fatalf("workload: %v", err)
	}
	for _, p := range c.Problems() {
		t.Errorf("%s", p)
	}
	var missed []string
	seen := c.Methods()
	st := reflect.TypeFor[*chstore.Store]()
	for i := range st.NumMethod() {
		m := st.Method(i).Name
		if !slices.Contains(seen, m) && !slices.Contains(notChecked, m) {
			missed = append(missed, m)
		}
	}
	if len(missed) > 0 {
		t.Errorf("the workload sends no statement through these Store methods: make Workload call them (or, for one that sends none, list it in notChecked): %v", missed)
	}
	return c
}

// summary describes what a check covered.
func summary(c *chcompat.Checker) string {
	var reads, withRows, writes, runs int
	for _, sh := range c.Shapes() {
		runs += sh.Runs
		if sh.Kind == chstore.StatementQuery {
			reads++
			if sh.Rows > 0 {
				withRows++
			}
		} else {
			writes++
		}
	}
	return fmt.Sprintf("%d statements in %d shapes (%d reads, %d of them answering rows; %d writes and DDL) through %d Store methods",
		runs, reads+writes, reads, withRows, writes, len(c.Methods()))
}
