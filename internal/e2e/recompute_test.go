package e2e

// Periods derived again under new rules: reference scenarios played on two
// lines, one with the scenario's stop threshold and one with another; the
// first line's threshold is then changed to the other's through the lines
// record area, and its scenario window recomputed through
// POST /api/1.0/productionperiods/recompute/ (signed). Its periods and OEE
// figures must then equal the second line's, figure for figure, and the
// versions the recompute replaced must stay readable.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/takt/takt/internal/auth"
	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/demo"
	"github.com/takt/takt/internal/oee/oeetest"
	"github.com/takt/takt/internal/testenv"
	"github.com/takt/takt/internal/wire"
)

// signedCalls makes each signed call's expiration, and so its signature,
// its own (a signature is accepted once).
var signedCalls atomic.Int64

// recomputeCall posts a signed recompute of externalid over [start, end)
// in site and returns the answer's envelope.
func recomputeCall(t *testing.T, p *pipeline, site uint64, externalID string, start, end time.Time, tamper func(url.Values)) (int, envelope) {
	t.Helper()
	args := url.Values{"auth": {p.apiKey}, "site": {strconv.FormatUint(site, 10)}, "externalid": {externalID},
		"start": {start.UTC().Format(time.RFC3339)}, "end": {end.UTC().Format(time.RFC3339)}, "wait": {"15"},
		auth.ArgServer: {demo.SecretServer}, auth.ArgExpiration: {time.Now().Add(5*time.Minute + time.Duration(signedCalls.Add(1))*time.Second).UTC().Format(auth.ExpirationLayout)}}
	vals := auth.Call{Method: auth.MethodCreate, Area: "productionperiods/recompute",
		Fields: []string{"site", "externalid", "line", "machine", "start", "end"}}.Values(args)
	args.Set(auth.ArgSignature, auth.Sign(p.secret, vals...))
	if tamper != nil {
		tamper(args)
	}
	resp, err := http.PostForm(p.query+"/api/1.0/productionperiods/recompute/", args)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var env envelope
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber()
	if err := dec.Decode(&env); err != nil {
		t.Fatalf("recompute: %d %s", resp.StatusCode, b)
	}
	return resp.StatusCode, env
}

// oeeFigures reads the OEE endpoint's figures of a scenario site's line
// over the scenario's window.
func oeeFigures(t *testing.T, p *pipeline, s *scenarioSite) map[string]any {
	t.Helper()
	args := url.Values{"site": {strconv.FormatUint(s.site, 10)}, "externalid": {s.externalID},
		"start": {s.sc.Window.Start.UTC().Format(time.RFC3339)}, "end": {s.sc.Window.End.UTC().Format(time.RFC3339)},
		"bucket": {"none"}, "auth": {p.apiKey}}
	resp, err := http.Get(p.query + "/api/1.0/oee/?" + args.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var env envelope
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil || !env.Success || len(env.Data) != 1 {
		t.Fatalf("oee: %v %s %v", err, env.Error, env.Data)
	}
	return env.Data[0]
}

// figureDiffs lists the figures in which a and b differ (numbers beyond
// rounding, nulls, and text); fields naming the location are left out.
func figureDiffs(a, b map[string]any) []string {
	var out []string
	for k, va := range a {
		switch k {
		case "site", "externalid", "location", "location_kind", "line", "machine", "name", "code", "description":
			continue
		}
		vb := b[k]
		na, okA := va.(float64)
		nb, okB := vb.(float64)
		switch {
		case okA && okB:
			if math.Abs(na-nb) > 1e-9*math.Max(1, math.Abs(na)) {
				out = append(out, fmt.Sprintf("%s: %v vs %v", k, va, vb))
			}
		case fmt.Sprint(va) != fmt.Sprint(vb):
			out = append(out, fmt.Sprintf("%s: %v vs %v", k, va, vb))
		}
	}
	sort.Strings(out)
	return out
}

// windowPeriods renders a location's stored periods that overlap the
// scenario window without their ids (two locations' periods compare).
func windowPeriods(pl *player, s *scenarioSite) []string {
	var out []string
	for _, line := range pl.storedPeriods(s) {
		_, rest, _ := strings.Cut(line, " ")
		f := strings.Fields(rest) // state start–end reason N
		times := strings.Split(f[1], "–")
		start, _ := time.Parse(time.RFC3339, times[0])
		end, err := time.Parse(time.RFC3339, times[1])
		if !start.Before(s.sc.Window.End) || err == nil && !end.After(s.sc.Window.Start) {
			continue
		}
		if n, err := strconv.ParseUint(f[len(f)-1], 10, 64); err == nil && n > freshReasons {
			rest = strings.TrimSuffix(rest, f[len(f)-1]) + strconv.FormatUint(n-freshReasons, 10)
		}
		out = append(out, rest)
	}
	return out
}

// freshReasons is added to the reason ids of a fresh run's scenario.
const freshReasons = 1000

// TestRecomputeEqualsFreshRun recomputes reference scenarios under a
// changed stop threshold or changed shifts and compares them with a fresh
// run under the new rules.
func TestRecomputeEqualsFreshRun(t *testing.T) {
	cases := []struct {
		name      string
		threshold float64 // seconds; 0: the scenario's
		// shifts replace the scenario's shifts (same count, same order).
		shifts []oeetest.Shift
		// same: the new rules derive the same periods (only their rule
		// version changes); lost: the reasons no period carries.
		same bool
		lost int
	}{
		{name: "01_downtime_in_shift", threshold: 2000},            // the 31-minute stop is run time now
		{name: "12_fractional_threshold", threshold: 60},           // every 64.1 s gap is a stop now
		{name: "04_planned_stop", threshold: 2000, lost: 1},        // the planned stop is gone, and its reason
		{name: "08_stop_across_night", threshold: 120, same: true}, // the stop stays: its pieces keep their reason
		// The shift starts at 05:00: the ten parts made 05:30–05:39
		// count now, in a run of scheduled time.
		{name: "09_run_start_and_counted_parts", shifts: []oeetest.Shift{{Name: "A", Start: "05:00", End: "14:00"}}},
		// The shift starts at 07:00: the first hour's parts are made
		// outside it now.
		{name: "01_downtime_in_shift", shifts: []oeetest.Shift{{Name: "A", Start: "07:00", End: "14:00"}}},
	}
	var names []string
	for _, c := range cases {
		names = append(names, c.name, c.name)
	}
	sites, setup := setupScenarios(t, names)
	for i, c := range cases {
		fresh := sites[2*i+1].sc
		if c.threshold != 0 {
			fresh.StopThreshold = c.threshold
		}
		if c.shifts != nil {
			fresh.Shifts = c.shifts
		}
		var events []oeetest.Event
		for _, ev := range fresh.Events {
			switch {
			case ev.Assign != nil && c.lost > 0:
				continue // the fresh run has no period to give the reason to
			case ev.Assign != nil:
				// A reason of the fresh run's own site (reasons are
				// records of one site).
				a := *ev.Assign
				a.Reason += freshReasons
				ev.Assign = &a
			}
			events = append(events, ev)
		}
		fresh.Events = events
	}
	clock := &scenarioClock{}
	p := startWith(t, options{setup: setup, clock: clock.now, noRateLimit: true, catalogRefresh: 300 * time.Millisecond})
	procAdmin := p.procCfg.Addr
	pl := &player{t: t, p: p, setClock: clock.set, batch: 200,
		catalogReloads: func() float64 { return catalogLoads(procAdmin) }}
	for i, c := range cases {
		name := c.name
		if c.shifts != nil {
			name += "/shifts"
		}
		t.Run(name, func(t *testing.T) {
			pl.t = t
			old, fresh := sites[2*i], sites[2*i+1]
			for _, s := range []*scenarioSite{old, fresh} {
				clock.set(time.Unix(0, 0))
				pl.play(s)
			}
			// Two days later every period of the window is final: the
			// state machines hold only the day before the clock.
			later := old.sc.Now.Add(48 * time.Hour)
			pl.moveClock(later)
			for _, s := range []*scenarioSite{old, fresh} {
				waitFor(t, 30*time.Second, "the periods of the day after", func() bool {
					for _, line := range pl.storedPeriods(s) {
						f := strings.Fields(line) // id state start–end reason N
						start, err := time.Parse(time.RFC3339, strings.Split(f[2], "–")[0])
						if err == nil && !start.Before(old.sc.Now.Add(24*time.Hour)) {
							return true
						}
					}
					return false
				})
			}
			var a, b map[string]any
			// Every part, however it counts (new shifts move parts
			// between produced and unscheduled).
			total := func(f map[string]any) float64 {
				n := 0.0
				for _, k := range []string{"produced_quantity", "unscheduled_quantity", "late_quantity"} {
					v, _ := f[k].(float64)
					n += v
				}
				return n
			}
			e := old.sc.Expected
			parts := e["produced_quantity"] + e["unscheduled_quantity"] + e["late_quantity"]
			waitFor(t, 60*time.Second, "every part in the figures", func() bool {
				a, b = oeeFigures(t, p, old), oeeFigures(t, p, fresh)
				ok := a["produced_quantity"] == old.sc.Expected["produced_quantity"] && total(a) == total(b) && total(a) == parts
				if !ok {
					t.Logf("produced: %v and %v, want %v; all parts %v and %v, want %v (%s %v)", a["produced_quantity"], b["produced_quantity"],
						old.sc.Expected["produced_quantity"], total(a), total(b), parts, old.sc.Name, old.sc.Window)
				}
				return ok
			})
			before := oeeFigures(t, p, old)
			if diffs := figureDiffs(before, oeeFigures(t, p, fresh)); (len(diffs) == 0) != c.same {
				t.Fatalf("the two thresholds give figures that differ in %v; want differences: %v", diffs, !c.same)
			}
			oldPeriods := windowPeriods(pl, old)

			// The new rule: the line's threshold or shifts changed
			// (written as the scenario setup writes them), read by the
			// processor.
			reloads := pl.catalogReloads()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			audit := chstore.Audit{CreatedBy: "test", LastUpdatedBy: "test"}
			var err error
			if c.threshold != 0 {
				err = p.store.PutLine(ctx, chstore.Line{ID: old.line, Site: old.site, Area: 1, Code: fmt.Sprintf("L%d", old.line),
					ExternalID: old.externalID, StopThreshold: c.threshold, Audit: audit})
			}
			for j, sh := range c.shifts {
				if err == nil {
					err = p.store.WriteRow(ctx, "shifts", old.shiftIDs[j], chstore.Row{"site": old.site, "line": old.line, "code": sh.Name,
						"description": "", "start_time": sh.Start, "end_time": sh.End, "days": sh.Days}, audit)
				}
			}
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, 30*time.Second, "the processor to reload master data", func() bool { return pl.catalogReloads() >= reloads+2 })
			began := time.Now()
			status, env := recomputeCall(t, p, old.site, old.externalID, old.sc.Window.Start, old.sc.Window.End, nil)
			t.Logf("recompute answered in %s", time.Since(began).Round(time.Millisecond))
			if status != http.StatusOK || !env.Success || len(env.Data) != 1 || env.Data[0]["status"] != "done" {
				t.Fatalf("recompute: %d %+v", status, env)
			}
			res := env.Data[0]
			t.Logf("recompute: replaced %v, created %v, deleted %v, unchanged %v, reasons kept %v, lost %v, parts %v",
				res["replaced"], res["created"], res["deleted"], res["unchanged"], res["reasons_kept"], res["reasons_lost"], res["parts"])
			if lost, _ := res["reasons_lost"].([]any); len(lost) != c.lost {
				t.Errorf("reasons lost: %v, want %d", lost, c.lost)
			}
			if kept, _ := strconv.Atoi(fmt.Sprint(res["reasons_kept"])); c.same && kept == 0 {
				t.Error("no reason kept: the stop's pieces lost theirs")
			}

			after := oeeFigures(t, p, old)
			if diffs := figureDiffs(after, oeeFigures(t, p, fresh)); len(diffs) > 0 {
				t.Errorf("recomputed figures differ from a fresh run's:\n%s", strings.Join(diffs, "\n"))
			}
			got, want := windowPeriods(pl, old), windowPeriods(pl, fresh)
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("recomputed periods\n%s\nwant (fresh run)\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}

			// Every new version the recompute wrote is on the change feed
			// as recomputed, once (a period it deleted shows as removed).
			wrote := 0
			for _, k := range []string{"replaced", "created"} {
				n, _ := strconv.Atoi(fmt.Sprint(res[k]))
				wrote += n
			}
			waitFor(t, 30*time.Second, "the recomputed periods on the change feed", func() bool {
				return recomputedChanges(t, p, old.line) >= wrote
			})
			if n := recomputedChanges(t, p, old.line); n != wrote {
				t.Errorf("%d recomputed changes on the feed, want %d", n, wrote)
			}

			// The replaced versions stay readable, named by the request.
			hist := periodsWithHistory(t, p, old)
			replaced := 0
			for _, r := range hist {
				if r["recompute"] == res["id"] {
					replaced++
				}
			}
			if n, _ := strconv.Atoi(fmt.Sprint(res["replaced"])); n == 0 || replaced < n {
				t.Errorf("history holds %d versions replaced by %v; the answer says %v replaced", replaced, res["id"], res["replaced"])
			}
			if len(oldPeriods) == 0 {
				t.Fatal("no periods before the recompute")
			}

			// A second request under the same rules changes nothing.
			_, again := recomputeCall(t, p, old.site, old.externalID, old.sc.Window.Start, old.sc.Window.End, nil)
			if len(again.Data) != 1 || again.Data[0]["status"] != "done" || again.Data[0]["replaced"] != json.Number("0") ||
				again.Data[0]["created"] != json.Number("0") || again.Data[0]["deleted"] != json.Number("0") {
				t.Errorf("a second recompute under the same rules: %+v", again)
			}
			if d := figureDiffs(oeeFigures(t, p, old), after); len(d) > 0 {
				t.Errorf("a second recompute changed figures: %v", d)
			}
		})
	}

	// The same request read again (a processor that restarts before it
	// commits reads it again) does nothing.
	t.Run("replayed request", func(t *testing.T) {
		s := sites[0]
		_, env := recomputeCall(t, p, s.site, s.externalID, s.sc.Window.Start, s.sc.Window.End, nil)
		if len(env.Data) != 1 || env.Data[0]["status"] != "done" {
			t.Fatalf("recompute: %+v", env)
		}
		versions := func() string {
			var out []string
			for _, r := range periodsWithHistory(t, p, s) {
				out = append(out, fmt.Sprint(r["id"], " ", r["version"], " ", r["recompute"]))
			}
			sort.Strings(out)
			return strings.Join(out, "\n")
		}
		before := versions()
		start, end := s.sc.Window.Start.UnixMilli(), s.sc.Window.End.UnixMilli()
		rc := wire.Recompute{Control: wire.Control{ID: fmt.Sprint(env.Data[0]["id"]), Site: s.site, LocationKind: "line", LocationID: s.line,
			ExternalID: s.externalID},
			StartMs: start, EndMs: end, RequestedAtMs: time.Now().UnixMilli(), By: demo.Username}
		val, err := wire.EncodeRecompute(&rc)
		if err != nil {
			t.Fatal(err)
		}
		cl, err := kgo.NewClient(kgo.SeedBrokers(testenv.Stack(t).Brokers...))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		repeated := func() float64 {
			return metricOf(procAdmin, `takt_processor_period_recomputes_total{result="repeated"}`)
		}
		n := repeated()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		rec := &kgo.Record{Topic: p.topic, Key: rc.Key(), Value: val,
			Headers: []kgo.RecordHeader{{Key: wire.KindHeader, Value: []byte(wire.KindRecompute)}}}
		if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, "the processor to read the request again", func() bool { return repeated() > n })
		if after := versions(); after != before {
			t.Errorf("the request read again wrote versions:\nbefore\n%s\nafter\n%s", before, after)
		}
	})

	t.Run("signature", func(t *testing.T) {
		s := sites[0]
		for name, tamper := range map[string]func(url.Values){
			"unsigned":          func(a url.Values) { a.Del(auth.ArgSignature) },
			"other window":      func(a url.Values) { a.Set("start", s.sc.Window.Start.Add(-time.Hour).UTC().Format(time.RFC3339)) },
			"argument repeated": func(a url.Values) { a.Add("start", s.sc.Window.Start.Add(-time.Hour).UTC().Format(time.RFC3339)) },
		} {
			status, env := recomputeCall(t, p, s.site, s.externalID, s.sc.Window.Start, s.sc.Window.End, tamper)
			if status != http.StatusForbidden || env.Success {
				t.Errorf("%s: %d %+v, want 403", name, status, env)
			}
		}
	})
}

// recomputedChanges counts the changes of line on the period-changes
// topic that report a recompute.
func recomputedChanges(t *testing.T, p *pipeline, line uint64) int {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(testenv.Stack(t).Brokers...), kgo.ConsumeTopics(p.procCfg.PeriodChangesTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	// The topic is read up to its end offsets as of now: a poll that
	// returns nothing (a slow first fetch) is not the end of the topic.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, p.procCfg.PeriodChangesTopic)
	if err != nil {
		t.Fatal(err)
	}
	left := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil && o.Offset > 0 {
			left[o.Partition] = o.Offset
		}
	})
	n := 0
	for len(left) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("the change feed topic was not read to its end in 30s (%d partitions left)", len(left))
		}
		fs.EachRecord(func(r *kgo.Record) {
			if end, ok := left[r.Partition]; ok && r.Offset+1 >= end {
				delete(left, r.Partition)
			}
			c, err := wire.DecodePeriodChange(r.Value)
			if err == nil && c.LocationKind == "line" && c.LocationID == line && c.Change == wire.ChangeRecomputed {
				n++
			}
		})
	}
	return n
}

// periodsWithHistory reads a location's periods with include_history=true.
func periodsWithHistory(t *testing.T, p *pipeline, s *scenarioSite) []map[string]any {
	t.Helper()
	args := url.Values{"site": {strconv.FormatUint(s.site, 10)}, "location": {strconv.FormatUint(s.line, 10)},
		"include_history": {"true"}, "order_by": {"start"}, "limit": {"2000"}, "auth": {p.apiKey}}
	resp, err := http.Get(p.query + "/api/1.0/productionperiods/?" + args.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var env envelope
	dec := json.NewDecoder(resp.Body)
	dec.UseNumber()
	if err := dec.Decode(&env); err != nil || !env.Success {
		t.Fatalf("productionperiods with history: %v %s", err, env.Error)
	}
	return env.Data
}
