//go:build takt_chaos

package chaos

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var full = flag.Bool("chaos.full", false, "run the full matrix (as make chaos does) instead of the short one")

// TestChaos runs the fault matrix on a deployment of its own: the short
// matrix by default (CI: `go test -tags takt_chaos ./loadtest/chaos/`,
// a few minutes), the full one with -chaos.full. Every fault must lose,
// double and wrongly store nothing, with the rollups and the parts area in
// agreement and the fault's own checks holding. The build tag keeps it out
// of `go test ./...`: it starts a ClickHouse, a Redis and a broker of its
// own and loads the machine for minutes.
func TestChaos(t *testing.T) {
	cfg := DefaultConfig(!*full)
	cfg.Dir = filepath.Join(t.TempDir(), "chaos")
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Minute)
	defer cancel()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	rep, err := Run(ctx, cfg, logger)
	if rep != nil {
		var b strings.Builder
		rep.Markdown(&b)
		t.Log("\n" + b.String())
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != len(Faults()) {
		t.Fatalf("%d faults run, want %d", len(rep.Results), len(Faults()))
	}
	for _, r := range rep.Results {
		if !r.OK() {
			t.Errorf("%s: sent %d, acked %d, lost %d, doubled %d, refused stored %d, foreign %d; parts area %+v; rollups %+v; recovered %v; checks %+v; error %q",
				r.Fault, r.Sent, r.Acked, r.Lost, r.Doubled, r.RejectedStored, r.Foreign, r.API, r.Rollup, r.Recovered, r.Checks, r.Err)
		}
	}
}
