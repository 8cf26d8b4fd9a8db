package processor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"golang.org/x/sync/errgroup"

	"github.com/takt/takt/internal/chstore"
)

// errLostMembership means the group no longer knows this member: another
// member may own our partitions now, so nothing may be written for them.
var errLostMembership = errors.New("group membership lost")

// runJob makes a flush durable: it checks that the group still knows us
// (the fence), checks positions after a generation change, writes the
// partitions' rows (insert), then commits the offsets. It retries failed
// inserts with backoff and never commits past an unwritten row. Batches it
// gives up on (shutdown deadline, membership lost, or a rebalance waits
// while inserts keep failing) are marked dropped and read again.
//
// Exactly-once argument: offsets are committed only after ClickHouse holds
// every row before them, so a crash before the insert replays from the
// commit, and a crash between insert and commit replays from the commit
// but adjustOffsets skips what ClickHouse already holds (after waiting for
// INSERTs still running in the server, such as a killed member's last
// one).
//
// Zombies: a member cut off from the broker cannot pass the fence, so it
// cannot write after the group gave its partitions away; a member removed
// and re-admitted writes a partition only if the group's assignment of
// its new generation gives it that partition, and finds the rows another
// member wrote meanwhile in checkPositions. What
// remains is a member that passed the fence and then stalls (a process
// pause, or an INSERT slower than the rebalance timeout) so long that the
// group gives its partitions to another member, which reads ClickHouse
// before the stalled INSERT even reached the server. Those rows are then
// written twice. Plain MergeTree cannot refuse such a write; closing the
// gap needs a fencing token checked by the store itself.
func (c *consumer) runJob(ctx context.Context, job *flushJob) {
	start := time.Now()
	if len(job.batches) == 0 {
		// Watermarks only: published by a member of the group that owns
		// the partitions (the fence), once.
		if _, err := c.fence(ctx, nil, job.marks); err != nil {
			c.logger.Debug("not publishing watermarks: the fence failed", "err", err)
			return
		}
		c.publishWatermarks(ctx, job)
		return
	}
	var err error
	for attempt := 0; ; attempt++ {
		if attempt > 0 && !sleep(ctx, backoff(attempt, retryMin, retryMax)) {
			break // shutdown deadline: what is unwritten is dropped
		}
		var gen int32
		if gen, err = c.fence(ctx, job.batches, job.marks); err == nil {
			err = c.checkPositions(ctx, job.batches, gen)
		}
		if errors.Is(err, errLostMembership) {
			c.m.fenced.Inc()
			c.logger.Error("not writing: the group no longer knows this member, or gave these partitions to another; dropping unwritten rows", "err", err)
			job.lost, job.lostGen = true, gen
			break
		}
		if err != nil {
			c.logger.Warn("fence or position check failed; retrying", "attempt", attempt+1, "err", err)
		} else if err = c.insert(ctx, job.batches); err == nil {
			break
		} else {
			c.m.insertErrors.Inc()
			c.logger.Error("insert into clickhouse failed; retrying, offsets stay uncommitted", "attempt", attempt+1, "err", err)
		}
		if c.rebalanceWanted.Load() && job.why != flushStop {
			// Do not hold the group hostage while ClickHouse is down:
			// give back what is not written and let the rebalance
			// proceed.
			c.logger.Warn("a rebalance waits while inserts fail: dropping unwritten rows; they are read again")
			break
		}
	}
	inserted := time.Since(start)
	c.m.insertSeconds.Observe(inserted.Seconds())
	c.m.batches.WithLabelValues(string(job.why)).Inc()
	if err == nil {
		c.afterInsert()
		c.publishWatermarks(ctx, job)
	}

	// Commit what is durable: batches whose block is written, and batches
	// that only had dead letters. The rest is dropped.
	commit := map[int32]kgo.EpochOffset{}
	visibleMs := time.Now().UnixMilli()
	for _, b := range job.batches {
		if b.overtaken {
			b.dropped = true
		} else if err == nil || b.inserted || (b.block.Len() == 0 && (b.periodsDone || !b.hasPeriodWork())) {
			if b.records == 0 {
				continue // period work only: nothing to commit
			}
			commit[b.partition] = b.next
			c.m.inserted.Add(float64(b.block.Len()))
			c.m.observeInserted(b.block, visibleMs)
			for i, n := range b.resolutions {
				if n > 0 {
					c.m.resolutions.WithLabelValues(string(resolutionOrder[i])).Add(float64(n))
				}
			}
		} else {
			b.dropped, b.resumeAt = true, b.first
		}
	}
	if len(commit) > 0 && !errors.Is(err, errLostMembership) {
		if err := c.commit(ctx, commit); err != nil {
			// The rows are in ClickHouse; whoever reads this partition
			// next starts after them (adjustOffsets), and our next
			// flush's fence commits past them too.
			c.m.commitErrors.Inc()
			c.logger.Warn("offset commit after insert failed; ClickHouse's last offset covers it", "err", err)
		}
	}
	if c.logger.Enabled(ctx, slog.LevelDebug) {
		c.logger.Debug("flushed", "reason", job.why, "partitions", len(job.batches),
			"insert", inserted, "total", time.Since(start), "err", err)
	}
}

// insert writes what the batches have not yet written: first the period
// work of all of them (states, then rows and checkpoints; one INSERT per
// table, since ClickHouse's cost is mostly per INSERT), then the batches'
// part rows, in as few blocks as blockGroups allows.
//
// A block may hold the rows of several partitions: it is one data part,
// committed atomically, so each partition's rows in ClickHouse remain a
// prefix of its offsets, and PartsMaxOffset stays its resume point. The
// blocks of one flush go concurrently, one connection each; a failed block
// does not undo the others.
func (c *consumer) insert(ctx context.Context, batches []*batch) error {
	if err := c.insertPeriods(ctx, batches); err != nil {
		return err
	}
	for _, b := range batches {
		if b.recompute {
			c.afterRecomputePeriods()
		}
	}
	// The period changes go while the parts are written: they depend only
	// on the period states, which are in ClickHouse now.
	var feedErr error
	var wg sync.WaitGroup
	wg.Go(func() { feedErr = c.produceChanges(ctx, batches) })
	todo, err := c.settleFailed(ctx, batches)
	if err != nil {
		wg.Wait()
		return errors.Join(err, feedErr)
	}
	groups := blockGroups(todo, minBlockRows)
	errs := make([]error, len(groups), len(groups)+1)
	for i, g := range groups {
		wg.Go(func() { errs[i] = c.insertGroup(ctx, g) })
	}
	wg.Wait()
	return errors.Join(append(errs, feedErr)...)
}

// minBlockRows is the fewest rows a parts block is made of when a flush
// has more partitions with rows than that. ClickHouse's cost is mostly per
// INSERT and per data part it then creates and merges (in the parts table
// and in each view's table), not per row: at 5,000 parts/s over 6
// partitions, one block per partition per 500 ms flush cost ClickHouse
// several times the CPU per part of one block per flush. The same holds
// for big flushes: 2M parts written in blocks of 12,500 rows cost
// ClickHouse 18.16 4.3-6.8 µs of CPU per part with its merges, in blocks
// of 50,000 2.3-2.6 µs (the parts table and parts_order are each merged
// 2.6 instead of 1.6 times). So a flush of up to the default batch
// (DefaultBatchRows) is one block; only a bigger one (a larger
// TAKT_BATCH_ROWS) splits into blocks that are written concurrently.
const minBlockRows = 50_000

// blockGroups splits the batches (in partition order) into groups whose
// rows make one block each: consecutive batches until a group has at least
// min rows; a smaller rest joins the last group.
func blockGroups(batches []*batch, min int) [][]*batch {
	var groups [][]*batch
	rows := 0
	for _, b := range batches {
		if len(groups) == 0 || rows >= min {
			groups = append(groups, nil)
			rows = 0
		}
		groups[len(groups)-1] = append(groups[len(groups)-1], b)
		rows += b.block.Len()
	}
	if n := len(groups); n > 1 && rows < min {
		groups[n-2] = append(groups[n-2], groups[n-1]...)
		groups = groups[:n-1]
	}
	return groups
}

// settleFailed returns the batches whose rows still have to be written.
// A batch whose earlier attempt failed may have landed anyway (the server
// committed the part, or is still running the INSERT: an answer that
// timed out): it waits for such INSERTs to end, then asks. Only this
// member writes offsets >= firstRow of the partition (the fence), so any
// row there is from that attempt, whose block was atomic.
func (c *consumer) settleFailed(ctx context.Context, batches []*batch) ([]*batch, error) {
	var todo []*batch
	waited := false
	for _, b := range batches {
		if b.inserted || b.overtaken || b.block.Len() == 0 {
			continue
		}
		if b.insertFailed {
			if !waited {
				if err := c.store.WaitPartsInserts(ctx, 20*time.Millisecond, nil); err != nil {
					return nil, err
				}
				waited = true
			}
			last, found, err := c.store.PartsMaxOffset(ctx, c.cfg.Topic, b.partition, b.firstRow)
			if err != nil {
				return nil, fmt.Errorf("partition %d: %w", b.partition, err)
			}
			if found {
				c.logger.Info("block was written despite the insert error", "partition", b.partition,
					"first_offset", b.firstRow, "clickhouse_last", last)
				// Its views may not have run (a server crash in between).
				if err := c.repairRollups(ctx, b.partition, b.firstRow, last); err != nil {
					return nil, err
				}
				b.inserted = true
				c.m.insertRows.Observe(float64(b.block.Len()))
				continue
			}
		}
		todo = append(todo, b)
	}
	return todo, nil
}

// insertGroup writes the rows of a group of batches as one block.
func (c *consumer) insertGroup(ctx context.Context, g []*batch) error {
	blk := g[0].block
	if len(g) > 1 {
		blk = new(chstore.PartsBlock)
		for _, b := range g {
			blk.AppendBlock(b.block)
		}
	}
	ictx, cancel := context.WithTimeout(ctx, insertTimeout)
	err := c.store.InsertParts(ictx, blk)
	cancel()
	if err != nil {
		ps := make([]int32, len(g))
		for i, b := range g {
			b.insertFailed = true
			ps[i] = b.partition
		}
		return fmt.Errorf("partitions %v: %w", ps, err)
	}
	for _, b := range g {
		b.inserted = true
	}
	c.m.blocks.Inc()
	c.m.insertRows.Observe(float64(blk.Len()))
	return nil
}

// hasPeriodWork reports whether the batch has states or a checkpoint to
// write.
func (b *batch) hasPeriodWork() bool { return len(b.states) > 0 || b.writeCheckpoint }

// insertPeriods writes the saved states of every batch that has period
// work left, then their period rows and the partitions' checkpoints (see
// periods.go for why states come first, and all of it before the parts).
func (c *consumer) insertPeriods(ctx context.Context, batches []*batch) error {
	var (
		todo   []*batch
		states []chstore.PeriodState
		rows   []chstore.PeriodRow
		cps    []chstore.PeriodCheckpoint
	)
	for _, b := range batches {
		if b.periodsDone || b.overtaken || !b.hasPeriodWork() {
			continue
		}
		b.feedOffset = -1
		if c.feed != nil {
			var err error
			if b.feedOffset, err = c.feedOffset(ctx, b.partition); err != nil {
				return err
			}
		}
		st, rs, err := encodeStates(c.cfg.Topic, b.partition, b.next.Offset, b.states, b.feedOffset)
		if err != nil {
			return err
		}
		states, rows = append(states, st...), append(rows, rs...)
		if b.writeCheckpoint {
			cps = append(cps, chstore.PeriodCheckpoint{Topic: c.cfg.Topic, Partition: b.partition,
				Offset: b.checkpoint, Version: uint64(time.Now().UnixNano())})
		}
		todo = append(todo, b)
	}
	if len(todo) == 0 {
		return nil
	}
	ictx, cancel := context.WithTimeout(ctx, insertTimeout)
	defer cancel()
	if err := c.store.InsertPeriodStates(ictx, states); err != nil {
		return err
	}
	var g errgroup.Group
	g.Go(func() error { return c.store.InsertPeriods(ictx, rows) })
	g.Go(func() error { return c.store.InsertPeriodCheckpoints(ictx, cps) })
	if err := g.Wait(); err != nil {
		return err
	}
	for _, b := range todo {
		b.periodsDone = true
	}
	c.m.periodStates.Add(float64(len(states)))
	c.m.periodRows.Add(float64(len(rows)))
	c.afterPeriods()
	return nil
}

// fence commits the current position (the first unflushed offset) of
// every partition about to be written, and of those whose watermark is
// about to be published (marks). The broker accepts the commit only from
// a member of the current generation, so a member the group has dropped
// learns it here, before it writes anything. It returns the generation it
// checked.
func (c *consumer) fence(ctx context.Context, batches []*batch, marks []mark) (int32, error) {
	member, gen := c.cl.GroupMetadata()
	if member == "" || gen < 0 {
		return gen, fmt.Errorf("%w: not in a group generation", errLostMembership)
	}
	offsets := make(map[int32]kgo.EpochOffset, len(batches)+len(marks))
	for _, m := range marks {
		offsets[m.partition] = kgo.EpochOffset{Epoch: -1, Offset: m.stored}
	}
	for _, b := range batches {
		offsets[b.partition] = kgo.EpochOffset{Epoch: -1, Offset: b.first}
	}
	return gen, c.commit(ctx, offsets)
}

// checkPositions runs once per partition and group generation, after the
// fence passed: if ClickHouse holds rows at or after the batch's first
// offset, they are a block whose INSERT failed and landed anyway (one of
// ours, dropped by apply), or another member wrote this partition while
// we were out of the group (we were removed and rejoined, and the client
// kept its assignment, so adjustOffsets did not run). The batch is then
// dropped and the partition resumes after those rows, once their rollups
// are repaired: either INSERT may have been cut short between the parts
// block and its views (repairRollups). Within one generation no other
// member can own the partition, so one check per generation suffices.
func (c *consumer) checkPositions(ctx context.Context, batches []*batch, gen int32) error {
	var owned map[int32]bool
	for _, b := range batches {
		if b.inserted || b.overtaken || b.validGen == gen {
			continue
		}
		// The fence proved membership of this generation, not that the
		// partition is still ours in it: a member that rejoined may have
		// lost it to another (whose rows need not be in ClickHouse yet),
		// and the client revokes it only after this flush.
		if owned == nil {
			lookup := c.ownedPartitions
			if c.owners != nil {
				lookup = c.owners
			}
			var err error
			if owned, err = lookup(ctx); err != nil {
				return err
			}
		}
		if !owned[b.partition] {
			return fmt.Errorf("%w: partition %d belongs to another member in generation %d", errLostMembership, b.partition, gen)
		}
		_, found, err := c.store.PartsMaxOffset(ctx, c.cfg.Topic, b.partition, b.first)
		if err != nil {
			return fmt.Errorf("partition %d: %w", b.partition, err)
		}
		if found {
			last, err := c.skipStored(ctx, b.partition, b.first)
			if err != nil {
				return err
			}
			c.logger.Warn("ClickHouse holds rows of this partition from our first offset on (an insert of ours that failed and landed, or another member's while we were out of the group); skipping after them",
				"partition", b.partition, "our_first_offset", b.first, "clickhouse_last", last)
			b.overtaken, b.resumeAt = true, last+1
			continue
		}
		b.validGen = gen
	}
	return nil
}

// errGroupUnsettled: the group is between generations; ask again.
var errGroupUnsettled = errors.New("the consumer group is rebalancing")

// ownedPartitions asks the group coordinator which partitions of the
// topic the group's current assignment gives this member. A member the
// stable group does not list owns none.
func (c *consumer) ownedPartitions(ctx context.Context) (map[int32]bool, error) {
	member, _ := c.cl.GroupMetadata()
	dctx, cancel := context.WithTimeout(ctx, commitTimeout)
	defer cancel()
	groups, err := kadm.NewClient(c.cl).DescribeGroups(dctx, c.cfg.Group)
	if err != nil {
		return nil, fmt.Errorf("describe the consumer group: %w", err)
	}
	g, ok := groups[c.cfg.Group]
	switch {
	case !ok:
		return nil, fmt.Errorf("describe the consumer group: %s not in the answer", c.cfg.Group)
	case g.Err != nil:
		return nil, fmt.Errorf("describe the consumer group: %w", g.Err)
	case g.State != "Stable":
		// Assignments are given only once the group is stable.
		return nil, fmt.Errorf("%w (%s)", errGroupUnsettled, g.State)
	}
	owned := map[int32]bool{}
	for _, m := range g.Members {
		if m.MemberID != member {
			continue
		}
		if a, ok := m.Assigned.AsConsumer(); ok {
			for _, t := range a.Topics {
				if t.Topic == c.cfg.Topic {
					for _, p := range t.Partitions {
						owned[p] = true
					}
				}
			}
		}
	}
	return owned, nil
}

// commit commits offsets synchronously and classifies the failure.
func (c *consumer) commit(ctx context.Context, offsets map[int32]kgo.EpochOffset) error {
	ctx, cancel := context.WithTimeout(ctx, commitTimeout)
	defer cancel()
	var rerr error
	c.cl.CommitOffsetsSync(ctx, map[string]map[int32]kgo.EpochOffset{c.cfg.Topic: offsets},
		func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
			if err != nil {
				rerr = err
				return
			}
			for _, t := range resp.Topics {
				for _, p := range t.Partitions {
					if err := kerr.ErrorForCode(p.ErrorCode); err != nil && rerr == nil {
						rerr = fmt.Errorf("commit %s/%d: %w", t.Topic, p.Partition, err)
					}
				}
			}
		})
	if rerr != nil && (errors.Is(rerr, kerr.UnknownMemberID) || errors.Is(rerr, kerr.IllegalGeneration) ||
		errors.Is(rerr, kerr.FencedInstanceID) || errors.Is(rerr, kerr.StaleMemberEpoch)) {
		return fmt.Errorf("%w: %w", errLostMembership, rerr)
	}
	return rerr
}

// skipStored prepares skipping the rows of partition that ClickHouse holds
// from offset first on, and returns the last one. The INSERTs still
// running in the server end first (the block's own may still be writing
// its views, and its rows may not all be visible yet), then the rollups of
// those rows are repaired: skipping them unrepaired would lose whatever
// their views did not write for good.
func (c *consumer) skipStored(ctx context.Context, partition int32, first int64) (int64, error) {
	if err := c.store.WaitPartsInserts(ctx, 20*time.Millisecond, nil); err != nil {
		return 0, fmt.Errorf("partition %d: %w", partition, err)
	}
	last, found, err := c.store.PartsMaxOffset(ctx, c.cfg.Topic, partition, first)
	if err != nil {
		return 0, fmt.Errorf("partition %d: %w", partition, err)
	}
	if !found {
		return 0, fmt.Errorf("partition %d: the rows from offset %d on are no longer found", partition, first)
	}
	if err := c.repairRollups(ctx, partition, first, last); err != nil {
		return 0, err
	}
	return last, nil
}
