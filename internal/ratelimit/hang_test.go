package ratelimit

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
)

// TestHangingRedisFailsOpenOnce: requests of one key that queue behind a
// lease call to a Redis that hangs (accepts connections, never answers)
// must fail open as soon as that call failed, not each make the same call
// and wait its timeout in turn: 500 queued requests once cost 50 s.
func TestHangingRedisFailsOpenOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns sync.WaitGroup
	stop := make(chan struct{})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Go(func() { <-stop; c.Close() }) // never answers
		}
	}()
	defer func() { ln.Close(); close(stop); conns.Wait() }()

	rdb := redis.NewClient(&redis.Options{Addr: ln.Addr().String(), ContextTimeoutEnabled: true, MaxRetries: -1})
	defer rdb.Close()
	cfg := Config{DefaultRate: 1000, DefaultBurst: 2000, RedisTimeout: 100 * time.Millisecond,
		LeaseWindow: 50 * time.Millisecond, LimitsTTL: time.Hour}
	l, err := New(cfg, rdb, "x:", nil, quiet, nil, "test")
	if err != nil {
		t.Fatal(err)
	}
	const n = 40
	var wg sync.WaitGroup
	var mu sync.Mutex
	var refused int
	for range n {
		wg.Go(func() {
			if d := l.Allow(context.Background(), 1, 1); !d.Allowed || !d.FailedOpen {
				mu.Lock()
				refused++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if refused > 0 {
		t.Fatalf("%d of %d requests not let through with Redis hanging", refused, n)
	}
	// One call finds Redis hanging; the requests queued behind it fail
	// open without calling again (the breaker holds for a second).
	if calls := testutil.ToFloat64(l.redisCalls); calls != 1 {
		t.Fatalf("%v Redis calls for %d requests queued on one key, want 1", calls, n)
	}
}
