package processor

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/takt/takt/internal/chstore"
)

// batch is one partition's share of a flush: its rows (one INSERT block)
// and the records' offsets.
type batch struct {
	partition   int32
	block       *chstore.PartsBlock
	records     int
	first       int64 // offset of the first record
	firstRow    int64 // offset of the first row in block
	next        kgo.EpochOffset
	resolutions resolutionCounts
	// states are the saved states of the locations the batch changed;
	// they and their period rows are written before the block.
	states []savedState
	// checkpoint: the partition's machines can be rebuilt from their
	// saved states and the records from here on; written when changed.
	checkpoint      int64
	writeCheckpoint bool
	periodsDone     bool
	// feedOffset is where the partition's period-changes partition ended
	// when the states were encoded (feed.go); feedDone: their changes are
	// on the topic.
	feedOffset int64
	feedDone   bool
	// floor is the watermark last published for the partition; the
	// block's rows are placed above it.
	floor int64

	// validGen is the group generation in which this partition's
	// position was last checked against ClickHouse.
	validGen int32
	// recompute: the batch carries the period rows of a recompute.
	recompute bool

	// Outcome, written by the flush. inserted: block is in ClickHouse.
	// insertFailed: an attempt failed, so before trying again we must ask
	// whether it landed anyway. dropped: neither written nor committed;
	// the loop reads the partition again from resumeAt.
	inserted     bool
	insertFailed bool
	dropped      bool
	overtaken    bool
	resumeAt     int64
}

// flushJob is one flush, run by a goroutine of its own; the loop reads
// the batches' outcome after done is closed.
type flushJob struct {
	why     flushReason
	batches []*batch
	done    chan struct{}
	// lost: the group no longer knew this member in generation lostGen
	// (set by the flush).
	lost    bool
	lostGen int32
	// marks are the partitions with nothing to write whose watermarks
	// the flush publishes; published is what it published (or tried to),
	// by partition (set by the flush).
	marks     []mark
	published map[int32]int64
}

func (j *flushJob) finished() bool {
	select {
	case <-j.done:
		return true
	default:
		return false
	}
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
		// A partition whose watermark a flush publishes is its until it
		// ends: its next rows are placed above that watermark.
		for _, m := range j.marks {
			busy[m.partition] = true
		}
	}
	job := &flushJob{why: why, done: make(chan struct{})}
	pending := map[int32]bool{}
	for _, st := range c.states {
		pending[st.partition] = true
		if busy[st.partition] || why == flushWatermark {
			continue
		}
		job.batches = append(job.batches, c.takeBatch(st, why))
	}
	job.marks = c.idleMarks(busy, pending)
	if len(job.batches) == 0 && (why != flushWatermark || len(job.marks) == 0) {
		return false
	}
	c.lastPublish = time.Now()
	c.nextPublish = c.lastPublish.Add(publishEvery)
	c.inflight = append(c.inflight, job)
	go func() {
		c.runJob(c.fctx, job)
		close(job.done)
		c.wakePoll()
	}()
	return true
}

// takeBatch moves st's unflushed work into a batch of a flush.
func (c *consumer) takeBatch(st *partState, why flushReason) *batch {
	// Placed now, above the watermark the partition's last flush
	// published: its flushes run one after the other, so that one is
	// known, and none is published for it until this one runs.
	st.lastOrder = st.block.StampOrder(st.floor, st.lastOrder)
	b := &batch{
		partition:   st.partition,
		block:       st.block,
		records:     st.records,
		first:       st.first,
		firstRow:    st.firstRow,
		next:        st.next,
		resolutions: st.resolutions,
		validGen:    st.validGen,
		floor:       st.floor,
	}
	all := why == flushStop || why == flushRebalance
	b.states, b.checkpoint = st.periods.take(all, time.Now(), st.next.Offset)
	if st.positioned && b.checkpoint != st.periods.checkpoint {
		b.writeCheckpoint = true
		st.periods.checkpoint = b.checkpoint
	}
	if st.records == 0 {
		// Only period work (ticks): the partition's position is both
		// where it starts and what it would commit.
		b.first = st.next.Offset
	}
	st.block = c.freeBlock()
	st.records = 0
	st.resolutions = resolutionCounts{}
	return b
}

// flushPartition writes st's unflushed work now, in the loop's goroutine,
// the way every flush does (fence, period states and rows, their changes,
// parts, commit), and takes its result back. No flush of the partition
// may be in flight. It reports false when the batch was dropped: the
// partition is then read again from where the batch began, and the
// records of the current poll after it are not to be processed
// (st.rewound).
func (c *consumer) flushPartition(st *partState, why flushReason) bool {
	b := c.takeBatch(st, why)
	b.recompute = why == flushRecompute
	job := &flushJob{why: why, batches: []*batch{b}, done: make(chan struct{})}
	c.runJob(c.fctx, job)
	close(job.done)
	dropped := b.dropped
	c.apply(job)
	if dropped {
		st.rewound = true
	}
	return !dropped
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

// reap first waits until the oldest flush is done or ctx ends, then
// applies the results of the flushes that are done.
func (c *consumer) reap(ctx context.Context) {
	if len(c.inflight) == 0 {
		return
	}
	select {
	case <-c.inflight[0].done:
	case <-ctx.Done():
		return
	}
	c.reapDone()
}

// reapDone applies the results of the flushes that are done, without
// waiting.
func (c *consumer) reapDone() {
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
	if len(job.published) > 0 {
		c.mu.Lock()
		for p, w := range job.published {
			if st := c.parts[p]; st != nil {
				st.floor = max(st.floor, w)
			}
		}
		c.mu.Unlock()
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
				st.forgetKeys(b.next.Offset)
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
