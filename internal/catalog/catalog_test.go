package catalog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/demo"
	"github.com/takt/takt/internal/testenv"
)

type fakeStore struct {
	mu    sync.Mutex
	locs  map[string]chstore.Location
	err   error
	gate  chan struct{}
	calls atomic.Int64
}

func (f *fakeStore) LocationByExternalID(ctx context.Context, id string) (chstore.Location, error) {
	f.calls.Add(1)
	if f.gate != nil {
		<-f.gate
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return chstore.Location{}, f.err
	}
	l, ok := f.locs[id]
	if !ok {
		return chstore.Location{}, fmt.Errorf("location %q: %w", id, chstore.ErrNotFound)
	}
	return l, nil
}

func (f *fakeStore) set(l chstore.Location) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.locs == nil {
		f.locs = map[string]chstore.Location{}
	}
	f.locs[l.ExternalID] = l
}

var line1 = chstore.Location{Kind: "line", ID: 1, Site: 1, ExternalID: "line_1", Timezone: "Europe/Berlin"}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTest(t *testing.T, store LocationLookup, rdb *redis.Client, prefix string, opts ...Option) (*Catalog, *clock) {
	t.Helper()
	clk := &clock{t: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)}
	c, err := New(store, rdb, prefix, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry(),
		append([]Option{Clock(clk.now)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c, clk
}

func TestLookup(t *testing.T) {
	store := &fakeStore{}
	store.set(line1)
	c, clk := newTest(t, store, nil, "")
	ctx := context.Background()
	tests := []struct {
		id      string
		want    chstore.Location
		wantErr error
	}{
		{"line_1", line1, nil},
		{"LINE_1", chstore.Location{}, ErrNotFound}, // case-sensitive
		{"", chstore.Location{}, ErrNotFound},
		{"nope", chstore.Location{}, ErrNotFound},
	}
	for _, tt := range tests {
		got, err := c.Lookup(ctx, tt.id)
		if !errors.Is(err, tt.wantErr) || got != tt.want {
			t.Errorf("Lookup(%q) = %+v, %v; want %+v, %v", tt.id, got, err, tt.want, tt.wantErr)
		}
	}
	calls := store.calls.Load() // line_1, LINE_1, nope: "" needs no look-up
	if calls != 3 {
		t.Fatalf("store asked %d times, want 3", calls)
	}
	for range 50 {
		c.Lookup(ctx, "line_1")
		c.Lookup(ctx, "nope")
	}
	if n := store.calls.Load(); n != calls {
		t.Fatalf("cached answers went to the store: %d calls", n)
	}

	// A location created after a miss is found once the short negative
	// TTL (2 s by default) has passed.
	store.set(chstore.Location{Kind: "machine", ID: 9, Site: 1, ExternalID: "nope"})
	clk.add(2 * time.Second)
	if l, err := c.Lookup(ctx, "nope"); err != nil || l.ID != 9 {
		t.Fatalf("new location: %+v, %v", l, err)
	}
}

func TestLookupStoreError(t *testing.T) {
	store := &fakeStore{err: errors.New("down")}
	c, _ := newTest(t, store, nil, "")
	for range 2 {
		if _, err := c.Lookup(context.Background(), "line_1"); err == nil || errors.Is(err, ErrNotFound) {
			t.Fatalf("err %v: want a look-up error", err)
		}
	}
	if n := store.calls.Load(); n != 2 {
		t.Fatalf("errors were cached: %d calls", n)
	}
}

func TestLookupSingleflight(t *testing.T) {
	store := &fakeStore{gate: make(chan struct{})}
	store.set(line1)
	c, _ := newTest(t, store, nil, "")
	var wg sync.WaitGroup
	var bad atomic.Int64
	for range 40 {
		wg.Go(func() {
			if l, err := c.Lookup(context.Background(), "line_1"); err != nil || l != line1 {
				bad.Add(1)
			}
		})
	}
	for store.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	close(store.gate)
	wg.Wait()
	if bad.Load() != 0 || store.calls.Load() != 1 {
		t.Fatalf("%d wrong answers, %d store calls; want 0 and 1", bad.Load(), store.calls.Load())
	}
}

// Integration: real ClickHouse behind the catalog, shared through Redis.
func TestCatalogWithClickHouseAndRedis(t *testing.T) {
	s, _ := testenv.ClickHouse(t)
	rdb, prefix := testenv.Redis(t)
	ctx := context.Background()
	if _, err := demo.Seed(ctx, s, "", ""); err != nil {
		t.Fatal(err)
	}
	c1, _ := newTest(t, s, rdb, prefix)
	l, err := c1.Lookup(ctx, demo.LineExternalID)
	if err != nil || l.Kind != "line" || l.ID != 1 || l.Site != demo.SiteID || l.Timezone != demo.SiteTimezone {
		t.Fatalf("line_1: %+v, %v", l, err)
	}
	if _, err := c1.Lookup(ctx, "LINE_1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("LINE_1: %v, want ErrNotFound", err)
	}

	counting := &countingStore{LocationLookup: s}
	c2, _ := newTest(t, counting, rdb, prefix)
	if l2, err := c2.Lookup(ctx, demo.LineExternalID); err != nil || l2 != l {
		t.Fatalf("second instance via redis: %+v, %v", l2, err)
	}
	if _, err := c2.Lookup(ctx, "LINE_1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("LINE_1 via redis: %v", err)
	}
	if n := counting.calls.Load(); n != 0 {
		t.Fatalf("second instance asked ClickHouse %d times, want 0", n)
	}
	if err := c2.Forget(ctx, demo.LineExternalID); err != nil {
		t.Fatal(err)
	}
	if _, err := c2.Lookup(ctx, demo.LineExternalID); err != nil || counting.calls.Load() != 1 {
		t.Fatalf("after Forget: %v, %d calls", err, counting.calls.Load())
	}
}

type countingStore struct {
	LocationLookup
	calls atomic.Int64
}

func (c *countingStore) LocationByExternalID(ctx context.Context, id string) (chstore.Location, error) {
	c.calls.Add(1)
	return c.LocationLookup.LocationByExternalID(ctx, id)
}

func TestRedisDownFallsBackToStore(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer rdb.Close()
	store := &fakeStore{}
	store.set(line1)
	c, _ := newTest(t, store, rdb, "x:")
	if l, err := c.Lookup(context.Background(), "line_1"); err != nil || l != line1 {
		t.Fatalf("with redis down: %+v, %v", l, err)
	}
	if n := testutil.ToFloat64(c.redisFallbacks); n < 1 {
		t.Errorf("redis fallbacks %v, want at least 1", n)
	}
}
