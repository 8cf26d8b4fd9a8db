package chstore

import (
	"context"
	"io"
	"log/slog"
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
		blk.receivedMs, blk.processedMs, blk.topics, blk.partitions, blk.offsets, blk.ideals, blk.classes} {
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
