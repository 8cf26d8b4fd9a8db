package ratelimit

import (
	"context"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/takt/takt/internal/testenv"
)

// memUsage is a UsageSink that keeps the latest time per key, as
// apikey_usage does.
type memUsage struct {
	mu   sync.Mutex
	used map[uint64]time.Time
	puts int
}

func (m *memUsage) PutKeyUsage(_ context.Context, used map[uint64]time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.used == nil {
		m.used = map[uint64]time.Time{}
	}
	for id, t := range used {
		if t.After(m.used[id]) {
			m.used[id] = t
		}
	}
	m.puts++
	return nil
}

func (m *memUsage) snapshot() map[uint64]time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.used)
}

func TestUsageCopy(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	ctx := context.Background()
	cfg := Config{DefaultRate: 1, DefaultBurst: 1, RedisTimeout: time.Second, LimitsTTL: time.Hour}
	// Two replicas (two Limiters) record uses in the same place, limited
	// requests included.
	l1, _ := New(cfg, rdb, prefix, nil, quiet, nil, "test")
	l2, _ := New(cfg, rdb, prefix, nil, quiet, nil, "test")
	start := time.Now().Add(-time.Second).Truncate(time.Second)
	l1.Allow(ctx, 7, 1)
	l2.Allow(ctx, 8, 1)
	if d := l2.Allow(ctx, 8, 1); d.Allowed {
		t.Fatal("second request of key 8 within a burst of 1 allowed")
	}

	sink := &memUsage{}
	c := NewUsageCopier(rdb, prefix, sink, time.Hour, quiet)
	n, err := c.Copy(ctx)
	if err != nil || n != 2 {
		t.Fatalf("Copy: %d keys, %v; want 2", n, err)
	}
	got := sink.snapshot()
	for _, id := range []uint64{7, 8} {
		if got[id].Before(start) {
			t.Errorf("key %d: last use %v, want at or after %v", id, got[id], start)
		}
	}
	if _, ok := got[9]; ok {
		t.Error("unused key 9 copied")
	}

	// A later use moves the key's time on; a copy reads only recent uses.
	first := got[7]
	time.Sleep(1100 * time.Millisecond) // Redis time must pass a second
	l1.Allow(ctx, 7, 1)
	if _, err := c.Copy(ctx); err != nil {
		t.Fatal(err)
	}
	if now := sink.snapshot()[7]; !now.After(first) {
		t.Errorf("key 7 after a later use: %v, first use %v", now, first)
	}
}

func TestUsageCopierRunCopiesAtStop(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	cfg := Config{DefaultRate: 100, DefaultBurst: 100, RedisTimeout: time.Second, LimitsTTL: time.Hour}
	l, _ := New(cfg, rdb, prefix, nil, quiet, nil, "test")
	l.Allow(context.Background(), 11, 1)
	sink := &memUsage{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- NewUsageCopier(rdb, prefix, sink, time.Hour, quiet).Run(ctx) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, ok := sink.snapshot()[11]; !ok {
		t.Fatal("use of key 11 not copied when Run stopped")
	}
}

func TestUsageCopyRedisDown(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	defer rdb.Close()
	sink := &memUsage{}
	if _, err := NewUsageCopier(rdb, "x:", sink, time.Hour, quiet).Copy(context.Background()); err == nil {
		t.Fatal("Copy with Redis down: no error")
	}
	if sink.puts != 0 {
		t.Fatal("sink written with Redis down")
	}
}
