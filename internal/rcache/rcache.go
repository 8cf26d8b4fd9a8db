// Package rcache is a read-through cache for look-ups on hot paths (API
// keys, locations): an in-process bounded map with expiry, then Redis
// (shared by every instance; JSON values with a TTL), then a load function
// that asks the source of truth (ClickHouse).
//
// Both answers are cached: a found value for LocalTTL in process and
// RedisTTL in Redis, "no such key" for the shorter NegativeTTL in both, so
// a flood of unknown keys reaches the source at most once per key and
// NegativeTTL. In process, "no such key" lives in an LRU of its own
// (MaxNegative entries), so made-up keys never push out found values.
// Errors are never cached. Concurrent misses for one key share
// a single load (singleflight).
//
// Redis is an accelerator, not a dependency: when it fails the source is
// asked, the failure is counted and logged (at most once per 10 s), and
// Redis is skipped for a second, so that an outage costs one timeout per
// second instead of one per request.
package rcache

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
)

// Config holds a Cache's settings. Start from NewConfig: a zero field means
// zero, not the default (a TTL of 0 caches nothing in its layer).
type Config struct {
	LocalTTL      time.Duration // how long a found value stays in process (default 30 s)
	RedisTTL      time.Duration // how long a found value stays in Redis (default 5 min)
	NegativeTTL   time.Duration // how long "not found" is remembered, in both layers (default 10 s)
	RedisTimeout  time.Duration // bound of each Redis call; past it the source is asked (default 200 ms)
	LookupTimeout time.Duration // bound of one shared look-up through Redis and the source (default 5 s)
	MaxEntries    int           // bound of the in-process map of found values (default 100 000; at least 1)
	MaxNegative   int           // bound of the in-process LRU of "not found" answers (default 10 000; at least 1)
	// StaleFor, when positive, serves a found value up to StaleFor past its
	// LocalTTL from memory while one look-up refreshes it in the
	// background, so that requests do not wait for entries that expire
	// together (default 0: an expired value is looked up before it is
	// served). An entry forgotten or invalidated is never served stale.
	StaleFor  time.Duration
	Namespace string           // metric name prefix (default "takt")
	Now       func() time.Time // the clock (default time.Now; tests replace it)
}

// NewConfig returns the default settings.
func NewConfig() Config {
	return Config{
		LocalTTL: 30 * time.Second, RedisTTL: 5 * time.Minute, NegativeTTL: 10 * time.Second,
		RedisTimeout: 200 * time.Millisecond, LookupTimeout: 5 * time.Second,
		MaxEntries: 100_000, MaxNegative: 10_000, Namespace: "takt", Now: time.Now,
	}
}

// Spec says what a Cache holds and where it comes from.
type Spec[K comparable, V any] struct {
	// Subsystem names the cache in metric names and logs: "auth" gives
	// <namespace>_auth_cache_hits_total and so on.
	Subsystem string
	// RedisPrefix and Name(key) make the key's Redis key; Name also tells
	// concurrent look-ups apart, so distinct keys need distinct names.
	RedisPrefix string
	Name        func(K) string
	// Load asks the source of truth. An error that Is NotFound means there
	// is no such key: that answer is cached for NegativeTTL. Any other error
	// is returned as it is and not cached.
	Load     func(ctx context.Context, key K) (V, error)
	NotFound error
	// Valid, when set, vets a found value read from Redis, which other
	// processes write too: a value it rejects is ignored as if absent.
	Valid func(key K, v V) bool
	// Invalidated, when set, is called whenever entries are dropped
	// because they changed: Forget here, an invalidation message from
	// another process, or the reset after the subscription was
	// interrupted. A Load that keeps answers of its own drops them there.
	Invalidated func()
}

// Cache is a read-through cache from K to V. V must marshal to a JSON
// object without a "found" member (see encode). It is safe for concurrent
// use.
type Cache[K comparable, V any] struct {
	spec   Spec[K, V]
	cfg    Config
	rdb    *redis.Client // nil: no Redis layer
	logger *slog.Logger

	local    *localCache[K, V] // found values
	neg      *negCache[K]      // keys without a value
	flight   singleflight.Group
	redisLog logLimiter
	redisOff breaker

	hits           *prometheus.CounterVec // layer = local | redis
	hitLocal       prometheus.Counter     // hits{layer="local"}, resolved once: the hot path
	hitStale       prometheus.Counter     // hits{layer="stale"}: served past LocalTTL while refreshed
	misses         prometheus.Counter
	lookups        *prometheus.CounterVec // result = found | not_found | error
	redisFallbacks prometheus.Counter     // failed or skipped Redis calls
	invalidations  *prometheus.CounterVec // kind = message | reset
}

// New returns a Cache. rdb may be nil (no Redis layer). Metrics are
// registered with reg unless it is nil.
func New[K comparable, V any](s Spec[K, V], cfg Config, rdb *redis.Client, logger *slog.Logger, reg prometheus.Registerer) (*Cache[K, V], error) {
	cfg.MaxEntries = max(cfg.MaxEntries, 1)
	cfg.MaxNegative = max(cfg.MaxNegative, 1)
	counter := func(name, help string) prometheus.CounterOpts {
		return prometheus.CounterOpts{Namespace: cfg.Namespace, Subsystem: s.Subsystem, Name: name, Help: help}
	}
	c := &Cache[K, V]{
		spec: s, cfg: cfg, rdb: rdb, logger: logger.With("cache", s.Subsystem),
		local:    newLocalCache[K, V](cfg.MaxEntries),
		neg:      newNegCache[K](cfg.MaxNegative),
		redisLog: logLimiter{every: 10 * time.Second},
		redisOff: breaker{pause: time.Second},
		hits: prometheus.NewCounterVec(counter("cache_hits_total",
			"Look-ups answered from a cache, by layer (local, redis, stale: from memory past its TTL while refreshed)."), []string{"layer"}),
		misses: prometheus.NewCounter(counter("cache_misses_total",
			"Look-ups that found no cache entry and went to the store.")),
		lookups: prometheus.NewCounterVec(counter("store_lookups_total",
			"Look-ups in the store, by result (found, not_found, error)."), []string{"result"}),
		redisFallbacks: prometheus.NewCounter(counter("redis_fallbacks_total",
			"Redis calls that failed, or were skipped for a second after a failure; the store answered instead.")),
		invalidations: prometheus.NewCounterVec(counter("invalidations_total",
			"Invalidations received from other processes: one entry (message), or the whole cache after the subscription was interrupted (reset)."), []string{"kind"}),
	}
	c.hitLocal = c.hits.WithLabelValues("local")
	if cfg.StaleFor > 0 {
		c.hitStale = c.hits.WithLabelValues("stale")
	}
	c.local.grace = max(cfg.StaleFor, 0)
	if rdb != nil {
		// Ends when rdb is closed.
		go c.listen()
	}
	if reg != nil {
		for _, col := range []prometheus.Collector{c.hits, c.misses, c.lookups, c.redisFallbacks, c.invalidations} {
			if err := reg.Register(col); err != nil {
				return nil, fmt.Errorf("register %s metrics: %w", s.Subsystem, err)
			}
		}
	}
	return c, nil
}

// answer is the outcome of a look-up: a value, or that there is none.
type answer[V any] struct {
	v     V
	found bool
}

// Get returns the value for key and whether there is one: "not found" is
// an answer (found false, nil error), cached like a value. The error is
// Load's, or ctx's when the caller gives up first; the shared look-up then
// goes on for the other callers and fills the cache.
func (c *Cache[K, V]) Get(ctx context.Context, key K) (v V, found bool, err error) {
	if v, found, ok := c.Peek(key); ok {
		return v, found, nil
	}
	name := c.spec.Name(key)
	if c.cfg.StaleFor > 0 {
		if v, _, ok := c.local.getStale(key, c.cfg.Now(), c.cfg.StaleFor); ok {
			// Refresh in the background (one look-up per key, shared);
			// its answer replaces the entry, or removes it if the key is
			// gone. DoChan's channel is buffered: nobody need read it.
			c.hitStale.Inc()
			c.flight.DoChan(name, func() (any, error) { return c.lookup(ctx, key, name) })
			return v, true, nil
		}
	}
	ch := c.flight.DoChan(name, func() (any, error) { return c.lookup(ctx, key, name) })
	select {
	case r := <-ch:
		if r.Err != nil {
			return v, false, r.Err
		}
		a := r.Val.(answer[V])
		return a.v, a.found, nil
	case <-ctx.Done():
		return v, false, ctx.Err()
	}
}

// Peek answers from this process's memory only: ok is false when Get
// would have to ask Redis or the source.
func (c *Cache[K, V]) Peek(key K) (v V, found, ok bool) {
	now := c.cfg.Now()
	if v, ok := c.local.get(key, now); ok {
		c.hitLocal.Inc()
		return v, true, true
	}
	if c.neg.has(key, now) {
		c.hitLocal.Inc()
		return v, false, true
	}
	return v, false, false
}

// keep stores an answer in this process's memory.
func (c *Cache[K, V]) keep(key K, a answer[V]) {
	now := c.cfg.Now()
	if a.found {
		c.neg.remove(key)
		c.local.put(key, a.v, now, c.cfg.LocalTTL)
		return
	}
	c.local.remove(key)
	c.neg.put(key, now, c.cfg.NegativeTTL)
}

// lookup runs once per key at a time (singleflight). It is detached from
// the first caller's cancellation because other callers share its result.
func (c *Cache[K, V]) lookup(ctx context.Context, key K, name string) (answer[V], error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.LookupTimeout)
	defer cancel()
	if a, ok := c.redisGet(ctx, key, name); ok {
		c.hits.WithLabelValues("redis").Inc()
		c.keep(key, a)
		return a, nil
	}
	c.misses.Inc()
	v, err := c.spec.Load(ctx, key)
	var a answer[V]
	switch {
	case err == nil:
		c.lookups.WithLabelValues("found").Inc()
		a = answer[V]{v: v, found: true}
	case errors.Is(err, c.spec.NotFound):
		c.lookups.WithLabelValues("not_found").Inc()
	default:
		// The store failed too. A Redis that was skipped or slower than
		// RedisTimeout (a busy host) may still hold the answer: ask it
		// once more with what is left of the look-up's time, so that a
		// look-up goes on without ClickHouse while Redis has the entry.
		if c.rdb != nil {
			if a, ok, rerr := c.redisRead(ctx, key, name); rerr == nil && ok {
				c.hits.WithLabelValues("redis").Inc()
				c.keep(key, a)
				return a, nil
			}
		}
		c.lookups.WithLabelValues("error").Inc()
		return a, err
	}
	c.keep(key, a)
	c.redisSet(ctx, name, a, c.ttl(a.found, c.cfg.RedisTTL))
	return a, nil
}

// ttl returns positive for a found value, NegativeTTL for "not found".
func (c *Cache[K, V]) ttl(found bool, positive time.Duration) time.Duration {
	if found {
		return positive
	}
	return c.cfg.NegativeTTL
}

func (c *Cache[K, V]) redisGet(ctx context.Context, key K, name string) (answer[V], bool) {
	if c.rdb == nil {
		return answer[V]{}, false
	}
	if c.redisOff.open(c.cfg.Now()) {
		c.redisFallbacks.Inc()
		return answer[V]{}, false
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.RedisTimeout)
	defer cancel()
	a, ok, err := c.redisRead(ctx, key, name)
	if err != nil {
		c.redisFailed("get", err)
	}
	return a, ok
}

// redisRead reads and decodes key's Redis entry; the error is the call's
// (an absent or unusable entry is no answer, not an error).
func (c *Cache[K, V]) redisRead(ctx context.Context, key K, name string) (answer[V], bool, error) {
	b, err := c.rdb.Get(ctx, c.spec.RedisPrefix+name).Bytes()
	if errors.Is(err, redis.Nil) {
		return answer[V]{}, false, nil
	}
	if err != nil {
		return answer[V]{}, false, err
	}
	a, err := decode[V](b)
	if err == nil && a.found && c.spec.Valid != nil && !c.spec.Valid(key, a.v) {
		err = errors.New("value does not match its key")
	}
	if err != nil {
		// A foreign or older value: ignore it; the source's answer replaces it.
		c.logger.Warn("ignoring bad redis entry", "err", err)
		return answer[V]{}, false, nil
	}
	return a, true, nil
}

func (c *Cache[K, V]) redisSet(ctx context.Context, name string, a answer[V], ttl time.Duration) {
	if c.rdb == nil || ttl <= 0 || c.redisOff.open(c.cfg.Now()) {
		return
	}
	b, err := encode(a)
	if err != nil {
		c.logger.Error("cannot encode value for redis", "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.RedisTimeout)
	defer cancel()
	if err := c.rdb.Set(ctx, c.spec.RedisPrefix+name, b, ttl).Err(); err != nil {
		c.redisFailed("set", err)
	}
}

func (c *Cache[K, V]) redisFailed(op string, err error) {
	c.redisFallbacks.Inc()
	c.redisOff.trip(c.cfg.Now())
	if c.redisLog.allow(c.cfg.Now()) {
		c.logger.Warn("redis failed, using the store", "op", op, "err", err)
	}
}

// Forget drops the cached answer for key from this process and from Redis,
// and tells the other processes sharing Redis to drop theirs (see
// invalidate.go); those that miss the message drop it within LocalTTL
// (NegativeTTL for "not found").
func (c *Cache[K, V]) Forget(ctx context.Context, key K) error {
	c.local.remove(key)
	c.neg.remove(key)
	c.invalidated()
	if c.rdb == nil {
		return nil
	}
	name := c.spec.Name(key)
	if err := c.rdb.Del(ctx, c.spec.RedisPrefix+name).Err(); err != nil {
		return err
	}
	return c.publish(ctx, name)
}

// forgetName drops the in-process entry whose name is name.
func (c *Cache[K, V]) forgetName(name string) {
	match := func(k K) bool { return c.spec.Name(k) == name }
	c.local.removeIf(match)
	c.neg.removeIf(match)
	c.invalidated()
}

func (c *Cache[K, V]) invalidated() {
	if c.spec.Invalidated != nil {
		c.spec.Invalidated()
	}
}

// encode returns the Redis form of an answer: {"found":false}, or V's JSON
// object with "found":true put first. This is the form the auth and catalog
// packages wrote before they shared this package, kept so that processes of
// either version can share Redis during a rolling deploy.
func encode[V any](a answer[V]) ([]byte, error) {
	if !a.found {
		return []byte(`{"found":false}`), nil
	}
	b, err := json.Marshal(a.v)
	if err != nil {
		return nil, err
	}
	if len(b) < 2 || b[0] != '{' {
		return nil, fmt.Errorf("%T does not marshal to a JSON object", a.v)
	}
	if len(b) == 2 {
		return []byte(`{"found":true}`), nil
	}
	return append([]byte(`{"found":true,`), b[1:]...), nil
}

// decode reverses encode.
func decode[V any](b []byte) (answer[V], error) {
	var head struct {
		Found bool `json:"found"`
	}
	if err := json.Unmarshal(b, &head); err != nil || !head.Found {
		return answer[V]{}, err
	}
	var v V
	if err := json.Unmarshal(b, &v); err != nil {
		return answer[V]{}, err
	}
	return answer[V]{v: v, found: true}, nil
}
