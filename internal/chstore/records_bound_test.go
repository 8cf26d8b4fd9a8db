package chstore_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/l2l"
	"github.com/takt/takt/internal/testenv"
)

// seedSpreadParts stores n parts of site 1 in one Kafka partition whose
// cycle times follow no order of their ids, so that a page ordered by
// cycle time holds ids from all over the partition.
func seedSpreadParts(tb testing.TB, s *chstore.Store, n int) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var b chstore.PartsBlock
	for i := range n {
		r := samplePartRow(0, int64(i))
		r.HasCycleTime, r.CycleTime = true, float64(i*7919%n)/10
		if err := b.Append(&r); err != nil {
			tb.Fatal(err)
		}
	}
	if err := s.InsertParts(ctx, &b); err != nil {
		tb.Fatal(err)
	}
}

// readPage reads one page of parts of site 1 with args.
func readPage(tb testing.TB, s *chstore.Store, args string) chstore.RecordPage {
	tb.Helper()
	a, _ := chstore.RecordAreaByName("parts")
	v, _ := url.ParseQuery(args)
	q, err := l2l.Parse(v, a.Schema())
	if err != nil {
		tb.Fatal(err)
	}
	p, err := s.Records(context.Background(), a, q, []uint64{1})
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// TestReadBoundedByLimit: the memory a page costs follows its limit,
// whatever it is ordered by. A page ordered by cycle time holds ids from
// the whole partition, and reading it must not build every row between
// them.
func TestReadBoundedByLimit(t *testing.T) {
	s, _ := testenv.ClickHouse(t)
	seedSpreadParts(t, s, 20_000)
	allocs := map[string]float64{}
	for _, args := range []string{"limit=100", "limit=100&order_by=id", "limit=100&order_by=cycle_time",
		"limit=100&order_by=-cycle_time,quantity", "limit=100&offset=5000&order_by=cycle_time"} {
		if n := len(readPage(t, s, args).Rows); n != 100 {
			t.Fatalf("%s: %d rows", args, n)
		}
		allocs[args] = testing.AllocsPerRun(3, func() { readPage(t, s, args) })
	}
	base := allocs["limit=100&order_by=id"]
	for args, n := range allocs {
		if n > 3*base {
			t.Errorf("%s: %.0f allocations, %.1f× those of order_by=id (%.0f)", args, n, n/base, base)
		}
	}
	p := readPage(t, s, "limit=100&order_by=cycle_time&fields=cycle_time")
	for i := 1; i < len(p.Rows); i++ {
		if p.Rows[i-1][0].(float64) > p.Rows[i][0].(float64) {
			t.Fatalf("rows out of order at %d: %v", i, p.Rows[i-1:i+1])
		}
	}
}

// BenchmarkReadOrder reads a page of 100 parts out of 100 000 in one
// partition, ordered by id and by cycle time: the allocations show what
// one page costs in memory.
//
//	go test -run '^$' -bench ReadOrder -benchmem ./internal/chstore/
func BenchmarkReadOrder(b *testing.B) {
	s, _ := testenv.ClickHouse(b)
	seedSpreadParts(b, s, 100_000)
	for _, order := range []string{"id", "cycle_time"} {
		b.Run(order, func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				readPage(b, s, "limit=100&order_by="+order)
			}
		})
	}
}
