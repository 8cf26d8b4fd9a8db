package ingestor

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/takt/takt/internal/auth"
	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/httpx"
	"github.com/takt/takt/internal/locations"
	"github.com/takt/takt/internal/testenv"
	"github.com/takt/takt/internal/wire"
)

// Fakes for the handler's three dependencies.

type fakeKeys map[string]auth.Principal

func (f fakeKeys) AuthenticateFrom(_ context.Context, _, key string) (auth.Principal, error) {
	if key == "takt_broken_store_0000000000000000000000000" {
		return auth.Principal{}, errors.New("clickhouse down")
	}
	p, ok := f[key]
	if !ok {
		return auth.Principal{}, auth.ErrInvalidKey
	}
	return p, nil
}

type fakeLocs map[string]chstore.Location

func (f fakeLocs) Lookup(_ context.Context, id string) (chstore.Location, error) {
	if id == "broken" {
		return chstore.Location{}, errors.New("clickhouse down")
	}
	l, ok := f[id]
	if !ok {
		return chstore.Location{}, locations.ErrNotFound
	}
	return l, nil
}

// fakeProducer acks (or fails) every record at once, or never when hang.
type fakeProducer struct {
	mu   sync.Mutex
	recs []*kgo.Record
	err  error
	hang bool
}

func (f *fakeProducer) Produce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.hang {
		return
	}
	if f.err == nil {
		f.recs = append(f.recs, r)
	}
	promise(r, f.err)
}

const (
	keyIngest = "takt_1111111111111111111111111111111111111111"
	keyRead   = "takt_2222222222222222222222222222222222222222"
)

func newFakeHandler(t testing.TB, prod producer, logger *slog.Logger) *gin.Engine {
	t.Helper()
	return newFakeHandlerTimeout(t, prod, logger, 100*time.Millisecond)
}

// newFakeHandlerTimeout is newFakeHandler with its own produce timeout,
// for producers that go through a network (a first produce also fetches
// the cluster's metadata, which on a busy machine takes more than 100 ms).
func newFakeHandlerTimeout(t testing.TB, prod producer, logger *slog.Logger, produceTimeout time.Duration) *gin.Engine {
	t.Helper()
	keys := fakeKeys{
		keyIngest: {KeyID: 1, Prefix: auth.Prefix(keyIngest), Sites: []uint64{1}, Scopes: []string{"ingest"}},
		keyRead:   {KeyID: 2, Prefix: auth.Prefix(keyRead), Sites: []uint64{1}, Scopes: []string{"read"}},
	}
	locs := fakeLocs{
		"line_1":  {Kind: "line", ID: 1, Site: 1, ExternalID: "line_1", Timezone: "Europe/Berlin"},
		"m_7":     {Kind: "machine", ID: 7, Site: 1, ExternalID: "m_7", Timezone: "Europe/Berlin"},
		"foreign": {Kind: "line", ID: 9, Site: 2, ExternalID: "foreign", Timezone: "UTC"},
		"no_tz":   {Kind: "line", ID: 3, Site: 1, ExternalID: "no_tz", Timezone: ""},
	}
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	h := newHandler(keys, locs, prod, "parts", 1024, produceTimeout, logger, m)
	h.now = func() time.Time { return testNow }
	r := httpx.NewEngine(logger)
	r.POST(Path, h.serve)
	return r
}

func post(r http.Handler, key, body string, mod ...func(*http.Request)) *httptest.ResponseRecorder {
	req := httptest.NewRequest("POST", Path, strings.NewReader(body))
	if key != "" {
		req.Header.Set("API-KEY", key)
	}
	for _, f := range mod {
		f(req)
	}
	w := httptest.NewRecorder()
	r.ServeHTTP(w, req)
	return w
}

func TestHandlerAnswers(t *testing.T) {
	const ok = `{"message":"Part processed successfully"}`
	const invalidKey = `{"error":"Invalid API key"}`
	const internal = `{"error":"Internal server error"}`
	big := `{"part":{"external_id":"line_1","product":"` + strings.Repeat("x", 1100) + `"}}`
	tests := []struct {
		name     string
		key      string
		body     string
		mod      func(*http.Request)
		wantCode int
		wantBody string
	}{
		{"basic", keyIngest, `{"part":{"external_id":"line_1","quantity":1}}`, nil, 200, ok},
		{"machine", keyIngest, `{"part":{"external_id":"m_7"}}`, nil, 200, ok},
		{"missing key", "", `{"part":{"external_id":"line_1"}}`, nil, 401, invalidKey},
		{"unknown key", "takt_3333333333333333333333333333333333333333", `{"part":{"external_id":"line_1"}}`, nil, 401, invalidKey},
		{"key without ingest scope", keyRead, `{"part":{"external_id":"line_1"}}`, nil, 401, invalidKey},
		{"auth before body", "", `not json`, nil, 401, invalidKey},
		{"auth before size", "", big, nil, 401, invalidKey},
		{"auth store down", "takt_broken_store_0000000000000000000000000", `{}`, nil, 500, internal},
		{"key header case", "", `{"part":{"external_id":"line_1"}}`, func(r *http.Request) { r.Header["api-key"] = []string{keyIngest} }, 401, invalidKey},
		{"unknown location", keyIngest, `{"part":{"external_id":"line_2"}}`, nil, 422, `{"error":"Location not found for external_id: line_2"}`},
		{"location case-sensitive", keyIngest, `{"part":{"external_id":"LINE_1"}}`, nil, 422, `{"error":"Location not found for external_id: LINE_1"}`},
		{"location escaped in body", keyIngest, `{"part":{"external_id":"a\"<b>"}}`, nil, 422, `{"error":"Location not found for external_id: a\"\u003cb\u003e"}`},
		{"other site's location", keyIngest, `{"part":{"external_id":"foreign"}}`, nil, 422, `{"error":"Location not found for external_id: foreign"}`},
		{"body before location", keyIngest, `{"part":{"external_id":"line_2","quantity":0}}`, nil, 422, `{"error":"Invalid message format: quantity must be at least 1, got 0"}`},
		{"malformed", keyIngest, `{"part":`, nil, 422, `{"error":"Invalid message format: malformed JSON at byte 8: expected a value"}`},
		{"unknown field", keyIngest, `{"part":{"external_id":"line_1","foo":1}}`, nil, 422, `{"error":"Invalid message format: unknown field \"foo\" in part"}`},
		{"location store down", keyIngest, `{"part":{"external_id":"broken"}}`, nil, 500, internal},
		{"too large", keyIngest, big, nil, 413, `{"error":"Request body too large: limit is 1024 bytes"}`},
		{"too large without length", keyIngest, big, func(r *http.Request) { r.ContentLength = -1 }, 413, `{"error":"Request body too large: limit is 1024 bytes"}`},
		{"local time without zone", keyIngest, `{"part":{"external_id":"no_tz","recorded_at":"2024-01-01T10:00:00"}}`, nil, 422,
			`{"error":"Invalid message format: recorded_at has no UTC offset and the location's time zone \"\" is unknown; add Z or an offset"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newFakeHandler(t, &fakeProducer{}, nil)
			var mods []func(*http.Request)
			if tt.mod != nil {
				mods = append(mods, tt.mod)
			}
			w := post(r, tt.key, tt.body, mods...)
			if w.Code != tt.wantCode || w.Body.String() != tt.wantBody {
				t.Errorf("got %d %s\nwant %d %s", w.Code, w.Body, tt.wantCode, tt.wantBody)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json; charset=utf-8" {
				t.Errorf("content type %q", ct)
			}
		})
	}
}

func TestHandlerRecord(t *testing.T) {
	prod := &fakeProducer{}
	r := newFakeHandler(t, prod, nil)
	bodies := []string{
		`{"part":{"external_id":"line_1","quantity":1,"quality":"scrap","product":"PROD001","cycle_time":45.5,"recorded_at":1698765432,"reason":"REASON01"}}`,
		`{"part":{"external_id":"m_7","recorded_at":"2024-01-01T10:00:00"}}`,
	}
	for _, b := range bodies {
		if w := post(r, keyIngest, b); w.Code != 200 {
			t.Fatalf("%s: %d %s", b, w.Code, w.Body)
		}
	}
	if len(prod.recs) != 2 {
		t.Fatalf("%d records produced, want 2", len(prod.recs))
	}
	var parts []wire.Part
	for _, rec := range prod.recs {
		p, err := wire.Decode(rec.Value)
		if err != nil {
			t.Fatal(err)
		}
		if rec.Topic != "parts" || string(rec.Key) != p.ExternalID {
			t.Errorf("record topic %q key %q", rec.Topic, rec.Key)
		}
		if len(p.EventID) != 36 || p.EventID[14] != '7' {
			t.Errorf("event id %q is not a UUIDv7", p.EventID)
		}
		p.EventID = ""
		parts = append(parts, p)
	}
	want := []wire.Part{
		{V: 1, Site: 1, LocationKind: "line", LocationID: 1, ExternalID: "line_1", Quantity: 1, Quality: "scrap",
			Product: "PROD001", CycleTime: 45.5, HasCycleTime: true, Reason: "REASON01",
			RecordedAtMs: 1698765432000, ReceivedAtMs: testNow.UnixMilli()},
		// 10:00 on a Berlin wall clock in winter is 09:00 UTC.
		{V: 1, Site: 1, LocationKind: "machine", LocationID: 7, ExternalID: "m_7", Quantity: 1, Quality: "good",
			RecordedAtMs: ms("2024-01-01T09:00:00Z"), ReceivedAtMs: testNow.UnixMilli()},
	}
	for i := range want {
		if parts[i] != want[i] {
			t.Errorf("record %d:\n got %+v\nwant %+v", i, parts[i], want[i])
		}
	}
}

func TestHandlerProduceFailureIsNever200(t *testing.T) {
	for _, prod := range []*fakeProducer{{err: kgo.ErrRecordTimeout}, {hang: true}} {
		r := newFakeHandler(t, prod, nil)
		w := post(r, keyIngest, `{"part":{"external_id":"line_1"}}`)
		if w.Code != 500 || w.Body.String() != `{"error":"Internal server error"}` {
			t.Errorf("producer err=%v hang=%v: %d %s", prod.err, prod.hang, w.Code, w.Body)
		}
	}
}

func TestHandlerDebugLog(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(p)
	}), nil))
	r := newFakeHandler(t, &fakeProducer{}, logger)
	req := func(r *http.Request) {
		r.URL.RawQuery = "debug=true"
		r.Header.Set("X-Request-ID", "req-42")
	}
	if w := post(r, keyIngest, `{"part":{"external_id":"line_1","quantity":3}}`, req); w.Code != 200 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	post(r, keyIngest, `{"part":{"external_id":"line_1"}}`) // no debug: no log
	post(r, "takt_3333333333333333333333333333333333333333", `{}`, req)
	out := buf.String()
	for _, want := range []string{"request_id=req-42", "key_prefix=" + auth.Prefix(keyIngest), "status=200",
		"part.quantity=3", "part.external_id=line_1", "status=401", "key_prefix=takt_3333333"} {
		if !strings.Contains(out, want) {
			t.Errorf("debug log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, keyIngest) || strings.Contains(out, "takt_3333333333333333333333333333333333333333") {
		t.Errorf("debug log contains a whole key:\n%s", out)
	}
	if n := strings.Count(out, "process part (debug)"); n != 2 {
		t.Errorf("%d debug lines, want 2", n)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestReadLimited(t *testing.T) {
	for _, n := range []int{0, 1, 1023, 1024, 1025, 5000} {
		b, err := readLimited(iotestOneByte(strings.NewReader(strings.Repeat("a", n))), make([]byte, 0, 16), 1024)
		if n > 1024 {
			if !errors.Is(err, errBodyTooLarge) || len(b) > 1025 {
				t.Errorf("n=%d: err %v, read %d", n, err, len(b))
			}
			continue
		}
		if err != nil || len(b) != n {
			t.Errorf("n=%d: err %v, read %d", n, err, len(b))
		}
	}
}

// iotestOneByte returns a reader that reads at most 7 bytes at a time.
func iotestOneByte(r io.Reader) io.Reader { return &smallReader{r} }

type smallReader struct{ r io.Reader }

func (s *smallReader) Read(p []byte) (int, error) { return s.r.Read(p[:min(len(p), 7)]) }

func TestConfig(t *testing.T) {
	env := func(kv map[string]string) *configEnv { return newConfigEnv(kv) }
	e := env(nil)
	cfg := ConfigFromEnv(&e.Env)
	if err := cfg.Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	if cfg.Addr != "127.0.0.1:18080" || cfg.AdminAddr != "127.0.0.1:18083" || cfg.Topic != "takt.parts" || cfg.MaxBody != 65536 ||
		cfg.ProduceLinger != time.Millisecond || cfg.ProduceTimeout != 5*time.Second || cfg.LocationNegativeTTL != 2*time.Second {
		t.Errorf("defaults: %+v", cfg)
	}
	e = env(map[string]string{"TAKT_INGEST_MAX_BODY": "10", "TAKT_PRODUCE_TIMEOUT": "0s", "TAKT_LOG_LEVEL": "loud",
		"TAKT_PARTS_TOPIC": "", "TAKT_PRODUCE_LINGER": "5s", "TAKT_AUTH_NEGATIVE_TTL": "-1s"})
	err := ConfigFromEnv(&e.Env).Validate()
	for _, want := range []string{"TAKT_INGEST_MAX_BODY", "TAKT_PRODUCE_TIMEOUT", "TAKT_LOG_LEVEL", "TAKT_PRODUCE_LINGER", "TAKT_AUTH_NEGATIVE_TTL"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v; want a problem with %s", err, want)
		}
	}
	e = env(map[string]string{"TAKT_PRODUCE_TIMEOUT": "soon"})
	ConfigFromEnv(&e.Env)
	if err := e.Err(); err == nil {
		t.Errorf("unparsable duration not reported")
	}
}

// Benchmarks: the handler on fakes (no I/O) against a bare gin handler that
// binds the same JSON with gin's reflection-based binding and answers the
// same body: the ratio is the handler's own overhead.

var benchBody = `{"part":{"external_id":"line_1","quantity":5,"quality":"good","product":"PROD001","cycle_time":45.5,"recorded_at":1698765432}}`

func BenchmarkHandler(b *testing.B) {
	// The real caches over in-memory stores: after the first request every
	// key and location check is a cache hit, as in steady state.
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := prometheus.NewRegistry()
	keys, err := auth.New(oneKey{}, nil, "", quiet, reg, auth.LimitFailures(auth.FailureLimit{Burst: 10, Rate: 0.2}))
	if err != nil {
		b.Fatal(err)
	}
	locs, err := locations.New(fakeLocs{"line_1": {Kind: "line", ID: 1, Site: 1, ExternalID: "line_1"}}, nil, "", quiet, reg)
	if err != nil {
		b.Fatal(err)
	}
	m, err := newMetrics(reg)
	if err != nil {
		b.Fatal(err)
	}
	h := newHandler(keys, locs, nopProducer{}, "parts", 64<<10, time.Second, quiet, m)
	r := httpx.NewEngine(quiet)
	r.POST(Path, h.serve)
	benchServe(b, r)
}

// BenchmarkHandlerIdempotent is BenchmarkHandler with an Idempotency-Key,
// its records in the local stack's Redis: first (a new key per request:
// claim, produce, record) and replay (one key: answered from Redis).
func BenchmarkHandlerIdempotent(b *testing.B) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := prometheus.NewRegistry()
	keys, err := auth.New(oneKey{}, nil, "", quiet, reg, auth.LimitFailures(auth.FailureLimit{Burst: 10, Rate: 0.2}))
	if err != nil {
		b.Fatal(err)
	}
	locs, err := locations.New(fakeLocs{"line_1": {Kind: "line", ID: 1, Site: 1, ExternalID: "line_1"}}, nil, "", quiet, reg)
	if err != nil {
		b.Fatal(err)
	}
	m, err := newMetrics(reg)
	if err != nil {
		b.Fatal(err)
	}
	h := newHandler(keys, locs, nopProducer{}, "parts", 64<<10, time.Second, quiet, m)
	rdb, prefix := testenv.Redis(b)
	if h.idem, err = newIdemStore(rdb, prefix, time.Second, quiet, reg); err != nil {
		b.Fatal(err)
	}
	r := httpx.NewEngine(quiet)
	r.POST(Path, h.serve)
	for _, tc := range []struct {
		name     string
		key      func(i int) string
		replayed string
	}{
		{"first", func(i int) string { return "bench-" + strconv.Itoa(i) }, ""},
		{"replay", func(int) string { return "bench-replay" }, "true"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			body := []byte(benchBody)
			req := httptest.NewRequest("POST", Path, nil)
			req.Header.Set("API-KEY", keyIngest)
			rd := bytes.NewReader(body)
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				rd.Reset(body)
				req.Body = io.NopCloser(rd)
				req.ContentLength = int64(len(body))
				req.Header.Set(idemKeyHeader, tc.key(i))
				w.code = 0
				clear(w.h)
				r.ServeHTTP(w, req)
				if w.code != 200 || (i > 0 && w.h.Get(idemReplayedHeader) != tc.replayed) {
					b.Fatalf("status %d, replayed %q", w.code, w.h.Get(idemReplayedHeader))
				}
			}
		})
	}
}

// oneKey knows keyIngest only.
type oneKey struct{}

func (oneKey) KeyByHash(_ context.Context, hash string) (chstore.KeyOwner, error) {
	if hash != auth.HashKey(keyIngest) {
		return chstore.KeyOwner{}, chstore.ErrNotFound
	}
	return chstore.KeyOwner{KeyID: 1, Hash: hash, Prefix: auth.Prefix(keyIngest), Sites: []uint64{1}, Scopes: []string{"ingest"}}, nil
}

func (f fakeLocs) LocationByExternalID(ctx context.Context, id string) (chstore.Location, error) {
	l, ok := f[id]
	if !ok {
		return l, chstore.ErrNotFound
	}
	return l, nil
}

func BenchmarkBareGin(b *testing.B) {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.POST(Path, func(c *gin.Context) {
		var msg struct {
			Part struct {
				ExternalID string  `json:"external_id" binding:"required"`
				Quantity   int     `json:"quantity"`
				Quality    string  `json:"quality"`
				Product    string  `json:"product"`
				CycleTime  float64 `json:"cycle_time"`
				RecordedAt int64   `json:"recorded_at"`
				Reason     string  `json:"reason"`
			} `json:"part"`
		}
		if err := c.ShouldBindJSON(&msg); err != nil {
			c.JSON(422, gin.H{"error": err.Error()})
			return
		}
		c.JSON(200, gin.H{"message": "Part processed successfully"})
	})
	benchServe(b, r)
}

func benchServe(b *testing.B, h http.Handler) {
	body := []byte(benchBody)
	req := httptest.NewRequest("POST", Path, nil)
	req.Header.Set("API-KEY", keyIngest)
	rd := bytes.NewReader(body)
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(body)
		req.Body = io.NopCloser(rd)
		req.ContentLength = int64(len(body))
		w.code = 0
		clear(w.h)
		h.ServeHTTP(w, req)
		if w.code != 200 {
			b.Fatalf("status %d", w.code)
		}
	}
}

type nopProducer struct{}

func (nopProducer) Produce(_ context.Context, r *kgo.Record, promise func(*kgo.Record, error)) {
	promise(r, nil)
}

type discardWriter struct {
	h    http.Header
	code int
}

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(code int)        { d.code = code }
