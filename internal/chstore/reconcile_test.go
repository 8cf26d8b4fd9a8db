package chstore_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/testenv"
)

// TestReconcileRollups recreates what a ClickHouse crash between a parts
// block and its materialized views leaves behind (the views detached while
// the block is inserted: the rows are in parts, their rollup rows are not)
// and checks that the loss shows in both rollups and that ReconcileRollups
// of the block's range repairs it exactly, once.
func TestReconcileRollups(t *testing.T) {
	s, _ := testenv.ClickHouse(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := time.Date(2024, 5, 6, 7, 0, 0, 0, time.UTC).UnixMilli()
	qualities := []string{"good", "good", "scrap", "good", "rework"}
	// block writes n rows of partition p from offset off on, spread over
	// about two hours, at four locations and three products.
	block := func(p int32, off int64, n int) {
		t.Helper()
		var b chstore.PartsBlock
		for i := range n {
			r := samplePartRow(p, off+int64(i))
			r.LocationID = uint64(10*p) + uint64(1+i%4)
			r.ProductID = uint64(1 + i%3)
			r.Quality = qualities[i%len(qualities)]
			r.Quantity = uint32(1 + i%4)
			r.RecordedMs = base + (off+int64(i))*2_000
			if i%7 == 0 {
				r.OEEClass = "unscheduled"
			}
			if err := b.Append(&r); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.InsertParts(ctx, &b); err != nil {
			t.Fatal(err)
		}
	}
	from, to := time.UnixMilli(base).Add(-time.Hour), time.UnixMilli(base).Add(6*time.Hour)
	compare := func() (raw, roll []chstore.HourlyParts) {
		t.Helper()
		raw, err := s.PartsHourlyRaw(ctx, 1, from, to)
		if err != nil {
			t.Fatal(err)
		}
		roll, err = s.PartsHourly(ctx, 1, from, to)
		if err != nil {
			t.Fatal(err)
		}
		return raw, roll
	}
	// oeeAgrees reports whether the OEE read through the rollups equals
	// the read of the raw parts (classes and ideal times included).
	oeeAgrees := func() bool {
		t.Helper()
		cuts := []int64{from.UnixMilli(), to.UnixMilli()}
		sc := chstore.OEEScope{Site: 1, All: true}
		roll, err := s.OEEParts(ctx, sc, cuts, false)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := s.OEEParts(ctx, sc, cuts, true)
		if err != nil {
			t.Fatal(err)
		}
		byKey := func(rs []chstore.OEEPartsRow) map[[3]uint64]chstore.OEEPartsRow {
			m := map[[3]uint64]chstore.OEEPartsRow{}
			for _, r := range rs {
				m[[3]uint64{r.Location, r.Product, uint64(r.Segment)}] = r
			}
			return m
		}
		return len(raw) > 0 && reflect.DeepEqual(byKey(raw), byKey(roll))
	}
	events := func(rs []chstore.HourlyParts) (n uint64) {
		for _, r := range rs {
			n += r.Events
		}
		return n
	}
	// rangesCover reports whether parts_hour_ranges covers every id of
	// partition p in [lo, hi] (what OEE's partial hours read).
	rangesCover := func(p int32, lo, hi int64) bool {
		t.Helper()
		n, err := s.QueryUint64(ctx, `SELECT count() FROM (
				SELECT id, toDateTime(intDiv(toUInt32(recorded_at), 3600) * 3600) AS hour, partition
				FROM parts WHERE id >= ? AND id <= ?)
			ANY LEFT JOIN (
				SELECT hour, partition, minMerge(min_id) AS mn, maxMerge(max_id) AS mx
				FROM parts_hour_ranges GROUP BY hour, partition) USING (hour, partition)
			WHERE NOT (id >= mn AND id <= mx)`, chstore.PartID(p, lo), chstore.PartID(p, hi))
		if err != nil {
			t.Fatal(err)
		}
		return n == 0
	}

	// indexedIn counts the distinct rows of the index table of partition
	// p's offsets [lo, hi].
	indexedIn := func(table string, p int32, lo, hi int64) uint64 {
		t.Helper()
		n, err := s.QueryUint64(ctx, "SELECT uniqExact(id) FROM "+table+" WHERE id >= ? AND id <= ?",
			chstore.PartID(p, lo), chstore.PartID(p, hi))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	ordered := func(p int32, lo, hi int64) uint64 { return indexedIn("parts_order", p, lo, hi) }
	located := func(p int32, lo, hi int64) uint64 { return indexedIn("parts_by_location", p, lo, hi) }

	block(0, 0, 1500) // a complete block: views ran
	if rep, err := s.ReconcileRollups(ctx, "t", 0, 0, 1499); err != nil || rep.Changed() || rep.Rows != 1500 || rep.Keys == 0 {
		t.Fatalf("reconcile of a complete block = %+v, %v; want nothing to repair", rep, err)
	}

	// The crash: partition 1's block lands in parts, its views do not.
	for _, v := range []string{"parts_hourly_mv", "parts_oee_hourly_mv", "parts_hour_ranges_mv", "parts_order_mv", "parts_by_location_mv"} {
		if err := s.Exec(ctx, "DETACH TABLE "+v); err != nil {
			t.Fatal(err)
		}
	}
	block(1, 0, 1200)
	for _, v := range []string{"parts_hourly_mv", "parts_oee_hourly_mv", "parts_hour_ranges_mv", "parts_order_mv", "parts_by_location_mv"} {
		if err := s.Exec(ctx, "ATTACH TABLE "+v); err != nil {
			t.Fatal(err)
		}
	}
	block(2, 0, 900) // the views work again

	// Without reconciliation the rollup misses the block.
	raw, roll := compare()
	if got, want := events(raw)-events(roll), uint64(1200); got != want {
		t.Fatalf("rollup short by %d events before the repair, want %d (the lost block)", got, want)
	}
	if rangesCover(1, 0, 1199) {
		t.Fatal("parts_hour_ranges covers the block whose views did not run")
	}
	if oeeAgrees() {
		t.Fatal("the OEE rollups agree with parts while the block's views did not run")
	}
	if n := ordered(1, 0, 1199); n != 0 {
		t.Fatalf("parts_order holds %d rows of the block whose views did not run", n)
	}
	if n := located(1, 0, 1199); n != 0 {
		t.Fatalf("parts_by_location holds %d rows of the block whose views did not run", n)
	}

	rep, err := s.ReconcileRollups(ctx, "t", 1, 0, 1199)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Rows != 1200 || rep.Repaired == 0 || rep.Events != 1200 || rep.Surplus != 0 || rep.OEERepaired == 0 {
		t.Fatalf("repair = %+v; want 1200 rows and events repaired, in both hourly rollups", rep)
	}
	if !oeeAgrees() {
		t.Fatal("after the repair the OEE rollups differ from parts")
	}
	raw, roll = compare()
	if !reflect.DeepEqual(raw, roll) {
		t.Fatalf("after the repair the rollup differs from parts:\nraw  %v\nroll %v", head(raw), head(roll))
	}
	if !rangesCover(1, 0, 1199) {
		t.Fatal("parts_hour_ranges does not cover the block after the repair")
	}
	if n := ordered(1, 0, 1199); n != 1200 || rep.OrderRepaired != 1200 {
		t.Fatalf("after the repair parts_order holds %d rows of the block (%d written), want 1200", n, rep.OrderRepaired)
	}
	if n := located(1, 0, 1199); n != 1200 || rep.LocationRepaired != 1200 {
		t.Fatalf("after the repair parts_by_location holds %d rows of the block (%d written), want 1200", n, rep.LocationRepaired)
	}
	// Again: nothing left to do, nothing counted twice.
	if rep, err := s.ReconcileRollups(ctx, "t", 1, 0, 1199); err != nil || rep.Changed() {
		t.Fatalf("second repair = %+v, %v; want no change", rep, err)
	}
	if n, err := s.QueryUint64(ctx, "SELECT count() FROM parts_order WHERE id >= ? AND id <= ?",
		chstore.PartID(1, 0), chstore.PartID(1, 1199)); err != nil || n != 1200 {
		t.Fatalf("after a second repair parts_order holds %d rows of the block (%v), want 1200", n, err)
	}
	if n, err := s.QueryUint64(ctx, "SELECT count() FROM parts_by_location WHERE id >= ? AND id <= ?",
		chstore.PartID(1, 0), chstore.PartID(1, 1199)); err != nil || n != 1200 {
		t.Fatalf("after a second repair parts_by_location holds %d rows of the block (%v), want 1200", n, err)
	}
	if _, roll2 := compare(); !reflect.DeepEqual(roll, roll2) {
		t.Fatal("second repair changed the rollup")
	}

	// Half a crash: the id ranges were written, the hourly rollup was
	// not. Only the hourly rows are added.
	if err := s.Exec(ctx, "DETACH TABLE parts_hourly_mv"); err != nil {
		t.Fatal(err)
	}
	block(1, 1200, 300)
	if err := s.Exec(ctx, "ATTACH TABLE parts_hourly_mv"); err != nil {
		t.Fatal(err)
	}
	if rep, err := s.ReconcileRollups(ctx, "t", 1, 1200, 1499); err != nil || rep.Events != 300 || rep.OEERepaired != 0 {
		t.Fatalf("repair of the half-rolled block = %+v, %v; want 300 events added to parts_hourly alone", rep, err)
	}
	if !oeeAgrees() {
		t.Fatal("the OEE rollups differ from parts after the second repair")
	}
	if raw, roll := compare(); !reflect.DeepEqual(raw, roll) {
		t.Fatal("rollup differs from parts after the second repair")
	}

	// A rollup fed twice is reported, not "repaired" downwards.
	if err := s.Exec(ctx, `INSERT INTO parts_hourly (site, location_kind, location_id, product_id, hour, produced, good, scrap, rework, events)
		SELECT site, location_kind, location_id, product_id, toDateTime(intDiv(toUInt32(recorded_at), 3600) * 3600) AS h,
			toUInt64(sum(quantity)), toUInt64(sumIf(quantity, quality = 'good')), toUInt64(sumIf(quantity, quality = 'scrap')),
			toUInt64(sumIf(quantity, quality = 'rework')), toUInt64(count())
		FROM parts WHERE id >= ? AND id <= ? GROUP BY site, location_kind, location_id, product_id, h`,
		chstore.PartID(2, 0), chstore.PartID(2, 899)); err != nil {
		t.Fatal(err)
	}
	if rep, err := s.ReconcileRollups(ctx, "t", 2, 0, 899); err != nil || rep.Surplus == 0 || rep.Changed() {
		t.Fatalf("repair of a doubled rollup = %+v, %v; want surplus reported and nothing written", rep, err)
	}

	if _, err := s.ReconcileRollups(ctx, "t", 1, 10, 5); err == nil {
		t.Fatal("an empty offset range was accepted")
	}
	if rep, err := s.ReconcileRollups(ctx, "t", 5, 0, 100); err != nil || rep.Rows != 0 || rep.Changed() {
		t.Fatalf("repair of a range without rows = %+v, %v", rep, err)
	}
}
