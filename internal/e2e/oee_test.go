package e2e

// The OEE reference scenarios (internal/oee/testdata/scenarios) played
// through the whole pipeline: parts POSTed to the ingestor, ticks given to
// the processor's clock, reasons assigned through the productionperiods
// record area; the processor's state machines write the periods; the OEE
// endpoint must answer the scenario's hand-computed figures. After every
// event the stored periods must equal what the pure state machine
// returns for the events so far. The kill variant runs the processor as a
// process of its own and SIGKILLs it mid-scenario, once at a failpoint
// between the period rows and the parts block.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/demo"
	"github.com/takt/takt/internal/oee/oeetest"
	"github.com/takt/takt/internal/period"
	"github.com/takt/takt/internal/testenv"
	"github.com/takt/takt/processor"
)

// scenarioNames are the names of every reference scenario.
func scenarioNames(t *testing.T) []string {
	var names []string
	for _, sc := range oeetest.LoadAll(t, oeetest.Dir()) {
		names = append(names, strings.TrimSuffix(filepath.Base(sc.File), ".json"))
	}
	if len(names) < 12 {
		t.Fatalf("%d scenarios found, want at least 12", len(names))
	}
	return names
}

// scenarioSite is where a scenario is played: a site of its own in the
// scenario's zone with one line (the location) carrying the scenario's
// shifts, its products, and its reasons.
type scenarioSite struct {
	sc         *oeetest.Scenario
	site, line uint64
	key        period.Key
	externalID string
	// products maps the scenario's product codes to their ids.
	products map[string]uint64
	// shiftIDs are the ids of the scenario's shifts, in its order.
	shiftIDs []uint64
}

// setupScenarios creates the scenarios' master data and gives the demo
// user their sites.
func setupScenarios(t *testing.T, names []string) ([]*scenarioSite, func(context.Context, *chstore.Store)) {
	var sites []*scenarioSite
	for i, name := range names {
		sc := oeetest.Load(t, name)
		site := uint64(20 + i)
		line := uint64(200 + i)
		sites = append(sites, &scenarioSite{sc: sc, site: site, line: line,
			key: period.Key{Kind: "line", ID: line}, externalID: fmt.Sprintf("scn_%d", line), products: map[string]uint64{}})
	}
	setup := func(ctx context.Context, store *chstore.Store) {
		audit := chstore.Audit{CreatedBy: "test", LastUpdatedBy: "test"}
		must := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		userSites := []uint64{demo.SiteID}
		shiftID, productID := uint64(500), uint64(500)
		for _, s := range sites {
			userSites = append(userSites, s.site)
			must(store.PutSite(ctx, chstore.Site{ID: s.site, Description: s.sc.Name, Timezone: s.sc.Timezone, Audit: audit}))
			must(store.PutLine(ctx, chstore.Line{ID: s.line, Site: s.site, Area: 1, Code: fmt.Sprintf("L%d", s.line),
				ExternalID: s.externalID, StopThreshold: s.sc.StopThreshold, Audit: audit}))
			codes := make([]string, 0, len(s.sc.Products))
			for code := range s.sc.Products {
				codes = append(codes, code)
			}
			sort.Strings(codes)
			for _, code := range codes {
				productID++
				s.products[code] = productID
				must(store.PutProduct(ctx, chstore.Product{ID: productID, Site: s.site, Code: code,
					IdealCycleTime: s.sc.Products[code], Audit: audit}))
			}
			for _, sh := range s.sc.Shifts {
				shiftID++
				s.shiftIDs = append(s.shiftIDs, shiftID)
				must(store.WriteRow(ctx, "shifts", shiftID, chstore.Row{"site": s.site, "line": s.line, "code": sh.Name,
					"description": "", "start_time": sh.Start, "end_time": sh.End, "days": sh.Days}, audit))
			}
			for _, ev := range s.sc.Events {
				if a := ev.Assign; a != nil {
					must(store.PutReason(ctx, chstore.Reason{ID: a.Reason, Site: s.site, Code: fmt.Sprintf("R%d", a.Reason),
						Kind: "downtime", Planned: a.Planned, Audit: audit}))
				}
			}
		}
		must(store.PutUser(ctx, chstore.User{ID: 1, Username: demo.Username, Admin: true, Sites: userSites, Active: true, Audit: audit}))
	}
	return sites, setup
}

// scenarioClock is a settable tick clock; it starts at the Unix epoch,
// which ticks nothing.
type scenarioClock struct{ ns atomic.Int64 }

func (c *scenarioClock) now() time.Time  { return time.Unix(0, c.ns.Load()) }
func (c *scenarioClock) set(t time.Time) { c.ns.Store(t.UnixNano()) }

// player plays scenario events into a pipeline.
type player struct {
	t *testing.T
	p *pipeline
	// setClock moves the processor's tick clock.
	setClock func(time.Time)
	// afterPost runs after each POST of parts (the kill variant kills
	// there).
	afterPost func(event, batch int)
	// batch is the number of parts per POST (default 200).
	batch int
	// catalogReloads reads the processor's count of master-data reloads that succeeded.
	catalogReloads func() float64
}

// play sends s's events one by one; after each it waits until the stored
// periods equal the state machine's for the events so far.
func (pl *player) play(s *scenarioSite) {
	t := pl.t
	for i, ev := range s.sc.Events {
		switch {
		case ev.Series != nil:
			pl.postSeries(s, i, ev.Series)
		case ev.Tick != nil:
			pl.moveClock(*ev.Tick)
		case ev.Assign != nil:
			pl.assign(s, ev.Assign)
		case ev.Ideal != nil:
			pl.writeProduct(s, http.MethodPut, ev.Ideal.Product, url.Values{"ideal_cycle_time": {strconv.FormatFloat(ev.Ideal.Seconds, 'f', -1, 64)}})
		case ev.DeleteProduct != "":
			pl.writeProduct(s, http.MethodDelete, ev.DeleteProduct, url.Values{})
		}
		prefix := *s.sc
		prefix.Events = s.sc.Events[:i+1]
		played, err := oeetest.Replay(&prefix, s.key)
		if err != nil {
			t.Fatal(err)
		}
		want := liveRows(played.Rows)
		var got []string
		deadline := time.Now().Add(30 * time.Second)
		for {
			got = pl.storedPeriods(s)
			if strings.Join(got, "\n") == strings.Join(want, "\n") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s, after event %d: stored periods\n%s\nwant\n%s", s.sc.Name, i, strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// liveRows renders what a FINAL reader of the written versions sees, at
// the table's whole-second precision.
func liveRows(versions []period.Row) []string {
	table := map[uint64]period.Row{}
	for _, r := range versions {
		if old, ok := table[r.ID]; !ok || r.Version > old.Version {
			table[r.ID] = r
		}
	}
	var out []period.Row
	for _, r := range table {
		if !r.Deleted {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start < out[j].Start })
	lines := make([]string, len(out))
	for i, r := range out {
		end := "open"
		if !r.Open {
			end = time.UnixMilli(r.End).UTC().Truncate(time.Second).Format(time.RFC3339)
		}
		lines[i] = fmt.Sprintf("%d %s %s–%s reason %d", r.ID, r.State,
			time.UnixMilli(r.Start).UTC().Truncate(time.Second).Format(time.RFC3339), end, r.Reason)
	}
	return lines
}

// storedPeriods reads the location's periods through the record API.
func (pl *player) storedPeriods(s *scenarioSite) []string {
	pl.t.Helper()
	args := url.Values{"site": {strconv.FormatUint(s.site, 10)}, "location": {strconv.FormatUint(s.line, 10)},
		"order_by": {"start"}, "limit": {"2000"}, "auth": {pl.p.apiKey}}
	resp, err := http.Get(pl.p.query + "/api/1.0/productionperiods/?" + args.Encode())
	if err != nil {
		pl.t.Fatal(err)
	}
	defer resp.Body.Close()
	var env envelope
	dec := json.NewDecoder(resp.Body)
	dec.UseNumber() // ids are above 2^53
	if err := dec.Decode(&env); err != nil || !env.Success {
		pl.t.Fatalf("productionperiods: %v %s", err, env.Error)
	}
	lines := make([]string, 0, len(env.Data))
	for _, r := range env.Data {
		end := "open"
		if r["end"] != nil {
			end = isoSecond(pl.t, r["end"])
		}
		reason := json.Number("0")
		if r["reason"] != nil {
			reason = r["reason"].(json.Number)
		}
		lines = append(lines, fmt.Sprintf("%s %s %s–%s reason %s", r["id"], r["state"], isoSecond(pl.t, r["start"]), end, reason))
	}
	return lines
}

func isoSecond(t *testing.T, v any) string {
	s, _ := v.(string)
	for _, layout := range []string{"2006-01-02 15:04:05", time.RFC3339Nano} {
		if tm, err := time.Parse(layout, s); err == nil {
			return tm.UTC().Format(time.RFC3339)
		}
	}
	t.Fatalf("time %v does not parse", v)
	return ""
}

// postSeries posts a series' parts in batches of 200.
func (pl *player) postSeries(s *scenarioSite, event int, se *oeetest.Series) {
	t := pl.t
	q, quality := se.Quantity, se.Quality
	if q == 0 {
		q = 1
	}
	if quality == "" {
		quality = "good"
	}
	var items []map[string]any
	flush := func(batch int) {
		body, _ := json.Marshal(map[string]any{"parts": items})
		req, _ := http.NewRequest(http.MethodPost, pl.p.ingest+"/api/external/production/process_parts", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("API-KEY", pl.p.apiKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("process_parts: %d %s", resp.StatusCode, b)
		}
		items = items[:0]
		if pl.afterPost != nil {
			pl.afterPost(event, batch)
		}
	}
	batch := 0
	for i := range se.Count {
		rec := se.From.Add(time.Duration(math.Round(float64(i)*se.EveryS*1000)) * time.Millisecond)
		item := map[string]any{"external_id": s.externalID, "quantity": q, "quality": quality,
			"product": se.Product, "recorded_at": rec.UTC().Format(time.RFC3339Nano)}
		if se.CycleTime > 0 {
			item["cycle_time"] = se.CycleTime
		}
		items = append(items, item)
		if len(items) == max(pl.batch, 1) {
			flush(batch)
			batch++
		}
	}
	if len(items) > 0 {
		flush(batch)
	}
}

// writeProduct changes a product of the scenario through the products
// record area and waits until the processor has read master data again
// (its announcement triggers a reload): the parts that follow are
// processed with the change.
func (pl *player) writeProduct(s *scenarioSite, method, code string, form url.Values) {
	id, ok := s.products[code]
	if !ok {
		pl.t.Fatalf("product %q is not the scenario's", code)
	}
	pl.writeRecord("products", id, method, form)
}

// writeRecord writes a record through its record area and waits until the
// processor has read master data again.
func (pl *player) writeRecord(area string, id uint64, method string, form url.Values) {
	t := pl.t
	pl.awaitParts()
	form.Set("auth", pl.p.apiKey)
	req, _ := http.NewRequest(method, fmt.Sprintf("%s/api/1.0/%s/%d/", pl.p.query, area, id), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var env struct {
		Success bool `json:"success"`
	}
	if err := json.Unmarshal(b, &env); err != nil || !env.Success {
		t.Fatalf("%s %s %d: %d %s", method, area, id, resp.StatusCode, b)
	}
	// The counter moves when a reload ends. Of the reloads that end after
	// the write's answer, the first may have begun before the write; the
	// second began after the first ended (reloads take turns), so it read
	// the write.
	before := pl.catalogReloads()
	waitFor(t, 30*time.Second, "the processor to reload master data", func() bool { return pl.catalogReloads() >= before+2 })
}

// moveClock sets the processor's tick clock once every part acknowledged
// so far is stored. A clock moved ahead of parts still on their way makes
// the processor close and finalise the periods they belong to first (a
// day of idle time), so it stores them as too late to place, and the
// figures miss them.
func (pl *player) moveClock(t time.Time) {
	pl.awaitParts()
	pl.setClock(t)
}

// awaitParts returns once every part acknowledged so far is stored: a
// master-data change or a clock tick must not reach the processor before
// the parts sent ahead of it, or they would be resolved or placed with it.
// The periods the player waits for after each event do not show this when
// the last parts leave them as they were (a running period stays open).
func (pl *player) awaitParts() {
	acked := strconv.FormatInt(time.Now().UnixMilli(), 10)
	waitFor(pl.t, 60*time.Second, "the parts acknowledged so far to be stored", func() bool {
		a := pl.p.readWM(pl.t, "/api/1.0/parts/", url.Values{"limit": {"1"}, "min_watermark": {acked}})
		return a.status == http.StatusOK && a.env.Success
	})
}

// catalogLoads counts a processor's master-data reloads that succeeded:
// those that ended less those that failed (a failed one read nothing). The
// ended ones are read first, so a reload that fails between the two reads
// lowers the count, never raises it.
func catalogLoads(addr string) float64 {
	ended := metricOf(addr, "takt_processor_catalog_refreshes_total")
	return ended - metricOf(addr, "takt_processor_catalog_refresh_errors_total")
}

// metricOf reads one counter of a processor's /metrics (0 when it does
// not answer).
func metricOf(addr, name string) float64 {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// assign gives the down period starting at a.Start its reason through
// the productionperiods record area.
func (pl *player) assign(s *scenarioSite, a *oeetest.Assignment) {
	t := pl.t
	id := period.PeriodID(s.key, a.Start.UnixMilli())
	form := url.Values{"auth": {pl.p.apiKey}, "reason": {strconv.FormatUint(a.Reason, 10)}}
	u := fmt.Sprintf("%s/api/1.0/productionperiods/%d/", pl.p.query, id)
	// The period must be stored before it can be given a reason.
	waitFor(t, 30*time.Second, "the period to assign", func() bool {
		for _, line := range pl.storedPeriods(s) {
			if strings.HasPrefix(line, strconv.FormatUint(id, 10)+" ") {
				return true
			}
		}
		return false
	})
	req, _ := http.NewRequest(http.MethodPut, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var env struct {
		Success bool           `json:"success"`
		Data    map[string]any `json:"data"`
	}
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &env); err != nil || !env.Success || env.Data["reason"] != float64(a.Reason) {
		t.Fatalf("assign reason %d to period %d: %d %s", a.Reason, id, resp.StatusCode, b)
	}
}

// checkOEE asks the OEE endpoint for the scenario's window and compares
// the figures with the hand-computed ones. A flush writes the periods
// before the parts, so it first waits until every part is in the figures
// (counted, or reported apart).
func checkOEE(t *testing.T, p *pipeline, s *scenarioSite) {
	t.Helper()
	args := url.Values{"site": {strconv.FormatUint(s.site, 10)}, "externalid": {s.externalID},
		"start": {s.sc.Window.Start.UTC().Format(time.RFC3339)}, "end": {s.sc.Window.End.UTC().Format(time.RFC3339)},
		"bucket": {"none"}, "auth": {p.apiKey}}
	if s.sc.Product != "" {
		args.Set("product", s.sc.Product)
	}
	if s.sc.Ideal != "" {
		args.Set("ideal", s.sc.Ideal)
	}
	var row map[string]any
	waitFor(t, 30*time.Second, "every part in the OEE figures", func() bool {
		resp, err := http.Get(p.query + "/api/1.0/oee/?" + args.Encode())
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var env envelope
		if err := json.NewDecoder(resp.Body).Decode(&env); err != nil || !env.Success || len(env.Data) != 1 {
			t.Fatalf("oee: %v %s %v", err, env.Error, env.Data)
		}
		row = env.Data[0]
		// Every part is in one of the three quantities.
		for _, k := range []string{"produced_quantity", "unscheduled_quantity", "late_quantity"} {
			if row[k] != s.sc.Expected[k] {
				return false
			}
		}
		return true
	})
	want := map[string]float64{"unrecorded_time": 0, "coverage": 1}
	null := s.sc.ExpectedNull
	if s.sc.Product != "" {
		want = map[string]float64{}
		null = append(null, "unrecorded_time", "coverage")
	}
	for k, v := range s.sc.Expected {
		want[k] = v
	}
	for k, w := range want {
		g, ok := oeetest.Number(row[k])
		if !ok || math.Abs(g-w) > 1e-9*math.Max(1, math.Abs(w)) {
			t.Errorf("%s: %s = %v, want %v", s.sc.Name, k, row[k], w)
		}
	}
	for _, k := range null {
		if v, ok := row[k]; !ok || v != nil {
			t.Errorf("%s: %s = %v, want null", s.sc.Name, k, v)
		}
	}
}

// TestOEEScenariosThroughPipeline plays every reference scenario through
// HTTP → Kafka → processor → ClickHouse and checks the OEE endpoint.
func TestOEEScenariosThroughPipeline(t *testing.T) {
	sites, setup := setupScenarios(t, scenarioNames(t))
	clock := &scenarioClock{}
	p := startWith(t, options{setup: setup, clock: clock.now, noRateLimit: true, catalogRefresh: 300 * time.Millisecond})
	pl := &player{t: t, p: p, setClock: clock.set, batch: 200,
		catalogReloads: func() float64 { return catalogLoads(p.procCfg.Addr) }}
	for _, s := range sites {
		t.Run(s.sc.Name, func(t *testing.T) {
			pl.t = t
			clock.set(time.Unix(0, 0))
			pl.play(s)
			checkOEE(t, p, s)
		})
	}
}

// TestOEEScenarioWithProcessorKills plays scenarios with the processor in
// a process of its own, killed with SIGKILL mid-scenario: once by the
// failpoint between a batch's period rows and its parts, then after
// every few POSTs. The figures must be the same.
func TestOEEScenarioWithProcessorKills(t *testing.T) {
	names := []string{"01_downtime_in_shift", "04_planned_stop", "06_late_part_in_down", "07_planned_stop_late_parts",
		"09_run_start_and_counted_parts"}
	sites, setup := setupScenarios(t, names)
	p := startWith(t, options{setup: setup, noProcessor: true, noRateLimit: true})
	bin := buildProcessor(t)
	clockFile := filepath.Join(t.TempDir(), "clock")
	setClock := func(tm time.Time) {
		if err := os.WriteFile(clockFile+".tmp", []byte(tm.UTC().Format(time.RFC3339Nano)), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(clockFile+".tmp", clockFile); err != nil {
			t.Fatal(err)
		}
	}
	pr := &procRunner{t: t, bin: bin, cfg: p.procCfg, clockFile: clockFile}
	pr.start(map[string]string{"TAKT_FAILPOINT_CRASH_AFTER_PERIODS": "1"})
	kills := 0
	pl := &player{t: t, p: p, setClock: setClock, batch: 60, catalogReloads: func() float64 {
		pr.mu.Lock()
		addr := pr.addr
		pr.mu.Unlock()
		return catalogLoads(addr)
	}, afterPost: func(event, batch int) {
		if batch%2 == 1 {
			// The first processor dies at its failpoint on its first
			// flush; kill the others mid-work, once they have read
			// some parts.
			waitFor(t, 30*time.Second, "the failpoint crash", func() bool { return pr.crashes() > 0 })
			waitFor(t, 30*time.Second, "the processor to consume", func() bool { return pr.consumed() > 0 })
			pr.kill()
			kills++
			pr.start(nil)
		}
	}}
	for _, s := range sites {
		t.Run(s.sc.Name, func(t *testing.T) {
			pl.t = t
			setClock(time.Unix(0, 0))
			pl.play(s)
			checkOEE(t, p, s)
		})
	}
	t.Logf("processor killed %d times, crashed at the failpoint %d times", kills, pr.crashes())
	if pr.crashes() == 0 || kills == 0 {
		t.Errorf("failpoint crashes %d, kills %d: want both", pr.crashes(), kills)
	}
}

// procRunner runs the processor binary against the pipeline's topic and
// database and restarts it.
type procRunner struct {
	t            *testing.T
	bin          string
	cfg          processor.Config
	clockFile    string
	cmd          *exec.Cmd
	addr         string
	done         chan struct{}
	failpointHit int
	mu           sync.Mutex
}

// start runs the processor; when it dies on its own (the crash
// failpoint), it is started again without the failpoint.
func (r *procRunner) start(extra map[string]string) {
	r.t.Helper()
	vars := map[string]string{
		"TAKT_CLICKHOUSE_ADDR":          testenv.Join(r.cfg.ClickHouse.Addr),
		"TAKT_CLICKHOUSE_DB":            r.cfg.ClickHouse.Database,
		"TAKT_KAFKA_BROKERS":            testenv.Join(r.cfg.Brokers),
		"TAKT_PARTS_TOPIC":              r.cfg.Topic,
		"TAKT_DLQ_TOPIC":                r.cfg.DLQTopic,
		"TAKT_CONSUMER_GROUP":           r.cfg.Group,
		"TAKT_CONSUMER_INSTANCE_ID":     "oee-kill-test",
		"TAKT_CONSUMER_SESSION_TIMEOUT": "6s",
		"TAKT_BATCH_ROWS":               "150",
		"TAKT_BATCH_INTERVAL":           "50ms",
		"TAKT_PROCESSOR_ADDR":           freeAddr(r.t),
		"TAKT_FAILPOINT_CLOCK_FILE":     r.clockFile,
	}
	for k, v := range extra {
		vars[k] = v
	}
	environ := testenv.Environ(vars)
	cmd := exec.Command(r.bin)
	cmd.Env = environ
	logf, err := os.CreateTemp(r.t.TempDir(), "processor-*.log")
	if err != nil {
		r.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	done := make(chan struct{})
	r.mu.Lock()
	r.cmd, r.done, r.addr = cmd, done, vars["TAKT_PROCESSOR_ADDR"]
	r.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		logf.Close()
		r.mu.Lock()
		expected := r.cmd != cmd
		r.mu.Unlock()
		close(done)
		if !expected {
			// It killed itself at the failpoint: start it again.
			b, _ := os.ReadFile(logf.Name())
			if !strings.Contains(string(b), "failpoint") {
				r.t.Errorf("processor exited unexpectedly:\n%s", b)
				return
			}
			r.mu.Lock()
			r.failpointHit++
			r.mu.Unlock()
			r.start(nil)
		}
	}()
	r.t.Cleanup(func() { r.stop(cmd, done) })
}

func (r *procRunner) crashes() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failpointHit
}

// consumed returns the running processor's count of consumed records (0
// when it does not answer).
func (r *procRunner) consumed() float64 {
	r.mu.Lock()
	addr := r.addr
	r.mu.Unlock()
	return metricOf(addr, "takt_processor_parts_consumed_total")
}

// kill SIGKILLs the running processor and waits for it to end.
func (r *procRunner) kill() {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.cmd = nil
	r.mu.Unlock()
	r.stop(cmd, done)
}

func (r *procRunner) stop(cmd *exec.Cmd, done chan struct{}) {
	if cmd == nil {
		return
	}
	r.mu.Lock()
	if r.cmd == cmd {
		r.cmd = nil
	}
	r.mu.Unlock()
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// buildProcessor builds the processor with its failpoints, once per run.
func buildProcessor(t *testing.T) string {
	t.Helper()
	return testenv.Binary(t, "github.com/takt/takt/processor/cmd/processor", "takt_failpoints")
}

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.RemoveBinaries()
	os.Exit(code)
}

// TestStoppedLineShowsDown: a line's stop threshold is set through the
// record API; after its last part the line shows an open down period on
// the processor's wall clock alone, without another part, and the next
// part closes it.
func TestStoppedLineShowsDown(t *testing.T) {
	// No periodic refresh within the test: the processor learns of the
	// threshold from the record API's change announcement.
	p := startWith(t, options{catalogRefresh: time.Hour})
	put := url.Values{"auth": {p.apiKey}, "stop_threshold": {"2"}}
	req, _ := http.NewRequest(http.MethodPut, fmt.Sprintf("%s/api/1.0/lines/%d/", p.query, demo.LineID), strings.NewReader(put.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `"stop_threshold":2`) {
		t.Fatalf("set stop_threshold: %d %s", resp.StatusCode, b)
	}
	// The processor reloads master data on the announcement and applies a
	// changed threshold to the running machines on its next tick.
	periods := func() []map[string]any {
		args := url.Values{"auth": {p.apiKey}, "externalid": {demo.LineExternalID}, "order_by": {"start"}}
		resp, err := http.Get(p.query + "/api/1.0/productionperiods/?" + args.Encode())
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var env envelope
		if err := json.NewDecoder(resp.Body).Decode(&env); err != nil || !env.Success {
			t.Fatalf("productionperiods: %v %s", err, env.Error)
		}
		return env.Data
	}
	// A cycle time of 0.5 s: the part's run is half a second long (the
	// product's 45 s ideal cycle would cover the seconds between the two
	// parts, and the line would never have been down).
	part := `{"part":{"external_id":"` + demo.LineExternalID + `","quantity":1,"quality":"good","product":"` + demo.ProductCode +
		`","cycle_time":0.5}}`
	if code, body := p.post(t, part); code != http.StatusOK {
		t.Fatalf("post: %d %s", code, body)
	}
	// has reports whether a period of the state is open (or closed).
	// Periods are stored to the second, so the half-second run and the
	// stop after it start in the same second, in either order.
	has := func(ps []map[string]any, state string, open bool) bool {
		for _, p := range ps {
			if p["state"] == state && (p["end"] == nil) == open {
				return true
			}
		}
		return false
	}
	// The line is running until the tick finds the threshold passed after
	// the part; from then on it is down.
	waitFor(t, 30*time.Second, "an open down period after the threshold", func() bool {
		return has(periods(), "down", true)
	})
	if code, body := p.post(t, part); code != http.StatusOK {
		t.Fatalf("post: %d %s", code, body)
	}
	waitFor(t, 30*time.Second, "the next part to end the downtime", func() bool {
		ps := periods()
		return has(ps, "down", false) && has(ps, "running", true) && !has(ps, "down", true)
	})
}
