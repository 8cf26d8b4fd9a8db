package processor

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/takt/takt/internal/chstore"
)

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
			// Rows past the committed offset are a previous owner's last
			// flush, whose INSERT may have been cut short between parts
			// and its rollups.
			for attempt := 1; found; attempt++ {
				if err = c.repairRollups(ctx, p, max(committed, 0), last); err == nil {
					break
				}
				c.logger.Warn("repairing rollups failed; retrying", "partition", p, "attempt", attempt, "err", err)
				if !sleep(ctx, backoff(attempt, retryMin, retryMax)) {
					return nil, err
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
	// The watermarks the previous owners published: rows are placed
	// above them.
	floors, err := c.loadFloors(ctx)
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
		st.floor, st.lastOrder = floors[p], floors[p]
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
	if c.feed != nil {
		c.feed.forget(parts)
	}
	c.logger.Info(why, "partitions", parts)
}

func (c *consumer) onBlocked(context.Context, *kgo.Client) {
	c.rebalanceWanted.Store(true)
	c.wakePoll()
}
