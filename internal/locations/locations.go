// Package locations resolves a location's external id to the location (line
// or machine, its site and the site's time zone) on the ingest hot path.
//
// Look-ups go through the layers of package rcache: an in-process cache,
// Redis (shared by every instance), then ClickHouse, the source of truth.
// Unknown ids are cached too, briefly (2 s by default), so that a device
// reporting against a location that does not exist costs the store one
// query per NegativeTTL, while a newly created location works almost at
// once.
package locations

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

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

// Cache is the cached map from external id to location. It is safe for
// concurrent use.
type Cache struct {
	cache *rcache.Cache[string, entry]
}

// New returns a Cache over store. rdb may be nil (no Redis layer); prefix
// is the deployment's Redis key prefix (TAKT_REDIS_PREFIX): entries live at
// redisx.Keys.Locations()+<external id>. Metrics are registered with reg unless it
// is nil.
func New(store LocationLookup, rdb *redis.Client, prefix string, logger *slog.Logger, reg prometheus.Registerer, opts ...Option) (*Cache, error) {
	cfg := rcache.NewConfig()
	cfg.NegativeTTL = 2 * time.Second
	for _, f := range opts {
		f(&cfg)
	}
	cache, err := rcache.New(rcache.Spec[string, entry]{
		Subsystem: metricSubsystem, RedisPrefix: redisx.NewKeys(prefix).Locations(),
		Name: func(id string) string { return id },
		Load: func(ctx context.Context, id string) (entry, error) {
			loc, err := store.LocationByExternalID(ctx, id)
			return entry{Location: loc}, err
		},
		NotFound: chstore.ErrNotFound,
		// Ids are case-sensitive, and Redis is shared: an entry under an id
		// must be that id's location.
		Valid: func(id string, e entry) bool { return e.Location.ExternalID == id },
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
