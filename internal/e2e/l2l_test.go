package e2e

// Leading2Lean's sample clients (les-python3, les-go), their flows written
// again from L2L's documented behaviour and played against the whole
// pipeline: every call must answer success=true, and what it writes must
// be stored, the parts of increment_cycle_count and record_details reach
// ClickHouse exactly once, and a dispatch's down time shows in the
// production periods and the OEE figures as computed by hand.

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/demo"
)

// l2lClient calls the record API the way the sample clients do: the key
// and the site in every call's arguments, form-encoded bodies.
type l2lClient struct {
	t    *testing.T
	base string
	key  string
	site string
}

func (c *l2lClient) args(extra map[string]string) url.Values {
	v := url.Values{"auth": {c.key}}
	if c.site != "" {
		v.Set("site", c.site)
	}
	for k, x := range extra {
		v.Set(k, x)
	}
	return v
}

// call answers the envelope of method path with args; it fails the test
// unless HTTP 200 and success=true, as the samples' respcheck does.
func (c *l2lClient) call(method, path string, args map[string]string) map[string]any {
	c.t.Helper()
	env, status := c.raw(method, path, args)
	if status != http.StatusOK || env["success"] != true {
		c.t.Fatalf("%s %s %v: %d %v", method, path, args, status, env)
	}
	return env
}

func (c *l2lClient) raw(method, path string, args map[string]string) (map[string]any, int) {
	c.t.Helper()
	v := c.args(args)
	var resp *http.Response
	var err error
	if method == http.MethodGet {
		resp, err = http.Get(c.base + "/api/1.0/" + path + "?" + v.Encode())
	} else {
		resp, err = http.Post(c.base+"/api/1.0/"+path, "application/x-www-form-urlencoded", strings.NewReader(v.Encode()))
	}
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var env map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	return env, resp.StatusCode
}

func list(t *testing.T, env map[string]any) []map[string]any {
	t.Helper()
	raw, ok := env["data"].([]any)
	if !ok {
		t.Fatalf("data is not a list: %v", env)
	}
	out := make([]map[string]any, len(raw))
	for i, r := range raw {
		out[i] = r.(map[string]any)
	}
	return out
}

func object(t *testing.T, env map[string]any) map[string]any {
	t.Helper()
	d, ok := env["data"].(map[string]any)
	if !ok {
		t.Fatalf("data is not an object: %v", env)
	}
	return d
}

func idOf(t *testing.T, rec map[string]any) string {
	t.Helper()
	n, ok := rec["id"].(float64)
	if !ok {
		t.Fatalf("no id: %v", rec)
	}
	return strconv.FormatUint(uint64(n), 10)
}

// l2lSetup adds to the demo data what makes the sample's lookups choose:
// two more active areas (so paging by 2 takes two pages and ends on PACK)
// and an inactive one after them, a line in PACK that records production
// and one that does not, a machine on the first, an inactive dispatch
// type; and two machines of equal parts for the OEE comparison.
func l2lSetup(t *testing.T) func(ctx context.Context, s *chstore.Store) {
	return func(ctx context.Context, s *chstore.Store) {
		audit := chstore.Audit{CreatedBy: "test", LastUpdatedBy: "test"}
		put := func(area string, id uint64, values chstore.Row) {
			t.Helper()
			a := s.Areas().Must(area)
			row := a.ZeroRow()
			for _, f := range a.Fields {
				if f.Stored() && f.Default != nil {
					row[f.Name] = f.Default
				}
			}
			for k, v := range values {
				row[k] = v
			}
			if err := s.WriteRow(ctx, area, id, row, audit); err != nil {
				t.Fatal(err)
			}
		}
		site := uint64(demo.SiteID)
		put("areas", 51, chstore.Row{"site": site, "code": "PAINT"})
		put("areas", 52, chstore.Row{"site": site, "code": "PACK"})
		put("areas", 53, chstore.Row{"site": site, "code": "OLD", "active": false})
		put("lines", 61, chstore.Row{"site": site, "area": uint64(52), "code": "LINE2", "externalid": "line_2"})
		put("lines", 60, chstore.Row{"site": site, "area": uint64(52), "code": "LINE0", "enable_production": false})
		put("machines", 71, chstore.Row{"site": site, "line": uint64(61), "code": "MACHINE2", "externalid": "machine_2"})
		put("dispatchtypes", 54, chstore.Row{"site": site, "code": "AAA", "downtime": true, "active": false})
		// The OEE comparison: two machines of a line of their own, product
		// P20 (20 s ideal), a 60 s stop threshold.
		put("lines", 62, chstore.Row{"site": site, "area": uint64(51), "code": "LINE3"})
		for _, m := range []struct {
			id   uint64
			code string
		}{{72, "m_dispatch"}, {73, "m_plain"}} {
			put("machines", m.id, chstore.Row{"site": site, "line": uint64(62), "code": strings.ToUpper(m.code), "externalid": m.code,
				"stop_threshold": 60.0})
		}
		put("products", 80, chstore.Row{"site": site, "code": "P20", "ideal_cycle_time": 20.0})
	}
}

func TestLeading2LeanSampleFlow(t *testing.T) {
	p := startWith(t, options{setup: l2lSetup(t)})
	c := &l2lClient{t: t, base: p.query, key: p.apiKey}
	loc, err := time.LoadLocation(demo.SiteTimezone)
	if err != nil {
		t.Fatal(err)
	}
	const minuteFmt, secondFmt = "2006-01-02 15:04", "2006-01-02 15:04:05"
	site := strconv.Itoa(demo.SiteID)

	// The site check: exactly one active test site with that id.
	sites := list(t, c.call("GET", "sites/", map[string]string{"test_site": "True", "site": site, "active": "True"}))
	if len(sites) != 1 || sites[0]["description"] != "Demo Plant" {
		t.Fatalf("test site: %v", sites)
	}
	c.site = site

	// The last active area, paging by 2 until a short page.
	var area map[string]any
	pages := 0
	for offset := 0; ; {
		data := list(t, c.call("GET", "areas/", map[string]string{"active": "True", "limit": "2", "offset": strconv.Itoa(offset)}))
		pages++
		if len(data) > 0 {
			area = data[len(data)-1]
		}
		if len(data) < 2 {
			break
		}
		offset += len(data)
	}
	if area["code"] != "PACK" || pages != 2 {
		t.Fatalf("last active area %v after %d pages", area["code"], pages)
	}
	lines := list(t, c.call("GET", "lines/", map[string]string{"area_id": idOf(t, area), "active": "True", "enable_production": "True"}))
	if len(lines) != 1 || lines[0]["code"] != "LINE2" {
		t.Fatalf("lines of PACK that record production: %v", lines)
	}
	line := lines[0]
	machines := list(t, c.call("GET", "machines/", map[string]string{"line_id": idOf(t, line), "active": "True"}))
	if len(machines) != 1 || machines[0]["code"] != "MACHINE2" {
		t.Fatalf("machines of LINE2: %v", machines)
	}
	machine := machines[0]
	types := list(t, c.call("GET", "dispatchtypes/", map[string]string{"active": "True"}))
	if len(types) == 0 || types[0]["code"] != demo.DispatchTypeCode {
		t.Fatalf("active dispatch types: %v", types)
	}
	dtype := types[0]

	t.Run("clock in and out", func(t *testing.T) {
		c.t = t
		in := list(t, c.call("POST", "users/clock_in/"+demo.Username+"/", map[string]string{"linecode": "LINE2"}))
		out := list(t, c.call("POST", "users/clock_out/"+demo.Username+"/", map[string]string{"linecode": "LINE2"}))
		if len(in) != 1 || len(out) != 1 || in[0]["id"] != out[0]["id"] || out[0]["open"] != false {
			t.Errorf("in %v, out %v", in, out)
		}
		start := time.Now().In(loc).AddDate(0, 0, -7).Truncate(time.Minute)
		past := list(t, c.call("POST", "users/clock_in/"+demo.Username+"/", map[string]string{"linecode": "LINE2",
			"start": start.Format(minuteFmt), "end": start.Add(8 * time.Hour).Format(minuteFmt)}))
		if past[0]["start"] != start.UTC().Format("2006-01-02 15:04:05.000") || past[0]["hours"] != 8.0 {
			t.Errorf("past session: %v", past)
		}
	})

	t.Run("cycle counts and their parts", func(t *testing.T) {
		c.t = t
		set := list(t, c.call("POST", "machines/set_cycle_count/", map[string]string{"code": "MACHINE2", "cyclecount": "832"}))
		inc := list(t, c.call("POST", "machines/increment_cycle_count/", map[string]string{"code": "MACHINE2",
			"skip_lastupdated": "1", "cyclecount": "5"}))
		if set[0]["cyclecount"] != 832.0 || inc[0]["cyclecount"] != 837.0 ||
			inc[0]["cyclecount_lastupdated"] != set[0]["cyclecount_lastupdated"] {
			t.Errorf("set %v, incremented %v", set[0], inc[0])
		}
		parts := waitParts(t, p, "machine_2", 5)
		if len(parts) != 1 || parts[0]["quantity"] != 5.0 || parts[0]["location_kind"] != "machine" ||
			parts[0]["product_resolution"] != "fallback" {
			t.Errorf("parts of the increment: %v", parts)
		}
	})

	t.Run("dispatches", func(t *testing.T) {
		c.t = t
		opened := object(t, c.call("POST", "dispatches/open/", map[string]string{"dispatchtype": idOf(t, dtype),
			"description": "l2l test dispatch", "machine": idOf(t, machine)}))
		closed := object(t, c.call("POST", "dispatches/close/"+idOf(t, opened)+"/", nil))
		if closed["status"] != "closed" || closed["id"] != opened["id"] {
			t.Errorf("opened %v, closed %v", opened, closed)
		}
		// A dispatch 60 days ago is recorded; the periods there are final.
		reported := time.Now().In(loc).AddDate(0, 0, -60).Truncate(time.Second)
		added := object(t, c.call("POST", "dispatches/add/", map[string]string{"dispatchtypecode": demo.DispatchTypeCode,
			"description": "l2l test dispatch (already closed)", "machinecode": "MACHINE2",
			"reported": reported.Format(secondFmt), "completed": reported.Add(34 * time.Minute).Format(secondFmt)}))
		if added["reported"] != reported.UTC().Format("2006-01-02 15:04:05.000") || added["open"] != false {
			t.Errorf("added %v", added)
		}
		// A dispatch of ten minutes in the machine's past hour shows as its
		// down period, with the dispatch type.
		rep := time.Now().In(loc).Add(-3 * time.Minute).Truncate(time.Second)
		win := object(t, c.call("POST", "dispatches/add/", map[string]string{"dispatchtypecode": demo.DispatchTypeCode,
			"machinecode": "MACHINE2", "reported": rep.Add(-10 * time.Minute).Format(secondFmt), "completed": rep.Format(secondFmt)}))
		var down []map[string]any
		waitFor(t, 30*time.Second, "the dispatch's down period", func() bool {
			down = list(t, c.call("GET", "productionperiods/", map[string]string{"externalid": "machine_2", "dispatch": idOf(t, win)}))
			return len(down) > 0
		})
		if len(down) != 1 || down[0]["state"] != "down" || down[0]["dispatchtype"] != dtype["id"] ||
			down[0]["duration"] != 600.0 || down[0]["start"] != rep.Add(-10*time.Minute).UTC().Format("2006-01-02 15:04:05.000") {
			t.Errorf("down period of the dispatch: %v", down)
		}
		old := list(t, c.call("GET", "productionperiods/", map[string]string{"externalid": "machine_2", "dispatch": idOf(t, added)}))
		if len(old) != 0 {
			t.Errorf("a dispatch 60 days before the machine's parts changed its periods: %v", old)
		}
	})

	var product string
	t.Run("record details and their parts", func(t *testing.T) {
		c.t = t
		product = "testproduct-" + strconv.FormatInt(time.Now().Unix(), 10)
		args := map[string]string{"linecode": "LINE2", "productcode": product, "actual": "57", "scrap": "12",
			"operator_count": "4", "start": "now", "end": "now"}
		d := object(t, c.call("POST", "pitchdetails/record_details/", args))
		again := object(t, c.call("POST", "pitchdetails/record_details/", args))
		if d["actual"] != 57.0 || d["scrap"] != 12.0 || d["productcode"] != product {
			t.Errorf("recorded %v", d)
		}
		if again["id"] != d["id"] {
			// The second call fell into the next second: another detail,
			// and the parts below must show both.
			t.Logf("the repeat was another second's detail: %v", again)
		}
		parts := waitParts(t, p, "line_2", 0)
		var good, scrap float64
		for _, part := range parts {
			if part["product_code"] != product || part["product_resolution"] != "code" {
				t.Errorf("part of the details: %v", part)
			}
			switch part["quality"] {
			case "good":
				good += part["quantity"].(float64)
			case "scrap":
				scrap += part["quantity"].(float64)
			}
		}
		n := 1.0
		if again["id"] != d["id"] {
			n = 2
		}
		if good != 57*n || scrap != 12*n {
			t.Errorf("parts of the details: good %v, scrap %v; want %v, %v: %v", good, scrap, 57*n, 12*n, parts)
		}
		sum := object(t, c.call("GET", "pitchdetails/record_details/", map[string]string{"linecode": "LINE2",
			"productcode": product, "show_products": "true",
			"start": time.Now().In(loc).Truncate(24 * time.Hour).Format(secondFmt), "end": time.Now().In(loc).AddDate(0, 0, 1).Format(secondFmt)}))
		if sum["actual"] != 57*n || sum["scrap"] != 12*n {
			t.Errorf("recorded details read back: %v", sum)
		}
	})

	t.Run("daily summary", func(t *testing.T) {
		c.t = t
		now := time.Now().In(loc)
		start := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, loc)
		var days []map[string]any
		waitFor(t, 30*time.Second, "today's production in the daily summary", func() bool {
			days = list(t, c.call("GET", "reporting/production/daily_summary_data_by_line/", map[string]string{
				"start": start.Format(minuteFmt), "end": now.AddDate(0, 0, 1).Format(minuteFmt), "linecode": "LINE2",
				"show_products": "True"}))
			return len(days) > 0 && days[0]["actual"].(float64) > 0
		})
		today := days[0]
		if today["date"] != start.Format(time.DateOnly) || today["linecode"] != "LINE2" {
			t.Errorf("today: %v", today)
		}
		products, _ := today["products"].([]any)
		found := false
		for _, pr := range products {
			if m := pr.(map[string]any); m["productcode"] == product && m["scrap"].(float64) >= 12 {
				found = true
			}
		}
		if !found || math.Mod(today["actual"].(float64), 57) != 0 {
			t.Errorf("today's products: %v", today)
		}
	})

	t.Run("a dispatch's down time in OEE", func(t *testing.T) {
		c.t = t
		dispatchOEE(t, p, c, loc)
	})
}

// dispatchOEE: two machines make the same parts, one every 30 s for an
// hour (P20: 20 s ideal cycle time, 60 s stop threshold); a dispatch on
// one says it was down for ten minutes of that hour. By hand, over the
// hour [T0, T0+60m):
//
//	m_plain:    PBT 3600 s, APT 3600 s, down 0;   PQ 120, ideal 2400 s:
//	            A = 1, P = 2400/3600 = 0.6667, Q = 1, OEE = 0.6667
//	m_dispatch: PBT 3600 s, APT 3000 s, down 600 s (one event);
//	            A = 3000/3600 = 0.8333, P = 2400/3000 = 0.8, Q = 1,
//	            OEE = 0.6667 — OEE = ideal × GQ / PBT does not depend on
//	            how the time is split: the dispatch moves loss from
//	            performance to availability.
func dispatchOEE(t *testing.T, p *pipeline, c *l2lClient, loc *time.Location) {
	t0 := time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Minute)
	for _, ext := range []string{"m_dispatch", "m_plain"} {
		var items []string
		for i := 0; i <= 120; i++ {
			items = append(items, fmt.Sprintf(`{"external_id":%q,"product":"P20","recorded_at":%d}`, ext, t0.Add(time.Duration(i)*30*time.Second).Unix()))
		}
		req, _ := http.NewRequest(http.MethodPost, p.ingest+"/api/external/production/process_parts",
			strings.NewReader(`{"parts":[`+strings.Join(items, ",")+`]}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("API-KEY", p.apiKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("ingest %s: %v %v", ext, resp, err)
		}
		resp.Body.Close()
	}
	from := t0.Add(20 * time.Minute).In(loc)
	c.call("POST", "dispatches/add/", map[string]string{"dispatchtypecode": demo.DispatchTypeCode, "machinecode": "M_DISPATCH",
		"reported": from.Format("2006-01-02 15:04:05"), "completed": from.Add(10 * time.Minute).Format("2006-01-02 15:04:05")})

	figures := func() map[string]map[string]any {
		env := c.call("GET", "oee/", map[string]string{"line": "62", "group_by": "location",
			"start": t0.Format(time.RFC3339), "end": t0.Add(time.Hour).Format(time.RFC3339)})
		out := map[string]map[string]any{}
		for _, r := range list(t, env) {
			out[r["externalid"].(string)] = r
		}
		return out
	}
	var got map[string]map[string]any
	waitFor(t, 60*time.Second, "the OEE figures of both machines", func() bool {
		got = figures()
		d, pl := got["m_dispatch"], got["m_plain"]
		return d != nil && pl != nil && d["produced_quantity"] == 120.0 && pl["produced_quantity"] == 120.0 &&
			d["unplanned_down_time"] == 600.0 && pl["actual_production_time"] == 3600.0
	})
	near := func(v any, want float64) bool { f, ok := v.(float64); return ok && math.Abs(f-want) < 1e-3 }
	for ext, want := range map[string]map[string]float64{
		"m_plain": {"planned_busy_time": 3600, "actual_production_time": 3600, "unplanned_down_time": 0,
			"ideal_production_time": 2400, "availability": 1, "performance": 2.0 / 3, "quality": 1, "oee": 2.0 / 3, "down_events": 0},
		"m_dispatch": {"planned_busy_time": 3600, "actual_production_time": 3000, "unplanned_down_time": 600,
			"ideal_production_time": 2400, "availability": 5.0 / 6, "performance": 0.8, "quality": 1, "oee": 2.0 / 3, "down_events": 1},
	} {
		for k, v := range want {
			if !near(got[ext][k], v) {
				t.Errorf("%s: %s = %v, want %v", ext, k, got[ext][k], v)
			}
		}
	}
}

// waitParts waits until the parts of external id ext sum to at least
// quantity (0: any), then for the stored order to settle, and returns them.
func waitParts(t *testing.T, p *pipeline, ext string, quantity float64) []map[string]any {
	t.Helper()
	var recs []map[string]any
	sum := func() float64 {
		s := 0.0
		for _, r := range recs {
			s += r["quantity"].(float64)
		}
		return s
	}
	waitFor(t, 30*time.Second, "parts of "+ext, func() bool {
		recs = p.parts(t, url.Values{"externalid": {ext}, "order_by": {"id"}, "limit": {"100"}}).Data
		return len(recs) > 0 && sum() >= quantity
	})
	// Anything counted twice would show within the processor's flushes.
	time.Sleep(2 * time.Second)
	recs = p.parts(t, url.Values{"externalid": {ext}, "order_by": {"id"}, "limit": {"100"}}).Data
	return recs
}
