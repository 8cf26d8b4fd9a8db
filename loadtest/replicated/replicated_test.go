//go:build takt_cluster

package replicated

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/loadtest"
)

// stack is the test's own cluster-mode local stack.
type stack struct {
	t    *testing.T
	root string // the repository
	dir  string // its .run
	env  []string
}

func newStack(t *testing.T) *stack {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	offset := os.Getenv("TAKT_CLUSTER_TEST_PORT_OFFSET")
	if offset == "" {
		offset = "4000"
	}
	dir := filepath.Join(t.TempDir(), "run")
	return &stack{t: t, root: root, dir: dir, env: append(os.Environ(),
		"TAKT_STACK_CLUSTER=1", "TAKT_STACK_RUN="+dir, "TAKT_STACK_PORT_OFFSET="+offset,
		"TAKT_SCALE=ingestor=2,processor=3,queryapi=1")}
}

// run runs stack.sh with one command (up is idempotent: it starts what is
// not running).
func (s *stack) run(ctx context.Context, cmd string) error {
	c := exec.CommandContext(ctx, filepath.Join(s.root, "compose", "local", "stack.sh"), cmd)
	c.Dir, c.Env = s.root, s.env
	out, err := c.CombinedOutput()
	if err != nil {
		return fmt.Errorf("stack.sh %s: %w\n%s", cmd, err, tail(string(out), 40))
	}
	return nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// pid returns the pid of the stack's process name.
func (s *stack) pid(name string) (int, error) {
	b, err := os.ReadFile(filepath.Join(s.dir, "pids", name+".pid"))
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// kill signals the stack's process name and waits (up to 30 s) until it
// is gone.
func (s *stack) kill(name string, sig syscall.Signal) error {
	pid, err := s.pid(name)
	if err != nil {
		return err
	}
	if err := syscall.Kill(pid, sig); err != nil {
		return fmt.Errorf("signal %s (pid %d): %w", name, pid, err)
	}
	for range 300 {
		if syscall.Kill(pid, 0) != nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s (pid %d) still running 30 s after %v", name, pid, sig)
}

// fault is one step of the schedule: at is its offset from the start of
// the load.
type fault struct {
	at   time.Duration
	what string
	do   func(ctx context.Context) error
}

func TestCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 9*time.Minute)
	defer cancel()
	s := newStack(t)
	t.Cleanup(func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer dcancel()
		if err := s.run(dctx, "down"); err != nil {
			t.Errorf("stop the cluster stack: %v", err)
		}
		if t.Failed() {
			for _, n := range []string{"taktctl", "processor", "processor2", "processor3", "clickhouse", "clickhouse2", "zookeeper"} {
				if b, err := os.ReadFile(filepath.Join(s.dir, "logs", n+".log")); err == nil {
					t.Logf("%s.log (end):\n%s", n, tail(string(b), 30))
				}
			}
		}
	})
	start := time.Now()
	if err := s.run(ctx, "up"); err != nil {
		t.Fatal(err)
	}
	t.Logf("cluster stack up in %s", time.Since(start).Round(time.Second))
	env, err := loadtest.ReadEnvFile(filepath.Join(s.dir, "env"))
	if err != nil {
		t.Fatal(err)
	}
	replicas := strings.Split(env["CLICKHOUSE_REPLICAS"], ",")
	ingest := strings.Split(env["INGEST_URLS"], ",")
	if len(replicas) != 2 || len(ingest) != 2 || env["CLICKHOUSE_CLUSTER"] == "" {
		t.Fatalf("env of the cluster stack: replicas %q, ingest URLs %q, cluster %q", replicas, ingest, env["CLICKHOUSE_CLUSTER"])
	}

	t.Run("store", func(t *testing.T) { testStoreOnCluster(ctx, t, replicas, env["CLICKHOUSE_CLUSTER"]) })

	t.Run("faults under load", func(t *testing.T) {
		// The load: a steady rate over both ingestors for the whole schedule.
		cfg := loadtest.DefaultConfig()
		cfg.IngestURL, cfg.MoreIngestURLs = ingest[0], ingest[1:]
		cfg.QueryURL, cfg.Key = env["QUERY_URL"], env["API_KEY"]
		// Counted on the replica that is not killed first, then the other.
		cfg.ClickHouseAddr = []string{replicas[1], replicas[0]}
		cfg.ClickHouseDB = env["CLICKHOUSE_DB"]
		cfg.Machines, cfg.Rate, cfg.Duration = 40, 150, 85*time.Second
		cfg.Verify, cfg.DrainTimeout = true, 3*time.Minute
		cfg.Label = "replicated ClickHouse under faults"

		faults := []fault{
			{10 * time.Second, "SIGKILL the replica the services write to (clickhouse)", func(ctx context.Context) error {
				return s.kill("clickhouse", syscall.SIGKILL)
			}},
			{25 * time.Second, "bring it back", func(ctx context.Context) error { return s.run(ctx, "up") }},
			{40 * time.Second, "SIGKILL a processor (processor2)", func(ctx context.Context) error {
				return s.kill("processor2", syscall.SIGKILL)
			}},
			{50 * time.Second, "bring it back", func(ctx context.Context) error { return s.run(ctx, "up") }},
			{60 * time.Second, "restart ZooKeeper", func(ctx context.Context) error {
				if err := s.kill("zookeeper", syscall.SIGTERM); err != nil {
					return err
				}
				time.Sleep(3 * time.Second)
				return s.run(ctx, "up")
			}},
		}
		loadDone := make(chan struct{})
		var rep *loadtest.Report
		var loadErr error
		go func() {
			defer close(loadDone)
			logger := slog.New(slog.NewTextHandler(io.Discard, nil))
			rep, loadErr = loadtest.Run(ctx, cfg, logger)
		}()
		began := time.Now()
		for _, f := range faults {
			select {
			case <-time.After(time.Until(began.Add(f.at))):
			case <-loadDone:
				t.Fatalf("the load ended before the fault %q (%v)", f.what, loadErr)
			}
			t.Logf("%5.1fs  %s", time.Since(began).Seconds(), f.what)
			if err := f.do(ctx); err != nil {
				t.Fatalf("%s: %v", f.what, err)
			}
		}
		<-loadDone
		if loadErr != nil {
			t.Fatalf("load: %v", loadErr)
		}
		var b strings.Builder
		rep.Summary(&b)
		t.Logf("load harness (%s after the start):\n%s", time.Since(began).Round(time.Second), b.String())
		if rep.Acked < int64(cfg.Rate*cfg.Duration.Seconds()*0.9) {
			t.Errorf("acked %d of %d sent: the ingestors should have answered nearly all", rep.Acked, rep.Sent)
		}
		if rep.Lost != 0 || rep.Duplicated != 0 || rep.UnackedStored != 0 {
			t.Errorf("lost %d, doubled %d, stored without an acknowledgement %d; want 0, 0, 0", rep.Lost, rep.Duplicated, rep.UnackedStored)
		}
		// What the faults did to the processors, for the log.
		for _, n := range []string{"processor", "processor2", "processor3"} {
			b, _ := os.ReadFile(filepath.Join(s.dir, "logs", n+".log"))
			t.Logf("%s: %d failed inserts, %d blocks found written after an error, %d failed resume reads", n,
				strings.Count(string(b), "insert into clickhouse failed"), strings.Count(string(b), "block was written despite the insert error"),
				strings.Count(string(b), "reading the last offset ClickHouse holds failed"))
		}
		// What the faults did to the replicas, for the log: inserts whose
		// ZooKeeper commit had no known outcome, and data parts a replica
		// found ZooKeeper did not know (and detached).
		for _, n := range []string{"clickhouse", "clickhouse2"} {
			b, _ := os.ReadFile(filepath.Join(s.dir, n, "log", "server.log"))
			t.Logf("%s: %d inserts of unknown status, %d unexpected parts", n,
				strings.Count(string(b), "Unknown status"), strings.Count(string(b), "nexpected part"))
		}
		// Every part is stored; the rollups are complete once the parts
		// watermark covers them (a block found written after an insert
		// error has its rollups repaired before the watermark passes it).
		waitWatermark(ctx, t, cfg.QueryURL, cfg.Key, time.Now())
		checkConverged(ctx, t, replicas, env["CLICKHOUSE_DB"], rep.StoredRows)
		if t.Failed() {
			// What the services and servers said about interrupted
			// inserts and their repair.
			const procPattern = "rollup|block was written|insert into clickhouse failed|skipping after|dropping unwritten"
			for _, f := range []struct{ file, pattern string }{
				{"logs/processor.log", procPattern},
				{"logs/processor2.log", procPattern},
				{"logs/processor3.log", procPattern},
				{"clickhouse/log/server.log", "Unknown status|nexpected part|lost forever|Rollback|Unrecoverable|No active replica"},
				{"clickhouse2/log/server.log", "Unknown status|nexpected part|lost forever|Rollback|Unrecoverable|No active replica"},
			} {
				b, _ := os.ReadFile(filepath.Join(s.dir, f.file))
				var hits []string
				re := regexp.MustCompile(f.pattern)
				for _, line := range strings.Split(string(b), "\n") {
					if re.MatchString(line) && len(hits) < 40 {
						hits = append(hits, line[:min(len(line), 600)])
					}
				}
				t.Logf("%s (%d lines matching %q):\n%s", f.file, len(hits), f.pattern, strings.Join(hits, "\n"))
			}
		}
	})
}

// waitWatermark waits (up to 2 min) until the query API's parts watermark
// reaches at: every part acknowledged by then is in what the API reads,
// the figures of the OEE rollups included.
func waitWatermark(ctx context.Context, t *testing.T, queryURL, key string, at time.Time) {
	t.Helper()
	args := url.Values{"limit": {"1"}, "min_watermark": {strconv.FormatInt(at.UnixMilli(), 10)}, "auth": {key}}
	deadline := time.Now().Add(2 * time.Minute)
	var last string
	for time.Now().Before(deadline) && ctx.Err() == nil {
		resp, err := http.Get(queryURL + "/api/1.0/parts/?" + args.Encode())
		if err == nil {
			var env struct {
				Success bool   `json:"success"`
				Error   string `json:"error"`
			}
			derr := json.NewDecoder(resp.Body).Decode(&env)
			resp.Body.Close()
			if derr == nil && resp.StatusCode == http.StatusOK && env.Success {
				return
			}
			last = fmt.Sprintf("%d %s %v", resp.StatusCode, env.Error, derr)
		} else {
			last = err.Error()
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("the parts watermark did not reach %s within 2 min (last answer: %s)", at.UTC().Format(time.RFC3339Nano), last)
}

// figures are what both replicas must agree on, and with what: each is
// one UInt64.
var figures = []struct{ name, sql string }{
	{"parts rows", "SELECT count() FROM parts"},
	{"parts distinct events", "SELECT uniqExact(event_id) FROM parts"},
	{"parts checksum", "SELECT sum(cityHash64(id, toString(event_id), quantity, location_id, recorded_ms, offset)) FROM parts"},
	{"parts quantity", "SELECT sum(quantity) FROM parts"},
	{"parts_hourly produced", "SELECT sum(produced) FROM parts_hourly"},
	{"parts_hourly events", "SELECT sum(events) FROM parts_hourly"},
	{"parts_oee_hourly produced", "SELECT sum(produced) FROM parts_oee_hourly"},
	{"parts_hour_ranges checksum", "SELECT sum(cityHash64(site, hour, partition, mn, mx)) FROM (SELECT site, hour, partition, minMerge(min_id) AS mn, maxMerge(max_id) AS mx FROM parts_hour_ranges GROUP BY site, hour, partition)"},
	{"productionperiods checksum", "SELECT sum(cityHash64(id, version)) FROM productionperiods"},
	{"period_state checksum", "SELECT sum(cityHash64(location, version)) FROM period_state"},
	{"parts_hourly keys off parts", hourlyOffKeys},
	{"parts_oee_hourly keys off parts", oeeOffKeys},
	{"parts_order ids", "SELECT uniqExact(id) FROM parts_order"},
	{"parts ids off parts_order", "SELECT count() FROM parts WHERE id NOT IN (SELECT id FROM parts_order)"},
}

// hourlyOffKeys and oeeOffKeys count the keys (site, location, product,
// hour; and class for parts_oee_hourly) in which a rollup's sums differ
// from those of parts. A shortfall in one key and a surplus in another
// do not cancel out here, as they would in the totals.
const (
	hourlyOffKeys = `SELECT count() FROM (
		SELECT site, location_kind, location_id, product_id, hour, sum(p) AS dp, sum(e) AS de FROM (
			SELECT site, location_kind, location_id, product_id, toDateTime(intDiv(toUInt32(recorded_at), 3600) * 3600) AS hour,
				toInt64(quantity) AS p, toInt64(1) AS e FROM parts
			UNION ALL
			SELECT site, location_kind, location_id, product_id, hour, -toInt64(produced) AS p, -toInt64(events) AS e FROM parts_hourly)
		GROUP BY site, location_kind, location_id, product_id, hour HAVING dp != 0 OR de != 0)`
	oeeOffKeys = `SELECT count() FROM (
		SELECT site, location_kind, location_id, product_id, hour, c,
			sum(p) AS dp, sum(g) AS dg, sum(sc) AS ds, sum(rw) AS dr, sum(iq) AS di FROM (
			SELECT site, location_kind, location_id, product_id, toDateTime(intDiv(toUInt32(recorded_at), 3600) * 3600) AS hour,
				toString(oee_class) AS c, toInt64(quantity) AS p, toInt64(if(quality = 'good', quantity, 0)) AS g,
				toInt64(if(quality = 'scrap', quantity, 0)) AS sc, toInt64(if(quality = 'rework', quantity, 0)) AS rw,
				toInt64(if(ideal_cycle_time >= 0, quantity, 0)) AS iq FROM parts
			UNION ALL
			SELECT site, location_kind, location_id, product_id, hour, toString(oee_class) AS c, -toInt64(produced) AS p,
				-toInt64(good) AS g, -toInt64(scrap) AS sc, -toInt64(rework) AS rw, -toInt64(ideal_qty) AS iq FROM parts_oee_hourly)
		GROUP BY site, location_kind, location_id, product_id, hour, c HAVING dp != 0 OR dg != 0 OR ds != 0 OR dr != 0 OR di != 0)`
)

// checkConverged syncs each replica and compares the figures: the same on
// both, parts without a doubled event, and the rollups equal to parts.
func checkConverged(ctx context.Context, t *testing.T, replicas []string, db string, stored uint64) {
	t.Helper()
	got := make([]map[string]uint64, len(replicas))
	for i, addr := range replicas {
		s, err := chstore.Open(ctx, chstore.Config{Addr: []string{addr}, Database: db, User: "default",
			DialTimeout: 5 * time.Second, ReadTimeout: 2 * time.Minute, MaxOpenConns: 2}, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatalf("replica %s: %v", addr, err)
		}
		defer s.Close()
		for _, table := range []string{"parts", "parts_hourly", "parts_oee_hourly", "parts_hour_ranges", "parts_order", "productionperiods", "period_state"} {
			if err := s.Exec(ctx, "SYSTEM SYNC REPLICA "+table); err != nil {
				t.Fatalf("replica %s: sync %s: %v", addr, table, err)
			}
		}
		got[i] = map[string]uint64{}
		for _, f := range figures {
			n, err := s.QueryUint64(ctx, f.sql)
			if err != nil {
				t.Fatalf("replica %s: %s: %v", addr, f.name, err)
			}
			got[i][f.name] = n
		}
		t.Logf("replica %s: %v", addr, got[i])
		if got[i]["parts rows"] != got[i]["parts distinct events"] {
			t.Errorf("replica %s: %d rows of %d events: doubled", addr, got[i]["parts rows"], got[i]["parts distinct events"])
		}
		if got[i]["parts rows"] != stored {
			t.Errorf("replica %s: %d rows, the harness counted %d", addr, got[i]["parts rows"], stored)
		}
		if got[i]["parts_hourly produced"] != got[i]["parts quantity"] {
			t.Errorf("replica %s: parts_hourly produced %d, parts quantity %d", addr, got[i]["parts_hourly produced"], got[i]["parts quantity"])
		}
		if got[i]["parts_oee_hourly produced"] != got[i]["parts quantity"] {
			t.Errorf("replica %s: parts_oee_hourly produced %d, parts quantity %d", addr, got[i]["parts_oee_hourly produced"], got[i]["parts quantity"])
		}
		if got[i]["parts_hourly events"] != got[i]["parts rows"] {
			t.Errorf("replica %s: parts_hourly events %d, parts rows %d", addr, got[i]["parts_hourly events"], got[i]["parts rows"])
		}
		// The insertion-order index holds every part once, nothing else.
		if got[i]["parts_order ids"] != got[i]["parts rows"] || got[i]["parts ids off parts_order"] != 0 {
			t.Errorf("replica %s: parts_order holds %d ids, parts %d rows, %d of them not in parts_order", addr,
				got[i]["parts_order ids"], got[i]["parts rows"], got[i]["parts ids off parts_order"])
		}
		for _, f := range []string{"parts_hourly keys off parts", "parts_oee_hourly keys off parts"} {
			if got[i][f] != 0 {
				t.Errorf("replica %s: %d %s (by site, location, product, hour and class)", addr, got[i][f], f)
			}
		}
		if got[i]["parts_oee_hourly keys off parts"] != 0 || got[i]["parts_oee_hourly produced"] != got[i]["parts quantity"] {
			logRollupDiff(ctx, t, addr, db)
		}
	}
	for _, f := range figures {
		if got[0][f.name] != got[1][f.name] {
			t.Errorf("%s: replica %s has %d, replica %s %d", f.name, replicas[0], got[0][f.name], replicas[1], got[1][f.name])
		}
	}
}

// logRollupDiff logs the keys (with their hour and class) in which
// parts_oee_hourly differs from parts, and where their parts came from,
// so that a failing run says which blocks lost their rollup rows.
func logRollupDiff(ctx context.Context, t *testing.T, addr, db string) {
	t.Helper()
	_, port, _ := strings.Cut(addr, ":")
	q := `SELECT concat(toString(site), ' ', toString(location_kind), ' ', toString(location_id), ' ', toString(product_id),
			' ', toString(hour), ' ', c, ' parts-rollup ', toString(d), ' parts: partition ', toString(pt), ' offsets ', toString(lo), '-', toString(hi),
			' processed ', toString(toDateTime(intDiv(pmin, 1000))), '-', toString(toDateTime(intDiv(pmax, 1000))))
		FROM (
			SELECT site, location_kind, location_id, product_id, hour, c, sum(q) AS d,
				max(pt) AS pt, min(lo) AS lo, max(hi) AS hi, min(pmin) AS pmin, max(pmax) AS pmax
			FROM (
				SELECT site, location_kind, location_id, product_id, toDateTime(intDiv(toUInt32(recorded_at), 3600) * 3600) AS hour,
					toString(oee_class) AS c, toInt64(sum(quantity)) AS q, max(partition) AS pt, min(offset) AS lo, max(offset) AS hi,
					min(processed_ms) AS pmin, max(processed_ms) AS pmax
				FROM parts GROUP BY site, location_kind, location_id, product_id, hour, c
				UNION ALL
				SELECT site, location_kind, location_id, product_id, hour, toString(oee_class) AS c, -toInt64(sum(produced)) AS q,
					toInt32(-1) AS pt, toInt64(9223372036854775807) AS lo, toInt64(-1) AS hi,
					toInt64(9223372036854775807) AS pmin, toInt64(0) AS pmax
				FROM parts_oee_hourly GROUP BY site, location_kind, location_id, product_id, hour, c)
			GROUP BY site, location_kind, location_id, product_id, hour, c HAVING d != 0)
		ORDER BY pmin LIMIT 50`
	out, err := exec.CommandContext(ctx, "clickhouse-client", "--port", port, "-d", db, "-q", q).CombinedOutput()
	if err != nil {
		t.Logf("replica %s: keys of the difference: %v\n%s", addr, err, out)
		return
	}
	t.Logf("replica %s: keys where parts_oee_hourly differs from parts:\n%s", addr, out)
}
