package chstore_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/takt/takt/internal/chstore"
)

var (
	createTable = regexp.MustCompile(`(?is)^\s*CREATE\s+TABLE\s+IF\s+NOT\s+EXISTS\s+(\w+)`)
	createView  = regexp.MustCompile(`(?is)^\s*CREATE\s+MATERIALIZED\s+VIEW`)
)

// TestClusterStatementsOfEveryMigration: in cluster mode every table every
// migration creates is replicated, ON CLUSTER, in the database, with its
// own ZooKeeper path; every view is created ON CLUSTER reading the
// database's tables; ALTERs and INSERTs run as written on the connected
// replica (replication carries them). A migration added later
// with a shape the rewrite does not know fails here.
func TestClusterStatementsOfEveryMigration(t *testing.T) {
	ms, err := chstore.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	tables, views, alters := 0, 0, 0
	paths := map[string]string{}
	for _, m := range ms {
		for i, st := range m.Statements {
			out, err := chstore.ClusterStatement(st, "plant", "takt")
			if err != nil {
				t.Errorf("migration %04d_%s statement %d: %v", m.Version, m.Name, i+1, err)
				continue
			}
			upper := strings.ToUpper(strings.TrimSpace(st))
			switch {
			case createTable.MatchString(st):
				tables++
				name := createTable.FindStringSubmatch(st)[1]
				path := chstore.ZooKeeperPath("plant", name)
				wantHead := "CREATE TABLE IF NOT EXISTS `plant`.`" + name + "` ON CLUSTER `takt` ("
				if !strings.Contains(out, wantHead) {
					t.Errorf("table %s: %q lacks %q", name, out, wantHead)
				}
				if !regexp.MustCompile(`ENGINE = Replicated\w*MergeTree\('` + regexp.QuoteMeta(path) + `', '\{replica\}'`).MatchString(out) {
					t.Errorf("table %s: not replicated at %s: %s", name, path, out)
				}
				if strings.Count(out, "MergeTree(") != 1 {
					t.Errorf("table %s: one engine clause expected: %s", name, out)
				}
				if prev, ok := paths[path]; ok {
					t.Errorf("tables %s and %s share the ZooKeeper path %s", prev, name, path)
				}
				paths[path] = name
			case createView.MatchString(st):
				views++
				if !strings.Contains(out, "ON CLUSTER `takt` TO `plant`.") || !strings.Contains(out, "FROM `plant`.") {
					t.Errorf("view: not on the cluster or reading unqualified tables: %s", out)
				}
			case strings.HasPrefix(upper, "ALTER TABLE"), strings.HasPrefix(upper, "INSERT INTO"):
				if strings.HasPrefix(upper, "ALTER") {
					alters++
				}
				if out != st {
					t.Errorf("changed: %s", out)
				}
			}
		}
	}
	if tables < 20 || views < 3 || alters < 10 {
		t.Fatalf("found %d tables, %d views, %d alters: the migrations were not all read", tables, views, alters)
	}
}

// TestClusterStatementRefuses: shapes with no replicated form are errors,
// never a table that silently lives on one replica.
func TestClusterStatementRefuses(t *testing.T) {
	for _, st := range []string{
		"CREATE TABLE IF NOT EXISTS q (a UInt8) ENGINE = Memory",
		"CREATE TABLE IF NOT EXISTS q (a UInt8) ENGINE = Kafka('b', 't', 'g', 'JSONEachRow')",
		"CREATE TABLE q (a UInt8) ENGINE = MergeTree() ORDER BY a",
		"CREATE MATERIALIZED VIEW IF NOT EXISTS v AS SELECT 1",
		"DROP TABLE parts",
		"RENAME TABLE a TO b",
	} {
		if out, err := chstore.ClusterStatement(st, "plant", "takt"); err == nil {
			t.Errorf("%q: rewritten to %q, want an error", st, out)
		}
	}
}

// TestClusterStatementEngineArguments: the engine's own arguments follow
// the path and replica name.
func TestClusterStatementEngineArguments(t *testing.T) {
	for st, want := range map[string]string{
		"CREATE TABLE IF NOT EXISTS a (v UInt64) ENGINE = ReplacingMergeTree(v) ORDER BY v":              "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/plant/a', '{replica}', v) ORDER BY v",
		"CREATE TABLE IF NOT EXISTS b (v UInt64) ENGINE = MergeTree() ORDER BY v":                        "ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/plant/b', '{replica}') ORDER BY v",
		"CREATE TABLE IF NOT EXISTS c (v UInt64)\nENGINE=SummingMergeTree ( ) PARTITION BY v ORDER BY v": "ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/plant/c', '{replica}') PARTITION BY v ORDER BY v",
	} {
		out, err := chstore.ClusterStatement(st, "plant", "takt")
		if err != nil || !strings.HasSuffix(out, want) {
			t.Errorf("%q:\n got %q (%v)\nwant suffix %q", st, out, err, want)
		}
	}
}
