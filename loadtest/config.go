package loadtest

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/takt/takt/internal/config"
)

// Hard caps: whatever the flags say, one run stays bounded in time, parts
// and connections. The load generator shares the machine with the
// pipeline.
const (
	MaxDuration    = 10 * time.Minute
	MaxParts       = 10_000_000
	MaxRate        = 1_000_000
	MaxConcurrency = 1024
	MaxInFlight    = 4096
	MaxMachines    = 10_000
	MaxBatch       = 1000
)

// Config is one run of the harness.
type Config struct {
	// IngestURL is the ingestor's base URL, QueryURL the query API's
	// (freshness), Key the API key (ingest and read scopes).
	IngestURL string
	QueryURL  string
	Key       string
	// QueryAdminURL is the query API's admin listener: the freshness
	// probe reads its metrics before and after, to report what
	// ClickHouse read for the probe's requests (empty: not reported).
	QueryAdminURL string
	// MoreIngestURLs are further ingestors (behind no load balancer):
	// requests go round-robin over IngestURL and these.
	MoreIngestURLs []string
	// Transport is http (the ingest API) or mqtt (QoS 1 publishes to
	// MQTTAddr over MQTTConns connections).
	Transport string
	MQTTAddr  string
	MQTTConns int
	// ClickHouse is where -verify counts and where locations and
	// products are provisioned.
	ClickHouseAddr []string
	ClickHouseDB   string

	// Machines is the number of simulated machines (locations).
	Machines int
	// Rate is the open-loop target in parts/s; ignored when Concurrency
	// is set (closed loop: that many senders, each waiting for its answer).
	Rate        float64
	Concurrency int
	// InFlight caps the requests outstanding in open loop; a send due
	// while the cap is reached is dropped (counted, not sent).
	InFlight int
	// Duration and MaxParts bound the run: it stops at whichever comes
	// first.
	Duration time.Duration
	MaxParts int
	// Batch > 1 sends that many parts per call to the batch endpoint.
	Batch int
	// Scrap and Rework are the fractions of parts of those qualities;
	// StopEvery and StopFor the mean running time between stops and the
	// mean stop length of a machine.
	Scrap, Rework float64
	StopEvery     time.Duration
	StopFor       time.Duration
	Seed          int64

	// Provision creates (or reuses) the harness's locations and products.
	// Off, the machines still report against their external ids (e.g. to
	// drive loadtest/cmd/bare, which accepts anything).
	Provision bool
	// RetryRate is the share of requests sent twice with the same
	// idempotency keys (see retries); -verify expects each part once.
	RetryRate float64
	// Verify waits for the pipeline to drain and counts what arrived.
	Verify       bool
	DrainTimeout time.Duration
	// Timeout bounds each request.
	Timeout time.Duration
	// Report is a path for the JSON report ("" for none).
	Report string
	// Progress prints a live line to stderr (set by the command when
	// stderr is a terminal and CI is unset).
	Progress bool
	// Label names the run in the report.
	Label string
	// Outcome, when set, is called once for every part whose request was
	// sent, when its answer (or the lack of one) is known; it is called
	// from the senders, concurrently. The chaos harness accounts for each
	// part with it.
	Outcome func(PartOutcome)

	// CPU lists processes whose CPU time the run measures (Report.CPU),
	// from the first send until every answer came and Settle returned.
	// Settle, when set, waits until the pipeline has stored what was
	// acknowledged, so that the window holds the downstream work of the
	// parts sent and not only their ingest.
	CPU    []Proc
	Settle func(context.Context) error
}

// PartOutcome is the fate of one sent part. A part is identified by its
// location and its recorded_at in milliseconds (a machine's parts are at
// least one millisecond apart).
type PartOutcome struct {
	ExternalID string
	RecordedMs int64
	Quantity   uint32
	// Status is the part's HTTP status (a batch item's own status), 0
	// when no answer came (transport error, timeout, unreadable answer).
	Status int
}

// DefaultConfig returns the defaults of the command's flags.
func DefaultConfig() Config {
	return Config{
		IngestURL: "http://127.0.0.1:18080", QueryURL: "http://127.0.0.1:18081",
		ClickHouseAddr: []string{"127.0.0.1:19000"}, ClickHouseDB: "takt",
		Machines: 50, Rate: 1000, InFlight: 512, Duration: 10 * time.Second, MaxParts: 1_000_000,
		Batch: 1, Scrap: 0.02, Rework: 0.01, StopEvery: 20 * time.Second, StopFor: 2 * time.Second,
		Transport: "http", MQTTAddr: "127.0.0.1:11883", MQTTConns: 8,
		Seed: 1, Provision: true, DrainTimeout: 60 * time.Second, Timeout: 10 * time.Second,
	}
}

// Flags registers the command's flags on fs, writing into c. envFile
// receives -env: the .run/env file whose values (INGEST_URL, QUERY_URL,
// API_KEY, CLICKHOUSE_ADDR, CLICKHOUSE_DB) are the defaults of the
// corresponding flags; see ApplyEnvFile.
func (c *Config) Flags(fs *flag.FlagSet, envFile *string) {
	fs.StringVar(envFile, "env", ".run/env", "file of KEY=value lines written by `make up` (API_KEY, INGEST_URL, ...); \"\" for none")
	fs.StringVar(&c.IngestURL, "url", "", "ingestor base URL (default: INGEST_URL of -env, else "+c.IngestURL+")")
	fs.StringVar(&c.QueryURL, "query-url", "", "query API base URL for freshness (default: QUERY_URL of -env)")
	fs.StringVar(&c.QueryAdminURL, "query-admin-url", "", "query API admin URL: what ClickHouse read for the freshness probe, from its metrics (default: QUERY_ADMIN_URL of -env)")
	fs.StringVar(&c.Key, "key", "", "API key (default: API_KEY of -env)")
	fs.StringVar(&c.Transport, "transport", c.Transport, "http (the ingest API) or mqtt (QoS 1 publishes, acknowledged after Kafka)")
	fs.StringVar(&c.MQTTAddr, "mqtt", "", "-transport mqtt: the ingestor's MQTT address (default: MQTT_ADDR of -env)")
	fs.IntVar(&c.MQTTConns, "mqtt-conns", c.MQTTConns, "-transport mqtt: MQTT connections the sends are spread over")
	fs.IntVar(&c.Machines, "machines", c.Machines, "simulated machines (locations)")
	fs.Float64Var(&c.Rate, "rate", c.Rate, "open loop: target parts/s")
	fs.IntVar(&c.Concurrency, "concurrency", 0, "closed loop: this many senders, each waiting for its answer (saturation); overrides -rate")
	fs.IntVar(&c.InFlight, "inflight", c.InFlight, "open loop: most requests outstanding; sends due beyond it are dropped")
	fs.DurationVar(&c.Duration, "duration", c.Duration, "how long to send (hard cap "+MaxDuration.String()+")")
	fs.IntVar(&c.MaxParts, "max-parts", c.MaxParts, fmt.Sprintf("stop after this many parts (hard cap %d)", MaxParts))
	fs.IntVar(&c.Batch, "batch", c.Batch, fmt.Sprintf("parts per request; > 1 uses the batch endpoint (max %d)", MaxBatch))
	fs.Float64Var(&c.Scrap, "scrap", c.Scrap, "fraction of scrap parts")
	fs.Float64Var(&c.Rework, "rework", c.Rework, "fraction of rework parts")
	fs.DurationVar(&c.StopEvery, "stop-every", c.StopEvery, "mean running time of a machine between stops (0: never stops)")
	fs.DurationVar(&c.StopFor, "stop-for", c.StopFor, "mean length of a stop")
	fs.Int64Var(&c.Seed, "seed", c.Seed, "random seed of the simulation")
	fs.BoolVar(&c.Provision, "provision", c.Provision, "create or reuse the harness's locations and products in ClickHouse")
	fs.Float64Var(&c.RetryRate, "retry-rate", 0, "fraction of requests sent twice with the same idempotency keys (half racing the first, half after its answer); -verify expects each part once (http only)")
	fs.BoolVar(&c.Verify, "verify", false, "after sending, wait for the pipeline to drain and check every acknowledged part is stored exactly once; measure freshness")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", c.DrainTimeout, "-verify: longest wait for the pipeline to drain")
	fs.DurationVar(&c.Timeout, "timeout", c.Timeout, "per-request timeout")
	fs.StringVar(&c.Report, "report", "", "write the JSON report to this file")
	fs.StringVar(&c.Label, "label", "", "name of the run in the report")
	fs.Func("clickhouse", "ClickHouse native address(es), comma-separated (default: CLICKHOUSE_ADDR of -env)", func(s string) error {
		c.ClickHouseAddr = strings.Split(s, ",")
		return nil
	})
	fs.StringVar(&c.ClickHouseDB, "db", "", "Takt database (default: CLICKHOUSE_DB of -env, else takt)")
}

// ReadEnvFile reads the KEY=value lines of path (the .run/env file of the
// local stack). A missing file gives an empty map.
func ReadEnvFile(path string) (map[string]string, error) {
	vals := map[string]string{}
	if path == "" {
		return vals, nil
	}
	f, err := os.Open(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return vals, nil
	case err != nil:
		return nil, fmt.Errorf("env file: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(strings.TrimPrefix(line, "export "), "=")
		if ok {
			vals[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"'`)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("env file %s: %w", path, err)
	}
	return vals, nil
}

// ApplyEnvFile fills the settings a flag left empty from the KEY=value
// lines of path (see ReadEnvFile).
func (c *Config) ApplyEnvFile(path string) error {
	vals, err := ReadEnvFile(path)
	if err != nil {
		return err
	}
	def := DefaultConfig()
	fill := func(dst *string, key, fallback string) {
		if *dst == "" {
			*dst = vals[key]
		}
		if *dst == "" {
			*dst = fallback
		}
	}
	fill(&c.IngestURL, "INGEST_URL", def.IngestURL)
	fill(&c.QueryURL, "QUERY_URL", def.QueryURL)
	fill(&c.QueryAdminURL, "QUERY_ADMIN_URL", "")
	fill(&c.Key, "API_KEY", "")
	fill(&c.MQTTAddr, "MQTT_ADDR", def.MQTTAddr)
	fill(&c.ClickHouseDB, "CLICKHOUSE_DB", def.ClickHouseDB)
	if a := vals["CLICKHOUSE_ADDR"]; a != "" && (len(c.ClickHouseAddr) == 0 || slicesEqual(c.ClickHouseAddr, def.ClickHouseAddr)) {
		c.ClickHouseAddr = strings.Split(a, ",")
	}
	return nil
}

func slicesEqual(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var p config.Problems
	p.Addf(c.Transport != "http" && c.Transport != "mqtt", "-transport %q: http or mqtt", c.Transport)
	if c.Transport == "mqtt" {
		host, _, err := net.SplitHostPort(c.MQTTAddr)
		p.Addf(err != nil || !isLoopbackHost(host), "-mqtt %q: loopback host:port only", c.MQTTAddr)
		p.Addf(c.MQTTConns < 1 || c.MQTTConns > MaxConcurrency, "-mqtt-conns %d: between 1 and %d", c.MQTTConns, MaxConcurrency)
	}
	for _, u := range []struct{ name, url string }{{"-url", c.IngestURL}, {"-query-url", c.QueryURL}, {"-query-admin-url", c.QueryAdminURL}} {
		if u.name != "-url" && !c.Verify || u.name == "-query-admin-url" && u.url == "" {
			continue
		}
		err := checkLoopback(u.url)
		p.Addf(err != nil, "%s %q: %v", u.name, u.url, err)
	}
	for _, u := range c.MoreIngestURLs {
		err := checkLoopback(u)
		p.Addf(err != nil, "ingest URL %q: %v", u, err)
	}
	if c.Provision || c.Verify {
		for _, a := range c.ClickHouseAddr {
			host, _, err := net.SplitHostPort(a)
			p.Addf(err != nil || !isLoopbackHost(host), "-clickhouse %q: loopback host:port only", a)
		}
		p.Addf(c.ClickHouseDB == "", "-db: empty")
	}
	p.Addf(c.Key == "", "no API key: pass -key or an -env file with API_KEY (make up writes .run/env)")
	p.Addf(c.Machines < 1 || c.Machines > MaxMachines, "-machines=%d: must be 1..%d", c.Machines, MaxMachines)
	if c.Concurrency == 0 {
		p.Addf(c.Rate <= 0 || c.Rate > MaxRate, "-rate=%g: must be in (0, %d]", c.Rate, MaxRate)
		p.Addf(c.InFlight < 1 || c.InFlight > MaxInFlight, "-inflight=%d: must be 1..%d", c.InFlight, MaxInFlight)
	}
	p.Addf(c.Concurrency < 0 || c.Concurrency > MaxConcurrency, "-concurrency=%d: must be 0..%d", c.Concurrency, MaxConcurrency)
	p.Addf(c.Duration <= 0 || c.Duration > MaxDuration, "-duration=%s: must be in (0, %s]", c.Duration, MaxDuration)
	p.Addf(c.MaxParts < 1 || c.MaxParts > MaxParts, "-max-parts=%d: must be 1..%d", c.MaxParts, MaxParts)
	p.Addf(c.Batch < 1 || c.Batch > MaxBatch, "-batch=%d: must be 1..%d", c.Batch, MaxBatch)
	p.Addf(c.Scrap < 0 || c.Rework < 0 || c.Scrap+c.Rework > 1, "-scrap=%g -rework=%g: fractions in [0,1] summing to at most 1", c.Scrap, c.Rework)
	p.Addf(c.StopEvery < 0 || c.StopFor < 0, "-stop-every, -stop-for: must not be negative")
	p.Addf(c.DrainTimeout <= 0 || c.DrainTimeout > MaxDuration, "-drain-timeout=%s: must be in (0, %s]", c.DrainTimeout, MaxDuration)
	p.Addf(c.Timeout <= 0 || c.Timeout > time.Minute, "-timeout=%s: must be in (0, 1m]", c.Timeout)
	p.Addf(c.Verify && !c.Provision, "-verify needs -provision (it counts the harness's own locations)")
	p.Addf(c.RetryRate < 0 || c.RetryRate > 1, "-retry-rate=%g: a fraction in [0,1]", c.RetryRate)
	p.Addf(c.RetryRate > 0 && c.Transport != "http", "-retry-rate: http transport only")
	return p.Err()
}

// checkLoopback accepts http URLs whose host is a loopback address or
// localhost: the harness must never load someone else's server.
func checkLoopback(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("scheme %q: http or https only", u.Scheme)
	}
	if !isLoopbackHost(u.Hostname()) {
		return errors.New("loopback targets only (127.0.0.0/8, ::1, localhost)")
	}
	return nil
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
