package chstore

// The lock of a Go-coded migration step. SQL migrations are idempotent
// statement by statement, so several processes may run them at once; a Go
// step that copies and then drops (0052) is idempotent when it runs alone
// but not when two runs interleave (one dropping the source the other
// copies again). Such a step runs under this lock.
//
// The lock is a table, created without IF NOT EXISTS: ClickHouse lets one
// CREATE of a name succeed. Its holder writes a beat into it every few
// seconds. A lock whose last beat is older than lockStale belongs to a
// process that died; a waiter takes it over with a RENAME of the table (of
// two RENAMEs of one name, one succeeds) and then competes for a fresh
// CREATE like anyone else. The holder checks before each step that can
// destroy rows that its lock is still its own.
//
// On a cluster the lock lives on the first replica of the configuration,
// which every process of the deployment lists first: a plain table, not
// replicated, since a CREATE ON CLUSTER is not exclusive.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

const (
	lockBeat  = 2 * time.Second
	lockStale = 30 * time.Second
)

// migrationLock is a held lock.
type migrationLock struct {
	s      *Store
	conn   driver.Conn
	table  string
	holder string
	stop   chan struct{}
	done   sync.WaitGroup
}

// lockConn is the connection the lock lives on.
func (s *Store) lockConn() driver.Conn {
	if s.cluster != "" && len(s.replicas) > 0 {
		return s.replicas[0].conn
	}
	return s.conn
}

// migrationLockName is the table of the lock of migration version.
func migrationLockName(version uint32) string { return fmt.Sprintf("migration_lock_%04d", version) }

// acquireMigrationLock takes the lock table name, waiting while a live
// holder has it, until ctx ends.
func (s *Store) acquireMigrationLock(ctx context.Context, name string) (*migrationLock, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	l := &migrationLock{s: s, conn: s.lockConn(), table: quoteIdent(s.db) + "." + quoteIdent(name),
		holder: fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b[:])), stop: make(chan struct{})}
	waitingSince := time.Now()
	for {
		err := l.conn.Exec(ctx, "CREATE TABLE "+l.table+" (holder String, beat DateTime) ENGINE = Log")
		if err == nil {
			if err := l.beat(ctx); err != nil {
				_ = l.conn.Exec(context.WithoutCancel(ctx), "DROP TABLE IF EXISTS "+l.table)
				return nil, err
			}
			l.done.Add(1)
			go l.keepBeating()
			return l, nil
		}
		if !strings.Contains(err.Error(), "already exists") {
			return nil, fmt.Errorf("create lock %s: %w", l.table, err)
		}
		// Held. Take over a dead holder's lock.
		var age int64
		var holder string
		qerr := l.conn.QueryRow(ctx, "SELECT toInt64(now()) - toInt64(max(beat)), argMax(holder, beat) FROM "+l.table).Scan(&age, &holder)
		if qerr == nil && age > int64(lockStale/time.Second) {
			s.logger.Warn("taking over the lock of a migration whose holder stopped beating", "lock", l.table, "holder", holder, "silent_s", age)
			stale := quoteIdent(s.db) + "." + quoteIdent(name+"_stale_"+hex.EncodeToString(b[:]))
			if l.conn.Exec(ctx, "RENAME TABLE "+l.table+" TO "+stale) == nil {
				_ = l.conn.Exec(ctx, "DROP TABLE IF EXISTS "+stale)
			}
			continue
		}
		if time.Since(waitingSince) > 10*time.Second {
			s.logger.Info("waiting for another process's migration", "lock", l.table, "holder", holder)
			waitingSince = time.Now()
		}
		if !sleepCtx(ctx, 500*time.Millisecond) {
			return nil, fmt.Errorf("waiting for lock %s (held by %s): %w", l.table, holder, ctx.Err())
		}
	}
}

func (l *migrationLock) beat(ctx context.Context) error {
	b, err := l.conn.PrepareBatch(ctx, "INSERT INTO "+l.table+" (holder, beat)")
	if err != nil {
		return fmt.Errorf("beat lock %s: %w", l.table, err)
	}
	if err := b.Append(l.holder, time.Now().UTC()); err != nil {
		b.Abort()
		return fmt.Errorf("beat lock %s: %w", l.table, err)
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("beat lock %s: %w", l.table, err)
	}
	return nil
}

func (l *migrationLock) keepBeating() {
	defer l.done.Done()
	t := time.NewTicker(lockBeat)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), lockBeat)
			err := l.check(ctx)
			if err == nil {
				err = l.beat(ctx)
			}
			cancel()
			if err != nil {
				// Lost (the step's next check fails too), or ClickHouse
				// is away: say so and keep trying while the step runs.
				l.s.logger.Warn("migration lock beat failed", "lock", l.table, "err", err)
			}
		}
	}
}

// check fails unless the lock is still this holder's: a process paused
// longer than lockStale may have lost it.
func (l *migrationLock) check(ctx context.Context) error {
	var holder string
	if err := l.conn.QueryRow(ctx, "SELECT argMax(holder, beat) FROM "+l.table+" WHERE holder = ?", l.holder).Scan(&holder); err != nil {
		return fmt.Errorf("lock %s lost: %w", l.table, err)
	}
	if holder != l.holder {
		return fmt.Errorf("lock %s lost to another process", l.table)
	}
	return nil
}

// release stops the beats and drops the lock.
func (l *migrationLock) release(ctx context.Context) {
	close(l.stop)
	l.done.Wait()
	if err := l.check(ctx); err != nil {
		return // not ours any more: leave the new holder's lock alone
	}
	if err := l.conn.Exec(context.WithoutCancel(ctx), "DROP TABLE IF EXISTS "+l.table); err != nil {
		l.s.logger.Warn("dropping a migration lock failed; it goes stale", "lock", l.table, "err", err)
	}
}

type lockKey struct{}

func withLock(ctx context.Context, l *migrationLock) context.Context {
	return context.WithValue(ctx, lockKey{}, l)
}

// stillLocked fails unless the migration lock in ctx (if any) is still
// held: a step calls it before each statement that can destroy rows.
func stillLocked(ctx context.Context) error {
	if l, ok := ctx.Value(lockKey{}).(*migrationLock); ok {
		return l.check(ctx)
	}
	return nil
}
