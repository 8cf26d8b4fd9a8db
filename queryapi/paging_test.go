package queryapi

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/demo"
	"github.com/takt/takt/internal/watermark"
)

// partsBlock returns n parts of site 1 at the next offsets of partition,
// received at received.
func partsBlock(partition int32, offset *int64, n int, received int64) (*chstore.PartsBlock, error) {
	var b chstore.PartsBlock
	for range n {
		r := chstore.PartRow{
			ID: chstore.PartID(partition, *offset), EventID: uuid.Must(uuid.NewV7()),
			Site: 1, LocationKind: "line", LocationID: 1, ExternalID: demo.LineExternalID,
			ProductResolution: "none", Quantity: 1, Quality: "good", RecordedMs: time.Now().UnixMilli(),
			ReceivedMs: received, Topic: "t", Partition: partition, Offset: *offset,
		}
		*offset++
		if err := b.Append(&r); err != nil {
			return nil, err
		}
	}
	return &b, nil
}

// partsWriter stores parts the way the processor does: each block's rows are
// placed above the partition's published watermark (StampOrder), and
// after each block the watermark of every partition moves to the time
// the block was stored (every part "acknowledged" by then is stored).
// The parts it writes were received up to lateMs before: the broker does
// not append in receive order.
type partsWriter struct {
	store   *chstore.Store
	offsets []int64
	floors  []int64
	lasts   []int64
	lateMs  int64

	mu sync.Mutex
	// published: when each write's watermark was published, and the
	// offsets every partition was then stored up to.
	published []published
}

type published struct {
	at      time.Time
	offsets []int64
}

// storedBefore returns the offsets every partition was stored up to, with
// its watermark published, before t.
func (w *partsWriter) storedBefore(t time.Time) []int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]int64, len(w.offsets))
	for _, p := range w.published {
		if p.at.Before(t) {
			copy(out, p.offsets)
		}
	}
	return out
}

func newPartsWriter(store *chstore.Store, partitions int, lateMs int64) *partsWriter {
	return &partsWriter{store: store, offsets: make([]int64, partitions), floors: make([]int64, partitions),
		lasts: make([]int64, partitions), lateMs: lateMs}
}

func (w *partsWriter) write(ctx context.Context, p int32, n int) error {
	at := time.Now().UnixMilli()
	b, err := partsBlock(p, &w.offsets[p], n, at-w.lateMs)
	if err != nil {
		return err
	}
	w.lasts[p] = b.StampOrder(w.floors[p], w.lasts[p])
	if err := w.store.InsertParts(ctx, b); err != nil {
		return err
	}
	// Every part written so far is stored: the watermark is now.
	now := time.Now().UnixMilli() - 1
	ws := make([]watermark.Partition, len(w.floors))
	for i := range ws {
		ws[i] = watermark.Partition{Partition: int32(i), Partitions: int32(len(ws)), Ms: now, Stored: w.offsets[i]}
		w.floors[i] = max(w.floors[i], now)
	}
	if err := w.store.InsertPartsWatermarks(ctx, "t", ws); err != nil {
		return err
	}
	w.mu.Lock()
	w.published = append(w.published, published{at: time.Now(), offsets: slices.Clone(w.offsets)})
	w.mu.Unlock()
	return nil
}

// TestPagingUnderIngest runs the reference's paging loop (limit, offset +=
// len(data), stop on a short page) while parts keep arriving in every
// partition, including low ones whose ids sort before pages already read,
// and received long before the parts already shown (the broker appends
// in its own order). Every part stored before the loop started is seen,
// and none twice. Were rows placed by receive time alone, the late ones
// would land behind pages already read and be missed.
func TestPagingUnderIngest(t *testing.T) {
	store, rdb, cfg, seeded := seededDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	w := newPartsWriter(store, 4, 0)
	for p := int32(3); p >= 0; p-- {
		if err := w.write(ctx, p, 60); err != nil {
			t.Fatal(err)
		}
	}
	cfg.Watermark, cfg.PartsTopic = true, "t"
	f := &fixture{srv: serve(t, store, rdb, nil, cfg)}
	w.lateMs = 1500

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
			if err := w.write(ctx, int32(i%4), 7); err != nil {
				insertErr = err
				return
			}
		}
	}()

	seen := map[uint64]int{}
	const limit = 10
	var lastPage time.Time
	loop := func() int {
		n := 0
		for offset := 0; ; {
			lastPage = time.Now()
			list := records(t, f.getJSON(t, "/api/1.0/parts/?fields=id&limit="+strconv.Itoa(limit)+"&offset="+strconv.Itoa(offset), seeded.APIKey, http.StatusOK))
			for _, rec := range list {
				seen[idOf(t, rec)]++
			}
			n += len(list)
			offset += len(list)
			if len(list) < limit {
				return n
			}
			time.Sleep(30 * time.Millisecond) // let parts arrive between pages
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
	// The loop's last page reached the end of what was shown then: every
	// part published before it (a replica reads the watermark at most
	// watermarkEvery before a request) is in the pages. A part placed
	// behind a page already read would be missing here.
	late := 0
	for p, end := range w.storedBefore(lastPage.Add(-2 * watermarkEvery)) {
		for o := range end {
			if seen[chstore.PartID(int32(p), o)] != 1 {
				t.Errorf("part (%d, %d) published before the last page: seen %d times", p, o, seen[chstore.PartID(int32(p), o)])
			}
			if o >= 60 {
				late++
			}
		}
	}
	if late == 0 {
		t.Errorf("no part written during the loop was published before its last page: the loop ran too fast to test anything")
	}
	// Once ingest stops (and the watermark is read again), a loop sees
	// every part once.
	time.Sleep(2 * watermarkEvery)
	clear(seen)
	total := loop()
	want := int(w.offsets[0] + w.offsets[1] + w.offsets[2] + w.offsets[3])
	if total != want || len(seen) != want {
		t.Errorf("final loop: %d records, %d distinct, want %d", total, len(seen), want)
	}
}
