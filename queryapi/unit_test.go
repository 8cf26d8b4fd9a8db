package queryapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/takt/takt/internal/auth"
	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/config"
	"github.com/takt/takt/internal/l2l"
	"github.com/takt/takt/internal/ratelimit"
	"github.com/takt/takt/internal/record"
)

func envFrom(vars map[string]string) *config.Env {
	return &config.Env{Lookup: func(k string) (string, bool) { v, ok := vars[k]; return v, ok }}
}

func TestConfig(t *testing.T) {
	e := envFrom(nil)
	c := ConfigFromEnv(e)
	if err := errors.Join(e.Err(), c.Validate()); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if c.Addr != "127.0.0.1:18081" || c.AdminAddr != "127.0.0.1:18084" || c.QueryTimeout != 10*time.Second || c.DefaultLimit != 100 || c.MaxLimit != 2000 ||
		len(c.KafkaBrokers) != 1 || c.KafkaBrokers[0] != "127.0.0.1:19092" || c.PartsTopic != "takt.parts" {
		t.Fatalf("defaults: %+v", c)
	}
	c = ConfigFromEnv(envFrom(map[string]string{"TAKT_KAFKA_BROKERS": "k1:9092, k2:9092", "TAKT_PARTS_TOPIC": "parts"}))
	if len(c.KafkaBrokers) != 2 || c.KafkaBrokers[1] != "k2:9092" || c.PartsTopic != "parts" {
		t.Errorf("kafka settings: %v %q", c.KafkaBrokers, c.PartsTopic)
	}

	e = envFrom(map[string]string{
		"TAKT_QUERY_TIMEOUT": "soon", "TAKT_QUERY_MAX_LIMIT": "500", "TAKT_QUERY_DEFAULT_LIMIT": "800",
	})
	c = ConfigFromEnv(e)
	if e.Err() == nil || !strings.Contains(e.Err().Error(), "TAKT_QUERY_TIMEOUT") {
		t.Errorf("parse error not reported: %v", e.Err())
	}
	c.QueryTimeout, c.ZoneTTL, c.LogLevel, c.Addr, c.KeyUsageInterval = 10*time.Millisecond, 0, "loud", "", 0
	c.KafkaBrokers, c.PartsTopic = nil, ""
	c.TLSAddr, c.AdminAddr = "127.0.0.1:9443", "127.0.0.1:9443"
	err := c.Validate()
	for _, want := range []string{"TAKT_ADMIN_ADDR", "TAKT_QUERY_ADDR", "TAKT_QUERY_TIMEOUT", "TAKT_QUERY_DEFAULT_LIMIT", "TAKT_QUERY_ZONE_TTL", "TAKT_LOG_LEVEL",
		"TAKT_KEY_USAGE_INTERVAL", "TAKT_KAFKA_BROKERS", "TAKT_PARTS_TOPIC"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate does not report %s: %v", want, err)
		}
	}
}

type fakeZones struct {
	calls int
	tz    map[uint64]string
	err   error
}

func (f *fakeZones) SiteTimezones(context.Context) (map[uint64]string, error) {
	f.calls++
	return f.tz, f.err
}

func TestZones(t *testing.T) {
	now := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	src := &fakeZones{tz: map[uint64]string{1: "Europe/Berlin", 2: "Not/AZone"}}
	z := newZones(src, time.Minute, slog.New(slog.NewTextHandler(io.Discard, nil)))
	z.now = func() time.Time { return now }
	ctx := context.Background()

	got := z.forSites(ctx, []uint64{1, 2, 1})
	if got[1].String() != "Europe/Berlin" || got[2] != time.UTC || src.calls != 1 {
		t.Fatalf("first read: %v, %d calls", got, src.calls)
	}
	z.forSites(ctx, []uint64{1})
	if src.calls != 1 {
		t.Fatalf("cached read went to the store")
	}
	// An unknown site is read again, but at most once per retry interval.
	if got := z.forSites(ctx, []uint64{3}); got[3] != time.UTC || src.calls != 1 {
		t.Fatalf("unknown site within the retry interval: %v, %d calls", got, src.calls)
	}
	now = now.Add(6 * time.Second)
	src.tz[3] = "America/Chicago"
	if got := z.forSites(ctx, []uint64{3}); got[3].String() != "America/Chicago" || src.calls != 2 {
		t.Fatalf("new site: %v, %d calls", got, src.calls)
	}
	// A failed read keeps the zones known so far.
	now = now.Add(2 * time.Minute)
	src.err = errors.New("down")
	if got := z.forSites(ctx, []uint64{1}); got[1].String() != "Europe/Berlin" || src.calls != 3 {
		t.Fatalf("failed read: %v, %d calls", got, src.calls)
	}
}

type fakeKeys struct {
	p   auth.Principal
	err error
}

func (f fakeKeys) Authenticate(context.Context, string) (auth.Principal, error) { return f.p, f.err }

type fakeStore struct{ err error }

func (f fakeStore) Records(context.Context, *chstore.RecordArea, l2l.Query, []uint64) (chstore.RecordPage, error) {
	return chstore.RecordPage{}, f.err
}

func (f fakeStore) RecordsAfter(context.Context, *chstore.RecordArea, l2l.Query, []uint64, chstore.Cursor) (chstore.RecordPage, error) {
	return chstore.RecordPage{}, f.err
}

func (f fakeStore) RecordsAt(context.Context, *chstore.RecordArea, l2l.Query, []uint64, []chstore.Cursor) (chstore.RecordPage, error) {
	return chstore.RecordPage{}, f.err
}

func (fakeStore) Areas() *record.Registry { return record.Takt }

func (f fakeStore) RecordByID(context.Context, *chstore.RecordArea, uint64, l2l.Query, []uint64) (chstore.RecordPage, error) {
	return chstore.RecordPage{}, f.err
}

// TestErrorAnswers maps failures of the dependencies to answers, without
// servers.
func TestErrorAnswers(t *testing.T) {
	reader := auth.Principal{Sites: []uint64{1}, Scopes: []string{auth.ScopeRead}}
	tests := []struct {
		name       string
		keys       fakeKeys
		store      fakeStore
		path       string
		wantStatus int
		wantError  string
	}{
		{"auth store down", fakeKeys{err: errors.New("clickhouse down")}, fakeStore{}, "/api/1.0/parts/", 500, "Internal server error"},
		{"invalid key", fakeKeys{err: auth.ErrInvalidKey}, fakeStore{}, "/api/1.0/parts/", 401, "Invalid API key"},
		{"admin scope reads", fakeKeys{p: auth.Principal{Scopes: []string{auth.ScopeAdmin}}}, fakeStore{}, "/api/1.0/parts/", 200, ""},
		{"timeout", fakeKeys{p: reader}, fakeStore{err: fmt.Errorf("x: %w", chstore.ErrTimeout)}, "/api/1.0/parts/", 504, "past its time budget of 10s"},
		{"store error", fakeKeys{p: reader}, fakeStore{err: errors.New("boom")}, "/api/1.0/parts/1/", 500, "Internal server error"},
		{"not found", fakeKeys{p: reader}, fakeStore{err: chstore.ErrNotFound}, "/api/1.0/parts/7/", 404, "No parts record with id 7"},
		{"bad id", fakeKeys{p: reader}, fakeStore{}, "/api/1.0/parts/x1/", 404, "No parts record with id x1"},
		{"no route", fakeKeys{p: reader}, fakeStore{}, "/api/2.0/parts/", 404, "Not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logger := slog.New(slog.NewTextHandler(io.Discard, nil))
			m, _ := newMetrics(nil)
			cfg := ConfigFromEnv(envFrom(nil))
			h, err := newHandler(tt.keys, tt.store, newZones(&fakeZones{}, time.Minute, logger), cfg, logger, m)
			if err != nil {
				t.Fatal(err)
			}
			gin.SetMode(gin.ReleaseMode)
			r := gin.New()
			h.routes(r)
			w := httptest.NewRecorder()
			r.ServeHTTP(w, httptest.NewRequest(http.MethodGet, tt.path+"?auth=k", nil))
			if w.Code != tt.wantStatus || !strings.Contains(w.Body.String(), tt.wantError) {
				t.Fatalf("got %d %s, want %d with %q", w.Code, w.Body, tt.wantStatus, tt.wantError)
			}
			if tt.wantStatus != 200 && !strings.HasPrefix(w.Body.String(), `{"success":false,"error":`) {
				t.Fatalf("not an error envelope: %s", w.Body)
			}
		})
	}
}

// emptyBucket is a rate limiter that refuses every request.
type emptyBucket struct{ calls int }

func (e *emptyBucket) Allow(context.Context, uint64, int) ratelimit.Decision {
	e.calls++
	return ratelimit.Decision{RetryAfter: 3 * time.Second}
}

// TestAuthorizeEveryRoute: list, one, the writes and OEE pass the same
// authorization: a missing or invalid key, a missing scope, an empty
// bucket and a realuser the key may not act for are answered alike on
// every route, before the route looks at its area or arguments.
func TestAuthorizeEveryRoute(t *testing.T) {
	reader := auth.Principal{Username: "r", Sites: []uint64{1}, Scopes: []string{auth.ScopeRead}}
	writer := auth.Principal{Username: "w", Sites: []uint64{1}, Scopes: []string{auth.ScopeWrite}}
	routes := []struct{ method, path string }{
		{"GET", "/api/1.0/parts/"}, {"GET", "/api/1.0/parts/7/"}, {"GET", "/api/1.0/nope/"},
		{"POST", "/api/1.0/products/"}, {"PUT", "/api/1.0/products/7/"}, {"DELETE", "/api/1.0/nope/7/"},
		{"GET", "/api/1.0/oee/"},
	}
	tests := []struct {
		name       string
		keys       fakeKeys
		query      string
		limited    bool
		wantStatus int
		wantError  string
	}{
		{"no key", fakeKeys{p: reader}, "", false, 401, "Missing API key"},
		{"invalid key", fakeKeys{err: auth.ErrInvalidKey}, "auth=k", false, 401, "Invalid API key"},
		{"lookup failed", fakeKeys{err: errors.New("down")}, "auth=k", false, 500, "Internal server error"},
		{"empty bucket", fakeKeys{p: auth.Principal{Admin: true, Scopes: []string{auth.ScopeAdmin}}}, "auth=k", true, 429, "Rate limit exceeded"},
		{"realuser of a non-admin", fakeKeys{p: auth.Principal{Username: "a", Scopes: []string{auth.ScopeAdmin}}}, "auth=k&realuser=b", false, 403, "realuser: not allowed"},
	}
	for _, tt := range tests {
		for _, rt := range routes {
			t.Run(tt.name+" "+rt.method+" "+rt.path, func(t *testing.T) {
				logger := slog.New(slog.NewTextHandler(io.Discard, nil))
				m, _ := newMetrics(nil)
				h, err := newHandler(tt.keys, fakeStore{}, newZones(&fakeZones{}, time.Minute, logger), ConfigFromEnv(envFrom(nil)), logger, m)
				if err != nil {
					t.Fatal(err)
				}
				lim := &emptyBucket{}
				if tt.limited {
					h.limiter = lim
				}
				gin.SetMode(gin.ReleaseMode)
				r := gin.New()
				h.routes(r)
				newOEE(h, nil).routes(r)
				w := httptest.NewRecorder()
				r.ServeHTTP(w, httptest.NewRequest(rt.method, rt.path+"?"+tt.query, nil))
				if w.Code != tt.wantStatus || !strings.Contains(w.Body.String(), tt.wantError) {
					t.Fatalf("got %d %s, want %d with %q", w.Code, w.Body, tt.wantStatus, tt.wantError)
				}
				if tt.limited && (lim.calls != 1 || w.Header().Get("Retry-After") != "3") {
					t.Fatalf("limiter asked %d times, Retry-After %q", lim.calls, w.Header().Get("Retry-After"))
				}
			})
		}
	}
	// The scope a route needs: read for reads, the area's for writes.
	for _, rt := range routes {
		keys := fakeKeys{p: writer}
		if rt.method != "GET" {
			keys = fakeKeys{p: reader}
		}
		logger := slog.New(slog.NewTextHandler(io.Discard, nil))
		m, _ := newMetrics(nil)
		h, _ := newHandler(keys, fakeStore{}, newZones(&fakeZones{}, time.Minute, logger), ConfigFromEnv(envFrom(nil)), logger, m)
		r := gin.New()
		h.routes(r)
		newOEE(h, nil).routes(r)
		w := httptest.NewRecorder()
		r.ServeHTTP(w, httptest.NewRequest(rt.method, rt.path+"?auth=k", nil))
		if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "API key lacks the") {
			t.Errorf("%s %s without its scope: %d %s", rt.method, rt.path, w.Code, w.Body)
		}
	}
}

// TestAreaScopes: the scopes the area definitions name are the scopes
// keys carry (internal/record cannot import internal/auth, which imports
// chstore, which imports record).
func TestAreaScopes(t *testing.T) {
	all := []string{auth.ScopeIngest, auth.ScopeRead, auth.ScopeWrite, auth.ScopeAdmin}
	for _, a := range record.Takt.Areas() {
		if (a.Writes == record.WriteRows || a.Writes == record.WriteAssign) && !slices.Contains(all, a.Scope) {
			t.Errorf("%s: write scope %q is not a key scope", a.Name, a.Scope)
		}
		for _, ac := range a.Actions {
			if !slices.Contains(all, ac.Scope) {
				t.Errorf("%s/%s: scope %q is not a key scope", a.Name, ac.Name, ac.Scope)
			}
		}
	}
	f, _ := record.Takt.Must("apikeys").Field("scopes")
	if !slices.Equal(f.Options, all) {
		t.Errorf("apikeys.scopes takes %v, keys carry %v", f.Options, all)
	}
}
