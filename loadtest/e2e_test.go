package loadtest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/takt/takt/ingestor"
	"github.com/takt/takt/internal/config"
	"github.com/takt/takt/internal/demo"
	"github.com/takt/takt/internal/testenv"
	"github.com/takt/takt/processor"
	"github.com/takt/takt/queryapi"
)

// TestHarnessEndToEnd runs the harness with -verify against an in-process
// pipeline (ingestor, processor, query API) on scratch resources of the
// local stack: a few hundred parts, single and batched, over HTTP and
// over MQTT, and with a third of the requests sent twice with the same
// idempotency keys; nothing may be lost or duplicated, and sampled parts
// must show up in the query API.
func TestHarnessEndToEnd(t *testing.T) {
	store, chCfg := testenv.ClickHouse(t)
	e := testenv.Stack(t)
	_, prefix := testenv.Redis(t)
	topic, dlq := testenv.Topic(t, 3), testenv.Topic(t, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	seeded, err := demo.Seed(ctx, store, "", "")
	if err != nil {
		t.Fatal(err)
	}
	logger := testenv.Logger(t)
	noEnv := &config.Env{Lookup: func(string) (string, bool) { return "", false }}

	ic := ingestor.ConfigFromEnv(noEnv)
	ic.Addr, ic.AdminAddr, ic.Brokers, ic.Topic, ic.ClickHouse = freeAddr(t), freeAddr(t), e.Brokers, topic, chCfg
	ic.RedisAddr, ic.RedisPrefix = e.Redis, prefix
	ic.MQTTAddr, ic.DLQTopic = freeAddr(t), dlq
	pc := processor.Config{
		Brokers: e.Brokers, Topic: topic, DLQTopic: dlq, Group: testenv.Name("takt-lt-"),
		SessionTimeout: 6 * time.Second, BatchRows: 5000, BatchInterval: 100 * time.Millisecond,
		CycleTimeTolerance: 0.1, CatalogRefresh: time.Second, Addr: "127.0.0.1:0", ClickHouse: chCfg,
		Registry: prometheus.NewRegistry(),
	}
	qc := queryapi.ConfigFromEnv(noEnv)
	qc.Addr, qc.AdminAddr, qc.ClickHouse, qc.RedisAddr, qc.RedisPrefix = freeAddr(t), freeAddr(t), chCfg, e.Redis, prefix
	qc.PartsTopic = topic // its watermark

	done := make(chan error, 3)
	go func() { done <- ingestor.Run(ctx, ic, logger) }()
	go func() { done <- processor.Run(ctx, pc, logger) }()
	go func() { done <- queryapi.Run(ctx, qc, logger) }()
	defer func() {
		cancel()
		for range 3 {
			if err := <-done; err != nil {
				t.Errorf("service: %v", err)
			}
		}
	}()
	for _, addr := range []string{ic.Addr, qc.Addr} {
		waitReady(t, "http://"+addr)
	}

	for _, tc := range []struct {
		transport string
		batch     int
		retry     float64
	}{{"http", 1, 0}, {"http", 25, 0}, {"mqtt", 1, 0}, {"mqtt", 25, 0}, {"http", 1, 0.3}, {"http", 25, 0.3}} {
		name := fmt.Sprintf("%s batch %d retry %g", tc.transport, tc.batch, tc.retry)
		cfg := DefaultConfig()
		cfg.IngestURL, cfg.QueryURL, cfg.Key = "http://"+ic.Addr, "http://"+qc.Addr, seeded.APIKey
		cfg.Transport, cfg.MQTTAddr, cfg.MQTTConns = tc.transport, ic.MQTTAddr, 3
		cfg.ClickHouseAddr, cfg.ClickHouseDB = chCfg.Addr, chCfg.Database
		cfg.Machines, cfg.Rate, cfg.MaxParts, cfg.Duration, cfg.Batch = 8, 400, 300, 5*time.Second, tc.batch
		cfg.StopEvery, cfg.StopFor = 300*time.Millisecond, 100*time.Millisecond
		cfg.Verify, cfg.DrainTimeout = true, 20*time.Second
		cfg.RetryRate = tc.retry
		rep, err := Run(ctx, cfg, logger)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !rep.Verified || rep.Lost != 0 || rep.Duplicated != 0 || rep.Acked != 300 || rep.Errors != 0 ||
			rep.StoredRows != 300 || rep.StoredQty != uint64(rep.AckedQty) {
			t.Errorf("%s: %+v", name, rep)
		}
		// Every retried part is answered twice; at least the repeats
		// that followed their first's answer are replays.
		if tc.retry > 0 && (float64(rep.Retried) < 300*tc.retry/2 || rep.Replayed < rep.Retried/4 || rep.Replayed > rep.Retried) {
			t.Errorf("%s: %d parts retried, %d replayed", name, rep.Retried, rep.Replayed)
		}
		if rep.Freshness.N == 0 {
			t.Errorf("%s: no freshness sample (%d never seen)", name, rep.Freshness.Timeouts)
		}
		if tc.transport == "mqtt" && rep.Target != "mqtt://"+ic.MQTTAddr {
			t.Errorf("%s: report target %q", name, rep.Target)
		}
	}

	// Connection failures are told as what they are, not as a timeout.
	for _, tc := range []struct{ name, addr, key, want string }{
		{"wrong key", ic.MQTTAddr, "takt_" + strings.Repeat("x", 40), "connection refused: server denied connect"},
		{"nothing listening", freeAddr(t), seeded.APIKey, "connect: connection refused"},
	} {
		cfg := DefaultConfig()
		cfg.Transport, cfg.MQTTAddr, cfg.MQTTConns, cfg.Key = "mqtt", tc.addr, 1, tc.key
		_, err := newMQTTPool(ctx, cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want it to contain %q", tc.name, err, tc.want)
		}
	}
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

func waitReady(t *testing.T, base string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get(base + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
	}
	t.Fatalf("%s not ready after 30 s", base)
}
