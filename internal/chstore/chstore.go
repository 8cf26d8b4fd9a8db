// Package chstore is Takt's only door to ClickHouse: connection set-up,
// migrations, and the typed reads and writes the services need. No other
// package imports clickhouse-go.
//
// Every statement here runs on ClickHouse 18.16 (the Debian package used by
// the local stack) and on current releases: INSERTs always list their
// columns, values are bound with ?, only integer settings are sent, and a
// subquery joined to anything has an alias. Where releases differ, Open
// asks the server once (capabilities.go) and the SQL stays the same. make
// test-modern runs every statement shape on current ClickHouse
// (internal/chcompat).
package chstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/takt/takt/internal/config"
	"github.com/takt/takt/internal/record"
	"github.com/takt/takt/internal/tlsx"
)

// Config says where ClickHouse is.
type Config struct {
	Addr     []string // native protocol host:port
	Database string
	// User and Password authenticate (TAKT_CLICKHOUSE_USER,
	// TAKT_CLICKHOUSE_PASSWORD).
	User     string
	Password string
	// TLS is TAKT_CLICKHOUSE_TLS and TAKT_CLICKHOUSE_TLS_* (the native
	// protocol's secure port, 9440 by default).
	TLS tlsx.Client
	// DialTimeout bounds each connection attempt.
	DialTimeout time.Duration
	// ReadTimeout bounds the wait for each answer from the server.
	ReadTimeout time.Duration
	// MaxOpenConns bounds the connection pool.
	MaxOpenConns int
	// Compression is how the blocks sent to ClickHouse are compressed
	// (TAKT_CLICKHOUSE_COMPRESSION): "lz4", "none", or "auto" (the
	// default; "" means it too): none when every address is a loopback
	// one and no Cluster is set, lz4 otherwise. On loopback the bytes cost
	// nothing to move, and compressing them costs the sender and the
	// server CPU (batches of 50,000 parts: ~0.1 µs per part in the
	// processor, ~0.25 µs in ClickHouse 18.16). Cluster mode keeps lz4, the
	// setting its replicated runs were proven with: one run saw 18.16 crash
	// at its first ON CLUSTER statement over an uncompressed connection
	// (not reproduced since, the cause unknown).
	Compression string
	// Cluster, when set (TAKT_CLICKHOUSE_CLUSTER), is the name of the
	// ClickHouse cluster (<remote_servers>) the database lives on: the
	// migrations create replicated tables ON CLUSTER (layout.go), and the
	// processor's resume reads wait for the replica they read to hold
	// every block any replica acknowledged (replicas.go). Addr then lists
	// the replicas.
	Cluster string
	// Recorder, when set, is told every statement the Store sends (see
	// record.go). Tests set it; services leave it nil.
	Recorder Recorder
}

// ConfigFromEnv reads TAKT_CLICKHOUSE_* with local-stack defaults.
func ConfigFromEnv(e *config.Env) Config {
	return Config{
		Addr:         e.List("CLICKHOUSE_ADDR", []string{"127.0.0.1:19000"}),
		Database:     e.String("CLICKHOUSE_DB", "takt"),
		User:         e.String("CLICKHOUSE_USER", "default"),
		Password:     e.String("CLICKHOUSE_PASSWORD", ""),
		TLS:          tlsx.ClientFromEnv(e, "CLICKHOUSE"),
		DialTimeout:  e.Duration("CLICKHOUSE_DIAL_TIMEOUT", 5*time.Second),
		ReadTimeout:  e.Duration("CLICKHOUSE_READ_TIMEOUT", 60*time.Second),
		MaxOpenConns: e.Int("CLICKHOUSE_MAX_CONNS", 16),
		Compression:  e.String("CLICKHOUSE_COMPRESSION", CompressionAuto),
		Cluster:      e.String("CLICKHOUSE_CLUSTER", ""),
	}
}

// Validate reports every problem with c.
func (c Config) Validate() error {
	var p config.Problems
	p.Addf(len(c.Addr) == 0, "TAKT_CLICKHOUSE_ADDR: empty")
	p.Addf(c.Database == "", "TAKT_CLICKHOUSE_DB: empty")
	p.Addf(c.MaxOpenConns < 1, "TAKT_CLICKHOUSE_MAX_CONNS: must be at least 1")
	switch c.Compression {
	case "", CompressionAuto, CompressionLZ4, CompressionNone:
	default:
		p.Addf(true, "TAKT_CLICKHOUSE_COMPRESSION: %q is not one of auto, lz4, none", c.Compression)
	}
	p.Addf(c.Cluster != "" && !clusterName.MatchString(c.Cluster), "TAKT_CLICKHOUSE_CLUSTER: %q is not a cluster name (letters, digits, _)", c.Cluster)
	if err := c.TLS.Validate(); err != nil {
		p = append(p, err)
	}
	return p.Err()
}

// options are the driver's options for cfg.
func options(cfg Config) (*clickhouse.Options, error) {
	tc, err := cfg.TLS.Config()
	if err != nil {
		return nil, err
	}
	return &clickhouse.Options{
		Addr: cfg.Addr,
		Auth: clickhouse.Auth{
			Database: "default",
			Username: cfg.User,
			Password: cfg.Password,
		},
		TLS:             tc,
		DialTimeout:     cfg.DialTimeout,
		ReadTimeout:     cfg.ReadTimeout,
		MaxOpenConns:    cfg.MaxOpenConns,
		MaxIdleConns:    cfg.MaxOpenConns,
		ConnMaxLifetime: time.Hour,
		Compression:     &clickhouse.Compression{Method: compression(cfg)},
	}, nil
}

// The values of Config.Compression.
const (
	CompressionAuto = "auto"
	CompressionLZ4  = "lz4"
	CompressionNone = "none"
)

// compression is the block compression cfg asks for.
func compression(cfg Config) clickhouse.CompressionMethod {
	switch cfg.Compression {
	case CompressionLZ4:
		return clickhouse.CompressionLZ4
	case CompressionNone:
		return clickhouse.CompressionNone
	}
	if cfg.Cluster != "" {
		return clickhouse.CompressionLZ4
	}
	for _, a := range cfg.Addr {
		if !loopback(a) {
			return clickhouse.CompressionLZ4
		}
	}
	return clickhouse.CompressionNone
}

// loopback reports whether the host of addr (host:port) is this machine's
// loopback interface: localhost, or an address in 127.0.0.0/8 or ::1.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// Store is a pool of native-protocol connections to one Takt database.
// It is safe for concurrent use.
type Store struct {
	conn   driver.Conn
	db     string
	logger *slog.Logger
	areas  *record.Registry // the record areas the database holds
	// cluster is Config.Cluster; replicas holds one small pool per
	// replica address in cluster mode (replicas.go), nil otherwise.
	cluster  string
	replicas []replica
	// stats: what searches of the order indexes start from (shared by the
	// copies With* methods make).
	stats *indexStats
}

// Open connects to ClickHouse, creates the Takt database if it is missing,
// and checks the connection with a ping.
func Open(ctx context.Context, cfg Config, logger *slog.Logger) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	opts, err := options(cfg)
	if err != nil {
		return nil, err
	}
	// A session cannot start in a database that does not exist, so create
	// it first over a connection to "default" (idempotent), then open the
	// pool on the Takt database: every statement names tables unqualified.
	boot, err := clickhouse.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open clickhouse %v: %w", cfg.Addr, err)
	}
	create := "CREATE DATABASE IF NOT EXISTS " + quoteIdent(cfg.Database)
	if cfg.Cluster != "" {
		create += " ON CLUSTER " + quoteIdent(cfg.Cluster)
	}
	err = boot.Exec(ctx, create)
	if err != nil {
		boot.Close()
		return nil, fmt.Errorf("clickhouse %v: create database %s: %w", cfg.Addr, cfg.Database, err)
	}
	// Settings this server's release needs go with every statement
	// (capabilities.go).
	known, err := knownSettings(ctx, boot)
	boot.Close()
	if err != nil {
		return nil, fmt.Errorf("clickhouse %v: %w", cfg.Addr, err)
	}
	set := SessionSettings(known)
	if cfg.Cluster != "" {
		for k, v := range clusterSettings {
			set[k] = v
		}
	}
	if len(set) > 0 {
		opts.Settings = set
		logger.Info("clickhouse session settings", "settings", set)
	}
	opts.Auth.Database = cfg.Database
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open clickhouse %v: %w", cfg.Addr, err)
	}
	if err := conn.Ping(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("ping clickhouse %v: %w", cfg.Addr, err)
	}
	if cfg.Recorder != nil {
		conn = recordingConn{Conn: conn, rec: cfg.Recorder}
	}
	s := &Store{conn: conn, db: cfg.Database, logger: logger, areas: record.Takt, cluster: cfg.Cluster, stats: &indexStats{}}
	if cfg.Cluster != "" {
		if s.replicas, err = openReplicas(cfg, opts); err != nil {
			conn.Close()
			return nil, err
		}
	}
	return s, nil
}

// Close closes every connection.
func (s *Store) Close() error {
	for _, r := range s.replicas {
		r.conn.Close()
	}
	return s.conn.Close()
}

// Cluster returns the name of the cluster the database lives on, or "" for
// a single server.
func (s *Store) Cluster() string { return s.cluster }

// Ping checks that ClickHouse answers.
func (s *Store) Ping(ctx context.Context) error { return s.conn.Ping(ctx) }

// Database returns the name of the Takt database.
func (s *Store) Database() string { return s.db }

// Exec runs one statement that returns no rows. It is exported for tools and
// tests (migrations, clean-up); services use the typed methods.
func (s *Store) Exec(ctx context.Context, query string, args ...any) error {
	return s.conn.Exec(ctx, query, args...)
}

// insertRow inserts one row through a batch: an INSERT ... VALUES sent as a
// plain query hangs on ClickHouse 18.16, a batch does not. into is
// "table (col, ...)".
func (s *Store) insertRow(ctx context.Context, into string, values ...any) error {
	b, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+into)
	if err != nil {
		return fmt.Errorf("prepare insert into %s: %w", into, err)
	}
	if err := b.Append(values...); err != nil {
		b.Abort()
		return fmt.Errorf("insert into %s: %w", into, err)
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("insert into %s: %w", into, err)
	}
	return nil
}

// QueryUint64 runs a query returning one UInt64 (e.g. a count) and returns it.
func (s *Store) QueryUint64(ctx context.Context, query string, args ...any) (uint64, error) {
	var n uint64
	if err := s.conn.QueryRow(ctx, query, args...).Scan(&n); err != nil {
		return 0, err
	}
	return n, nil
}

// QueryStrings runs a query returning one String column and returns its
// values, for tools and tests.
func (s *Store) QueryStrings(ctx context.Context, query string, args ...any) ([]string, error) {
	rows, err := s.conn.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// ErrNotFound means no live record matched.
var ErrNotFound = errors.New("not found")
