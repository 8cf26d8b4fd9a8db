// Package catalog resolves a location's external id to the location (line
// or machine, its site and the site's time zone) on the ingest hot path.
//
// Look-ups go through an in-process cache, then Redis (shared by every
// instance), then ClickHouse, the source of truth. Unknown ids are cached
// too, briefly (2 s by default), so that a device reporting against a
// location that does not exist costs the store one query per NegativeTTL,
// while a newly created location works almost at once. Concurrent misses
// for one id share one look-up.
package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"

	"github.com/takt/takt/internal/chstore"
)

// ErrNotFound means no live location has that external id.
var ErrNotFound = errors.New("location not found")

// LocationLookup finds the live location with an external id
// (case-sensitive) and returns an error wrapping chstore.ErrNotFound when
// there is none. *chstore.Store implements it.
type LocationLookup interface {
	LocationByExternalID(ctx context.Context, externalID string) (chstore.Location, error)
}

// entry is what the caches hold for one external id.
type entry struct {
	Found    bool             `json:"found"`
	Location chstore.Location `json:"location,omitzero"`
}

// Option tunes a Catalog.
type Option func(*options)

type options struct {
	localTTL, redisTTL, negativeTTL time.Duration
	redisTimeout, lookupTimeout     time.Duration
	maxEntries                      int
	namespace                       string
	now                             func() time.Time
}

// LocalTTL sets how long a found location stays in the in-process cache
// (default 30 s).
func LocalTTL(d time.Duration) Option { return func(o *options) { o.localTTL = d } }

// RedisTTL sets how long a found location stays in Redis (default 5 min).
func RedisTTL(d time.Duration) Option { return func(o *options) { o.redisTTL = d } }

// NegativeTTL sets how long an unknown id is remembered, in process and in
// Redis (default 2 s).
func NegativeTTL(d time.Duration) Option { return func(o *options) { o.negativeTTL = d } }

// RedisTimeout bounds each Redis call (default 200 ms).
func RedisTimeout(d time.Duration) Option { return func(o *options) { o.redisTimeout = d } }

// LookupTimeout bounds one shared look-up through Redis and the store
// (default 5 s).
func LookupTimeout(d time.Duration) Option { return func(o *options) { o.lookupTimeout = d } }

// MaxEntries bounds the in-process cache (default 100 000 ids).
func MaxEntries(n int) Option { return func(o *options) { o.maxEntries = n } }

// Namespace sets the metric name prefix (default "takt"): metrics are named
// <namespace>_catalog_*.
func Namespace(ns string) Option { return func(o *options) { o.namespace = ns } }

// Clock replaces time.Now (tests).
func Clock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// Catalog is the cached map from external id to location. It is safe for
// concurrent use.
type Catalog struct {
	store  LocationLookup
	rdb    *redis.Client // nil: no Redis layer
	prefix string        // e.g. "takt:location:"
	logger *slog.Logger
	opt    options

	local    *localCache[string, entry]
	flight   singleflight.Group
	redisLog logLimiter
	redisOff breaker

	hits           *prometheus.CounterVec // layer = local | redis
	hitLocal       prometheus.Counter     // hits{layer="local"}, resolved once
	misses         prometheus.Counter
	lookups        *prometheus.CounterVec // result = found | not_found | error
	redisFallbacks prometheus.Counter     // failed or skipped Redis calls
}

// New returns a Catalog over store. rdb may be nil (no Redis layer); prefix
// is the deployment's Redis key prefix (TAKT_REDIS_PREFIX): entries live at
// <prefix>location:<external id>. Metrics are registered with reg unless it
// is nil.
func New(store LocationLookup, rdb *redis.Client, prefix string, logger *slog.Logger, reg prometheus.Registerer, opts ...Option) (*Catalog, error) {
	o := options{
		localTTL: 30 * time.Second, redisTTL: 5 * time.Minute, negativeTTL: 2 * time.Second,
		redisTimeout: 200 * time.Millisecond, lookupTimeout: 5 * time.Second,
		maxEntries: 100_000, namespace: "takt", now: time.Now,
	}
	for _, f := range opts {
		f(&o)
	}
	if o.maxEntries < 1 {
		o.maxEntries = 1
	}
	c := &Catalog{
		store: store, rdb: rdb, prefix: prefix + "location:", logger: logger, opt: o,
		local:    newLocalCache[string, entry](o.maxEntries),
		redisLog: logLimiter{every: 10 * time.Second},
		redisOff: breaker{pause: time.Second},
		hits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: o.namespace, Name: "catalog_cache_hits_total",
			Help: "Location look-ups answered from a cache, by layer (local, redis).",
		}, []string{"layer"}),
		misses: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: o.namespace, Name: "catalog_cache_misses_total",
			Help: "Location look-ups that found no cache entry and went to the store.",
		}),
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: o.namespace, Name: "catalog_store_lookups_total",
			Help: "Location look-ups in the store, by result (found, not_found, error).",
		}, []string{"result"}),
		redisFallbacks: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: o.namespace, Name: "catalog_redis_fallbacks_total",
			Help: "Redis calls of the location cache that failed, or were skipped for a second after a failure; the store answered instead.",
		}),
	}
	c.hitLocal = c.hits.WithLabelValues("local")
	if reg != nil {
		for _, col := range []prometheus.Collector{c.hits, c.misses, c.lookups, c.redisFallbacks} {
			if err := reg.Register(col); err != nil {
				return nil, fmt.Errorf("register catalog metrics: %w", err)
			}
		}
	}
	return c, nil
}

// Lookup returns the location with that external id (case-sensitive),
// ErrNotFound when there is none, or another error when the store could not
// be asked.
func (c *Catalog) Lookup(ctx context.Context, externalID string) (chstore.Location, error) {
	if externalID == "" {
		return chstore.Location{}, ErrNotFound
	}
	if e, ok := c.local.get(externalID, c.opt.now()); ok {
		c.hitLocal.Inc()
		return answer(e)
	}
	ch := c.flight.DoChan(externalID, func() (any, error) { return c.lookup(ctx, externalID) })
	select {
	case r := <-ch:
		if r.Err != nil {
			return chstore.Location{}, r.Err
		}
		return answer(r.Val.(entry))
	case <-ctx.Done():
		return chstore.Location{}, fmt.Errorf("look up location %q: %w", externalID, ctx.Err())
	}
}

func answer(e entry) (chstore.Location, error) {
	if !e.Found {
		return chstore.Location{}, ErrNotFound
	}
	return e.Location, nil
}

// lookup runs once per id at a time (singleflight), detached from the first
// caller's cancellation because other callers share its result.
func (c *Catalog) lookup(ctx context.Context, externalID string) (entry, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opt.lookupTimeout)
	defer cancel()
	if e, ok := c.redisGet(ctx, externalID); ok {
		c.hits.WithLabelValues("redis").Inc()
		ttl := c.opt.localTTL
		if !e.Found {
			ttl = c.opt.negativeTTL
		}
		c.local.put(externalID, e, c.opt.now(), ttl)
		return e, nil
	}
	c.misses.Inc()
	loc, err := c.store.LocationByExternalID(ctx, externalID)
	switch {
	case errors.Is(err, chstore.ErrNotFound):
		c.lookups.WithLabelValues("not_found").Inc()
		e := entry{}
		c.local.put(externalID, e, c.opt.now(), c.opt.negativeTTL)
		c.redisSet(ctx, externalID, e, c.opt.negativeTTL)
		return e, nil
	case err != nil:
		c.lookups.WithLabelValues("error").Inc()
		return entry{}, fmt.Errorf("look up location %q: %w", externalID, err)
	}
	c.lookups.WithLabelValues("found").Inc()
	e := entry{Found: true, Location: loc}
	c.local.put(externalID, e, c.opt.now(), c.opt.localTTL)
	c.redisSet(ctx, externalID, e, c.opt.redisTTL)
	return e, nil
}

func (c *Catalog) redisGet(ctx context.Context, externalID string) (entry, bool) {
	if c.rdb == nil {
		return entry{}, false
	}
	if c.redisOff.open(c.opt.now()) {
		c.redisFallbacks.Inc()
		return entry{}, false
	}
	ctx, cancel := context.WithTimeout(ctx, c.opt.redisTimeout)
	defer cancel()
	b, err := c.rdb.Get(ctx, c.prefix+externalID).Bytes()
	if errors.Is(err, redis.Nil) {
		return entry{}, false
	}
	if err != nil {
		c.redisFailed("get", err)
		return entry{}, false
	}
	var e entry
	if err := json.Unmarshal(b, &e); err != nil || (e.Found && e.Location.ExternalID != externalID) {
		c.logger.Warn("location cache: ignoring bad redis entry", "external_id", externalID, "err", err)
		return entry{}, false
	}
	return e, true
}

func (c *Catalog) redisSet(ctx context.Context, externalID string, e entry, ttl time.Duration) {
	if c.rdb == nil || ttl <= 0 || c.redisOff.open(c.opt.now()) {
		return
	}
	b, err := json.Marshal(e)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, c.opt.redisTimeout)
	defer cancel()
	if err := c.rdb.Set(ctx, c.prefix+externalID, b, ttl).Err(); err != nil {
		c.redisFailed("set", err)
	}
}

func (c *Catalog) redisFailed(op string, err error) {
	c.redisFallbacks.Inc()
	c.redisOff.trip(c.opt.now())
	if c.redisLog.allow(c.opt.now()) {
		c.logger.Warn("location cache: redis failed, using the store", "op", op, "err", err)
	}
}

// Forget drops the cached answer for an external id from this process and
// from Redis. Call it after creating, changing or deleting a location;
// other instances drop their in-process copy within LocalTTL.
func (c *Catalog) Forget(ctx context.Context, externalID string) error {
	c.local.remove(externalID)
	if c.rdb == nil {
		return nil
	}
	if err := c.rdb.Del(ctx, c.prefix+externalID).Err(); err != nil {
		return fmt.Errorf("forget location %q: %w", externalID, err)
	}
	return nil
}
