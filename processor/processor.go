// Package processor is Takt's Kafka-to-ClickHouse stage: a consumer-group
// member that decodes part messages, resolves their product and scrap
// reason against the master data (package resolve), writes them to the
// parts table in batches with an exactly-once effect, and runs the
// production-period state machines.
//
// Exactly once, in short: every part row's id is (partition << 40) |
// offset; each flush writes its partitions' rows in INSERT blocks (each
// one atomic data part, since the table has no partition key; a block may
// hold several partitions), and a partition's rows reach ClickHouse in
// offset order; offsets are committed only
// after ClickHouse accepted the blocks; and a member given a partition
// first waits for the parts INSERTs the server is still running (a killed
// member's last one), then starts after the larger of the committed offset
// and the last offset ClickHouse holds. A crash at any point therefore
// neither loses nor duplicates a row. runJob documents the one remaining
// gap, a member that stalls after its fence check.
//
// Throughput: decoding is spread over the CPUs, and while a flush writes
// its blocks (one block at moderate rates; blocks of at least 10,000 rows,
// concurrently, when it holds more) the loop decodes the next batch.
//
// Rebalances (kgo.BlockRebalanceOnPoll): the loop allows a rebalance only
// when nothing is unflushed or in flight; when the group signals that a
// rebalance waits, the loop stops reading, flushes, and allows it. So a
// revoked partition never has rows in memory, and nothing is committed for
// a partition this member no longer owns.
//
// Production periods: each location's period state machine runs here,
// with its partition, and its rows and saved state are written before the
// parts of the same flush; periods.go explains how a new owner resumes.
//
// Records that can never be decoded go to a dead-letter topic (at least
// once: a crash after the dead letter and before the commit sends it
// again) and never stop their partition.
package processor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/httpx"
	"github.com/takt/takt/internal/period"
	"github.com/takt/takt/internal/redisx"
)

// Run starts the processor and blocks until ctx is done or a component
// fails. On ctx cancel it stops fetching, writes and commits the pending
// batch, leaves the group, and then stops serving HTTP.
func Run(ctx context.Context, cfg Config, logger *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("processor config: %w", err)
	}
	if cfg.RecomputeMaxParts == 0 {
		cfg.RecomputeMaxParts = DefaultRecomputeMaxParts
	}
	store, err := chstore.Open(ctx, cfg.ClickHouse, logger)
	if err != nil {
		return err
	}
	defer store.Close()
	// The processor writes the parts table, so it makes sure it exists;
	// migrations are idempotent and safe to run from several replicas.
	if err := store.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate clickhouse: %w", err)
	}
	return run(ctx, cfg, logger, store)
}

// store is what the processor needs from ClickHouse (a *chstore.Store;
// tests wrap one to inject failures).
type store interface {
	partsStore
	periodStore
	watermarkStore
	recomputeStore
	masterDataSource
	pinger
}

func run(ctx context.Context, cfg Config, logger *slog.Logger, store store) error {
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	m := newMetrics(reg)
	master := newMasterData(store, cfg.CycleTimeTolerance, logger, m)
	if err := master.reload(ctx); err != nil {
		return err
	}

	// The processor has no public port: its one listener is the admin
	// listener (TAKT_ADMIN_ADDR).
	if !httpx.Loopback(cfg.Addr) {
		logger.Warn("admin listener is not on loopback: metrics, readiness reasons and profiles are open to whoever reaches it",
			"addr", cfg.Addr)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	c, err := newConsumer(cfg, store, master, m, logger)
	if err != nil {
		ln.Close()
		return err
	}
	if err := c.checkTopics(ctx); err != nil {
		c.cl.Close()
		ln.Close()
		return err
	}
	if cfg.PeriodChangesTopic != "" {
		line := func(k period.Key) uint64 { return master.location(k).line }
		if c.feed, err = newChangeFeed(cfg, reg, line, logger); err == nil {
			err = c.feed.checkTopic(ctx, cfg.Topic)
		}
		if err != nil {
			if c.feed != nil {
				c.feed.close()
			}
			c.cl.Close()
			ln.Close()
			return err
		}
		// Closed once the consumer's final flush has produced its changes.
		defer c.feed.close()
	}
	c.afterInsert = afterInsertFailpoint(logger)
	c.afterPeriods = afterPeriodsFailpoint(logger)
	c.afterRecomputePeriods = recomputeFailpoint(logger)
	c.clock = cfg.Clock
	if c.clock == nil {
		c.clock = clockFailpoint(logger)
	}
	srv := &http.Server{
		Handler:           httpx.Admin(ready(store, c), reg),
		ReadHeaderTimeout: 5 * time.Second,
	}
	logger.Info("processor started", "topic", cfg.Topic, "group", cfg.Group, "addr", ln.Addr().String(),
		"batch_rows", cfg.BatchRows, "batch_interval", cfg.BatchInterval)

	g, gctx := errgroup.WithContext(ctx)
	consumerDone := make(chan struct{})
	g.Go(func() error {
		defer close(consumerDone)
		return c.run(gctx)
	})
	g.Go(func() error { return master.run(gctx, cfg.CatalogRefresh) })
	if cfg.RedisAddr != "" {
		rdb, err := redisx.New(cfg.redis())
		if err != nil {
			return err
		}
		defer rdb.Close()
		g.Go(func() error {
			listenForChanges(gctx, rdb, redisx.NewKeys(cfg.RedisPrefix).MasterDataChanges(), master, logger)
			return nil
		})
	}
	g.Go(func() error {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve http: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		// HTTP stays up until the consumer has flushed, so /metrics
		// shows the final batch.
		<-consumerDone
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	err = g.Wait()
	logger.Info("processor stopped", "err", err)
	return err
}

// pinger is a dependency /readyz checks.
type pinger interface {
	Ping(ctx context.Context) error
}

// ready checks the processor's dependencies: ClickHouse and the brokers.
func ready(store pinger, c *consumer) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		var errs []error
		if err := store.Ping(ctx); err != nil {
			errs = append(errs, fmt.Errorf("clickhouse: %w", err))
		}
		if err := c.ping(ctx); err != nil {
			errs = append(errs, fmt.Errorf("kafka: %w", err))
		}
		return errors.Join(errs...)
	}
}
