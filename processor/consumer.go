package processor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/kafkalog"
	"github.com/takt/takt/processor/resolve"
)

// partsStore is what the consumer needs from ClickHouse (a *chstore.Store).
type partsStore interface {
	InsertParts(ctx context.Context, b *chstore.PartsBlock) error
	PartsMaxOffset(ctx context.Context, topic string, partition int32, from int64) (int64, bool, error)
	WaitPartsInserts(ctx context.Context, poll time.Duration, every func(running int)) error
}

// Timeouts and retry bounds of the consume loop.
const (
	insertTimeout   = 30 * time.Second // one INSERT attempt
	commitTimeout   = 10 * time.Second // one offset commit
	dlqTimeout      = 10 * time.Second // one dead-letter produce attempt
	retryMin        = 100 * time.Millisecond
	retryMax        = 5 * time.Second
	shutdownTimeout = 30 * time.Second // final flush and commit on shutdown
	rejoinPoll      = 50 * time.Millisecond
)

// Headers of a dead-letter record. The record keeps the original key,
// value, timestamp and headers.
const (
	HeaderDLQReason          = "takt-dlq-reason"
	HeaderDLQClass           = "takt-dlq-class"
	HeaderDLQSourceTopic     = "takt-dlq-source-topic"
	HeaderDLQSourcePartition = "takt-dlq-source-partition"
	HeaderDLQSourceOffset    = "takt-dlq-source-offset"
)

// Dead-letter classes (the takt-dlq-class header and the metric label).
const (
	dlqDecode  = "decode"   // not JSON of the message's shape
	dlqVersion = "version"  // a schema version this build does not know
	dlqInvalid = "invalid"  // breaks an invariant of wire.Part
	dlqEventID = "event_id" // event id is not a UUID
	dlqRow     = "row"      // a value the parts table cannot store
)

// resolutionCounts counts rows by product resolution, for the metric.
type resolutionCounts [4]int

var resolutionOrder = [4]resolve.Resolution{resolve.ByCode, resolve.ByCycleTime, resolve.ByFallback, resolve.None}

func (rc *resolutionCounts) add(r resolve.Resolution) {
	for i, v := range resolutionOrder {
		if v == r {
			rc[i]++
			return
		}
	}
}

// partState is the work of one owned partition that is consumed but not
// yet handed to a flush.
//
// Ownership: only the consume loop reads and writes a partState. Group
// callbacks only add and remove map entries (under consumer.mu), and only
// while the loop holds nothing of that partition: with BlockRebalanceOnPoll
// the revoke and lost callbacks run only after AllowRebalance, which the
// loop calls only when nothing is pending or in flight, and a partition
// gets its fresh partState (adjustOffsets) before any record of it is
// fetched.
type partState struct {
	partition int32
	block     *chstore.PartsBlock

	// records counts consumed, unflushed records (rows and dead
	// letters); since is when the first of them was consumed.
	records int
	since   time.Time
	// first is the offset of the first of those records: everything
	// before it is durable or in the flush in flight.
	first int64
	// firstRow is the offset of the first row in block.
	firstRow int64
	// next is the commit position once the records are durable.
	next        kgo.EpochOffset
	resolutions resolutionCounts
	// validGen is the group generation in which the position was last
	// checked against ClickHouse (see checkPositions).
	validGen int32

	lag int64 // high watermark minus next, as of the last fetch
	// positioned: next is the partition's position (known once the
	// group assigned it with a committed or stored offset, or a record
	// was consumed).
	positioned bool

	// periods are the state machines of the partition's locations.
	periods periodSet
}

func (st *partState) consumed(r *kgo.Record, now time.Time) {
	if st.records == 0 {
		st.since = now
		st.first = r.Offset
	}
	st.records++
	st.next = kgo.EpochOffset{Epoch: r.LeaderEpoch, Offset: r.Offset + 1}
	st.positioned = true
}

func (st *partState) reset() {
	st.block.Reset()
	st.records = 0
	st.resolutions = resolutionCounts{}
}

// consumer is the consume loop: poll, decode, resolve, batch; and the
// flusher it hands batches to: write one block per partition, commit.
//
// Pipelining: while a flush writes its blocks, the loop decodes the next
// batch. Up to maxInflight flushes run at once, over disjoint partitions:
// a partition is in at most one flush, so its blocks reach ClickHouse one
// after the other in offset order, which is what makes "the largest id
// ClickHouse holds" a safe resume point.
type consumer struct {
	cfg    Config
	logger *slog.Logger
	m      *metrics
	store  consumerStore
	cat    *catalog
	cl     *kgo.Client
	policy batchPolicy

	// afterInsert runs after a flush's blocks are in ClickHouse and
	// before its offsets are committed (crash tests hook in there).
	afterInsert func()
	// afterPeriods runs after a batch's period states and rows are in
	// ClickHouse and before its parts block (crash tests).
	afterPeriods func()
	// clock is the wall clock of ticks.
	clock func() time.Time

	mu    sync.Mutex // guards parts (the map, not the states)
	parts map[int32]*partState

	// rebalanceWanted is set by OnPartitionsCallbackBlocked: the group
	// waits for us, so the loop stops polling, flushes what it holds and
	// allows the rebalance. wake cancels the poll in progress (also used
	// when a flush completes).
	rebalanceWanted atomic.Bool
	wakeMu          sync.Mutex
	wake            context.CancelFunc

	// Loop-owned.
	inflight []*flushJob // oldest first; their partitions are disjoint
	// rejoining: a flush found that the group no longer knows us; the
	// loop lets the client rejoin before it reads more.
	rejoining bool
	lostGen   int32
	fctx      context.Context // flushes run under it; ends at the shutdown deadline
	free      []*chstore.PartsBlock
	states    []*partState
	recs      []*kgo.Record
	hwms      []partitionMark
	decoded   []decoded
	nextTick  time.Time
}

// consumerStore is what the consume loop needs from ClickHouse.
type consumerStore interface {
	partsStore
	periodStore
}

func newConsumer(cfg Config, store consumerStore, cat *catalog, m *metrics, logger *slog.Logger) (*consumer, error) {
	c := &consumer{
		cfg:          cfg,
		logger:       logger,
		m:            m,
		store:        store,
		cat:          cat,
		policy:       batchPolicy{rows: cfg.BatchRows, interval: cfg.BatchInterval},
		afterInsert:  func() {},
		afterPeriods: func() {},
		clock:        time.Now,
		parts:        make(map[int32]*partState),
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.WithLogger(kafkalog.New(logger.With("component", "kafka"), kgo.LogLevelDebug)),
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.Topic),
		// A new group starts at the beginning of the topic: a part
		// produced before the first processor started is not lost.
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.SessionTimeout(cfg.SessionTimeout),
		// At most a third of the session, as Kafka advises.
		kgo.HeartbeatInterval(min(3*time.Second, cfg.SessionTimeout/3)),
		// Kafka's default: a fetch waiting for data returns after 500ms,
		// so partitions assigned meanwhile start soon (franz-go waits 5s).
		kgo.FetchMaxWait(500 * time.Millisecond),
		kgo.AdjustFetchOffsetsFn(c.adjustOffsets),
		kgo.OnPartitionsAssigned(c.onAssigned),
		kgo.OnPartitionsRevoked(c.onRevoked),
		kgo.OnPartitionsLost(c.onLost),
		kgo.OnPartitionsCallbackBlocked(c.onBlocked),
		// Dead letters are produced one at a time and awaited.
		kgo.ProducerLinger(0),
		kgo.RequiredAcks(kgo.AllISRAcks()),
	}
	if cfg.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(cfg.InstanceID))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	c.cl = cl
	return c, nil
}

// ping checks that a broker answers (readiness).
func (c *consumer) ping(ctx context.Context) error { return c.cl.Ping(ctx) }

// checkTopics fails when the dead-letter topic does not exist. The first
// undecodable record would otherwise stall the processor (a record is
// never skipped without its dead letter), long after start-up. The parts
// topic may be created later: the group consumes it once it exists.
func (c *consumer) checkTopics(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	topics, err := kadm.NewClient(c.cl).ListTopics(ctx, c.cfg.DLQTopic)
	if err != nil {
		return fmt.Errorf("kafka %v: list topics: %w", c.cfg.Brokers, err)
	}
	if !topics.Has(c.cfg.DLQTopic) {
		return fmt.Errorf("dead-letter topic %q does not exist (TAKT_DLQ_TOPIC); create it first", c.cfg.DLQTopic)
	}
	return nil
}

// adjustOffsets runs after the group handed us partitions and their
// committed offsets were fetched, before any fetch starts. It is where the
// exactly-once effect is made: ClickHouse may hold rows past the committed
// offset (a processor died between its insert and its commit), so each
// partition starts after the larger of the two. Because each block is one
// atomic data part and the blocks of a partition are written in offset
// order, the largest id in a partition's range means every earlier offset
// is durable too. Only offsets >= the committed one are looked at, which
// keeps the index range read small.
func (c *consumer) adjustOffsets(ctx context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	// A processor killed right after sending a block leaves its INSERT
	// running in ClickHouse; its rows appear only when it ends. Were we to
	// read the last offset before that, we would write those rows again.
	// So first wait for every parts INSERT running now (a previous owner's
	// orphan among them) to end.
	for attempt := 1; ; attempt++ {
		polls := 0
		err := c.store.WaitPartsInserts(ctx, 20*time.Millisecond, func(running int) {
			if polls++; polls%250 == 0 {
				c.logger.Warn("waiting for inserts into parts that were running at assignment", "running", running)
			}
		})
		if err == nil {
			break
		}
		c.logger.Warn("checking for running inserts failed; retrying", "attempt", attempt, "err", err)
		if !sleep(ctx, backoff(attempt, retryMin, retryMax)) {
			return nil, fmt.Errorf("wait for running inserts: %w", err)
		}
	}
	var assigned []int32
	starts := map[int32]int64{}
	for topic, parts := range offsets {
		if topic != c.cfg.Topic {
			continue
		}
		for p, o := range parts {
			assigned = append(assigned, p)
			committed := o.EpochOffset().Offset // < 0: nothing committed yet
			var (
				last  int64
				found bool
				err   error
			)
			for attempt := 1; ; attempt++ {
				last, found, err = c.store.PartsMaxOffset(ctx, topic, p, max(committed, 0))
				if err == nil {
					break
				}
				c.logger.Warn("reading the last offset ClickHouse holds failed; retrying",
					"partition", p, "attempt", attempt, "err", err)
				if !sleep(ctx, backoff(attempt, retryMin, retryMax)) {
					return nil, fmt.Errorf("partition %d: last offset in clickhouse: %w", p, err)
				}
			}
			start := committed
			if found && last >= committed {
				start = last + 1
				parts[p] = kgo.NewOffset().At(start).WithEpoch(-1)
			}
			c.mu.Lock()
			if old := c.parts[p]; old != nil && old.records > 0 {
				c.logger.Warn("partition re-assigned while holding records; they are read again", "partition", p, "records", old.records)
			}
			_, gen := c.cl.GroupMetadata()
			st := &partState{partition: p, block: new(chstore.PartsBlock), validGen: gen, lag: -1}
			if start >= 0 {
				st.next, st.positioned = kgo.EpochOffset{Epoch: -1, Offset: start}, true
				starts[p] = start
			}
			c.parts[p] = st
			c.mu.Unlock()
			c.logger.Info("partition assigned", "topic", topic, "partition", p,
				"committed", committed, "clickhouse_last_from_committed", optOffset(last, found), "start", start)
		}
	}
	if len(assigned) == 0 {
		return offsets, nil
	}
	// The state machines of the partitions' locations, as the previous
	// owner saved them; records since the partition's checkpoint that
	// they have not seen are read again and fed to them only.
	sets, err := c.loadPeriods(ctx, assigned)
	if err != nil {
		return nil, err
	}
	lags := c.endLags(ctx, starts)
	c.mu.Lock()
	for _, p := range assigned {
		st := c.parts[p]
		if st == nil {
			continue
		}
		l := sets[p]
		st.periods = periodSet{locs: l.locs, checkpoint: l.checkpoint}
		if lag, ok := lags[p]; ok {
			st.lag = lag
		}
		c.m.machines.Add(float64(len(l.locs)))
		if start, ok := starts[p]; ok && l.checkpoint >= 0 && l.checkpoint < start {
			offsets[c.cfg.Topic][p] = kgo.NewOffset().At(l.checkpoint).WithEpoch(-1)
			st.periods.replayUntil = start
			c.logger.Info("replaying records into the period state machines", "partition", p,
				"from", l.checkpoint, "until", start)
		}
	}
	c.mu.Unlock()
	return offsets, nil
}

// endLags returns how far each partition's start is behind its end
// offset; a partition whose end cannot be listed is left out (its lag
// stays unknown until its first fetch, and it is not ticked before).
func (c *consumer) endLags(ctx context.Context, starts map[int32]int64) map[int32]int64 {
	lags := map[int32]int64{}
	if len(starts) == 0 {
		return lags
	}
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ends, err := kadm.NewClient(c.cl).ListEndOffsets(lctx, c.cfg.Topic)
	if err != nil {
		c.logger.Warn("listing end offsets failed; ticks wait for the first fetch", "err", err)
		return lags
	}
	for p, start := range starts {
		if o, ok := ends.Lookup(c.cfg.Topic, p); ok && o.Err == nil {
			lags[p] = max(o.Offset-start, 0)
		}
	}
	return lags
}

func optOffset(o int64, ok bool) any {
	if !ok {
		return "none"
	}
	return o
}

func (c *consumer) onAssigned(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
	c.logger.Info("partitions assigned", "partitions", assigned[c.cfg.Topic])
}

// onRevoked needs no flush: BlockRebalanceOnPoll runs it only after the
// loop called AllowRebalance, and the loop does that only when every
// consumed record is durable and committed. Were anything still pending it
// would be dropped, which is also correct: it is neither in ClickHouse nor
// committed, so the new owner reads it again.
func (c *consumer) onRevoked(_ context.Context, _ *kgo.Client, revoked map[string][]int32) {
	c.forget("partitions revoked", revoked[c.cfg.Topic])
}

func (c *consumer) onLost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	c.forget("partitions lost", lost[c.cfg.Topic])
}

func (c *consumer) forget(why string, parts []int32) {
	if len(parts) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range parts {
		if st := c.parts[p]; st != nil {
			if st.records > 0 {
				c.logger.Warn("dropping unflushed records of a partition we no longer own; the new owner reads them",
					"partition", p, "records", st.records)
			}
			c.m.machines.Sub(float64(len(st.periods.locs)))
		}
		delete(c.parts, p)
	}
	c.logger.Info(why, "partitions", parts)
}

func (c *consumer) onBlocked(context.Context, *kgo.Client) {
	c.rebalanceWanted.Store(true)
	c.wakePoll()
}

// wakePoll makes a poll in progress return now.
func (c *consumer) wakePoll() {
	c.wakeMu.Lock()
	if c.wake != nil {
		c.wake()
	}
	c.wakeMu.Unlock()
}

// state returns the partition's state, creating it when a record arrives
// for a partition adjustOffsets did not see (not expected).
func (c *consumer) state(p int32) *partState {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.parts[p]
	if st == nil {
		c.logger.Warn("record for a partition without state", "partition", p)
		st = &partState{partition: p, block: new(chstore.PartsBlock), validGen: -1}
		c.parts[p] = st
	}
	return st
}

// snapshot fills c.states with the partitions that have unflushed work,
// ordered by partition, and returns the totals.
func (c *consumer) snapshot() pending {
	c.states = c.states[:0]
	var pd pending
	var lag int64
	c.mu.Lock()
	for _, st := range c.parts {
		lag += max(st.lag, 0)
		work := st.records + st.periods.work()
		if work == 0 {
			continue
		}
		c.states = append(c.states, st)
		if pd.records == 0 || st.since.Before(pd.since) {
			pd.since = st.since
		}
		pd.records += work
		pd.rows += st.block.Len()
	}
	c.mu.Unlock()
	sort.Slice(c.states, func(i, j int) bool { return c.states[i].partition < c.states[j].partition })
	c.m.lag.Set(float64(lag))
	c.m.pendingRows.Set(float64(pd.rows))
	return pd
}

// run consumes until ctx is done, then flushes and commits what it holds,
// leaves the group and closes the client.
func (c *consumer) run(ctx context.Context) error {
	fctx, cancelFlushes := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelFlushes()
	c.fctx = fctx
	defer c.cl.Close()

	waited := 0 // rejoin polls
	for ctx.Err() == nil {
		c.reap(nil)
		if now := time.Now(); !now.Before(c.nextTick) {
			c.tickPeriods(c.clock())
			c.nextTick = now.Add(tickEvery)
		}
		wanted := c.rebalanceWanted.Load()
		if wanted {
			// Hand the partitions over with every machine saved: the
			// next owner then replays nothing.
			c.markPeriodsDue()
		}
		pd := c.snapshot()
		if reason := c.policy.due(pd, time.Now(), wanted, false); reason != noFlush {
			if !c.startFlush(reason) {
				c.reap(ctx) // wait for the oldest flush
			}
			continue
		}
		if len(c.inflight) == 0 && pd.records == 0 {
			// Nothing unwritten or uncommitted: a rebalance can
			// neither make us commit what we do not own nor lose what
			// we hold.
			c.rebalanceWanted.Store(false)
			c.cl.AllowRebalance()
			if c.rejoining {
				// Reading now would only be dropped again at the
				// fence: wait for the client to rejoin the group.
				if member, gen := c.cl.GroupMetadata(); member == "" || gen < 0 || gen == c.lostGen {
					if waited++; waited%200 == 0 {
						c.logger.Warn("still waiting to rejoin the consumer group", "waited", time.Duration(waited)*rejoinPoll)
					}
					sleep(ctx, rejoinPoll)
					continue
				}
				c.rejoining, waited = false, 0
				c.logger.Info("rejoined the consumer group")
			}
		} else if wanted {
			// Polling more would only delay the rebalance.
			c.reap(ctx)
			continue
		}
		if err := c.pollOnce(ctx, pd); err != nil {
			if errors.Is(err, kgo.ErrClientClosed) {
				return err
			}
			break
		}
	}
	c.shutdown(ctx, cancelFlushes)
	return nil
}

// pollOnce waits for records (until the pending work is due, a flush
// completes or a rebalance wants to happen) and turns them into rows. It
// returns an error only when ctx is done or the client is closed.
func (c *consumer) pollOnce(ctx context.Context, pd pending) error {
	var (
		pctx   context.Context
		cancel context.CancelFunc
	)
	// Wake for the next tick at the latest.
	dl := c.nextTick
	if d, ok := c.policy.deadline(pd); ok && d.Before(dl) {
		dl = d
	}
	pctx, cancel = context.WithDeadline(ctx, dl)
	c.wakeMu.Lock()
	c.wake = cancel
	c.wakeMu.Unlock()
	// A flag set or a flush finished before wake was in place must not
	// be slept on.
	if c.rebalanceWanted.Load() || c.anyFinished() {
		cancel()
	}
	fetches := c.cl.PollRecords(pctx, c.policy.pollLimit(pd))
	c.wakeMu.Lock()
	c.wake = nil
	c.wakeMu.Unlock()
	cancel()

	var closed bool
	fetches.EachError(func(topic string, p int32, err error) {
		switch {
		case errors.Is(err, kgo.ErrClientClosed):
			closed = true
		case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		default:
			c.logger.Warn("fetch error", "topic", topic, "partition", p, "err", err)
		}
	})
	if closed {
		return kgo.ErrClientClosed
	}

	c.recs = c.recs[:0]
	c.hwms = c.hwms[:0]
	fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
		if len(fp.Records) == 0 || fp.Topic != c.cfg.Topic {
			return
		}
		c.recs = append(c.recs, fp.Records...)
		c.hwms = append(c.hwms, partitionMark{fp.Partition, fp.HighWatermark})
	})
	if len(c.recs) == 0 {
		return nil
	}
	c.m.consumed.Add(float64(len(c.recs)))
	c.decoded = decodeAll(c.recs, c.decoded)

	// Rows are appended in record order; decoding above is the only
	// parallel part.
	now := time.Now()
	var st *partState
	for i, r := range c.recs {
		if st == nil || st.partition != r.Partition {
			st = c.state(r.Partition)
		}
		if err := c.process(ctx, st, r, &c.decoded[i], now); err != nil {
			return err // ctx done while dead-lettering: r stays unconsumed
		}
	}
	clear(c.recs) // do not keep the fetched buffers alive
	for _, hw := range c.hwms {
		if st := c.state(hw.partition); st.next.Offset > 0 {
			st.lag = max(hw.highWatermark-st.next.Offset, 0)
		}
	}
	return nil
}

type partitionMark struct {
	partition     int32
	highWatermark int64
}

// maxInflight bounds the flushes running at once. Their partitions are
// disjoint, so the blocks of one partition still reach ClickHouse one
// after the other, in offset order. One, because on the 2-core machine
// ClickHouse is CPU-bound: with two, flushes split into smaller parts and
// the drain benchmark fell from 124k-198k to about 100k parts/s. A larger
// ClickHouse may take 2.
const maxInflight = 1

// startFlush moves the unflushed work of every partition that has no
// flush in flight into a new flush job and runs it in the background. It
// reports false when it could not start one (too many in flight, or every
// pending partition is in one); the caller then waits for the oldest.
func (c *consumer) startFlush(why flushReason) bool {
	if len(c.inflight) >= maxInflight {
		return false
	}
	busy := map[int32]bool{}
	for _, j := range c.inflight {
		for _, b := range j.batches {
			busy[b.partition] = true
		}
	}
	job := &flushJob{why: why, done: make(chan struct{})}
	for _, st := range c.states {
		if busy[st.partition] {
			continue
		}
		b := &batch{
			partition:   st.partition,
			block:       st.block,
			records:     st.records,
			first:       st.first,
			firstRow:    st.firstRow,
			next:        st.next,
			resolutions: st.resolutions,
			validGen:    st.validGen,
		}
		all := why == flushStop || why == flushRebalance
		b.states, b.checkpoint = st.periods.take(all, time.Now(), st.next.Offset)
		if st.positioned && b.checkpoint != st.periods.checkpoint {
			b.writeCheckpoint = true
			st.periods.checkpoint = b.checkpoint
		}
		if st.records == 0 {
			// Only period work (ticks): the partition's position is
			// both where it starts and what it would commit.
			b.first = st.next.Offset
		}
		job.batches = append(job.batches, b)
		st.block = c.freeBlock()
		st.records = 0
		st.resolutions = resolutionCounts{}
	}
	if len(job.batches) == 0 {
		return false
	}
	c.inflight = append(c.inflight, job)
	go func() {
		c.runJob(c.fctx, job)
		close(job.done)
		c.wakePoll()
	}()
	return true
}

func (c *consumer) anyFinished() bool {
	for _, j := range c.inflight {
		if j.finished() {
			return true
		}
	}
	return false
}

func (c *consumer) freeBlock() *chstore.PartsBlock {
	if n := len(c.free); n > 0 {
		b := c.free[n-1]
		c.free = c.free[:n-1]
		return b
	}
	return new(chstore.PartsBlock)
}

// reap applies the results of the flushes that are done. With a nil ctx
// it does not wait; otherwise it first waits until the oldest flush is
// done or ctx ends.
func (c *consumer) reap(ctx context.Context) {
	if len(c.inflight) == 0 {
		return
	}
	if ctx != nil {
		select {
		case <-c.inflight[0].done:
		case <-ctx.Done():
			return
		}
	}
	kept := c.inflight[:0]
	for _, job := range c.inflight {
		if job.finished() {
			c.apply(job)
		} else {
			kept = append(kept, job)
		}
	}
	clear(c.inflight[len(kept):])
	c.inflight = kept
}

// apply takes back a finished flush: rewinds what it dropped and recycles
// its blocks.
func (c *consumer) apply(job *flushJob) {
	if job.lost {
		c.rejoining, c.lostGen = true, job.lostGen
	}
	var rewind map[int32]kgo.EpochOffset
	var reload []int32
	for _, b := range job.batches {
		if b.dropped {
			// Neither written nor committed: read it again, and with
			// it whatever this partition consumed since.
			if rewind == nil {
				rewind = map[int32]kgo.EpochOffset{}
			}
			rewind[b.partition] = kgo.EpochOffset{Epoch: -1, Offset: b.resumeAt}
			c.mu.Lock()
			st := c.parts[b.partition]
			c.mu.Unlock()
			if st != nil {
				st.reset()
				// A failed insert of the dropped block may still
				// have landed: check before writing this partition
				// again (checkPositions then skips after it).
				st.validGen = -1
				// The machines have seen the dropped records:
				// take them back to their saved state.
				reload = append(reload, b.partition)
			}
		} else {
			c.mu.Lock()
			if st := c.parts[b.partition]; st != nil {
				st.validGen = b.validGen
			}
			c.mu.Unlock()
		}
		b.block.Reset()
		c.free = append(c.free, b.block)
	}
	if len(reload) > 0 {
		c.reloadPeriods(reload, rewind)
	}
	if len(rewind) > 0 {
		c.cl.SetOffsets(map[string]map[int32]kgo.EpochOffset{c.cfg.Topic: rewind})
	}
}

// reloadPeriods replaces the machines of partitions whose batch was
// dropped with their saved state. Each partition resumes at its rewind
// offset, or earlier, at its checkpoint, replaying into the machines
// only up to the rewind offset.
func (c *consumer) reloadPeriods(parts []int32, rewind map[int32]kgo.EpochOffset) {
	sets, err := c.loadPeriods(c.fctx, parts)
	if err != nil {
		c.logger.Error("reloading period state machines failed", "partitions", parts, "err", err)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range parts {
		st := c.parts[p]
		if st == nil {
			continue
		}
		l := sets[p]
		c.m.machines.Sub(float64(len(st.periods.locs)))
		st.periods = periodSet{locs: l.locs, checkpoint: l.checkpoint}
		c.m.machines.Add(float64(len(l.locs)))
		resume := rewind[p]
		st.next, st.positioned = resume, true
		if l.checkpoint >= 0 && l.checkpoint < resume.Offset {
			st.periods.replayUntil = resume.Offset
			rewind[p] = kgo.EpochOffset{Epoch: -1, Offset: l.checkpoint}
		}
	}
}

// shutdown stops fetching, waits for the flush in flight, writes and
// commits what is pending, and leaves the group (Close, deferred in run).
func (c *consumer) shutdown(ctx context.Context, cancelFlushes context.CancelFunc) {
	c.cl.PauseFetchTopics(c.cfg.Topic)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	stop := context.AfterFunc(sctx, cancelFlushes) // bound the flushes too
	defer stop()

	for len(c.inflight) > 0 && sctx.Err() == nil {
		c.reap(sctx)
	}
	c.markPeriodsDue()
	if pd := c.snapshot(); pd.records > 0 && len(c.inflight) == 0 {
		c.startFlush(flushStop)
		c.reap(sctx)
	}
	if len(c.inflight) > 0 {
		c.logger.Error("final flush did not complete in time; the unwritten rows are read again by the next owner")
	}
	c.cl.AllowRebalance()
	if err := c.cl.LeaveGroupContext(sctx); err != nil {
		c.logger.Warn("leave group", "err", err)
	}
	c.logger.Info("consumer stopped")
}

// markPeriodsDue makes every partition's unsaved machines due for saving.
func (c *consumer) markPeriodsDue() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.parts {
		st.periods.markDue()
	}
}

// sleep waits d or until ctx is done; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
