package chstore

import (
	"context"
	"io"
	"log/slog"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/takt/takt/internal/config"
)

// TestWaitPartsInserts holds an INSERT open (prepared, data not yet sent),
// as a processor killed mid-insert leaves one, and checks that
// WaitPartsInserts sees it and returns only after it ended.
func TestWaitPartsInserts(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs the local ClickHouse")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var env config.Env
	cfg := ConfigFromEnv(&env)
	cfg.Database = "takt_test_wait_" + uuid.NewString()[:8]
	s, err := Open(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("open clickhouse: %v", err)
	}
	defer s.Close()
	defer s.Exec(context.Background(), "DROP DATABASE IF EXISTS `"+cfg.Database+"`")
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}

	if ids, err := s.RunningPartsInserts(ctx); err != nil || len(ids) != 0 {
		t.Fatalf("idle: running %v, %v", ids, err)
	}
	batch, err := s.conn.PrepareBatch(ctx, s.partsInsertPrefix()+" ("+partsColumns+")")
	if err != nil {
		t.Fatal(err)
	}
	ids, err := s.RunningPartsInserts(ctx)
	if err != nil || len(ids) != 1 {
		t.Fatalf("with an open insert: running %v, %v", ids, err)
	}
	waited := make(chan error, 1)
	go func() { waited <- s.WaitPartsInserts(ctx, 10*time.Millisecond, nil) }()
	select {
	case err := <-waited:
		t.Fatalf("WaitPartsInserts returned while the insert runs: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	var blk PartsBlock
	r := PartRow{ID: 1, EventID: uuid.New(), LocationKind: "line", ProductResolution: "none", Quality: "good", Offset: 1}
	if err := blk.Append(&r); err != nil {
		t.Fatal(err)
	}
	for i, col := range []any{blk.ids, blk.eventIDs, blk.sites, blk.kinds, blk.locIDs, blk.externalIDs,
		blk.productIDs, blk.productCode, blk.reported, blk.resolutions, blk.quantities, blk.qualities,
		blk.reasons, blk.reasonIDs, []*float64{nil}, blk.recordedAt, blk.recordedMs, blk.defaulted,
		blk.receivedMs, blk.processedMs, blk.topics, blk.partitions, blk.offsets, blk.ideals, blk.classes, blk.orders} {
		if err := batch.Column(i).Append(col); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatal(err)
	}
	if err := <-waited; err != nil {
		t.Fatal(err)
	}
}

// TestAppendBlock: every column of a block is carried over, so a block
// made of several partitions' blocks holds whole rows; a column added to
// PartsBlock but forgotten in AppendBlock fails here.
func TestAppendBlock(t *testing.T) {
	row := func(partition int32, offset int64) *PartRow {
		return &PartRow{ID: PartID(partition, offset), EventID: uuid.New(), Site: 1, LocationKind: "machine", LocationID: 7,
			ExternalID: "m7", ProductID: 3, ProductCode: "P3", ProductResolution: "code", Quantity: 2, Quality: "good",
			CycleTime: 1.5, HasCycleTime: true, RecordedMs: 1_700_000_000_000, Topic: "takt.parts",
			Partition: partition, Offset: offset, OEEClass: "counted", IdempotencyID: uuid.New()}
	}
	var a, b PartsBlock
	for _, r := range []*PartRow{row(0, 10), row(0, 11)} {
		if err := a.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Append(row(1, 5)); err != nil {
		t.Fatal(err)
	}
	a.AppendBlock(&b)
	v := reflect.ValueOf(a)
	for i := range v.NumField() {
		f := v.Type().Field(i)
		if f.Name == "cyclePtrs" { // derived from cycleTimes when sent
			continue
		}
		if n := v.Field(i).Len(); n != 3 {
			t.Errorf("column %s has %d values after appending a 1-row block to a 2-row one, want 3", f.Name, n)
		}
	}
	if got := a.IDs(); got[2] != PartID(1, 5) || got[0] != PartID(0, 10) {
		t.Errorf("ids %v: want the appended block's rows after the block's own", got)
	}
	if b.Len() != 1 {
		t.Errorf("the appended block changed: %d rows", b.Len())
	}
	// The idempotency ids (every row has one here) keep their rows.
	if !reflect.DeepEqual(a.keyRows, []int{0, 1, 2}) || a.keyIDs[2] != b.keyIDs[0] {
		t.Errorf("key rows %v, ids %v: want rows 0, 1, 2 with the appended block's id last", a.keyRows, a.keyIDs)
	}
}
