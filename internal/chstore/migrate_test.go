package chstore_test

import (
	"context"
	"strings"
	"testing"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/testenv"
)

// TestMigrateTwiceAndAfterCutOff: migrating an up-to-date database changes
// nothing, and every ADD COLUMN statement run again (as after a crash
// between an ALTER and its record) is recognised as already applied.
func TestMigrateTwiceAndAfterCutOff(t *testing.T) {
	s, _ := testenv.ClickHouse(t)
	ctx := context.Background()
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("second migrate: %v", err)
	}
	ms, err := chstore.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	n, err := s.QueryUint64(ctx, "SELECT uniqExact(version) FROM schema_migrations")
	if err != nil || n != uint64(len(ms)) {
		t.Fatalf("schema_migrations has %d versions (%v), want %d", n, err, len(ms))
	}
	adds := 0
	for _, m := range ms {
		for _, st := range m.Statements {
			if !strings.Contains(strings.ToUpper(st), "ADD COLUMN") {
				continue
			}
			adds++
			err := s.Exec(ctx, st)
			if err == nil || !chstore.AlreadyApplied(err) {
				t.Errorf("migration %d: re-running %q: %v; want an already-applied error", m.Version, st, err)
			}
		}
	}
	if adds == 0 {
		t.Fatal("no ADD COLUMN statement among the migrations: this test checks nothing")
	}
}
