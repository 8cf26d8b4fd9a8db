package oee

import (
	"math"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/takt/takt/internal/oee/oeetest"
	"github.com/takt/takt/internal/period"
)

func TestScenarios(t *testing.T) {
	scenarios := oeetest.LoadAll(t, "testdata/scenarios")
	if len(scenarios) < 6 {
		t.Fatalf("want at least six scenarios, found %d", len(scenarios))
	}
	for _, sc := range scenarios {
		t.Run(strings.TrimSuffix(filepath.Base(sc.File), ".json"), func(t *testing.T) {
			if _, err := os.Stat(strings.TrimSuffix(sc.File, ".json") + ".md"); err != nil {
				t.Errorf("scenario without its derivation: %v", err)
			}
			runScenario(t, sc)
		})
	}
}

func runScenario(t *testing.T, sc *oeetest.Scenario) {
	played, err := oeetest.Replay(sc, sc.Location)
	if err != nil {
		t.Fatal(err)
	}
	loc, cal, m := played.Loc, played.Calendar, played.Machine
	// table is what a ReplacingMergeTree(version) read with FINAL returns.
	table := map[uint64]period.Row{}
	for _, r := range played.Rows {
		if old, ok := table[r.ID]; ok && old.Version >= r.Version {
			t.Fatalf("period %d: version %d after %d", r.ID, r.Version, old.Version)
		}
		table[r.ID] = r
	}
	var parts []Part
	for _, p := range played.Parts {
		if sc.Product != "" && p.Product != sc.Product {
			continue
		}
		parts = append(parts, Part{Location: sc.Location.ID, RecordedMs: p.RecordedMs, Quantity: p.Quantity, Quality: p.Quality,
			IdealCycleTime: p.IdealCycleTime, Class: p.Class})
	}
	var periods []Period
	var live []period.Row
	for _, r := range table {
		if !r.Deleted {
			live = append(live, r)
			periods = append(periods, Period{Location: sc.Location.ID, State: r.State, Start: r.Start, End: r.End, Open: r.Open,
				FirstOfStop: r.FirstOfStop})
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
	rows := ComputeBuckets(Bucket(sc.Bucket), w, loc, cal, sc.Now.UnixMilli(), periods, parts)
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
	figures := oeetest.Figures(t, sum, sum.Ratios())
	for _, k := range sc.ExpectedNull {
		// Figures the API leaves out for this question (a product
		// filter): the pure computation has them, the scenario does
		// not say what they are.
		delete(figures, k)
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
