package auth

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/takt/takt/internal/config"
	"github.com/takt/takt/internal/httpx"
)

// testClock is a settable time source.
type testClock struct{ ns atomic.Int64 }

func newTestClock() *testClock {
	c := &testClock{}
	c.ns.Store(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *testClock) now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *testClock) add(d time.Duration) { c.ns.Add(int64(d)) }

func randomKey() string {
	k, _, _ := NewKey()
	return k
}

func TestFailureLimit(t *testing.T) {
	store := &fakeStore{}
	good := store.add(ScopeIngest)
	clk := newTestClock()
	a, _ := newTest(t, store, nil, "", LimitFailures(FailureLimit{Burst: 3, Rate: 0.5}), Clock(clk.now))
	ctx := context.Background()
	const home, other = "192.0.2.1:40000", "192.0.2.2:40000"
	want := func(what, addr, key string, wantErr error, lookups int64) {
		t.Helper()
		_, err := a.AuthenticateFrom(ctx, addr, key)
		if !errors.Is(err, wantErr) {
			t.Fatalf("%s: err %v, want %v", what, err, wantErr)
		}
		if n := store.calls.Load(); n != lookups {
			t.Fatalf("%s: %d look-ups so far, want %d", what, n, lookups)
		}
	}

	want("good key", home, good, nil, 1)
	stale := randomKey()
	want("unknown key", home, stale, ErrInvalidKey, 2)
	for i := range 10 {
		want("the same unknown key again", home, stale, ErrInvalidKey, 2)
		want("a malformed key", home, "takt_"+strings.Repeat("x", i), ErrInvalidKey, 2)
	}
	want("second unknown key", home, randomKey(), ErrInvalidKey, 3)
	want("third unknown key", home, randomKey(), ErrInvalidKey, 4)
	for range 100 {
		want("flood", home, randomKey(), ErrTooManyFailures, 4)
	}
	if d, ok := RetryAfter(func() error { _, err := a.AuthenticateFrom(ctx, home, randomKey()); return err }()); !ok || d != 2*time.Second {
		t.Fatalf("RetryAfter %v, %v; want 2s (one failure at 0.5/s)", d, ok)
	}
	want("cached good key while refused", home, good, nil, 4)
	want("cached unknown key while refused", home, stale, ErrInvalidKey, 4)
	want("another address", other, randomKey(), ErrInvalidKey, 5)
	want("another port of the refused address", "192.0.2.1:1", randomKey(), ErrTooManyFailures, 5)
	want("the refused address mapped to IPv6", "[::ffff:192.0.2.1]:1", randomKey(), ErrTooManyFailures, 5)

	clk.add(2 * time.Second)
	want("one failure back after 2 s", home, randomKey(), ErrInvalidKey, 6)
	want("and spent", home, randomKey(), ErrTooManyFailures, 6)
	clk.add(time.Hour)
	want("burst back", home, randomKey(), ErrInvalidKey, 7)

	// Authenticate with a client in ctx counts but never refuses.
	cctx := WithClient(ctx, "198.51.100.7:1")
	for i := range 5 {
		if _, err := a.Authenticate(cctx, randomKey()); !errors.Is(err, ErrInvalidKey) {
			t.Fatalf("Authenticate %d: %v, want ErrInvalidKey", i, err)
		}
	}
	want("counted by Authenticate", "198.51.100.7:2", randomKey(), ErrTooManyFailures, 12)
	if n := testutil.ToFloat64(a.failures.refused); n != 105 {
		t.Errorf("refused counter %v, want 105", n)
	}
}

func TestFailureLimitIPv6CountsThe64(t *testing.T) {
	store := &fakeStore{}
	a, _ := newTest(t, store, nil, "", LimitFailures(FailureLimit{Burst: 2, Rate: 0.1}))
	ctx := context.Background()
	for _, addr := range []string{"[2001:db8:1:2::1]:5", "[2001:db8:1:2:ffff::9]:6"} {
		if _, err := a.AuthenticateFrom(ctx, addr, randomKey()); !errors.Is(err, ErrInvalidKey) {
			t.Fatalf("%s: %v", addr, err)
		}
	}
	if _, err := a.AuthenticateFrom(ctx, "[2001:db8:1:2:abcd::1]:7", randomKey()); !errors.Is(err, ErrTooManyFailures) {
		t.Fatalf("same /64: %v, want ErrTooManyFailures", err)
	}
	if _, err := a.AuthenticateFrom(ctx, "[2001:db8:1:3::1]:7", randomKey()); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("next /64: %v, want ErrInvalidKey", err)
	}
}

func TestFailureLimitOff(t *testing.T) {
	store := &fakeStore{}
	a, _ := newTest(t, store, nil, "")
	for i := range 50 {
		if _, err := a.AuthenticateFrom(context.Background(), "192.0.2.1:1", randomKey()); !errors.Is(err, ErrInvalidKey) {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if n := store.calls.Load(); n != 50 {
		t.Fatalf("%d look-ups, want 50", n)
	}
}

func TestClientPrefix(t *testing.T) {
	for _, tt := range []struct{ addr, want string }{
		{"192.0.2.1:80", "192.0.2.1/32"},
		{"192.0.2.1", "192.0.2.1/32"},
		{"[::ffff:192.0.2.1]:80", "192.0.2.1/32"},
		{"[2001:db8::1]:443", "2001:db8::/64"},
		{"2001:db8::1:2:3:4", "2001:db8::/64"},
		{"[fe80::1%eth0]:1", "fe80::/64"},
		{"", "invalid Prefix"},
		{"not an address", "invalid Prefix"},
	} {
		if got := clientPrefix(tt.addr).String(); got != tt.want {
			t.Errorf("clientPrefix(%q) = %s, want %s", tt.addr, got, tt.want)
		}
	}
	if clientPrefix("junk") != (netip.Prefix{}) {
		t.Error("junk is not the shared bucket")
	}
}

// TestFailureGuard: behind the middleware, a flood of random keys from one
// address is answered 429 with Retry-After after the burst, whatever
// X-Forwarded-For says; other addresses are not affected.
func TestFailureGuard(t *testing.T) {
	store := &fakeStore{}
	good := store.add(ScopeRead)
	a, _ := newTest(t, store, nil, "", LimitFailures(FailureLimit{Burst: 5, Rate: 0.01}))
	r := httpx.NewEngine(quiet) // trusts no proxy's X-Forwarded-For
	r.Use(a.FailureGuard(func(c *gin.Context) { c.String(http.StatusTooManyRequests, "slow down") }))
	r.GET("/x", func(c *gin.Context) {
		_, err := a.Authenticate(c.Request.Context(), c.GetHeader("L2LAUTH"))
		switch {
		case err == nil:
			c.String(200, "ok")
		case IsInvalid(err):
			c.String(401, "no")
		default:
			c.String(500, err.Error())
		}
	})
	do := func(addr, key string, i int) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", "/x", nil)
		req.RemoteAddr = addr
		req.Header.Set("L2LAUTH", key)
		req.Header.Set("X-Forwarded-For", netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}).String())
		w := httptest.NewRecorder()
		r.ServeHTTP(w, req)
		return w
	}
	if w := do("203.0.113.9:1", good, 0); w.Code != 200 {
		t.Fatalf("good key: %d", w.Code)
	}
	codes := map[int]int{}
	for i := range 100 {
		w := do("203.0.113.9:1", randomKey(), i)
		codes[w.Code]++
		if w.Code == 429 && (w.Header().Get("Retry-After") != "100" || w.Body.String() != "slow down") {
			t.Fatalf("429 with Retry-After %q, body %q", w.Header().Get("Retry-After"), w.Body)
		}
	}
	if codes[401] != 5 || codes[429] != 95 {
		t.Fatalf("answers %v, want 5 × 401 and 95 × 429", codes)
	}
	if n := store.calls.Load(); n != 6 {
		t.Fatalf("%d look-ups, want 6 (the good key and the burst)", n)
	}
	if w := do("203.0.113.10:1", randomKey(), 0); w.Code != 401 {
		t.Fatalf("another address: %d, want 401", w.Code)
	}
}

func TestFailureLimitConfig(t *testing.T) {
	env := func(kv map[string]string) *config.Env {
		return &config.Env{Lookup: func(k string) (string, bool) { v, ok := kv[k]; return v, ok }}
	}
	l := FailureLimitFromEnv(env(nil))
	if l != (FailureLimit{Burst: 10, Rate: 0.2}) || l.Validate() != nil {
		t.Fatalf("defaults %+v, %v", l, l.Validate())
	}
	e := env(map[string]string{"TAKT_AUTH_FAIL_BURST": "-1", "TAKT_AUTH_FAIL_RATE": "0"})
	l = FailureLimitFromEnv(e)
	if err := l.Validate(); err == nil || !strings.Contains(err.Error(), "TAKT_AUTH_FAIL_BURST") {
		t.Fatalf("Validate: %v", err)
	}
	if err := (FailureLimit{Burst: 3}).Validate(); err == nil || !strings.Contains(err.Error(), "TAKT_AUTH_FAIL_RATE") {
		t.Fatalf("Validate without rate: %v", err)
	}
	if err := (FailureLimit{}).Validate(); err != nil {
		t.Fatalf("off: %v", err)
	}
	if _, err := New(&fakeStore{}, nil, "", quiet, nil, LimitFailures(FailureLimit{Burst: 1})); err == nil {
		t.Fatal("New accepted a limit without a rate")
	}
}
