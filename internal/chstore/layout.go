package chstore

// How the migrations become DDL on a replicated cluster. There is one set of
// migration files, written for a single server (plain MergeTree engines,
// unqualified names). With TAKT_CLICKHOUSE_CLUSTER set, every statement is
// rewritten here before it is sent, so a migration added later is covered
// without knowing about clusters:
//
//   - CREATE TABLE IF NOT EXISTS t (...) ENGINE = XMergeTree(args) becomes
//     CREATE TABLE IF NOT EXISTS db.t ON CLUSTER c (...) ENGINE =
//     ReplicatedXMergeTree('/clickhouse/tables/{shard}/db/t', '{replica}',
//     args). The database is in the ZooKeeper path, so that several Takt
//     databases (and the tests' scratch databases) share one cluster.
//   - CREATE MATERIALIZED VIEW IF NOT EXISTS v TO t AS SELECT ... FROM s
//     gets ON CLUSTER, and v, t and s their database: a statement run by
//     another host's DDL worker does not run in this session's database.
//   - ALTER TABLE t ... runs as it is, on the connected replica: every
//     table is replicated, and a replicated table's ALTER (columns through
//     its metadata in ZooKeeper, UPDATE and DELETE as mutations) reaches
//     every replica. Not ON CLUSTER: on 18.16 the replicas' DDL workers
//     race for such a task ("Node exists" on its executed node), and the
//     worker that loses stops taking tasks.
//   - INSERT ... SELECT runs on the connected replica only: the rows
//     replicate like every insert's.
//
// Any other shape (another engine, a CREATE without IF NOT EXISTS, a DROP)
// is refused in cluster mode, so a migration the rewrite does not
// understand fails its test instead of creating a table that is not
// replicated.

import (
	"fmt"
	"regexp"
	"strings"
)

// clusterName is what TAKT_CLICKHOUSE_CLUSTER may hold: the name of a
// cluster in the servers' <remote_servers>.
var clusterName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

var (
	reCreateTable = regexp.MustCompile(`(?is)^\s*CREATE\s+TABLE\s+IF\s+NOT\s+EXISTS\s+([A-Za-z_][A-Za-z0-9_]*)\s*\(`)
	reEngine      = regexp.MustCompile(`(?is)\bENGINE\s*=\s*([A-Za-z]*MergeTree)\s*\(([^)]*)\)`)
	reAnyEngine   = regexp.MustCompile(`(?is)\bENGINE\s*=\s*([A-Za-z]+)`)
	reCreateView  = regexp.MustCompile(`(?is)^\s*CREATE\s+MATERIALIZED\s+VIEW\s+IF\s+NOT\s+EXISTS\s+([A-Za-z_][A-Za-z0-9_]*)\s+TO\s+([A-Za-z_][A-Za-z0-9_]*)\s+AS\s+`)
	reViewSource  = regexp.MustCompile(`(?i)\b(FROM|JOIN)\s+([A-Za-z_][A-Za-z0-9_]*)\b`)
	reAlter       = regexp.MustCompile(`(?is)^\s*ALTER\s+TABLE\s+([A-Za-z_][A-Za-z0-9_]*)\s+`)
	reInsert      = regexp.MustCompile(`(?is)^\s*INSERT\s+INTO\s+`)
)

// replicatedEngines are the MergeTree engines that have a Replicated twin.
var replicatedEngines = map[string]bool{
	"MergeTree": true, "ReplacingMergeTree": true, "SummingMergeTree": true, "AggregatingMergeTree": true,
	"CollapsingMergeTree": true, "VersionedCollapsingMergeTree": true,
}

// ZooKeeperPath is where the replicated table of db lives in ZooKeeper;
// {shard} is each server's macro.
func ZooKeeperPath(db, table string) string {
	return "/clickhouse/tables/{shard}/" + db + "/" + table
}

// ClusterStatement rewrites one migration statement for the cluster named
// cluster, the tables living in db. See the top of this file for the
// rules; a statement of another shape is an error.
func ClusterStatement(stmt, db, cluster string) (string, error) {
	qdb := quoteIdent(db)
	on := " ON CLUSTER " + quoteIdent(cluster)
	switch {
	case reCreateTable.MatchString(stmt):
		m := reCreateTable.FindStringSubmatchIndex(stmt)
		table := stmt[m[2]:m[3]]
		out := stmt[:m[0]] + "CREATE TABLE IF NOT EXISTS " + qdb + "." + quoteIdent(table) + on + " (" + stmt[m[1]:]
		e := reEngine.FindStringSubmatchIndex(out)
		if e == nil {
			name := "none"
			if a := reAnyEngine.FindStringSubmatch(out); a != nil {
				name = a[1]
			}
			return "", fmt.Errorf("table %s: engine %s has no replicated form (only the MergeTree family replicates)", table, name)
		}
		engine, args := out[e[2]:e[3]], strings.TrimSpace(out[e[4]:e[5]])
		if !replicatedEngines[engine] {
			return "", fmt.Errorf("table %s: engine %s has no replicated form", table, engine)
		}
		repl := "ENGINE = Replicated" + engine + "(" + quote(ZooKeeperPath(db, table)) + ", '{replica}'"
		if args != "" {
			repl += ", " + args
		}
		return out[:e[0]] + repl + ")" + out[e[1]:], nil
	case reCreateView.MatchString(stmt):
		m := reCreateView.FindStringSubmatchIndex(stmt)
		view, to := stmt[m[2]:m[3]], stmt[m[4]:m[5]]
		sel := reViewSource.ReplaceAllStringFunc(stmt[m[1]:], func(s string) string {
			sm := reViewSource.FindStringSubmatch(s)
			return sm[1] + " " + qdb + "." + quoteIdent(sm[2])
		})
		return stmt[:m[0]] + "CREATE MATERIALIZED VIEW IF NOT EXISTS " + qdb + "." + quoteIdent(view) + on +
			" TO " + qdb + "." + quoteIdent(to) + " AS " + sel, nil
	case reAlter.MatchString(stmt), reInsert.MatchString(stmt):
		return stmt, nil
	}
	first := strings.Fields(stmt)
	if len(first) > 3 {
		first = first[:3]
	}
	return "", fmt.Errorf("statement %q...: no cluster form (migrations may CREATE TABLE IF NOT EXISTS, CREATE MATERIALIZED VIEW IF NOT EXISTS ... TO, ALTER TABLE, INSERT)", strings.Join(first, " "))
}

// quoteIdent quotes a ClickHouse identifier with backquotes.
func quoteIdent(s string) string {
	return "`" + strings.ReplaceAll(s, "`", "\\`") + "`"
}
