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

func TestMasterDataReloads(t *testing.T) {
	src := &countingSource{}
	src.products.Store(&demoProducts)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	md := newMasterData(src, 0.1, logger, newMetrics(prometheus.NewRegistry()))
	ctx := context.Background()

	if md.get().HasCode(1, "PROD001") {
		t.Fatal("master data has products before the first reload")
	}
	if err := md.reload(ctx); err != nil {
		t.Fatal(err)
	}
	if !md.get().HasCode(1, "PROD001") {
		t.Fatal("reload did not load products")
	}

	// A new product: an unknown code right after a reload does not
	// reload again (rate limit) ...
	withNew := append(append([]chstore.Product{}, demoProducts...), chstore.Product{ID: 9, Site: 1, Code: "NEW"})
	src.products.Store(&withNew)
	reads := src.reads.Load()
	if md.reloadForUnknownCode(ctx).HasCode(1, "NEW") || src.reads.Load() != reads {
		t.Fatal("reloaded within the rate limit")
	}
	// ... but once the limit passed it does, and finds it.
	md.mu.Lock()
	md.lastReload = time.Now().Add(-unknownCodeReloadEvery)
	md.mu.Unlock()
	if !md.reloadForUnknownCode(ctx).HasCode(1, "NEW") {
		t.Fatal("unknown code did not trigger a reload")
	}

	// A failed reload keeps the previous catalog.
	src.fail.Store(true)
	if err := md.reload(ctx); err == nil {
		t.Fatal("reload did not report the failure")
	}
	if !md.get().HasCode(1, "NEW") {
		t.Fatal("failed reload dropped the products")
	}

	// While a reload runs, the consume loop does not wait for it.
	md.mu.Lock()
	md.lastReload = time.Time{}
	done := make(chan struct{})
	go func() {
		md.reloadForUnknownCode(ctx)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("reloadForUnknownCode waited for a reload in progress")
	}
	md.mu.Unlock()
}
