package chstore_test

import (
	"context"
	"fmt"
	"net/url"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/l2l"
	"github.com/takt/takt/internal/testenv"
)

// TestLocationIndexPages: a read of one location's parts by recorded time
// (externalid=…&recorded_at…) is answered through parts_by_location, with
// the pages the same as found by sorting parts, in insertion order (by
// offset and after cursors, up to the watermark) and in others; and the
// read a client makes for the part it just sent reads a few granules, not
// the table (through the insertion order it read every row stored before
// that part).
func TestLocationIndexPages(t *testing.T) {
	s, _ := testenv.ClickHouse(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const n = 120_000
	base := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC).UnixMilli()
	var b chstore.PartsBlock
	var wm, lastMs int64
	for i := range n {
		r := chstore.PartRow{Site: uint64(1 + i%6/5), LocationKind: []string{"line", "machine"}[i%2], LocationID: uint64(1 + i%6),
			ExternalID: fmt.Sprint("loc_", 1+i%6), ProductResolution: "none", Quantity: 1, Quality: []string{"good", "scrap", "good"}[i%3],
			Topic: "t", Partition: int32(i % 3), Offset: int64(i / 3), EventID: uuid.Must(uuid.NewV7())}
		r.ID = chstore.PartID(r.Partition, r.Offset)
		r.OrderMs = base + int64(i/4)*7
		r.RecordedMs = r.OrderMs - int64(i%1000)*37
		if i%97 == 0 {
			r.RecordedMs -= 3 * 24 * 3_600_000 // reported late
		}
		if i%89 == 0 {
			r.RecordedMs = r.OrderMs + 23*3_600_000 // a clock a day ahead: the most the ingestor takes
		}
		r.ReceivedMs = r.OrderMs
		if i == n*9/10 {
			wm = r.OrderMs
		}
		if i == n*9/10-20 && r.ExternalID == "loc_3" || lastMs == 0 && i > n*9/10-30 && r.ExternalID == "loc_3" {
			lastMs = r.RecordedMs
		}
		if err := b.Append(&r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.InsertParts(ctx, &b); err != nil {
		t.Fatal(err)
	}
	// A backfill beside the view copies some rows twice.
	if err := s.Exec(ctx, "INSERT INTO parts_by_location (externalid, recorded_ms, order_ms, id, site, location_kind, location_id) "+
		"SELECT externalid, recorded_ms, order_ms, id, site, location_kind, location_id FROM parts WHERE id % 7 = 0"); err != nil {
		t.Fatal(err)
	}

	parts, _ := chstore.RecordAreaByName("parts")
	indexed := parts.WithWatermark(wm).WithLookAhead(3)
	plain := chstore.UnindexedRecordArea("parts").WithWatermark(wm).WithLookAhead(3)
	sites := []uint64{1, 2}
	at := func(ms int64) string { return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z") }
	parse := func(raw string) l2l.Query {
		v, err := url.ParseQuery(raw)
		if err != nil {
			t.Fatal(err)
		}
		q, err := l2l.Parse(v, indexed.Schema())
		if err != nil {
			t.Fatal(err)
		}
		return q
	}
	mid := base + n/8*7
	probe := "externalid=loc_3&recorded_at=" + at(lastMs) + "&limit=1&fields=id"
	for _, raw := range []string{
		probe,
		"externalid=loc_2&recorded_at__gte=" + at(mid) + "&limit=100",
		"externalid=loc_2&recorded_at__gte=" + at(mid) + "&recorded_at__lt=" + at(mid+60_000) + "&limit=50&offset=30",
		"externalid=loc_5&recorded_at__lte=" + at(mid) + "&quality=scrap&limit=40",
		"externalid=loc_4&recorded_at__gt=" + at(mid) + "&order_by=-recorded_at&limit=25",
		"externalid=loc_6&recorded_at__gte=" + at(mid) + "&site=2&limit=30&offset=7",
		"externalid=loc_1&recorded_at__lt=" + at(base) + "&limit=20",
	} {
		q := parse(raw)
		want, err := s.Records(ctx, plain, q, sites)
		if err != nil {
			t.Fatal(err)
		}
		if len(want.Rows) == 0 {
			t.Fatalf("%s: no rows through parts: the test's data miss the read", raw)
		}
		got, err := s.Records(ctx, indexed, q, sites)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: through parts_by_location %d rows (next %v, %d ahead), through parts %d rows (next %v, %d ahead)",
				raw, len(got.Rows), got.Next, len(got.Ahead), len(want.Rows), want.Next, len(want.Ahead))
		}
	}

	// The loop after cursors, both ways.
	late := base + n/4*7*3/4
	for _, raw := range []string{"externalid=loc_6&recorded_at__gte=" + at(late) + "&limit=333",
		"externalid=loc_1&recorded_at__lt=" + at(mid) + "&quality=good&limit=400"} {
		q := parse(raw)
		got, want := cursorLoop(ctx, t, s, indexed, q, sites), cursorLoop(ctx, t, s, plain, q, sites)
		if len(want) == 0 || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: the loop through parts_by_location read %d rows, through parts %d", raw, len(got), len(want))
		}
	}

	// The read for a part just sent reads a few granules of the index and
	// of parts.
	rctx, count := chstore.CountReads(ctx)
	if _, err := s.Records(rctx, indexed, parse(probe), sites); err != nil {
		t.Fatal(err)
	}
	r := count.Rows()
	t.Logf("the read of one part by location and recorded time read %d rows", r)
	if r == 0 || r > n/4 {
		t.Errorf("the read of one part by location and recorded time read %d rows of a table of %d", r, n)
	}
}

// TestLocationReadSkipsHistory: the read of a part just sent, by location
// and recorded time, reads the index's partitions of the last days only,
// however many older ones it has. On ClickHouse 18.16 every data part's
// last granule answers to a key above its last mark's, so each data part
// in the range of order_ms read costs a granule; so the read is bounded below
// in order_ms by its bound of recorded_at (record.Area.LocationLead).
func TestLocationReadSkipsHistory(t *testing.T) {
	s, _ := testenv.ClickHouse(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const months, perMonth, recent = 40, 3000, 300
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC).UnixMilli()
	var b chstore.PartsBlock
	add := func(partition int32, offset int, ext string, orderMs, recordedMs int64) {
		r := chstore.PartRow{Site: 1, LocationKind: "line", LocationID: 1, ExternalID: ext, ProductResolution: "none",
			Quantity: 1, Quality: "good", Topic: "t", Partition: partition, Offset: int64(offset), EventID: uuid.Must(uuid.NewV7())}
		r.ID = chstore.PartID(r.Partition, r.Offset)
		r.OrderMs, r.RecordedMs, r.ReceivedMs = orderMs, recordedMs, orderMs
		if err := b.Append(&r); err != nil {
			t.Fatal(err)
		}
	}
	i := 0
	// History: another location's parts, two data parts in each of 40
	// partitions of the index (30-day spans of order_ms).
	for range 2 {
		for m := months; m > 0; m-- {
			for range perMonth {
				ms := now - int64(m)*30*24*3_600_000 + int64(i)*100
				add(int32(1+i%4), i/4, "a_hist", ms, ms)
				i++
			}
		}
		if err := s.InsertParts(ctx, &b); err != nil {
			t.Fatal(err)
		}
		b.Reset()
	}
	var sent int64
	for k := range recent {
		ms := now + int64(k)*100
		recorded := ms - 50
		if k == recent/2 {
			recorded = ms + 23*3_600_000 // a clock a day ahead: still found
		}
		if k == recent-1 {
			sent = recorded
		}
		add(0, k, "loc_9", ms, recorded)
	}
	if err := s.InsertParts(ctx, &b); err != nil {
		t.Fatal(err)
	}
	parts, _ := chstore.RecordAreaByName("parts")
	indexed := parts.WithWatermark(now + recent*100)
	plain := chstore.UnindexedRecordArea("parts").WithWatermark(now + recent*100)
	at := func(ms int64) string { return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z") }
	for _, tc := range []struct {
		raw  string
		want int
	}{
		{"externalid=loc_9&recorded_at=" + at(sent) + "&limit=5", 1},
		{"externalid=loc_9&recorded_at__gte=" + at(now+200*100) + "&limit=500", recent - 200},
		{"externalid=loc_9&recorded_at__gt=" + at(now) + "&recorded_at__lt=" + at(now+3_600_000) + "&limit=500", recent - 2},
	} {
		v, err := url.ParseQuery(tc.raw)
		if err != nil {
			t.Fatal(err)
		}
		q, err := l2l.Parse(v, indexed.Schema())
		if err != nil {
			t.Fatal(err)
		}
		rctx, count := chstore.CountReads(ctx)
		got, err := s.Records(rctx, indexed, q, []uint64{1})
		if err != nil {
			t.Fatal(err)
		}
		want, err := s.Records(ctx, plain, q, []uint64{1})
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Rows) != tc.want || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %d rows through parts_by_location, %d through parts, want %d", tc.raw, len(got.Rows), len(want.Rows), tc.want)
		}
		// Each history data part's last granule (952 rows) would be read:
		// 80 of them are 76,160 rows. The location's own parts are one
		// granule of the index and, being of one Kafka partition apart from
		// the history's, one of parts (per step of the read).
		t.Logf("%s: read %d rows", tc.raw, count.Rows())
		if r := count.Rows(); r == 0 || r > 10_000 {
			t.Errorf("%s: read %d rows, with %d data parts of history in the index", tc.raw, r, months)
		}
	}
}
