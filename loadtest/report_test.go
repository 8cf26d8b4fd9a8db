package loadtest

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestReportJSONShape pins the field names other tools (make bench, CI
// dashboards) read.
func TestReportJSONShape(t *testing.T) {
	r := &Report{Sent: 10, Acked: 9, Errors: 1, Dropped: 2, RateTarget: 100, RateAchieved: 90,
		Latency: Percentiles{P50: 1, P99: 2, P999: 3, Max: 4}, Freshness: FreshnessSet{Percentiles: Percentiles{P50: 5, P99: 6}},
		Lost: 0, Duplicated: 0, Verified: true, Status: map[string]int64{"200": 9, "transport": 1}}
	path := filepath.Join(t.TempDir(), "r.json")
	if err := r.WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]float64{"sent": 10, "acked": 9, "errors": 1, "dropped": 2, "rate_target": 100,
		"rate_achieved": 90, "lost": 0, "duplicated": 0} {
		if v, ok := m[k].(float64); !ok || v != want {
			t.Errorf("%s = %v, want %v", k, m[k], want)
		}
	}
	if m["verified"] != true {
		t.Errorf("verified = %v", m["verified"])
	}
	lat, _ := m["latency_ms"].(map[string]any)
	for k, want := range map[string]float64{"p50": 1, "p99": 2, "p999": 3, "max": 4} {
		if lat[k] != want {
			t.Errorf("latency_ms.%s = %v, want %v", k, lat[k], want)
		}
	}
	fr, _ := m["freshness_ms"].(map[string]any)
	for k, want := range map[string]float64{"p50": 5, "p99": 6} {
		if fr[k] != want {
			t.Errorf("freshness_ms.%s = %v, want %v", k, fr[k], want)
		}
	}
	var sum bytes.Buffer
	r.Summary(&sum)
	if lines := strings.Count(sum.String(), "\n"); lines > 20 {
		t.Errorf("summary is %d lines, more than a screen", lines)
	}
	for _, want := range []string{"sent 10", "acked 9", "p99 2.00", "lost 0", "200: 9"} {
		if !strings.Contains(sum.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, sum.String())
		}
	}
}

func TestValidateRefusesNonLoopback(t *testing.T) {
	for _, u := range []string{"http://10.0.0.1:18080", "http://example.com", "ftp://127.0.0.1", "http://0.0.0.0:1"} {
		c := DefaultConfig()
		c.Key, c.IngestURL = "k", u
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "-url") {
			t.Errorf("%s: %v", u, err)
		}
	}
	for _, u := range []string{"http://127.0.0.1:18080", "http://localhost:1", "http://[::1]:2", "http://127.1.2.3:4"} {
		c := DefaultConfig()
		c.Key, c.IngestURL = "k", u
		if err := c.Validate(); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
	c := DefaultConfig()
	c.Key, c.Verify, c.ClickHouseAddr = "k", true, []string{"10.1.1.1:9000"}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "-clickhouse") {
		t.Errorf("remote clickhouse: %v", err)
	}
}

func TestValidateCaps(t *testing.T) {
	c := DefaultConfig()
	c.Key = "k"
	c.Duration, c.MaxParts, c.Batch, c.Concurrency, c.Rate = MaxDuration+1, MaxParts+1, MaxBatch+1, MaxConcurrency+1, 0
	err := c.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"-duration", "-max-parts", "-batch", "-concurrency"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %s: %v", want, err)
		}
	}
}

func TestApplyEnvFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "env")
	os.WriteFile(path, []byte("# x\nINGEST_URL=http://127.0.0.1:1\nAPI_KEY=takt_abc\nCLICKHOUSE_ADDR=127.0.0.1:2\nCLICKHOUSE_DB=d\n"), 0o600)
	c := DefaultConfig()
	c.IngestURL, c.QueryURL, c.ClickHouseDB = "", "", ""
	if err := c.ApplyEnvFile(path); err != nil {
		t.Fatal(err)
	}
	if c.IngestURL != "http://127.0.0.1:1" || c.Key != "takt_abc" || c.ClickHouseAddr[0] != "127.0.0.1:2" ||
		c.ClickHouseDB != "d" || c.QueryURL != DefaultConfig().QueryURL {
		t.Errorf("%+v", c)
	}
	c = DefaultConfig()
	c.IngestURL, c.Key = "http://127.0.0.1:9", "flag"
	if err := c.ApplyEnvFile(path); err != nil || c.IngestURL != "http://127.0.0.1:9" || c.Key != "flag" {
		t.Errorf("flags must win: %+v %v", c, err)
	}
}

func TestSimParts(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Machines, cfg.Scrap, cfg.Rework = 3, 0.2, 0.1
	s := newSim(cfg, t0)
	last := map[string]int64{}
	q := map[string]int{}
	for i := range 3000 {
		now := t0.Add(timeMs(i / 10))
		m := s.pick(now)
		p := s.part(m, now)
		if p.recordedMs <= last[m.ExternalID] {
			t.Fatalf("%s: recorded_at not strictly increasing", m.ExternalID)
		}
		last[m.ExternalID] = p.recordedMs
		q[p.quality]++
		if p.cycleTime < m.product.IdealCycleTime || p.cycleTime > 2*m.product.IdealCycleTime+0.01 {
			t.Fatalf("cycle time %v for ideal %v", p.cycleTime, m.product.IdealCycleTime)
		}
		var b []byte
		b = body(b, []simPart{p}, false)
		var v struct{ Part map[string]any }
		if err := json.Unmarshal(b, &v); err != nil || v.Part["external_id"] != m.ExternalID {
			t.Fatalf("%s: %v", b, err)
		}
		if (p.quality == "scrap") != (v.Part["reason"] == scrapReason) {
			t.Fatalf("reason on %s: %s", p.quality, b)
		}
		if got := int64(v.Part["recorded_at"].(float64)*1000 + 0.5); got != p.recordedMs {
			t.Fatalf("recorded_at %v, want %d ms", v.Part["recorded_at"], p.recordedMs)
		}
	}
	if q["scrap"] < 450 || q["scrap"] > 750 || q["rework"] < 200 || q["rework"] > 400 {
		t.Errorf("qualities %v for 20%% scrap, 10%% rework of 3000", q)
	}
	b := body(nil, []simPart{s.part(s.machines[0], t0), s.part(s.machines[1], t0)}, true)
	var v struct{ Parts []map[string]any }
	if err := json.Unmarshal(b, &v); err != nil || len(v.Parts) != 2 {
		t.Errorf("batch body %s: %v", b, err)
	}
}

func timeMs(n int) time.Duration { return time.Duration(n) * time.Millisecond }
