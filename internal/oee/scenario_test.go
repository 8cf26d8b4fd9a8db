package oee

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/takt/takt/internal/period"
)

// scenario is one reference case in testdata/scenarios: part events,
// shifts, reasons and the hand-computed figures (derivation in the .md file
// of the same name).
type scenario struct {
	Name     string     `json:"name"`
	Timezone string     `json:"timezone"`
	Location period.Key `json:"location"`
	Shifts   []struct {
		Name  string `json:"name"`
		Start string `json:"start"`
		End   string `json:"end"`
		Days  string `json:"days"`
	} `json:"shifts"`
	// Products maps a product code to its ideal cycle time (s).
	Products map[string]float64 `json:"products"`
	Window   struct {
		Start time.Time `json:"start"`
		End   time.Time `json:"end"`
	} `json:"window"`
	Now        time.Time `json:"now"`
	Bucket     Bucket    `json:"bucket"`
	Buckets    int       `json:"buckets"`
	DayBuckets int       `json:"day_buckets"`
	Events     []struct {
		Series *struct {
			From      time.Time `json:"from"`
			EveryS    float64   `json:"every_s"`
			Count     int       `json:"count"`
			Product   string    `json:"product"`
			CycleTime float64   `json:"cycle_time"`
			Quality   string    `json:"quality"`
			Quantity  uint32    `json:"quantity"`
		} `json:"series"`
		Tick   *time.Time `json:"tick"`
		Assign *struct {
			Start   time.Time `json:"start"`
			Reason  uint64    `json:"reason"`
			Planned bool      `json:"planned"`
		} `json:"assign"`
	} `json:"events"`
	Expected map[string]float64 `json:"expected"`
}

func TestScenarios(t *testing.T) {
	files, err := filepath.Glob("testdata/scenarios/*.json")
	if err != nil || len(files) < 6 {
		t.Fatalf("want at least six scenarios, found %d (%v)", len(files), err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".json"), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var sc scenario
			if err := json.Unmarshal(b, &sc); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(strings.TrimSuffix(f, ".json") + ".md"); err != nil {
				t.Errorf("scenario without its derivation: %v", err)
			}
			runScenario(t, &sc)
		})
	}
}

func runScenario(t *testing.T, sc *scenario) {
	loc, err := time.LoadLocation(sc.Timezone)
	if err != nil {
		t.Fatal(err)
	}
	cal := &period.Calendar{Loc: loc}
	for _, s := range sc.Shifts {
		sh, err := period.ParseShift(s.Name, s.Start, s.End, s.Days)
		if err != nil {
			t.Fatal(err)
		}
		cal.Shifts = append(cal.Shifts, sh)
	}
	m := period.New(sc.Location, period.Config{Calendar: cal})
	// table is what a ReplacingMergeTree(version) read with FINAL returns.
	table := map[uint64]period.Row{}
	write := func(rows []period.Row) {
		for _, r := range rows {
			if old, ok := table[r.ID]; ok && old.Version >= r.Version {
				t.Fatalf("period %d: version %d after %d", r.ID, r.Version, old.Version)
			}
			table[r.ID] = r
		}
	}
	var parts []Part
	for _, ev := range sc.Events {
		switch {
		case ev.Series != nil:
			s := ev.Series
			ideal, ok := sc.Products[s.Product]
			if !ok {
				t.Fatalf("unknown product %q", s.Product)
			}
			q, quality := s.Quantity, s.Quality
			if q == 0 {
				q = 1
			}
			if quality == "" {
				quality = "good"
			}
			for i := range s.Count {
				rec := s.From.UnixMilli() + int64(float64(i)*s.EveryS*1000)
				rows, out := m.Part(period.Part{RecordedMs: rec, CycleTime: s.CycleTime, HasCycleTime: s.CycleTime > 0, IdealCycleTime: ideal})
				if out == period.TooLate {
					t.Fatalf("part at %v too late", time.UnixMilli(rec).UTC())
				}
				write(rows)
				parts = append(parts, Part{Location: sc.Location.ID, RecordedMs: rec, Quantity: q, Quality: quality, IdealCycleTime: ideal})
			}
		case ev.Tick != nil:
			write(m.Tick(ev.Tick.UnixMilli()))
		case ev.Assign != nil:
			rows, err := m.Assign(period.PeriodID(sc.Location, ev.Assign.Start.UnixMilli()),
				period.Reason{ID: ev.Assign.Reason, Planned: ev.Assign.Planned})
			if err != nil {
				t.Fatalf("assign: %v", err)
			}
			write(rows)
		}
	}
	var periods []Period
	var live []period.Row
	for _, r := range table {
		if !r.Deleted {
			live = append(live, r)
			periods = append(periods, Period{Location: sc.Location.ID, State: r.State, Start: r.Start, End: r.End, Open: r.Open})
		}
	}
	sort.Slice(live, func(i, j int) bool { return live[i].Start < live[j].Start })
	// The machine keeps only the rows of its lateness window; the older
	// ones are final.
	got := m.Rows()
	for len(live) > 0 && len(got) > 0 && live[0].Start < got[0].Start {
		live = live[1:]
	}
	if !reflect.DeepEqual(live, got) {
		t.Errorf("rows as a FINAL reader sees them differ from the machine's:\n%v\n%v", live, got)
	}
	w := Window{Start: sc.Window.Start.UnixMilli(), End: sc.Window.End.UnixMilli()}
	rows := ComputeBuckets(sc.Bucket, w, loc, cal, sc.Now.UnixMilli(), periods, parts)
	if sc.Buckets > 0 && len(rows) != sc.Buckets {
		t.Errorf("%d %s buckets, want %d", len(rows), sc.Bucket, sc.Buckets)
	}
	if sc.DayBuckets > 0 {
		if n := len(Buckets(Day, w, loc, cal)); n != sc.DayBuckets {
			t.Errorf("%d day buckets, want %d", n, sc.DayBuckets)
		}
	}
	var sum Elements
	for _, r := range rows {
		sum.Add(r.Elements)
	}
	figures := map[string]float64{}
	for _, v := range []any{sum, sum.Ratios()} {
		b, _ := json.Marshal(v)
		var mm map[string]float64
		_ = json.Unmarshal(b, &mm)
		for k, x := range mm {
			figures[k] = x
		}
	}
	if len(sc.Expected) != len(figures) {
		t.Errorf("expected has %d figures, computed %d", len(sc.Expected), len(figures))
	}
	for k, want := range sc.Expected {
		g, ok := figures[k]
		if !ok {
			t.Errorf("unknown figure %q", k)
			continue
		}
		if math.Abs(g-want) > 1e-9*math.Max(1, math.Abs(want)) {
			t.Errorf("%s = %v, want %v", k, g, want)
		}
	}
}
