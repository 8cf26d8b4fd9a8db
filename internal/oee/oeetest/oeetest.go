// Package oeetest is test support for the OEE reference scenarios in
// internal/oee/testdata/scenarios: their JSON format, loading them
// (Load, LoadAll) and replaying their events through the period state
// machine (Replay), which yields the parts and every period row version
// the machine wrote. The oee package checks its figures against the
// scenarios; queryapi stores the replayed parts and periods and checks
// what its OEE endpoint answers. Only tests import it.
package oeetest

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"testing"
	"time"

	"github.com/takt/takt/internal/period"
)

// Scenario is one reference case: part events, shifts, reasons and the
// hand-computed figures (derivation in the .md file of the same name).
type Scenario struct {
	// File is the path the scenario was read from.
	File     string     `json:"-"`
	Name     string     `json:"name"`
	Timezone string     `json:"timezone"`
	Location period.Key `json:"location"`
	Shifts   []Shift    `json:"shifts"`
	// Products maps a product code to its ideal cycle time (s).
	Products map[string]float64 `json:"products"`
	Window   struct {
		Start time.Time `json:"start"`
		End   time.Time `json:"end"`
	} `json:"window"`
	Now time.Time `json:"now"`
	// Bucket is an oee.Bucket name (a string here: oee's own tests
	// import this package).
	Bucket     string `json:"bucket"`
	Buckets    int    `json:"buckets"`
	DayBuckets int    `json:"day_buckets"`
	// StopThreshold is the location's stop threshold in seconds (0:
	// derived from the products).
	StopThreshold float64 `json:"stop_threshold"`
	// Product, when set, asks for the figures of that product only (a
	// product code; the OEE endpoint's product argument).
	Product string `json:"product"`
	// Ideal is the OEE endpoint's ideal argument ("" or "stored": the
	// ideal cycle time each part was processed with; "current": today's).
	Ideal  string  `json:"ideal"`
	Events []Event `json:"events"`
	// Expected maps a figure's JSON name to its value (a flag: 0 or 1).
	Expected map[string]float64 `json:"expected"`
	// ExpectedNull names the figures the endpoint answers as null.
	ExpectedNull []string `json:"expected_null"`
}

// Shift is a shift of the scenario's calendar, in period.ParseShift's
// terms.
type Shift struct {
	Name  string `json:"name"`
	Start string `json:"start"`
	End   string `json:"end"`
	Days  string `json:"days"`
}

// Event is one step of a scenario; exactly one field is set.
type Event struct {
	Series *Series     `json:"series"`
	Tick   *time.Time  `json:"tick"`
	Assign *Assignment `json:"assign"`
	// Ideal changes a product's ideal cycle time in master data.
	Ideal *IdealChange `json:"ideal"`
	// DeleteProduct deletes a product (by code) from master data.
	DeleteProduct string `json:"delete_product"`
}

// IdealChange sets the ideal cycle time (seconds) of a product.
type IdealChange struct {
	Product string  `json:"product"`
	Seconds float64 `json:"seconds"`
}

// Series is Count parts, one every EveryS seconds from From. Quantity 0
// means 1 and an empty Quality means "good".
type Series struct {
	From      time.Time `json:"from"`
	EveryS    float64   `json:"every_s"`
	Count     int       `json:"count"`
	Product   string    `json:"product"`
	CycleTime float64   `json:"cycle_time"`
	Quality   string    `json:"quality"`
	Quantity  uint32    `json:"quantity"`
}

// Assignment gives the down period starting at Start a reason.
type Assignment struct {
	Start   time.Time `json:"start"`
	Reason  uint64    `json:"reason"`
	Planned bool      `json:"planned"`
}

// Dir returns the directory of the scenarios, found from this source
// file's location (or, in a binary built with -trimpath, by walking up
// from the working directory to the module root).
func Dir() string {
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		return filepath.Join(filepath.Dir(file), "..", "testdata", "scenarios")
	}
	dir, err := os.Getwd()
	if err != nil {
		return filepath.Join("internal", "oee", "testdata", "scenarios")
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "internal", "oee", "testdata", "scenarios")
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return filepath.Join("internal", "oee", "testdata", "scenarios")
		}
		dir = parent
	}
}

// Read parses the scenario in file.
func Read(file string) (*Scenario, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	sc := &Scenario{File: file}
	if err := json.Unmarshal(b, sc); err != nil {
		return nil, fmt.Errorf("scenario %s: %w", file, err)
	}
	return sc, nil
}

// Load reads the scenario called name (its file name without .json) from
// Dir, failing t if it cannot.
func Load(t testing.TB, name string) *Scenario {
	t.Helper()
	sc, err := Read(filepath.Join(Dir(), name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

// LoadAll reads every scenario (*.json) in dir, by file name, failing t
// if one cannot be read.
func LoadAll(t testing.TB, dir string) []*Scenario {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	var out []*Scenario
	for _, f := range files {
		sc, err := Read(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, sc)
	}
	return out
}

// Calendar returns the scenario's zone and its calendar of shifts.
func (sc *Scenario) Calendar() (*time.Location, *period.Calendar, error) {
	loc, err := time.LoadLocation(sc.Timezone)
	if err != nil {
		return nil, nil, err
	}
	cal := &period.Calendar{Loc: loc}
	for _, s := range sc.Shifts {
		sh, err := period.ParseShift(s.Name, s.Start, s.End, s.Days)
		if err != nil {
			return nil, nil, err
		}
		cal.Shifts = append(cal.Shifts, sh)
	}
	return loc, cal, nil
}

// Part is one part of a replayed series, with the series' defaults
// applied.
type Part struct {
	RecordedMs int64
	Product    string
	// IdealCycleTime is the product's ideal cycle time when the part was
	// processed.
	IdealCycleTime float64
	// CycleTime is the reported cycle time; 0 means none was reported.
	CycleTime float64
	Quantity  uint32
	Quality   string
	// Outcome is what the part did to the machine, Class how it counts.
	Outcome period.Outcome
	Class   period.Class
}

// Replayed is a scenario played through a period.Machine.
type Replayed struct {
	Loc      *time.Location
	Calendar *period.Calendar
	// Machine is the state machine after the last event.
	Machine *period.Machine
	// Parts are the parts of every series, in event order.
	Parts []Part
	// Rows are the period row versions the machine returned, in the
	// order it returned them (what the processor writes).
	Rows []period.Row
}

// Replay plays sc's events through a new period.Machine for key, using
// the scenario's calendar and stop threshold. A tick is applied until the
// machine has caught up with it. It fails on a series of a product the
// scenario does not define (or has deleted) and on an assignment the
// machine refuses.
func Replay(sc *Scenario, key period.Key) (*Replayed, error) {
	loc, cal, err := sc.Calendar()
	if err != nil {
		return nil, err
	}
	cfg := period.Config{Calendar: cal, Threshold: period.Seconds(sc.StopThreshold)}
	r := &Replayed{Loc: loc, Calendar: cal, Machine: period.New(key, cfg)}
	products := maps.Clone(sc.Products)
	for _, ev := range sc.Events {
		switch {
		case ev.Series != nil:
			s := ev.Series
			ideal, ok := products[s.Product]
			if !ok {
				return nil, fmt.Errorf("unknown product %q", s.Product)
			}
			q, quality := s.Quantity, s.Quality
			if q == 0 {
				q = 1
			}
			if quality == "" {
				quality = "good"
			}
			for i := range s.Count {
				rec := s.From.UnixMilli() + int64(math.Round(float64(i)*s.EveryS*1000))
				p := period.Part{RecordedMs: rec, CycleTime: s.CycleTime, HasCycleTime: s.CycleTime > 0,
					IdealCycleTime: ideal, Quantity: q}
				rows, out := r.Machine.Part(p)
				r.Rows = append(r.Rows, rows...)
				r.Parts = append(r.Parts, Part{RecordedMs: rec, Product: s.Product, IdealCycleTime: ideal,
					CycleTime: s.CycleTime, Quantity: q, Quality: quality, Outcome: out, Class: r.Machine.Classify(p, out)})
			}
		case ev.Tick != nil:
			t := ev.Tick.UnixMilli()
			for r.Machine.Clock() < t {
				r.Rows = append(r.Rows, r.Machine.Tick(t)...)
			}
		case ev.Assign != nil:
			rows, err := r.Machine.Assign(period.PeriodID(key, ev.Assign.Start.UnixMilli()),
				period.Reason{ID: ev.Assign.Reason, Planned: ev.Assign.Planned})
			if err != nil {
				return nil, fmt.Errorf("assign: %w", err)
			}
			r.Rows = append(r.Rows, rows...)
		case ev.Ideal != nil:
			if _, ok := products[ev.Ideal.Product]; !ok {
				return nil, fmt.Errorf("ideal of unknown product %q", ev.Ideal.Product)
			}
			products[ev.Ideal.Product] = ev.Ideal.Seconds
		case ev.DeleteProduct != "":
			delete(products, ev.DeleteProduct)
		}
	}
	return r, nil
}

// Figures returns the figures of e and its ratios by JSON name, a flag as
// 0 or 1: what a scenario's expected figures are compared with.
func Figures(t testing.TB, vs ...any) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, v := range vs {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		for k, x := range m {
			if n, ok := Number(x); ok {
				out[k] = n
			}
		}
	}
	return out
}

// Number turns a figure decoded from JSON into a number: a flag is 0 or
// 1. It reports false for null and for what is not a figure.
func Number(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case bool:
		if x {
			return 1, true
		}
		return 0, true
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	}
	return 0, false
}
