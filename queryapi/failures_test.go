package queryapi

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/takt/takt/internal/auth"
)

// TestBadKeyFloodIsRefused: a flood of random keys from one address costs
// at most TAKT_AUTH_FAIL_BURST look-ups; then the address is answered 429
// with Retry-After (and the L2L envelope) until its budget refills.
func TestBadKeyFloodIsRefused(t *testing.T) {
	store, rdb, cfg, _ := seededDB(t)
	f := &fixture{srv: serve(t, store, rdb, nil, cfg)}
	codes := map[int]int{}
	for range 30 {
		key, _, _ := auth.NewKey()
		status, hdr, body := f.get(t, "/api/1.0/sites/", key)
		codes[status]++
		if status == http.StatusTooManyRequests {
			var e envelope
			if err := json.Unmarshal(body, &e); err != nil || e.Success || e.Error == "" || hdr.Get("Retry-After") != "5" {
				t.Fatalf("429 with Retry-After %q, body %s", hdr.Get("Retry-After"), body)
			}
		}
	}
	if codes[http.StatusUnauthorized] != 10 || codes[http.StatusTooManyRequests] != 20 {
		t.Fatalf("30 random keys: %v; want 10 × 401, 20 × 429", codes)
	}
}
