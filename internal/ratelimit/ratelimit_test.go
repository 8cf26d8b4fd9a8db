package ratelimit

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/takt/takt/internal/config"
	"github.com/takt/takt/internal/testenv"
)

type fixedLimits map[uint64]Limit

func (f fixedLimits) KeyRateLimits(context.Context) (map[uint64]Limit, error) { return f, nil }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestConfig(t *testing.T) {
	var e config.Env
	c := ConfigFromEnv(&e)
	if err := c.Validate(); err != nil || c.DefaultRate != 1000 || c.DefaultBurst != 2000 {
		t.Fatalf("defaults %+v: %v", c, err)
	}
	c.DefaultRate, c.DefaultBurst = 0, 0
	if err := c.Validate(); err == nil {
		t.Fatal("zero limits accepted")
	}
}

func TestBucket(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	cfg := Config{DefaultRate: 0.5, DefaultBurst: 3, RedisTimeout: time.Second, LimitsTTL: time.Hour}
	l, err := New(cfg, rdb, prefix, nil, quiet, prometheus.NewRegistry(), "test")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 3 {
		if d := l.Allow(ctx, 7, 1); !d.Allowed {
			t.Fatalf("request %d within the burst limited", i)
		}
	}
	d := l.Allow(ctx, 7, 1)
	if d.Allowed || d.RetryAfter <= 0 || d.RetryAfter > 2*time.Second {
		t.Fatalf("request over the burst: %+v", d)
	}
	if h := RetryAfterHeader(d.RetryAfter); h != "1" && h != "2" {
		t.Errorf("Retry-After %q", h)
	}
	if d := l.Allow(ctx, 8, 3); !d.Allowed {
		t.Errorf("another key shares the bucket")
	}
	if d := l.Allow(ctx, 9, 5); !d.Allowed {
		t.Errorf("a cost above the burst takes the whole burst")
	}
	if n := testutil.ToFloat64(l.decisions.WithLabelValues("limited")); n != 1 {
		t.Errorf("limited counter %v", n)
	}
	// Another replica (another Limiter) shares the buckets.
	l2, _ := New(cfg, rdb, prefix, nil, quiet, nil, "test")
	if d := l2.Allow(ctx, 7, 1); d.Allowed {
		t.Errorf("second replica did not see the empty bucket")
	}
}

func TestKeyLimits(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	cfg := Config{DefaultRate: 1, DefaultBurst: 1, RedisTimeout: time.Second, LimitsTTL: time.Hour}
	l, _ := New(cfg, rdb, prefix, fixedLimits{5: {Rate: 1000, Burst: 50}}, quiet, nil, "test")
	l.Allow(context.Background(), 5, 1) // starts the load
	deadline := time.Now().Add(5 * time.Second)
	for l.loading.Load() || len(*l.limits.Load()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("limits not loaded")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if lim := l.limitOf(5); lim.Rate != 1000 || lim.Burst != 50 {
		t.Fatalf("own limit %+v", lim)
	}
	if lim := l.limitOf(6); lim.Rate != 1 || lim.Burst != 1 {
		t.Fatalf("default limit %+v", lim)
	}
}

func TestFailOpen(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	defer rdb.Close()
	cfg := Config{DefaultRate: 1, DefaultBurst: 1, RedisTimeout: 200 * time.Millisecond, LimitsTTL: time.Hour}
	l, _ := New(cfg, rdb, "x:", nil, quiet, nil, "test")
	for range 3 {
		if d := l.Allow(context.Background(), 1, 1); !d.Allowed || !d.FailedOpen {
			t.Fatalf("Redis down: %+v", d)
		}
	}
	if n := testutil.ToFloat64(l.decisions.WithLabelValues("failed_open")); n != 3 {
		t.Errorf("failed_open counter %v", n)
	}
}

// TestLeases: a fast key takes its tokens from Redis in leases, so most
// requests never reach Redis, and two replicas sharing a bucket together
// admit no more than the bucket holds (plus what refills meanwhile).
func TestLeases(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	cfg := Config{DefaultRate: 100, DefaultBurst: 100, RedisTimeout: time.Second, LimitsTTL: time.Hour, LeaseWindow: time.Second}
	a, err := New(cfg, rdb, prefix, nil, quiet, prometheus.NewRegistry(), "a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(cfg, rdb, prefix, nil, quiet, prometheus.NewRegistry(), "b")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	start := time.Now()
	admitted := 0
	for i := range 300 {
		l := a
		if i%2 == 1 {
			l = b
		}
		if l.Allow(ctx, 42, 1).Allowed {
			admitted++
		}
	}
	refill := int(cfg.DefaultRate*time.Since(start).Seconds()) + 1
	if admitted < 100 || admitted > 100+refill {
		t.Errorf("two replicas admitted %d of 300; the bucket holds 100 (+%d refilled)", admitted, refill)
	}
	calls := testutil.ToFloat64(a.redisCalls) + testutil.ToFloat64(b.redisCalls)
	if calls >= 50 {
		t.Errorf("%v Redis calls for 300 requests: leases are not used", calls)
	}
}
