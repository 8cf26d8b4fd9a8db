package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/rcache"
	"github.com/takt/takt/internal/redisx"
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

// IsInvalid reports whether err means "answer 401" rather than a failure to
// check the key.
func IsInvalid(err error) bool { return errors.Is(err, ErrInvalidKey) }

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

// entry is what the caches hold for a found key: the hash the store
// returned (hex SHA-256), compared with the presented key's on every check,
// and the principal.
type entry struct {
	Hash      string    `json:"hash,omitempty"`
	Principal Principal `json:"principal,omitzero"`
}

// Option tunes an Authenticator.
type Option func(*settings)

type settings struct {
	cache    rcache.Config
	failures FailureLimit
}

// LocalTTL sets how long a found key stays in the in-process cache
// (default 30 s). It bounds how long a revoked key keeps working on an
// instance that did not see the revocation.
func LocalTTL(d time.Duration) Option { return func(s *settings) { s.cache.LocalTTL = d } }

// RedisTTL sets how long a found key stays in Redis (default 5 min).
func RedisTTL(d time.Duration) Option { return func(s *settings) { s.cache.RedisTTL = d } }

// NegativeTTL sets how long "no such key" is remembered, in process and in
// Redis (default 10 s). A key created after a failed attempt works at the
// latest this long after it.
func NegativeTTL(d time.Duration) Option { return func(s *settings) { s.cache.NegativeTTL = d } }

// RedisTimeout bounds each Redis call (default 200 ms); past it the
// Authenticator goes on to ClickHouse.
func RedisTimeout(d time.Duration) Option { return func(s *settings) { s.cache.RedisTimeout = d } }

// LookupTimeout bounds one look-up through Redis and the store (default
// 5 s). The look-up is shared by every caller waiting for the same key, so
// it does not end when the first caller gives up.
func LookupTimeout(d time.Duration) Option { return func(s *settings) { s.cache.LookupTimeout = d } }

// MaxEntries bounds the in-process cache of found keys (default 100 000).
func MaxEntries(n int) Option { return func(s *settings) { s.cache.MaxEntries = n } }

// MaxUnknown bounds the in-process LRU of unknown key hashes (default
// 10 000).
func MaxUnknown(n int) Option { return func(s *settings) { s.cache.MaxNegative = n } }

// LimitFailures gives every client address a budget of failed look-ups
// (see FailureLimit; default none).
func LimitFailures(l FailureLimit) Option { return func(s *settings) { s.failures = l } }

// Namespace sets the metric name prefix (default "takt"): metrics are named
// <namespace>_auth_*, e.g. takt_ingestor_auth_cache_hits_total for
// Namespace("takt_ingestor").
func Namespace(ns string) Option { return func(s *settings) { s.cache.Namespace = ns } }

// Clock replaces time.Now (tests).
func Clock(now func() time.Time) Option { return func(s *settings) { s.cache.Now = now } }

// Authenticator checks API keys through the layers of package rcache: an
// in-process cache, Redis and the store, the source of truth. Unknown keys
// are cached too (for a shorter time), so a flood of bad keys reaches the
// store at most once per key and NegativeTTL; with LimitFailures, a client
// address that keeps causing look-ups that find nothing is refused further
// look-ups for a while (see failures.go). When Redis fails the store
// answers: nothing is let through that the store would not let through.
// It is safe for concurrent use.
type Authenticator struct {
	cache    *rcache.Cache[[sha256.Size]byte, entry] // keyed by the SHA-256 of the key
	failures *failures                               // nil: no limit
	rejected prometheus.Counter
}

// New returns an Authenticator over store. rdb may be nil (no Redis layer);
// prefix is the Redis key prefix of the deployment (TAKT_REDIS_PREFIX, e.g.
// "takt:"): entries live at redisx.Keys.APIKeys()+<sha256 hex>. Metrics are
// registered with reg unless it is nil.
func New(store KeyLookup, rdb *redis.Client, prefix string, logger *slog.Logger, reg prometheus.Registerer, opts ...Option) (*Authenticator, error) {
	s := settings{cache: rcache.NewConfig()}
	for _, f := range opts {
		f(&s)
	}
	if err := s.failures.Validate(); err != nil {
		return nil, err
	}
	cfg := s.cache
	a := &Authenticator{rejected: prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: cfg.Namespace, Name: "auth_malformed_keys_total",
		Help: "API keys rejected for their shape, without any look-up.",
	})}
	refused := prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: cfg.Namespace, Name: "auth_failure_limited_total",
		Help: "Authentications refused (429) because the client address had used up its budget of failed look-ups.",
	})
	if s.failures.Burst > 0 {
		a.failures = newFailures(s.failures, cfg.Now, refused)
	}
	cache, err := rcache.New(rcache.Spec[[sha256.Size]byte, entry]{
		Subsystem: "auth", RedisPrefix: redisx.NewKeys(prefix).APIKeys(),
		Name: func(sum [sha256.Size]byte) string { return hex.EncodeToString(sum[:]) },
		Load: func(ctx context.Context, sum [sha256.Size]byte) (entry, error) {
			o, err := store.KeyByHash(ctx, hex.EncodeToString(sum[:]))
			if errors.Is(err, chstore.ErrNotFound) && a.failures != nil {
				// ctx is the context of the request that caused the
				// look-up (the first of those waiting for it).
				if c, ok := clientFrom(ctx); ok {
					a.failures.failed(clientPrefix(c.addr))
				}
			}
			return entry{Hash: o.Hash, Principal: Principal{KeyID: o.KeyID, Prefix: o.Prefix, UserID: o.UserID,
				Username: o.Username, Admin: o.Admin, Sites: o.Sites, Scopes: o.Scopes}}, err
		},
		NotFound: chstore.ErrNotFound,
	}, cfg, rdb, logger, reg)
	if err != nil {
		return nil, err
	}
	a.cache = cache
	if reg != nil {
		for _, c := range []prometheus.Collector{a.rejected, refused} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register auth metrics: %w", err)
			}
		}
	}
	return a, nil
}

// Authenticate returns the principal of key, ErrInvalidKey when the key is
// not valid, or another error when the store could not be asked (callers
// answer that with 500: an unverified key is never accepted). A look-up
// that finds nothing counts against the budget of the client address ctx
// carries (WithClient), but Authenticate refuses nothing for it: see
// FailureGuard.
func (a *Authenticator) Authenticate(ctx context.Context, key string) (Principal, error) {
	return a.authenticate(ctx, key, "", false)
}

// AuthenticateFrom is Authenticate for a request from the client address
// addr (http.Request.RemoteAddr, or an IP): with LimitFailures, a key that
// would need a look-up is refused with a *FailureError (ErrTooManyFailures,
// answer 429 with its RetryAfter) while addr has no failure left. Keys in
// this process's cache are answered whatever addr did.
func (a *Authenticator) AuthenticateFrom(ctx context.Context, addr, key string) (Principal, error) {
	return a.authenticate(ctx, key, addr, true)
}

func (a *Authenticator) authenticate(ctx context.Context, key, addr string, limit bool) (Principal, error) {
	if !WellFormed(key) {
		a.rejected.Inc()
		return Principal{}, ErrInvalidKey
	}
	sum := sha256.Sum256([]byte(key))
	e, found, ok := a.cache.Peek(sum)
	if !ok {
		if limit && a.failures != nil {
			if retry, blocked := a.failures.blocked(clientPrefix(addr)); blocked {
				return Principal{}, &FailureError{RetryAfter: retry}
			}
			ctx = WithClient(ctx, addr)
		}
		var err error
		if e, found, err = a.cache.Get(ctx, sum); err != nil {
			return Principal{}, fmt.Errorf("authenticate key %s: %w", Prefix(key), err)
		}
	}
	if !found {
		return Principal{}, ErrInvalidKey
	}
	return check(e, sum)
}

// check turns a found entry into the answer, comparing the stored hash with
// the presented key's in constant time.
func check(e entry, sum [sha256.Size]byte) (Principal, error) {
	if want, ok := decodeHash(e.Hash); !ok || subtle.ConstantTimeCompare(want[:], sum[:]) != 1 {
		return Principal{}, ErrInvalidKey
	}
	return e.Principal, nil
}

// Forget drops the cached answer for a key hash (hex SHA-256) from this
// process and from Redis. Call it after changing or revoking a key; other
// instances drop their in-process copy within LocalTTL. A hash that is not
// 64 hex digits names no cached key: forgetting it does nothing.
func (a *Authenticator) Forget(ctx context.Context, hash string) error {
	sum, ok := decodeHash(hash)
	if !ok {
		return nil
	}
	if err := a.cache.Forget(ctx, sum); err != nil {
		return fmt.Errorf("forget api key %s…: %w", hash[:8], err)
	}
	return nil
}

// decodeHash decodes a hex SHA-256. It checks the length first: hex.Decode
// panics when the input is longer than the output.
func decodeHash(hash string) (sum [sha256.Size]byte, ok bool) {
	if len(hash) != hex.EncodedLen(sha256.Size) {
		return sum, false
	}
	_, err := hex.Decode(sum[:], []byte(hash))
	return sum, err == nil
}
