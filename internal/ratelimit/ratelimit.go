// Package ratelimit limits how fast each API key may call Takt: a token
// bucket per key, kept in Redis and updated by one Lua script, so every
// replica of every service draws from the same bucket atomically.
//
// A key's bucket holds at most Burst tokens and refills at Rate tokens per
// second; a request takes one token per part it carries (one for a record
// API call). The limit is a property of each key (apikeys.rate_limit and
// rate_burst; 0 means the configured default). Time comes from Redis
// (TIME), so replicas with skewed clocks agree.
//
// Redis is not allowed to stop production: when it fails, Allow lets the
// request through (fails open), counts it, logs at most once per 10 s, and
// skips Redis for a second so an outage costs one timeout per second, not
// one per request. Callers authenticate first: an unauthenticated request
// never reaches the limiter, so failing open never admits one.
//
// A round trip to Redis per request would cost the ingestor a third of its
// CPU, so each process takes tokens in leases: up to Rate × LeaseWindow
// tokens at once (never more than the burst), spends them locally, and
// returns to Redis when they run out or LeaseWindow has passed (unspent
// tokens then lapse). N replicas can so admit at most N leases ahead of the
// bucket; a slow key (a lease of one token) is limited exactly.
//
// The same script notes when each key was last used; a UsageCopier copies
// that to ClickHouse now and then (the apikeys area's last_used).
package ratelimit

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/takt/takt/internal/config"
	"github.com/takt/takt/internal/redisx"
)

// Config holds the limiter's settings.
type Config struct {
	// DefaultRate and DefaultBurst apply to keys whose own limit is 0
	// (TAKT_RATE_LIMIT, TAKT_RATE_BURST).
	DefaultRate  float64
	DefaultBurst float64
	// RedisTimeout bounds one call (TAKT_RATE_REDIS_TIMEOUT).
	RedisTimeout time.Duration
	// LimitsTTL is how often the keys' own limits are read again
	// (TAKT_RATE_LIMITS_TTL).
	LimitsTTL time.Duration
	// Disabled turns limiting off (TAKT_RATE_DISABLED), and with it the
	// record of when each key was last used.
	Disabled bool
	// LeaseWindow sizes the tokens a process takes from Redis at once:
	// Rate × LeaseWindow, at most the burst (TAKT_RATE_LEASE_WINDOW). 0
	// asks Redis for every request.
	LeaseWindow time.Duration
}

// ConfigFromEnv reads TAKT_RATE_* with the documented defaults: 1000
// tokens per second, bursts of 2000.
func ConfigFromEnv(e *config.Env) Config {
	return Config{
		DefaultRate:  e.Float("RATE_LIMIT", 1000),
		DefaultBurst: e.Float("RATE_BURST", 2000),
		RedisTimeout: e.Duration("RATE_REDIS_TIMEOUT", 100*time.Millisecond),
		LimitsTTL:    e.Duration("RATE_LIMITS_TTL", 10*time.Second),
		Disabled:     e.Bool("RATE_DISABLED", false),
		LeaseWindow:  e.Duration("RATE_LEASE_WINDOW", 50*time.Millisecond),
	}
}

// Validate reports every problem with c.
func (c Config) Validate() error {
	var p config.Problems
	p.Addf(!(c.DefaultRate > 0), "TAKT_RATE_LIMIT=%v: must be positive", c.DefaultRate)
	p.Addf(!(c.DefaultBurst >= 1), "TAKT_RATE_BURST=%v: must be at least 1", c.DefaultBurst)
	p.Addf(c.RedisTimeout <= 0, "TAKT_RATE_REDIS_TIMEOUT=%s: must be positive", c.RedisTimeout)
	p.Addf(c.LimitsTTL <= 0, "TAKT_RATE_LIMITS_TTL=%s: must be positive", c.LimitsTTL)
	p.Addf(c.LeaseWindow < 0 || c.LeaseWindow > time.Second, "TAKT_RATE_LEASE_WINDOW=%s: must be between 0 and 1s", c.LeaseWindow)
	return p.Err()
}

// Limit is a key's own limit; zero fields mean the default.
type Limit struct {
	Rate  float64
	Burst float64
}

// LimitSource reads every key's own limit (*chstore.Store).
type LimitSource interface {
	KeyRateLimits(ctx context.Context) (map[uint64]Limit, error)
}

// Decision is the answer for one request.
type Decision struct {
	Allowed bool
	// RetryAfter is when enough tokens will be there (when not Allowed).
	RetryAfter time.Duration
	// FailedOpen is set when Redis could not be asked and the request was
	// let through.
	FailedOpen bool
}

// bucket is the token-bucket script. KEYS[1] the bucket, KEYS[2] the set of
// last uses; ARGV rate, burst, lease, ttl, key id, cost. It takes up to
// lease tokens when at least cost are there and returns {tokens granted
// (0: limited), seconds to wait for cost tokens}. Tokens and the time of the last request live in a hash;
// the time of the last request is also the key's score in the set of last
// uses, which UsageCopier copies to ClickHouse.
const bucket = `
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = math.min(tonumber(ARGV[6]), burst)
local lease = math.max(cost, math.min(tonumber(ARGV[3]), burst))
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1])
local ts = tonumber(b[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local allowed = 0
local wait = 0
if tokens >= cost then
  allowed = math.floor(math.min(tokens, lease))
  tokens = tokens - allowed
else
  wait = (cost - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
redis.call('ZADD', KEYS[2], now, ARGV[5])
return {allowed, tostring(wait)}
`

// bucketTTL keeps a bucket (and so the key's last use) this long after its
// last request.
const bucketTTL = 30 * 24 * time.Hour

// Limiter is safe for concurrent use.
type Limiter struct {
	cfg    Config
	rdb    *redis.Client
	keys   redisx.Keys
	src    LimitSource
	logger *slog.Logger
	script *redis.Script

	limits    atomic.Pointer[map[uint64]Limit]
	firstLoad sync.Once
	loading   atomic.Bool
	loadedAt  atomic.Int64 // unix nanoseconds

	offUntil atomic.Int64 // Redis skipped before this (unix nanoseconds)
	logMu    sync.Mutex
	lastLog  time.Time

	leases sync.Map // key id -> *lease

	decisions  *prometheus.CounterVec // result = allowed | limited | failed_open
	redisCalls prometheus.Counter
}

// lease is the tokens of one key this process holds. mu also makes the
// requests of a key that find the lease empty wait for one Redis call
// instead of each making its own.
type lease struct {
	mu      sync.Mutex
	tokens  int64
	expires time.Time
	// until: the bucket was empty; requests before then are limited here
	// without asking Redis (a throttled flood costs Redis nothing).
	until time.Time
}

// New returns a Limiter. prefix is the deployment's Redis key prefix;
// buckets live at redisx.Keys.RateLimitBucket.
// namespace prefixes the metric names (e.g. "takt_ingestor" gives
// takt_ingestor_ratelimit_decisions_total); they are registered with reg
// unless it is nil.
func New(cfg Config, rdb *redis.Client, prefix string, src LimitSource, logger *slog.Logger, reg prometheus.Registerer, namespace string) (*Limiter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	l := &Limiter{cfg: cfg, rdb: rdb, keys: redisx.NewKeys(prefix), src: src, logger: logger.With("component", "ratelimit"),
		script: redis.NewScript(bucket),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "ratelimit_decisions_total",
			Help: "Rate-limit decisions, by result (allowed, limited, failed_open: Redis failed and the request was let through).",
		}, []string{"result"}),
		redisCalls: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "ratelimit_redis_calls_total",
			Help: "Token leases asked of Redis.",
		})}
	empty := map[uint64]Limit{}
	l.limits.Store(&empty)
	if reg != nil {
		for _, c := range []prometheus.Collector{l.decisions, l.redisCalls} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register ratelimit metrics: %w", err)
			}
		}
	}
	return l, nil
}

// BucketKey returns the Redis key of a key's bucket.
func (l *Limiter) BucketKey(keyID uint64) string { return l.keys.RateLimitBucket(keyID) }

// firstLoadTimeout bounds the wait of the first requests for the keys'
// own limits.
const firstLoadTimeout = 2 * time.Second

// limitOf returns the effective limit of a key. The first call reads the
// keys' own limits (concurrent first calls wait for it), so that a key's
// limit holds from its first request after start; later calls refresh
// them in the background when they are older than LimitsTTL.
func (l *Limiter) limitOf(keyID uint64) Limit {
	if l.src != nil {
		l.firstLoad.Do(func() {
			l.loading.Store(true)
			l.load(firstLoadTimeout)
		})
		if time.Since(time.Unix(0, l.loadedAt.Load())) > l.cfg.LimitsTTL && l.loading.CompareAndSwap(false, true) {
			go l.load(10 * time.Second)
		}
	}
	lim := (*l.limits.Load())[keyID]
	if lim.Rate <= 0 {
		lim.Rate = l.cfg.DefaultRate
	}
	if lim.Burst <= 0 {
		lim.Burst = math.Max(l.cfg.DefaultBurst, lim.Rate)
	}
	return lim
}

// load reads the keys' own limits; the caller has set loading.
func (l *Limiter) load(timeout time.Duration) {
	defer l.loading.Store(false)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	m, err := l.src.KeyRateLimits(ctx)
	l.loadedAt.Store(time.Now().UnixNano())
	if err != nil {
		l.logger.Warn("read key rate limits", "err", err)
		return
	}
	l.limits.Store(&m)
}

// Allow takes cost tokens from the key's bucket and records the key's
// use (see UsageCopier).
func (l *Limiter) Allow(ctx context.Context, keyID uint64, cost int) Decision {
	if l.cfg.Disabled {
		return Decision{Allowed: true}
	}
	now := time.Now()
	if now.UnixNano() < l.offUntil.Load() {
		l.decisions.WithLabelValues("failed_open").Inc()
		return Decision{Allowed: true, FailedOpen: true}
	}
	cost = max(cost, 1)
	v, _ := l.leases.Load(keyID)
	if v == nil {
		v, _ = l.leases.LoadOrStore(keyID, &lease{})
	}
	ls := v.(*lease)
	ls.mu.Lock()
	defer ls.mu.Unlock()
	// Redis may have failed while this request waited for the lease: fail
	// open now instead of queueing one more call (and its timeout) behind
	// the one that just failed.
	if now = time.Now(); now.UnixNano() < l.offUntil.Load() {
		l.decisions.WithLabelValues("failed_open").Inc()
		return Decision{Allowed: true, FailedOpen: true}
	}
	if ls.tokens >= int64(cost) && now.Before(ls.expires) {
		ls.tokens -= int64(cost)
		l.decisions.WithLabelValues("allowed").Inc()
		return Decision{Allowed: true}
	}
	if now.Before(ls.until) {
		l.decisions.WithLabelValues("limited").Inc()
		return Decision{RetryAfter: ls.until.Sub(now)}
	}
	// What is left of an old lease lapses: a new one is taken whole.
	ls.tokens = 0
	lim := l.limitOf(keyID)
	want := int64(lim.Rate * l.cfg.LeaseWindow.Seconds())
	ctx, cancel := context.WithTimeout(ctx, l.cfg.RedisTimeout)
	defer cancel()
	l.redisCalls.Inc()
	res, err := l.script.Run(ctx, l.rdb, []string{l.BucketKey(keyID), l.keys.RateLimitUsed()},
		lim.Rate, lim.Burst, max(want, int64(cost)), int64(bucketTTL.Seconds()), keyID, cost).Slice()
	if err == nil && len(res) != 2 {
		err = fmt.Errorf("unexpected answer %v", res)
	}
	if err != nil {
		l.offUntil.Store(now.Add(time.Second).UnixNano())
		l.decisions.WithLabelValues("failed_open").Inc()
		l.logMu.Lock()
		if now.Sub(l.lastLog) >= 10*time.Second {
			l.lastLog = now
			l.logger.Warn("redis failed: letting requests through unlimited", "err", err)
		}
		l.logMu.Unlock()
		return Decision{Allowed: true, FailedOpen: true}
	}
	// A cost above the burst takes the whole burst (the script caps it).
	need := min(int64(cost), int64(lim.Burst))
	granted, _ := res[0].(int64)
	if granted >= need && granted > 0 {
		ls.tokens, ls.expires = granted-need, now.Add(l.cfg.LeaseWindow)
		l.decisions.WithLabelValues("allowed").Inc()
		return Decision{Allowed: true}
	}
	wait := 1.0
	if s, ok := res[1].(string); ok {
		if w, err := strconv.ParseFloat(s, 64); err == nil {
			wait = w
		}
	}
	retry := time.Duration(wait * float64(time.Second))
	ls.until = now.Add(retry)
	l.decisions.WithLabelValues("limited").Inc()
	return Decision{RetryAfter: retry}
}

// RetryAfterHeader returns the Retry-After value for d: whole seconds,
// rounded up, at least 1.
func RetryAfterHeader(d time.Duration) string {
	return strconv.Itoa(max(1, int(math.Ceil(d.Seconds()))))
}
