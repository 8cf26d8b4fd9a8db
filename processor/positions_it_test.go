package processor

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/testenv"
)

// TestCheckPositionsRepairsSkippedRows: a flush whose INSERT failed after
// the parts block and some of its views were written (a ClickHouse crash,
// a ZooKeeper session lost between the views of a replicated table) is
// dropped when a rebalance waits, and the partition is read again by the
// same member. The next flush finds the block in ClickHouse
// (checkPositions) and skips after it; the views that did not run must
// be completed then, or the OEE rollup stays short for good. The cut is
// recreated by detaching parts_oee_hourly's view (the last of the views
// ClickHouse runs) while the block is inserted.
func TestCheckPositionsRepairsSkippedRows(t *testing.T) {
	s, _ := testenv.ClickHouse(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const topic, n = "parts", 40
	base := time.Now().Add(-time.Hour).UnixMilli()
	var blk chstore.PartsBlock
	for i := range n {
		r := chstore.PartRow{
			ID: chstore.PartID(0, int64(i)), EventID: uuid.New(), Site: 1, LocationKind: "line", LocationID: 1,
			ExternalID: "line_1", ProductID: 1, ProductCode: "PROD001", ProductReported: "PROD001", ProductResolution: "code",
			Quantity: uint32(1 + i%3), Quality: "good", RecordedMs: base + int64(i)*60_000, ReceivedMs: base + int64(i)*60_000,
			ProcessedMs: time.Now().UnixMilli(), Topic: topic, Partition: 0, Offset: int64(i), IdealCycleTime: 45, OEEClass: "counted",
		}
		if i%5 == 0 {
			r.OEEClass = "unscheduled"
		}
		if err := blk.Append(&r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Exec(ctx, "DETACH TABLE parts_oee_hourly_mv"); err != nil {
		t.Fatal(err)
	}
	err := s.InsertParts(ctx, &blk)
	if aerr := s.Exec(ctx, "ATTACH TABLE parts_oee_hourly_mv"); aerr != nil {
		t.Fatal(aerr)
	}
	if err != nil {
		t.Fatal(err)
	}
	sums := func() (parts, hourly, oee uint64) {
		t.Helper()
		for _, q := range []struct {
			to  *uint64
			sql string
		}{
			{&parts, "SELECT sum(quantity) FROM parts"},
			{&hourly, "SELECT sum(produced) FROM parts_hourly"},
			{&oee, "SELECT sum(produced) FROM parts_oee_hourly"},
		} {
			v, err := s.QueryUint64(ctx, q.sql)
			if err != nil {
				t.Fatal(err)
			}
			*q.to = v
		}
		return parts, hourly, oee
	}
	if parts, hourly, oee := sums(); parts == 0 || hourly != parts || oee != 0 {
		t.Fatalf("after the cut insert: parts %d, parts_hourly %d, parts_oee_hourly %d; want parts_oee_hourly alone short", parts, hourly, oee)
	}

	// The dropped batch, read again: the same offsets, checked in a new
	// generation.
	c := testConsumer(t)
	c.cfg.Topic = topic
	c.store = s
	c.owners = func(context.Context) (map[int32]bool, error) { return map[int32]bool{0: true}, nil }
	b := &batch{partition: 0, first: 0, validGen: -1}
	if err := c.checkPositions(ctx, []*batch{b}, 7); err != nil {
		t.Fatal(err)
	}
	if !b.overtaken || b.resumeAt != n {
		t.Fatalf("batch after the check: overtaken %v, resume at %d; want skipped, resume at %d", b.overtaken, b.resumeAt, n)
	}
	if parts, hourly, oee := sums(); hourly != parts || oee != parts {
		t.Fatalf("after skipping the stored rows: parts %d, parts_hourly %d, parts_oee_hourly %d; want the rollups equal to parts", parts, hourly, oee)
	}
	// By class too: the OEE read through the rollups equals the raw one.
	cuts := []int64{base - 3_600_000, base + 3*3_600_000}
	cuts[0] -= cuts[0] % 3_600_000
	cuts[1] -= cuts[1] % 3_600_000
	roll, err := s.OEEParts(ctx, chstore.OEEScope{Site: 1, All: true}, cuts, false)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := s.OEEParts(ctx, chstore.OEEScope{Site: 1, All: true}, cuts, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) == 0 || !sameOEERows(raw, roll) {
		t.Fatalf("OEE quantities through the rollups %+v, from parts %+v", roll, raw)
	}
}

// sameOEERows compares two OEE reads row by row, in any order.
func sameOEERows(a, b []chstore.OEEPartsRow) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[chstore.OEEPartsRow]int{}
	for _, r := range a {
		seen[r]++
	}
	for _, r := range b {
		if seen[r] == 0 {
			return false
		}
		seen[r]--
	}
	return true
}
