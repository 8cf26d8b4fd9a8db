package queryapi

import (
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/takt/takt/internal/auth"
)

// TestBadKeyFloodIsRefused: a flood of random keys from one address costs
// at most TAKT_AUTH_FAIL_BURST look-ups; then the address is answered 429
// with Retry-After (and the L2L envelope) until its budget refills.
func TestBadKeyFloodIsRefused(t *testing.T) {
	store, rdb, cfg, _ := seededDB(t)
	f := &fixture{srv: serve(t, store, rdb, nil, cfg)}
	codes := map[int]int{}
	start := time.Now()
	for range 30 {
		key, _, _ := auth.NewKey()
		status, hdr, body := f.get(t, "/api/1.0/sites/", key)
		codes[status]++
		if status == http.StatusTooManyRequests {
			var e envelope
			// What is left of the next token's 5 s (the budget refills at 0.2 a second).
			ra, _ := strconv.Atoi(hdr.Get("Retry-After"))
			if err := json.Unmarshal(body, &e); err != nil || e.Success || e.Error == "" || ra < 1 || ra > 5 {
				t.Fatalf("429 with Retry-After %q, body %s", hdr.Get("Retry-After"), body)
			}
		}
	}
	refilled := int(time.Since(start).Seconds() * 0.2) // a slow machine may have earned more
	if n := codes[http.StatusUnauthorized]; n < 10 || n > 10+refilled || n+codes[http.StatusTooManyRequests] != 30 {
		t.Fatalf("30 random keys: %v; want 10 (+%d refilled) × 401, the rest 429", codes, refilled)
	}
}
