package queryapi

import (
	"context"
	"log/slog"
	"sync"
	"time"

	// The time zone database is compiled in: a site's zone must resolve
	// the same way on a minimal image without /usr/share/zoneinfo.
	_ "time/tzdata"
)

// zoneLoader reads the time zone name of every site (*chstore.Store).
type zoneLoader interface {
	SiteTimezones(ctx context.Context) (map[uint64]string, error)
}

// zones caches the time zone of every site for LocalDateTime fields. The
// map is read again when it is older than ttl, or when a request needs a
// site it does not know (a new site) and the last read is older than
// retry. A site whose zone is unknown or invalid is shown in UTC. It is safe
// for concurrent use; reads are serialised, so a flood of requests causes
// at most one read at a time.
type zones struct {
	load   zoneLoader
	ttl    time.Duration
	retry  time.Duration
	now    func() time.Time
	logger *slog.Logger

	mu     sync.Mutex
	locs   map[uint64]*time.Location
	loaded time.Time // of the last attempt, successful or not
}

func newZones(load zoneLoader, ttl time.Duration, logger *slog.Logger) *zones {
	return &zones{load: load, ttl: ttl, retry: 5 * time.Second, now: time.Now, logger: logger}
}

// forSites returns the zones of the given sites (UTC for unknown ones). A
// failed read keeps the previous map: times are then shown in the zone
// last known, or UTC.
func (z *zones) forSites(ctx context.Context, sites []uint64) map[uint64]*time.Location {
	z.mu.Lock()
	defer z.mu.Unlock()
	now := z.now()
	age := now.Sub(z.loaded)
	need := z.locs == nil || age >= z.ttl
	for _, s := range sites {
		if _, ok := z.locs[s]; !ok {
			need = true
			break
		}
	}
	if need && (z.loaded.IsZero() || age >= min(z.retry, z.ttl)) {
		z.reload(ctx, now)
	}
	out := make(map[uint64]*time.Location, 4)
	for _, s := range sites {
		if _, done := out[s]; done {
			continue
		}
		loc, ok := z.locs[s]
		if !ok || loc == nil {
			loc = time.UTC
		}
		out[s] = loc
	}
	return out
}

func (z *zones) reload(ctx context.Context, now time.Time) {
	z.loaded = now
	names, err := z.load.SiteTimezones(ctx)
	if err != nil {
		z.logger.Warn("site time zones: read failed, keeping the previous ones", "err", err)
		return
	}
	locs := make(map[uint64]*time.Location, len(names))
	for site, name := range names {
		loc, err := time.LoadLocation(name)
		if err != nil || name == "" {
			z.logger.Warn("site time zone unknown, showing UTC", "site", site, "timezone", name)
			loc = time.UTC
		}
		locs[site] = loc
	}
	z.locs = locs
}
