package chstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/takt/takt/schemas"
)

// Migration is one versioned SQL file, or one step coded in Go.
type Migration struct {
	Version    uint32
	Name       string
	Statements []string
	// Step, when set, is the migration (it has no Statements): a change
	// SQL cannot make safely while writers run, such as a table swap. It
	// runs under a lock (migrate_lock.go) and must be safe to run again
	// after being cut off at any point.
	Step func(context.Context, *Store) error
}

// goSteps are the migrations coded in Go, numbered among the SQL files.
var goSteps = []Migration{
	{Version: 52, Name: "rollups_by_day", Step: func(ctx context.Context, s *Store) error { return s.migrateRollupsByDay(ctx) }},
}

var migrationName = regexp.MustCompile(`^(\d{4})_([a-z0-9_]+)\.sql$`)

// Migrations returns the embedded migrations in version order.
func Migrations() ([]Migration, error) {
	entries, err := fs.ReadDir(schemas.ClickHouse, "clickhouse")
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var out []Migration
	seen := map[uint32]string{}
	for _, e := range entries {
		m := migrationName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("migration file %q: name must be NNNN_name.sql", e.Name())
		}
		v, _ := strconv.ParseUint(m[1], 10, 32)
		if prev, ok := seen[uint32(v)]; ok {
			return nil, fmt.Errorf("migration version %d used twice (%s, %s)", v, prev, e.Name())
		}
		seen[uint32(v)] = e.Name()
		b, err := fs.ReadFile(schemas.ClickHouse, "clickhouse/"+e.Name())
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", e.Name(), err)
		}
		out = append(out, Migration{Version: uint32(v), Name: m[2], Statements: SplitStatements(string(b))})
	}
	for _, g := range goSteps {
		if prev, ok := seen[g.Version]; ok {
			return nil, fmt.Errorf("migration version %d used twice (%s, Go step %s)", g.Version, prev, g.Name)
		}
		seen[g.Version] = g.Name
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

// SplitStatements splits a SQL file into statements on semicolons that end a
// line, dropping "--" comment lines. Migrations keep to that shape.
func SplitStatements(sql string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(sql, "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "--") {
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
		if strings.HasSuffix(trimmed, ";") {
			stmt := strings.TrimSuffix(strings.TrimSpace(cur.String()), ";")
			out = append(out, stmt)
			cur.Reset()
		}
	}
	if rest := strings.TrimSpace(cur.String()); rest != "" {
		out = append(out, rest)
	}
	return out
}

// Migrate applies every migration not yet recorded
// in its schema_migrations table, in order. Statements are idempotent
// (IF NOT EXISTS), so two replicas migrating at once, or a migration cut off
// half-way and run again, end in the same schema.
func (s *Store) Migrate(ctx context.Context) error {
	if err := s.ddl(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version UInt32, name String, applied_at DateTime
	) ENGINE = ReplacingMergeTree(applied_at) ORDER BY version`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	applied := map[uint32]bool{}
	rows, err := s.conn.Query(ctx, "SELECT DISTINCT version FROM schema_migrations")
	if err != nil {
		return fmt.Errorf("read schema_migrations: %w", err)
	}
	for rows.Next() {
		var v uint32
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return fmt.Errorf("read schema_migrations: %w", err)
		}
		applied[v] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read schema_migrations: %w", err)
	}
	ms, err := Migrations()
	if err != nil {
		return err
	}
	for _, m := range ms {
		if applied[m.Version] {
			continue
		}
		if m.Step != nil {
			if err := s.runStep(ctx, m); err != nil {
				return fmt.Errorf("migration %04d_%s: %w", m.Version, m.Name, err)
			}
		}
		for i, stmt := range m.Statements {
			if err := s.ddl(ctx, stmt); err != nil {
				if AlreadyApplied(err) {
					s.logger.Info("migration statement already applied", "version", m.Version, "statement", i+1)
					continue
				}
				return fmt.Errorf("migration %04d_%s statement %d: %w", m.Version, m.Name, i+1, err)
			}
		}
		if err := s.insertRow(ctx, "schema_migrations (version, name, applied_at)", m.Version, m.Name, time.Now().UTC()); err != nil {
			return fmt.Errorf("record migration %d: %w", m.Version, err)
		}
		s.logger.Info("applied migration", "version", m.Version, "name", m.Name)
	}
	return nil
}

// runStep runs a Go-coded migration under its lock, unless a process that
// held the lock before has recorded it meanwhile.
func (s *Store) runStep(ctx context.Context, m Migration) error {
	lock, err := s.acquireMigrationLock(ctx, migrationLockName(m.Version))
	if err != nil {
		return err
	}
	defer lock.release(ctx)
	var done uint64
	if err := s.conn.QueryRow(ctx, "SELECT count() FROM schema_migrations WHERE version = ?", m.Version).Scan(&done); err != nil {
		return fmt.Errorf("read schema_migrations: %w", err)
	}
	if done > 0 {
		return nil
	}
	return m.Step(withLock(ctx, lock), s)
}

// ddl runs one migration statement, rewritten for the cluster in cluster
// mode (layout.go).
func (s *Store) ddl(ctx context.Context, stmt string) error {
	if s.cluster != "" {
		var err error
		if stmt, err = ClusterStatement(stmt, s.db, s.cluster); err != nil {
			return err
		}
	}
	return s.conn.Exec(ctx, stmt)
}

// AlreadyApplied reports an error that means the statement's change is
// already there: ADD COLUMN of an existing column (code 44 on 18.16, 15
// DUPLICATE_COLUMN on current releases; 18.16 knows no ADD COLUMN IF NOT
// EXISTS). A migration cut off after its ALTER and before its record in
// schema_migrations then runs again cleanly.
func AlreadyApplied(err error) bool {
	var ex *clickhouse.Exception
	if !errors.As(err, &ex) {
		return false
	}
	return (ex.Code == 44 || ex.Code == 15) && strings.Contains(ex.Message, "already exists")
}
