package ingestor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/twmb/franz-go/pkg/kadm"
	"golang.org/x/sync/errgroup"

	"github.com/takt/takt/internal/auth"
	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/httpx"
	"github.com/takt/takt/internal/kafkax"
	"github.com/takt/takt/internal/locations"
	"github.com/takt/takt/internal/ratelimit"
	"github.com/takt/takt/internal/redisx"
)

// Run serves the ingest API until ctx ends, then shuts down in order: stop
// accepting requests and drain those in flight, flush the producer, close
// the clients.
//
// ClickHouse must answer at start (it is the source of truth for keys and
// locations); Kafka and Redis need not: a request that cannot be produced
// gets a 500, and Redis is only a cache.
func Run(ctx context.Context, cfg Config, logger *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("ingestor config: %w", err)
	}
	reg := httpx.NewRegistry()

	store, err := chstore.Open(ctx, cfg.ClickHouse, logger)
	if err != nil {
		return err
	}
	defer store.Close()

	rdb, err := redisx.New(cfg.redis())
	if err != nil {
		return err
	}
	defer rdb.Close()

	keys, err := auth.New(store, rdb, cfg.RedisPrefix, logger, reg,
		auth.Namespace("takt_ingestor"), auth.LocalTTL(cfg.AuthLocalTTL),
		auth.RedisTTL(cfg.AuthRedisTTL), auth.NegativeTTL(cfg.AuthNegativeTTL),
		auth.LimitFailures(cfg.AuthFailures))
	if err != nil {
		return err
	}
	locs, err := locations.New(store, rdb, cfg.RedisPrefix, logger, reg,
		locations.Namespace("takt_ingestor"), locations.LocalTTL(cfg.LocationLocalTTL),
		locations.RedisTTL(cfg.LocationRedisTTL), locations.NegativeTTL(cfg.LocationNegativeTTL))
	if err != nil {
		return err
	}

	cl, err := kafkax.NewClient(kafkax.Config{Brokers: cfg.Brokers, ProduceTopic: cfg.Topic,
		Linger: cfg.ProduceLinger, DeliveryTimeout: cfg.ProduceTimeout, Security: cfg.Kafka}, logger)
	if err != nil {
		return err
	}
	defer cl.Close()

	m, err := newMetrics(reg)
	if err != nil {
		return err
	}
	h := newHandler(keys, locs, cl, cfg.Topic, cfg.MaxBody, cfg.ProduceTimeout, logger, m)
	if h.limiter, err = ratelimit.New(cfg.RateLimit, rdb, cfg.RedisPrefix, ratelimit.StoreLimits{Store: store},
		logger, reg, "takt_ingestor"); err != nil {
		return err
	}
	if h.idem, err = newIdemStore(rdb, cfg.RedisPrefix, cfg.ProduceTimeout, logger, reg); err != nil {
		return err
	}
	bm, err := newBatchMetrics(reg)
	if err != nil {
		return err
	}
	bh := newBatchHandler(h, cfg.MaxBatchBody, bm)

	certs, err := cfg.TLS.Load(logger)
	if err != nil {
		return err
	}
	var broker *mqttBroker
	var br *bridge
	var resent *resends
	mc, listen := cfg.mqtt(certs.Config())
	if listen || cfg.Bridge.Enabled() {
		mm, err := newMQTTMetrics(reg)
		if err != nil {
			return err
		}
		resent = newResends(rdb, cfg.RedisPrefix, cfg.MQTTSessionExpiry, cfg.Topic, cfg.MQTTResendWindow,
			kafkax.Config{Brokers: cfg.Brokers, Security: cfg.Kafka}, kadm.NewClient(cl), logger, mm)
		in := &mqttIngest{h: h, b: bh, dlqTopic: cfg.DLQTopic, resends: resent, logger: logger, m: mm}
		if listen {
			sessions := &sessionStore{rdb: rdb, keys: redisx.NewKeys(cfg.RedisPrefix), max: cfg.MQTTSessionExpiry, logger: logger}
			if broker, err = newMQTTBroker(mc, sessions, in); err != nil {
				return err
			}
		}
		if cfg.Bridge.Enabled() {
			if br, err = newBridge(cfg.Bridge, cfg.MQTTSessionExpiry, in, keys); err != nil {
				return err
			}
			logBridge(logger, cfg.Bridge)
		}
	}

	ready := func(ctx context.Context) error {
		if err := store.Ping(ctx); err != nil {
			return fmt.Errorf("clickhouse: %w", err)
		}
		if err := cl.Ping(ctx); err != nil {
			return fmt.Errorf("kafka: %w", err)
		}
		return nil
	}
	r := httpx.NewEngine(logger)
	httpx.Probes(r, ready)
	r.POST(Path, h.serve)
	r.POST(BatchPath, bh.serve)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return certs.Run(gctx, cfg.TLS.CheckEvery) })
	g.Go(func() error { return httpx.ServeAdmin(gctx, cfg.AdminAddr, httpx.Admin(ready, reg), logger) })
	g.Go(func() error { return httpx.ServeAll(gctx, cfg.listeners(certs.Config()), r, logger) })
	// The resend records are written until the MQTT side has finished the
	// messages in hand.
	rctx, stopResends := context.WithCancel(context.WithoutCancel(ctx))
	resendsDone := make(chan struct{})
	if resent != nil {
		go func() { defer close(resendsDone); _ = resent.run(rctx) }()
	} else {
		close(resendsDone)
	}
	if broker != nil {
		g.Go(func() error { return broker.serve(gctx) })
	}
	if br != nil {
		g.Go(func() error { return br.run(gctx) })
	}
	err = g.Wait()
	stopResends()
	<-resendsDone

	// The server has drained: every answered request saw its ack. What is
	// left in the producer belongs to requests that timed out; give it one
	// more chance to land before closing.
	fctx, cancel := context.WithTimeout(context.Background(), cfg.ProduceTimeout)
	defer cancel()
	if ferr := cl.Flush(fctx); ferr != nil {
		err = errors.Join(err, fmt.Errorf("flush producer: %w", ferr))
	}
	logger.Info("ingestor stopped")
	return err
}
