package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"

	"github.com/takt/takt/internal/chstore"
)

// Scopes an API key may carry.
const (
	ScopeIngest = "ingest" // report parts to the ingestor
	ScopeRead   = "read"   // read record areas and aggregates
	ScopeWrite  = "write"  // create, update and delete master data
	ScopeAdmin  = "admin"  // manage users and keys
)

// ErrInvalidKey means the key is missing, malformed, unknown, inactive, or
// belongs to an inactive user. Callers answer it with 401 and nothing more:
// which of these it was is not the caller's business.
var ErrInvalidKey = errors.New("invalid API key")

// KeyLookup finds the active key with the given hash (hex SHA-256) and its
// active user. It returns an error wrapping chstore.ErrNotFound when there
// is none. *chstore.Store implements it.
type KeyLookup interface {
	KeyByHash(ctx context.Context, hash string) (chstore.KeyOwner, error)
}

// Principal is who an authenticated request acts for. Its slices are shared
// with the cache: treat them as read-only.
type Principal struct {
	KeyID    uint64   `json:"key_id"`
	Prefix   string   `json:"prefix"` // the key's loggable prefix
	UserID   uint64   `json:"user_id"`
	Username string   `json:"username"`
	Admin    bool     `json:"admin"`
	Sites    []uint64 `json:"sites"`
	Scopes   []string `json:"scopes"`
}

// HasScope reports whether the key carries scope s.
func (p Principal) HasScope(s string) bool { return slices.Contains(p.Scopes, s) }

// CanSeeSite reports whether site id is one of the user's sites. Admin does
// not widen this: callers that give admins every site check Admin
// themselves.
func (p Principal) CanSeeSite(id uint64) bool { return slices.Contains(p.Sites, id) }

// WellFormed reports whether key has the shape NewKey makes ("takt_" and 40
// lowercase hex digits). Anything else cannot be a key, so it is rejected
// before any cache or store is asked.
func WellFormed(key string) bool {
	const prefix = "takt_"
	if len(key) != len(prefix)+40 || key[:len(prefix)] != prefix {
		return false
	}
	for i := len(prefix); i < len(key); i++ {
		c := key[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// entry is what the caches hold for one key hash: the principal, or the
// knowledge that there is no such key.
type entry struct {
	Found     bool      `json:"found"`
	Hash      string    `json:"hash,omitempty"` // hex SHA-256 the store returned
	Principal Principal `json:"principal,omitzero"`
}

// Option tunes an Authenticator.
type Option func(*options)

type options struct {
	localTTL, redisTTL, negativeTTL time.Duration
	redisTimeout, lookupTimeout     time.Duration
	maxEntries                      int
	namespace                       string
	now                             func() time.Time
}

// LocalTTL sets how long a found key stays in the in-process cache
// (default 30 s). It bounds how long a revoked key keeps working on an
// instance that did not see the revocation.
func LocalTTL(d time.Duration) Option { return func(o *options) { o.localTTL = d } }

// RedisTTL sets how long a found key stays in Redis (default 5 min).
func RedisTTL(d time.Duration) Option { return func(o *options) { o.redisTTL = d } }

// NegativeTTL sets how long "no such key" is remembered, in process and in
// Redis (default 10 s). A key created after a failed attempt works at the
// latest this long after it.
func NegativeTTL(d time.Duration) Option { return func(o *options) { o.negativeTTL = d } }

// RedisTimeout bounds each Redis call (default 200 ms); past it the
// Authenticator goes on to ClickHouse.
func RedisTimeout(d time.Duration) Option { return func(o *options) { o.redisTimeout = d } }

// LookupTimeout bounds one look-up through Redis and the store (default
// 5 s). The look-up is shared by every caller waiting for the same key, so
// it does not end when the first caller gives up.
func LookupTimeout(d time.Duration) Option { return func(o *options) { o.lookupTimeout = d } }

// MaxEntries bounds the in-process cache (default 100 000 keys).
func MaxEntries(n int) Option { return func(o *options) { o.maxEntries = n } }

// Namespace sets the metric name prefix (default "takt"): metrics are named
// <namespace>_auth_*, e.g. takt_ingestor_auth_cache_hits_total for
// Namespace("takt_ingestor").
func Namespace(ns string) Option { return func(o *options) { o.namespace = ns } }

// Clock replaces time.Now (tests).
func Clock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// Authenticator checks API keys through three layers: an in-process cache,
// Redis (shared by every instance), and the store, which is the source of
// truth. Unknown keys are cached too (for a shorter time), and concurrent
// misses for one key share a single look-up, so a flood of bad keys reaches
// the store at most once per key and NegativeTTL.
//
// Redis is an accelerator, not a dependency: when it fails the store is
// asked, the failure is counted and logged, and nothing is let through that
// the store would not let through. It is safe for concurrent use.
type Authenticator struct {
	store  KeyLookup
	rdb    *redis.Client // nil: no Redis layer
	prefix string        // Redis key prefix, e.g. "takt:apikey:"
	logger *slog.Logger
	opt    options

	local    *localCache[[sha256.Size]byte, entry]
	flight   singleflight.Group
	redisLog logLimiter
	redisOff breaker

	hits           *prometheus.CounterVec // layer = local | redis
	hitLocal       prometheus.Counter     // hits{layer="local"}, resolved once
	misses         prometheus.Counter
	lookups        *prometheus.CounterVec // result = found | not_found | error
	redisFallbacks prometheus.Counter     // failed or skipped Redis calls
	rejected       prometheus.Counter
}

// New returns an Authenticator over store. rdb may be nil (no Redis layer);
// prefix is the Redis key prefix of the deployment (TAKT_REDIS_PREFIX, e.g.
// "takt:"): entries live at <prefix>apikey:<sha256 hex>. Metrics are
// registered with reg unless it is nil.
func New(store KeyLookup, rdb *redis.Client, prefix string, logger *slog.Logger, reg prometheus.Registerer, opts ...Option) (*Authenticator, error) {
	o := options{
		localTTL: 30 * time.Second, redisTTL: 5 * time.Minute, negativeTTL: 10 * time.Second,
		redisTimeout: 200 * time.Millisecond, lookupTimeout: 5 * time.Second,
		maxEntries: 100_000, namespace: "takt", now: time.Now,
	}
	for _, f := range opts {
		f(&o)
	}
	if o.maxEntries < 1 {
		o.maxEntries = 1
	}
	a := &Authenticator{
		store: store, rdb: rdb, prefix: prefix + "apikey:", logger: logger, opt: o,
		local:    newLocalCache[[sha256.Size]byte, entry](o.maxEntries),
		redisLog: logLimiter{every: 10 * time.Second},
		redisOff: breaker{pause: time.Second},
		hits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: o.namespace, Name: "auth_cache_hits_total",
			Help: "API key checks answered from a cache, by layer (local, redis).",
		}, []string{"layer"}),
		misses: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: o.namespace, Name: "auth_cache_misses_total",
			Help: "API key checks that found no cache entry and went to the store.",
		}),
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: o.namespace, Name: "auth_store_lookups_total",
			Help: "API key look-ups in the store, by result (found, not_found, error).",
		}, []string{"result"}),
		redisFallbacks: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: o.namespace, Name: "auth_redis_fallbacks_total",
			Help: "Redis calls of the API key cache that failed, or were skipped for a second after a failure; the store answered instead.",
		}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: o.namespace, Name: "auth_malformed_keys_total",
			Help: "API keys rejected for their shape, without any look-up.",
		}),
	}
	a.hitLocal = a.hits.WithLabelValues("local")
	if reg != nil {
		for _, c := range []prometheus.Collector{a.hits, a.misses, a.lookups, a.redisFallbacks, a.rejected} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register auth metrics: %w", err)
			}
		}
	}
	return a, nil
}

// Authenticate returns the principal of key, ErrInvalidKey when the key is
// not valid, or another error when the store could not be asked (callers
// answer that with 500: an unverified key is never accepted).
func (a *Authenticator) Authenticate(ctx context.Context, key string) (Principal, error) {
	if !WellFormed(key) {
		a.rejected.Inc()
		return Principal{}, ErrInvalidKey
	}
	sum := sha256.Sum256([]byte(key))
	if e, ok := a.local.get(sum, a.opt.now()); ok {
		a.hitLocal.Inc()
		return check(e, sum)
	}
	hash := hex.EncodeToString(sum[:])
	ch := a.flight.DoChan(hash, func() (any, error) { return a.lookup(ctx, sum, hash) })
	select {
	case r := <-ch:
		if r.Err != nil {
			return Principal{}, r.Err
		}
		return check(r.Val.(entry), sum)
	case <-ctx.Done():
		return Principal{}, fmt.Errorf("authenticate key %s: %w", Prefix(key), ctx.Err())
	}
}

// check turns a cache entry into the answer, comparing the stored hash with
// the presented key's in constant time.
func check(e entry, sum [sha256.Size]byte) (Principal, error) {
	if !e.Found {
		return Principal{}, ErrInvalidKey
	}
	var want [sha256.Size]byte
	if n, err := hex.Decode(want[:], []byte(e.Hash)); err != nil || n != sha256.Size {
		return Principal{}, ErrInvalidKey
	}
	if subtle.ConstantTimeCompare(want[:], sum[:]) != 1 {
		return Principal{}, ErrInvalidKey
	}
	return e.Principal, nil
}

// lookup runs once per key hash at a time (singleflight). It is detached from
// the first caller's cancellation because other callers share its result.
func (a *Authenticator) lookup(ctx context.Context, sum [sha256.Size]byte, hash string) (entry, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.opt.lookupTimeout)
	defer cancel()
	if e, ok := a.redisGet(ctx, hash); ok {
		a.hits.WithLabelValues("redis").Inc()
		ttl := a.opt.localTTL
		if !e.Found {
			ttl = a.opt.negativeTTL
		}
		a.local.put(sum, e, a.opt.now(), ttl)
		return e, nil
	}
	a.misses.Inc()
	owner, err := a.store.KeyByHash(ctx, hash)
	switch {
	case errors.Is(err, chstore.ErrNotFound):
		a.lookups.WithLabelValues("not_found").Inc()
		e := entry{}
		a.local.put(sum, e, a.opt.now(), a.opt.negativeTTL)
		a.redisSet(ctx, hash, e, a.opt.negativeTTL)
		return e, nil
	case err != nil:
		a.lookups.WithLabelValues("error").Inc()
		return entry{}, fmt.Errorf("look up api key: %w", err)
	}
	a.lookups.WithLabelValues("found").Inc()
	e := entry{Found: true, Hash: owner.Hash, Principal: Principal{
		KeyID: owner.KeyID, Prefix: owner.Prefix, UserID: owner.UserID, Username: owner.Username,
		Admin: owner.Admin, Sites: owner.Sites, Scopes: owner.Scopes,
	}}
	a.local.put(sum, e, a.opt.now(), a.opt.localTTL)
	a.redisSet(ctx, hash, e, a.opt.redisTTL)
	return e, nil
}

func (a *Authenticator) redisGet(ctx context.Context, hash string) (entry, bool) {
	if a.rdb == nil {
		return entry{}, false
	}
	if a.redisOff.open(a.opt.now()) {
		a.redisFallbacks.Inc()
		return entry{}, false
	}
	ctx, cancel := context.WithTimeout(ctx, a.opt.redisTimeout)
	defer cancel()
	b, err := a.rdb.Get(ctx, a.prefix+hash).Bytes()
	if errors.Is(err, redis.Nil) {
		return entry{}, false
	}
	if err != nil {
		a.redisFailed("get", err)
		return entry{}, false
	}
	var e entry
	if err := json.Unmarshal(b, &e); err != nil {
		// A foreign or older value: ignore it; the store's answer replaces it.
		a.logger.Warn("api key cache: undecodable redis entry", "err", err)
		return entry{}, false
	}
	return e, true
}

func (a *Authenticator) redisSet(ctx context.Context, hash string, e entry, ttl time.Duration) {
	if a.rdb == nil || ttl <= 0 || a.redisOff.open(a.opt.now()) {
		return
	}
	b, err := json.Marshal(e)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, a.opt.redisTimeout)
	defer cancel()
	if err := a.rdb.Set(ctx, a.prefix+hash, b, ttl).Err(); err != nil {
		a.redisFailed("set", err)
	}
}

func (a *Authenticator) redisFailed(op string, err error) {
	a.redisFallbacks.Inc()
	a.redisOff.trip(a.opt.now())
	if a.redisLog.allow(a.opt.now()) {
		a.logger.Warn("api key cache: redis failed, using the store", "op", op, "err", err)
	}
}

// Forget drops the cached answer for a key hash (hex SHA-256) from this
// process and from Redis. Call it after changing or revoking a key; other
// instances drop their in-process copy within LocalTTL.
func (a *Authenticator) Forget(ctx context.Context, hash string) error {
	var sum [sha256.Size]byte
	if n, err := hex.Decode(sum[:], []byte(hash)); err == nil && n == sha256.Size {
		a.local.remove(sum)
	}
	if a.rdb == nil {
		return nil
	}
	if err := a.rdb.Del(ctx, a.prefix+hash).Err(); err != nil {
		return fmt.Errorf("forget api key %s…: %w", hash[:min(8, len(hash))], err)
	}
	return nil
}
