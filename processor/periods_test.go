package processor

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/period"
	"github.com/takt/takt/internal/wire"
)

// TestLocationConfigs: a line's own shifts replace its site's for it and
// its machines, the threshold comes from the location, a zone that does not
// load falls back to UTC, and the fingerprint changes exactly when the
// configuration does.
func TestLocationConfigs(t *testing.T) {
	pm := chstore.PeriodMaster{
		Locations: []chstore.PeriodLocation{
			{Kind: "line", ID: 1, Site: 1, Line: 1, ExternalID: "a", StopThreshold: 120},
			{Kind: "line", ID: 2, Site: 1, Line: 2, ExternalID: "b"},
			{Kind: "machine", ID: 7, Site: 1, Line: 2, ExternalID: "m"},
			{Kind: "line", ID: 3, Site: 2, Line: 3, ExternalID: "c"},
			{Kind: "line", ID: 4, Site: 1, Line: 4, ExternalID: "d", StopThreshold: 64.1},
		},
		Zones: map[uint64]string{1: "Europe/Berlin", 2: "Not/AZone"},
		Shifts: []chstore.SiteShift{
			{Site: 1, OEEShift: chstore.OEEShift{Line: 0, Code: "S", Start: "06:00", End: "14:00", Day: ""}},
			{Site: 1, OEEShift: chstore.OEEShift{Line: 2, Code: "L", Start: "22:00", End: "06:00", Day: "mon"}},
			{Site: 2, OEEShift: chstore.OEEShift{Line: 0, Code: "U", Start: "08:00", End: "16:00", Day: ""}},
		},
	}
	var warnings int
	lc := buildLocationConfigs(pm, 4, func(string, ...any) { warnings++ })
	if lc.gen != 4 {
		t.Fatalf("gen %d", lc.gen)
	}
	line1 := lc.byKey[period.Key{Kind: "line", ID: 1}]
	if line1.cfg.Threshold != 120*time.Second || len(line1.cfg.Calendar.Shifts) != 1 || line1.cfg.Calendar.Shifts[0].Name != "S" ||
		line1.cfg.Calendar.Loc.String() != "Europe/Berlin" {
		t.Errorf("line 1: %+v", line1.cfg)
	}
	line2, machine := lc.byKey[period.Key{Kind: "line", ID: 2}], lc.byKey[period.Key{Kind: "machine", ID: 7}]
	if line2.cfg.Threshold != 0 || line2.cfg.Calendar.Shifts[0].Name != "L" || machine.cfg.Calendar != line2.cfg.Calendar {
		t.Errorf("line 2 / its machine: %+v / %+v", line2.cfg, machine.cfg)
	}
	if line1.fp == line2.fp || line2.fp != machine.fp {
		t.Errorf("fingerprints: %q %q %q", line1.fp, line2.fp, machine.fp)
	}
	if thr := lc.byKey[period.Key{Kind: "line", ID: 4}].cfg.Threshold; thr != 64100*time.Millisecond {
		t.Errorf("line 4: stop_threshold 64.1 s is %v, want 1m4.1s", thr)
	}
	line3 := lc.byKey[period.Key{Kind: "line", ID: 3}]
	if warnings != 1 || line3.cfg.Calendar.Loc != time.UTC {
		t.Errorf("bad zone: %d warnings, zone %v", warnings, line3.cfg.Calendar.Loc)
	}
	if unknown := lc.byKey[period.Key{Kind: "line", ID: 99}]; unknown.cfg.Calendar != nil || unknown.fp != "" {
		t.Errorf("unknown location: %+v", unknown)
	}
	// Same master data: same fingerprints; a changed shift: another one.
	again := buildLocationConfigs(pm, 5, func(string, ...any) {})
	if again.byKey[period.Key{Kind: "line", ID: 1}].fp != line1.fp {
		t.Error("fingerprint not stable")
	}
	pm.Shifts[0].End = "15:00"
	changed := buildLocationConfigs(pm, 6, func(string, ...any) {})
	if changed.byKey[period.Key{Kind: "line", ID: 1}].fp == line1.fp || changed.byKey[period.Key{Kind: "line", ID: 2}].fp != line2.fp {
		t.Error("a site shift change must change the site calendar's fingerprint only")
	}
}

// TestPeriodSetTake: a flush saves the locations that returned rows, and
// every dirty one once one has waited the save interval or on a
// handover, each once with its outbox; the checkpoint is the oldest unsaved change, and
// versions of saved states only grow.
func TestPeriodSetTake(t *testing.T) {
	newLoc := func(id uint64) *locState {
		k := period.Key{Kind: "line", ID: id}
		return &locState{key: k, m: period.New(k, period.Config{})}
	}
	t0 := time.Unix(1_700_000_000, 0)
	var ps periodSet
	rowsLoc, silent := newLoc(1), newLoc(2)
	rowsLoc.version = uint64(t0.Add(time.Hour).UnixNano()) // a previous owner's clock ran ahead
	rows, _ := rowsLoc.m.Part(period.Part{RecordedMs: 1_700_000_000_000})
	ps.touch(rowsLoc, rows, 100, t0)
	ps.touch(rowsLoc, nil, 101, t0)
	silent.m.Part(period.Part{RecordedMs: 1_700_000_000_000})
	ps.touch(silent, nil, 102, t0) // as if the part had changed it without rows
	if ps.work() != 1 {
		t.Fatalf("work %d, want 1 (one location with rows)", ps.work())
	}
	first := rowsLoc.version
	got, cp := ps.take(false, t0.Add(time.Second), 150)
	if len(got) != 1 || got[0].key != rowsLoc.key || len(got[0].outbox) != len(rows) || got[0].version != first+1 ||
		rowsLoc.dirty || rowsLoc.outbox != nil {
		t.Fatalf("take: %+v", got)
	}
	if cp != 102 || !silent.dirty || ps.work() != 0 {
		t.Fatalf("checkpoint %d (want 102, the silent location's first change), work %d", cp, ps.work())
	}
	// Not yet due, then due after the interval.
	ps.checkDue(t0.Add(5*time.Second), 10*time.Second)
	if ps.work() != 0 {
		t.Fatal("due before the interval")
	}
	ps.checkDue(t0.Add(10*time.Second), 10*time.Second)
	if ps.work() != 1 {
		t.Fatal("not due after the interval")
	}
	got, cp = ps.take(false, t0.Add(10*time.Second), 170)
	if len(got) != 1 || got[0].key != silent.key || cp != 170 || len(ps.dirty) != 0 {
		t.Fatalf("due take: %+v, checkpoint %d", got, cp)
	}
	// A handover saves everything at once.
	ps.touch(silent, nil, 180, t0.Add(11*time.Second))
	ps.markDue()
	if got, cp = ps.take(true, t0.Add(11*time.Second), 190); len(got) != 1 || cp != 190 {
		t.Fatalf("handover take: %+v, checkpoint %d", got, cp)
	}
	if got, _ := ps.take(false, t0.Add(12*time.Second), 190); got != nil {
		t.Fatalf("nothing dirty, took %+v", got)
	}
}

// BenchmarkLocationMemory reports what the processor holds per location:
// its locState and machine after an hour of parts every 30 s with one
// stop, in a partition of 10,000 locations, after a flush took their
// states (so no outbox is held).
//
//	go test -run '^$' -bench LocationMemory -benchtime 1x ./processor/
func BenchmarkLocationMemory(b *testing.B) {
	const n = 10_000
	c := testConsumer(b)
	start := time.Date(2024, 3, 4, 6, 0, 0, 0, time.UTC).UnixMilli()
	for range b.N {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		st := &partState{}
		now := time.Now()
		for i := range n {
			p := wire.Part{Site: 1, LocationKind: "line", LocationID: uint64(i + 1), ExternalID: fmt.Sprint("line_", i),
				Quantity: 1, Quality: wire.QualityGood}
			for t := int64(0); t < 3600_000; t += 30_000 {
				if t >= 1200_000 && t < 1800_000 {
					continue
				}
				p.RecordedAtMs = start + t
				c.feedPart(st, &p, 25, int64(i), now)
			}
		}
		st.periods.take(true, now, n)
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "heap-B/location")
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)*10_000/n/(1<<20), "MiB/10k-locations")
		runtime.KeepAlive(st)
	}
}
