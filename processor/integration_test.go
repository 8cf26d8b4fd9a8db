package processor

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/testenv"
	"github.com/takt/takt/internal/wire"
)

func TestProcessorWritesParts(t *testing.T) {
	e := newITEnv(t, 3)
	cfg := e.config()
	cfg.Addr = freeAddr(t)
	started := time.Now()
	stop, done := runInProcess(t, cfg, nil)
	alive := func() error {
		select {
		case err := <-done:
			return errors.Join(errors.New("processor stopped"), err)
		default:
			return nil
		}
	}

	part := func(ext string, site uint64, product string, quality, reason string) wire.Part {
		p := newParts(1)[0]
		p.ExternalID, p.Site, p.Product, p.Quality, p.Reason = ext, site, product, quality, reason
		return p
	}
	withCT := func(p wire.Part, ct float64) wire.Part {
		p.CycleTime, p.HasCycleTime = ct, true
		return p
	}
	type want struct {
		productID  uint64
		code       string
		resolution string
		reason     string
		reasonID   uint64
		cycleTime  *float64
	}
	f := func(v float64) *float64 { return &v }
	cases := []struct {
		name string
		part wire.Part
		want want
	}{
		{"by code", part("line_1", 1, "PROD001", "good", ""), want{1, "PROD001", "code", "", 0, nil}},
		{"by cycle time", withCT(part("line_1", 1, "", "good", ""), 44), want{1, "PROD001", "cycle_time", "", 0, f(44)}},
		{"unknown code, cycle time matches", withCT(part("line_2", 1, "NOPE", "good", ""), 47), want{1, "PROD001", "cycle_time", "", 0, f(47)}},
		{"reported 0 cycle time is kept, falls back", withCT(part("line_2", 1, "", "good", ""), 0), want{2, "FALLBACK", "fallback", "", 0, f(0)}},
		{"code is case-sensitive", part("line_3", 1, "prod001", "good", ""), want{2, "FALLBACK", "fallback", "", 0, nil}},
		{"scrap with known reason", part("line_3", 1, "", "scrap", "REASON01"), want{2, "FALLBACK", "fallback", "REASON01", 1, nil}},
		{"scrap with unknown reason keeps the code", part("line_4", 1, "PROD001", "scrap", "WHO"), want{1, "PROD001", "code", "WHO", 0, nil}},
		{"reason ignored unless scrap", part("line_4", 1, "PROD001", "rework", "REASON01"), want{1, "PROD001", "code", "", 0, nil}},
		{"site without products: none", part("line_5", 9, "PROD001", "good", ""), want{0, "", "none", "", 0, nil}},
	}
	parts := make([]wire.Part, len(cases))
	for i, tc := range cases {
		parts[i] = tc.part
	}
	parts[0].LocationKind, parts[0].LocationID = "machine", 7
	parts[1].RecordedDefaulted = true
	recs := e.produce(parts)

	// Garbage on line_1's partition, then more good parts behind it: the
	// dead letters must not stop the partition.
	bad := validJSON(t, newParts(1)[0])
	garbage := [][]byte{
		[]byte("not json"),
		[]byte(strings.Replace(string(bad), `"v":1`, `"v":2`, 1)),
		[]byte(strings.Replace(string(bad), `"quantity":1`, `"quantity":0`, 1)),
		[]byte(strings.Replace(string(bad), `"event_id":"`, `"event_id":"x`, 1)),
	}
	badRecs := e.produceRaw("line_1", garbage...)
	after := newParts(20)
	for i := range after {
		after[i].ExternalID = "line_1"
	}
	e.produce(after)

	total := uint64(len(parts) + len(after))
	e.waitRows(total, 30*time.Second, alive)

	// A product created while the processor runs is found at once by
	// code: the unknown code triggers a reload (at most one a second).
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.store.PutProduct(ctx, chstore.Product{ID: 5, Site: 1, Code: "NEW5", IdealCycleTime: 30}); err != nil {
		t.Fatal(err)
	}
	// The parts above with unknown codes made the last reload; wait out
	// the rate limit so that NEW5 triggers one of its own.
	time.Sleep(unknownCodeReloadEvery + 100*time.Millisecond)
	newRec := e.produce([]wire.Part{part("line_6", 1, "NEW5", "good", "")})[0]
	total++
	e.waitRows(total, 30*time.Second, alive)

	// Health endpoints and metrics.
	for path, wantBody := range map[string]string{"/healthz": "ok", "/readyz": `{"status":"ok"}`, "/debug/pprof/": "goroutine", "/metrics": "takt_processor_parts_inserted_total"} {
		resp, err := http.Get("http://" + cfg.Addr + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), wantBody) {
			t.Errorf("GET %s: %d %q", path, resp.StatusCode, body)
		}
	}

	if err := stop(); err != nil {
		t.Fatalf("processor: %v", err)
	}
	e.assertExactly(total)

	rows, err := e.store.PartsOfTopic(ctx, e.topic)
	if err != nil {
		t.Fatal(err)
	}
	byEvent := map[uuid.UUID]chstore.PartRow{}
	for _, r := range rows {
		byEvent[r.EventID] = r
	}
	for i, tc := range cases {
		r, ok := byEvent[uuid.MustParse(tc.part.EventID)]
		if !ok {
			t.Errorf("%s: no row", tc.name)
			continue
		}
		w := tc.want
		if r.ProductID != w.productID || r.ProductCode != w.code || r.ProductResolution != w.resolution ||
			r.Reason != w.reason || r.ReasonID != w.reasonID || r.ProductReported != tc.part.Product {
			t.Errorf("%s: product %d %q %s reported %q, reason %q %d; want %+v", tc.name,
				r.ProductID, r.ProductCode, r.ProductResolution, r.ProductReported, r.Reason, r.ReasonID, w)
		}
		if (w.cycleTime == nil) != !r.HasCycleTime || (w.cycleTime != nil && *w.cycleTime != r.CycleTime) {
			t.Errorf("%s: cycle time %v (has %v), want %v", tc.name, r.CycleTime, r.HasCycleTime, w.cycleTime)
		}
		rec := recs[i]
		if r.ID != chstore.PartID(rec.Partition, rec.Offset) || r.Partition != rec.Partition || r.Offset != rec.Offset ||
			r.Topic != e.topic || r.Site != tc.part.Site || r.ExternalID != tc.part.ExternalID ||
			r.Quality != tc.part.Quality || r.Quantity != 1 || r.RecordedMs != tc.part.RecordedAtMs ||
			r.ReceivedMs != tc.part.ReceivedAtMs || r.ProcessedMs < started.UnixMilli() {
			t.Errorf("%s: row %+v does not match record %s/%d@%d and part %+v", tc.name, r, rec.Topic, rec.Partition, rec.Offset, tc.part)
		}
	}
	if r := byEvent[uuid.MustParse(parts[0].EventID)]; r.LocationKind != "machine" || r.LocationID != 7 {
		t.Errorf("location: %s %d", r.LocationKind, r.LocationID)
	}
	if r := byEvent[uuid.MustParse(parts[1].EventID)]; !r.RecordedDefaulted {
		t.Error("recorded_defaulted lost")
	}
	newRow := byEvent[uuid.MustParse(mustEventID(t, newRec.Value))]
	if newRow.ProductID != 5 || newRow.ProductResolution != "code" {
		t.Errorf("product created at run time: got %d %s, want 5 by code", newRow.ProductID, newRow.ProductResolution)
	}

	dl := e.readDLQ(len(garbage))
	if len(dl) != len(garbage) {
		t.Fatalf("%d dead letters, want %d", len(dl), len(garbage))
	}
	wantClass := []string{dlqDecode, dlqVersion, dlqInvalid, dlqEventID}
	for i, r := range dl {
		src := badRecs[i]
		if string(r.Value) != string(garbage[i]) || string(r.Key) != "line_1" ||
			header(r, HeaderDLQClass) != wantClass[i] || header(r, HeaderDLQReason) == "" ||
			header(r, HeaderDLQSourceTopic) != e.topic ||
			header(r, HeaderDLQSourcePartition) != strconv.Itoa(int(src.Partition)) ||
			header(r, HeaderDLQSourceOffset) != strconv.FormatInt(src.Offset, 10) {
			t.Errorf("dead letter %d: key %q value %q headers %v; want class %s from %d@%d",
				i, r.Key, r.Value, r.Headers, wantClass[i], src.Partition, src.Offset)
		}
	}
	if got := metricValue(t, cfg.Registry, "takt_processor_dlq_records_total"); got != float64(len(garbage)) {
		t.Errorf("dlq metric = %v, want %d", got, len(garbage))
	}
	if got := metricValue(t, cfg.Registry, "takt_processor_parts_inserted_total"); got != float64(total) {
		t.Errorf("inserted metric = %v, want %d", got, total)
	}
	// Every inserted row has a freshness sample and counts in the rows
	// per insert; the lag has one series per owned partition.
	mfs, err := cfg.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	lagPartitions := map[string]bool{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "takt_processor_freshness_seconds":
				if h := m.GetHistogram(); h.GetSampleCount() != uint64(total) || h.GetSampleSum() <= 0 {
					t.Errorf("freshness: %d samples summing to %v s, want %d, positive", h.GetSampleCount(), h.GetSampleSum(), total)
				}
			case "takt_processor_insert_rows":
				if h := m.GetHistogram(); h.GetSampleSum() != float64(total) || h.GetSampleCount() == 0 || h.GetSampleCount() > uint64(total) {
					t.Errorf("rows per insert: %d blocks of %v rows in all, want %d rows", h.GetSampleCount(), h.GetSampleSum(), total)
				}
			case "takt_processor_consumer_lag_records":
				for _, l := range m.GetLabel() {
					lagPartitions[l.GetName()+"="+l.GetValue()] = true
				}
			}
		}
	}
	if len(lagPartitions) != 3 || !lagPartitions["partition=0"] || !lagPartitions["partition=1"] || !lagPartitions["partition=2"] {
		t.Errorf("lag series %v, want partitions 0, 1, 2", lagPartitions)
	}
}

func validJSON(t *testing.T, p wire.Part) []byte {
	t.Helper()
	v, err := wire.Encode(&p)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func mustEventID(t *testing.T, v []byte) string {
	t.Helper()
	var p struct {
		EventID string `json:"event_id"`
	}
	if err := json.Unmarshal(v, &p); err != nil {
		t.Fatal(err)
	}
	return p.EventID
}

// TestProcessorResumesAfterClickHouse covers the instant between insert
// and commit deterministically: rows for the first offsets of each
// partition are already in ClickHouse (written by a processor that died
// before committing), nothing is committed, and the new processor must
// start after them instead of writing them again.
func TestProcessorResumesAfterClickHouse(t *testing.T) {
	e := newITEnv(t, 3)
	parts := newParts(900)
	recs := e.produce(parts)

	// "Previous processor": the first 100 records of every partition.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	blocks := map[int32]*chstore.PartsBlock{}
	seen := map[int32]int{}
	for i, r := range recs {
		if seen[r.Partition] >= 100 {
			continue
		}
		seen[r.Partition]++
		b := blocks[r.Partition]
		if b == nil {
			b = &chstore.PartsBlock{}
			blocks[r.Partition] = b
		}
		row := chstore.PartRow{
			ID: chstore.PartID(r.Partition, r.Offset), EventID: uuid.MustParse(parts[i].EventID),
			Site: 1, LocationKind: "line", ExternalID: parts[i].ExternalID, ProductResolution: "none",
			Quantity: 1, Quality: "good", RecordedMs: parts[i].RecordedAtMs, ProcessedMs: 1,
			Topic: e.topic, Partition: r.Partition, Offset: r.Offset,
		}
		if err := b.Append(&row); err != nil {
			t.Fatal(err)
		}
	}
	var pre uint64
	for _, b := range blocks {
		pre += uint64(b.Len())
		if err := e.store.InsertParts(ctx, b); err != nil {
			t.Fatal(err)
		}
	}

	stop, _ := runInProcess(t, e.config(), nil)
	e.waitRows(uint64(len(parts)), 30*time.Second, nil)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	e.assertExactly(uint64(len(parts)))
	kept, err := e.store.QueryUint64(ctx, "SELECT count() FROM parts WHERE topic = ? AND processed_ms = 1", e.topic)
	if err != nil || kept != pre {
		t.Fatalf("rows of the previous processor: %d (%v), want %d", kept, err, pre)
	}
}

// flakyStore fails inserts on demand: fail makes an attempt fail without
// writing; ambiguous writes the block and then reports an error, as when
// the connection drops after the server committed the part.
type flakyStore struct {
	*chstore.Store
	fail, ambiguous atomic.Int32
}

func (s *flakyStore) InsertParts(ctx context.Context, b *chstore.PartsBlock) error {
	if s.fail.Add(-1) >= 0 {
		return errors.New("injected insert failure")
	}
	if s.ambiguous.Add(-1) >= 0 {
		if err := s.Store.InsertParts(ctx, b); err != nil {
			return err
		}
		return errors.New("injected failure after the insert landed")
	}
	return s.Store.InsertParts(ctx, b)
}

func TestProcessorRetriesFailedInserts(t *testing.T) {
	e := newITEnv(t, 3)
	fs := &flakyStore{Store: e.store}
	fs.fail.Store(3)
	fs.ambiguous.Store(3)
	cfg := e.config()
	parts := newParts(3000)
	e.produce(parts)
	stop, _ := runInProcess(t, cfg, fs)
	e.waitRows(uint64(len(parts)), 60*time.Second, nil)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	e.assertExactly(uint64(len(parts)))
	if fs.fail.Load() >= 0 || fs.ambiguous.Load() >= 0 {
		t.Fatalf("not every injected failure was hit: fail %d ambiguous %d left", fs.fail.Load(), fs.ambiguous.Load())
	}
	if got := metricValue(t, cfg.Registry, "takt_processor_insert_errors_total"); got < 1 {
		t.Errorf("insert errors metric = %v", got)
	}
}

// waitMetric waits until a metric of reg reaches at least v.
func waitMetric(t *testing.T, reg interface {
	Gather() ([]*dto.MetricFamily, error)
}, name string, v float64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for metricValue(t, reg, name) < v {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not reach %v within %s", name, v, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestProcessorFencedMemberDoesNotWrite removes a member from its group
// (as the group does to a member whose session expired) while the member
// holds rows it cannot write. When ClickHouse heals, the member's fence
// commit must fail, so it drops the rows instead of writing them; it then
// rejoins, resumes from ClickHouse and Kafka, and every part lands once.
func TestProcessorFencedMemberDoesNotWrite(t *testing.T) {
	e := newITEnv(t, 3)
	fs := &flakyStore{Store: e.store}
	fs.fail.Store(1 << 30)
	cfg := e.config()
	cfg.InstanceID = "zombie"
	parts := newParts(2000)
	e.produce(parts)
	stop, _ := runInProcess(t, cfg, fs)
	waitMetric(t, cfg.Registry, "takt_processor_insert_errors_total", 1, 30*time.Second)

	adm := kadm.NewClient(e.prod)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := adm.LeaveGroup(ctx, kadm.LeaveGroup(e.group).InstanceIDs("zombie"))
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatalf("remove member: %v", err)
	}
	fs.fail.Store(0)

	e.waitRows(uint64(len(parts)), 60*time.Second, nil)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	e.assertExactly(uint64(len(parts)))
	if got := metricValue(t, cfg.Registry, "takt_processor_fenced_total"); got < 1 {
		t.Errorf("fenced metric = %v: the removed member was not stopped by its fence", got)
	}
}

// TestProcessorRebalanceWhileInsertsFail: a member whose inserts keep
// failing must not hold up a rebalance; it gives back its unwritten rows,
// the partitions move, and when its ClickHouse heals every part lands
// once.
func TestProcessorRebalanceWhileInsertsFail(t *testing.T) {
	e := newITEnv(t, 3)
	sick := &flakyStore{Store: e.store}
	sick.fail.Store(1 << 30)
	cfgA := e.config()
	parts := newParts(3000)
	e.produce(parts)
	stopA, _ := runInProcess(t, cfgA, sick)
	waitMetric(t, cfgA.Registry, "takt_processor_insert_errors_total", 1, 30*time.Second)

	cfgB := e.config()
	stopB, _ := runInProcess(t, cfgB, nil)
	waitMetric(t, cfgB.Registry, "takt_processor_parts_inserted_total", 1, 30*time.Second)
	sick.fail.Store(0)

	e.waitRows(uint64(len(parts)), 60*time.Second, nil)
	if err := stopA(); err != nil {
		t.Fatal(err)
	}
	if err := stopB(); err != nil {
		t.Fatal(err)
	}
	e.assertExactly(uint64(len(parts)))
}

// TestProcessorRemovedMemberRejoinsAfterOthersWrote: a member is removed
// from the group while it holds rows it cannot write; another member takes
// its partitions and writes them; then the first one heals and rejoins.
// It must resume after what the other wrote, not from where it stopped.
func TestProcessorRemovedMemberRejoinsAfterOthersWrote(t *testing.T) {
	e := newITEnv(t, 3)
	fs := &flakyStore{Store: e.store}
	fs.fail.Store(1 << 30)
	cfgA := e.config()
	cfgA.InstanceID = "zombie"
	parts := newParts(3000)
	e.produce(parts)
	stopA, _ := runInProcess(t, cfgA, fs)
	waitMetric(t, cfgA.Registry, "takt_processor_insert_errors_total", 1, 30*time.Second)

	adm := kadm.NewClient(e.prod)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := adm.LeaveGroup(ctx, kadm.LeaveGroup(e.group).InstanceIDs("zombie")); err != nil {
		t.Fatalf("remove member: %v", err)
	}
	cfgB := e.config()
	stopB, _ := runInProcess(t, cfgB, nil)
	// A learns of its removal at its next fence and rejoins. From then on
	// the group may give it partitions again, so its inserts must be able
	// to succeed (waiting for B to write everything first would wait on a
	// partition A holds). Whatever B wrote meanwhile, A finds at its
	// position check and skips.
	waitMetric(t, cfgA.Registry, "takt_processor_fenced_total", 1, 30*time.Second)
	fs.fail.Store(0)
	e.waitRows(uint64(len(parts)), 60*time.Second, nil)
	more := newParts(1500)
	e.produce(more)
	total := uint64(len(parts) + len(more))
	e.waitRows(total, 60*time.Second, nil)
	// Let A flush what it holds before stopping everything.
	time.Sleep(2 * time.Second)
	if err := stopA(); err != nil {
		t.Fatal(err)
	}
	if err := stopB(); err != nil {
		t.Fatal(err)
	}
	e.assertExactly(total)
}

func TestProcessorRequiresDLQTopic(t *testing.T) {
	e := newITEnv(t, 1)
	cfg := e.config()
	cfg.DLQTopic = e.topic + ".missing"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := Run(ctx, cfg, testenv.Logger(t))
	if err == nil || !strings.Contains(err.Error(), "dead-letter topic") {
		t.Fatalf("Run with a missing dead-letter topic: %v", err)
	}
}
