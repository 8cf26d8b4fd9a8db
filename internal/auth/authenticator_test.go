package auth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/testenv"
)

// fakeStore is a KeyLookup that counts its calls.
type fakeStore struct {
	mu    sync.Mutex
	keys  map[string]chstore.KeyOwner // by hash
	err   error
	gate  chan struct{} // when set, look-ups wait for it to close
	calls atomic.Int64
}

func (f *fakeStore) KeyByHash(ctx context.Context, hash string) (chstore.KeyOwner, error) {
	f.calls.Add(1)
	if f.gate != nil {
		<-f.gate
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return chstore.KeyOwner{}, f.err
	}
	k, ok := f.keys[hash]
	if !ok {
		return chstore.KeyOwner{}, fmt.Errorf("api key: %w", chstore.ErrNotFound)
	}
	return k, nil
}

func (f *fakeStore) add(scopes ...string) string {
	key, prefix, hash := NewKey()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.keys == nil {
		f.keys = map[string]chstore.KeyOwner{}
	}
	f.keys[hash] = chstore.KeyOwner{KeyID: uint64(len(f.keys) + 1), Prefix: prefix, Hash: hash, Scopes: scopes,
		UserID: 7, Username: "u", Sites: []uint64{1, 3}}
	return key
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTest(t *testing.T, store KeyLookup, rdb *redis.Client, prefix string, opts ...Option) (*Authenticator, *clock) {
	t.Helper()
	clk := &clock{t: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)}
	a, err := New(store, rdb, prefix, quiet, prometheus.NewRegistry(), append([]Option{Clock(clk.now)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return a, clk
}

func TestAuthenticate(t *testing.T) {
	store := &fakeStore{}
	good := store.add(ScopeIngest, ScopeRead)
	unknown, _, _ := NewKey()
	a, _ := newTest(t, store, nil, "")

	tests := []struct {
		name    string
		key     string
		wantErr error
	}{
		{"valid", good, nil},
		{"unknown", unknown, ErrInvalidKey},
		{"empty", "", ErrInvalidKey},
		{"wrong prefix", "tack_" + good[5:], ErrInvalidKey},
		{"upper case hex", "takt_" + "ABCDEF0123456789ABCDEF0123456789ABCDEF01", ErrInvalidKey},
		{"too short", good[:len(good)-1], ErrInvalidKey},
		{"too long", good + "0", ErrInvalidKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := a.Authenticate(context.Background(), tt.key)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr == nil && (p.Prefix != Prefix(tt.key) || p.UserID != 7 || !p.HasScope(ScopeIngest) ||
				p.HasScope(ScopeAdmin) || !p.CanSeeSite(3) || p.CanSeeSite(2)) {
				t.Fatalf("principal %+v", p)
			}
		})
	}
	if n := store.calls.Load(); n != 2 {
		t.Errorf("store asked %d times, want 2 (malformed keys need no look-up)", n)
	}
	if n := testutil.ToFloat64(a.rejected); n != 5 {
		t.Errorf("malformed counter %v, want 5", n)
	}
}

func TestAuthenticateCachesBothAnswers(t *testing.T) {
	store := &fakeStore{}
	good := store.add(ScopeIngest)
	bad, _, _ := NewKey()
	a, clk := newTest(t, store, nil, "", LocalTTL(30*time.Second), NegativeTTL(10*time.Second))
	ctx := context.Background()

	for range 100 {
		if _, err := a.Authenticate(ctx, good); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Authenticate(ctx, bad); !errors.Is(err, ErrInvalidKey) {
			t.Fatal(err)
		}
	}
	if n := store.calls.Load(); n != 2 {
		t.Fatalf("store asked %d times for 200 checks of 2 keys, want 2", n)
	}
	if h := testutil.ToFloat64(a.hits.WithLabelValues("local")); h != 198 {
		t.Errorf("local hits %v, want 198", h)
	}

	clk.add(11 * time.Second) // the negative entry expired, the positive did not
	a.Authenticate(ctx, good)
	a.Authenticate(ctx, bad)
	if n := store.calls.Load(); n != 3 {
		t.Fatalf("store asked %d times, want 3", n)
	}
	clk.add(20 * time.Second)
	a.Authenticate(ctx, good)
	if n := store.calls.Load(); n != 4 {
		t.Fatalf("store asked %d times after the positive TTL, want 4", n)
	}
}

func TestAuthenticateStoreErrorIsNotCached(t *testing.T) {
	store := &fakeStore{err: errors.New("clickhouse down")}
	key := store.add(ScopeIngest)
	a, _ := newTest(t, store, nil, "")
	for range 3 {
		_, err := a.Authenticate(context.Background(), key)
		if err == nil || errors.Is(err, ErrInvalidKey) {
			t.Fatalf("err %v: want a look-up error that is not ErrInvalidKey", err)
		}
	}
	if n := store.calls.Load(); n != 3 {
		t.Fatalf("store asked %d times, want 3 (errors are not cached)", n)
	}
	store.mu.Lock()
	store.err = nil
	store.mu.Unlock()
	if _, err := a.Authenticate(context.Background(), key); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
}

func TestAuthenticateRejectsHashMismatch(t *testing.T) {
	store := &fakeStore{}
	key := store.add(ScopeIngest)
	h := HashKey(key)
	store.keys[h] = chstore.KeyOwner{KeyID: 1, Hash: HashKey("something else")}
	a, _ := newTest(t, store, nil, "")
	if _, err := a.Authenticate(context.Background(), key); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("err %v, want ErrInvalidKey", err)
	}
}

func TestAuthenticateSingleflight(t *testing.T) {
	store := &fakeStore{gate: make(chan struct{})}
	key, _, _ := NewKey()
	a, _ := newTest(t, store, nil, "")
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			_, err := a.Authenticate(context.Background(), key)
			errs <- err
		})
	}
	// Let the goroutines pile up on the one look-up, then release it.
	for store.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	close(store.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, ErrInvalidKey) {
			t.Fatalf("err %v", err)
		}
	}
	if c := store.calls.Load(); c != 1 {
		t.Fatalf("store asked %d times by %d concurrent checks of one key, want 1", c, n)
	}
}

func TestAuthenticateCallerCancel(t *testing.T) {
	store := &fakeStore{gate: make(chan struct{})}
	key := store.add(ScopeIngest)
	a, _ := newTest(t, store, nil, "")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := a.Authenticate(ctx, key); !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	close(store.gate)
	// The shared look-up ran on and filled the cache.
	if _, err := a.Authenticate(context.Background(), key); err != nil {
		t.Fatal(err)
	}
}

func TestLocalCacheIsBounded(t *testing.T) {
	c := newLocalCache[int, int](100)
	now := time.Now()
	for i := range 10_000 {
		c.put(i, i, now, time.Minute)
	}
	if n := c.len(); n > 100 {
		t.Fatalf("cache holds %d entries, bound is 100", n)
	}
	if v, ok := c.get(9_999, now); !ok || v != 9_999 {
		t.Fatalf("latest entry missing")
	}
	if _, ok := c.get(9_999, now.Add(time.Minute)); ok {
		t.Fatalf("entry alive at its expiry")
	}
}

func TestForget(t *testing.T) {
	store := &fakeStore{}
	key := store.add(ScopeIngest)
	a, _ := newTest(t, store, nil, "")
	ctx := context.Background()
	a.Authenticate(ctx, key)
	if err := a.Forget(ctx, HashKey(key)); err != nil {
		t.Fatal(err)
	}
	a.Authenticate(ctx, key)
	if n := store.calls.Load(); n != 2 {
		t.Fatalf("store asked %d times, want 2 (Forget drops the entry)", n)
	}
}

func TestMiddleware(t *testing.T) {
	store := &fakeStore{}
	ingest := store.add(ScopeIngest)
	read := store.add(ScopeRead)
	a, _ := newTest(t, store, nil, "")
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.GET("/x", a.Middleware(HeaderKey("L2LAUTH"), ScopeRead, func(c *gin.Context, err error) {
		code := http.StatusInternalServerError
		if IsInvalid(err) {
			code = http.StatusUnauthorized
		}
		c.String(code, err.Error())
	}), func(c *gin.Context) {
		p, ok := PrincipalFrom(c)
		if !ok {
			c.String(500, "no principal")
			return
		}
		c.String(200, p.Prefix)
	})
	for _, tt := range []struct {
		key  string
		want int
	}{{read, 200}, {ingest, 401}, {"", 401}} {
		w := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/x", nil)
		req.Header.Set("L2LAUTH", tt.key)
		r.ServeHTTP(w, req)
		if w.Code != tt.want {
			t.Errorf("key %q: %d %s, want %d", Prefix(tt.key), w.Code, w.Body, tt.want)
		}
		if tt.want == 200 && w.Body.String() != Prefix(read) {
			t.Errorf("principal prefix %q", w.Body)
		}
	}
}

// Integration: the Redis layer.

func TestRedisLayerIsShared(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	store := &fakeStore{}
	good := store.add(ScopeIngest)
	bad, _, _ := NewKey()
	ctx := context.Background()

	a1, _ := newTest(t, store, rdb, prefix)
	a1.Authenticate(ctx, good)
	a1.Authenticate(ctx, bad)
	if n := store.calls.Load(); n != 2 {
		t.Fatalf("store asked %d times, want 2", n)
	}
	if ttl := rdb.TTL(ctx, prefix+"apikey:"+HashKey(bad)).Val(); ttl <= 0 || ttl > 10*time.Second {
		t.Errorf("negative redis entry ttl %v, want (0, 10s]", ttl)
	}
	if ttl := rdb.TTL(ctx, prefix+"apikey:"+HashKey(good)).Val(); ttl <= 10*time.Second || ttl > 5*time.Minute {
		t.Errorf("positive redis entry ttl %v, want (10s, 5m]", ttl)
	}

	// Another instance: its own process cache is empty, Redis answers.
	a2, _ := newTest(t, store, rdb, prefix)
	p, err := a2.Authenticate(ctx, good)
	if err != nil || p.UserID != 7 || !p.HasScope(ScopeIngest) {
		t.Fatalf("second instance: %+v, %v", p, err)
	}
	if _, err := a2.Authenticate(ctx, bad); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("second instance, bad key: %v", err)
	}
	if n := store.calls.Load(); n != 2 {
		t.Fatalf("store asked %d times, want still 2", n)
	}
	if h := testutil.ToFloat64(a2.hits.WithLabelValues("redis")); h != 2 {
		t.Errorf("redis hits %v, want 2", h)
	}

	if err := a2.Forget(ctx, HashKey(good)); err != nil {
		t.Fatal(err)
	}
	if n := rdb.Exists(ctx, prefix+"apikey:"+HashKey(good)).Val(); n != 0 {
		t.Errorf("Forget left the redis entry")
	}
}

func TestRedisDownFallsBackToStore(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens here now
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer rdb.Close()

	store := &fakeStore{}
	good := store.add(ScopeIngest)
	bad, _, _ := NewKey()
	a, _ := newTest(t, store, rdb, "x:")
	ctx := context.Background()
	if _, err := a.Authenticate(ctx, good); err != nil {
		t.Fatalf("good key with redis down: %v", err)
	}
	if _, err := a.Authenticate(ctx, bad); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("bad key with redis down: %v, want ErrInvalidKey", err)
	}
	if n := testutil.ToFloat64(a.redisFallbacks); n < 2 {
		t.Errorf("redis fallbacks %v, want at least 2", n)
	}
}
