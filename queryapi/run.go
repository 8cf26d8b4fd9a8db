package queryapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/takt/takt/internal/auth"
	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/httpx"
	"github.com/takt/takt/internal/kafkax"
	"github.com/takt/takt/internal/l2l"
	"github.com/takt/takt/internal/locations"
	"github.com/takt/takt/internal/ratelimit"
	"github.com/takt/takt/internal/redisx"
	"github.com/takt/takt/internal/watermark"
)

// Run serves the query API until ctx ends, then stops accepting requests,
// lets those in flight finish (httpx.DrainTimeout at most), flushes the
// producer and closes the clients.
//
// ClickHouse must answer at start; Redis need not (it only caches keys),
// nor Kafka (the client connects when a reason is first assigned; until it
// answers, assignments fail with 503 and /readyz reports it).
func Run(ctx context.Context, cfg Config, logger *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("queryapi config: %w", err)
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

	// Assignments are rare and each request waits for its own: no linger.
	cl, err := kafkax.NewClient(kafkax.Config{Brokers: cfg.KafkaBrokers, ProduceTopic: cfg.PartsTopic,
		DeliveryTimeout: cfg.QueryTimeout, Security: cfg.Kafka}, logger)
	if err != nil {
		return err
	}
	defer cl.Close()

	// Streams of the change feed end when ctx does (before the server
	// drains), with a final event that tells the client to reconnect.
	r, err := newEngine(store, rdb, cl, cfg, ctx.Done(), logger, reg)
	if err != nil {
		return err
	}
	// The keys' last uses (of every service: the rate limiter records them
	// in Redis) go to ClickHouse from here. A use not copied at stop stays
	// in Redis and is copied by the next start.
	certs, err := cfg.TLS.Load(logger)
	if err != nil {
		return err
	}
	usage := ratelimit.NewUsageCopier(rdb, cfg.RedisPrefix, store, cfg.KeyUsageInterval, logger)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return certs.Run(gctx, cfg.TLS.CheckEvery) })
	g.Go(func() error { return httpx.ServeAll(gctx, cfg.listeners(certs.Config()), r, logger) })
	g.Go(func() error {
		return httpx.ServeAdmin(gctx, cfg.AdminAddr, httpx.Admin(readiness(store, cl), reg), logger)
	})
	if !cfg.RateLimit.Disabled {
		g.Go(func() error { return usage.Run(gctx) })
	}
	err = g.Wait()

	// The server has drained: every answered assignment saw its ack. What
	// is left in the producer belongs to requests that ran out of time;
	// give it one more chance to land before closing.
	fctx, cancel := context.WithTimeout(context.Background(), cfg.QueryTimeout)
	defer cancel()
	if ferr := cl.Flush(fctx); ferr != nil {
		err = errors.Join(err, fmt.Errorf("flush producer: %w", ferr))
	}
	logger.Info("queryapi stopped")
	return err
}

// readiness checks what requests need: ClickHouse, and Kafka when reasons
// can be assigned (kc not nil).
func readiness(store *chstore.Store, kc kafkaClient) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		if err := store.Ping(ctx); err != nil {
			return fmt.Errorf("clickhouse: %w", err)
		}
		if kc != nil {
			if err := kc.Ping(ctx); err != nil {
				return fmt.Errorf("kafka: %w", err)
			}
		}
		return nil
	}
}

// newEngine wires the public HTTP side: authentication, the record areas,
// the OEE endpoint and the probes; its metrics go to reg (served by the
// admin listener). Reason assignments go to kc, on cfg.PartsTopic; with a nil kc
// production periods are read-only.
//
// stop, when closed, ends the streams of the live change feed (nil: only
// their requests end them).
func newEngine(store *chstore.Store, rdb *redis.Client, kc kafkaClient, cfg Config, stop <-chan struct{}, logger *slog.Logger, reg *prometheus.Registry) (*gin.Engine, error) {
	// Every query of a request carries ClickHouse's limits: it stops at
	// the request's time budget and its memory bound.
	store = store.WithLimits(chstore.Limits{MaxMemoryUsage: cfg.QueryMaxMemory, MaxExecutionTime: cfg.QueryTimeout})
	rkeys := redisx.NewKeys(cfg.RedisPrefix)
	keys, err := auth.New(store, rdb, cfg.RedisPrefix, logger, reg,
		auth.Namespace("takt_queryapi"), auth.LocalTTL(cfg.AuthLocalTTL),
		auth.RedisTTL(cfg.AuthRedisTTL), auth.NegativeTTL(cfg.AuthNegativeTTL),
		auth.LimitFailures(cfg.AuthFailures))
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	h, err := newHandler(keys, store, newZones(store, cfg.ZoneTTL, logger), cfg, logger, m)
	if err != nil {
		return nil, err
	}
	locs, err := locations.New(store, rdb, cfg.RedisPrefix, logger, reg, locations.Namespace("takt_queryapi"))
	if err != nil {
		return nil, err
	}
	h.users = store
	h.writes = &writer{
		store: store,
		areas: store.Areas(),
		ids:   &idSource{rdb: rdb, key: rkeys.RecordIDs(), highest: store.MaxRecordID},
		// A reservation outlives any write (a write gives up after
		// QueryTimeout, and ClickHouse lands an INSERT long before a
		// minute more).
		unique: &reservations{rdb: rdb, prefix: rkeys.Unique(), hold: cfg.QueryTimeout + time.Minute},
		inv: &cacheInvalidator{keys: keys, locations: locs, rdb: rdb, channel: rkeys.MasterDataChanges(),
			delay: refetchDelay, logger: logger},
		signatures: auth.NewUsedSignatures(rdb, rkeys.Signatures()),
		now:        time.Now,
	}
	acts := &actionServer{h: h, store: store, ids: h.writes.ids, rdb: rdb, keys: rkeys,
		locks: &locks{rdb: rdb, prefix: rkeys.ActionLocks(), ttl: cfg.QueryTimeout + 5*time.Second, wait: 2 * time.Second},
		inv:   h.writes.inv, now: time.Now, logger: logger, recomputes: store}
	if kc != nil {
		h.assigner = &assigner{store: store, prod: kc, topic: cfg.PartsTopic, now: time.Now}
		acts.sender = &sender{prod: kc, topic: cfg.PartsTopic}
	}
	if err := h.bindActions(acts); err != nil {
		return nil, err
	}
	lim, err := ratelimit.New(cfg.RateLimit, rdb, cfg.RedisPrefix, ratelimit.StoreLimits{Store: store}, logger, reg, "takt_queryapi")
	if err != nil {
		return nil, err
	}
	h.limiter = lim
	h.cursors = &cursors{rdb: rdb, prefix: rkeys.Cursors()}
	if cfg.PeriodChangesTopic != "" {
		slots := &streamSlots{rdb: rdb, prefix: rkeys.FeedStreams(), lease: cfg.FeedStreamLease}
		if h.feed, err = newStreams(cfg, slots, stop, reg, logger); err != nil {
			return nil, err
		}
	}
	if cfg.Watermark {
		topic := cfg.PartsTopic
		h.wm, err = newWatermarks(func(ctx context.Context) (int64, error) {
			ps, err := store.PartsWatermarks(ctx, topic)
			return watermark.Of(ps), err
		}, cfg.WatermarkWaiters, reg)
		if err != nil {
			return nil, err
		}
	}
	count, err := httpx.CountRequests(reg, "takt_queryapi")
	if err != nil {
		return nil, err
	}
	r := httpx.NewEngine(logger)
	r.Use(count, countReads, keys.FailureGuard(func(c *gin.Context) {
		h.fail(c, l2l.FormatOf(c.Request.URL.Query()), http.StatusTooManyRequests, "Too many failed authentications: retry later")
	}))
	httpx.Probes(r, readiness(store, kc))
	h.routes(r)
	o := newOEE(h, store)
	o.routes(r)
	o.reportingRoutes(r, store)
	dash, err := newDashboard()
	if err != nil {
		return nil, err
	}
	dash.routes(r)

	return r, nil
}
