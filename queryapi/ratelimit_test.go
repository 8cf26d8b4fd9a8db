package queryapi

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/takt/takt/internal/auth"
	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/ratelimit"
	"github.com/takt/takt/internal/testenv"
)

// limitedKey stores a read key of user 1 with its own rate limit.
func limitedKey(ctx context.Context, t *testing.T, store *chstore.Store, id uint64, rate, burst float64) string {
	t.Helper()
	key, prefix, hash := auth.NewKey()
	if err := store.PutAPIKey(ctx, chstore.APIKey{ID: id, User: 1, Prefix: prefix, Hash: hash,
		Scopes: []string{"read"}, Active: true, Audit: chstore.Audit{CreatedBy: "test", LastUpdatedBy: "test"}}); err != nil {
		t.Fatal(err)
	}
	row, a, err := store.ReadRow(ctx, "apikeys", id)
	if err != nil {
		t.Fatal(err)
	}
	row["rate_limit"], row["rate_burst"] = rate, burst
	a.Version++
	if err := store.WriteRow(ctx, "apikeys", id, row, a); err != nil {
		t.Fatal(err)
	}
	return key
}

// TestRateLimitAndLastUsed: a key with a tiny limit gets 429 with
// Retry-After once its burst is spent, in both formats, while another key
// is served; the uses the limiter recorded reach the apikeys area's
// last_used through the usage copier.
func TestRateLimitAndLastUsed(t *testing.T) {
	store, rdb, cfg, seeded := seededDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	tiny := limitedKey(ctx, t, store, 5, 1, 2) // 1 request/s, bursts of 2
	limitedKey(ctx, t, store, 6, 0, 0)         // never used

	f := &fixture{srv: serve(t, store, rdb, nil, cfg)}

	for range 2 {
		f.getJSON(t, "/api/1.0/sites/", tiny, http.StatusOK)
	}
	for _, path := range []string{"/api/1.0/sites/", "/api/1.0/sites/?format=xml", "/api/1.0/nothing/"} {
		status, hdr, body := f.get(t, path, tiny)
		if status != http.StatusTooManyRequests {
			t.Fatalf("%s after the burst: status %d: %s", path, status, body)
		}
		if ra := hdr.Get("Retry-After"); ra != "1" {
			t.Errorf("%s: Retry-After %q, want 1 (one token a second)", path, ra)
		}
		if path == "/api/1.0/sites/" {
			var e envelope
			if err := json.Unmarshal(body, &e); err != nil || e.Success || e.Error == "" {
				t.Errorf("429 body %s is not {success: false, error}", body)
			}
		}
	}
	// Another key of the same user has a bucket of its own.
	for range 3 {
		f.getJSON(t, "/api/1.0/sites/", seeded.APIKey, http.StatusOK)
	}
	// A bad key is answered 401 before any bucket is touched.
	f.getJSON(t, "/api/1.0/sites/?auth=takt_0000000000000000000000000000000000000000", "", http.StatusUnauthorized)

	// last_used: null until the uses are copied, then the time of the last
	// request (whole seconds), for the keys that were used.
	start := time.Now().Add(-2 * time.Second).UTC()
	one := func(id string) map[string]any {
		t.Helper()
		var rec map[string]any
		e := f.getJSON(t, "/api/1.0/apikeys/"+id+"/", seeded.APIKey, http.StatusOK)
		if err := json.Unmarshal(e.Data, &rec); err != nil {
			t.Fatal(err)
		}
		return rec
	}
	if v := one("5")["last_used"]; v != nil {
		t.Fatalf("last_used before any copy: %v", v)
	}
	n, err := ratelimit.NewUsageCopier(rdb, cfg.RedisPrefix, store, time.Hour, testenv.Logger(t)).Copy(ctx)
	if err != nil || n != 2 {
		t.Fatalf("copy usage: %d keys, %v; want 2 (keys 1 and 5)", n, err)
	}
	for _, id := range []string{"1", "5"} {
		v, _ := one(id)["last_used"].(string)
		at, err := time.Parse("2006-01-02 15:04:05.000", v)
		if err != nil || at.Before(start.Truncate(time.Second)) {
			t.Errorf("key %s: last_used %q, want a time after %s", id, v, start)
		}
	}
	if v := one("6")["last_used"]; v != nil {
		t.Errorf("unused key 6: last_used %v, want null", v)
	}
	unused := records(t, f.getJSON(t, "/api/1.0/apikeys/?last_used__isnull=True&fields=id", seeded.APIKey, http.StatusOK))
	if len(unused) != 1 || idOf(t, unused[0]) != 6 {
		t.Errorf("last_used__isnull=True: %v, want key 6 only", unused)
	}
	// A second replica's copy of an older use does not move it back.
	if err := store.PutKeyUsage(ctx, map[uint64]time.Time{5: time.Unix(1_600_000_000, 0)}); err != nil {
		t.Fatal(err)
	}
	if v, _ := one("5")["last_used"].(string); v < start.Format("2006-01-02") {
		t.Errorf("key 5 after an older copy: last_used %q", v)
	}
}
