//go:build chdb

package chcompat_test

import (
	"testing"

	"github.com/takt/takt/internal/chcompat"
	"github.com/takt/takt/internal/testenv"
)

// TestModernClickHouse runs every statement shape of the services on the
// reference server and on current ClickHouse (chDB), and fails on any
// statement the current engine refuses or answers differently.
func TestModernClickHouse(t *testing.T) {
	cfg := testenv.ClickHouseConfig(t)
	e := testenv.Stack(t)
	cur, err := chcompat.OpenChdb(cfg.Database)
	if err != nil {
		t.Fatal(err)
	}
	defer cur.Close()
	version, err := cur.Version()
	if err != nil {
		t.Fatal(err)
	}
	ref := &chcompat.HTTP{URL: e.ClickHouseHTTP, Database: cfg.Database}
	c := runWorkload(t, cur, cfg.Database, cfg, ref, true)
	t.Logf("ClickHouse %s (chDB) against the reference server: %s", version, summary(c))
}
