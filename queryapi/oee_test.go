package queryapi

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/takt/takt/internal/auth"
	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/config"
	"github.com/takt/takt/internal/oee"
	"github.com/takt/takt/internal/oee/oeetest"
	"github.com/takt/takt/internal/period"
	"github.com/takt/takt/internal/testenv"
)

// oeeSite is where a scenario is played: a site of the given zone and one
// location of its own (a line, or a machine on a line) with the scenario's
// shifts as the line's own shifts, and the scenario's products.
type oeeSite struct {
	site       uint64
	kind       string
	loc, line  uint64
	externalID string
	products   map[string]uint64
}

// playScenario stores the scenario's parts and every version of the
// periods the state machine wrote for them (a FINAL reader must see the
// newest). withPeriods false stores the parts only.
func playScenario(t *testing.T, store *chstore.Store, sc *oeetest.Scenario, at oeeSite, withPeriods bool, nextID *int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key := period.Key{Kind: at.kind, ID: at.loc}
	played, err := oeetest.Replay(sc, key)
	if err != nil {
		t.Fatal(err)
	}
	versions := make([]chstore.PeriodRow, 0, len(played.Rows))
	for _, r := range played.Rows {
		versions = append(versions, chstore.PeriodRow{ID: r.ID, Site: at.site, Location: at.loc, LocationKind: at.kind,
			ExternalID: at.externalID, State: string(r.State), Start: r.Start, End: r.End, Open: r.Open,
			Reason: r.Reason, FirstOfStop: r.FirstOfStop, Version: r.Version, Deleted: r.Deleted})
	}
	var b chstore.PartsBlock
	for _, p := range played.Parts {
		*nextID++
		r := chstore.PartRow{ID: chstore.PartID(0, *nextID), EventID: uuid.Must(uuid.NewV7()), Site: at.site,
			LocationKind: at.kind, LocationID: at.loc, ExternalID: at.externalID,
			ProductID: at.products[p.Product], ProductCode: p.Product, ProductResolution: "code",
			Quantity: p.Quantity, Quality: p.Quality, CycleTime: p.CycleTime, HasCycleTime: p.CycleTime > 0,
			RecordedMs: p.RecordedMs, ReceivedMs: p.RecordedMs, Topic: "t", Offset: *nextID,
			IdealCycleTime: p.IdealCycleTime, OEEClass: string(p.Class)}
		if err := b.Append(&r); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.InsertParts(ctx, &b); err != nil {
		t.Fatal(err)
	}
	if withPeriods {
		// Version by version, as the processor will write them.
		for i := 0; i < len(versions); i += 7 {
			if err := store.InsertPeriods(ctx, versions[i:min(i+7, len(versions))]); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// oeeFixture is the record-API fixture plus two scenario sites: site 3
// (UTC) and the demo site 1 (Europe/Berlin), and a key of user 9 that sees
// both.
type oeeFixture struct {
	*fixture
	key    string
	played map[string]oeeSite
}

func newOEEFixture(t *testing.T) *oeeFixture {
	f := &oeeFixture{fixture: newFixture(t), played: map[string]oeeSite{}}
	store := f.store
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	audit := chstore.Audit{CreatedBy: "test", LastUpdatedBy: "test"}
	key, pref, hash := auth.NewKey()
	f.key = key
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(store.PutSite(ctx, chstore.Site{ID: 3, Description: "UTC plant", Timezone: "UTC", Audit: audit}))
	must(store.PutUser(ctx, chstore.User{ID: 9, Username: "analyst", Sites: []uint64{1, 3}, Active: true, Audit: audit}))
	must(store.PutAPIKey(ctx, chstore.APIKey{ID: 9, User: 9, Prefix: pref, Hash: hash, Scopes: []string{"read"}, Active: true, Audit: audit}))
	products := map[uint64]map[string]uint64{3: {"P1": 31, "P2": 32}, 1: {"P1": 33}}
	must(store.PutProduct(ctx, chstore.Product{ID: 31, Site: 3, Code: "P1", IdealCycleTime: 60, Audit: audit}))
	must(store.PutProduct(ctx, chstore.Product{ID: 32, Site: 3, Code: "P2", IdealCycleTime: 30, Audit: audit}))
	must(store.PutProduct(ctx, chstore.Product{ID: 33, Site: 1, Code: "P1", IdealCycleTime: 60, Audit: audit}))
	var nextID int64
	shiftID := uint64(100)
	play := func(name string, line uint64, machine uint64, withPeriods bool) {
		sc := oeetest.Load(t, name)
		site := uint64(3)
		if sc.Timezone != "UTC" {
			site = 1
		}
		at := oeeSite{site: site, kind: "line", loc: line, line: line, externalID: fmt.Sprintf("ext_%d", line), products: products[site]}
		must(store.PutLine(ctx, chstore.Line{ID: line, Site: site, Area: 1, Code: fmt.Sprintf("L%d", line), ExternalID: at.externalID, Audit: audit}))
		if machine != 0 {
			// The line has no external id of its own then: parts come
			// from its machine.
			must(store.PutLine(ctx, chstore.Line{ID: line, Site: site, Area: 1, Code: fmt.Sprintf("L%d", line), Audit: audit}))
			at.kind, at.loc, at.externalID = "machine", machine, fmt.Sprintf("ext_m%d", machine)
			must(store.PutMachine(ctx, chstore.Machine{ID: machine, Site: site, Line: line, Code: "M", ExternalID: at.externalID, Audit: audit}))
		}
		for _, s := range sc.Shifts {
			shiftID++
			must(store.WriteRow(ctx, "shifts", shiftID, chstore.Row{"site": site, "line": line, "code": s.Name,
				"description": "", "start_time": s.Start, "end_time": s.End, "days": s.Days}, audit))
		}
		playScenario(t, store, sc, at, withPeriods, &nextID)
		f.played[name] = at
	}
	play("01_downtime_in_shift", 11, 0, true)
	play("02_scrap_rework", 12, 0, true)
	play("03_product_change", 13, 40, true)
	play("04_planned_stop", 14, 0, true)
	play("05_dst_day", 15, 0, true)
	play("06_late_part_in_down", 16, 0, true)
	play("07_planned_stop_late_parts", 18, 0, true)
	play("08_stop_across_night", 19, 0, true)
	play("09_run_start_and_counted_parts", 20, 0, true)
	play("10_ideal_changed", 21, 0, true)
	play("11_product_filter", 22, 41, true)
	play("12_fractional_threshold", 23, 0, true)
	// Scenario 02's parts once more, on a line without periods.
	sc := oeetest.Load(t, "02_scrap_rework")
	at := oeeSite{site: 3, kind: "line", loc: 17, line: 17, externalID: "ext_17", products: products[3]}
	must(store.PutLine(ctx, chstore.Line{ID: 17, Site: 3, Area: 1, Code: "L17", ExternalID: at.externalID, Audit: audit}))
	shiftID++
	must(store.WriteRow(ctx, "shifts", shiftID, chstore.Row{"site": uint64(3), "line": uint64(17), "code": "A",
		"description": "", "start_time": "06:00", "end_time": "14:00", "days": ""}, audit))
	playScenario(t, store, sc, at, false, &nextID)
	// Line 30 reports parts, and so does its machine 50 (scenario 02's
	// parts and periods for each): the line's parts are its machine's.
	for _, l := range []oeeSite{
		{site: 3, kind: "line", loc: 30, line: 30, externalID: "ext_30", products: products[3]},
		{site: 3, kind: "machine", loc: 50, line: 30, externalID: "ext_m50", products: products[3]},
	} {
		if l.kind == "line" {
			must(store.PutLine(ctx, chstore.Line{ID: 30, Site: 3, Area: 1, Code: "L30", ExternalID: l.externalID, Audit: audit}))
		} else {
			must(store.PutMachine(ctx, chstore.Machine{ID: 50, Site: 3, Line: 30, Code: "M50", ExternalID: l.externalID, Audit: audit}))
		}
		playScenario(t, store, sc, l, true, &nextID)
	}
	return f
}

// oeeRows asks GET /api/1.0/oee/ and returns its rows with numbers as
// float64 (nil for null).
func (f *oeeFixture) oeeRows(t *testing.T, key string, args url.Values) []map[string]any {
	t.Helper()
	env := f.getJSON(t, "/api/1.0/oee/?"+args.Encode(), key, http.StatusOK)
	if !env.Success {
		t.Fatalf("oee %s: success=false: %s", args.Encode(), env.Error)
	}
	var rows []map[string]any
	if err := json.Unmarshal(env.Data, &rows); err != nil {
		t.Fatal(err)
	}
	return rows
}

func scenarioArgs(sc *oeetest.Scenario, at oeeSite, bucket string) url.Values {
	v := url.Values{"site": {strconv.FormatUint(at.site, 10)},
		"start": {sc.Window.Start.UTC().Format(time.RFC3339)}, "end": {sc.Window.End.UTC().Format(time.RFC3339)},
		"bucket": {bucket}}
	if sc.Product != "" {
		v.Set("product", sc.Product)
	}
	if sc.Ideal != "" {
		v.Set("ideal", sc.Ideal)
	}
	if at.kind == "machine" {
		v.Set("machine", strconv.FormatUint(at.loc, 10))
	} else {
		v.Set("externalid", at.externalID)
	}
	return v
}

// checkFigures compares a row with the scenario's expected figures (a
// flag as 0 or 1) and nulls.
func checkFigures(t *testing.T, what string, row map[string]any, want map[string]float64, null ...string) {
	t.Helper()
	for k, w := range want {
		g, ok := oeetest.Number(row[k])
		if !ok {
			t.Errorf("%s: %s = %v, want %v", what, k, row[k], w)
			continue
		}
		if math.Abs(g-w) > 1e-9*math.Max(1, math.Abs(w)) {
			t.Errorf("%s: %s = %v, want %v", what, k, g, w)
		}
	}
	for _, k := range null {
		if v, ok := row[k]; !ok || v != nil {
			t.Errorf("%s: %s = %v, want null", what, k, v)
		}
	}
}

// sumRows adds the element fields of rows and recomputes the ratios.
func sumRows(t *testing.T, rows []map[string]any) map[string]any {
	t.Helper()
	var e oee.Elements
	var unrecorded float64
	for _, r := range rows {
		b, _ := json.Marshal(r)
		var x oee.Elements
		if err := json.Unmarshal(b, &x); err != nil {
			t.Fatal(err)
		}
		e.Add(x)
		unrecorded += r["unrecorded_time"].(float64)
	}
	out := map[string]any{}
	for _, v := range []any{e, e.Ratios()} {
		b, _ := json.Marshal(v)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		for k, x := range m {
			out[k] = x
		}
	}
	out["unrecorded_time"] = unrecorded
	return out
}

// sitesKey lets every key read sites 1 and 3.
type sitesKey struct{}

func (sitesKey) Authenticate(context.Context, string) (auth.Principal, error) {
	return auth.Principal{KeyID: 1, Sites: []uint64{1, 3}, Scopes: []string{auth.ScopeRead}}, nil
}

// oeeAt answers one GET /api/1.0/oee/ with args as if it were now, and
// returns its one row.
func (f *oeeFixture) oeeAt(t *testing.T, now time.Time, args url.Values) map[string]any {
	t.Helper()
	var env config.Env
	h, err := newHandler(sitesKey{}, f.store, newZones(f.store, time.Minute, testenv.Logger(t)), ConfigFromEnv(&env),
		testenv.Logger(t), mustMetrics(t))
	if err != nil {
		t.Fatal(err)
	}
	o := newOEE(h, f.store)
	o.now = func() time.Time { return now }
	r := gin.New()
	o.routes(r)
	req := httptest.NewRequest(http.MethodGet, "/api/1.0/oee/?"+args.Encode(), nil)
	req.Header.Set(keyHeader, "any")
	w := httptest.NewRecorder()
	r.ServeHTTP(w, req)
	var env2 struct {
		Success bool             `json:"success"`
		Data    []map[string]any `json:"data"`
		Error   string           `json:"error"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &env2); err != nil || !env2.Success || len(env2.Data) != 1 {
		t.Fatalf("oee at %v: %d %v %s %v", now, w.Code, err, env2.Error, env2.Data)
	}
	return env2.Data[0]
}

func TestOEE(t *testing.T) {
	f := newOEEFixture(t)

	for _, sc := range oeetest.LoadAll(t, oeetest.Dir()) {
		name := strings.TrimSuffix(filepath.Base(sc.File), ".json")
		t.Run(name, func(t *testing.T) {
			at := f.played[name]
			rows := f.oeeRows(t, f.key, scenarioArgs(sc, at, "none"))
			if len(rows) != 1 {
				t.Fatalf("%d rows, want 1: %v", len(rows), rows)
			}
			if sc.Product != "" {
				checkFigures(t, "bucket=none", rows[0], sc.Expected, append(sc.ExpectedNull,
					"unrecorded_time", "locations", "locations_unrecorded", "coverage")...)
				return
			}
			checkFigures(t, "bucket=none", rows[0], sc.Expected)
			checkFigures(t, "bucket=none", rows[0], map[string]float64{"unrecorded_time": 0, "coverage": 1,
				"locations": 1, "locations_unrecorded": 0})
			if oee.Bucket(sc.Bucket) != oee.None {
				rows := f.oeeRows(t, f.key, scenarioArgs(sc, at, sc.Bucket))
				if len(rows) != sc.Buckets {
					t.Fatalf("%d %s rows, want %d", len(rows), sc.Bucket, sc.Buckets)
				}
				checkFigures(t, "bucket="+sc.Bucket+", summed", sumRows(t, rows), sc.Expected)
			}
		})
	}

	t.Run("DST day in one local day bucket", func(t *testing.T) {
		sc, at := oeetest.Load(t, "05_dst_day"), f.played["05_dst_day"]
		rows := f.oeeRows(t, f.key, scenarioArgs(sc, at, "day"))
		if len(rows) != 1 {
			t.Fatalf("%d day rows, want 1", len(rows))
		}
		checkFigures(t, "bucket=day", rows[0], sc.Expected)
		if rows[0]["start_local"] != "2024-03-31T00:00:00.000+01:00" || rows[0]["end_local"] != "2024-04-01T00:00:00.000+02:00" {
			t.Errorf("day bucket %v – %v, want local midnight to midnight", rows[0]["start_local"], rows[0]["end_local"])
		}
		// Two days around it: the 23 h day and the next, whole, 24 h day.
		args := scenarioArgs(sc, at, "day")
		args.Set("start", "2024-03-30T23:00:00Z")
		args.Set("end", "2024-04-01T22:00:00Z")
		rows = f.oeeRows(t, f.key, args)
		if len(rows) != 2 || rows[0]["calendar_time"] != 82800.0 || rows[1]["calendar_time"] != 86400.0 {
			t.Fatalf("two days: %d rows, calendar times %v, %v; want 82800, 86400", len(rows), rows[0]["calendar_time"], rows[1]["calendar_time"])
		}
	})

	t.Run("no periods yet", func(t *testing.T) {
		sc := oeetest.Load(t, "02_scrap_rework")
		rows := f.oeeRows(t, f.key, scenarioArgs(sc, oeeSite{site: 3, externalID: "ext_17"}, "none"))
		if len(rows) != 1 {
			t.Fatalf("%d rows", len(rows))
		}
		checkFigures(t, "no periods", rows[0], map[string]float64{
			"planned_busy_time": 7200, "unrecorded_time": 7200, "actual_production_time": 0,
			"availability": 0, "oee": 0, "produced_quantity": 119, "good_quantity": 104,
			"quality": sc.Expected["quality"], "ideal_production_time": 7140})
	})

	t.Run("grouped by location, line, product and shift", func(t *testing.T) {
		args := url.Values{"site": {"3"}, "start": {"2024-03-04T06:00:00Z"}, "end": {"2024-03-04T08:00:00Z"}, "group_by": {"location"}}
		rows := f.oeeRows(t, f.key, args)
		byExt := map[string]map[string]any{}
		for _, r := range rows {
			byExt[r["externalid"].(string)] = r
		}
		if len(rows) != 14 || byExt["ext_12"] == nil || byExt["ext_m40"] == nil || byExt["ext_m50"] == nil {
			t.Fatalf("group_by=location: %d rows, want one per location of site 3 (14): %v", len(rows), rows)
		}
		if byExt["ext_m40"]["line"] != 13.0 || byExt["ext_m40"]["location_kind"] != "machine" {
			t.Errorf("machine row: %v", byExt["ext_m40"])
		}
		checkFigures(t, "location ext_12", byExt["ext_12"], oeetest.Load(t, "02_scrap_rework").Expected)

		args.Set("group_by", "product")
		args.Set("line", "13")
		args.Set("end", "2024-03-04T10:00:00Z")
		rows = f.oeeRows(t, f.key, args)
		if len(rows) != 2 || rows[0]["product_code"] != "P1" || rows[1]["product_code"] != "P2" {
			t.Fatalf("group_by=product on line 13: %v", rows)
		}
		checkFigures(t, "P1", rows[0], map[string]float64{"produced_quantity": 119, "ideal_production_time": 7140})
		checkFigures(t, "P2", rows[1], map[string]float64{"produced_quantity": 165, "ideal_production_time": 4950})
		for _, k := range []string{"availability", "planned_busy_time", "performance", "oee", "performance_over_ideal", "coverage"} {
			if rows[0][k] != nil {
				t.Errorf("product rows carry %s: %v", k, rows[0])
			}
		}

		args = url.Values{"site": {"3"}, "start": {"2024-03-04T05:00:00Z"}, "end": {"2024-03-04T15:00:00Z"},
			"externalid": {"ext_11"}, "group_by": {"shift"}}
		rows = f.oeeRows(t, f.key, args)
		if len(rows) != 2 || rows[0]["shift"] != nil || rows[1]["shift"] != "A" {
			t.Fatalf("group_by=shift: %v", rows)
		}
		checkFigures(t, "shift A", rows[1], oeetest.Load(t, "01_downtime_in_shift").Expected)
	})

	t.Run("a product filter answers quantities, never a ratio of one product's ideal time to all run time", func(t *testing.T) {
		sc, at := oeetest.Load(t, "03_product_change"), f.played["03_product_change"]
		args := scenarioArgs(sc, at, "none")
		args.Set("product", "P1")
		rows := f.oeeRows(t, f.key, args)
		if len(rows) != 1 {
			t.Fatalf("%d rows", len(rows))
		}
		checkFigures(t, "product=P1", rows[0], map[string]float64{"produced_quantity": 119, "ideal_production_time": 7140, "quality": 1},
			"actual_production_time", "planned_busy_time", "availability", "performance", "oee", "teep", "mtbf", "mttr",
			"down_events", "performance_loss", "availability_loss", "performance_over_ideal")
	})

	t.Run("a line that reports parts stands for its machines", func(t *testing.T) {
		sc := oeetest.Load(t, "02_scrap_rework")
		args := url.Values{"site": {"3"}, "start": {"2024-03-04T06:00:00Z"}, "end": {"2024-03-04T08:00:00Z"}, "line": {"30"}}
		rows := f.oeeRows(t, f.key, args)
		if len(rows) != 1 {
			t.Fatalf("%d rows", len(rows))
		}
		checkFigures(t, "line=30", rows[0], sc.Expected)
		args.Set("group_by", "location")
		rows = f.oeeRows(t, f.key, args)
		if len(rows) != 1 || rows[0]["externalid"] != "ext_30" {
			t.Fatalf("line=30 by location: %v", rows)
		}
		args.Del("line")
		args.Set("externalid", "ext_m50")
		rows = f.oeeRows(t, f.key, args)
		if len(rows) != 1 || rows[0]["externalid"] != "ext_m50" {
			t.Fatalf("its machine on its own: %v", rows)
		}
		checkFigures(t, "ext_m50", rows[0], sc.Expected)
		// The site's total leaves the machine out too.
		all := f.oeeRows(t, f.key, url.Values{"site": {"3"}, "start": {"2024-03-04T06:00:00Z"}, "end": {"2024-03-04T08:00:00Z"}})
		byLoc := f.oeeRows(t, f.key, url.Values{"site": {"3"}, "start": {"2024-03-04T06:00:00Z"}, "end": {"2024-03-04T08:00:00Z"},
			"group_by": {"location"}})
		var sum, machine float64
		for _, r := range byLoc {
			sum += r["produced_quantity"].(float64)
			if r["externalid"] == "ext_m50" {
				machine = r["produced_quantity"].(float64)
			}
		}
		if got := all[0]["produced_quantity"].(float64); machine == 0 || got != sum-machine {
			t.Errorf("site total %v, want the locations' %v without the machine's %v", got, sum, machine)
		}
	})

	t.Run("coverage says which part of planned busy time periods account for", func(t *testing.T) {
		args := url.Values{"site": {"3"}, "start": {"2024-03-04T06:00:00Z"}, "end": {"2024-03-04T08:00:00Z"}}
		site := f.oeeRows(t, f.key, args)[0]
		args.Set("group_by", "location")
		var locs, unrecordedLocs, pbt, unrecorded float64
		for _, r := range f.oeeRows(t, f.key, args) {
			if r["externalid"] == "ext_m50" {
				continue // line 30 stands for it at site scope
			}
			locs++
			u := r["unrecorded_time"].(float64)
			if u > 0 {
				unrecordedLocs++
			}
			pbt += r["planned_busy_time"].(float64)
			unrecorded += u
			if r["externalid"] == "ext_17" {
				checkFigures(t, "ext_17 (no periods)", r, map[string]float64{"coverage": 0, "locations": 1, "locations_unrecorded": 1})
			}
			if r["externalid"] == "ext_11" {
				checkFigures(t, "ext_11", r, map[string]float64{"coverage": 1, "locations": 1, "locations_unrecorded": 0})
			}
		}
		if unrecordedLocs < 2 {
			t.Fatalf("%v locations with unrecorded time; the test wants some", unrecordedLocs)
		}
		checkFigures(t, "site", site, map[string]float64{"locations": locs, "locations_unrecorded": unrecordedLocs,
			"coverage": 1 - unrecorded/pbt, "unrecorded_time": unrecorded})
	})

	t.Run("parts recorded after now are not counted yet", func(t *testing.T) {
		sc, at := oeetest.Load(t, "02_scrap_rework"), f.played["02_scrap_rework"]
		// Now is 07:00:30: the parts 06:01 … 07:00 count, the 59 after
		// them are not made yet as far as the figures know.
		row := f.oeeAt(t, time.Date(2024, 3, 4, 7, 0, 30, 0, time.UTC), scenarioArgs(sc, at, "none"))
		checkFigures(t, "now 07:00:30", row, map[string]float64{"produced_quantity": 60, "good_quantity": 60,
			"ideal_production_time": 3600, "actual_production_time": 3630, "calendar_time": 3630})
		if row["performance_over_ideal"] != false {
			t.Errorf("performance_over_ideal %v", row["performance_over_ideal"])
		}
	})

	t.Run("ideal=current uses today's ideal cycle times", func(t *testing.T) {
		sc, at := oeetest.Load(t, "10_ideal_changed"), f.played["10_ideal_changed"]
		args := scenarioArgs(sc, at, "none")
		args.Set("ideal", "current")
		rows := f.oeeRows(t, f.key, args)
		// Master data here still says P1 60 s, P2 30 s.
		checkFigures(t, "ideal=current", rows[0], map[string]float64{"ideal_production_time": 120*60 + 89*30})
	})

	t.Run("xml", func(t *testing.T) {
		sc, at := oeetest.Load(t, "01_downtime_in_shift"), f.played["01_downtime_in_shift"]
		args := scenarioArgs(sc, at, "hour")
		args.Set("format", "xml")
		status, h, body := f.get(t, "/api/1.0/oee/?"+args.Encode(), f.key)
		if status != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), "application/xml") {
			t.Fatalf("status %d, %s", status, h.Get("Content-Type"))
		}
		var doc struct{ XMLName xml.Name }
		if err := xml.Unmarshal(body, &doc); err != nil || !strings.Contains(string(body), "<planned_busy_time>") {
			t.Fatalf("not XML with figures: %v: %.300s", err, body)
		}
		if n := strings.Count(string(body), "<availability>"); n != 8 {
			t.Errorf("%d rows in XML, want 8 hours", n)
		}
	})

	t.Run("site isolation", func(t *testing.T) {
		args := url.Values{"site": {"3"}, "start": {"2024-03-04T06:00:00Z"}, "end": {"2024-03-04T08:00:00Z"}}
		for _, key := range []string{f.keyA, f.keyB} { // sites 1 and 2
			env := f.getJSON(t, "/api/1.0/oee/?"+args.Encode(), key, http.StatusOK)
			if env.Success || env.Error != "site: no site 3" {
				t.Errorf("a key without site 3: success=%v error=%q", env.Success, env.Error)
			}
		}
		args.Set("site", "99")
		if env := f.getJSON(t, "/api/1.0/oee/?"+args.Encode(), f.key, http.StatusOK); env.Error != "site: no site 99" {
			t.Errorf("unknown site: %q (must read like a forbidden one)", env.Error)
		}
		if env := f.getJSON(t, "/api/1.0/oee/?"+args.Encode(), f.keyIngest, http.StatusForbidden); env.Success {
			t.Error("ingest-only key read OEE")
		}
		f.getJSON(t, "/api/1.0/oee/?"+args.Encode(), "", http.StatusUnauthorized)
	})

	t.Run("bad arguments", func(t *testing.T) {
		ok := "site=3&start=2024-03-04T06:00:00Z&end=2024-03-04T08:00:00Z"
		for _, c := range []struct{ query, arg string }{
			{"start=2024-03-04T06:00:00Z&end=2024-03-04T08:00:00Z", "site"},
			{"site=x&start=2024-03-04T06:00:00Z&end=2024-03-04T08:00:00Z", "site"},
			{"site=3&end=2024-03-04T08:00:00Z", "start"},
			{"site=3&start=yesterday&end=2024-03-04T08:00:00Z", "start"},
			{"site=3&start=2024-03-04T08:00:00Z&end=2024-03-04T06:00:00Z", "end"},
			{"site=3&start=2023-01-01T00:00:00Z&end=2024-03-04T06:00:00Z", "end"},
			{ok + "&bucket=fortnight", "bucket"},
			{ok + "&group_by=colour", "group_by"},
			{ok + "&line=11&machine=40", "line, machine, externalid"},
			{ok + "&line=999", "line"},
			{ok + "&externalid=nope", "externalid"},
			{ok + "&product=P9", "product"},
			{ok + "&limit=5", "limit"},
			{ok + "&ideal=yesterday", "ideal"},
			{"site=3&start=2024-01-01T00:00:00Z&end=2024-12-31T00:00:00Z&bucket=hour&group_by=location", "bucket, group_by"},
		} {
			env := f.getJSON(t, "/api/1.0/oee/?"+c.query, f.key, http.StatusOK)
			if env.Success || !strings.HasPrefix(env.Error, c.arg+":") {
				t.Errorf("%s: success=%v error=%q, want an error naming %s", c.query, env.Success, env.Error, c.arg)
			}
		}
	})

	t.Run("pitches", func(t *testing.T) {
		at := f.played["02_scrap_rework"]
		env := f.getJSON(t, fmt.Sprintf("/api/1.0/pitches/?line=%d&pitch_start__lt=2024-03-04T08:00:00Z&order_by=pitch_start&fields=pitch_start,pitch_end,"+
			"planned_production_minutes,actual,scrap,overall_equipment_effectiveness", at.line), f.key, http.StatusOK)
		rows := records(t, env)
		if len(rows) != 2 {
			t.Fatalf("%d pitches, want 2: %v", len(rows), rows)
		}
		num := func(v any) float64 {
			x, _ := v.(json.Number).Float64()
			return x
		}
		if rows[0]["pitch_start"] != "2024-03-04 06:00:00.000" || rows[1]["pitch_end"] != "2024-03-04 08:00:00.000" {
			t.Errorf("pitch times: %v", rows)
		}
		// Parts 06:01 … 07:59, one a minute: 59 in the first hour, 60 in
		// the second (10 of them scrap, 5 rework).
		want := [][3]float64{{60, 59, 0}, {60, 60, 10}}
		for i, w := range want {
			if num(rows[i]["planned_production_minutes"]) != w[0] || num(rows[i]["actual"]) != w[1] || num(rows[i]["scrap"]) != w[2] {
				t.Errorf("pitch %d: %v, want planned %v actual %v scrap %v", i, rows[i], w[0], w[1], w[2])
			}
		}
		// 07:00–08:00: 60 parts × 60 s ideal over 3600 s running, 45 good.
		if g, w := num(rows[1]["overall_equipment_effectiveness"]), 45.0/60; math.Abs(g-w) > 1e-9 {
			t.Errorf("oee of the 07:00 pitch = %v, want %v", g, w)
		}
		// Paging and filters like every record area; other sites' pitches
		// are invisible.
		env = f.getJSON(t, "/api/1.0/pitches/?order_by=-pitch_start&limit=1&offset=1&actual__gte=1&site=3", f.key, http.StatusOK)
		if rows := records(t, env); len(rows) != 1 {
			t.Fatalf("paged: %v", rows)
		}
		if rows := records(t, f.getJSON(t, "/api/1.0/pitches/?site=3", f.keyB, http.StatusOK)); len(rows) != 0 {
			t.Errorf("site 2's key sees %d pitches of site 3", len(rows))
		}
	})
}
