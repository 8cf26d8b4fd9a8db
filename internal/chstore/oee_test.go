package chstore_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/testenv"
)

// TestOEEPartsRollupEqualsRaw sums parts per segment with cuts off the
// whole hours (window edges, a half-hour boundary) through the rollup plus
// raw edges, and checks the result equals a read of the raw table alone
// and a sum computed here: counted parts, their ideal time, and the parts
// made outside the shifts or too late apart.
func TestOEEPartsRollupEqualsRaw(t *testing.T) {
	s, _ := testenv.ClickHouse(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	base := time.Date(2024, 3, 4, 5, 0, 0, 0, time.UTC).UnixMilli()
	qualities := []string{"good", "good", "scrap", "rework"}
	type key struct {
		kind    string
		loc     uint64
		product uint64
		seg     int
	}
	cuts := []int64{
		base + 17*60_000 + 123,      // 05:17:00.123
		base + 3_600_000,            // 06:00
		base + 5_400_000,            // 06:30
		base + 3*3_600_000,          // 08:00
		base + 5*3_600_000 + 59_999, // 10:00:59.999
	}
	type sums struct {
		produced, unscheduled, late uint64
		ideal                       float64
	}
	want := map[key]sums{}
	const n = 4000
	var b chstore.PartsBlock
	for i := range n {
		r := samplePartRow(int32(i%2), int64(i))
		r.LocationID = uint64(1 + i%3)
		r.LocationKind = []string{"line", "machine"}[i%2]
		r.ProductID = uint64(1 + i%2)
		r.Quality = qualities[i%len(qualities)]
		r.Quantity = uint32(1 + i%4)
		r.RecordedMs = base + int64(i)*5_437 // ~6 h
		r.IdealCycleTime = float64(10 + i%3)
		switch {
		case i%9 == 0:
			r.OEEClass = "unscheduled"
		case i%11 == 0:
			r.OEEClass = "late"
		}
		if err := b.Append(&r); err != nil {
			t.Fatal(err)
		}
		if b.Len() == 900 || i == n-1 {
			if err := s.InsertParts(ctx, &b); err != nil {
				t.Fatal(err)
			}
			b.Reset()
		}
		if r.RecordedMs >= cuts[0] && r.RecordedMs < cuts[len(cuts)-1] {
			seg := 0
			for seg+1 < len(cuts) && cuts[seg+1] <= r.RecordedMs {
				seg++
			}
			k := key{r.LocationKind, r.LocationID, r.ProductID, seg}
			w := want[k]
			switch r.OEEClass {
			case "unscheduled":
				w.unscheduled += uint64(r.Quantity)
			case "late":
				w.late += uint64(r.Quantity)
			default:
				w.produced += uint64(r.Quantity)
				w.ideal += r.IdealCycleTime * float64(r.Quantity)
			}
			want[k] = w
		}
	}
	norm := func(rows []chstore.OEEPartsRow) map[key]sums {
		m := map[key]sums{}
		for _, r := range rows {
			if r.Produced != r.Good+r.Scrap+r.Rework {
				t.Fatalf("row %+v: produced is not good + scrap + rework", r)
			}
			if r.UnknownIdeal != 0 {
				t.Fatalf("row %+v: parts stored with an ideal cycle time counted without one", r)
			}
			k := key{r.Kind, r.Location, r.Product, r.Segment}
			w := m[k]
			w.produced += r.Produced
			w.unscheduled += r.Unscheduled
			w.late += r.Late
			w.ideal += r.IdealTime
			m[k] = w
		}
		return m
	}
	all := chstore.OEEScope{Site: 1, All: true}
	raw, err := s.OEEParts(ctx, all, cuts, true)
	if err != nil {
		t.Fatal(err)
	}
	roll, err := s.OEEParts(ctx, all, cuts, false)
	if err != nil {
		t.Fatal(err)
	}
	sortRows := func(rs []chstore.OEEPartsRow) {
		slices.SortFunc(rs, func(a, b chstore.OEEPartsRow) int {
			if c := strings.Compare(a.Kind, b.Kind); c != 0 {
				return c
			}
			if a.Location != b.Location {
				return int(a.Location) - int(b.Location)
			}
			if a.Product != b.Product {
				return int(a.Product) - int(b.Product)
			}
			return a.Segment - b.Segment
		})
	}
	sortRows(raw)
	sortRows(roll)
	if len(raw) == 0 || !reflect.DeepEqual(raw, roll) {
		t.Fatalf("rollup + raw edges differ from raw:\nraw  %v\nroll %v", raw, roll)
	}
	if got := norm(roll); !reflect.DeepEqual(got, want) {
		t.Fatalf("segment sums differ from the parts written:\ngot  %v\nwant %v", got, want)
	}
	// A window inside one hour reads the parts of its id ranges alone;
	// ranges rolled up twice (the migration's backfill beside the view)
	// change nothing.
	short := []int64{cuts[0] + 60_000, cuts[0] + 1_800_000}
	if err := s.Exec(ctx, `INSERT INTO parts_hour_ranges (site, hour, partition, min_id, max_id)
		SELECT site, toDateTime(intDiv(toUInt32(recorded_at), 3600) * 3600) AS h, partition, minState(id), maxState(id)
		FROM parts GROUP BY site, h, partition`); err != nil {
		t.Fatal(err)
	}
	for _, w := range [][]int64{short, cuts} {
		rawShort, err := s.OEEParts(ctx, all, w, true)
		if err != nil {
			t.Fatal(err)
		}
		byTime, err := s.OEEParts(ctx, all, w, false)
		if err != nil {
			t.Fatal(err)
		}
		sortRows(rawShort)
		sortRows(byTime)
		if !reflect.DeepEqual(rawShort, byTime) {
			t.Fatalf("window %v: the ranged read differs from parts:\nraw  %v\ngot  %v", w, rawShort, byTime)
		}
	}
	// A scope of one machine and one product.
	one, err := s.OEEParts(ctx, chstore.OEEScope{Site: 1, Machines: []uint64{2}, Product: 2}, cuts, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range one {
		if r.Kind != "machine" || r.Location != 2 || r.Product != 2 {
			t.Fatalf("scope not applied: %+v", r)
		}
	}
	if len(one) == 0 {
		t.Fatal("no rows for machine 2, product 2")
	}
}

// TestOEEPartsStoredBeforeIdeals: parts stored before migration 0025 count,
// with their product's ideal cycle time as it was when the migration ran;
// parts stored since carry their own. Editing the product afterwards
// changes neither. The rollups (old parts: parts_hourly minus
// parts_oee_hourly) and the raw table agree.
func TestOEEPartsStoredBeforeIdeals(t *testing.T) {
	cfg := testenv.ClickHouseConfig(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := chstore.Open(ctx, cfg, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ms, err := chstore.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	migrate := func(from, to uint32) {
		t.Helper()
		for _, m := range ms {
			if m.Version < from || m.Version >= to {
				continue
			}
			for _, st := range m.Statements {
				if err := s.Exec(ctx, st); err != nil {
					t.Fatalf("migration %d: %v", m.Version, err)
				}
			}
		}
	}
	migrate(0, 25)
	audit := chstore.Audit{CreatedBy: "test", LastUpdatedBy: "test"}
	if err := s.PutProduct(ctx, chstore.Product{ID: 7, Site: 1, Code: "P7", IdealCycleTime: 20, Audit: audit}); err != nil {
		t.Fatal(err)
	}
	base := time.Date(2024, 3, 4, 6, 0, 0, 0, time.UTC)
	// Two part events in the schema before 0025: 06:10:30 (an edge hour
	// below) and 06:30.
	for i, at := range []time.Time{base.Add(10*time.Minute + 30*time.Second), base.Add(30 * time.Minute)} {
		if err := s.Exec(ctx, fmt.Sprintf(`INSERT INTO parts (id, event_id, site, location_kind, location_id, externalid,
			product_id, product_code, product_reported, product_resolution, quantity, quality, reason, reason_id, cycle_time,
			recorded_at, recorded_ms, recorded_defaulted, received_ms, processed_ms, topic, partition, offset)
			SELECT %d, toUUID('00000000-0000-4000-8000-00000000000%d'), 1, 'line', 1, 'l1', 7, 'P7', 'P7', 'code', %d, '%s', '', 0, NULL,
			toDateTime(%d), %d, 0, %d, %d, 't', 0, %d`,
			i+1, i+1, 3-i, []string{"good", "scrap"}[i], at.Unix(), at.UnixMilli(), at.UnixMilli(), at.UnixMilli(), i+1)); err != nil {
			t.Fatal(err)
		}
	}
	migrate(25, 1<<31)
	// Master data changes after the migration, and parts arrive with
	// the new ideal cycle time: 4 counted, 1 too late.
	if err := s.PutProduct(ctx, chstore.Product{ID: 7, Site: 1, Code: "P7", IdealCycleTime: 50, Audit: audit}); err != nil {
		t.Fatal(err)
	}
	var b chstore.PartsBlock
	for i, q := range []uint32{4, 1} {
		r := samplePartRow(0, int64(10+i))
		r.ProductID, r.Quantity, r.IdealCycleTime = 7, q, 50
		r.RecordedMs = base.Add(time.Hour + time.Duration(i)*time.Minute).UnixMilli()
		if i == 1 {
			r.OEEClass = "late"
		}
		if err := b.Append(&r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.InsertParts(ctx, &b); err != nil {
		t.Fatal(err)
	}
	m, err := s.OEEMaster(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Products) != 1 || m.Products[0].IdealCycleTime != 50 || m.Products[0].BackfillIdeal != 20 {
		t.Fatalf("products: %+v, want ideal 50 now and 20 for the parts stored before", m.Products)
	}
	sc := chstore.OEEScope{Site: 1, All: true}
	for _, c := range []struct {
		name string
		cuts []int64
		raw  bool
	}{
		{"rollups", []int64{base.UnixMilli(), base.Add(2 * time.Hour).UnixMilli()}, false},
		{"raw", []int64{base.UnixMilli(), base.Add(2 * time.Hour).UnixMilli()}, true},
		{"edge hours", []int64{base.Add(5 * time.Minute).UnixMilli(), base.Add(115 * time.Minute).UnixMilli()}, false},
	} {
		rows, err := s.OEEParts(ctx, sc, c.cuts, c.raw)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		want := []chstore.OEEPartsRow{{Kind: "line", Location: 1, Product: 7, Produced: 9, Good: 7, Scrap: 2,
			IdealTime: 200, UnknownIdeal: 5, Late: 1}}
		if !reflect.DeepEqual(rows, want) {
			t.Errorf("%s:\n got %+v\nwant %+v", c.name, rows, want)
		}
	}
}

// TestOEEPeriodsNewestVersion stores several versions of periods and checks
// the read returns only the newest live one of each, clipped to nothing.
func TestOEEPeriodsNewestVersion(t *testing.T) {
	s, _ := testenv.ClickHouse(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h := int64(3_600_000)
	base := time.Date(2024, 3, 4, 6, 0, 0, 0, time.UTC).UnixMilli()
	p := func(id uint64, state string, start, end int64, open bool, version uint64, deleted bool) chstore.PeriodRow {
		return chstore.PeriodRow{ID: id, Site: 1, Location: 7, LocationKind: "line", ExternalID: "x", State: state,
			Start: start, End: end, Open: open, Version: version, Deleted: deleted}
	}
	for _, batch := range [][]chstore.PeriodRow{
		{p(1, "running", base-2*h, 0, true, 1, false)},
		{p(1, "running", base-2*h, base, false, 2, false), p(2, "down", base, 0, true, 3, false)},
		{p(2, "down", base, base+h, false, 4, false), p(3, "running", base+h, 0, true, 5, false)},
		{p(4, "down", base+2*h, base+3*h, false, 6, false)},
		{p(4, "down", base+2*h, base+3*h, false, 7, true)},                                                                            // deleted
		{p(5, "running", base-5*h, base-4*h, false, 8, false)},                                                                        // before the window
		{p(6, "running", base+9*h, base+10*h, false, 9, false)},                                                                       // after it
		{chstore.PeriodRow{ID: 7, Site: 2, Location: 7, LocationKind: "line", State: "running", Start: base, Open: true, Version: 1}}, // other site
	} {
		if err := s.InsertPeriods(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.OEEPeriods(ctx, chstore.OEEScope{Site: 1, All: true}, base, base+8*h)
	if err != nil {
		t.Fatal(err)
	}
	want := []chstore.OEEPeriod{
		{Kind: "line", Location: 7, State: "running", Start: base - 2*h, End: base}, // ends at the window start
		{Kind: "line", Location: 7, State: "down", Start: base, End: base + h},
		{Kind: "line", Location: 7, State: "running", Start: base + h, Open: true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("periods:\ngot  %+v\nwant %+v", got, want)
	}
}

// TestOEEPartsBetweenTheViews: one INSERT into parts updates
// parts_hourly and parts_oee_hourly one after the other. A read that finds
// parts_oee_hourly ahead reads again and answers once the other has caught
// up; one that stays apart (a rollup changed by hand) is an error, named.
func TestOEEPartsBetweenTheViews(t *testing.T) {
	s, _ := testenv.ClickHouse(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	hour := time.Date(2024, 3, 4, 6, 0, 0, 0, time.UTC)
	row := fmt.Sprintf("1, 'line', 1, 7, toDateTime(%d)", hour.Unix())
	// What the views write for 5 counted parts of product 7 with an ideal
	// cycle time of 10 s: parts_oee_hourly first.
	if err := s.Exec(ctx, `INSERT INTO parts_oee_hourly (site, location_kind, location_id, product_id, hour, oee_class,
		produced, good, scrap, rework, ideal_time, ideal_qty) SELECT `+row+`, 'counted', 5, 5, 0, 0, 50, 5`); err != nil {
		t.Fatal(err)
	}
	sc := chstore.OEEScope{Site: 1, All: true}
	cuts := []int64{hour.UnixMilli(), hour.Add(time.Hour).UnixMilli()}
	reads, landed := 0, false
	undo := chstore.OnRollupsDisagree(func() {
		reads++
		if reads == 2 && !landed {
			landed = true
			// The second view's block lands.
			if err := s.Exec(ctx, `INSERT INTO parts_hourly (site, location_kind, location_id, product_id, hour,
				produced, good, scrap, rework) SELECT `+row+`, 5, 5, 0, 0`); err != nil {
				t.Error(err)
			}
		}
	})
	defer undo()
	rows, err := s.OEEParts(ctx, sc, cuts, false)
	if err != nil {
		t.Fatalf("after the second view: %v", err)
	}
	want := []chstore.OEEPartsRow{{Kind: "line", Location: 1, Product: 7, Produced: 5, Good: 5, IdealTime: 50}}
	if !reflect.DeepEqual(rows, want) || reads != 2 {
		t.Fatalf("after %d reads again:\n got %+v\nwant %+v", reads, rows, want)
	}
	// A rollup changed by hand stays apart: an error, after a few reads.
	if err := s.Exec(ctx, `INSERT INTO parts_oee_hourly (site, location_kind, location_id, product_id, hour, oee_class,
		produced, good, scrap, rework, ideal_time, ideal_qty) SELECT `+row+`, 'counted', 1, 1, 0, 0, 10, 1`); err != nil {
		t.Fatal(err)
	}
	reads = 0
	if _, err := s.OEEParts(ctx, sc, cuts, false); !errors.Is(err, chstore.ErrRollupsDisagree) || reads == 0 {
		t.Fatalf("rollups apart for good, after %d reads again: %v", reads, err)
	}
}
