package ingestor

// Integration tests: the ingestor against the local stack (scratch
// ClickHouse database with the demo data, scratch topic, Redis prefix).

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/takt/takt/internal/auth"
	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/config"
	"github.com/takt/takt/internal/demo"
	"github.com/takt/takt/internal/httpx"
	"github.com/takt/takt/internal/locations"
	"github.com/takt/takt/internal/testenv"
	"github.com/takt/takt/internal/wire"
)

// stack is the scratch world of one integration test.
type stack struct {
	e       testenv.Endpoints
	store   *chstore.Store
	chCfg   chstore.Config
	rdb     *redis.Client
	prefix  string
	topic   string
	key     string // demo key: ingest, read, write, admin
	readKey string // read scope only
	offKey  string // inactive
}

func newStack(t *testing.T) *stack {
	t.Helper()
	s := &stack{e: testenv.Stack(t)}
	s.store, s.chCfg = testenv.ClickHouse(t)
	s.rdb, s.prefix = testenv.Redis(t)
	s.topic = testenv.Topic(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	seeded, err := demo.Seed(ctx, s.store, "", "")
	if err != nil {
		t.Fatal(err)
	}
	s.key = seeded.APIKey
	var hash, prefix string
	s.readKey, prefix, hash = auth.NewKey()
	put := func(v any) {
		t.Helper()
		var err error
		switch v := v.(type) {
		case chstore.APIKey:
			err = s.store.PutAPIKey(ctx, v)
		case chstore.Site:
			err = s.store.PutSite(ctx, v)
		case chstore.Line:
			err = s.store.PutLine(ctx, v)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	put(chstore.APIKey{ID: 2, User: 1, Prefix: prefix, Hash: hash, Scopes: []string{"read"}, Active: true})
	s.offKey, prefix, hash = auth.NewKey()
	put(chstore.APIKey{ID: 3, User: 1, Prefix: prefix, Hash: hash, Scopes: []string{"ingest"}, Active: false})
	// A second site the demo user does not have.
	put(chstore.Site{ID: 2, Description: "Other plant", Timezone: "UTC"})
	put(chstore.Line{ID: 2, Site: 2, Area: 0, Code: "OTHER", ExternalID: "other_site_line"})
	return s
}

func (s *stack) config(t *testing.T) Config {
	env := &config.Env{Lookup: func(string) (string, bool) { return "", false }}
	cfg := ConfigFromEnv(env)
	cfg.Addr, cfg.AdminAddr = freeAddr(t), freeAddr(t)
	cfg.Brokers, cfg.Topic = s.e.Brokers, s.topic
	cfg.ClickHouse = s.chCfg
	cfg.RedisAddr, cfg.RedisPrefix = s.e.Redis, s.prefix
	return cfg
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// closedAddr returns an address where nothing listens.
func closedAddr(t *testing.T) string { return freeAddr(t) }

// records reads n records from the start of topic.
func (s *stack) records(t *testing.T, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.e.Brokers...), kgo.ConsumeTopics(s.topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records from %s", len(out), n, s.topic)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		out = append(out, fs.Records()...)
	}
	return out
}

type call struct {
	key, body string
	code      int
	resp      string
}

func send(t *testing.T, base string, c call) {
	t.Helper()
	req, err := http.NewRequest("POST", base+Path, strings.NewReader(c.body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if c.key != "" {
		req.Header.Set("API-KEY", c.key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != c.code || string(b) != c.resp {
		t.Errorf("%.60s: %d %s\n  want %d %s", c.body, resp.StatusCode, b, c.code, c.resp)
	}
}

const (
	okBody         = `{"message":"Part processed successfully"}`
	invalidKeyBody = `{"error":"Invalid API key"}`
	internalBody   = `{"error":"Internal server error"}`
)

// TestRun runs the service as main does and sends it every example of the
// reference document, then the ways a request can fail.
func TestRun(t *testing.T) {
	s := newStack(t)
	cfg := s.config(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, testenv.Logger(t)) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	base := "http://" + cfg.Addr
	waitReady(t, base, done)

	examples := []struct {
		name string
		body string
		want wire.Part // without event id and times filled at receipt
	}{
		{"basic", `{"part":{"external_id":"line_1","quantity":1}}`,
			wire.Part{Quantity: 1, Quality: "good", RecordedDefaulted: true}},
		{"comprehensive good", `{"part":{"external_id":"line_1","quantity":5,"quality":"good","product":"PROD001","cycle_time":45.5,"recorded_at":1698765432}}`,
			wire.Part{Quantity: 5, Quality: "good", Product: "PROD001", CycleTime: 45.5, HasCycleTime: true, RecordedAtMs: 1698765432000}},
		{"scrap", `{"part":{"external_id":"line_1","quantity":1,"quality":"scrap","product":"PROD001","cycle_time":45.5,"recorded_at":1698765432,"reason":"REASON01"}}`,
			wire.Part{Quantity: 1, Quality: "scrap", Product: "PROD001", CycleTime: 45.5, HasCycleTime: true, Reason: "REASON01", RecordedAtMs: 1698765432000}},
		{"unix", `{"part":{"external_id":"line_1","recorded_at":1702900800}}`,
			wire.Part{Quantity: 1, Quality: "good", RecordedAtMs: 1702900800000}},
		{"iso", `{"part":{"external_id":"line_1","recorded_at":"2024-01-01T10:00:00Z"}}`,
			wire.Part{Quantity: 1, Quality: "good", RecordedAtMs: 1704103200000}},
		{"curl", "{\n\"part\": {\n\"external_id\": \"line_1\",\n\"quantity\": 5,\n\"quality\": \"good\",\n\"product\": \"PROD001\",\n\"recorded_at\": 1698765432\n}\n}",
			wire.Part{Quantity: 5, Quality: "good", Product: "PROD001", RecordedAtMs: 1698765432000}},
		{"iso offset", `{"part":{"external_id":"line_1","recorded_at":"2024-01-01T10:00:00+02:00"}}`,
			wire.Part{Quantity: 1, Quality: "good", RecordedAtMs: 1704096000000}},
		{"local wall clock (Berlin)", `{"part":{"external_id":"line_1","recorded_at":"2024-01-01T10:00:00"}}`,
			wire.Part{Quantity: 1, Quality: "good", RecordedAtMs: 1704099600000}},
	}
	before := time.Now().UnixMilli()
	for _, ex := range examples {
		send(t, base, call{s.key, ex.body, 200, okBody})
	}
	after := time.Now().UnixMilli()
	recs := s.records(t, len(examples))
	if len(recs) != len(examples) {
		t.Fatalf("%d records on the topic, want %d", len(recs), len(examples))
	}
	ids := map[string]bool{}
	for i, ex := range examples {
		r := recs[i]
		p, err := wire.Decode(r.Value)
		if err != nil {
			t.Fatalf("%s: %v", ex.name, err)
		}
		if string(r.Key) != "line_1" {
			t.Errorf("%s: record key %q", ex.name, r.Key)
		}
		if ids[p.EventID] || len(p.EventID) != 36 || p.EventID[14] != '7' {
			t.Errorf("%s: event id %q not a fresh UUIDv7", ex.name, p.EventID)
		}
		ids[p.EventID] = true
		if p.ReceivedAtMs < before || p.ReceivedAtMs > after {
			t.Errorf("%s: received_at_ms %d outside the test's [%d, %d]", ex.name, p.ReceivedAtMs, before, after)
		}
		want := ex.want
		want.V, want.EventID, want.Site, want.LocationKind, want.LocationID, want.ExternalID = 1, p.EventID, 1, "line", 1, "line_1"
		want.ReceivedAtMs = p.ReceivedAtMs
		if want.RecordedDefaulted {
			want.RecordedAtMs = p.ReceivedAtMs
		}
		if p != want {
			t.Errorf("%s:\n got %+v\nwant %+v", ex.name, p, want)
		}
	}

	big := `{"part":{"external_id":"line_1","product":"` + strings.Repeat("x", 70<<10) + `"}}`
	for _, c := range []call{
		{"", `{"part":{"external_id":"line_1"}}`, 401, invalidKeyBody},
		{"takt_0000000000000000000000000000000000000000", `{"part":{"external_id":"line_1"}}`, 401, invalidKeyBody},
		{"not-a-key", `{"part":{"external_id":"line_1"}}`, 401, invalidKeyBody},
		{s.readKey, `{"part":{"external_id":"line_1"}}`, 401, invalidKeyBody},
		{s.offKey, `{"part":{"external_id":"line_1"}}`, 401, invalidKeyBody},
		{s.key, `{"part":{"external_id":"line_2"}}`, 422, `{"error":"Location not found for external_id: line_2"}`},
		{s.key, `{"part":{"external_id":"LINE_1"}}`, 422, `{"error":"Location not found for external_id: LINE_1"}`},
		{s.key, `{"part":{"external_id":"other_site_line"}}`, 422, `{"error":"Location not found for external_id: other_site_line"}`},
		{s.key, `{"part":{"external_id":"line_1","quality":"perfect"}}`, 422, `{"error":"Invalid message format: quality must be good, scrap or rework, got \"perfect\""}`},
		{s.key, `{"part":{"external_id":"line_1","quantity":1.5}}`, 422, `{"error":"Invalid message format: quantity must be an integer, got 1.5"}`},
		{s.key, `{"part":{"external_id":"line_1","recorded_at":1698765432000}}`, 422, `{"error":"Invalid message format: recorded_at 1698765432000 looks like Unix milliseconds; send seconds (1698765432)"}`},
		{s.key, `{"part":{"quantity":1}}`, 422, `{"error":"Invalid message format: missing external_id"}`},
		{s.key, `{"part":{"external_id":"line_1"},"x":1}`, 422, `{"error":"Invalid message format: unknown field \"x\""}`},
		{s.key, `{part}`, 422, `{"error":"Invalid message format: malformed JSON at byte 1: expected a field name"}`},
		{s.key, big, 413, `{"error":"Request body too large: limit is 65536 bytes"}`},
	} {
		send(t, base, c)
	}

	if resp, err := http.Get(base + "/metrics"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("/metrics on the public port: %v %v; want 404", resp, err)
	}
	b := scrape(t, cfg)
	for _, want := range []string{`takt_ingestor_requests_total{code="200"} 8`, `takt_ingestor_requests_total{code="401"} 5`,
		"takt_ingestor_produce_duration_seconds_count 8", "takt_ingestor_auth_cache_hits_total", "takt_ingestor_catalog_cache_misses_total"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// Per key: the ingest key's answers under its id, the read-only key's
	// refusal under its own; the unknown, malformed and deactivated keys
	// have no id to count under. Neither key nor prefix appears.
	perKey := map[string]map[string]int{} // code -> key id -> count
	for _, m := range regexp.MustCompile(`(?m)^takt_ingestor_key_requests_total\{code="(\d+)",key_id="(\d+)"\} (\d+)$`).FindAllStringSubmatch(string(b), -1) {
		if perKey[m[1]] == nil {
			perKey[m[1]] = map[string]int{}
		}
		perKey[m[1]][m[2]], _ = strconv.Atoi(m[3])
	}
	ingestKey := ""
	for id := range perKey["200"] {
		ingestKey = id
	}
	if len(perKey["200"]) != 1 || perKey["200"][ingestKey] != 8 || len(perKey["422"]) != 1 || perKey["422"][ingestKey] != 9 ||
		len(perKey["413"]) != 1 || perKey["413"][ingestKey] != 1 || len(perKey["401"]) != 1 || perKey["401"][ingestKey] != 0 || len(perKey) != 4 {
		t.Errorf("per-key answers %v: want the ingest key's 8×200, 9×422, 1×413 and one 401 of another key", perKey)
	}
	for _, secret := range []string{s.key, s.readKey, auth.Prefix(s.key)} {
		if strings.Contains(string(b), secret) {
			t.Errorf("metrics show a key or its prefix %q", secret)
		}
	}
}

// scrape reads the admin listener's /metrics.
func scrape(t *testing.T, cfg Config) []byte {
	t.Helper()
	resp, err := http.Get("http://" + cfg.AdminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("admin /metrics: %d %s", resp.StatusCode, b)
	}
	return b
}

// waitReady waits for base/readyz to answer 200. done is Run's result:
// when Run ends early its error is put back, so a cleanup waiting on done
// sees it instead of blocking.
func waitReady(t *testing.T, base string, done chan error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("Run ended early: %v", err)
		default:
		}
		if resp, err := http.Get(base + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s not ready after 30 s", base)
}

// countingKeys counts the look-ups that reach ClickHouse.
type countingKeys struct {
	auth.KeyLookup
	n atomic.Int64
}

func (c *countingKeys) KeyByHash(ctx context.Context, hash string) (chstore.KeyOwner, error) {
	c.n.Add(1)
	return c.KeyLookup.KeyByHash(ctx, hash)
}

// server builds the handlers (process_part, process_parts) from real parts
// (as Run does) around the given key store, Redis client and producer,
// served by httptest.
func (s *stack) server(t *testing.T, keys auth.KeyLookup, rdb *redis.Client, cl producer, produceTimeout time.Duration) string {
	t.Helper()
	logger := testenv.Logger(t)
	reg := prometheus.NewRegistry()
	a, err := auth.New(keys, rdb, s.prefix, logger, reg)
	if err != nil {
		t.Fatal(err)
	}
	locs, err := locations.New(s.store, rdb, s.prefix, logger, reg)
	if err != nil {
		t.Fatal(err)
	}
	m, err := newMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	h := newHandler(a, locs, cl, s.topic, 64<<10, produceTimeout, logger, m)
	if h.idem, err = newIdemStore(rdb, s.prefix, produceTimeout, logger, reg); err != nil {
		t.Fatal(err)
	}
	bm, err := newBatchMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	r := httpx.NewEngine(logger)
	r.POST(Path, h.serve)
	r.POST(BatchPath, newBatchHandler(h, 1<<20, bm).serve)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return srv.URL
}

func (s *stack) producer(t *testing.T, brokers ...string) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(s.topic),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func TestBadKeyFloodStaysOffClickHouse(t *testing.T) {
	s := newStack(t)
	keys := &countingKeys{KeyLookup: s.store}
	base := s.server(t, keys, s.rdb, s.producer(t, s.e.Brokers...), 5*time.Second)

	var bad []string
	for range 5 {
		k, _, _ := auth.NewKey()
		bad = append(bad, k)
	}
	// 8 workers × 50 requests cycling over 5 unknown keys.
	var wg sync.WaitGroup
	var wrong atomic.Int64
	for w := range 8 {
		wg.Go(func() {
			for i := range 50 {
				req, _ := http.NewRequest("POST", base+Path, strings.NewReader(`{"part":{"external_id":"line_1"}}`))
				req.Header.Set("API-KEY", bad[(w+i)%len(bad)])
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					wrong.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 401 {
					wrong.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if wrong.Load() != 0 {
		t.Fatalf("%d of 400 requests were not answered 401", wrong.Load())
	}
	if n := keys.n.Load(); n > int64(len(bad)) {
		t.Fatalf("400 requests with %d bad keys made %d ClickHouse look-ups, want at most %d", len(bad), n, len(bad))
	}

	// A second instance sharing Redis does not ask ClickHouse either.
	keys2 := &countingKeys{KeyLookup: s.store}
	base2 := s.server(t, keys2, s.rdb, s.producer(t, s.e.Brokers...), 5*time.Second)
	for _, k := range bad {
		send(t, base2, call{k, `{"part":{"external_id":"line_1"}}`, 401, invalidKeyBody})
	}
	send(t, base2, call{s.key, `{"part":{"external_id":"line_1"}}`, 200, okBody})
	if n := keys2.n.Load(); n != 1 {
		t.Fatalf("second instance made %d ClickHouse look-ups, want 1 (the good key, new to Redis)", n)
	}
}

func TestRedisDownStillAuthenticates(t *testing.T) {
	s := newStack(t)
	rdb := redis.NewClient(&redis.Options{Addr: closedAddr(t), MaxRetries: -1, DialTimeout: 200 * time.Millisecond, DialerRetries: 1})
	t.Cleanup(func() { rdb.Close() })
	keys := &countingKeys{KeyLookup: s.store}
	base := s.server(t, keys, rdb, s.producer(t, s.e.Brokers...), 5*time.Second)
	send(t, base, call{s.key, `{"part":{"external_id":"line_1","quantity":2}}`, 200, okBody})
	send(t, base, call{"takt_0000000000000000000000000000000000000000", `{"part":{"external_id":"line_1"}}`, 401, invalidKeyBody})
	send(t, base, call{s.readKey, `{"part":{"external_id":"line_1"}}`, 401, invalidKeyBody})
	if n := keys.n.Load(); n != 3 {
		t.Errorf("%d ClickHouse look-ups, want 3", n)
	}
	recs := s.records(t, 1)
	if p, err := wire.Decode(recs[0].Value); err != nil || p.Quantity != 2 {
		t.Fatalf("record: %+v, %v", p, err)
	}
}

func TestBrokerUnreachableIsNever200(t *testing.T) {
	s := newStack(t)
	base := s.server(t, s.store, s.rdb, s.producer(t, closedAddr(t)), 300*time.Millisecond)
	send(t, base, call{s.key, `{"part":{"external_id":"line_1"}}`, 500, internalBody})
}

func TestRunFailsWithoutClickHouse(t *testing.T) {
	testenv.Stack(t)
	env := &config.Env{Lookup: func(string) (string, bool) { return "", false }}
	cfg := ConfigFromEnv(env)
	cfg.Addr, cfg.AdminAddr = freeAddr(t), freeAddr(t)
	cfg.ClickHouse.Addr = []string{closedAddr(t)}
	cfg.ClickHouse.DialTimeout = 500 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := Run(ctx, cfg, testenv.Logger(t))
	if err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run without ClickHouse: %v; want a connection error", err)
	}
}
