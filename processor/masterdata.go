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

// masterDataSource is where masterData reads (a *chstore.Store).
type masterDataSource interface {
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

// masterData is the processor's cached master data: the product and reason
// catalog (resolve.Catalog) and the locations' state-machine configurations.
// The consume loop reads both without locking (atomic pointers to immutable
// snapshots); reloads are serialised by mu and swap the pointers.
type masterData struct {
	src       masterDataSource
	tolerance float64
	logger    *slog.Logger
	m         *metrics

	cur  atomic.Pointer[resolve.Catalog]
	locs atomic.Pointer[locationConfigs]

	mu         sync.Mutex // serialises reloads; guards lastReload
	lastReload time.Time  // end of the last reload attempt, success or not
}

func newMasterData(src masterDataSource, tolerance float64, logger *slog.Logger, m *metrics) *masterData {
	c := &masterData{src: src, tolerance: tolerance, logger: logger, m: m}
	c.cur.Store(resolve.NewCatalog(nil, nil, tolerance))
	c.locs.Store(&locationConfigs{})
	return c
}

// get returns the current catalog.
func (c *masterData) get() *resolve.Catalog { return c.cur.Load() }

// location returns the state-machine configuration of a location; one
// the master data does not know is always scheduled, with the derived
// stop threshold.
func (c *masterData) location(k period.Key) locationConfig { return c.locs.Load().byKey[k] }

// locationGen changes whenever the location configurations are reloaded.
func (c *masterData) locationGen() uint64 { return c.locs.Load().gen }

// reload reads products, reasons and the locations' configurations and
// swaps the snapshots. On error the old ones stay in use.
func (c *masterData) reload(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reloadLocked(ctx)
}

func (c *masterData) reloadLocked(ctx context.Context) error {
	// Counted when the reload has ended, so a reader of the counter who
	// saw it move twice after a write knows a whole reload began after it.
	defer func() {
		c.lastReload = time.Now()
		c.m.catalogRefresh.Inc()
	}()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	products, err := c.src.Products(ctx)
	if err != nil {
		c.m.catalogErrors.Inc()
		return fmt.Errorf("reload master data: %w", err)
	}
	reasons, err := c.src.Reasons(ctx)
	if err != nil {
		c.m.catalogErrors.Inc()
		return fmt.Errorf("reload master data: %w", err)
	}
	pm, err := c.src.PeriodMaster(ctx)
	if err != nil {
		c.m.catalogErrors.Inc()
		return fmt.Errorf("reload master data: %w", err)
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
func (c *masterData) reloadForUnknownCode(ctx context.Context) *resolve.Catalog {
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
		c.logger.Warn("master-data reload for an unknown product code failed", "err", err)
	}
	return c.get()
}

// run reloads the master data every interval until ctx is done.
func (c *masterData) run(ctx context.Context, every time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := c.reload(ctx); err != nil && ctx.Err() == nil {
				c.logger.Warn("master-data reload failed; keeping the previous one", "err", err)
			}
		}
	}
}
