//go:build takt_cluster

package replicated

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/takt/takt/internal/chstore"
)

// clusterStore opens a migrated scratch database on the cluster through
// addrs (in that order), dropped ON CLUSTER when the test ends.
func clusterStore(ctx context.Context, t *testing.T, addrs []string, cluster, db string) *chstore.Store {
	t.Helper()
	cfg := chstore.Config{Addr: addrs, Database: db, User: "default", Cluster: cluster,
		DialTimeout: 5 * time.Second, ReadTimeout: time.Minute, MaxOpenConns: 4}
	s, err := chstore.Open(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("open %v: %v", addrs, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func scratchName() string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return "takt_cluster_test_" + hex.EncodeToString(b[:])
}

// onePart is a part row at (partition, offset) that differs from another
// only in its id, offset and event id.
func onePart(partition int32, offset int64) *chstore.PartRow {
	return &chstore.PartRow{ID: chstore.PartID(partition, offset), EventID: uuid.New(), Site: 1, LocationKind: "machine",
		LocationID: 7, ExternalID: "m7", ProductID: 3, ProductCode: "P3", ProductReported: "P3", ProductResolution: "code",
		Quantity: 1, Quality: "good", RecordedMs: 1_700_000_000_000, IdealCycleTime: 2, OEEClass: "counted",
		ReceivedMs: 1_700_000_000_000, ProcessedMs: 1_700_000_000_100, Topic: "t", Partition: partition, Offset: offset}
}

// testStoreOnCluster checks the two things cluster mode changes in the
// store, on the running cluster (replicas[0], replicas[1]):
//
//   - Two identical blocks written into a summing rollup both count:
//     ClickHouse's insert deduplication would drop the second (fails with
//     insert_deduplicate left on).
//   - The highest offset read through a replica that has not fetched a
//     block yet still finds the block: the read syncs the replica first
//     (fails without SYSTEM SYNC REPLICA).
func testStoreOnCluster(ctx context.Context, t *testing.T, replicas []string, cluster string) {
	db := scratchName()
	a := clusterStore(ctx, t, []string{replicas[0]}, cluster, db)
	if err := a.Migrate(ctx); err != nil {
		t.Fatalf("migrate on the cluster: %v", err)
	}
	t.Cleanup(func() {
		dctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := a.Exec(dctx, "DROP DATABASE IF EXISTS `"+db+"` ON CLUSTER `"+cluster+"`"); err != nil {
			t.Logf("drop %s: %v", db, err)
		}
	})
	// b reads through the second replica only.
	b := clusterStore(ctx, t, []string{replicas[1]}, cluster, db)

	t.Run("identical rollup blocks both count", func(t *testing.T) {
		// The rollup repair writes its completion rows straight into the
		// summing rollups; two repairs can write the same block.
		for range 2 {
			if err := a.Exec(ctx, `INSERT INTO parts_hourly (site, location_kind, location_id, product_id, hour, produced, good, scrap, rework, events)
				SELECT 1, 'machine', 8, 3, toDateTime(1700000000), 1, 1, 0, 0, 1`); err != nil {
				t.Fatal(err)
			}
		}
		n, err := a.QueryUint64(ctx, "SELECT sum(produced) FROM parts_hourly WHERE location_id = 8")
		if err != nil || n != 2 {
			t.Fatalf("parts_hourly produced %d (%v) after two identical one-row blocks, want 2", n, err)
		}
	})

	t.Run("resume read sees a block the other replica took", func(t *testing.T) {
		// The second replica fetches nothing until the read asks it to
		// sync; the block goes to the first.
		if err := b.Exec(ctx, "SYSTEM STOP FETCHES parts"); err != nil {
			t.Fatal(err)
		}
		var blk chstore.PartsBlock
		for off := int64(100); off < 110; off++ {
			if err := blk.Append(onePart(1, off)); err != nil {
				t.Fatal(err)
			}
		}
		if err := a.InsertParts(ctx, &blk); err != nil {
			t.Fatal(err)
		}
		n, err := b.QueryUint64(ctx, "SELECT count() FROM parts WHERE partition = 1")
		if err != nil || n != 0 {
			t.Fatalf("the second replica holds %d rows (%v) with fetches stopped: the test cannot tell a synced read", n, err)
		}
		if err := b.Exec(ctx, "SYSTEM START FETCHES parts"); err != nil {
			t.Fatal(err)
		}
		last, found, err := b.PartsMaxOffset(ctx, "t", 1, 0)
		if err != nil || !found || last != 109 {
			t.Fatalf("highest offset through the second replica: %d, %v (%v); want 109: an acknowledged block was missed", last, found, err)
		}
	})
}
