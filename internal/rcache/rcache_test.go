package rcache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/takt/takt/internal/testenv"
)

// value stands for what callers cache: a JSON object with optional members.
type value struct {
	Name string   `json:"name,omitempty"`
	Tags []string `json:"tags,omitzero"`
}

var errNotFound = errors.New("not found")

// source is a Load that knows the key "good" and counts its calls. Loads
// run on other goroutines, but tests change err only between Gets, which
// wait for them.
type source struct {
	err   error
	gate  chan struct{} // when set, loads wait for it to close
	calls atomic.Int64
}

func (s *source) load(ctx context.Context, key string) (value, error) {
	s.calls.Add(1)
	if s.gate != nil {
		<-s.gate
	}
	switch {
	case s.err != nil:
		return value{}, s.err
	case key != "good":
		return value{}, errNotFound
	}
	return value{Name: "good", Tags: []string{"a"}}, nil
}

// clock is a settable time source.
type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *clock) add(d time.Duration) { c.ns.Add(int64(d)) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// newTest returns a Cache over src with the default settings changed by
// set (when not nil), its clock and its registry.
func newTest(t *testing.T, src *source, rdb *redis.Client, prefix string, set func(*Config)) (*Cache[string, value], *clock, *prometheus.Registry) {
	t.Helper()
	clk, reg, cfg := &clock{}, prometheus.NewRegistry(), NewConfig()
	clk.ns.Store(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	cfg.Now = clk.now
	if set != nil {
		set(&cfg)
	}
	c, err := New(Spec[string, value]{
		Subsystem: "test", RedisPrefix: prefix + "v:", Name: func(k string) string { return k },
		Load: src.load, NotFound: errNotFound, Valid: func(k string, v value) bool { return v.Name == k },
	}, cfg, rdb, quiet, reg)
	if err != nil {
		t.Fatal(err)
	}
	return c, clk, reg
}

func TestGetCachesBothAnswers(t *testing.T) {
	// A step advances the clock by after, gets key and checks the answer
	// and the number of loads so far.
	type step struct {
		after time.Duration
		key   string
		loads int64
	}
	tests := []struct {
		name  string
		set   func(*Config)
		steps []step
	}{
		{"defaults", nil, []step{
			{0, "good", 1}, {0, "bad", 2}, {29 * time.Second, "good", 2}, {0, "bad", 3}, // negative TTL 10 s
			{999 * time.Millisecond, "good", 3}, {time.Millisecond, "good", 4}, // positive TTL 30 s
		}},
		{"short TTLs", func(c *Config) { c.LocalTTL, c.NegativeTTL = 2*time.Second, time.Second }, []step{
			{0, "good", 1}, {0, "bad", 2}, {999 * time.Millisecond, "good", 2}, {0, "bad", 2},
			{time.Millisecond, "good", 2}, {0, "bad", 3}, {time.Second, "good", 4}, {0, "bad", 5},
		}},
		{"zero TTLs cache nothing", func(c *Config) { c.LocalTTL, c.NegativeTTL = 0, 0 }, []step{
			{0, "good", 1}, {0, "good", 2}, {0, "bad", 3}, {0, "bad", 4},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := &source{}
			c, clk, _ := newTest(t, src, nil, "", tt.set)
			for i, s := range tt.steps {
				clk.add(s.after)
				v, found, err := c.Get(context.Background(), s.key)
				if err != nil || found != (s.key == "good") || found && v.Name != "good" {
					t.Fatalf("step %d: Get(%q) = %+v, %v, %v", i, s.key, v, found, err)
				}
				if n := src.calls.Load(); n != s.loads {
					t.Fatalf("step %d: %d loads, want %d", i, n, s.loads)
				}
			}
		})
	}
}

func TestMetrics(t *testing.T) {
	src := &source{}
	c, _, reg := newTest(t, src, nil, "", func(c *Config) { c.Namespace = "takt_ingestor" })
	for range 100 {
		c.Get(context.Background(), "good")
		c.Get(context.Background(), "bad")
	}
	src.err = errors.New("down")
	for range 2 {
		if _, _, err := c.Get(context.Background(), "other"); !errors.Is(err, src.err) {
			t.Fatalf("err %v, want the load's", err)
		}
	}
	const want = `# HELP takt_ingestor_test_cache_hits_total Look-ups answered from a cache, by layer (local, redis, stale: from memory past its TTL while refreshed).
# TYPE takt_ingestor_test_cache_hits_total counter
takt_ingestor_test_cache_hits_total{layer="local"} 198
# HELP takt_ingestor_test_cache_misses_total Look-ups that found no cache entry and went to the store.
# TYPE takt_ingestor_test_cache_misses_total counter
takt_ingestor_test_cache_misses_total 4
# HELP takt_ingestor_test_redis_fallbacks_total Redis calls that failed, or were skipped for a second after a failure; the store answered instead.
# TYPE takt_ingestor_test_redis_fallbacks_total counter
takt_ingestor_test_redis_fallbacks_total 0
# HELP takt_ingestor_test_store_lookups_total Look-ups in the store, by result (found, not_found, error).
# TYPE takt_ingestor_test_store_lookups_total counter
takt_ingestor_test_store_lookups_total{result="error"} 2
takt_ingestor_test_store_lookups_total{result="found"} 1
takt_ingestor_test_store_lookups_total{result="not_found"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err) // errors are not cached: two look-ups, two errors
	}
}

func TestGetSharesOneLoad(t *testing.T) {
	src := &source{gate: make(chan struct{})}
	c, _, _ := newTest(t, src, nil, "", nil)
	// The first caller gives up at once; the load it started goes on.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := c.Get(ctx, "good"); !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	const n = 50
	var wg sync.WaitGroup
	var wrong atomic.Int64
	for range n {
		wg.Go(func() {
			if v, found, err := c.Get(context.Background(), "good"); err != nil || !found || v.Name != "good" {
				wrong.Add(1)
			}
		})
	}
	time.Sleep(20 * time.Millisecond) // let the goroutines pile up on the one load, then release it
	close(src.gate)
	wg.Wait()
	if _, found, err := c.Get(context.Background(), "good"); err != nil || !found || wrong.Load() != 0 || src.calls.Load() != 1 {
		t.Fatalf("%d wrong answers, %d loads by %d concurrent Gets of one key and one more; want 0 and 1", wrong.Load(), src.calls.Load(), n)
	}
}

func TestLocalCacheIsBounded(t *testing.T) {
	for _, max := range []int{1, 10, 100} {
		c := newLocalCache[int, int](max)
		now := time.Now()
		for i := range 10_000 {
			c.put(i, i, now, time.Minute)
		}
		if n := c.len(); n > max {
			t.Fatalf("cache holds %d entries, bound is %d", n, max)
		}
		if v, ok := c.get(9_999, now); !ok || v != 9_999 {
			t.Fatalf("max %d: latest entry missing", max)
		}
		if _, ok := c.get(9_999, now.Add(time.Minute)); ok {
			t.Fatalf("max %d: entry alive at its expiry", max)
		}
	}
}

// TestUnknownKeysDoNotEvictFoundValues: a flood of made-up keys must not
// push a found value out of the process (it did when both answers shared
// one map that dropped a random tenth when full).
func TestUnknownKeysDoNotEvictFoundValues(t *testing.T) {
	src := &source{}
	c, _, _ := newTest(t, src, nil, "", func(c *Config) { c.MaxEntries = 100 })
	ctx := context.Background()
	c.Get(ctx, "good")
	for i := range 10_000 {
		c.Get(ctx, fmt.Sprintf("made-up-%d", i))
	}
	if v, found, err := c.Get(ctx, "good"); err != nil || !found || v.Name != "good" {
		t.Fatalf("Get(good) = %+v, %v, %v", v, found, err)
	}
	if n := src.calls.Load(); n != 1+10_000 {
		t.Fatalf("%d loads, want %d: the found value was evicted by unknown keys", n, 1+10_000)
	}
}

// TestNegativeCacheIsAnLRU: "not found" answers are bounded by MaxNegative,
// the least recently used going first, so an unknown key that keeps coming
// back (a device with a stale key) stays cached through a flood.
func TestNegativeCacheIsAnLRU(t *testing.T) {
	src := &source{}
	c, _, _ := newTest(t, src, nil, "", func(c *Config) { c.MaxNegative = 100 })
	ctx := context.Background()
	for i := range 10_000 {
		c.Get(ctx, fmt.Sprintf("made-up-%d", i))
		if i%50 == 0 {
			c.Get(ctx, "stale")
		}
	}
	if n := c.neg.len(); n > 100 {
		t.Fatalf("%d negative entries, bound is 100", n)
	}
	if n := src.calls.Load(); n != 10_000+1 {
		t.Fatalf("%d loads, want %d (the stale key loaded once)", n, 10_000+1)
	}
	if _, found, ok := c.Peek("stale"); !ok || found {
		t.Fatalf("Peek(stale) = found %v, ok %v; want a cached not-found", found, ok)
	}
	if _, _, ok := c.Peek("made-up-0"); ok {
		t.Fatal("the oldest made-up key is still cached")
	}
}

// TestEncode covers the edges; the Redis tests cover the common forms.
func TestEncode(t *testing.T) {
	if b, err := encode(answer[value]{found: true}); err != nil || string(b) != `{"found":true}` {
		t.Errorf("empty object: %s, %v", b, err)
	}
	if b, err := encode(answer[value]{v: value{Name: "x"}}); err != nil || string(b) != `{"found":false}` {
		t.Errorf("not found: %s, %v", b, err)
	}
	if _, err := encode(answer[int]{v: 1, found: true}); err == nil {
		t.Errorf("encode accepted a value that is not a JSON object")
	}
}

// Integration: the Redis layer.

func TestRedisLayerIsShared(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	src := &source{}
	ctx := context.Background()
	c1, _, _ := newTest(t, src, rdb, prefix, nil)
	c1.Get(ctx, "good")
	c1.Get(ctx, "bad")
	for key, want := range map[string]struct {
		entry    string
		min, max time.Duration
	}{
		"bad":  {`{"found":false}`, 0, 10 * time.Second},
		"good": {`{"found":true,"name":"good","tags":["a"]}`, 10 * time.Second, 5 * time.Minute},
	} {
		if b := rdb.Get(ctx, prefix+"v:"+key).Val(); b != want.entry {
			t.Errorf("redis entry of %s: %s, want %s", key, b, want.entry)
		}
		if ttl := rdb.TTL(ctx, prefix+"v:"+key).Val(); ttl <= want.min || ttl > want.max {
			t.Errorf("redis entry of %s: ttl %v, want (%v, %v]", key, ttl, want.min, want.max)
		}
	}

	// Another instance: its own process cache is empty, Redis answers.
	c2, _, _ := newTest(t, src, rdb, prefix, nil)
	for range 2 {
		if v, found, err := c2.Get(ctx, "good"); err != nil || !found || v.Name != "good" || v.Tags[0] != "a" {
			t.Fatalf("second instance: %+v, %v, %v", v, found, err)
		}
		if _, found, err := c2.Get(ctx, "bad"); err != nil || found {
			t.Fatalf("second instance, bad key: %v, %v", found, err)
		}
	}
	redisHits, localHits := testutil.ToFloat64(c2.hits.WithLabelValues("redis")), testutil.ToFloat64(c2.hitLocal)
	if src.calls.Load() != 2 || redisHits != 2 || localHits != 2 {
		t.Errorf("%d loads, %v redis and %v local hits; want 2, 2, 2", src.calls.Load(), redisHits, localHits)
	}

	if err := c2.Forget(ctx, "good"); err != nil {
		t.Fatal(err)
	}
	if n := rdb.Exists(ctx, prefix+"v:good").Val(); n != 0 {
		t.Errorf("Forget left the redis entry")
	}
	c2.Get(ctx, "good")
	if src.calls.Load() != 3 {
		t.Errorf("%d loads after Forget, want 3", src.calls.Load())
	}
}

func TestRedisBadEntryIsReplaced(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	ctx := context.Background()
	good := `{"found":true,"name":"good","tags":["a"]}`
	// Not JSON, not a value, another key's value (fails Valid).
	for _, bad := range []string{`not json`, `{"found":"yes"}`, `{"found":true,"name":1}`, `{"found":true,"name":"GOOD"}`} {
		rdb.Set(ctx, prefix+"v:good", bad, time.Minute)
		src := &source{}
		c, _, _ := newTest(t, src, rdb, prefix, nil)
		if v, found, err := c.Get(ctx, "good"); err != nil || !found || v.Name != "good" || src.calls.Load() != 1 {
			t.Fatalf("with %s in redis: %+v, %v, %v, %d loads", bad, v, found, err, src.calls.Load())
		}
		if b := rdb.Get(ctx, prefix+"v:good").Val(); b != good {
			t.Errorf("with %s in redis: entry now %s, want %s", bad, b, good)
		}
	}
}

func TestRedisDownFallsBackToSource(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close() // nothing listens here now
	rdb := redis.NewClient(&redis.Options{Addr: ln.Addr().String(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer rdb.Close()
	src := &source{}
	c, clk, _ := newTest(t, src, rdb, "x:", nil)

	// Each step gets a new key, so that Redis would be asked. A failed get
	// trips the breaker (and the set after the load is skipped, uncounted);
	// while it is open every get is skipped and counted; a second later
	// Redis is tried again.
	for i, tt := range []struct {
		after     time.Duration
		key       string
		tried     uint32
		fallbacks float64
	}{
		{0, "good", 1, 1}, {0, "bad", 1, 2}, {999 * time.Millisecond, "bad2", 1, 3}, {time.Millisecond, "bad3", 2, 4},
	} {
		clk.add(tt.after)
		if _, found, err := c.Get(context.Background(), tt.key); err != nil || found != (tt.key == "good") {
			t.Fatalf("step %d: %s with redis down: %v, %v", i, tt.key, found, err)
		}
		// Each call tried finds no free connection in the pool.
		if n, f := rdb.PoolStats().Misses, testutil.ToFloat64(c.redisFallbacks); n != tt.tried || f != tt.fallbacks {
			t.Errorf("step %d: %d redis calls tried, %v fallbacks; want %d, %v", i, n, f, tt.tried, tt.fallbacks)
		}
	}
}

// TestStaleValueServedWhileRefreshed: with StaleFor, a value past its
// LocalTTL is answered at once from memory while one look-up refreshes
// it; the refreshed value is served after; a key the refresh finds gone
// is gone; past StaleFor a Get waits for the look-up as before; without
// StaleFor it always waits.
func TestStaleValueServedWhileRefreshed(t *testing.T) {
	src := &source{}
	c, clk, _ := newTest(t, src, nil, "", func(c *Config) { c.StaleFor = 30 * time.Second })
	ctx := context.Background()
	if _, found, err := c.Get(ctx, "good"); err != nil || !found || src.calls.Load() != 1 {
		t.Fatalf("first Get: %v %v, %d loads", found, err, src.calls.Load())
	}
	clk.add(31 * time.Second) // past LocalTTL (30 s), within StaleFor
	src.gate = make(chan struct{})
	for range 20 {
		v, found, err := c.Get(ctx, "good") // the load is held at the gate: these must not wait for it
		if err != nil || !found || v.Name != "good" {
			t.Fatalf("stale Get: %+v %v %v", v, found, err)
		}
	}
	if n := testutil.ToFloat64(c.hits.WithLabelValues("stale")); n != 20 {
		t.Fatalf("%v stale hits, want 20", n)
	}
	close(src.gate)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, _, ok := c.Peek("good"); ok {
			break // refreshed: fresh again
		}
		if time.Now().After(deadline) {
			t.Fatal("the background refresh did not renew the entry")
		}
		time.Sleep(time.Millisecond)
	}
	if n := src.calls.Load(); n != 2 {
		t.Fatalf("%d loads, want 2 (one shared refresh for 20 stale Gets)", n)
	}
	src.gate = nil

	// The key goes away: the refresh removes it, and the next Get says so.
	clk.add(31 * time.Second)
	src.err = errNotFound
	if _, found, err := c.Get(ctx, "good"); err != nil || !found {
		t.Fatalf("stale Get before the refresh saw it gone: %v %v", found, err)
	}
	deadline = time.Now().Add(5 * time.Second)
	for {
		_, found, err := c.Get(ctx, "good")
		if err == nil && !found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a key gone at the source is still served: %v %v", found, err)
		}
		time.Sleep(time.Millisecond)
	}

	// Past LocalTTL + StaleFor: a Get waits for the look-up.
	src.err = nil
	clk.add(time.Hour)
	if _, found, err := c.Get(ctx, "good"); err != nil || !found {
		t.Fatalf("after the grace: %v %v", found, err)
	}
	clk.add(61 * time.Second)
	if !getWaitsForLoad(t, c, src, "a Get past LocalTTL + StaleFor") {
		t.Fatal("not found after the look-up")
	}

	// Without StaleFor (the default) an expired value waits too.
	src2 := &source{}
	c2, clk2, _ := newTest(t, src2, nil, "", nil)
	if _, _, err := c2.Get(ctx, "good"); err != nil {
		t.Fatal(err)
	}
	clk2.add(31 * time.Second)
	getWaitsForLoad(t, c2, src2, "without StaleFor an expired value")
}

// getWaitsForLoad checks that a Get of "good" waits for its look-up (held
// at src's gate for 50 ms), and returns what it found.
func getWaitsForLoad(t *testing.T, c *Cache[string, value], src *source, what string) bool {
	t.Helper()
	src.gate = make(chan struct{})
	got := make(chan bool, 1)
	go func() {
		_, found, _ := c.Get(context.Background(), "good")
		got <- found
	}()
	select {
	case <-got:
		t.Fatalf("%s was served without waiting for the look-up", what)
	case <-time.After(50 * time.Millisecond):
	}
	close(src.gate)
	return <-got
}
