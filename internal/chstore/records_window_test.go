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

// TestOrderIndexPages: pages in insertion order found window by window in
// parts_order are the pages found by sorting parts, for every kind of
// filter (on the index's fields, on others), by offset and after a
// cursor, over rows whose order_ms lie in bursts far apart (minutes,
// days, a year: windows that find nothing, windows past the 30-day
// partitions of the index), with rows the index holds twice, and up to a
// watermark inside a burst. A loop after cursors sees every row up to the
// watermark once.
func TestOrderIndexPages(t *testing.T) {
	s, _ := testenv.ClickHouse(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	base := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC).UnixMilli()
	const day = 24 * 3_600_000
	bursts := []struct {
		at    int64
		rows  int
		every int64 // ms between rows
	}{{0, 700, 3}, {20 * 60_000, 300, 10_000}, {day, 900, 1}, {2 * day, 3000, 1}, {45 * day, 400, 250}, {400 * day, 500, 7}}
	var b chstore.PartsBlock
	var wm int64
	n := 0
	for bi, bu := range bursts {
		for i := 0; i < bu.rows; i++ {
			r := chstore.PartRow{Site: uint64(1 + n%3/2), LocationKind: []string{"line", "machine"}[n%2], LocationID: uint64(1 + n%5),
				ExternalID: fmt.Sprint("loc_", 1+n%5), ProductResolution: "none", Quantity: 1, Quality: []string{"good", "scrap", "good"}[n%3],
				Topic: "t", Partition: int32(n % 3), Offset: int64(n / 3), EventID: uuid.Must(uuid.NewV7())}
			r.ID = chstore.PartID(r.Partition, r.Offset)
			// Rows of one order_ms several times over, as the processor
			// stamps a flush.
			r.OrderMs = base + bu.at + int64(i/3)*bu.every
			r.RecordedMs, r.ReceivedMs = r.OrderMs, r.OrderMs
			if bi == len(bursts)-1 && i == bu.rows/2 {
				wm = r.OrderMs
			}
			if err := b.Append(&r); err != nil {
				t.Fatal(err)
			}
			n++
		}
	}
	if err := s.InsertParts(ctx, &b); err != nil {
		t.Fatal(err)
	}
	// A backfill beside the view copies some rows twice.
	if err := s.Exec(ctx, "INSERT INTO parts_order (order_ms, id, site, location_kind, location_id, externalid) "+
		"SELECT order_ms, id, site, location_kind, location_id, externalid FROM parts WHERE id % 7 = 0"); err != nil {
		t.Fatal(err)
	}
	shown, err := s.QueryUint64(ctx, "SELECT count() FROM parts WHERE order_ms <= ?", wm)
	if err != nil {
		t.Fatal(err)
	}

	parts, _ := chstore.RecordAreaByName("parts")
	indexed := parts.WithWatermark(wm).WithLookAhead(3)
	plain := chstore.UnindexedRecordArea("parts").WithWatermark(wm).WithLookAhead(3)
	sites := []uint64{1, 2}
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
	for _, first := range []int64{0, 1, 1000} {
		t.Run(fmt.Sprintf("first_window_%d", first), func(t *testing.T) {
			defer chstore.SetFirstWindow(first)()
			comparePages(t, ctx, s, indexed, plain, sites, parse, shown)
		})
	}
}

// comparePages reads pages through parts_order (indexed) and through
// parts (plain) and compares them.
func comparePages(t *testing.T, ctx context.Context, s *chstore.Store, indexed, plain *chstore.RecordArea, sites []uint64,
	parse func(string) l2l.Query, shown uint64) {
	for _, raw := range []string{"limit=100", "limit=2000", "limit=100&location=3", "limit=100&quality=scrap",
		"limit=37&site=2&location_kind=machine", "limit=50&offset=1234", "limit=50&offset=1990&location=2",
		"limit=50&offset=400&quality=good", "limit=20&externalid=loc_4&offset=555", "limit=10&offset=5000",
		"limit=30&location__gte=4&offset=700"} {
		q := parse(raw)
		want, err := s.Records(ctx, plain, q, sites)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.Records(ctx, indexed, q, sites)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: through parts_order %d rows (next %v, %d ahead), through parts %d rows (next %v, %d ahead)",
				raw, len(got.Rows), got.Next, len(got.Ahead), len(want.Rows), want.Next, len(want.Ahead))
		}
	}
	// The paging loop, by cursor, both ways.
	for _, raw := range []string{"limit=397", "limit=241&quality=good", "limit=164&location=1"} {
		q := parse(raw)
		got, want := cursorLoop(ctx, t, s, indexed, q, sites), cursorLoop(ctx, t, s, plain, q, sites)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: the loop through parts_order read %d rows, through parts %d", raw, len(got), len(want))
		}
		seen := map[int64]bool{}
		for _, id := range got {
			if seen[id] {
				t.Fatalf("%s: part %d twice", raw, id)
			}
			seen[id] = true
		}
		if raw == "limit=397" && uint64(len(got)) != shown {
			t.Errorf("the loop read %d parts, %d are at or below the watermark", len(got), shown)
		}
	}
}

// cursorLoop reads every page of q in a, after cursors from the first
// page on, and returns the ids in the order read.
func cursorLoop(ctx context.Context, t *testing.T, s *chstore.Store, a *chstore.RecordArea, q l2l.Query, sites []uint64) []int64 {
	t.Helper()
	var ids []int64
	p, err := s.Records(ctx, a, q, sites)
	for err == nil && len(p.Rows) > 0 {
		for _, r := range p.Rows {
			ids = append(ids, r[0].(int64))
		}
		p, err = s.RecordsAfter(ctx, a, q, sites, *p.Next)
	}
	if err != nil {
		t.Fatal(err)
	}
	return ids
}
