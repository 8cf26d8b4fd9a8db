package processor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/demo"
	"github.com/takt/takt/internal/testenv"
	"github.com/takt/takt/internal/wire"
)

// itEnv is an integration test's scratch world: a migrated, demo-seeded
// ClickHouse database, a parts topic, a dead-letter topic and a group name.
type itEnv struct {
	t       testing.TB
	store   *chstore.Store
	ch      chstore.Config
	brokers []string
	topic   string
	dlq     string
	group   string
	prod    *kgo.Client
}

func newITEnv(t testing.TB, partitions int32) *itEnv {
	t.Helper()
	store, ch := testenv.ClickHouse(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := demo.Seed(ctx, store, "", ""); err != nil {
		t.Fatalf("seed: %v", err)
	}
	e := &itEnv{
		t:       t,
		store:   store,
		ch:      ch,
		brokers: testenv.Stack(t).Brokers,
		topic:   testenv.Topic(t, partitions),
		dlq:     testenv.Topic(t, 1),
		group:   testenv.Name("takt-test-group-"),
	}
	prod, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.ProducerLinger(0),
		kgo.ProducerBatchMaxBytes(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	e.prod = prod
	return e
}

// config returns a processor config for the scratch world with small,
// fast batches.
func (e *itEnv) config() Config {
	cfg := testConfig(e.brokers, e.topic, e.dlq, e.group)
	cfg.ClickHouse = e.ch
	return cfg
}

// testConfig returns a processor config with small, fast batches, a
// registry of its own and no HTTP port to collide on.
func testConfig(brokers []string, topic, dlq, group string) Config {
	return Config{
		Brokers:            brokers,
		Topic:              topic,
		DLQTopic:           dlq,
		Group:              group,
		SessionTimeout:     6 * time.Second,
		BatchRows:          500,
		BatchInterval:      50 * time.Millisecond,
		CycleTimeTolerance: 0.1,
		CatalogRefresh:     time.Hour,
		PeriodSaveInterval: DefaultPeriodSaveInterval,
		Addr:               "127.0.0.1:0",
		Registry:           prometheus.NewRegistry(),
	}
}

// newParts returns n valid parts with fresh event ids; external ids cycle
// through line_0..line_96 so that they spread over all partitions.
func newParts(n int) []wire.Part { return newPartsAt(n, 97) }

// newPartsAt returns n parts spread round-robin over the given number of
// locations (line ids 1.., external ids line_0..), 1 ms apart.
func newPartsAt(n, locations int) []wire.Part {
	out := make([]wire.Part, n)
	base := time.Now().UnixMilli()
	for i := range out {
		out[i] = wire.Part{
			EventID:      uuid.Must(uuid.NewV7()).String(),
			Site:         1,
			LocationKind: "line",
			LocationID:   uint64(i%locations) + 1,
			ExternalID:   fmt.Sprintf("line_%d", i%locations),
			Quantity:     1,
			Quality:      wire.QualityGood,
			Product:      demo.ProductCode,
			RecordedAtMs: base + int64(i),
			ReceivedAtMs: base + int64(i),
		}
	}
	return out
}

// produce writes parts (key = external id) and returns the produced
// records, in order, with their partitions and offsets.
func (e *itEnv) produce(parts []wire.Part) []*kgo.Record {
	e.t.Helper()
	rs := make([]*kgo.Record, 0, len(parts))
	for i := range parts {
		v, err := wire.Encode(&parts[i])
		if err != nil {
			e.t.Fatalf("encode: %v", err)
		}
		rs = append(rs, &kgo.Record{Topic: e.topic, Key: parts[i].Key(), Value: v})
	}
	e.produceRecords(rs)
	return rs
}

// produceRaw writes values as they are (for garbage) under key.
func (e *itEnv) produceRaw(key string, values ...[]byte) []*kgo.Record {
	e.t.Helper()
	rs := make([]*kgo.Record, len(values))
	for i, v := range values {
		rs[i] = &kgo.Record{Topic: e.topic, Key: []byte(key), Value: v}
	}
	e.produceRecords(rs)
	return rs
}

func (e *itEnv) produceRecords(rs []*kgo.Record) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for lo := 0; lo < len(rs); lo += 5000 {
		hi := min(lo+5000, len(rs))
		if err := e.prod.ProduceSync(ctx, rs[lo:hi]...).FirstErr(); err != nil {
			e.t.Fatalf("produce: %v", err)
		}
	}
}

// count returns the rows and distinct event ids of the scratch topic.
func (e *itEnv) count() (rows, events uint64) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rows, events, err := e.store.PartsCount(ctx, e.topic)
	if err != nil {
		e.t.Fatal(err)
	}
	return rows, events
}

// waitRows waits until ClickHouse holds at least n rows of the topic, or
// fails the test after timeout (a bound, not a measurement).
func (e *itEnv) waitRows(n uint64, timeout time.Duration, alive func() error) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		rows, _ := e.count()
		if rows >= n {
			return
		}
		if alive != nil {
			if err := alive(); err != nil {
				e.t.Fatalf("waiting for %d rows (have %d): %v", n, rows, err)
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("waited %s for %d rows; ClickHouse has %d", timeout, n, rows)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// assertExactly checks the exactly-once promise: n rows, n distinct event
// ids, n distinct record ids.
func (e *itEnv) assertExactly(n uint64) {
	e.t.Helper()
	rows, events := e.count()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ids, err := e.store.QueryUint64(ctx, "SELECT uniqExact(id) FROM parts WHERE topic = ?", e.topic)
	if err != nil {
		e.t.Fatal(err)
	}
	if rows != n || events != n || ids != n {
		e.t.Errorf("ClickHouse holds %d rows, %d distinct event ids, %d distinct ids; want %d of each", rows, events, ids, n)
		e.logDuplicates(ctx)
		e.t.FailNow()
	}
}

// readDLQ reads n records from the dead-letter topic.
func (e *itEnv) readDLQ(n int) []*kgo.Record {
	e.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.ConsumeTopics(e.dlq),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		e.t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			e.t.Fatalf("read %d of %d dead letters: %v", len(out), n, err)
		}
		out = append(out, fs.Records()...)
	}
	return out
}

// runInProcess runs the processor with cfg until the returned stop is
// called; stop returns Run's error.
func runInProcess(t testing.TB, cfg Config, st store) (stop func() error, done <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		if st != nil {
			errc <- run(ctx, cfg, testenv.Logger(t), st)
			return
		}
		errc <- Run(ctx, cfg, testenv.Logger(t))
	}()
	var once bool
	var result error
	stop = func() error {
		if once {
			return result
		}
		once = true
		cancel()
		select {
		case result = <-errc:
		case <-time.After(60 * time.Second):
			result = errors.New("processor did not stop within 60s")
		}
		return result
	}
	t.Cleanup(func() { _ = stop() })
	return stop, errc
}

// freeAddr returns a loopback address with a port that was free a moment
// ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// metricValue sums the samples of a metric family in reg.
func metricValue(t testing.TB, reg prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			}
		}
	}
	return sum
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if strings.EqualFold(h.Key, key) {
			return string(h.Value)
		}
	}
	return ""
}

// logDuplicates logs, per partition, the offset ranges written more than
// once and when, to tell which flush wrote them twice.
func (e *itEnv) logDuplicates(ctx context.Context) {
	rows, err := e.store.PartsOfTopic(ctx, e.topic)
	if err != nil {
		e.t.Logf("read parts: %v", err)
		return
	}
	seen := map[uint64][]int64{}
	for _, r := range rows {
		seen[r.ID] = append(seen[r.ID], r.ProcessedMs)
	}
	type span struct {
		partition      int32
		lo, hi         int64
		processedTimes []int64
	}
	var spans []span
	for _, r := range rows {
		ts := seen[r.ID]
		if len(ts) < 2 {
			continue
		}
		if n := len(spans); n > 0 && spans[n-1].partition == r.Partition && r.Offset <= spans[n-1].hi+1 {
			spans[n-1].hi = r.Offset
			continue
		}
		spans = append(spans, span{r.Partition, r.Offset, r.Offset, ts})
	}
	for _, s := range spans {
		e.t.Logf("written twice: partition %d offsets %d..%d (processed_ms %v)", s.partition, s.lo, s.hi, s.processedTimes)
	}
}
