package rcache

import (
	"context"
	"errors"
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/takt/takt/internal/redisx"
	"github.com/takt/takt/internal/testenv"
)

// TestRedisHangingFallsBackInTime: a Redis that accepts connections and
// never answers (paused with CLIENT PAUSE, or a stalled host) must cost a
// look-up RedisTimeout, not the client's socket timeouts: the client
// NewRedisClient makes must honour the call's deadline. Before it did,
// every cache miss in the ingestor waited seconds, and requests piled up.
func TestRedisHangingFallsBackInTime(t *testing.T) {
	testenv.Stack(t) // an integration test: skipped under -short
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server not installed (make up installs it): %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	srv := exec.Command(bin, "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no", "--dir", t.TempDir())
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })

	ctl := redis.NewClient(&redis.Options{Addr: addr})
	defer ctl.Close()
	ctx := context.Background()
	for deadline := time.Now().Add(10 * time.Second); ctl.Ping(ctx).Err() != nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("redis did not start")
		}
	}

	rdb := redisx.NewClient(addr, "")
	defer rdb.Close()
	src := &source{}
	c, _, _ := newTest(t, src, rdb, "x:", func(cfg *Config) { cfg.Now = time.Now })
	if _, found, err := c.Get(ctx, "good"); err != nil || !found {
		t.Fatalf("get with redis up: %v, %v", found, err)
	}

	const pause = 6 * time.Second
	if err := ctl.Do(ctx, "CLIENT", "PAUSE", strconv.Itoa(int(pause.Milliseconds())), "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, found, err := c.Get(ctx, "bad")
	took := time.Since(start)
	if err != nil || found {
		t.Fatalf("get with redis paused: %v, %v", found, err)
	}
	// RedisTimeout (200 ms) plus the source; far below the pause.
	if limit := 2 * time.Second; took > limit {
		t.Fatalf("a look-up with redis paused took %s, want < %s (the cache's RedisTimeout is %s)",
			took.Round(time.Millisecond), limit, NewConfig().RedisTimeout)
	}
	if src.calls.Load() != 2 {
		t.Fatalf("source asked %d times, want 2", src.calls.Load())
	}
}

// TestStoreDownRedisSlowStillAnswers: with the store failing (ClickHouse
// down) and Redis skipped for its last failure (a busy host made one call
// slower than RedisTimeout), a look-up whose entry Redis holds must still
// be answered from Redis, not fail: ingest must go on without ClickHouse
// while Redis has its keys and locations.
func TestStoreDownRedisSlowStillAnswers(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	src := &source{}
	ctx := context.Background()
	c, clk, _ := newTest(t, src, rdb, prefix, nil)
	if _, found, err := c.Get(ctx, "good"); err != nil || !found {
		t.Fatalf("first look-up: %v, %v", found, err)
	}
	clk.add(NewConfig().LocalTTL + time.Second) // the process entry expired; Redis keeps its own
	c.redisFailed("get", errors.New("i/o timeout"))
	src.err = errors.New("clickhouse down")
	v, found, err := c.Get(ctx, "good")
	if err != nil || !found || v.Name != "good" {
		t.Fatalf("look-up with the store down and redis skipped: %+v, %v, %v", v, found, err)
	}
	// A key Redis does not hold still fails with the store's error.
	if _, _, err := c.Get(ctx, "other"); err == nil {
		t.Fatal("a key neither Redis nor the store has was answered")
	}
}
