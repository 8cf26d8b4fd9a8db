package queryapi

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/testenv"
)

// A read that finds every ClickHouse connection of the query API in use
// for as long as it may wait for one is answered 503 with Retry-After
// (try again: nothing is wrong with the read), not 500; once the
// connection is free the same read succeeds.
func TestReadWithEveryConnectionBusy(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs the local stack")
	}
	store, rdb, cfg, seeded := seededDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	one := cfg.ClickHouse
	one.MaxOpenConns, one.DialTimeout = 1, 300*time.Millisecond
	small, err := chstore.Open(ctx, one, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { small.Close() })
	srv := serve(t, small, rdb, nil, cfg)
	get := func() (int, http.Header) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/api/1.0/parts/?limit=1", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("L2LAUTH", seeded.APIKey)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header
	}
	// The key and the site's time zone are cached from here on.
	if status, _ := get(); status != http.StatusOK {
		t.Fatalf("read with a free connection: HTTP %d", status)
	}

	// Hold the pool's only connection with a query that runs ~2.5 s.
	held := make(chan error, 1)
	go func() {
		_, err := small.QueryUint64(ctx, "SELECT toUInt64(sleep(2.5)) + 0 * length('held by the busy test')")
		held <- err
	}()
	for {
		n, err := store.QueryUint64(ctx, "SELECT count() FROM system.processes WHERE query LIKE '%held by the busy test%' AND query NOT LIKE '%system.processes%'")
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			break
		}
		select {
		case err := <-held:
			t.Fatalf("the holding query ended before it was seen running: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}

	status, hdr := get()
	if status != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" {
		t.Errorf("read with every connection in use: HTTP %d, Retry-After %q; want 503 with Retry-After", status, hdr.Get("Retry-After"))
	}
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	if status, _ := get(); status != http.StatusOK {
		t.Errorf("read after the connection was freed: HTTP %d", status)
	}
}
