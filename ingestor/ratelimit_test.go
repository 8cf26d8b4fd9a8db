package ingestor

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/takt/takt/internal/auth"
	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/testenv"
)

// tinyKey stores an ingest key of the demo user whose own limit is one
// part a second with bursts of two.
func (s *stack) tinyKey(t *testing.T, id uint64) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	key, prefix, hash := auth.NewKey()
	if err := s.store.PutAPIKey(ctx, chstore.APIKey{ID: id, User: 1, Prefix: prefix, Hash: hash,
		Scopes: []string{"ingest"}, Active: true}); err != nil {
		t.Fatal(err)
	}
	row, a, err := s.store.ReadRow(ctx, "apikeys", id)
	if err != nil {
		t.Fatal(err)
	}
	row["rate_limit"], row["rate_burst"] = 1.0, 2.0
	a.Version++
	if err := s.store.WriteRow(ctx, "apikeys", id, row, a); err != nil {
		t.Fatal(err)
	}
	return key
}

// run starts the service as main does with cfg and returns its base URL.
func run(t *testing.T, cfg Config) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, testenv.Logger(t)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	base := "http://" + cfg.Addr
	waitReady(t, base, done)
	return base
}

// postPart sends one part with key and returns the status, Retry-After and body.
func postPart(t *testing.T, base, key string) (int, string, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+Path, strings.NewReader(`{"part":{"external_id":"line_1"}}`))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("API-KEY", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Retry-After"), string(b)
}

// TestRateLimit: a key with a tiny limit gets 429 with Retry-After after
// its burst, other keys do not notice, and every use is recorded for the
// apikeys area's last_used.
func TestRateLimit(t *testing.T) {
	s := newStack(t)
	tiny := s.tinyKey(t, 4)
	base := run(t, s.config(t))

	for i := range 2 {
		if code, _, body := postPart(t, base, tiny); code != http.StatusOK {
			t.Fatalf("part %d within the burst: %d %s", i, code, body)
		}
	}
	code, retry, body := postPart(t, base, tiny)
	if code != http.StatusTooManyRequests || body != string(bodyRateLimited) {
		t.Fatalf("part after the burst: %d %s, want 429 %s", code, body, bodyRateLimited)
	}
	if retry != "1" {
		t.Errorf("Retry-After %q, want 1 (one part a second)", retry)
	}
	for range 3 {
		send(t, base, call{s.key, `{"part":{"external_id":"line_1"}}`, 200, okBody})
	}
	// Authentication comes first: a bad key is 401, never 429.
	send(t, base, call{"takt_0000000000000000000000000000000000000000", `{"part":{"external_id":"line_1"}}`, 401, invalidKeyBody})
	send(t, base, call{"", `{"part":{"external_id":"line_1"}}`, 401, invalidKeyBody})

	for _, id := range []string{"1", "4"} {
		if err := s.rdb.ZScore(context.Background(), s.prefix+"ratelimit:used", id).Err(); err != nil {
			t.Errorf("use of key %s not recorded: %v", id, err)
		}
	}
	if len(s.records(t, 5)) != 5 {
		t.Error("accepted parts not on the topic")
	}
}

// TestRateLimitRedisDown: without Redis the limiter fails open for
// authenticated keys (counted), and unauthenticated requests are still
// refused.
func TestRateLimitRedisDown(t *testing.T) {
	s := newStack(t)
	tiny := s.tinyKey(t, 4)
	cfg := s.config(t)
	cfg.RedisAddr = closedAddr(t)
	base := run(t, cfg)

	for i := range 4 { // twice the burst
		if code, _, body := postPart(t, base, tiny); code != http.StatusOK {
			t.Fatalf("part %d with Redis down: %d %s, want 200 (fail open)", i, code, body)
		}
	}
	send(t, base, call{"takt_0000000000000000000000000000000000000000", `{"part":{"external_id":"line_1"}}`, 401, invalidKeyBody})
	send(t, base, call{"", `{"part":{"external_id":"line_1"}}`, 401, invalidKeyBody})
	send(t, base, call{s.readKey, `{"part":{"external_id":"line_1"}}`, 401, invalidKeyBody})

	m := scrape(t, cfg)
	if !strings.Contains(string(m), `takt_ingestor_ratelimit_decisions_total{result="failed_open"} 4`) {
		t.Errorf("failed-open requests not counted as 4:\n%s", grepLines(string(m), "ratelimit"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for l := range strings.SplitSeq(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
