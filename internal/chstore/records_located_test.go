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
