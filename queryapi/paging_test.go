package queryapi

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/demo"
)

// insertParts writes n parts of site 1 at the next offsets of partition.
func insertParts(ctx context.Context, store *chstore.Store, partition int32, offset *int64, n int) error {
	var b chstore.PartsBlock
	for range n {
		r := chstore.PartRow{
			ID: chstore.PartID(partition, *offset), EventID: uuid.Must(uuid.NewV7()),
			Site: 1, LocationKind: "line", LocationID: 1, ExternalID: demo.LineExternalID,
			ProductResolution: "none", Quantity: 1, Quality: "good", RecordedMs: time.Now().UnixMilli(),
			Topic: "t", Partition: partition, Offset: *offset,
		}
		*offset++
		if err := b.Append(&r); err != nil {
			return err
		}
	}
	return store.InsertParts(ctx, &b)
}

// TestPagingUnderIngest runs the reference's paging loop (limit, offset +=
// len(data), stop on a short page) while parts keep arriving in every
// partition, including low ones whose ids sort before pages already read.
// Every part stored before the loop started is seen, and none twice.
func TestPagingUnderIngest(t *testing.T) {
	store, rdb, cfg, seeded := seededDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	offsets := make([]int64, 4)
	for p := int32(3); p >= 0; p-- {
		if err := insertParts(ctx, store, p, &offsets[p], 60); err != nil {
			t.Fatal(err)
		}
	}
	cfg.PartsLag = time.Second
	f := &fixture{srv: serve(t, store, rdb, nil, cfg)}
	time.Sleep(2100 * time.Millisecond) // the first parts become visible

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var insertErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			p := int32(i % 4)
			if err := insertParts(ctx, store, p, &offsets[p], 7); err != nil {
				insertErr = err
				return
			}
		}
	}()

	seen := map[uint64]int{}
	const limit = 25
	loop := func() int {
		n := 0
		for offset := 0; ; {
			list := records(t, f.getJSON(t, "/api/1.0/parts/?fields=id&limit="+strconv.Itoa(limit)+"&offset="+strconv.Itoa(offset), seeded.APIKey, http.StatusOK))
			for _, rec := range list {
				seen[idOf(t, rec)]++
			}
			n += len(list)
			offset += len(list)
			if len(list) < limit {
				return n
			}
			time.Sleep(10 * time.Millisecond) // let parts arrive between pages
		}
	}
	loop()
	close(stop)
	wg.Wait()
	if insertErr != nil {
		t.Fatal(insertErr)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("part %d seen %d times", id, n)
		}
	}
	for p := range int32(4) {
		for o := range int64(60) {
			if seen[chstore.PartID(p, o)] != 1 {
				t.Errorf("part (%d, %d) stored before the loop: seen %d times", p, o, seen[chstore.PartID(p, o)])
			}
		}
	}
	// Once ingest stops and the lag passed, a loop sees every part once.
	time.Sleep(2100 * time.Millisecond)
	clear(seen)
	total := loop()
	want := int(offsets[0] + offsets[1] + offsets[2] + offsets[3])
	if total != want || len(seen) != want {
		t.Errorf("final loop: %d records, %d distinct, want %d", total, len(seen), want)
	}
}
