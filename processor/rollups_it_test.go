package processor

import (
	"context"
	"reflect"
	"testing"
	"time"
)

// TestRollupsRepairedAfterCutInsert: a ClickHouse crash between a parts
// block and its materialized views leaves the rows in parts and not in
// parts_hourly / parts_hour_ranges. The processor that takes the
// partitions over skips those rows (they are stored) and must complete the
// rollups. The crash is recreated by detaching the views while the first
// processor writes its first flush and dies before committing it.
func TestRollupsRepairedAfterCutInsert(t *testing.T) {
	bin := buildProcessor(t)
	e := newITEnv(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	views := []string{"parts_hourly_mv", "parts_hour_ranges_mv"}
	for _, v := range views {
		if err := e.store.Exec(ctx, "DETACH TABLE "+v); err != nil {
			t.Fatal(err)
		}
	}
	const wave = 3000
	static := map[string]string{"TAKT_CONSUMER_INSTANCE_ID": "rollup-test"}
	from := time.Now().Add(-2 * time.Hour)
	p := e.startProc(bin, "p1", map[string]string{"TAKT_CONSUMER_INSTANCE_ID": "rollup-test",
		"TAKT_FAILPOINT_CRASH_AFTER_INSERTS": "1"})
	e.produce(newParts(wave))
	p.waitKilledByFailpoint(30 * time.Second)
	for _, v := range views {
		if err := e.store.Exec(ctx, "ATTACH TABLE "+v); err != nil {
			t.Fatal(err)
		}
	}
	stored, _ := e.count()
	if stored == 0 {
		t.Fatal("nothing inserted before the failpoint")
	}
	to := time.Now().Add(2 * time.Hour)
	events := func() (raw, roll uint64) {
		t.Helper()
		r, err := e.store.PartsHourlyRaw(ctx, 1, from, to)
		if err != nil {
			t.Fatal(err)
		}
		h, err := e.store.PartsHourly(ctx, 1, from, to)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range r {
			raw += x.Events
		}
		for _, x := range h {
			roll += x.Events
		}
		return raw, roll
	}
	if raw, roll := events(); raw != stored || roll != 0 {
		t.Fatalf("after the cut insert: %d raw events, %d rolled up; want %d and 0", raw, roll, stored)
	}

	p = e.startProc(bin, "p2", static)
	e.produce(newParts(wave))
	e.waitRows(2*wave, 60*time.Second, p.alive)
	repairs := p.metric("takt_processor_rollup_repairs_total")
	p.stop()
	e.assertExactly(2 * wave)

	raw, err := e.store.PartsHourlyRaw(ctx, 1, from, to)
	if err != nil {
		t.Fatal(err)
	}
	roll, err := e.store.PartsHourly(ctx, 1, from, to)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(raw, roll) {
		t.Fatalf("parts_hourly differs from parts after the takeover:\nraw  %+v\nroll %+v", raw, roll)
	}
	if repairs == 0 {
		t.Fatal("takt_processor_rollup_repairs_total is 0 after a repair")
	}
	// parts_hour_ranges covers every stored row again.
	n, err := e.store.QueryUint64(ctx, `SELECT count() FROM (
			SELECT id, toDateTime(intDiv(toUInt32(recorded_at), 3600) * 3600) AS hour, partition FROM parts)
		ANY LEFT JOIN (
			SELECT hour, partition, minMerge(min_id) AS mn, maxMerge(max_id) AS mx
			FROM parts_hour_ranges GROUP BY hour, partition) USING (hour, partition)
		WHERE NOT (id >= mn AND id <= mx)`)
	if err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d parts rows outside parts_hour_ranges after the takeover", n)
	}
}
