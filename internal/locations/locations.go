// Package locations resolves a location's external id to the location (line
// or machine, its site and the site's time zone) on the ingest hot path.
//
// Look-ups go through the layers of package rcache: an in-process cache,
// Redis (shared by every instance), then ClickHouse, the source of truth.
// Unknown ids are cached too, briefly (2 s by default), so that a device
// reporting against a location that does not exist costs the store one
// query per NegativeTTL, while a newly created location works almost at
// once.
//
// When ClickHouse is asked, it is asked for every location at once (one
// query, shared by the look-ups that miss meanwhile) when the store can,
// and the answer serves the misses of the next BulkMaxAge (5 s) without
// another query. A fleet's machines all miss together: when an ingestor
// starts with a cold Redis, and when their Redis entries, written within a
// second of each other, expire. Asked one by one, 50 machines' look-ups
// queued behind each other in ClickHouse, and requests waited up to 470 ms
// for them (1,100–1,500 sends dropped at 5,000 parts/s); with the shared
// query, one wait of one query. An id the bulk answer does not hold (a
// location created since, or one that does not exist) is looked up alone,
// as before, so unknown ids cost no more than they did and at most one
// bulk query runs per BulkMaxAge.
//
// A location past its LocalTTL is answered from memory for up to one more
// LocalTTL (StaleFor) while a single look-up refreshes it in the
// background, so that requests do not wait when entries expire. A change
// made through Forget, here or in another instance (the invalidation
// message), drops the entry at once and is never served stale; a change
// made behind Takt's back reaches an instance within LocalTTL + StaleFor
// (1 min by default) instead of LocalTTL.
package locations

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/rcache"
	"github.com/takt/takt/internal/redisx"
)

// ErrNotFound means no live location has that external id.
var ErrNotFound = errors.New("location not found")

// LocationLookup finds the live location with an external id
// (case-sensitive) and returns an error wrapping chstore.ErrNotFound when
// there is none. *chstore.Store implements it.
type LocationLookup interface {
	LocationByExternalID(ctx context.Context, externalID string) (chstore.Location, error)
}

// BulkLookup lists every live location. *chstore.Store implements it; a
// LocationLookup that does not is asked one id at a time.
type BulkLookup interface {
	Locations(ctx context.Context) ([]chstore.Location, error)
}

// entry is what the caches hold for a known external id.
type entry struct {
	Location chstore.Location `json:"location,omitzero"`
}

// Option tunes a Cache.
type Option func(*rcache.Config)

// LocalTTL sets how long a found location stays in the in-process cache
// (default 30 s).
func LocalTTL(d time.Duration) Option { return func(c *rcache.Config) { c.LocalTTL = d } }

// RedisTTL sets how long a found location stays in Redis (default 5 min).
func RedisTTL(d time.Duration) Option { return func(c *rcache.Config) { c.RedisTTL = d } }

// NegativeTTL sets how long an unknown id is remembered, in process and in
// Redis (default 2 s).
func NegativeTTL(d time.Duration) Option { return func(c *rcache.Config) { c.NegativeTTL = d } }

// StaleFor sets how long past its LocalTTL a location is still answered
// while it is refreshed (default: LocalTTL; 0 waits for the refresh).
func StaleFor(d time.Duration) Option { return func(c *rcache.Config) { c.StaleFor = d } }

// RedisTimeout bounds each Redis call (default 200 ms).
func RedisTimeout(d time.Duration) Option { return func(c *rcache.Config) { c.RedisTimeout = d } }

// LookupTimeout bounds one shared look-up through Redis and the store
// (default 5 s).
func LookupTimeout(d time.Duration) Option { return func(c *rcache.Config) { c.LookupTimeout = d } }

// MaxEntries bounds the in-process cache (default 100 000 ids).
func MaxEntries(n int) Option { return func(c *rcache.Config) { c.MaxEntries = n } }

// Namespace sets the metric name prefix (default "takt"): metrics are named
// <namespace>_catalog_* (the name this cache had first; dashboards use it).
func Namespace(ns string) Option { return func(c *rcache.Config) { c.Namespace = ns } }

// metricSubsystem names the cache's metrics and log lines.
const metricSubsystem = "catalog"

// Clock replaces time.Now (tests).
func Clock(now func() time.Time) Option { return func(c *rcache.Config) { c.Now = now } }

// BulkMaxAge is how long one answer listing every location serves the
// look-ups that miss the caches.
const BulkMaxAge = 5 * time.Second

// Cache is the cached map from external id to location. It is safe for
// concurrent use.
type Cache struct {
	cache *rcache.Cache[string, entry]
}

// bulkLoader shares one listing of every location between the look-ups
// that miss within BulkMaxAge of it.
type bulkLoader struct {
	store  BulkLookup
	now    func() time.Time
	flight singleflight.Group
	mu     sync.Mutex
	at     time.Time
	byID   map[string]chstore.Location // nil: none, or forgotten
	gen    uint64                      // counts forget calls
	loads  prometheus.Counter
}

// lookup answers id from the listing, made now if the last one is older
// than BulkMaxAge; ok is false when the listing does not hold id or could
// not be made.
func (b *bulkLoader) lookup(ctx context.Context, id string) (loc chstore.Location, ok bool) {
	b.mu.Lock()
	byID, at := b.byID, b.at
	b.mu.Unlock()
	if byID == nil || b.now().Sub(at) > BulkMaxAge {
		v, err, _ := b.flight.Do("all", func() (any, error) {
			started := b.now()
			b.mu.Lock()
			gen := b.gen
			b.mu.Unlock()
			ls, err := b.store.Locations(ctx)
			if err != nil {
				return nil, err
			}
			b.loads.Inc()
			m := make(map[string]chstore.Location, len(ls))
			for _, l := range ls {
				m[l.ExternalID] = l
			}
			b.mu.Lock()
			if b.gen == gen { // not made stale by a change while it ran
				b.byID, b.at = m, started
			}
			b.mu.Unlock()
			return m, nil
		})
		if err != nil {
			return loc, false
		}
		byID = v.(map[string]chstore.Location)
	}
	loc, ok = byID[id]
	return loc, ok
}

// forget drops the listing: a location changed, here or in another
// process (the cache's invalidation).
func (b *bulkLoader) forget() {
	b.mu.Lock()
	b.byID = nil
	b.gen++
	b.mu.Unlock()
}

// New returns a Cache over store. rdb may be nil (no Redis layer); prefix
// is the deployment's Redis key prefix (TAKT_REDIS_PREFIX): entries live at
// redisx.Keys.Locations()+<external id>. Metrics are registered with reg unless it
// is nil.
func New(store LocationLookup, rdb *redis.Client, prefix string, logger *slog.Logger, reg prometheus.Registerer, opts ...Option) (*Cache, error) {
	cfg := rcache.NewConfig()
	cfg.NegativeTTL = 2 * time.Second
	cfg.StaleFor = -1 // unset: LocalTTL, below
	for _, f := range opts {
		f(&cfg)
	}
	if cfg.StaleFor < 0 {
		cfg.StaleFor = cfg.LocalTTL
	}
	var bulk *bulkLoader
	if all, ok := store.(BulkLookup); ok {
		ns := cfg.Namespace
		if ns == "" {
			ns = "takt"
		}
		bulk = &bulkLoader{store: all, now: cfg.Now, loads: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: metricSubsystem, Name: "bulk_loads_total",
			Help: "Listings of every location made for look-ups that missed the caches (at most one per 5 s).",
		})}
		if reg != nil {
			if err := reg.Register(bulk.loads); err != nil {
				return nil, fmt.Errorf("register location metrics: %w", err)
			}
		}
	}
	invalidated := func() {}
	if bulk != nil {
		invalidated = bulk.forget
	}
	cache, err := rcache.New(rcache.Spec[string, entry]{
		Subsystem: metricSubsystem, RedisPrefix: redisx.NewKeys(prefix).Locations(),
		Name: func(id string) string { return id },
		Load: func(ctx context.Context, id string) (entry, error) {
			if bulk != nil {
				if loc, ok := bulk.lookup(ctx, id); ok {
					return entry{Location: loc}, nil
				}
			}
			loc, err := store.LocationByExternalID(ctx, id)
			return entry{Location: loc}, err
		},
		NotFound: chstore.ErrNotFound,
		// Ids are case-sensitive, and Redis is shared: an entry under an id
		// must be that id's location.
		Valid: func(id string, e entry) bool { return e.Location.ExternalID == id },
		// A change anywhere (a site closed) drops the listing too.
		Invalidated: invalidated,
	}, cfg, rdb, logger, reg)
	if err != nil {
		return nil, err
	}
	return &Cache{cache: cache}, nil
}

// Lookup returns the location with that external id (case-sensitive),
// ErrNotFound when there is none, or another error when the store could not
// be asked.
func (c *Cache) Lookup(ctx context.Context, externalID string) (chstore.Location, error) {
	if externalID == "" {
		return chstore.Location{}, ErrNotFound
	}
	e, found, err := c.cache.Get(ctx, externalID)
	switch {
	case err != nil:
		return chstore.Location{}, fmt.Errorf("look up location %q: %w", externalID, err)
	case !found:
		return chstore.Location{}, ErrNotFound
	}
	return e.Location, nil
}

// Forget drops the cached answer for an external id from this process and
// from Redis. Call it after creating, changing or deleting a location;
// other instances drop their in-process copy within LocalTTL.
func (c *Cache) Forget(ctx context.Context, externalID string) error {
	if err := c.cache.Forget(ctx, externalID); err != nil {
		return fmt.Errorf("forget location %q: %w", externalID, err)
	}
	return nil
}
