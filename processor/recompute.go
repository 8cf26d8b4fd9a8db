package processor

// Recompute: a location's periods of a window derived again from the
// stored parts under the location's current rules (wire.Recompute, from
// POST /api/1.0/productionperiods/recompute/).
//
// The request travels on the parts topic under the location's key, so it
// is run here, by the one member that owns the location's state machine,
// in order with the location's parts: every part sent before it has been
// fed to the machine (those not yet in ClickHouse are taken from the
// blocks this member holds), and no part of the location is processed
// while it runs (it runs in the consume loop).
//
// The live machine is not touched: the window ends, at the latest, where
// the rows the machine holds begin (period.Machine: rows before Final are
// final, no part changes them any more). So the live state after the
// window stays exactly what it was, and what comes later continues from
// it. A window reaching into the machine's rows is cut there (the result
// says where).
//
// The window is widened to the stored periods it cuts, so that the new
// periods tile exactly the stretch the old ones covered. The periods are
// derived by a fresh period.Machine with the current configuration, fed
// the location's parts that were placed in periods ('late' parts changed
// none) in recorded order, from the last part before the window to the
// first one after it; its rows are cut at the window's edges. A period
// that starts where a stored one starts has its id: it "still exists",
// and a down one keeps the stored one's reason. Reasons that no period
// carries any more are reported in the result.
//
// Versions: one version for all rows of a recompute, above every version
// of the window's periods and above every version the live machine has
// handed out (a row of its outbox not yet written may be one of them), so
// the new versions win whatever order the writes land in. The versions
// they replace are kept in productionperiods_history.
//
// Writes, in this order, each behind the flushes' fence: the replaced
// versions (productionperiods_history); the new versions, handed to the
// location's outbox as recomputed changes (wire.ChangeRecomputed) and
// written by a flush of the partition run at once (flushPartition: the
// fence, the saved state with that outbox, the rows, their changes on the
// feed, the partition's parts); the parts' new classes and the OEE rollup
// (reclassify); the result. A crash after the saved state leaves the
// changes to the next owner's feed recovery, like any flush's; a crash
// before it loses nothing but the run, which the request read again
// repeats.
//
// How the window's parts count (period.Class) follows the new periods: a
// part recorded in an unscheduled period is made outside the shifts, any
// other placed part counts (chstore/reclass.go). The flushes of the
// partition in flight end first, so the mutation finds every part of the
// location stored or in the block this member holds.
//
// Exactly once: a request is known by its id. Its result row is written
// last; a request read again finds it and does nothing. One cut short (a
// crash between its writes) runs again: the replaced versions it kept say
// what the window held before it, rows already written as derived are not
// written again, so no duplicate version arises, and the parts' classes
// and the rollup are set, not added to.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"sort"
	"time"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/period"
	"github.com/takt/takt/internal/wire"
)

// ruleVersion is the number the rules of a configuration fingerprint are
// recorded as (productionperiods.rule_version): a 63-bit FNV-1a hash, so
// the same rules give the same number on every processor.
func ruleVersion(fp string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(fp))
	return h.Sum64() &^ (1 << 63)
}

// recomputeStore is what a recompute reads and writes (*chstore.Store).
type recomputeStore interface {
	RecomputeByID(ctx context.Context, id string) (chstore.Recompute, error)
	PeriodParts(ctx context.Context, kind string, id uint64, from, to int64, max int) ([]chstore.PeriodPart, error)
	LocationPeriods(ctx context.Context, kind string, id uint64, from, to int64) ([]chstore.PeriodRow, error)
	PeriodHistory(ctx context.Context, kind string, id uint64, recompute string) ([]chstore.PeriodRow, error)
	InsertPeriodHistory(ctx context.Context, recompute string, at time.Time, rows []chstore.PeriodRow) error
	InsertPeriods(ctx context.Context, rows []chstore.PeriodRow) error
	InsertRecompute(ctx context.Context, r chstore.Recompute) error
	ReclassifyParts(ctx context.Context, kind string, id uint64, from, to int64, unscheduled [][2]int64) error
	ReconcileClassRollup(ctx context.Context, kind string, id uint64, from, to int64) (int, error)
}

// LostReason is a reason a recompute could not carry over: no period of
// the new derivation starts where the period that had it started, or the
// one that does is not down. Times are Unix milliseconds.
type LostReason struct {
	Period  uint64 `json:"period"`
	State   string `json:"state"`
	StartMs int64  `json:"start_ms"`
	EndMs   int64  `json:"end_ms"`
	Reason  uint64 `json:"reason"`
}

// maxRecomputeTicks bounds the ticks that bring a recompute's machine to
// the end of its window (each cuts at most 64 shift boundaries).
const maxRecomputeTicks = 4096

// runDeferred runs the recompute requests read during st's replay, now
// that it ended. A request whose run gives the partition back (st.rewound)
// is read again with those after it.
func (c *consumer) runDeferred(ctx context.Context, st *partState, now time.Time) error {
	for len(st.periods.recomputes) > 0 {
		d := st.periods.recomputes[0]
		if err := c.applyRecompute(ctx, st, d.rc, d.offset, now); err != nil {
			return err
		}
		if st.rewound {
			st.periods.recomputes = nil
			return nil
		}
		st.periods.recomputes = st.periods.recomputes[1:]
	}
	st.periods.recomputes = nil
	return nil
}

// Errors of recompute that end a request's run without a result.
var (
	// errReadAgain: a flush of the partition was dropped; the partition
	// is read again from before the request, which then runs again.
	errReadAgain = errors.New("the partition is read again from before the request")
	// errUnreadable: the window's parts are more than a recompute may
	// read, or their read ran out of time, and nothing of the request is
	// written yet.
	errUnreadable = errors.New("the window's parts cannot be read")
)

// applyRecompute runs a recompute request, retrying on ClickHouse errors
// until it succeeds or ctx ends (then it returns ctx's error and the
// record stays unconsumed). When the partition is to be read again from
// before the request (st.rewound: a flush was dropped), the request runs
// when it is read again.
func (c *consumer) applyRecompute(ctx context.Context, st *partState, rc *wire.Recompute, offset int64, now time.Time) error {
	key := period.Key{Kind: rc.LocationKind, ID: rc.LocationID}
	ls := c.loc(st, key, rc.Site, rc.ExternalID)
	cfg := c.master.location(key)
	if cfg.fp != ls.fp {
		// The rules changed since the last tick looked: the live
		// machine takes them now too.
		ls.m.SetConfig(cfg.cfg)
		ls.fp = cfg.fp
	}
	timeouts := 0
	for attempt := 1; ; attempt++ {
		res, repeated, err := c.recompute(ctx, st, ls, cfg, rc, offset, now)
		var why string
		switch {
		case !errors.Is(err, errUnreadable):
		case errors.Is(err, chstore.ErrTooManyParts):
			why = fmt.Sprintf("the window holds more than %d parts, more than one recompute may read; recompute shorter windows",
				c.cfg.RecomputeMaxParts)
		case ctx.Err() == nil:
			if timeouts++; timeouts >= recomputeTimeouts {
				why = fmt.Sprintf("reading the window ran out of time (%s) %d times; recompute shorter windows",
					insertTimeout, timeouts)
			}
		}
		if why != "" {
			err = c.refuseRecompute(ctx, st, rc, offset, now, why)
		}
		switch {
		case why != "" && err == nil:
			c.m.recomputes.WithLabelValues("failed").Inc()
			c.logger.Warn("recompute refused", "recompute", rc.ID, "location_kind", rc.LocationKind,
				"location", rc.LocationID, "why", why)
			return nil
		case err == nil && repeated:
			c.m.recomputes.WithLabelValues("repeated").Inc()
			return nil
		case err == nil:
			c.m.recomputes.WithLabelValues("done").Inc()
			c.logger.Info("periods derived again", "recompute", rc.ID, "location_kind", rc.LocationKind,
				"location", rc.LocationID, "from_ms", res.FromMs, "to_ms", res.ToMs, "parts", res.Parts,
				"replaced", res.Replaced, "created", res.Created, "deleted", res.Deleted, "unchanged", res.Unchanged,
				"reasons_lost", res.ReasonsLost)
			return nil
		case errors.Is(err, errReadAgain):
			c.logger.Info("recompute waits for its partition to be read again", "recompute", rc.ID, "partition", st.partition)
			st.rewound = true
			return nil
		case errors.Is(err, errLostMembership):
			// Not ours to write: give back what is unflushed, as a flush
			// the fence refused does, and read it again (this request
			// with it) if the group still gives us the partition.
			c.m.fenced.Inc()
			c.logger.Error("not recomputing: the group no longer gives this member the partition; reading it again",
				"recompute", rc.ID, "partition", st.partition, "err", err)
			c.giveBack(st, offset)
			return nil
		}
		c.logger.Warn("recomputing periods failed; retrying", "recompute", rc.ID, "attempt", attempt, "err", err)
		if !sleep(ctx, backoff(attempt, retryMin, retryMax)) {
			return fmt.Errorf("recompute %s: %w", rc.ID, err)
		}
	}
}

// recomputeTimeouts is how many attempts of one recompute request may run
// out of their read budget before the request is refused: a window whose
// parts take longer to read than the budget would otherwise hold the
// partition's consume loop forever.
const recomputeTimeouts = 3

// refuseRecompute records request rc as done without a result, why
// saying why, behind the fence like every recompute write.
func (c *consumer) refuseRecompute(ctx context.Context, st *partState, rc *wire.Recompute, offset int64, now time.Time, why string) error {
	qctx, cancel := context.WithTimeout(ctx, insertTimeout)
	defer cancel()
	if err := c.fenceRecompute(ctx, st, offset); err != nil {
		return err
	}
	return c.store.InsertRecompute(qctx, chstore.Recompute{ID: rc.ID, Site: rc.Site, LocationKind: rc.LocationKind,
		Location: rc.LocationID, ExternalID: rc.ExternalID, StartMs: rc.StartMs, EndMs: rc.EndMs, FromMs: rc.StartMs,
		ToMs: rc.StartMs, By: rc.By, ReasonsLost: "[]", DoneAt: now, Error: why})
}

// recompute does the work of applyRecompute once; repeated reports a
// request that had already run. offset is the request's.
func (c *consumer) recompute(ctx context.Context, st *partState, ls *locState, cfg locationConfig, rc *wire.Recompute,
	offset int64, now time.Time) (res chstore.Recompute, repeated bool, err error) {
	qctx, cancel := context.WithTimeout(ctx, insertTimeout)
	defer cancel()
	if _, err := c.store.RecomputeByID(qctx, rc.ID); err == nil {
		return res, true, nil
	} else if !errors.Is(err, chstore.ErrNotFound) {
		return res, false, err
	}
	// The partition's flushes in flight end first: their parts are then
	// stored (and reclassified below), and the recompute's own flush
	// follows them. One that was dropped gives the partition back from
	// before this request.
	if err := c.waitFlushes(ctx, st); err != nil {
		return res, false, err
	}
	key := ls.key
	rules := ruleVersion(cfg.fp)
	res = chstore.Recompute{ID: rc.ID, Site: rc.Site, LocationKind: key.Kind, Location: key.ID, ExternalID: rc.ExternalID,
		StartMs: rc.StartMs, EndMs: rc.EndMs, RuleVersion: rules, By: rc.By, ReasonsLost: "[]"}
	snap := ls.m.Snapshot()
	// limit: where the live machine's rows begin.
	limit := int64(math.MaxInt64)
	if len(snap.Rows) > 0 {
		limit = snap.Rows[0].Start
	}
	end := min(rc.EndMs, limit)
	if end <= rc.StartMs {
		res.FromMs, res.ToMs, res.DoneAt = rc.StartMs, rc.StartMs, now
		if err := c.fenceRecompute(ctx, st, offset); err != nil {
			return res, false, err
		}
		return res, false, c.store.InsertRecompute(qctx, res)
	}

	// The window's periods as they are: stored, and newer versions
	// this member holds but has not written yet.
	stored, err := c.store.LocationPeriods(qctx, key.Kind, key.ID, rc.StartMs, end)
	if err != nil {
		return res, false, err
	}
	current := map[uint64]chstore.PeriodRow{}
	for _, r := range stored {
		current[r.ID] = r
	}
	for _, r := range c.pendingPeriodRows(st, ls) {
		if old, ok := current[r.ID]; ok && old.Version >= r.Version {
			continue
		}
		if r.Deleted {
			delete(current, r.ID)
			continue
		}
		if r.Start < end && (r.Open || r.End > rc.StartMs) {
			current[r.ID] = r
		}
	}
	// What the window held before this request: what it kept of the
	// versions it replaced, if it was cut short before, else current.
	kept, err := c.store.PeriodHistory(qctx, key.Kind, key.ID, rc.ID)
	if err != nil {
		return res, false, err
	}
	before := map[uint64]chstore.PeriodRow{}
	for id, r := range current {
		before[id] = r
	}
	for _, r := range kept {
		before[r.ID] = r
	}
	olds := make([]chstore.PeriodRow, 0, len(before))
	top := snap.Seq
	for _, r := range before {
		olds = append(olds, r)
		top = max(top, r.Version)
	}
	for _, r := range current {
		top = max(top, r.Version)
	}
	sort.Slice(olds, func(i, j int) bool { return olds[i].Start < olds[j].Start })

	// The window, widened to the periods it cuts.
	from, to := rc.StartMs, end
	for _, r := range olds {
		from = min(from, r.Start)
		if !r.Open && r.End > to {
			to = min(r.End, limit)
		}
	}
	res.FromMs, res.ToMs = from, to

	parts, err := c.store.PeriodParts(qctx, key.Kind, key.ID, from, to, c.cfg.RecomputeMaxParts)
	if err != nil {
		if len(kept) == 0 && (errors.Is(err, chstore.ErrTooManyParts) || errors.Is(err, context.DeadlineExceeded)) {
			// Nothing of this request is written yet (no earlier run
			// kept versions), so it may still be refused.
			err = fmt.Errorf("%w: %w", errUnreadable, err)
		}
		return res, false, err
	}
	parts = edgeParts(append(parts, c.pendingParts(st, key)...), from, to)
	for _, p := range parts {
		if p.RecordedMs >= from && p.RecordedMs <= to {
			res.Parts++
		}
	}

	derived := derive(key, cfg.cfg, olds, parts, from, to, max(ls.m.Clock(), to))
	byID := map[uint64]chstore.PeriodRow{}
	for _, r := range olds {
		byID[r.ID] = r
	}
	version := top + 2
	var write, replaced []chstore.PeriodRow
	var lost []LostReason
	seen := map[uint64]bool{}
	shifts := map[uint64]string{}
	ids := map[uint64]bool{}
	for _, d := range derived {
		ids[d.ID] = true
	}
	for i, d := range derived {
		if i == 0 && d.Start == from && len(olds) > 0 && olds[0].Start == from && !ids[olds[0].ID] {
			// Cut at the window's start: the period there keeps its id
			// (stored starts are whole seconds, ids hash milliseconds).
			d.ID = olds[0].ID
		}
		old, existed := byID[d.ID]
		if existed && old.Reason != 0 && isDown(old.State) && isDown(string(d.State)) && d.Dispatch == 0 {
			d.Reason = old.Reason
			if old.State == string(period.PlannedDown) {
				d.State = period.PlannedDown
			}
			res.ReasonsKept++
		}
		derived[i] = d
		seen[d.ID] = true
		shifts[d.ID] = d.Shift
		row := chstore.PeriodRow{ID: d.ID, Site: rc.Site, Location: key.ID, LocationKind: key.Kind, ExternalID: rc.ExternalID,
			State: string(d.State), Start: d.Start, End: d.End, Open: d.Open, Reason: d.Reason, FirstOfStop: d.FirstOfStop,
			Dispatch: d.Dispatch, DispatchType: d.DispatchType, RuleVersion: rules, Version: version}
		if cur, ok := current[d.ID]; ok && samePeriod(cur, row) {
			res.Unchanged++
			continue
		}
		write = append(write, row)
		if existed {
			res.Replaced++
			replaced = append(replaced, old)
		} else {
			res.Created++
		}
	}
	for _, old := range olds {
		if old.Reason != 0 && !carried(old, derived) {
			lost = append(lost, LostReason{Period: old.ID, State: old.State, StartMs: old.Start, EndMs: old.End, Reason: old.Reason})
		}
		if seen[old.ID] {
			continue
		}
		res.Deleted++
		replaced = append(replaced, old)
		if _, live := current[old.ID]; live {
			gone := old
			gone.Version, gone.Deleted = version, true
			write = append(write, gone)
		}
	}
	if len(lost) > 0 {
		b, err := json.Marshal(lost)
		if err != nil {
			return res, false, fmt.Errorf("encode lost reasons: %w", err)
		}
		res.ReasonsLost = string(b)
	}
	// Nothing is written unless the group still gives us the partition
	// (the flushes' fence).
	if err := c.fenceRecompute(ctx, st, offset); err != nil {
		return res, false, err
	}
	// Kept versions first: a request cut short after them finds them.
	if err := c.store.InsertPeriodHistory(qctx, rc.ID, now, replaced); err != nil {
		return res, false, err
	}
	// How the window's parts count follows the new periods: first the
	// parts this member holds (written by the flush below).
	unscheduled := unscheduledRanges(derived)
	st.block.Reclassify(key.Kind, key.ID, from, to, unscheduled)
	if len(write) > 0 {
		// The new versions go to the location's outbox and are written
		// by a flush of the partition now: with the location's saved
		// state, so their changes reach the live feed (as recomputed)
		// even when this process dies before it produced them
		// (feed.go's recovery), and behind the flush's fence.
		written := make([]period.Row, len(write))
		for i, r := range write {
			written[i] = period.Row{ID: r.ID, State: period.State(r.State), Start: r.Start, End: r.End, Open: r.Open,
				Shift: shifts[r.ID], Reason: r.Reason, FirstOfStop: r.FirstOfStop, Dispatch: r.Dispatch, DispatchType: r.DispatchType,
				Version: r.Version, Deleted: r.Deleted, Rules: r.RuleVersion}
		}
		st.periods.touchAs(ls, written, offset, now, wire.ChangeRecomputed)
		if !c.flushPartition(st, flushRecompute) {
			return res, false, errReadAgain
		}
	}
	// Then the stored parts and the OEE rollup.
	if err := c.reclassify(ctx, key, from, to, unscheduled); err != nil {
		return res, false, err
	}
	res.DoneAt = now
	if err := c.store.InsertRecompute(qctx, res); err != nil {
		return res, false, err
	}
	return res, false, nil
}

// giveBack drops st's unflushed work the way a flush the fence refused is
// dropped: the machines go back to their saved states and the partition
// is read again from its first unflushed record, or from the request at
// offset (st.rewound).
func (c *consumer) giveBack(st *partState, offset int64) {
	b := c.takeBatch(st, flushRecompute)
	b.dropped, b.resumeAt = true, b.first
	if b.records == 0 {
		b.resumeAt = offset
	}
	done := make(chan struct{})
	close(done)
	c.apply(&flushJob{why: flushRecompute, batches: []*batch{b}, done: done})
	st.rewound = true
}

// fenceRecompute is the flushes' fence (fence, checkPositions) for a
// recompute about to write: the partition's position is committed, which
// the broker accepts only from a member of the current generation, and
// the group's assignment must give this member the partition. offset is
// the request's.
func (c *consumer) fenceRecompute(ctx context.Context, st *partState, offset int64) error {
	first := offset
	switch {
	case st.records > 0:
		first = st.first // everything before it is stored (waitFlushes)
	case st.positioned:
		first = st.next.Offset
	}
	b := &batch{partition: st.partition, first: first, validGen: st.validGen}
	gen, err := c.fence(ctx, []*batch{b}, nil)
	if err == nil {
		err = c.checkPositions(ctx, []*batch{b}, gen)
	}
	if err == nil && b.overtaken {
		err = fmt.Errorf("%w: ClickHouse holds rows of partition %d from offset %d on", errLostMembership, st.partition, first)
	}
	if err != nil {
		return err
	}
	st.validGen = b.validGen
	return nil
}

// reclassify gives the stored parts of key recorded in [from, to) the
// class the new periods give them and moves their quantities between the
// OEE rollup's classes (chstore/reclass.go). Both steps are idempotent: a
// request cut short after them runs them again to the same result.
func (c *consumer) reclassify(ctx context.Context, key period.Key, from, to int64, unscheduled [][2]int64) error {
	mctx, cancel := context.WithTimeout(ctx, reclassTimeout)
	defer cancel()
	if err := c.store.ReclassifyParts(mctx, key.Kind, key.ID, from, to, unscheduled); err != nil {
		return err
	}
	n, err := c.store.ReconcileClassRollup(mctx, key.Kind, key.ID, from, to)
	if err != nil {
		return err
	}
	if n > 0 {
		c.logger.Info("OEE rollup follows the parts' new classes", "location_kind", key.Kind, "location", key.ID,
			"from_ms", from, "to_ms", to, "keys", n)
	}
	return nil
}

// reclassTimeout bounds one attempt at reclassifying a window's parts: the
// server rewrites the data parts of the parts table that hold them.
const reclassTimeout = 2 * time.Minute

// unscheduledRanges returns the spans of the unscheduled periods among
// rows: the parts recorded there count as made outside the shifts.
func unscheduledRanges(rows []period.Row) [][2]int64 {
	var out [][2]int64
	for _, r := range rows {
		if r.State != period.Unscheduled {
			continue
		}
		if n := len(out); n > 0 && out[n-1][1] == r.Start {
			out[n-1][1] = r.End
			continue
		}
		out = append(out, [2]int64{r.Start, r.End})
	}
	return out
}

// waitFlushes waits until no flush in flight holds a batch of st's
// partition, and takes from them what the next flush of the partition
// needs (the watermark they published); the loop takes the rest of their
// results back after the request. It returns errReadAgain when one of
// them was dropped: the partition is read again from before the request.
func (c *consumer) waitFlushes(ctx context.Context, st *partState) error {
	dropped := false
	for _, j := range c.inflight {
		for _, b := range j.batches {
			if b.partition != st.partition {
				continue
			}
			select {
			case <-j.done:
			case <-ctx.Done():
				return ctx.Err()
			}
			if w, ok := j.published[st.partition]; ok {
				st.floor = max(st.floor, w)
			}
			dropped = dropped || b.dropped
		}
	}
	if dropped {
		return errReadAgain
	}
	return nil
}

func isDown(state string) bool {
	return state == string(period.Down) || state == string(period.PlannedDown)
}

// carried reports whether a derived period starting where old started is
// down with old's reason.
func carried(old chstore.PeriodRow, derived []period.Row) bool {
	for _, d := range derived {
		if d.ID == old.ID {
			return d.Reason == old.Reason && isDown(string(d.State))
		}
	}
	return false
}

// samePeriod reports whether stored row a is b as stored: times at the
// table's whole seconds.
func samePeriod(a, b chstore.PeriodRow) bool {
	end := func(r chstore.PeriodRow) int64 {
		if r.Open {
			return -1
		}
		return r.End / 1000
	}
	return a.ID == b.ID && a.State == b.State && a.Start/1000 == b.Start/1000 && end(a) == end(b) &&
		a.Reason == b.Reason && a.FirstOfStop == b.FirstOfStop && a.Dispatch == b.Dispatch &&
		a.DispatchType == b.DispatchType && a.RuleVersion == b.RuleVersion
}

// edgeParts sorts parts by recorded time (dropping repeats: a part both
// stored and in a block) and keeps those in [from, to], the last one
// before from and the first one after to.
func edgeParts(parts []chstore.PeriodPart, from, to int64) []chstore.PeriodPart {
	sort.Slice(parts, func(i, j int) bool {
		if parts[i].RecordedMs != parts[j].RecordedMs {
			return parts[i].RecordedMs < parts[j].RecordedMs
		}
		return parts[i].ID < parts[j].ID
	})
	var out []chstore.PeriodPart
	seen := map[uint64]bool{}
	var before *chstore.PeriodPart
	for i := range parts {
		p := parts[i]
		if seen[p.ID] {
			continue
		}
		seen[p.ID] = true
		switch {
		case p.RecordedMs < from:
			before = &parts[i]
		case p.RecordedMs <= to:
			out = append(out, p)
		default:
			out = append(out, p)
			if before != nil {
				return append([]chstore.PeriodPart{*before}, out...)
			}
			return out
		}
	}
	if before != nil {
		return append([]chstore.PeriodPart{*before}, out...)
	}
	return out
}

// derive returns the periods a fresh machine with cfg makes of parts (in
// recorded order) and of the dispatch down windows of olds, cut to [from,
// to): the machine is told the time up to clock when no part follows the
// window, so a stop running past it shows as down. Rows carry no version.
func derive(key period.Key, cfg period.Config, olds []chstore.PeriodRow, parts []chstore.PeriodPart, from, to, clock int64) []period.Row {
	m := period.New(key, cfg)
	rows := map[uint64]period.Row{}
	take := func(out []period.Row) {
		for _, r := range out {
			if r.Deleted {
				delete(rows, r.ID)
			} else {
				rows[r.ID] = r
			}
		}
	}
	for _, w := range dispatchWindows(olds) {
		out, _ := m.Window(w)
		take(out)
	}
	last := int64(math.MinInt64)
	for _, p := range parts {
		out, _ := m.Part(period.Part{RecordedMs: p.RecordedMs, CycleTime: p.CycleTime, HasCycleTime: p.HasCycleTime,
			IdealCycleTime: p.IdealCycleTime, Quantity: p.Quantity})
		take(out)
		last = max(last, p.RecordedMs)
	}
	if last <= to {
		for i := 0; i < maxRecomputeTicks && m.Clock() < clock; i++ {
			take(m.Tick(clock))
		}
	}
	var out []period.Row
	for _, r := range rows {
		end := r.End
		if r.Open {
			end = math.MaxInt64
		}
		if end <= from || r.Start >= to {
			continue
		}
		if r.Start < from {
			if min(end, to)-from < 1000 {
				// Less than the table's second: the stored period
				// at from holds it already.
				continue
			}
			r.Start, r.ID, r.FirstOfStop = from, period.PeriodID(key, from), 0
		}
		if end > to {
			r.End, r.Open = to, false
		}
		r.Version = 0
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start < out[j].Start })
	return out
}

// dispatchWindows returns the down windows of the dispatches whose periods
// are among rows (a window's extent: its periods' together).
func dispatchWindows(rows []chstore.PeriodRow) []period.Window {
	byDispatch := map[uint64]*period.Window{}
	var order []uint64
	for _, r := range rows {
		if r.Dispatch == 0 || r.Open {
			continue
		}
		w := byDispatch[r.Dispatch]
		if w == nil {
			w = &period.Window{Dispatch: r.Dispatch, Type: r.DispatchType, Start: r.Start, End: r.End}
			byDispatch[r.Dispatch] = w
			order = append(order, r.Dispatch)
		}
		w.Start, w.End = min(w.Start, r.Start), max(w.End, r.End)
	}
	out := make([]period.Window, 0, len(order))
	for _, d := range order {
		out = append(out, *byDispatch[d])
	}
	return out
}

// pendingParts returns the parts of the location this member has consumed
// but ClickHouse may not hold yet: those of the partition's block and of
// its block in a flush in flight (the loop owns both; a flush only reads
// its block).
func (c *consumer) pendingParts(st *partState, key period.Key) []chstore.PeriodPart {
	out := st.block.LocationParts(key.Kind, key.ID, math.MinInt64, math.MaxInt64)
	for _, j := range c.inflight {
		for _, b := range j.batches {
			if b.partition == st.partition {
				out = append(out, b.block.LocationParts(key.Kind, key.ID, math.MinInt64, math.MaxInt64)...)
			}
		}
	}
	return out
}

// pendingPeriodRows returns the period rows of ls that this member has
// not written yet, or is writing: its outbox, and the outboxes of the
// states in a flush in flight.
func (c *consumer) pendingPeriodRows(st *partState, ls *locState) []chstore.PeriodRow {
	out := appendPeriodRows(nil, ls.key, ls.site, ls.extID, ls.outbox)
	for _, j := range c.inflight {
		for _, b := range j.batches {
			if b.partition != st.partition {
				continue
			}
			for _, s := range b.states {
				if s.key == ls.key {
					out = appendPeriodRows(out, s.key, s.site, s.extID, s.outbox)
				}
			}
		}
	}
	return out
}
