package chstore_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/testenv"
)

func samplePartRow(partition int32, offset int64) chstore.PartRow {
	return chstore.PartRow{
		ID:                chstore.PartID(partition, offset),
		EventID:           uuid.New(),
		Site:              1,
		LocationKind:      "line",
		LocationID:        1,
		ExternalID:        "line_1",
		ProductID:         1,
		ProductCode:       "PROD001",
		ProductReported:   "PROD001",
		ProductResolution: "code",
		Quantity:          1,
		Quality:           "good",
		RecordedMs:        1_700_000_000_123,
		ReceivedMs:        1_700_000_000_456,
		ProcessedMs:       1_700_000_001_000,
		Topic:             "t",
		Partition:         partition,
		Offset:            offset,
		IdealCycleTime:    45,
		OEEClass:          "counted",
	}
}

func TestPartID(t *testing.T) {
	if got := chstore.PartID(3, 7); got != 3<<40|7 {
		t.Fatalf("PartID(3, 7) = %d", got)
	}
	if got := chstore.PartID(0, chstore.MaxPartOffset); got != 1<<40-1 {
		t.Fatalf("PartID(0, max) = %d", got)
	}
}

func TestCheckPartRow(t *testing.T) {
	tests := []struct {
		name   string
		change func(*chstore.PartRow)
		want   string // "" = valid
	}{
		{"valid", func(*chstore.PartRow) {}, ""},
		{"machine", func(r *chstore.PartRow) { r.LocationKind = "machine" }, ""},
		{"bad kind", func(r *chstore.PartRow) { r.LocationKind = "cell" }, "location_kind"},
		{"bad resolution", func(r *chstore.PartRow) { r.ProductResolution = "guess" }, "product_resolution"},
		{"bad quality", func(r *chstore.PartRow) { r.Quality = "meh" }, "quality"},
		{"recorded after 2106", func(r *chstore.PartRow) { r.RecordedMs = (chstore.MaxDateTimeSeconds + 1) * 1000 }, "DateTime"},
		{"recorded at the last second", func(r *chstore.PartRow) { r.RecordedMs = chstore.MaxDateTimeSeconds * 1000 }, ""},
		{"negative recorded", func(r *chstore.PartRow) { r.RecordedMs = -1 }, "DateTime"},
		{"offset too large", func(r *chstore.PartRow) { r.Offset = chstore.MaxPartOffset + 1 }, "part id"},
		{"unscheduled", func(r *chstore.PartRow) { r.OEEClass = "unscheduled" }, ""},
		{"bad oee class", func(r *chstore.PartRow) { r.OEEClass = "maybe" }, "oee_class"},
		{"negative ideal", func(r *chstore.PartRow) { r.IdealCycleTime = -1 }, "ideal_cycle_time"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := samplePartRow(0, 1)
			tc.change(&r)
			err := chstore.CheckPartRow(&r)
			var b chstore.PartsBlock
			appendErr := b.Append(&r)
			switch {
			case tc.want == "" && (err != nil || appendErr != nil):
				t.Fatalf("got %v / %v, want valid", err, appendErr)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want an error about %s", err, tc.want)
			case tc.want != "" && (appendErr == nil || b.Len() != 0):
				t.Fatalf("Append accepted an invalid row (err %v, len %d)", appendErr, b.Len())
			}
		})
	}
}

func TestInsertPartsAndMaxOffset(t *testing.T) {
	s, _ := testenv.ClickHouse(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	if _, ok, err := s.PartsMaxOffset(ctx, "t", 0, 0); err != nil || ok {
		t.Fatalf("empty table: ok=%v err=%v", ok, err)
	}

	var b chstore.PartsBlock
	rows := []chstore.PartRow{samplePartRow(0, 0), samplePartRow(0, 1), samplePartRow(0, 5)}
	rows[1].HasCycleTime, rows[1].CycleTime = true, 0 // a reported 0 is not NULL
	rows[2].HasCycleTime, rows[2].CycleTime = true, 45.5
	rows[2].Quality, rows[2].Reason, rows[2].ReasonID = "scrap", "REASON01", 1
	rows[2].LocationKind, rows[2].ProductResolution = "machine", "cycle_time"
	rows[2].RecordedDefaulted = true
	rows[1].OEEClass, rows[1].IdealCycleTime = "unscheduled", 0
	rows[2].OEEClass, rows[2].IdealCycleTime = "late", 12.5
	rows[2].OrderMs = rows[2].ReceivedMs + 7 // placed by the processor
	for i := range rows {
		if rows[i].OrderMs == 0 {
			rows[i].OrderMs = rows[i].ReceivedMs // until placed: its receive time
		}
		if err := b.Append(&rows[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.InsertParts(ctx, &b); err != nil {
		t.Fatalf("insert: %v", err)
	}
	// The block is reusable: the same rows for another partition and topic.
	b.Reset()
	other := samplePartRow(1, 9)
	other.Topic = "u"
	if err := b.Append(&other); err != nil {
		t.Fatal(err)
	}
	if err := s.InsertParts(ctx, &b); err != nil {
		t.Fatalf("insert: %v", err)
	}

	got, err := s.PartsOfTopic(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(rows) {
		t.Fatalf("read %d rows, want %d", len(got), len(rows))
	}
	for i := range rows {
		if got[i] != rows[i] {
			t.Errorf("row %d:\n got %+v\nwant %+v", i, got[i], rows[i])
		}
	}
	sec, err := s.QueryUint64(ctx, "SELECT toUInt64(toUInt32(recorded_at)) FROM parts WHERE id = ?", rows[0].ID)
	if err != nil || sec != 1_700_000_000 {
		t.Errorf("recorded_at = %d (%v), want 1700000000", sec, err)
	}

	tests := []struct {
		topic     string
		partition int32
		from      int64
		want      int64
		ok        bool
	}{
		{"t", 0, 0, 5, true},
		{"t", 0, 5, 5, true},
		{"t", 0, 6, 0, false},
		{"t", 1, 0, 0, false},
		{"u", 1, 0, 9, true},
		{"u", 0, 0, 0, false},
		{"t", 0, -1, 5, true},
	}
	for _, tc := range tests {
		off, ok, err := s.PartsMaxOffset(ctx, tc.topic, tc.partition, tc.from)
		if err != nil || ok != tc.ok || off != tc.want {
			t.Errorf("PartsMaxOffset(%s, %d, %d) = %d, %v, %v; want %d, %v", tc.topic, tc.partition, tc.from, off, ok, err, tc.want, tc.ok)
		}
	}
	n, events, err := s.PartsCount(ctx, "t")
	if err != nil || n != 3 || events != 3 {
		t.Errorf("PartsCount = %d, %d, %v; want 3, 3", n, events, err)
	}
}

// BenchmarkInsertParts measures one 10,000-row parts block per iteration
// against the local ClickHouse (client encoding, LZ4, server write).
func BenchmarkInsertParts(b *testing.B) {
	s, _ := testenv.ClickHouse(b)
	ctx := context.Background()
	rows := make([]chstore.PartRow, 10_000)
	for i := range rows {
		rows[i] = samplePartRow(1, int64(i))
		rows[i].HasCycleTime, rows[i].CycleTime = i%2 == 0, float64(i%60)
	}
	var blk chstore.PartsBlock
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		blk.Reset()
		for j := range rows {
			rows[j].ID = chstore.PartID(1, int64(i*len(rows)+j))
			if err := blk.Append(&rows[j]); err != nil {
				b.Fatal(err)
			}
		}
		if err := s.InsertParts(ctx, &blk); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(rows))/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkPartsBlockAppend measures the processor's per-row work of
// building a parts block (checks, enum codes, column appends), without a
// server.
func BenchmarkPartsBlockAppend(b *testing.B) {
	rows := make([]chstore.PartRow, 10_000)
	for i := range rows {
		rows[i] = samplePartRow(1, int64(i))
		rows[i].HasCycleTime, rows[i].CycleTime = i%2 == 0, float64(i%60)
		if i%20 == 0 {
			rows[i].Quality, rows[i].Reason = "scrap", "S1"
		}
	}
	var blk chstore.PartsBlock
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := &rows[i%len(rows)]
		if i%len(rows) == 0 {
			blk.Reset()
		}
		if err := blk.Append(r); err != nil {
			b.Fatal(err)
		}
	}
}
