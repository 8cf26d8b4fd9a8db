//go:build chdb

package chcompat

// chDB: current ClickHouse as a library, libchdb.so from the npm package
// @chdb/lib-linux-x64-gnu, loaded by chdb-go (through purego) when this
// package starts: CHDB_LIB_PATH must name the library, or the process
// panics. That is why this file is behind the chdb build tag, and no
// binary of Takt links it.

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/chdb-io/chdb-go/chdb"

	"github.com/takt/takt/internal/chstore"
)

// Chdb is an embedded ClickHouse with one database, in a temporary
// directory removed by Close. chDB allows one per process.
type Chdb struct {
	mu sync.Mutex
	s  *chdb.Session
}

// OpenChdb starts the engine with database db (created) as the current
// database. Its clock zone is UTC, like the local stack's server; it
// applies mutations before answering (mutations_sync), so a read after an
// ALTER ... UPDATE sees it as on a server that was waited for; and it sets
// what chstore.Open sets on a server of its release.
func OpenChdb(db string) (*Chdb, error) {
	s, err := chdb.NewSession()
	if err != nil {
		return nil, fmt.Errorf("start chdb: %w", err)
	}
	c := &Chdb{s: s}
	for _, q := range []string{
		"SET session_timezone = 'UTC'",
		"SET mutations_sync = 2",
		"CREATE DATABASE IF NOT EXISTS `" + db + "`",
		"USE `" + db + "`",
	} {
		if _, err := c.run(q, "TabSeparated"); err != nil {
			s.Cleanup()
			return nil, fmt.Errorf("chdb: %s: %w", q, err)
		}
	}
	// The settings chstore.Open would send to this release with every
	// statement, for the whole session.
	known, err := c.run(chstore.SessionSettingsQuery(), "TabSeparated")
	if err != nil {
		s.Cleanup()
		return nil, fmt.Errorf("chdb: %w", err)
	}
	for k, v := range chstore.SessionSettings(strings.Fields(known)) {
		if _, err := c.run(fmt.Sprintf("SET %s = %v", k, v), "TabSeparated"); err != nil {
			s.Cleanup()
			return nil, fmt.Errorf("chdb: set %s: %w", k, err)
		}
	}
	return c, nil
}

// Version returns the engine's ClickHouse version.
func (c *Chdb) Version() (string, error) {
	v, err := c.run("SELECT version()", "TabSeparated")
	return strings.TrimSpace(v), err
}

// Close stops the engine and removes its data.
func (c *Chdb) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.s.Cleanup()
}

// Exec implements Engine.
func (c *Chdb) Exec(ctx context.Context, sql string, settings map[string]any) error {
	_, err := c.Query(ctx, sql, settings)
	return err
}

// Query implements Engine. Settings go in a SETTINGS clause, which ends a
// SELECT.
func (c *Chdb) Query(_ context.Context, sql string, settings map[string]any) (string, error) {
	if len(settings) > 0 {
		var set []string
		for _, k := range slices.Sorted(maps.Keys(settings)) {
			set = append(set, fmt.Sprintf("%s = %v", k, settings[k]))
		}
		sql += " SETTINGS " + strings.Join(set, ", ")
	}
	return c.run(sql, "TabSeparated")
}

func (c *Chdb) run(sql, format string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, err := c.s.Query(sql, format)
	if err != nil {
		return "", err
	}
	if r == nil {
		return "", nil
	}
	defer r.Free()
	return string(r.Buf()), nil
}
