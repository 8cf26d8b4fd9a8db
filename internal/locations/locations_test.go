package locations

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/demo"
	"github.com/takt/takt/internal/testenv"
)

// locations is a LocationLookup over a map.
type locations map[string]chstore.Location

func (m locations) LocationByExternalID(_ context.Context, id string) (chstore.Location, error) {
	if l, ok := m[id]; ok {
		return l, nil
	}
	return chstore.Location{}, fmt.Errorf("location %q: %w", id, chstore.ErrNotFound)
}

// countingStore counts the look-ups in a LocationLookup, and fails them
// with err when it is set. Look-ups run on other goroutines, but tests
// change it only between Lookup calls, which wait for them.
type countingStore struct {
	LocationLookup
	err   error
	calls atomic.Int64
}

func (c *countingStore) LocationByExternalID(ctx context.Context, id string) (chstore.Location, error) {
	c.calls.Add(1)
	if c.err != nil {
		return chstore.Location{}, c.err
	}
	return c.LocationLookup.LocationByExternalID(ctx, id)
}

var line1 = chstore.Location{Kind: "line", ID: 1, Site: 1, ExternalID: "line_1", Timezone: "Europe/Berlin"}

func newTest(t *testing.T, store LocationLookup, rdb *redis.Client, prefix string, opts ...Option) *Cache {
	t.Helper()
	c, err := New(store, rdb, prefix, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestLookup(t *testing.T) {
	locs := locations{"line_1": line1}
	store := &countingStore{LocationLookup: locs}
	// Look-ups end before Lookup returns, so the clock needs no lock.
	now := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	c := newTest(t, store, nil, "", Clock(func() time.Time { return now }))
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
	for range 50 { // after the first round from the cache
		for _, tt := range tests {
			got, err := c.Lookup(ctx, tt.id)
			if !errors.Is(err, tt.wantErr) || got != tt.want {
				t.Fatalf("Lookup(%q) = %+v, %v; want %+v, %v", tt.id, got, err, tt.want, tt.wantErr)
			}
		}
	}
	if n := store.calls.Load(); n != 3 { // line_1, LINE_1, nope: "" needs no look-up
		t.Fatalf("store asked %d times, want 3", n)
	}

	// A location created after a miss is found once the short negative
	// TTL (2 s by default) has passed.
	locs["nope"] = chstore.Location{Kind: "machine", ID: 9, Site: 1, ExternalID: "nope"}
	now = now.Add(2 * time.Second)
	if l, err := c.Lookup(ctx, "nope"); err != nil || l.ID != 9 {
		t.Fatalf("new location: %+v, %v", l, err)
	}
}

func TestLookupStoreError(t *testing.T) {
	store := &countingStore{LocationLookup: locations{"line_1": line1}, err: errors.New("down")}
	c := newTest(t, store, nil, "")
	if _, err := c.Lookup(context.Background(), "line_1"); err == nil || errors.Is(err, ErrNotFound) {
		t.Fatalf("err %v: want a look-up error", err)
	}
	store.err = nil
	if l, err := c.Lookup(context.Background(), "line_1"); err != nil || l != line1 {
		t.Fatalf("after recovery: %+v, %v (errors are not cached)", l, err)
	}
}

// Integration: real ClickHouse behind the cache, shared through Redis.
func TestCatalogWithClickHouseAndRedis(t *testing.T) {
	s, _ := testenv.ClickHouse(t)
	rdb, prefix := testenv.Redis(t)
	ctx := context.Background()
	if _, err := demo.Seed(ctx, s, "", ""); err != nil {
		t.Fatal(err)
	}
	c1 := newTest(t, s, rdb, prefix)
	l, err := c1.Lookup(ctx, demo.LineExternalID)
	if err != nil || l.Kind != "line" || l.ID != 1 || l.Site != demo.SiteID || l.Timezone != demo.SiteTimezone {
		t.Fatalf("line_1: %+v, %v", l, err)
	}
	if _, err := c1.Lookup(ctx, "LINE_1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("LINE_1: %v, want ErrNotFound", err)
	}
	// The entries keep the form they had before package rcache, which
	// instances of both versions read during a rolling deploy.
	for id, want := range map[string]string{
		"LINE_1": `{"found":false}`,
		"line_1": `{"found":true,"location":{"Kind":"line","ID":1,"Site":1,"ExternalID":"line_1","Timezone":"Europe/Berlin"}}`,
	} {
		if got := rdb.Get(ctx, prefix+"location:"+id).Val(); got != want {
			t.Errorf("redis entry of %s: %s, want %s", id, got, want)
		}
	}

	counting := &countingStore{LocationLookup: s}
	c2 := newTest(t, counting, rdb, prefix)
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

	// An entry under one id holding another id's location is not believed.
	rdb.Set(ctx, prefix+"location:LINE_2", rdb.Get(ctx, prefix+"location:line_1").Val(), time.Minute)
	if l, err := newTest(t, counting, rdb, prefix).Lookup(ctx, "LINE_2"); !errors.Is(err, ErrNotFound) || counting.calls.Load() != 2 {
		t.Fatalf("LINE_2 holding line_1's entry: %+v, %v, %d calls; want ErrNotFound from ClickHouse", l, err, counting.calls.Load())
	}
}

// bulkStore is a countingStore that can also list every location.
type bulkStore struct {
	countingStore
	locs  locations
	lists atomic.Int64
	gate  chan struct{} // when set, a listing waits for it
}

func (b *bulkStore) Locations(context.Context) ([]chstore.Location, error) {
	b.lists.Add(1)
	if b.gate != nil {
		<-b.gate
	}
	var out []chstore.Location
	for _, l := range b.locs {
		out = append(out, l)
	}
	return out, nil
}

// TestMissesShareOneListing: a fleet's machines missing the caches at once
// (a cold start, their entries expiring together) cost one listing of
// every location, not one query each; an id the listing lacks is looked up
// alone; a listing serves BulkMaxAge; Forget drops it.
func TestMissesShareOneListing(t *testing.T) {
	locs := locations{}
	for i := range 50 {
		id := fmt.Sprintf("m%02d", i)
		locs[id] = chstore.Location{Kind: "machine", ID: uint64(i + 1), Site: 1, ExternalID: id}
	}
	store := &bulkStore{countingStore: countingStore{LocationLookup: locs}, locs: locs, gate: make(chan struct{})}
	var clock atomic.Int64
	clock.Store(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()).UTC() }
	c := newTest(t, store, nil, "", Clock(now))
	ctx := context.Background()

	errs := make(chan error, len(locs))
	for id, want := range locs {
		go func() {
			got, err := c.Lookup(ctx, id)
			if err == nil && got != want {
				err = fmt.Errorf("%s: got %+v, want %+v", id, got, want)
			}
			errs <- err
		}()
	}
	time.Sleep(50 * time.Millisecond) // every look-up waits on the one listing
	close(store.gate)
	for range locs {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if l, s := store.lists.Load(), store.calls.Load(); l != 1 || s != 0 {
		t.Fatalf("50 machines missing at once: %d listings and %d single look-ups, want 1 and 0", l, s)
	}

	// Unknown within BulkMaxAge: alone, no second listing.
	if _, err := c.Lookup(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("nope: %v", err)
	}
	if l, s := store.lists.Load(), store.calls.Load(); l != 1 || s != 1 {
		t.Fatalf("an unknown id: %d listings and %d single look-ups, want 1 and 1", l, s)
	}

	// Past every TTL and BulkMaxAge: the next misses share a new listing.
	clock.Add(int64(time.Hour))
	for id := range locs {
		if _, err := c.Lookup(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if l, s := store.lists.Load(), store.calls.Load(); l != 2 || s != 1 {
		t.Fatalf("after expiry: %d listings and %d single look-ups, want 2 and 1", l, s)
	}

	// A location changed: Forget drops the listing with the entry.
	moved := locs["m07"]
	moved.Site = 2
	locs["m07"] = moved
	if err := c.Forget(ctx, "m07"); err != nil {
		t.Fatal(err)
	}
	if l, err := c.Lookup(ctx, "m07"); err != nil || l.Site != 2 {
		t.Fatalf("m07 after Forget: %+v, %v; want site 2", l, err)
	}
	if n := store.lists.Load(); n != 3 {
		t.Fatalf("after Forget: %d listings, want 3", n)
	}
}

// TestExpiredLocationServedWhileRefreshed: by default a location past its
// LocalTTL is answered at once while the refresh runs; one dropped by
// Forget is not.
func TestExpiredLocationServedWhileRefreshed(t *testing.T) {
	locs := locations{"line_1": line1}
	store := &bulkStore{countingStore: countingStore{LocationLookup: locs}, locs: locs}
	var clock atomic.Int64
	clock.Store(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	c := newTest(t, store, nil, "", Clock(func() time.Time { return time.Unix(0, clock.Load()).UTC() }))
	ctx := context.Background()
	if _, err := c.Lookup(ctx, "line_1"); err != nil {
		t.Fatal(err)
	}
	clock.Add(int64(31 * time.Second)) // past LocalTTL (30 s)
	store.gate = make(chan struct{})   // the refresh's listing waits
	done := make(chan error, 1)
	go func() {
		_, err := c.Lookup(ctx, "line_1")
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("an expired location waited for its refresh")
	}
	close(store.gate)
	for store.lists.Load() < 2 { // the refresh ran; let it store its answer
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	if err := c.Forget(ctx, "line_1"); err != nil {
		t.Fatal(err)
	}
	before := store.lists.Load() + store.calls.Load()
	if _, err := c.Lookup(ctx, "line_1"); err != nil {
		t.Fatal(err)
	}
	if store.lists.Load()+store.calls.Load() == before {
		t.Fatal("a forgotten location was answered from memory")
	}
}

// TestChangeElsewhereDropsTheListing: a location changed through another
// instance (its Forget's invalidation message) is not answered from this
// instance's listing of every location.
func TestChangeElsewhereDropsTheListing(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	locs := locations{"m01": {Kind: "machine", ID: 1, Site: 1, ExternalID: "m01"}, "m02": {Kind: "machine", ID: 2, Site: 1, ExternalID: "m02"}}
	store := &bulkStore{countingStore: countingStore{LocationLookup: locs}, locs: locs}
	here, there := newTest(t, store, rdb, prefix), newTest(t, store, rdb, prefix)
	ctx := context.Background()
	listed := time.Now()
	if _, err := here.Lookup(ctx, "m02"); err != nil { // lists every location, m01 too
		t.Fatal(err)
	}
	delete(locs, "m01") // its site closed
	// Forget again until the message reaches here (its subscription may
	// still be starting), but well before the listing's BulkMaxAge ends.
	for {
		if err := there.Forget(ctx, "m01"); err != nil {
			t.Fatal(err)
		}
		_, err := here.Lookup(ctx, "m01")
		if errors.Is(err, ErrNotFound) {
			return
		}
		if time.Since(listed) > BulkMaxAge-time.Second {
			t.Fatalf("m01 after its change elsewhere: %v; want ErrNotFound (%d listings, %d single)", err, store.lists.Load(), store.calls.Load())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
