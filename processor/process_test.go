package processor

import (
	"context"
	"io"
	"log/slog"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/watermark"
	"github.com/takt/takt/internal/wire"
	"github.com/takt/takt/processor/resolve"
)

// fakeMasterData serves fixed master data like the demo seed's.
type fakeMasterData struct{ products []chstore.Product }

func (f fakeMasterData) Products(context.Context) ([]chstore.Product, error) { return f.products, nil }
func (fakeMasterData) PeriodMaster(context.Context) (chstore.PeriodMaster, error) {
	return chstore.PeriodMaster{}, nil
}
func (f fakeMasterData) Reasons(context.Context) ([]chstore.Reason, error) {
	return []chstore.Reason{{ID: 1, Site: 1, Code: "REASON01", Kind: "scrap"}}, nil
}

var demoProducts = []chstore.Product{
	{ID: 1, Site: 1, Code: "PROD001", IdealCycleTime: 45},
	{ID: 2, Site: 1, Code: "FALLBACK", IdealCycleTime: 60, Fallback: true},
}

func testConsumer(tb testing.TB) *consumer {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	m := newMetrics(prometheus.NewRegistry())
	md := newMasterData(fakeMasterData{demoProducts}, 0.1, logger, m)
	if err := md.reload(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return &consumer{
		cfg:    Config{Topic: "parts", BatchRows: 10000, BatchInterval: time.Second},
		logger: logger, m: m, master: md,
		parts: map[int32]*partState{},
	}
}

// samplePart returns a realistic part message; i varies the fields.
func samplePart(i int) wire.Part {
	p := wire.Part{
		EventID:      uuid.Must(uuid.NewV7()).String(),
		Site:         1,
		LocationKind: "line",
		LocationID:   1,
		ExternalID:   "line_1",
		Quantity:     1,
		Quality:      wire.QualityGood,
		RecordedAtMs: 1_700_000_000_000 + int64(i)*1000,
		ReceivedAtMs: 1_700_000_000_050 + int64(i)*1000,
	}
	switch i % 4 {
	case 0:
		p.Product = "PROD001"
	case 1:
		p.CycleTime, p.HasCycleTime = 44.2, true
	case 2:
		p.Quality, p.Reason = wire.QualityScrap, "REASON01"
		p.Product = "PROD001"
	case 3:
		p.CycleTime, p.HasCycleTime = 3, true
	}
	return p
}

func sampleRecords(tb testing.TB, n int) []*kgo.Record {
	rs := make([]*kgo.Record, n)
	for i := range rs {
		p := samplePart(i)
		v, err := wire.Encode(&p)
		if err != nil {
			tb.Fatal(err)
		}
		rs[i] = &kgo.Record{Topic: "parts", Partition: 2, Offset: int64(i), Key: p.Key(), Value: v}
	}
	return rs
}

func TestProcessBuildsRows(t *testing.T) {
	c := testConsumer(t)
	st := &partState{partition: 2, block: new(chstore.PartsBlock)}
	rs := sampleRecords(t, 4)
	now := time.UnixMilli(1_800_000_000_000)
	ds := decodeAll(rs, nil)
	for i, r := range rs {
		if err := c.process(context.Background(), st, r, &ds[i], now); err != nil {
			t.Fatal(err)
		}
	}
	if st.block.Len() != 4 || st.records != 4 || st.first != 0 || st.firstRow != 0 || st.next.Offset != 4 {
		t.Fatalf("state: len %d records %d first %d firstRow %d next %d", st.block.Len(), st.records, st.first, st.firstRow, st.next.Offset)
	}
	if want := (resolutionCounts{2, 1, 1, 0}); st.resolutions != want {
		t.Errorf("resolutions %v, want %v", st.resolutions, want)
	}
}

func BenchmarkDecodeResolve(b *testing.B) {
	c := testConsumer(b)
	rs := sampleRecords(b, 10000)
	st := &partState{partition: 2, block: new(chstore.PartsBlock)}
	now := time.Now()
	ctx := context.Background()
	var bytes int64
	for _, r := range rs {
		bytes += int64(len(r.Value))
	}
	b.SetBytes(bytes / int64(len(rs)))
	var ds []decoded
	b.ReportAllocs()
	b.ResetTimer()
	// One iteration is one record; records are handled a poll (1000) at a
	// time, as the consume loop does, so decoding runs on every CPU.
	for done := 0; done < b.N; {
		n := min(1000, b.N-done)
		lo := done % len(rs)
		if lo+n > len(rs) {
			lo = 0
		}
		if st.block.Len()+n > len(rs) {
			st.reset()
		}
		batch := rs[lo : lo+n]
		ds = decodeAll(batch, ds)
		for i, r := range batch {
			if err := c.process(ctx, st, r, &ds[i], now); err != nil {
				b.Fatal(err)
			}
		}
		done += n
	}
}

func BenchmarkWireDecode(b *testing.B) {
	rs := sampleRecords(b, 1000)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := wire.Decode(rs[i%len(rs)].Value); err != nil {
			b.Fatal(err)
		}
	}
}

// maxOffsetStore answers PartsMaxOffset from a map (partition -> last
// offset) and counts the calls; it records the rollup repairs asked for
// (partition, from, to) and what the store had done before each (waits
// for running inserts).
type maxOffsetStore struct {
	periodStore
	noRecomputes
	last    map[int32]int64
	calls   int
	waits   int
	repairs [][3]int64
	// waitsBeforeRepair holds waits as each repair began.
	waitsBeforeRepair []int
}

func (s *maxOffsetStore) InsertParts(context.Context, *chstore.PartsBlock) error { return nil }

func (s *maxOffsetStore) PartKeys(context.Context, string, []uuid.UUID) (map[uuid.UUID]chstore.PartPosition, error) {
	return nil, nil
}

func (s *maxOffsetStore) InsertPartsWatermarks(context.Context, string, []watermark.Partition) error {
	return nil
}

func (s *maxOffsetStore) PartsWatermarks(context.Context, string) ([]watermark.Partition, error) {
	return nil, nil
}

func (s *maxOffsetStore) WaitPartsInserts(context.Context, time.Duration, func(int)) error {
	s.waits++
	return nil
}

func (s *maxOffsetStore) ReconcileRollups(_ context.Context, _ string, p int32, from, to int64) (chstore.RollupRepair, error) {
	s.repairs = append(s.repairs, [3]int64{int64(p), from, to})
	s.waitsBeforeRepair = append(s.waitsBeforeRepair, s.waits)
	return chstore.RollupRepair{}, nil
}

func (s *maxOffsetStore) PartsMaxOffset(_ context.Context, _ string, p int32, from int64) (int64, bool, error) {
	s.calls++
	last, ok := s.last[p]
	if !ok || last < from {
		return 0, false, nil
	}
	return last, true, nil
}

func TestCheckPositions(t *testing.T) {
	c := testConsumer(t)
	st := &maxOffsetStore{last: map[int32]int64{0: 120, 1: 40}}
	c.store = st
	c.owners = func(context.Context) (map[int32]bool, error) {
		return map[int32]bool{0: true, 1: true, 2: true, 3: true}, nil
	}
	batches := []*batch{
		{partition: 0, first: 100, validGen: 3}, // overtaken: rows up to 120 exist
		{partition: 1, first: 50, validGen: 3},  // rows only before 50: ours to write
		{partition: 2, first: 0, validGen: 4},   // already checked in generation 4
		{partition: 3, first: 7, validGen: 3, inserted: true},
	}
	if err := c.checkPositions(context.Background(), batches, 4); err != nil {
		t.Fatal(err)
	}
	if b := batches[0]; !b.overtaken || b.resumeAt != 121 || b.validGen != 3 {
		t.Errorf("partition 0: %+v, want overtaken, resume at 121", b)
	}
	if b := batches[1]; b.overtaken || b.validGen != 4 {
		t.Errorf("partition 1: %+v, want validated in generation 4", b)
	}
	// The rows skipped on partition 0 may be a block cut short between
	// parts and its views: their rollups are repaired, after the running
	// inserts ended, before they are skipped.
	if want := [][3]int64{{0, 100, 120}}; !reflect.DeepEqual(st.repairs, want) {
		t.Errorf("rollup repairs %v, want %v", st.repairs, want)
	}
	if len(st.waitsBeforeRepair) == 0 || st.waitsBeforeRepair[0] == 0 {
		t.Errorf("repair ran without waiting for the running inserts (waits before it: %v)", st.waitsBeforeRepair)
	}
	// One read per partition checked, and partition 0's again after the
	// wait (a running insert may have added rows).
	if st.calls != 3 {
		t.Errorf("%d ClickHouse reads, want 3", st.calls)
	}
}

// FuzzDecode checks that no input makes decoding or row building panic,
// and that every input either becomes a row or gets a dead-letter class.
func FuzzDecode(f *testing.F) {
	for _, r := range sampleRecords(f, 4) {
		f.Add(r.Value)
	}
	f.Add([]byte(`not json`))
	f.Add([]byte(`{"v":2}`))
	f.Add([]byte(`{"v":1,"event_id":"x","site":1,"location_kind":"line","external_id":"a","quantity":1,"quality":"good","recorded_at_ms":1,"received_at_ms":1}`))
	f.Add([]byte(`{"v":1,"event_id":"0190a000-0000-7000-8000-000000000000","site":1,"location_kind":"line","external_id":"a","quantity":1,"quality":"good","recorded_at_ms":9999999999999999,"received_at_ms":1}`))
	c := testConsumer(f)
	f.Fuzz(func(t *testing.T, value []byte) {
		var d decoded
		decode(&kgo.Record{Value: value}, &d)
		if d.err != nil {
			switch d.class {
			case dlqDecode, dlqVersion, dlqInvalid, dlqEventID:
			default:
				t.Fatalf("error %v without a dead-letter class (%q)", d.err, d.class)
			}
			return
		}
		// Row building must not panic; a row the table cannot hold is
		// caught by CheckPartRow (class "row").
		res := c.master.get().Product(d.part.Site, d.part.Product, d.part.CycleTime, d.part.HasCycleTime)
		row := chstore.PartRow{
			ID:                1,
			EventID:           d.eventID,
			Site:              d.part.Site,
			LocationKind:      d.part.LocationKind,
			ProductResolution: string(res.Resolution),
			Quality:           d.part.Quality,
			RecordedMs:        d.part.RecordedAtMs,
			Offset:            1,
		}
		st := &partState{partition: 0, block: new(chstore.PartsBlock)}
		_ = st.block.Append(&row)
	})
}

// TestDecodeKindsAndProductHeader: a dispatch record decodes as a down
// window, a record of an unknown kind goes to the dead letters, and a
// part's product header names the product when the catalog does not know
// its code yet.
func TestDecodeKindsAndProductHeader(t *testing.T) {
	w := wire.Dispatch{Control: wire.Control{ID: "0190f2a4-5b6c-7d8e-9f00-112233445588", Site: 1, LocationKind: "machine", LocationID: 9,
		ExternalID: "m9"},
		Dispatch: 12, DispatchType: 3, StartMs: 1_700_000_000_000}
	wv, err := wire.EncodeDispatch(&w)
	if err != nil {
		t.Fatal(err)
	}
	var d decoded
	decode(&kgo.Record{Value: wv, Headers: []kgo.RecordHeader{{Key: wire.KindHeader, Value: []byte(wire.KindDispatch)}}}, &d)
	if d.err != nil || d.dispatch == nil || *d.dispatch != w || d.assign != nil {
		t.Fatalf("dispatch record: %+v", d)
	}
	decode(&kgo.Record{Value: wv, Headers: []kgo.RecordHeader{{Key: wire.KindHeader, Value: []byte("nope")}}}, &d)
	if d.err == nil || d.class != dlqVersion {
		t.Fatalf("unknown kind: %+v", d)
	}
	rec := sampleRecords(t, 1)[0]
	rec.Headers = []kgo.RecordHeader{{Key: wire.ProductHeader, Value: []byte("4242")}}
	decode(rec, &d)
	if d.err != nil || d.productID != 4242 {
		t.Fatalf("part with a product header: %+v", d)
	}
	cat := resolve.NewCatalog([]resolve.Product{{ID: 1, Site: 1, Code: "KNOWN", IdealCycleTime: 30}}, nil, 0.1)
	for _, tt := range []struct {
		code   string
		header uint64
		want   resolve.Result
	}{
		{"NEW", 4242, resolve.Result{ID: 4242, Code: "NEW", Resolution: resolve.ByCode}},
		{"KNOWN", 4242, resolve.Result{ID: 1, Code: "KNOWN", IdealCycleTime: 30, Resolution: resolve.ByCode}},
		{"NEW", 0, resolve.Result{Resolution: resolve.None}},
	} {
		p := wire.Part{Site: 1, Product: tt.code}
		if got := resolveProduct(cat, &p, tt.header); got != tt.want {
			t.Errorf("%s with header %d: %+v, want %+v", tt.code, tt.header, got, tt.want)
		}
	}
}
