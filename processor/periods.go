package processor

// Production periods: the processor runs one period.Machine per location
// (internal/period) and writes what the machines return to the
// productionperiods table.
//
// Ownership follows the partition: parts are keyed by their location's
// external id, so every event of a location is in one partition, and the
// member that owns the partition owns the location's machine. A machine
// lives in its partition's partState and is dropped with it.
//
// Exactly once. A machine's state is saved (period_state: its snapshot
// plus the period rows written with it, the "outbox") in the flush after
// it returned rows, and otherwise lazily: once a location of the partition
// has held unsaved changes for TAKT_PERIOD_SAVE_INTERVAL, all of the
// partition's changed machines are saved together, and all of them when
// the partition is handed over. Each flush writes, in this order: the
// saved states of all its partitions (one INSERT), then their period rows
// and the partitions' checkpoints (period_checkpoints: the offset of the
// oldest change still unsaved), then each partition's parts block; then it
// commits. A new owner loads the saved states of its partitions, writes
// their outboxes again (same id and version: ReplacingMergeTree keeps
// one), reads each partition again from its checkpoint up to where the
// parts end feeding the machines only (replay: no rows, no dead letters,
// no commits; a machine skips records its saved state already covers),
// and goes on from there. So:
//   - a machine that returned no rows since its save has only absorbed
//     parts: feeding them again rebuilds it exactly;
//   - a crash before the states are written replays the batch into the
//     machines as they were before it, which return the same rows;
//   - a crash after the states were written replays parts the machines
//     have already seen, which changes nothing (period.Machine ignores a
//     part inside a run it knows), and the outbox restores any period rows
//     that did not make it;
//   - an older checkpoint (a crash before it was written) only means a
//     longer replay.
//
// Ticks: while a location sends nothing, the wall clock decides when its
// stop shows as down (period.Machine.Tick). A partition is ticked only
// while it is caught up (no lag): the parts still queued in a backlog are
// the ones that say whether the line ran, and a tick during catch-up would
// write down periods that the next part immediately takes back.
//
// Reasons: the record API produces a wire.Assignment to the parts topic
// under the location's key; it arrives here in order with the parts and is
// applied to the location's machine: to the stop of the period, or, when a
// late part has moved or split that period since the API read it, to the
// stops that cover its time now; a period that has left the machine's
// window (a final one) is relabelled.
//
// How each part counts in the figures (period.Class) is decided when its
// row is made and stored with it. A part whose row a crash lost after its
// location's state was saved (the records a new owner skips) gets the
// same class again: it is counted or not by the calendar, and the saved
// state lists the offsets of the batch's parts that were too late.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/period"
	"github.com/takt/takt/internal/wire"
)

// tickEvery is how often caught-up partitions' machines are told the time.
const tickEvery = time.Second

// locState is one location's state machine and what it has not yet
// handed to a flush.
type locState struct {
	key   period.Key
	site  uint64
	extID string
	m     *period.Machine
	// fp is the fingerprint of the configuration the machine runs with.
	fp string
	// version is the version of the newest saved state.
	version uint64
	// savedOffset: the saved state the machine was loaded from covers
	// the partition's records before it (a replay skips those).
	savedOffset int64
	// dirty: changed since its last save; dirtySince is the offset of
	// the first record that changed it (-1: a tick), dirtyAt when.
	dirty      bool
	dirtySince int64
	dirtyAt    time.Time
	outbox     []period.Row
	// outboxMeta is, for each outbox row, what its change event needs.
	outboxMeta []changeMeta
	// late holds the offsets of the records before savedOffset whose
	// parts were too late.
	late map[int64]bool
}

// periodSet holds the machines of one partition.
type periodSet struct {
	locs map[period.Key]*locState
	// dirty lists the locations changed since their last save.
	dirty []*locState
	// withRows counts the dirty locations with period rows to write;
	// due is set when a dirty location has waited the save interval.
	// Either makes a flush of the partition due.
	withRows int
	due      bool
	// checkpoint is the last checkpoint handed to a flush (-1: none).
	checkpoint int64
	// replayUntil: records before this offset are fed to the machines
	// only (they are in ClickHouse already); 0 when not replaying.
	replayUntil int64
	// cfgGen is the location-config generation the machines were last
	// checked against.
	cfgGen uint64
	// late lists, per location, the offsets of the parts of the batch
	// being collected that were too late; a state saved with the batch
	// carries its own.
	late map[period.Key][]int64
	// recomputes are the requests met while replaying, run once the
	// replay ends (runDeferred).
	recomputes []deferredRecompute
}

// deferredRecompute is a recompute request read during a replay, and its
// offset.
type deferredRecompute struct {
	rc     *wire.Recompute
	offset int64
}

// savedState is a location's state as a flush writes it.
type savedState struct {
	key     period.Key
	site    uint64
	extID   string
	snap    period.Snapshot
	outbox  []period.Row
	meta    []changeMeta
	version uint64
	late    []int64
}

// savedSnapshot is what period_state.state holds: the machine's snapshot
// and the offsets of the too-late parts of the batch it was saved with.
// A snapshot written without them reads the same.
type savedSnapshot struct {
	period.Snapshot
	LateOffsets []int64 `json:"late_offsets,omitempty"`
	// Feed is the change feed's bookkeeping (feed.go); nil in a state
	// saved without the feed.
	Feed *savedFeed `json:"feed,omitempty"`
}

// touch records that ls changed, by the record at offset (-1: a tick),
// and returned rows.
func (ps *periodSet) touch(ls *locState, rows []period.Row, offset int64, now time.Time) {
	ps.touchAs(ls, rows, offset, now, "")
}

// touchAs is touch for rows whose change events report change (a
// wire.Change* value; "" derives it from each row).
func (ps *periodSet) touchAs(ls *locState, rows []period.Row, offset int64, now time.Time, change string) {
	if !ls.dirty {
		ls.dirty, ls.dirtySince, ls.dirtyAt = true, offset, now
		ps.dirty = append(ps.dirty, ls)
	}
	if len(rows) > 0 {
		if len(ls.outbox) == 0 {
			ps.withRows++
		}
		rules := ruleVersion(ls.fp)
		for i := range rows {
			rows[i].Rules = rules
		}
		ls.outbox = append(ls.outbox, rows...)
		for range rows {
			ls.outboxMeta = append(ls.outboxMeta, changeMeta{Change: change, AtMs: now.UnixMilli()})
		}
	}
}

// work is how much makes a flush of the partition due.
func (ps *periodSet) work() int {
	if ps.due {
		return ps.withRows + 1
	}
	return ps.withRows
}

// markDue makes every dirty location savable now (shutdown, rebalance).
func (ps *periodSet) markDue() {
	if len(ps.dirty) > 0 {
		ps.due = true
	}
}

// checkDue sets due when a dirty location has waited every.
func (ps *periodSet) checkDue(now time.Time, every time.Duration) {
	for _, ls := range ps.dirty {
		if now.Sub(ls.dirtyAt) >= every {
			ps.due = true
			return
		}
	}
}

// take moves out, for a flush, the states to save: of every dirty
// location with period rows (a row is never written without the state
// that returned it), and of all dirty ones once one of them has waited
// the save interval (due) or when all: saving a partition's machines
// together costs one INSERT per interval, not one per flush. The others
// stay dirty; a machine that only absorbed parts
// without returning rows can be rebuilt by feeding it those parts again.
// checkpoint is the offset from which a new owner must replay: the
// oldest change not saved, or end (the partition's position) when all
// are saved.
//
// Versions of saved states only grow: the wall clock in nanoseconds, or
// one more than the last when the clock is behind it (a previous owner's
// clock ran ahead).
func (ps *periodSet) take(all bool, now time.Time, end int64) (states []savedState, checkpoint int64) {
	checkpoint = end
	ns := uint64(now.UnixNano())
	kept := ps.dirty[:0]
	for _, ls := range ps.dirty {
		if all || ps.due || len(ls.outbox) > 0 {
			ls.version = max(ls.version+1, ns)
			states = append(states, savedState{key: ls.key, site: ls.site, extID: ls.extID, snap: ls.m.Snapshot(),
				outbox: ls.outbox, meta: ls.outboxMeta, version: ls.version, late: ps.late[ls.key]})
			ls.dirty, ls.outbox, ls.outboxMeta = false, nil, nil
			continue
		}
		kept = append(kept, ls)
		if ls.dirtySince >= 0 {
			checkpoint = min(checkpoint, ls.dirtySince)
		}
	}
	clear(ps.dirty[len(kept):])
	ps.dirty = kept
	ps.withRows, ps.due = 0, false
	clear(ps.late) // the batch's rows go with this flush
	return states, checkpoint
}

// loc returns the machine of a location, creating it with its configured
// state machine settings.
func (c *consumer) loc(st *partState, key period.Key, site uint64, extID string) *locState {
	if ls := st.periods.locs[key]; ls != nil {
		return ls
	}
	cfg := c.master.location(key)
	ls := &locState{key: key, site: site, extID: extID, m: period.New(key, cfg.cfg), fp: cfg.fp}
	if st.periods.locs == nil {
		st.periods.locs = map[period.Key]*locState{}
	}
	st.periods.locs[key] = ls
	c.m.machines.Inc()
	return ls
}

// feedPart runs the part of the record at offset through its location's
// machine and returns how the part counts; a machine whose saved state has
// the record skips it (and says how it counted then).
func (c *consumer) feedPart(st *partState, p *wire.Part, ideal float64, offset int64, now time.Time) period.Class {
	if p.LocationID == 0 {
		return period.Counted
	}
	ls := c.loc(st, period.Key{Kind: p.LocationKind, ID: p.LocationID}, p.Site, p.ExternalID)
	if offset < ls.savedOffset {
		if ls.late[offset] {
			return period.TooLateToPlace
		}
		if ls.m.Scheduled(p.RecordedAtMs) {
			return period.Counted
		}
		return period.OutsideShifts
	}
	pp := period.Part{RecordedMs: p.RecordedAtMs, CycleTime: p.CycleTime, HasCycleTime: p.HasCycleTime,
		IdealCycleTime: ideal, Quantity: p.Quantity}
	rows, out := ls.m.Part(pp)
	switch out {
	case period.TooLate:
		c.m.tooLate.Inc()
		if st.periods.late == nil {
			st.periods.late = map[period.Key][]int64{}
		}
		st.periods.late[ls.key] = append(st.periods.late[ls.key], offset)
	case period.WithinRun:
	default:
		st.periods.touch(ls, rows, offset, now)
	}
	return ls.m.Classify(pp, out)
}

// applyAssignment gives a period the reason of an assignment record. A
// refused assignment (the period is not down, or unknown here) is logged
// and counted; the record is consumed either way.
func (c *consumer) applyAssignment(st *partState, a *wire.Assignment, offset int64, now time.Time) {
	ls := c.loc(st, period.Key{Kind: a.LocationKind, ID: a.LocationID}, a.Site, a.ExternalID)
	if offset < ls.savedOffset {
		return
	}
	r := period.Reason{ID: a.Reason, Planned: a.Planned}
	rows, err := ls.m.Assign(a.Period, r)
	if errors.Is(err, period.ErrUnknownPeriod) {
		// Not one of the machine's rows: a late part moved or split the
		// period after the API read it (its stops take the reason), or
		// it is final.
		rows, err = ls.m.AssignSpan(a.StartMs, a.EndMs, r)
	}
	if errors.Is(err, period.ErrUnknownPeriod) {
		var row period.Row
		row, err = ls.m.Relabel(period.Row{ID: a.Period, State: period.State(a.State), Start: a.StartMs,
			End: a.EndMs, Open: a.EndMs == 0, FirstOfStop: a.FirstOfStop, Version: a.Version}, r)
		rows = []period.Row{row}
	}
	if err != nil {
		c.m.assignments.WithLabelValues("refused").Inc()
		c.logger.Warn("reason assignment not applied", "period", a.Period, "location_kind", a.LocationKind,
			"location", a.LocationID, "reason", a.Reason, "assignment", a.ID, "err", err)
		return
	}
	c.m.assignments.WithLabelValues("applied").Inc()
	st.periods.touchAs(ls, rows, offset, now, wire.ChangeRelabelled)
}

// applyDispatch applies the down window of a dispatch record to its
// location's machine (or takes it away). A window too late to place is
// counted and logged; the record is consumed either way.
func (c *consumer) applyDispatch(st *partState, d *wire.Dispatch, offset int64, now time.Time) {
	ls := c.loc(st, period.Key{Kind: d.LocationKind, ID: d.LocationID}, d.Site, d.ExternalID)
	if offset < ls.savedOffset {
		return
	}
	var rows []period.Row
	outcome := period.InOrder
	if d.Removed {
		rows = ls.m.RemoveWindow(d.Dispatch)
	} else {
		rows, outcome = ls.m.Window(period.Window{Dispatch: d.Dispatch, Type: d.DispatchType, Start: d.StartMs, End: d.EndMs})
	}
	switch outcome {
	case period.TooLate:
		c.m.dispatches.WithLabelValues("too_late").Inc()
		c.logger.Info("dispatch down window before the lateness window: the final periods stay", "dispatch", d.Dispatch,
			"location_kind", d.LocationKind, "location", d.LocationID, "start_ms", d.StartMs, "end_ms", d.EndMs)
	case period.WithinRun:
		c.m.dispatches.WithLabelValues("unchanged").Inc()
	default:
		c.m.dispatches.WithLabelValues("applied").Inc()
		st.periods.touch(ls, rows, offset, now)
	}
}

// tickPeriods tells the machines of every caught-up partition the time
// and applies configuration changes (a shift or threshold edited).
func (c *consumer) tickPeriods(now time.Time) {
	gen := c.master.locationGen()
	nowMs := now.UnixMilli()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.parts {
		if st.periods.cfgGen != gen {
			st.periods.cfgGen = gen
			for _, ls := range st.periods.locs {
				if cfg := c.master.location(ls.key); cfg.fp != ls.fp {
					ls.m.SetConfig(cfg.cfg)
					ls.fp = cfg.fp
				}
			}
		}
		st.periods.checkDue(now, c.cfg.PeriodSaveInterval)
		if st.lag != 0 || !st.positioned || st.periods.replayUntil > 0 {
			continue
		}
		for _, ls := range st.periods.locs {
			if rows := ls.m.Tick(nowMs); len(rows) > 0 {
				if st.records == 0 && st.periods.work() == 0 {
					st.since = now
				}
				st.periods.touch(ls, rows, -1, now)
			}
		}
	}
}

// encodeStates turns a batch's saved states into the rows of period_state
// and productionperiods. feedOffset is the flush's feed offset (feed.go);
// -1 without the change feed.
func encodeStates(topic string, partition int32, offset int64, states []savedState, feedOffset int64) ([]chstore.PeriodState, []chstore.PeriodRow, error) {
	out := make([]chstore.PeriodState, len(states))
	var rows []chstore.PeriodRow
	for i, s := range states {
		saved := savedSnapshot{Snapshot: s.snap, LateOffsets: s.late}
		if feedOffset >= 0 {
			saved.Feed = &savedFeed{Offset: feedOffset, Changes: s.meta}
		}
		snap, err := json.Marshal(saved)
		if err != nil {
			return nil, nil, fmt.Errorf("encode period state: %w", err)
		}
		outbox, err := json.Marshal(s.outbox)
		if err != nil {
			return nil, nil, fmt.Errorf("encode period outbox: %w", err)
		}
		out[i] = chstore.PeriodState{Topic: topic, LocationKind: s.key.Kind, Location: s.key.ID, Partition: partition,
			Offset: offset, Site: s.site, ExternalID: s.extID, State: snap, Outbox: outbox, Version: s.version}
		rows = appendPeriodRows(rows, s.key, s.site, s.extID, s.outbox)
	}
	return out, rows, nil
}

func appendPeriodRows(dst []chstore.PeriodRow, key period.Key, site uint64, extID string, rows []period.Row) []chstore.PeriodRow {
	for _, r := range rows {
		dst = append(dst, chstore.PeriodRow{ID: r.ID, Site: site, Location: key.ID, LocationKind: key.Kind,
			ExternalID: extID, State: string(r.State), Start: r.Start, End: r.End, Open: r.Open,
			Reason: r.Reason, FirstOfStop: r.FirstOfStop, Dispatch: r.Dispatch, DispatchType: r.DispatchType,
			RuleVersion: r.Rules, Version: r.Version, Deleted: r.Deleted})
	}
	return dst
}

// periodStore is what the machines need from ClickHouse (a *chstore.Store).
type periodStore interface {
	InsertPeriodStates(ctx context.Context, states []chstore.PeriodState) error
	InsertPeriods(ctx context.Context, rows []chstore.PeriodRow) error
	PeriodStates(ctx context.Context, topic string, partitions []int32) ([]chstore.PeriodState, error)
	InsertPeriodCheckpoints(ctx context.Context, cps []chstore.PeriodCheckpoint) error
	PeriodCheckpoints(ctx context.Context, topic string, partitions []int32) (map[int32]int64, error)
}

// loaded is what loadPeriods found for one partition.
type loaded struct {
	locs map[period.Key]*locState
	// checkpoint is where a replay must start (-1: none saved).
	checkpoint int64
}

// loadPeriods reads the saved states of partitions, builds their machines
// and writes the saved outboxes again. It retries until it succeeds or
// ctx ends.
func (c *consumer) loadPeriods(ctx context.Context, partitions []int32) (map[int32]loaded, error) {
	for attempt := 1; ; attempt++ {
		sets, err := c.loadPeriodsOnce(ctx, partitions)
		if err == nil {
			return sets, nil
		}
		c.logger.Warn("loading the period state machines failed; retrying", "partitions", partitions,
			"attempt", attempt, "err", err)
		if !sleep(ctx, backoff(attempt, retryMin, retryMax)) {
			return nil, fmt.Errorf("load period states: %w", err)
		}
	}
}

func (c *consumer) loadPeriodsOnce(ctx context.Context, partitions []int32) (map[int32]loaded, error) {
	lctx, cancel := context.WithTimeout(ctx, insertTimeout)
	defer cancel()
	saved, err := c.store.PeriodStates(lctx, c.cfg.Topic, partitions)
	if err != nil {
		return nil, err
	}
	cps, err := c.store.PeriodCheckpoints(lctx, c.cfg.Topic, partitions)
	if err != nil {
		return nil, err
	}
	sets := map[int32]loaded{}
	for _, p := range partitions {
		cp, ok := cps[p]
		if !ok {
			cp = -1
		}
		sets[p] = loaded{locs: map[period.Key]*locState{}, checkpoint: cp}
	}
	var outbox []chstore.PeriodRow
	feeds := map[int32][]feedState{}
	for _, s := range saved {
		var snap savedSnapshot
		if err := json.Unmarshal(s.State, &snap); err != nil {
			return nil, fmt.Errorf("period state of %s %d: %w", s.LocationKind, s.Location, err)
		}
		var rows []period.Row
		if len(s.Outbox) > 0 {
			if err := json.Unmarshal(s.Outbox, &rows); err != nil {
				return nil, fmt.Errorf("period outbox of %s %d: %w", s.LocationKind, s.Location, err)
			}
		}
		key := period.Key{Kind: s.LocationKind, ID: s.Location}
		cfg := c.master.location(key)
		ls := &locState{key: key, site: s.Site, extID: s.ExternalID, m: period.Restore(snap.Snapshot, cfg.cfg),
			fp: cfg.fp, version: s.Version, savedOffset: s.Offset}
		for _, o := range snap.LateOffsets {
			if ls.late == nil {
				ls.late = map[int64]bool{}
			}
			ls.late[o] = true
		}
		if l, ok := sets[s.Partition]; ok {
			l.locs[key] = ls
		}
		outbox = appendPeriodRows(outbox, key, s.Site, s.ExternalID, rows)
		fs := feedState{offset: -1, group: feedGroup{key: key, site: s.Site, extID: s.ExternalID, rows: rows}}
		if snap.Feed != nil {
			fs.offset, fs.group.meta = snap.Feed.Offset, snap.Feed.Changes
		}
		feeds[s.Partition] = append(feeds[s.Partition], fs)
	}
	if err := c.store.InsertPeriods(lctx, outbox); err != nil {
		return nil, err
	}
	if c.feed != nil {
		for _, p := range partitions {
			// Not fatal here: the partition's next flush with period
			// work recovers first.
			if err := c.feed.recover(ctx, p, feeds[p]); err != nil {
				c.logger.Warn("period changes: recovery failed; the next flush retries it", "partition", p, "err", err)
				c.feed.forget([]int32{p})
			}
		}
	}
	if len(saved) > 0 {
		c.logger.Info("period state machines loaded", "partitions", partitions, "locations", len(saved),
			"outbox_rows", len(outbox))
	}
	return sets, nil
}

// locationConfig is the state-machine configuration of one location.
type locationConfig struct {
	cfg period.Config
	fp  string
	// line is the location's line (a line's own id).
	line uint64
}

// locationConfigs is an immutable set of location configurations.
type locationConfigs struct {
	gen   uint64
	byKey map[period.Key]locationConfig
}

// buildLocationConfigs turns master data into machine configurations. A
// site whose time zone does not load is scheduled in UTC (logged).
func buildLocationConfigs(pm chstore.PeriodMaster, gen uint64, warn func(msg string, args ...any)) *locationConfigs {
	type siteCals struct {
		site  *period.Calendar
		lines map[uint64]*period.Calendar
		fp    map[*period.Calendar]string
	}
	shifts := map[uint64][]period.LineShift{}
	for _, s := range pm.Shifts {
		shifts[s.Site] = append(shifts[s.Site], period.LineShift{Line: s.Line, Code: s.Code, Start: s.Start, End: s.End, Days: s.Day})
	}
	sites := map[uint64]*siteCals{}
	calsOf := func(site uint64) *siteCals {
		if sc := sites[site]; sc != nil {
			return sc
		}
		tz := pm.Zones[site]
		loc, err := time.LoadLocation(tz)
		if err != nil {
			warn("site time zone does not load; its shifts are taken as UTC", "site", site, "timezone", tz, "err", err)
			loc = time.UTC
		}
		sc := &siteCals{fp: map[*period.Calendar]string{}}
		sc.site, sc.lines, err = period.Calendars(loc, shifts[site])
		if err != nil {
			warn("site shifts do not parse; the site is taken as always scheduled", "site", site, "err", err)
			sc.site, sc.lines = nil, nil
		}
		fpOf := func(line uint64) string {
			var b strings.Builder
			fmt.Fprintf(&b, "%s", loc)
			for _, s := range shifts[site] {
				if s.Line == line {
					fmt.Fprintf(&b, "|%s %s %s %s", s.Code, s.Start, s.End, s.Days)
				}
			}
			return b.String()
		}
		sc.fp[sc.site] = fpOf(0)
		for line, cal := range sc.lines {
			sc.fp[cal] = fpOf(line)
		}
		sites[site] = sc
		return sc
	}
	out := &locationConfigs{gen: gen, byKey: make(map[period.Key]locationConfig, len(pm.Locations))}
	for _, l := range pm.Locations {
		sc := calsOf(l.Site)
		cal := sc.site
		if lc := sc.lines[l.Line]; lc != nil {
			cal = lc
		}
		thr := period.Seconds(l.StopThreshold)
		out.byKey[period.Key{Kind: l.Kind, ID: l.ID}] = locationConfig{
			cfg:  period.Config{Threshold: thr, Calendar: cal},
			fp:   fmt.Sprintf("%d|%s", thr, sc.fp[cal]),
			line: l.Line,
		}
	}
	return out
}
