//go:build chdb

package chcompat_test

import (
	"context"
	"strings"
	"testing"

	"github.com/takt/takt/internal/chcompat"
	"github.com/takt/takt/internal/chstore"
)

// TestClusterStatementsOnModern: the statements cluster mode sends (every
// migration rewritten for a cluster, the database ON CLUSTER, the sync
// before a resume read) are valid SQL for current ClickHouse. chDB hosts no
// cluster and no ZooKeeper, so they are parsed there (formatQuery), not
// run; make test-cluster runs them on 18.16 replicas.
func TestClusterStatementsOnModern(t *testing.T) {
	cur, err := chcompat.OpenChdb("takt_cluster_parse")
	if err != nil {
		t.Fatal(err)
	}
	defer cur.Close()
	stmts := []string{
		"CREATE DATABASE IF NOT EXISTS `plant` ON CLUSTER `takt`",
		"SYSTEM SYNC REPLICA `plant`.`parts`",
		"DROP DATABASE IF EXISTS `plant` ON CLUSTER `takt`",
	}
	ms, err := chstore.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		for _, st := range m.Statements {
			out, err := chstore.ClusterStatement(st, "plant", "takt")
			if err != nil {
				t.Fatalf("migration %04d: %v", m.Version, err)
			}
			stmts = append(stmts, out)
		}
	}
	quote := strings.NewReplacer(`\`, `\\`, `'`, `\'`)
	for _, st := range stmts {
		if _, err := cur.Query(context.Background(), "SELECT formatQuery('"+quote.Replace(st)+"')", nil); err != nil {
			t.Errorf("current ClickHouse does not parse %q: %v", st, err)
		}
	}
	t.Logf("%d cluster-mode statements parsed", len(stmts))
}
