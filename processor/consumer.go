package processor

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/kafkax"
	"github.com/takt/takt/processor/resolve"
)

// partsStore is what the consumer needs from ClickHouse (a *chstore.Store).
type partsStore interface {
	InsertParts(ctx context.Context, b *chstore.PartsBlock) error
	PartsMaxOffset(ctx context.Context, topic string, partition int32, from int64) (int64, bool, error)
	WaitPartsInserts(ctx context.Context, poll time.Duration, every func(running int)) error
	ReconcileRollups(ctx context.Context, topic string, partition int32, from, to int64) (chstore.RollupRepair, error)
	PartKeys(ctx context.Context, topic string, ids []uuid.UUID) (map[uuid.UUID]chstore.PartPosition, error)
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

// Fetch sizing (see newConsumer): about 200 single-part messages, and a
// wait well inside the freshness budget of a part (flush interval plus
// insert, under a second).
const (
	fetchMinBytes = 64 << 10
	fetchMaxWait  = 100 * time.Millisecond
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

	// rewound: a flush run by the loop itself (flushPartition) dropped
	// the partition's batch and moved its position back; the records of
	// the current poll after it are read again, not processed now.
	rewound bool

	// keys are the idempotency ids of the records consumed and not yet
	// known to be in ClickHouse (see dedupe), with their offsets.
	keys map[uuid.UUID]int64
	// floor is the watermark last published for the partition (by any
	// owner): its rows are placed in insertion order above it. lastOrder
	// is the order_ms of its last row placed.
	floor, lastOrder int64
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
	clear(st.keys) // the records are read again
}

// consumer is the consume loop: poll, decode, resolve, batch; and the
// flusher it hands batches to: write the partitions' rows, commit.
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
	master *masterData
	cl     *kgo.Client
	policy flushPolicy

	// owners, when set (unit tests), answers which partitions the group
	// gives this member instead of asking the coordinator.
	owners func(context.Context) (map[int32]bool, error)
	// afterInsert runs after a flush's blocks are in ClickHouse and
	// before its offsets are committed (crash tests hook in there).
	afterInsert func()
	// afterPeriods runs after a batch's period states and rows are in
	// ClickHouse and before its parts block (crash tests).
	afterPeriods func()
	// afterRecomputePeriods runs once a recompute's period rows are in
	// ClickHouse, before their changes are produced.
	afterRecomputePeriods func()
	// clock is the wall clock of ticks.
	clock func() time.Time
	// feed produces the period changes (nil: no change feed).
	feed *changeFeed

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
	lags      []partitionLag // one per owned partition
	lagShown  map[int32]bool // partitions with a lag series; false: not owned any more
	recs      []*kgo.Record
	hwms      []partitionMark
	decoded   []decoded
	nextTick  time.Time
	// obs are the listings of end offsets (observe); lastPublish is when
	// the last flush, which publishes watermarks, started; nextPublish
	// when a member with nothing to flush publishes next.
	obs                      observations
	lastPublish, nextPublish time.Time
}

// consumerStore is what the consume loop needs from ClickHouse.
type consumerStore interface {
	partsStore
	periodStore
	watermarkStore
	recomputeStore
}

func newConsumer(cfg Config, store consumerStore, master *masterData, m *metrics, logger *slog.Logger) (*consumer, error) {
	c := &consumer{
		cfg:                   cfg,
		logger:                logger,
		m:                     m,
		store:                 store,
		master:                master,
		policy:                flushPolicy{rows: cfg.BatchRows, interval: cfg.BatchInterval},
		afterInsert:           func() {},
		afterPeriods:          func() {},
		afterRecomputePeriods: func() {},
		clock:                 time.Now,
		parts:                 make(map[int32]*partState),
	}
	opts := []kgo.Opt{
		// The topic is added by run: the group callbacks below read
		// fields set after this returns (c.cl, and the hooks run sets), so
		// the client must not join the group before then.
		kgo.ConsumerGroup(cfg.Group),
		// A new group starts at the beginning of the topic: a part
		// produced before the first processor started is not lost.
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.SessionTimeout(cfg.SessionTimeout),
		// At most a third of the session, as Kafka advises.
		kgo.HeartbeatInterval(min(3*time.Second, cfg.SessionTimeout/3)),
		// A fetch returns once it has fetchMinBytes, or after
		// fetchMaxWait with what there is: at a moderate rate of single
		// parts the broker then answers a few times per 100 ms with many
		// records, instead of once per produce request with one or two
		// (each fetch costs the broker and the processor the same
		// whatever it holds). The wait adds at most fetchMaxWait to a
		// part's way into ClickHouse, and partitions assigned meanwhile
		// start soon (franz-go's default waits 5s).
		kgo.FetchMinBytes(fetchMinBytes),
		kgo.FetchMaxWait(fetchMaxWait),
		kgo.AdjustFetchOffsetsFn(c.adjustOffsets),
		kgo.OnPartitionsAssigned(c.onAssigned),
		kgo.OnPartitionsRevoked(c.onRevoked),
		kgo.OnPartitionsLost(c.onLost),
		kgo.OnPartitionsCallbackBlocked(c.onBlocked),
	}
	if cfg.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(cfg.InstanceID))
	}
	// Dead letters are produced one at a time and awaited: no linger.
	cl, err := kafkax.NewClient(kafkax.Config{Brokers: cfg.Brokers, LogLevel: kgo.LogLevelDebug, Security: cfg.Kafka}, logger, opts...)
	if err != nil {
		return nil, err
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
