package chstore_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/testenv"
)

// TestPartsHourlyRollup writes parts in several blocks (as the processor
// does, one or more per flush) and checks that the rollup equals the
// aggregate of the raw rows, per location, product and hour.
func TestPartsHourlyRollup(t *testing.T) {
	s, _ := testenv.ClickHouse(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	base := time.Date(2024, 3, 4, 5, 0, 0, 0, time.UTC).UnixMilli()
	qualities := []string{"good", "good", "good", "scrap", "rework"}
	const n = 3000
	var b chstore.PartsBlock
	for i := range n {
		r := samplePartRow(int32(i%3), int64(i))
		r.LocationID = uint64(1 + i%4)
		r.LocationKind = []string{"line", "machine"}[i%2]
		r.ProductID = uint64(1 + i%3)
		r.Quality = qualities[i%len(qualities)]
		r.Quantity = uint32(1 + i%3)
		r.RecordedMs = base + int64(i)*7_300 // ~6 h in total
		if err := b.Append(&r); err != nil {
			t.Fatal(err)
		}
		if b.Len() == 700 || i == n-1 {
			if err := s.InsertParts(ctx, &b); err != nil {
				t.Fatal(err)
			}
			b.Reset()
		}
	}
	from, to := time.UnixMilli(base).Add(-time.Hour), time.UnixMilli(base).Add(8*time.Hour)
	raw, err := s.PartsHourlyRaw(ctx, 1, from, to)
	if err != nil {
		t.Fatal(err)
	}
	roll, err := s.PartsHourly(ctx, 1, from, to)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) == 0 || !reflect.DeepEqual(raw, roll) {
		t.Fatalf("rollup differs from raw parts:\nraw  %d rows %v\nroll %d rows %v", len(raw), head(raw), len(roll), head(roll))
	}
	var events, produced uint64
	for _, r := range roll {
		events += r.Events
		produced += r.Produced
	}
	if events != n || produced != 2*n { // quantities 1,2,3 repeat
		t.Fatalf("rollup holds %d events, %d parts; want %d, %d", events, produced, n, 2*n)
	}
	// A forced merge must not change the sums.
	if err := s.Exec(ctx, "OPTIMIZE TABLE parts_hourly FINAL"); err != nil {
		t.Fatal(err)
	}
	merged, err := s.PartsHourly(ctx, 1, from, to)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(raw, merged) {
		t.Fatal("rollup differs from raw parts after OPTIMIZE FINAL")
	}
	// Rebuilt from scratch by the backfill, it is the same again.
	if err := s.Exec(ctx, "TRUNCATE TABLE parts_hourly"); err != nil {
		t.Fatal(err)
	}
	if err := s.BackfillPartsHourly(ctx, from, to); err != nil {
		t.Fatal(err)
	}
	filled, err := s.PartsHourly(ctx, 1, from, to)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(raw, filled) {
		t.Fatal("backfilled rollup differs from raw parts")
	}
}

func head(rs []chstore.HourlyParts) []chstore.HourlyParts {
	if len(rs) > 3 {
		return rs[:3]
	}
	return rs
}
