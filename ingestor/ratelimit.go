package ingestor

import (
	"context"
	"net/http"

	"github.com/takt/takt/internal/auth"
)

// limit takes cost tokens (one per part) from the key's rate-limit bucket.
// When the bucket is empty it sets a 429 answer in res and returns false.
// The limiter fails open when Redis is down, and runs only after the key
// was authenticated.
func (h *handler) limit(ctx context.Context, p auth.Principal, cost int, res *result) bool {
	if h.limiter == nil {
		return true
	}
	d := h.limiter.Allow(ctx, p.KeyID, cost)
	if d.Allowed {
		return true
	}
	res.status, res.body, res.retry = http.StatusTooManyRequests, bodyRateLimited, d.RetryAfter
	return false
}
