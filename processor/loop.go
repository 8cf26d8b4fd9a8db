package processor

import (
	"context"
	"errors"
	"sort"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// run consumes until ctx is done, then flushes and commits what it holds,
// leaves the group and closes the client.
func (c *consumer) run(ctx context.Context) error {
	fctx, cancelFlushes := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelFlushes()
	c.fctx = fctx
	defer c.cl.Close()
	// Joins the group: from here on the group callbacks run.
	c.cl.AddConsumeTopics(c.cfg.Topic)
	octx, stopObserving := context.WithCancel(ctx)
	observed := make(chan struct{})
	go func() { defer close(observed); c.observe(octx) }()
	defer func() { stopObserving(); <-observed }()

	waited := 0 // rejoin polls
	for ctx.Err() == nil {
		c.reapDone()
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
		if now := time.Now(); !wanted && len(c.inflight) == 0 && !now.Before(c.nextPublish) {
			c.nextPublish = now.Add(publishEvery)
			if c.watermarkDue(now) && c.startFlush(flushWatermark) {
				continue
			}
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
	// Wake for the next tick at the latest, and to publish watermarks.
	dl := c.nextTick
	if d, ok := c.policy.deadline(pd); ok && d.Before(dl) {
		dl = d
	}
	if d := c.nextPublish; d.Before(dl) && d.After(time.Now()) {
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
	if err := c.dedupe(ctx); err != nil {
		return err // ctx done: nothing of this poll is consumed
	}

	// Rows are appended in record order; decoding above is the only
	// parallel part.
	now := time.Now()
	var st *partState
	var rewound []*partState
	for i, r := range c.recs {
		if st == nil || st.partition != r.Partition {
			st = c.state(r.Partition)
		}
		if st.rewound {
			continue // read again from where the partition was moved back
		}
		if err := c.process(ctx, st, r, &c.decoded[i], now); err != nil {
			return err // ctx done while dead-lettering: r stays unconsumed
		}
		if st.rewound {
			rewound = append(rewound, st)
		}
	}
	for _, st := range rewound {
		st.rewound = false
	}
	clear(c.recs) // do not keep the fetched buffers alive
	for _, hw := range c.hwms {
		if st := c.state(hw.partition); st.next.Offset > 0 {
			st.lag = max(hw.highWatermark-st.next.Offset, 0)
		}
	}
	return nil
}

// partitionLag is how many records a partition's owner is behind its
// high watermark.
type partitionLag struct {
	partition int32
	records   int64
}

type partitionMark struct {
	partition     int32
	highWatermark int64
}

// snapshot fills c.states with the partitions that have unflushed work,
// ordered by partition, and returns the totals.
func (c *consumer) snapshot() pending {
	c.states, c.lags = c.states[:0], c.lags[:0]
	var pd pending
	c.mu.Lock()
	for _, st := range c.parts {
		c.lags = append(c.lags, partitionLag{partition: st.partition, records: max(st.lag, 0)})
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
	c.showLags()
	c.m.pendingRows.Set(float64(pd.rows))
	return pd
}

// showLags sets the lag series of the partitions in c.lags and removes
// those of partitions this member no longer owns: a partition's lag is
// reported by its owner only, so a sum over all processors counts each
// partition once.
func (c *consumer) showLags() {
	if c.lagShown == nil {
		c.lagShown = map[int32]bool{}
	}
	for p := range c.lagShown {
		c.lagShown[p] = false
	}
	for _, l := range c.lags {
		c.m.lag.WithLabelValues(strconv.Itoa(int(l.partition))).Set(float64(l.records))
		c.lagShown[l.partition] = true
	}
	for p, owned := range c.lagShown {
		if !owned {
			c.m.lag.DeleteLabelValues(strconv.Itoa(int(p)))
			delete(c.lagShown, p)
		}
	}
}

// wakePoll makes a poll in progress return now.
func (c *consumer) wakePoll() {
	c.wakeMu.Lock()
	if c.wake != nil {
		c.wake()
	}
	c.wakeMu.Unlock()
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
