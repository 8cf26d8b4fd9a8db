package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/takt/takt/ingestor"
	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/config"
	"github.com/takt/takt/internal/demo"
	"github.com/takt/takt/internal/testenv"
	"github.com/takt/takt/internal/tlsx"
	"github.com/takt/takt/processor"
	"github.com/takt/takt/queryapi"
)

// pipeline is the three services running in-process on scratch resources.
type pipeline struct {
	store  *chstore.Store
	apiKey string
	// secret is the demo user's secret key for signed calls (server
	// demo.SecretServer).
	secret string
	ingest string // base URL
	query  string // base URL
	// admin are the base URLs of the services' admin listeners
	// (/metrics), by service name.
	admin    map[string]string
	topic    string
	cancel   context.CancelFunc
	done     chan error
	services int
	// procCfg is the processor's configuration (run in-process unless
	// options.noProcessor).
	procCfg processor.Config
	// queryTLS is the query API's HTTPS address (host:port) and caFile
	// the certificate authority that signed its certificate, with
	// options.tls.
	queryTLS, caFile string
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

// start runs ingestor, processor and queryapi against a scratch database,
// topic and Redis prefix; redisAddr overrides the stack's Redis.
func start(t *testing.T, redisAddr string) *pipeline {
	t.Helper()
	return startWith(t, options{redisAddr: redisAddr})
}

// options vary the pipeline of startWith.
type options struct {
	// redisAddr overrides the stack's Redis.
	redisAddr string
	// setup runs after the demo seed, before the services start.
	setup func(ctx context.Context, store *chstore.Store)
	// clock is the processor's tick clock (nil: the wall clock).
	clock func() time.Time
	// noProcessor: the test runs the processor itself (p.procEnv says
	// how to configure it).
	noProcessor bool
	// noRateLimit turns the per-key rate limits off.
	noRateLimit bool
	// catalogRefresh overrides how often the processor re-reads master
	// data.
	catalogRefresh time.Duration
	// tls adds an HTTPS listener to the query API, with a certificate
	// of a scratch certificate authority.
	tls bool
}

// startWith is start with options.
func startWith(t *testing.T, o options) *pipeline {
	t.Helper()
	redisAddr := o.redisAddr
	e := testenv.Stack(t)
	store, chCfg := testenv.ClickHouse(t)
	ctx, cancelSeed := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelSeed()
	seeded, err := demo.Seed(ctx, store, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if o.setup != nil {
		o.setup(ctx, store)
	}
	topic := testenv.Topic(t, 3)
	_, prefix := testenv.Redis(t)
	if redisAddr == "" {
		redisAddr = e.Redis
	}
	env := &config.Env{Lookup: func(string) (string, bool) { return "", false }}

	icfg := ingestor.ConfigFromEnv(env)
	icfg.Addr, icfg.AdminAddr = freeAddr(t), freeAddr(t)
	icfg.Brokers, icfg.Topic = e.Brokers, topic
	icfg.ClickHouse = chCfg
	icfg.RedisAddr, icfg.RedisPrefix = redisAddr, prefix

	pcfg := processor.ConfigFromEnv(env)
	pcfg.Addr = freeAddr(t)
	pcfg.Brokers, pcfg.Topic, pcfg.DLQTopic = e.Brokers, topic, testenv.Topic(t, 1)
	changes := testenv.Topic(t, 3)
	pcfg.PeriodChangesTopic = changes
	pcfg.Group = testenv.Name("takt-test-group-")
	pcfg.BatchInterval = 100 * time.Millisecond
	pcfg.ClickHouse = chCfg
	pcfg.Clock = o.clock
	pcfg.RedisAddr, pcfg.RedisPrefix = redisAddr, prefix
	if o.catalogRefresh > 0 {
		pcfg.CatalogRefresh = o.catalogRefresh
	}

	qcfg := queryapi.ConfigFromEnv(env)
	qcfg.Addr, qcfg.AdminAddr = freeAddr(t), freeAddr(t)
	qcfg.ClickHouse = chCfg
	qcfg.RedisAddr, qcfg.RedisPrefix = redisAddr, prefix
	qcfg.KafkaBrokers, qcfg.PartsTopic, qcfg.PeriodChangesTopic = e.Brokers, topic, changes
	qcfg.FeedHeartbeat = 300 * time.Millisecond
	// A stream a test closes holds its key's slot until the server sees
	// the connection gone, a moment later: the tests that open and close
	// streams one after another must not run into the per-key bound
	// (queryapi's tests check the bound itself).
	qcfg.FeedMaxStreamsPerKey = 16
	icfg.RateLimit.Disabled = o.noRateLimit
	qcfg.RateLimit.Disabled = o.noRateLimit
	var caFile string
	if o.tls {
		files, _, err := tlsx.LocalCA(t.TempDir(), []string{"127.0.0.1", "localhost"}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		qcfg.TLSAddr = freeAddr(t)
		qcfg.TLS = tlsx.Server{CertFile: files.Cert, KeyFile: files.Key, CheckEvery: time.Minute}
		caFile = files.CA
	}

	runCtx, cancel := context.WithCancel(context.Background())
	p := &pipeline{store: store, apiKey: seeded.APIKey, secret: seeded.SecretKey, ingest: "http://" + icfg.Addr, query: "http://" + qcfg.Addr,
		topic: topic, cancel: cancel, done: make(chan error, 3), services: 3, procCfg: pcfg,
		queryTLS: qcfg.TLSAddr, caFile: caFile,
		admin: map[string]string{"ingestor": "http://" + icfg.AdminAddr, "queryapi": "http://" + qcfg.AdminAddr}}
	logger := testenv.Logger(t)
	ready := []string{p.ingest + "/readyz", p.query + "/readyz"}
	go func() { p.done <- fmt.Errorf("ingestor: %w", ingestor.Run(runCtx, icfg, logger)) }()
	if o.noProcessor {
		p.services = 2
	} else {
		go func() { p.done <- fmt.Errorf("processor: %w", processor.Run(runCtx, pcfg, logger)) }()
		ready = append(ready, "http://"+pcfg.Addr+"/readyz")
		p.admin["processor"] = "http://" + pcfg.Addr
	}
	go func() { p.done <- fmt.Errorf("queryapi: %w", queryapi.Run(runCtx, qcfg, logger)) }()
	t.Cleanup(p.stop)
	for _, u := range ready {
		waitFor(t, 30*time.Second, "ready "+u, func() bool {
			resp, err := http.Get(u)
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		})
	}
	return p
}

func (p *pipeline) stop() {
	if p.cancel == nil {
		return
	}
	p.cancel()
	p.cancel = nil
	for i := 0; i < p.services; i++ {
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			return
		}
	}
}

func waitFor(t *testing.T, limit time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %s waiting for %s", limit, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *pipeline) post(t *testing.T, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, p.ingest+"/api/external/production/process_part", bytes.NewBufferString(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("API-KEY", p.apiKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("post: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

type envelope struct {
	Success bool             `json:"success"`
	Data    []map[string]any `json:"data"`
	Error   string           `json:"error"`
	Limit   int              `json:"limit"`
	Offset  int              `json:"offset"`
}

func (p *pipeline) parts(t *testing.T, args url.Values) envelope {
	t.Helper()
	args.Set("auth", p.apiKey)
	resp, err := http.Get(p.query + "/api/1.0/parts/?" + args.Encode())
	if err != nil {
		t.Fatalf("get parts: %v", err)
	}
	defer resp.Body.Close()
	var env envelope
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		t.Fatalf("decode parts: %v", err)
	}
	if !env.Success {
		t.Fatalf("parts: success=false: %s", env.Error)
	}
	return env
}

// TestReferenceExamples sends every example message of the ingest
// reference and finds each in the parts area with the values it implies.
func TestReferenceExamples(t *testing.T) {
	p := start(t, "")
	before := time.Now().UTC()
	examples := []struct {
		name string
		body string
		want map[string]any // fields of the one record that must match
	}{
		{"basic", `{"part":{"external_id":"line_1","quantity":1}}`, map[string]any{
			"quantity": 1.0, "quality": "good", "product_code": demo.FallbackCode, "product_resolution": "fallback",
			"cycle_time": nil, "reason": nil, "product_reported": nil, "recorded_defaulted": true}},
		{"comprehensive good", `{"part":{"external_id":"line_1","quantity":5,"quality":"good","product":"PROD001","cycle_time":45.5,"recorded_at":1698765432}}`, map[string]any{
			"quantity": 5.0, "quality": "good", "product_code": "PROD001", "product_resolution": "code",
			"cycle_time": 45.5, "recorded_at": "2023-10-31 15:17:12.000"}},
		{"scrap", `{"part":{"external_id":"line_1","quantity":1,"quality":"scrap","product":"PROD001","cycle_time":45.5,"recorded_at":1698765432,"reason":"REASON01"}}`, map[string]any{
			"quantity": 1.0, "quality": "scrap", "product_code": "PROD001", "reason": "REASON01",
			"cycle_time": 45.5, "recorded_at": "2023-10-31 15:17:12.000"}},
		{"unix timestamp", `{"part":{"external_id":"line_1","recorded_at":1702900800}}`, map[string]any{
			"quantity": 1.0, "quality": "good", "product_resolution": "fallback",
			"recorded_at": "2023-12-18 12:00:00.000", "recorded_at_local": "2023-12-18T13:00:00.000+01:00"}},
		{"iso timestamp", `{"part":{"external_id":"line_1","recorded_at":"2024-01-01T10:00:00Z"}}`, map[string]any{
			"quantity": 1.0, "recorded_at": "2024-01-01 10:00:00.000", "recorded_at_local": "2024-01-01T11:00:00.000+01:00"}},
		{"curl", `{"part":{"external_id":"line_1","quantity":5,"quality":"good","product":"PROD001","recorded_at":1698765432}}`, map[string]any{
			"quantity": 5.0, "product_code": "PROD001", "cycle_time": nil, "recorded_at": "2023-10-31 15:17:12.000",
			"recorded_at_local": "2023-10-31T16:17:12.000+01:00"}},
		{"product by cycle time", `{"part":{"external_id":"line_1","cycle_time":46,"recorded_at":"2024-07-01T08:00:00.000+02:00"}}`, map[string]any{
			"product_code": "PROD001", "product_resolution": "cycle_time", "product_reported": nil,
			"recorded_at": "2024-07-01 06:00:00.000", "recorded_at_local": "2024-07-01T08:00:00.000+02:00"}},
		{"rework", `{"part":{"external_id":"line_1","quantity":2,"quality":"rework","reason":"REASON01","recorded_at":1698765000}}`, map[string]any{
			"quality": "rework", "quantity": 2.0, "reason": nil}},
	}
	for _, ex := range examples {
		status, body := p.post(t, ex.body)
		if status != http.StatusOK || body != `{"message":"Part processed successfully"}` {
			t.Fatalf("%s: got %d %s", ex.name, status, body)
		}
	}

	var recs []map[string]any
	waitFor(t, 30*time.Second, "all example parts in the parts area", func() bool {
		recs = p.parts(t, url.Values{"limit": {"100"}}).Data
		return len(recs) >= len(examples)
	})
	if len(recs) != len(examples) {
		t.Fatalf("got %d parts, want %d", len(recs), len(examples))
	}
	for _, ex := range examples {
		var matches []map[string]any
		for _, r := range recs {
			if matchesAll(r, ex.want) {
				matches = append(matches, r)
			}
		}
		if len(matches) != 1 {
			t.Errorf("%s: %d records match %v", ex.name, len(matches), ex.want)
			continue
		}
		r := matches[0]
		if r["externalid"] != "line_1" || r["site"] != float64(demo.SiteID) || r["event_id"] == "" {
			t.Errorf("%s: location/site/event id wrong: %v", ex.name, r)
		}
	}
	if t.Failed() {
		t.Logf("records: %v", recs)
	}
	// The basic message carries no time: it was recorded at receipt.
	for _, r := range recs {
		if r["recorded_defaulted"] == true {
			ts, err := time.Parse("2006-01-02 15:04:05.000", r["recorded_at"].(string))
			if err != nil || ts.Before(before.Add(-time.Second)) || ts.After(time.Now().Add(time.Second)) {
				t.Errorf("basic part: recorded_at %v is not the time of receipt (%v)", r["recorded_at"], before)
			}
		}
	}
}

func matchesAll(r, want map[string]any) bool {
	for k, v := range want {
		if r[k] != v {
			return false
		}
	}
	return true
}

// startRedis runs a Redis server of the test's own so the test can kill and
// restart it.
func startRedis(t *testing.T, port int) *exec.Cmd {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server not installed (make up installs it): %v", err)
	}
	cmd := exec.Command(bin, "--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--save", "", "--appendonly", "no",
		"--dir", t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "redis on port "+strconv.Itoa(port), func() bool {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return cmd
}

// TestRedisRestartLosesNothing kills the pipeline's Redis in the middle of
// a stream of parts and starts it again: every part that got a 200 is in
// ClickHouse exactly once, and Redis being down rejects no good request.
func TestRedisRestartLosesNothing(t *testing.T) {
	_, portStr, _ := net.SplitHostPort(freeAddr(t))
	port, _ := strconv.Atoi(portStr)
	redisSrv := startRedis(t, port)
	defer func() {
		if redisSrv.Process != nil {
			redisSrv.Process.Kill()
			redisSrv.Wait()
		}
	}()
	p := start(t, "127.0.0.1:"+portStr)

	const total = 1500
	var accepted, failed atomic.Int64
	var sent atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := sent.Add(1)
				if i > total {
					return
				}
				body := fmt.Sprintf(`{"part":{"external_id":"line_1","quantity":1,"recorded_at":%d}}`, 1700000000+i)
				status, _ := p.post(t, body)
				if status == http.StatusOK {
					accepted.Add(1)
				} else {
					failed.Add(1)
				}
			}
		}()
	}
	waitFor(t, 60*time.Second, "a third of the parts sent", func() bool { return sent.Load() > total/3 })
	redisSrv.Process.Kill()
	redisSrv.Wait()
	waitFor(t, 60*time.Second, "two thirds of the parts sent", func() bool { return sent.Load() > 2*total/3 })
	redisSrv = startRedis(t, port)
	wg.Wait()

	if failed.Load() != 0 {
		t.Errorf("%d requests failed while Redis was restarted; want 0", failed.Load())
	}
	ctx := context.Background()
	var rows uint64
	waitFor(t, 60*time.Second, "accepted parts in ClickHouse", func() bool {
		n, err := p.store.QueryUint64(ctx, "SELECT count() FROM parts")
		rows = n
		return err == nil && n >= uint64(accepted.Load())
	})
	// Give a duplicate the chance to show up before counting for good.
	time.Sleep(500 * time.Millisecond)
	rows, _ = p.store.QueryUint64(ctx, "SELECT count() FROM parts")
	uniq, _ := p.store.QueryUint64(ctx, "SELECT uniqExact(event_id) FROM parts")
	if rows != uint64(accepted.Load()) || uniq != rows {
		t.Fatalf("accepted %d parts; ClickHouse has %d rows, %d distinct events", accepted.Load(), rows, uniq)
	}
}
