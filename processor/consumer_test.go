package processor

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/testenv"
	"github.com/takt/takt/internal/watermark"
	"github.com/takt/takt/internal/wire"
)

// The tests in this file run the whole consumer (group callbacks, poll
// loop, flush pipeline, commits, dead letters) against an in-process kfake
// cluster and an in-memory sink: no servers, so they run with -short. The
// same promises are checked against the real stack by integration_test.go
// and kill_test.go.

// memSink is the consumer's store kept in memory: the parts table (how
// often each row id was written), the period tables (latest version wins,
// as with ReplacingMergeTree … FINAL), and fixed master data.
type memSink struct {
	// The sink holds no parts to derive periods from again.
	noRecomputes
	mu          sync.Mutex
	written     map[uint64]int // part id → times written
	states      map[string]chstore.PeriodState
	checkpoints map[int32]chstore.PeriodCheckpoint
	periodRows  int

	// failParts makes the next part inserts fail; landed says, per
	// failure, whether the rows were written anyway (the server committed
	// the block, the answer was lost).
	failParts []bool
	failures  int
	// landedPartitions counts, over the failed inserts that landed, the
	// partitions each block held.
	landedPartitions int
	// repaired are the (partition, from, to) offset ranges whose rollups
	// the consumer asked to reconcile.
	repaired [][3]int64
	// watermarks are the largest published, by partition; orders the
	// order_ms each part id was written with (its last write).
	watermarks map[int32]watermark.Partition
	orders     map[uint64]int64
}

// noRecomputes refuses every recompute read and write.
type noRecomputes struct{}

var errNoRecomputes = errors.New("this store runs no recomputes")

func (noRecomputes) RecomputeByID(context.Context, string) (chstore.Recompute, error) {
	return chstore.Recompute{}, errNoRecomputes
}
func (noRecomputes) PeriodParts(context.Context, string, uint64, int64, int64, int) ([]chstore.PeriodPart, error) {
	return nil, errNoRecomputes
}
func (noRecomputes) LocationPeriods(context.Context, string, uint64, int64, int64) ([]chstore.PeriodRow, error) {
	return nil, errNoRecomputes
}
func (noRecomputes) PeriodHistory(context.Context, string, uint64, string) ([]chstore.PeriodRow, error) {
	return nil, errNoRecomputes
}
func (noRecomputes) InsertPeriodHistory(context.Context, string, time.Time, []chstore.PeriodRow) error {
	return errNoRecomputes
}
func (noRecomputes) InsertRecompute(context.Context, chstore.Recompute) error { return errNoRecomputes }
func (noRecomputes) ReclassifyParts(context.Context, string, uint64, int64, int64, [][2]int64) error {
	return errNoRecomputes
}
func (noRecomputes) ReconcileClassRollup(context.Context, string, uint64, int64, int64) (int, error) {
	return 0, errNoRecomputes
}

func newMemSink() *memSink {
	return &memSink{written: map[uint64]int{}, states: map[string]chstore.PeriodState{},
		checkpoints: map[int32]chstore.PeriodCheckpoint{}, watermarks: map[int32]watermark.Partition{}, orders: map[uint64]int64{}}
}

func (s *memSink) InsertPartsWatermarks(_ context.Context, _ string, ws []watermark.Partition) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, w := range ws {
		if old, ok := s.watermarks[w.Partition]; !ok || w.Ms > old.Ms {
			s.watermarks[w.Partition] = w
		}
	}
	return nil
}

func (s *memSink) PartsWatermarks(context.Context, string) ([]watermark.Partition, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []watermark.Partition
	for _, w := range s.watermarks {
		out = append(out, w)
	}
	return out, nil
}

func (s *memSink) InsertParts(_ context.Context, b *chstore.PartsBlock) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var landed, fail bool
	if len(s.failParts) > 0 {
		fail, landed = true, s.failParts[0]
		s.failParts = s.failParts[1:]
		s.failures++
	}
	if !fail || landed {
		ps := map[int32]bool{}
		for i, id := range b.IDs() {
			s.written[id]++
			s.orders[id] = b.OrderMs()[i]
			ps[int32(id>>40)] = true
		}
		if fail {
			s.landedPartitions += len(ps)
		}
	}
	if fail {
		return errors.New("insert failed (injected)")
	}
	return nil
}

// PartKeys knows no stored idempotency ids: memSink keeps row ids only.
func (s *memSink) PartKeys(context.Context, string, []uuid.UUID) (map[uuid.UUID]chstore.PartPosition, error) {
	return nil, nil
}

func (s *memSink) PartsMaxOffset(_ context.Context, _ string, partition int32, from int64) (int64, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	last, found := int64(-1), false
	for id := range s.written {
		if p, o := int32(id>>40), int64(id&(1<<40-1)); p == partition && o >= from && o > last {
			last, found = o, true
		}
	}
	return last, found, nil
}

func (*memSink) WaitPartsInserts(context.Context, time.Duration, func(int)) error { return nil }

func (s *memSink) ReconcileRollups(_ context.Context, _ string, p int32, from, to int64) (chstore.RollupRepair, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.repaired = append(s.repaired, [3]int64{int64(p), from, to})
	return chstore.RollupRepair{}, nil
}

func (s *memSink) InsertPeriodStates(_ context.Context, states []chstore.PeriodState) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range states {
		k := fmt.Sprintf("%s/%s/%d", st.Topic, st.LocationKind, st.Location)
		if old, ok := s.states[k]; !ok || st.Version >= old.Version {
			s.states[k] = st
		}
	}
	return nil
}

func (s *memSink) InsertPeriods(_ context.Context, rows []chstore.PeriodRow) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.periodRows += len(rows)
	return nil
}

func (s *memSink) PeriodStates(_ context.Context, topic string, partitions []int32) ([]chstore.PeriodState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []chstore.PeriodState
	for _, st := range s.states {
		for _, p := range partitions {
			if st.Topic == topic && st.Partition == p {
				out = append(out, st)
			}
		}
	}
	return out, nil
}

func (s *memSink) InsertPeriodCheckpoints(_ context.Context, cps []chstore.PeriodCheckpoint) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, cp := range cps {
		if old, ok := s.checkpoints[cp.Partition]; !ok || cp.Version >= old.Version {
			s.checkpoints[cp.Partition] = cp
		}
	}
	return nil
}

func (s *memSink) PeriodCheckpoints(_ context.Context, _ string, partitions []int32) (map[int32]int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[int32]int64{}
	for _, p := range partitions {
		if cp, ok := s.checkpoints[p]; ok {
			out[p] = cp.Offset
		}
	}
	return out, nil
}

func (*memSink) Products(context.Context) ([]chstore.Product, error) { return demoProducts, nil }
func (*memSink) Reasons(ctx context.Context) ([]chstore.Reason, error) {
	return fakeMasterData{}.Reasons(ctx)
}
func (*memSink) PeriodMaster(context.Context) (chstore.PeriodMaster, error) {
	return chstore.PeriodMaster{}, nil
}
func (*memSink) Ping(context.Context) error { return nil }

// rows returns how many distinct rows the sink holds and how many of them
// were written more than once.
func (s *memSink) rows() (distinct, twice int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.written {
		if n > 1 {
			twice++
		}
	}
	return len(s.written), twice
}

// fakeEnv is a kfake cluster with a parts and a dead-letter topic, and a
// producer.
type fakeEnv struct {
	t       *testing.T
	brokers []string
	topic   string
	dlq     string
	group   string
	prod    *kgo.Client
}

func newFakeEnv(t *testing.T, partitions int32) *fakeEnv {
	t.Helper()
	e := &fakeEnv{t: t, topic: "parts", dlq: "parts.dlq", group: "processors"}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, e.topic), kfake.SeedTopics(1, e.dlq))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	e.brokers = c.ListenAddrs()
	if e.prod, err = kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.ProducerLinger(0)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.prod.Close)
	return e
}

// config has smaller batches than testConfig's, so that a few hundred
// records make several flushes.
func (e *fakeEnv) config() Config {
	cfg := testConfig(e.brokers, e.topic, e.dlq, e.group)
	cfg.BatchRows, cfg.BatchInterval = 200, 20*time.Millisecond
	return cfg
}

// produce writes values (part messages, or garbage) keyed round-robin
// over the parts' locations and returns the records with their offsets.
func (e *fakeEnv) produce(parts []wire.Part, garbage ...[]byte) []*kgo.Record {
	e.t.Helper()
	var rs []*kgo.Record
	for i := range parts {
		v, err := wire.Encode(&parts[i])
		if err != nil {
			e.t.Fatal(err)
		}
		rs = append(rs, &kgo.Record{Topic: e.topic, Key: parts[i].Key(), Value: v})
	}
	for _, g := range garbage {
		rs = append(rs, &kgo.Record{Topic: e.topic, Key: []byte("line_0"), Value: g})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.prod.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		e.t.Fatal(err)
	}
	return rs
}

// committed returns the group's committed offsets of the parts topic.
func (e *fakeEnv) committed() map[int32]int64 {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	offs, err := kadm.NewClient(e.prod).FetchOffsets(ctx, e.group)
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[int32]int64{}
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Topic == e.topic {
			out[o.Partition] = o.At
		}
	})
	return out
}

// ends returns the end offset of each partition of topic.
func (e *fakeEnv) ends(topic string) map[int32]int64 {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ls, err := kadm.NewClient(e.prod).ListEndOffsets(ctx, topic)
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[int32]int64{}
	ls.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out
}

// dlqCount returns how many records the dead-letter topic holds.
func (e *fakeEnv) dlqCount() int64 { return e.ends(e.dlq)[0] }

// waitFor polls until ok or fails the test after timeout (a bound, not a
// measurement).
func waitFor(t *testing.T, timeout time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitDrained waits until the sink holds n distinct rows and the group's
// commits reached the end of every partition.
func waitDrained(t *testing.T, e *fakeEnv, s *memSink, n int) {
	t.Helper()
	waitFor(t, 30*time.Second, fmt.Sprintf("%d rows written and committed", n), func() bool {
		if d, _ := s.rows(); d < n {
			return false
		}
		c := e.committed()
		for p, end := range e.ends(e.topic) {
			if end > 0 && c[p] != end {
				return false
			}
		}
		return true
	})
}

func assertOnce(t *testing.T, s *memSink, n int) {
	t.Helper()
	if d, twice := s.rows(); d != n || twice != 0 {
		t.Fatalf("sink holds %d distinct rows, %d of them written more than once; want %d, none twice", d, twice, n)
	}
}

// TestConsumerWritesEachRecordOnce: every part becomes one row, garbage
// becomes dead letters, offsets are committed to the end, and a restarted
// member resumes at the commit without writing anything again.
func TestConsumerWritesEachRecordOnce(t *testing.T) {
	e := newFakeEnv(t, 3)
	s := newMemSink()
	e.produce(newParts(1500), []byte("not json"), []byte(`{"v":99}`))
	stop, _ := runInProcess(t, e.config(), s)
	waitDrained(t, e, s, 1500)
	if n := e.dlqCount(); n != 2 {
		t.Errorf("dead letters: %d, want 2", n)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	assertOnce(t, s, 1500)

	e.produce(newParts(500))
	stop, _ = runInProcess(t, e.config(), s)
	waitDrained(t, e, s, 2000)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	assertOnce(t, s, 2000)
	if n := e.dlqCount(); n != 2 {
		t.Errorf("dead letters after the restart: %d, want 2 (none sent again)", n)
	}
	if s.periodRows == 0 || len(s.states) == 0 {
		t.Errorf("period work: %d rows, %d saved states; want some of each", s.periodRows, len(s.states))
	}
}

// TestConsumerRetriesFailedInserts: a failed insert is retried and never
// committed past; one that failed but landed anyway (the answer was lost)
// is found in the sink and not written again.
func TestConsumerRetriesFailedInserts(t *testing.T) {
	e := newFakeEnv(t, 2)
	s := newMemSink()
	s.failParts = []bool{true, false, false, true}
	e.produce(newParts(1000))
	stop, _ := runInProcess(t, e.config(), s)
	waitDrained(t, e, s, 1000)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if s.failures != 4 {
		t.Fatalf("injected %d insert failures, want 4", s.failures)
	}
	assertOnce(t, s, 1000)
	// The two blocks that landed despite their error are skipped, and
	// their rollups reconciled (their views may not have run): each
	// partition a landed block held.
	if s.landedPartitions < 2 || len(s.repaired) != s.landedPartitions {
		t.Fatalf("rollups reconciled for %v, want the %d partitions of the 2 blocks that landed", s.repaired, s.landedPartitions)
	}
}

// TestConsumerSkipsWhatTheSinkHolds: a member that died between its insert
// and its commit left rows past the committed offset; the next owner
// starts after them instead of writing them again.
func TestConsumerSkipsWhatTheSinkHolds(t *testing.T) {
	e := newFakeEnv(t, 2)
	s := newMemSink()
	rs := e.produce(newParts(600))
	// The dead member's last block: the first 100 records of each
	// partition (a block holds a prefix of the uncommitted records).
	held := map[int32]int{}
	for _, r := range rs {
		if held[r.Partition] < 100 {
			held[r.Partition]++
			s.written[chstore.PartID(r.Partition, r.Offset)] = 1
		}
	}
	stop, _ := runInProcess(t, e.config(), s)
	waitDrained(t, e, s, 600)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	assertOnce(t, s, 600)
	// The held rows' rollups are reconciled on assignment: exactly the
	// range past the (absent) commit.
	slices.SortFunc(s.repaired, func(a, b [3]int64) int { return cmp.Compare(a[0], b[0]) })
	if want := [][3]int64{{0, 0, 99}, {1, 0, 99}}; !reflect.DeepEqual(s.repaired, want) {
		t.Fatalf("rollups reconciled for %v, want %v", s.repaired, want)
	}
}

// TestConsumerRebalance: a second member joins while records flow and the
// first then leaves; across both rebalances every record is written once.
func TestConsumerRebalance(t *testing.T) {
	e := newFakeEnv(t, 4)
	s := newMemSink()
	e.produce(newParts(800))
	cfgA, cfgB := e.config(), e.config()
	stopA, _ := runInProcess(t, cfgA, s)
	waitFor(t, 30*time.Second, "first rows", func() bool { d, _ := s.rows(); return d > 0 })
	stopB, _ := runInProcess(t, cfgB, s)
	for range 4 {
		e.produce(newParts(300))
		time.Sleep(50 * time.Millisecond)
	}
	waitDrained(t, e, s, 2000)
	if err := stopA(); err != nil {
		t.Fatal(err)
	}
	e.produce(newParts(400))
	waitDrained(t, e, s, 2400)
	if err := stopB(); err != nil {
		t.Fatal(err)
	}
	assertOnce(t, s, 2400)
	const inserted = "takt_processor_parts_inserted_total"
	a, b := metricValue(t, cfgA.Registry, inserted), metricValue(t, cfgB.Registry, inserted)
	if b < 400 || a+b != 2400 {
		t.Errorf("rows inserted: first member %v, second %v; want the second to take over (at least 400) and 2400 in all", a, b)
	}
}

// groupMembers returns how a test makes a member of e's consumer group
// (without automatic commits) and waits until the group's assignment
// gives a member n partitions (which it returns).
func groupMembers(ctx context.Context, t *testing.T, e *fakeEnv) (member func() *kgo.Client, owns func(cl *kgo.Client, n int) []int32) {
	member = func() *kgo.Client {
		cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.ConsumerGroup(e.group),
			kgo.ConsumeTopics(e.topic), kgo.DisableAutoCommit())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		return cl
	}
	owns = func(cl *kgo.Client, n int) []int32 {
		t.Helper()
		for ctx.Err() == nil {
			pctx, pcancel := context.WithTimeout(ctx, 200*time.Millisecond)
			cl.PollFetches(pctx)
			pcancel()
			c := &consumer{cfg: e.config(), cl: cl, store: newMemSink(), logger: testenv.Logger(t)}
			if owned, err := c.ownedPartitions(ctx); err == nil && len(owned) == n {
				var ps []int32
				for p := range owned {
					ps = append(ps, p)
				}
				return ps
			}
		}
		t.Fatalf("member never owned %d partitions", n)
		return nil
	}
	return member, owns
}

// TestCheckPositionsRefusesAPartitionOfAnother: a member that rejoined
// the group in a new generation passes the fence (its commit is of the
// generation) even for a partition the group gave another member, whose
// rows need not be stored yet. The position check must ask the group's
// assignment and refuse to write it.
func TestCheckPositionsRefusesAPartitionOfAnother(t *testing.T) {
	e := newFakeEnv(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	member, owns := groupMembers(ctx, t, e)
	a := member()
	owns(a, 2)
	b := member()
	mine := owns(b, 1)
	theirs := 1 - mine[0]
	owns(a, 1)

	c := &consumer{cfg: e.config(), cl: b, store: newMemSink(), logger: testenv.Logger(t)}
	_, gen := b.GroupMetadata()
	batches := []*batch{{partition: mine[0], validGen: gen - 1}}
	if err := c.checkPositions(ctx, batches, gen); err != nil || batches[0].validGen != gen {
		t.Fatalf("own partition %d: %v (checked in generation %d, want %d)", mine[0], err, batches[0].validGen, gen)
	}
	batches = []*batch{{partition: theirs, validGen: gen - 1}}
	if err := c.checkPositions(ctx, batches, gen); !errors.Is(err, errLostMembership) {
		t.Fatalf("partition %d of the other member: %v, want the write refused as lost membership", theirs, err)
	}
}

// watermarkOf is the sink's watermark of a topic of n partitions (0 until
// each has one).
func (s *memSink) watermarkOf(n int32) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ws []watermark.Partition
	for _, w := range s.watermarks {
		ws = append(ws, w)
	}
	if len(ws) > 0 {
		ws[0].Partitions = max(ws[0].Partitions, n)
	}
	return watermark.Of(ws)
}

// TestConsumerPublishesWatermarks: the watermark passes each acknowledged
// part, partitions without records included; and parts received long
// before (the broker appends in its own order) are placed above the
// watermark already published, never behind it, yet at or below the
// watermark that covers them.
func TestConsumerPublishesWatermarks(t *testing.T) {
	e := newFakeEnv(t, 4)
	s := newMemSink()
	stop, _ := runInProcess(t, e.config(), s)
	// Two locations: at most two of the four partitions get records.
	first := newPartsAt(100, 2)
	e.produce(first)
	acked := time.Now().UnixMilli()
	waitFor(t, 30*time.Second, "the watermark past the first parts", func() bool { return s.watermarkOf(4) >= acked })
	w1 := s.watermarkOf(4)

	late := newPartsAt(100, 2)
	for i := range late {
		late[i].ReceivedAtMs -= time.Hour.Milliseconds()
	}
	rs := e.produce(late)
	acked = time.Now().UnixMilli()
	waitFor(t, 30*time.Second, "the watermark past the late parts", func() bool { return s.watermarkOf(4) >= acked })
	w2 := s.watermarkOf(4)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	assertOnce(t, s, 200)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range rs {
		o := s.orders[chstore.PartID(r.Partition, r.Offset)]
		if o <= w1 || o > w2 {
			t.Errorf("late part (%d, %d) placed at %d: want above the watermark %d published before it, at most %d", r.Partition, r.Offset, o, w1, w2)
		}
	}
}
