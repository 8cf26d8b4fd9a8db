package e2e

// The dashboard (queryapi's GET /dashboard/) in a real browser: headless
// Chromium driven by chromedp, against the whole pipeline. A day of
// production (lines, machines, stops with reasons) goes in through the
// ingestor and processor, then the test checks that the page loads
// without a console error, that every figure it shows equals the OEE
// endpoint's for the window the page used, that values users wrote are
// shown as text and never run, and that a new part changes "parts in the
// last hour" within 5 s. With -dashboard.shots=DIR it leaves screenshots
// of the overview and a line view there (make screenshot: docs/).

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/demo"
)

var dashboardShots = flag.String("dashboard.shots", "", "directory the dashboard test writes its screenshots to (default: a temporary one)")

// Master data of the dashboard's sites. Site 1 is the demo plant; site 2
// holds values a user could write to attack the page.
const (
	evilText = `<img src=x onerror="window.pwned=1">`
	evilLine = 40
)

// location is a simulated machine or line: what it makes and how its day
// went.
type location struct {
	externalID string
	product    string
	ideal      float64 // s per part
	perEvent   int     // parts per message
	slowdown   float64 // mean cycle over ideal
	stops      []stop
	// stoppedFor: the location stopped this long before now (and is down
	// since, with reason stopReason).
	stoppedFor time.Duration
	stopReason uint64
	live       bool // keeps reporting while the test runs
}

// stop is a gap in a location's parts: at this share of the day so far,
// this long, given this reason (0: none).
type stop struct {
	at      float64
	minutes float64
	reason  uint64
}

// Downtime reasons of site 1.
const (
	reasonJam      = 10
	reasonChange   = 11
	reasonMaint    = 12
	reasonMaterial = 13
	reasonFault    = 14
)

var dashboardLocations = []location{
	{externalID: "line_1", product: "PROD001", ideal: 45, perEvent: 1, slowdown: 1.08, live: true,
		stops: []stop{{0.22, 25, reasonMaterial}, {0.55, 12, reasonJam}, {0.8, 40, reasonChange}}},
	{externalID: "robot_2", product: "PROD001", ideal: 45, perEvent: 1, slowdown: 1.12, live: true,
		stops: []stop{{0.3, 18, reasonFault}, {0.7, 9, 0}}},
	{externalID: "press_1", product: "CAP12", ideal: 12, perEvent: 5, slowdown: 1.1, live: true,
		stops: []stop{{0.12, 30, reasonMaint}, {0.48, 14, reasonJam}, {0.63, 8, reasonJam}, {0.9, 6, 0}}},
	{externalID: "press_2", product: "CAP12", ideal: 12, perEvent: 5, slowdown: 1.18,
		stops: []stop{{0.35, 22, reasonMaterial}, {0.66, 10, reasonJam}}, stoppedFor: 18 * time.Minute, stopReason: reasonJam},
	{externalID: "press_3", product: "CAP12", ideal: 12, perEvent: 5, slowdown: 1.05, live: true,
		stops: []stop{{0.4, 45, reasonFault}, {0.75, 7, reasonJam}}},
	{externalID: "pack_1", product: "BOX20", ideal: 20, perEvent: 2, slowdown: 1.1,
		stops: []stop{{0.25, 15, reasonMaterial}, {0.6, 20, reasonChange}}, stoppedFor: 35 * time.Minute, stopReason: reasonChange},
	{externalID: "paint_1", product: "PROD001", ideal: 45, perEvent: 1, slowdown: 1.55, live: true,
		stops: []stop{{0.5, 35, reasonMaint}}},
	// Silent for the last 70 minutes: the test's last part is then the
	// only one of its last hour, which no older part leaves while the test
	// watches the figure move.
	{externalID: "evil_1", product: "PROD001", ideal: 45, perEvent: 1, slowdown: 1.2, stoppedFor: 70 * time.Minute},
}

// dashboardZone is the plant's time zone in the test: the one whose
// clock reads noon at the start of the run. The dashboard shows the
// plant's day; near a zone's midnight that day would hold minutes of the
// history, too little for the figures the test looks for.
var dashboardZone = noonZone(time.Now())

// noonZone names the whole-hour zone (Etc/GMT±n, UTC−11 … UTC+12) whose
// clock is in the hour from noon at now.
func noonZone(now time.Time) string {
	off := (12 - now.UTC().Hour() + 24) % 24
	if off > 12 {
		off -= 24
	}
	if off == 0 {
		return "Etc/GMT"
	}
	// The Etc zones' signs are POSIX's: Etc/GMT-3 is three hours ahead.
	return fmt.Sprintf("Etc/GMT%+d", -off)
}

func dashboardSetup(ctx context.Context, store *chstore.Store) {
	audit := chstore.Audit{CreatedBy: "test", LastUpdatedBy: "test"}
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	must(store.WriteRow(ctx, "sites", demo.SiteID, chstore.Row{"description": "Demo Plant", "timezone": dashboardZone,
		"test_site": true}, audit))
	must(store.PutSite(ctx, chstore.Site{ID: 2, Description: "Test plant " + evilText, Timezone: "America/Chicago", Audit: audit}))
	must(store.PutUser(ctx, chstore.User{ID: 1, Username: demo.Username, Admin: true, Sites: []uint64{demo.SiteID, 2}, Active: true, Audit: audit}))
	must(store.PutArea(ctx, chstore.Area{ID: 2, Site: 2, Code: "TEST", Audit: audit}))
	for _, p := range []chstore.Product{
		{ID: 20, Site: 1, Code: "CAP12", Description: "Cap", IdealCycleTime: 12},
		{ID: 21, Site: 1, Code: "BOX20", Description: "Box", IdealCycleTime: 20},
		{ID: 22, Site: 2, Code: "PROD001", Description: evilText, IdealCycleTime: 45},
	} {
		p.Audit = audit
		must(store.PutProduct(ctx, p))
	}
	for _, r := range []chstore.Reason{
		{ID: reasonJam, Code: "JAM", Description: "Material jam"},
		{ID: reasonChange, Code: "CHG", Description: "Product changeover", Planned: true},
		{ID: reasonMaint, Code: "PM", Description: "Planned maintenance", Planned: true},
		{ID: reasonMaterial, Code: "NOMAT", Description: "Waiting for material"},
		{ID: reasonFault, Code: "ELEC", Description: "Electrical fault"},
	} {
		r.Site, r.Kind, r.Audit = demo.SiteID, "downtime", audit
		must(store.PutReason(ctx, r))
	}
	must(store.PutReason(ctx, chstore.Reason{ID: 15, Site: 2, Code: "X", Description: evilText, Kind: "downtime", Audit: audit}))
	for _, l := range []chstore.Line{
		{ID: 1, Site: 1, Area: 1, Code: "ASM1", Description: "Assembly 1", ExternalID: "line_1"},
		{ID: 2, Site: 1, Area: 1, Code: "PRESS", Description: "Press shop"},
		{ID: 3, Site: 1, Area: 1, Code: "PACK", Description: "Packaging", ExternalID: "pack_1"},
		{ID: 4, Site: 1, Area: 1, Code: "PAINT", Description: "Paint shop", ExternalID: "paint_1"},
		{ID: evilLine, Site: 2, Area: 2, Code: `"><script>window.pwned=1</script>`, Description: evilText, ExternalID: "evil_1"},
	} {
		l.Audit = audit
		must(store.PutLine(ctx, l))
	}
	// The presses report five parts a message, about once a minute: their
	// stop threshold is three minutes (the default, five cycles of one
	// part, would call every gap a stop).
	for _, m := range []chstore.Machine{
		{ID: 11, Site: 1, Line: 1, Code: "R2", Description: "Robot <R2>", ExternalID: "robot_2"},
		{ID: 21, Site: 1, Line: 2, Code: "P1", Description: "Press 1", ExternalID: "press_1", StopThreshold: 180},
		{ID: 22, Site: 1, Line: 2, Code: "P2", Description: "Press 2", ExternalID: "press_2", StopThreshold: 180},
		{ID: 23, Site: 1, Line: 2, Code: "P3", Description: "Press 3", ExternalID: "press_3", StopThreshold: 180},
	} {
		m.Audit = audit
		must(store.PutMachine(ctx, m))
	}
	// The demo seed's machine on line 1 is not in this plant.
	gone := audit
	gone.Deleted = true
	must(store.PutMachine(ctx, chstore.Machine{ID: demo.MachineID, Site: demo.SiteID, Line: demo.LineID, Code: demo.MachineCode,
		ExternalID: demo.MachineExternalID, Audit: gone}))
}

// history makes the parts of each location from start to now: cycles
// with jitter, the stops, 2 % scrap, and silence for a location that has
// stopped.
func history(start, now time.Time) []map[string]any {
	rng := rand.New(rand.NewPCG(1, 2))
	span := now.Sub(start)
	var items []map[string]any
	for _, l := range dashboardLocations {
		end := now.Add(-l.stoppedFor)
		t := start
		next := 0
		for {
			step := time.Duration(l.ideal * float64(l.perEvent) * (l.slowdown + rng.Float64()*0.1 - 0.05) * float64(time.Second))
			t = t.Add(step)
			if next < len(l.stops) && t.After(start.Add(time.Duration(l.stops[next].at*float64(span)))) {
				t = t.Add(time.Duration(l.stops[next].minutes * float64(time.Minute)))
				next++
			}
			if !t.Before(end) {
				break
			}
			item := map[string]any{"external_id": l.externalID, "quantity": l.perEvent, "product": l.product,
				"recorded_at": t.UTC().Format(time.RFC3339Nano)}
			if rng.Float64() < 0.02 {
				item["quality"], item["reason"] = "scrap", demo.ReasonCode
			}
			items = append(items, item)
		}
	}
	slices.SortStableFunc(items, func(a, b map[string]any) int {
		return strings.Compare(a["recorded_at"].(string), b["recorded_at"].(string))
	})
	return items
}

// postBatch sends items through the batch endpoint; every one must be
// accepted.
func (p *pipeline) postBatch(items []map[string]any) error {
	body, _ := json.Marshal(map[string]any{"parts": items})
	req, _ := http.NewRequest(http.MethodPost, p.ingest+"/api/external/production/process_parts", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("API-KEY", p.apiKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Contains(b, []byte(`"rejected":0,"failed":0`)) {
		return fmt.Errorf("process_parts: %d %.300s", resp.StatusCode, b)
	}
	return nil
}

// api answers GET /api/1.0/<path> with the demo key.
func (p *pipeline) api(t *testing.T, path string, args url.Values) []map[string]any {
	t.Helper()
	return p.apiDecode(t, path, args, false)
}

// apiDecode is api; with numbers, numbers stay json.Number (period ids
// are above 2^53).
func (p *pipeline) apiDecode(t *testing.T, path string, args url.Values, numbers bool) []map[string]any {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, p.query+"/api/1.0/"+path+"?"+args.Encode(), nil)
	req.Header.Set("L2LAUTH", p.apiKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var env envelope
	dec := json.NewDecoder(resp.Body)
	if numbers {
		dec.UseNumber()
	}
	if err := dec.Decode(&env); err != nil || !env.Success {
		t.Fatalf("GET %s?%s: %d %v %s", path, args.Encode(), resp.StatusCode, err, env.Error)
	}
	return env.Data
}

// madeIn is every part the OEE endpoint saw for one scope and window
// (summed over its rows: with group_by=location, every location's).
func (p *pipeline) madeIn(t *testing.T, args url.Values) int {
	rows := p.api(t, "oee/", args)
	if len(rows) == 0 {
		t.Fatalf("oee %s: no rows", args.Encode())
	}
	n := 0.0
	for _, r := range rows {
		n += r["produced_quantity"].(float64) + r["unscheduled_quantity"].(float64) + r["late_quantity"].(float64)
	}
	return int(n)
}

// assignReasons gives the down periods of each location the reason of
// the stop they overlap (a planned reason makes them planned down).
func (p *pipeline) assignReasons(t *testing.T, start, now time.Time) {
	span := now.Sub(start)
	for _, l := range dashboardLocations {
		periods := p.apiDecode(t, "productionperiods/", url.Values{"externalid": {l.externalID}, "state": {"down"},
			"fields": {"id,start,end"}, "limit": {"2000"}}, true)
		for _, pr := range periods {
			ps, _ := time.Parse("2006-01-02 15:04:05.000", pr["start"].(string))
			var reason uint64
			if pr["end"] == nil {
				reason = l.stopReason
			}
			for _, s := range l.stops {
				at := start.Add(time.Duration(s.at * float64(span)))
				if ps.After(at.Add(-10*time.Minute)) && ps.Before(at.Add(10*time.Minute)) {
					reason = s.reason
				}
			}
			if reason == 0 {
				continue
			}
			form := url.Values{"reason": {strconv.FormatUint(reason, 10)}}
			id := pr["id"].(json.Number).String()
			req, _ := http.NewRequest(http.MethodPut, p.query+"/api/1.0/productionperiods/"+id+"/", strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("L2LAUTH", p.apiKey)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !bytes.Contains(b, []byte(`"success":true`)) {
				t.Fatalf("assign reason %d to period %s of %s: %d %s", reason, id, l.externalID, resp.StatusCode, b)
			}
		}
	}
}

// liveClock is the processor's tick clock: stopped at the epoch (which
// ticks nothing) while history goes in, the wall clock after.
type liveClock struct{ live atomic.Bool }

func (c *liveClock) now() time.Time {
	if c.live.Load() {
		return time.Now()
	}
	return time.Unix(0, 0)
}

// pctText and countText format as the page does (timefmt.js).
func pctText(v any) string {
	f, ok := v.(float64)
	if !ok {
		return "–"
	}
	return strconv.FormatFloat(math.Round(f*1000)/10, 'f', 1, 64) + " %"
}

func countText(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// browser starts headless Chromium (Debian's chromium) with a fresh
// profile and collects what its console says.
type browser struct {
	ctx     context.Context
	mu      sync.Mutex
	console []string
}

func startBrowser(t *testing.T) *browser {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium is not installed (compose/local/stack.sh install installs Debian's package): %v", err)
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("mute-audio", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1920, 1080),
	)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	b := &browser{ctx: ctx}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1920, 1080)); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleException || m.Type == chromedp.ConsoleWarning {
				b.mu.Lock()
				b.console = append(b.console, fmt.Sprintf("%s: %s (%s:%d)", m.Type, m.Text, m.URL, m.Line))
				b.mu.Unlock()
			}
		}
	}()
	return b
}

// problems returns what the console reported since the last call.
func (b *browser) problems() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.console
	b.console = nil
	return p
}

func (b *browser) do(t *testing.T, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatal(err)
	}
}

func eval[T any](t *testing.T, b *browser, js string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("evaluate %.80s: %v", js, err)
	}
	return v
}

// refreshed waits until the page has finished a refresh that started
// after this call, and returns its time stamp.
func (b *browser) refreshed(t *testing.T, view string) int64 {
	t.Helper()
	after := time.Now().UnixMilli()
	var got int64
	waitFor(t, 20*time.Second, "a refresh of the "+view+" view", func() bool {
		got = eval[int64](t, b, `(() => { const m = document.getElementById('main');
			return m.dataset.view === '`+view+`' ? Number(m.dataset.updated || 0) : 0; })()`)
		return got > after
	})
	return got
}

// shown is what a card, machine row or line view shows: its windows and
// figures.
type shown struct {
	Line      int               `json:"line"`
	Location  string            `json:"location"`
	DayStart  string            `json:"dayStart"`
	DayEnd    string            `json:"dayEnd"`
	HourStart string            `json:"hourStart"`
	HourEnd   string            `json:"hourEnd"`
	Figures   map[string]string `json:"figures"`
	Machines  []shown           `json:"machines"`
}

const readCards = `[...document.querySelectorAll('article.card')].map((c) => {
	const figs = (el, sel) => Object.fromEntries([...el.querySelectorAll(sel)].map((e) => [e.dataset.figure, e.textContent]));
	return {line: Number(c.dataset.line), dayStart: c.dataset.dayStart, dayEnd: c.dataset.dayEnd,
		hourStart: c.dataset.hourStart, hourEnd: c.dataset.hourEnd,
		figures: figs(c, ':scope > .kpis [data-figure], :scope > .parts [data-figure]'),
		machines: [...c.querySelectorAll('tr[data-location]')].map((r) => ({location: r.dataset.location, figures: figs(r, '[data-figure]')}))};
})`

func TestDashboardInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs the local stack and Chromium")
	}
	clock := &liveClock{}
	p := startWith(t, options{setup: dashboardSetup, clock: clock.now, noRateLimit: true})
	site1, err := time.LoadLocation(dashboardZone)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	start := time.Date(now.In(site1).Year(), now.In(site1).Month(), now.In(site1).Day(), 0, 0, 0, 0, site1)
	if now.Sub(start) < 6*time.Hour {
		t.Fatalf("the plant's clock reads %s, want about noon (zone %s)", now.In(site1).Format(time.TimeOnly), dashboardZone)
	}

	// A day of history, in time order, through the ingestor.
	items := history(start, now)
	for i := 0; i < len(items); i += 1000 {
		if err := p.postBatch(items[i:min(i+1000, len(items))]); err != nil {
			t.Fatal(err)
		}
	}
	total := 0
	for _, it := range items {
		total += it["quantity"].(int)
	}
	waitFor(t, 60*time.Second, "every part in the OEE figures", func() bool {
		n := 0
		for _, site := range []string{"1", "2"} {
			n += p.madeIn(t, url.Values{"site": {site}, "group_by": {"location"},
				"start": {start.Add(-time.Hour).UTC().Format(time.RFC3339)}, "end": {time.Now().UTC().Format(time.RFC3339)}})
		}
		return n == total
	})
	// The live locations keep reporting from now on.
	feedCtx, stopFeed := context.WithCancel(context.Background())
	var feedWG sync.WaitGroup
	var paused atomic.Bool
	feedWG.Add(1)
	go func() {
		defer feedWG.Done()
		tick := time.NewTicker(3 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-feedCtx.Done():
				return
			case <-tick.C:
			}
			if paused.Load() {
				continue
			}
			var batch []map[string]any
			for _, l := range dashboardLocations {
				if l.live {
					batch = append(batch, map[string]any{"external_id": l.externalID, "quantity": 1, "product": l.product})
				}
			}
			if err := p.postBatch(batch); err != nil {
				t.Errorf("live parts: %v", err)
			}
		}
	}()
	t.Cleanup(func() {
		stopFeed()
		feedWG.Wait()
	})
	clock.live.Store(true)
	// The stopped locations' open down periods exist once the processor's
	// clock has passed their stop threshold.
	waitFor(t, 30*time.Second, "the stopped locations to be down", func() bool {
		return len(p.api(t, "productionperiods/", url.Values{"end__isnull": {"True"}, "state": {"down"}, "fields": {"id"}})) >= 2
	})
	p.assignReasons(t, start, now)

	b := startBrowser(t)
	shots := *dashboardShots
	if shots == "" {
		shots = t.TempDir()
	}

	// The key is given once as ?auth= and leaves the address bar.
	b.do(t, chromedp.Navigate(p.query+"/dashboard/?auth="+url.QueryEscape(p.apiKey)+"#site=1"))
	b.refreshed(t, "overview")
	if loc := eval[string](t, b, "window.location.href"); strings.Contains(loc, "auth=") || strings.Contains(loc, p.apiKey) {
		t.Errorf("the key stays in the address: %s", loc)
	}
	// The page follows the live change feed (with the key in a header:
	// the CSP and the stream's authentication allow it).
	waitFor(t, 10*time.Second, "the page to follow the change feed", func() bool {
		return eval[string](t, b, `document.getElementById('main').dataset.feed || ''`) == "live"
	})

	// Figures: each card's and machine row's equal the OEE endpoint's for
	// the windows the page used. The feed pauses so that no part is on
	// its way while the page and the endpoint read.
	paused.Store(true)
	time.Sleep(2 * time.Second)
	b.refreshed(t, "overview")
	cards := eval[[]shown](t, b, readCards)
	if len(cards) != 4 {
		t.Fatalf("%d line cards, want 4: %+v", len(cards), cards)
	}
	machines := 0
	for _, c := range cards {
		day := url.Values{"site": {"1"}, "line": {strconv.Itoa(c.Line)}, "start": {c.DayStart}, "end": {c.DayEnd}}
		row := p.api(t, "oee/", day)[0]
		for _, f := range []string{"oee", "availability", "performance", "quality"} {
			if got, want := c.Figures[f], pctText(row[f]); got != want {
				t.Errorf("line %d: %s shows %q, the OEE endpoint says %q (%v)", c.Line, f, got, want, row[f])
			}
		}
		hour := url.Values{"site": {"1"}, "line": {strconv.Itoa(c.Line)}, "start": {c.HourStart}, "end": {c.HourEnd}}
		if got, want := c.Figures["parts-hour"], countText(p.madeIn(t, hour)); got != want {
			t.Errorf("line %d: parts in the last hour shows %q, the OEE endpoint says %q", c.Line, got, want)
		}
		for _, m := range c.Machines {
			machines++
			id := strings.TrimPrefix(m.Location, "machine:")
			day.Del("line")
			day.Set("machine", id)
			row := p.api(t, "oee/", day)[0]
			if got, want := m.Figures["oee"], pctText(row["oee"]); got != want {
				t.Errorf("machine %s: OEE shows %q, the OEE endpoint says %q", id, got, want)
			}
			hour.Del("line")
			hour.Set("machine", id)
			if got, want := m.Figures["parts-hour"], countText(p.madeIn(t, hour)); got != want {
				t.Errorf("machine %s: parts in the last hour shows %q, the OEE endpoint says %q", id, got, want)
			}
		}
	}
	if machines != 4 {
		t.Errorf("%d machine rows, want 4", machines)
	}
	states := eval[map[string]string](t, b, `Object.fromEntries([...document.querySelectorAll('[data-location]')].map(
		(r) => [r.dataset.location, r.querySelector('[data-state]').dataset.state]))`)
	if states["machine:22"] != "down" || states["machine:21"] != "running" {
		t.Errorf("machine states %v: want press 2 (22) down, press 1 (21) running", states)
	}
	if st := eval[string](t, b, `document.querySelector('article.card[data-line="3"] .badge').dataset.state`); st != "planned_down" {
		t.Errorf("packaging shows %q, want planned_down (a changeover)", st)
	}
	paused.Store(false)
	b.refreshed(t, "overview")
	png := capture(t, b, chromedp.CaptureScreenshot())
	if err := os.WriteFile(filepath.Join(shots, "dashboard.png"), png, 0o644); err != nil {
		t.Fatal(err)
	}

	// The line view of the press shop: its figures for the day, the
	// timeline, the Pareto chart, the trend and the pitches.
	b.do(t, chromedp.Navigate(p.query+"/dashboard/#site=1&line=2"))
	paused.Store(true)
	time.Sleep(2 * time.Second)
	b.refreshed(t, "line")
	lv := eval[shown](t, b, `(() => { const v = document.querySelector('.line-view');
		return {line: Number(v.dataset.line), dayStart: v.dataset.dayStart, dayEnd: v.dataset.dayEnd,
			figures: Object.fromEntries([...v.querySelectorAll('.kpis [data-figure]')].map((e) => [e.dataset.figure, e.textContent]))}; })()`)
	row := p.api(t, "oee/", url.Values{"site": {"1"}, "line": {"2"}, "start": {lv.DayStart}, "end": {lv.DayEnd}})[0]
	for _, f := range []string{"oee", "availability", "performance", "quality"} {
		if got, want := lv.Figures[f], pctText(row[f]); got != want {
			t.Errorf("line view: %s shows %q, the OEE endpoint says %q", f, got, want)
		}
	}
	if got, want := lv.Figures["produced"], countText(int(row["produced_quantity"].(float64))); got != want {
		t.Errorf("line view: produced shows %q, the OEE endpoint says %q", got, want)
	}
	parts := eval[map[string]int](t, b, `({
		lanes: document.querySelectorAll('svg.timeline rect.lane').length,
		running: document.querySelectorAll('svg.timeline rect.st-running').length,
		down: document.querySelectorAll('svg.timeline rect.st-down').length,
		planned: document.querySelectorAll('svg.timeline rect.st-planned_down').length,
		reasons: [...document.querySelectorAll('svg.timeline title')].filter((e) => e.textContent.includes('Material jam')).length,
		bars: document.querySelectorAll('svg.pareto .bar').length,
		days: document.querySelectorAll('svg.trend .bar').length,
		hours: document.querySelectorAll('table.pitches tbody tr').length})`)
	if parts["lanes"] != 3 || parts["running"] == 0 || parts["down"] == 0 || parts["planned"] == 0 || parts["reasons"] == 0 ||
		parts["bars"] < 3 || parts["days"] < 1 || parts["hours"] < 3 {
		t.Errorf("line view is missing something: %v", parts)
	}
	paused.Store(false)
	b.refreshed(t, "line")
	png = capture(t, b, chromedp.FullScreenshot(100))
	if err := os.WriteFile(filepath.Join(shots, "dashboard-line.png"), png, 0o644); err != nil {
		t.Fatal(err)
	}

	// Site 2: its names are markup; the page shows them as text.
	b.do(t, chromedp.Navigate(p.query+"/dashboard/#site=2"))
	b.refreshed(t, "overview")
	got := eval[map[string]any](t, b, `({pwned: window.pwned === 1, imgs: document.querySelectorAll('img, script:not([src])').length,
		title: document.querySelector('article.card h2').textContent, code: document.querySelector('article.card .code').textContent,
		site: document.getElementById('site-name').textContent})`)
	if got["pwned"] != false || got["imgs"] != float64(0) || got["title"] != evilText ||
		got["code"] != `"><script>window.pwned=1</script>` || got["site"] != "Test plant "+evilText {
		t.Errorf("user-written values were not shown as text: %v", got)
	}

	// A new part changes "parts in the last hour" within 5 s of its 200.
	before := eval[string](t, b, `document.querySelector('article.card[data-line="40"] .parts [data-figure]').textContent`)
	n, err := strconv.Atoi(strings.ReplaceAll(before, ",", ""))
	if err != nil {
		t.Fatalf("parts in the last hour: %q", before)
	}
	status, body := p.post(t, `{"part":{"external_id":"evil_1","quantity":7,"product":"PROD001"}}`)
	sent := time.Now()
	if status != http.StatusOK {
		t.Fatalf("post: %d %s", status, body)
	}
	want := countText(n + 7)
	for {
		v := eval[string](t, b, `document.querySelector('article.card[data-line="40"] .parts [data-figure]').textContent`)
		if v == want {
			t.Logf("parts in the last hour went from %s to %s %.1f s after the part's 200", before, v, time.Since(sent).Seconds())
			break
		}
		if time.Since(sent) > 5*time.Second {
			t.Fatalf("parts in the last hour shows %s 5 s after a part of 7 was acknowledged; want %s", v, want)
		}
		time.Sleep(100 * time.Millisecond)
	}

	if p := b.problems(); len(p) > 0 {
		t.Errorf("the browser console reported:\n%s", strings.Join(p, "\n"))
	}
}

func capture(t *testing.T, b *browser, a chromedp.Action[[]byte]) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	return png
}
