package chstore

// Reads that must see every block a replica acknowledged (cluster mode).
//
// On a replicated table an INSERT is acknowledged by the replica that took
// it once the new data part is on its disk and registered in ZooKeeper
// (the part and its entry in the table's replication log are one
// ZooKeeper transaction); the other replicas fetch it afterwards. So a
// processor that takes over a partition and reads "the highest offset
// ClickHouse holds" from another replica could miss the previous owner's
// last block and write it again.
//
// SYSTEM SYNC REPLICA t makes a replica pull the replication log and wait
// until its queue is empty, i.e. until it holds every part registered
// before the statement, wherever it was inserted. Sent on the same server
// as the read that follows, it makes that read complete: a block that was
// acknowledged is either found, or the sync waits (while the replica that
// has it is down) and the caller retries; it is never silently missed.
// Each replica has a pool of its own with only its address, so the sync
// and the read cannot land on different servers.
//
// Insert deduplication is turned off for Takt's sessions on a cluster
// (clusterSettings): ClickHouse drops an INSERT block into a replicated
// table whose checksum equals one of the last blocks', and the rollup
// repair (reconcile.go) writes completion rows straight into the summing
// rollups, where two repairs can write the same block (one good part of
// the same product, machine and hour): deduplication would lose the
// second. Replays are kept out by the processor's resume reads instead, as
// on a single server.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// clusterSettings go with every statement in cluster mode.
var clusterSettings = map[string]any{
	"insert_deduplicate": 0,
}

// syncTimeout bounds one replica's SYSTEM SYNC REPLICA: a replica that
// cannot fetch a part (the replica that has it is down) waits that long
// before the next replica is tried.
const syncTimeout = 20 * time.Second

// replica is one server of the cluster with a pool of its own.
type replica struct {
	addr string
	conn driver.Conn
}

// openReplicas opens a small pool to each address of cfg (connections are
// made on first use).
func openReplicas(cfg Config, opts *clickhouse.Options) ([]replica, error) {
	out := make([]replica, 0, len(cfg.Addr))
	for _, a := range cfg.Addr {
		o := *opts
		o.Addr = []string{a}
		o.MaxOpenConns, o.MaxIdleConns = 2, 2
		conn, err := clickhouse.Open(&o)
		if err != nil {
			for _, r := range out {
				r.conn.Close()
			}
			return nil, fmt.Errorf("open clickhouse replica %s: %w", a, err)
		}
		if cfg.Recorder != nil {
			conn = recordingConn{Conn: conn, rec: cfg.Recorder}
		}
		out = append(out, replica{addr: a, conn: conn})
	}
	return out, nil
}

// syncedRead runs read on a connection whose server holds every block of
// tables that any replica acknowledged before the call. On a single server
// that is the pool itself. On a cluster, replicas are tried in turn: sync
// the tables, then read, on the same server; the first that succeeds
// answers. When none can (each is down, or cannot fetch a part while the
// replica that has it is down) the error says why, and the caller retries.
func (s *Store) syncedRead(ctx context.Context, tables []string, read func(conn driver.Conn) error) error {
	if s.cluster == "" {
		return read(s.conn)
	}
	var errs []error
	for _, r := range s.replicas {
		err := s.syncReplica(ctx, r, tables)
		if err == nil {
			err = read(r.conn)
		}
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		errs = append(errs, fmt.Errorf("replica %s: %w", r.addr, err))
	}
	return fmt.Errorf("no replica could answer a read that must see every acknowledged block: %w", errors.Join(errs...))
}

// onSyncedReplica is syncedRead for work of several statements: fn gets
// a Store whose every statement goes to one synced replica (s itself on a
// single server).
func (s *Store) onSyncedReplica(ctx context.Context, tables []string, fn func(rs *Store) error) error {
	if s.cluster == "" {
		return fn(s)
	}
	return s.syncedRead(ctx, tables, func(conn driver.Conn) error {
		rs := *s
		rs.conn = conn
		return fn(&rs)
	})
}

func (s *Store) syncReplica(ctx context.Context, r replica, tables []string) error {
	sctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	for _, t := range tables {
		if err := r.conn.Exec(sctx, "SYSTEM SYNC REPLICA "+quoteIdent(s.db)+"."+quoteIdent(t)); err != nil {
			return fmt.Errorf("sync replica of %s: %w", t, err)
		}
	}
	return nil
}

// eachReplica runs fn on every server: the pool on a single server, each
// replica that answers on a cluster. A replica that does not answer is
// skipped and reported in skipped; fn's other errors are returned.
func (s *Store) eachReplica(ctx context.Context, fn func(conn driver.Conn) error) (skipped []string, err error) {
	if s.cluster == "" {
		return nil, fn(s.conn)
	}
	for _, r := range s.replicas {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		perr := r.conn.Ping(pctx)
		cancel()
		if perr != nil {
			skipped = append(skipped, r.addr)
			continue
		}
		if err := fn(r.conn); err != nil {
			return skipped, fmt.Errorf("replica %s: %w", r.addr, err)
		}
	}
	if len(skipped) == len(s.replicas) {
		return skipped, fmt.Errorf("no replica of cluster %s answers (%v)", s.cluster, skipped)
	}
	return skipped, nil
}
