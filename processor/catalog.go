package processor

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/period"
	"github.com/takt/takt/processor/resolve"
)

// catalogSource is where the catalog reads master data (a *chstore.Store).
type catalogSource interface {
	Products(ctx context.Context) ([]chstore.Product, error)
	Reasons(ctx context.Context) ([]chstore.Reason, error)
	PeriodMaster(ctx context.Context) (chstore.PeriodMaster, error)
}

// unknownCodeReloadEvery rate-limits the reloads that parts naming an
// unknown product code trigger: a stream of parts with a misspelt code
// costs one query per second, not one per part.
const unknownCodeReloadEvery = time.Second

// unknownCodeReloadTimeout bounds such a reload, which the consume loop
// waits for.
const unknownCodeReloadTimeout = 2 * time.Second

// catalog caches the product and reason catalog. The consume loop reads it
// without locking (an atomic pointer to an immutable resolve.Catalog);
// reloads are serialised by mu and swap the pointer.
type catalog struct {
	src       catalogSource
	tolerance float64
	logger    *slog.Logger
	m         *metrics

	cur  atomic.Pointer[resolve.Catalog]
	locs atomic.Pointer[locationConfigs]

	mu         sync.Mutex // serialises reloads; guards lastReload
	lastReload time.Time  // end of the last reload attempt, success or not
}

func newCatalog(src catalogSource, tolerance float64, logger *slog.Logger, m *metrics) *catalog {
	c := &catalog{src: src, tolerance: tolerance, logger: logger, m: m}
	c.cur.Store(resolve.NewCatalog(nil, nil, tolerance))
	c.locs.Store(&locationConfigs{})
	return c
}

// get returns the current catalog.
func (c *catalog) get() *resolve.Catalog { return c.cur.Load() }

// location returns the state-machine configuration of a location; one
// the master data does not know is always scheduled, with the derived
// stop threshold.
func (c *catalog) location(k period.Key) locationConfig { return c.locs.Load().byKey[k] }

// locationGen changes whenever the location configurations are reloaded.
func (c *catalog) locationGen() uint64 { return c.locs.Load().gen }

// reload reads products and reasons and swaps the catalog. On error the
// old catalog stays in use.
func (c *catalog) reload(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reloadLocked(ctx)
}

func (c *catalog) reloadLocked(ctx context.Context) error {
	c.m.catalogRefresh.Inc()
	defer func() { c.lastReload = time.Now() }()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	products, err := c.src.Products(ctx)
	if err != nil {
		c.m.catalogErrors.Inc()
		return fmt.Errorf("reload catalog: %w", err)
	}
	reasons, err := c.src.Reasons(ctx)
	if err != nil {
		c.m.catalogErrors.Inc()
		return fmt.Errorf("reload catalog: %w", err)
	}
	pm, err := c.src.PeriodMaster(ctx)
	if err != nil {
		c.m.catalogErrors.Inc()
		return fmt.Errorf("reload catalog: %w", err)
	}
	ps := make([]resolve.Product, len(products))
	for i, p := range products {
		ps[i] = resolve.Product{ID: p.ID, Site: p.Site, Code: p.Code, IdealCycleTime: p.IdealCycleTime, Fallback: p.Fallback}
	}
	rs := make([]resolve.Reason, len(reasons))
	for i, r := range reasons {
		rs[i] = resolve.Reason{ID: r.ID, Site: r.Site, Code: r.Code, Kind: r.Kind}
	}
	c.cur.Store(resolve.NewCatalog(ps, rs, c.tolerance))
	c.locs.Store(buildLocationConfigs(pm, c.locs.Load().gen+1, c.logger.Warn))
	c.m.catalogProducts.Set(float64(len(ps)))
	return nil
}

// reloadForUnknownCode reloads at once unless a reload ended less than
// unknownCodeReloadEvery ago or is running now (the consume loop does not
// wait for the periodic one); it returns the catalog to use.
func (c *catalog) reloadForUnknownCode(ctx context.Context) *resolve.Catalog {
	if !c.mu.TryLock() {
		return c.get()
	}
	defer c.mu.Unlock()
	if time.Since(c.lastReload) < unknownCodeReloadEvery {
		return c.get()
	}
	ctx, cancel := context.WithTimeout(ctx, unknownCodeReloadTimeout)
	defer cancel()
	if err := c.reloadLocked(ctx); err != nil {
		c.logger.Warn("catalog reload for unknown product code failed", "err", err)
	}
	return c.get()
}

// run reloads the catalog every interval until ctx is done.
func (c *catalog) run(ctx context.Context, every time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := c.reload(ctx); err != nil && ctx.Err() == nil {
				c.logger.Warn("catalog reload failed; keeping the previous one", "err", err)
			}
		}
	}
}
