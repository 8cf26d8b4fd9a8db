package processor

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/takt/takt/internal/chstore"
)

// countingSource serves products (switchable) and counts reads.
type countingSource struct {
	products atomic.Pointer[[]chstore.Product]
	reads    atomic.Int32
	fail     atomic.Bool
}

func (s *countingSource) Products(context.Context) ([]chstore.Product, error) {
	s.reads.Add(1)
	if s.fail.Load() {
		return nil, errors.New("clickhouse down")
	}
	return *s.products.Load(), nil
}

func (s *countingSource) Reasons(context.Context) ([]chstore.Reason, error) { return nil, nil }
func (*countingSource) PeriodMaster(context.Context) (chstore.PeriodMaster, error) {
	return chstore.PeriodMaster{}, nil
}

func TestCatalogReloads(t *testing.T) {
	src := &countingSource{}
	src.products.Store(&demoProducts)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	cat := newCatalog(src, 0.1, logger, newMetrics(prometheus.NewRegistry()))
	ctx := context.Background()

	if cat.get().HasCode(1, "PROD001") {
		t.Fatal("catalog has products before the first reload")
	}
	if err := cat.reload(ctx); err != nil {
		t.Fatal(err)
	}
	if !cat.get().HasCode(1, "PROD001") {
		t.Fatal("reload did not load products")
	}

	// A new product: an unknown code right after a reload does not
	// reload again (rate limit) ...
	withNew := append(append([]chstore.Product{}, demoProducts...), chstore.Product{ID: 9, Site: 1, Code: "NEW"})
	src.products.Store(&withNew)
	reads := src.reads.Load()
	if cat.reloadForUnknownCode(ctx).HasCode(1, "NEW") || src.reads.Load() != reads {
		t.Fatal("reloaded within the rate limit")
	}
	// ... but once the limit passed it does, and finds it.
	cat.mu.Lock()
	cat.lastReload = time.Now().Add(-unknownCodeReloadEvery)
	cat.mu.Unlock()
	if !cat.reloadForUnknownCode(ctx).HasCode(1, "NEW") {
		t.Fatal("unknown code did not trigger a reload")
	}

	// A failed reload keeps the previous catalog.
	src.fail.Store(true)
	if err := cat.reload(ctx); err == nil {
		t.Fatal("reload did not report the failure")
	}
	if !cat.get().HasCode(1, "NEW") {
		t.Fatal("failed reload dropped the catalog")
	}

	// While a reload runs, the consume loop does not wait for it.
	cat.mu.Lock()
	cat.lastReload = time.Time{}
	done := make(chan struct{})
	go func() {
		cat.reloadForUnknownCode(ctx)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("reloadForUnknownCode waited for a reload in progress")
	}
	cat.mu.Unlock()
}
