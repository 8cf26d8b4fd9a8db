package chstore

// What a recompute of production periods reads and writes
// (0046_period_recompute.sql): the stored parts of one location, its
// stored periods of a window, the versions it replaces, and its result.

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// PeriodPart is what the period state machine needs of a stored part.
// IdealCycleTime is the one the part was processed with (0: none, or
// unknown for a row stored before it was kept).
type PeriodPart struct {
	ID             uint64
	RecordedMs     int64
	CycleTime      float64
	HasCycleTime   bool
	IdealCycleTime float64
	Quantity       uint32
}

// LocationParts returns, for each of b's rows of the location, what the
// period state machine needs of it, when its recorded time lies in [from,
// to] (Unix ms) and it was not too late to place; the processor adds the
// parts of its blocks not yet in ClickHouse to those it read
// (PeriodParts).
func (b *PartsBlock) LocationParts(kind string, id uint64, from, to int64) []PeriodPart {
	var out []PeriodPart
	k := partLocationKinds[kind]
	late := partOEEClasses["late"]
	for i := range b.ids {
		if b.kinds[i] != k || b.locIDs[i] != id || b.recordedMs[i] < from || b.recordedMs[i] > to || b.classes[i] == late {
			continue
		}
		out = append(out, PeriodPart{ID: b.ids[i], RecordedMs: b.recordedMs[i], CycleTime: b.cycleTimes[i],
			HasCycleTime: b.hasCycle[i], IdealCycleTime: max(b.ideals[i], 0), Quantity: b.quantities[i]})
	}
	return out
}

// Reclassify gives b's rows of the location recorded in [from, to) (Unix
// ms) that were placed (not 'late') the class ReclassifyParts gives the
// stored ones: unscheduled when recorded in one of the unscheduled ranges,
// counted otherwise. It returns how many rows changed class.
func (b *PartsBlock) Reclassify(kind string, id uint64, from, to int64, unscheduled [][2]int64) int {
	k := partLocationKinds[kind]
	late, counted, outside := partOEEClasses["late"], partOEEClasses["counted"], partOEEClasses["unscheduled"]
	n := 0
	for i := range b.ids {
		t := b.recordedMs[i]
		if b.kinds[i] != k || b.locIDs[i] != id || t < from || t >= to || b.classes[i] == late {
			continue
		}
		c := counted
		for _, r := range unscheduled {
			if t >= r[0] && t < r[1] {
				c = outside
				break
			}
		}
		if b.classes[i] != c {
			b.classes[i] = c
			n++
		}
	}
	return n
}

// PeriodParts returns the stored parts of a location recorded in [from,
// to] (Unix ms), and besides them the last one recorded before from and
// the first one after to (what says whether a stop or a run crosses the
// window's edges), ordered by recorded time. Parts stored as too late to
// place ('late') changed no period and are left out. The parts table is
// ordered by id, so this reads the location's column ranges whole: the
// call is for rare, bounded recomputes. At most max parts of the window
// are read (max < 1: no bound); a window that holds more gives
// ErrTooManyParts, having read max+1 of them.
func (s *Store) PeriodParts(ctx context.Context, kind string, id uint64, from, to int64, max int) ([]PeriodPart, error) {
	const cols = `SELECT id, recorded_ms, ifNull(cycle_time, 0), isNotNull(cycle_time), greatest(ideal_cycle_time, 0), quantity FROM parts
		WHERE location_kind = ? AND location_id = ? AND oee_class != 'late'`
	limit := ""
	if max > 0 {
		limit = fmt.Sprintf(" LIMIT %d", max+1)
	}
	q := `SELECT * FROM (` + cols + ` AND recorded_ms < ? ORDER BY recorded_ms DESC, id DESC LIMIT 1)
		UNION ALL SELECT * FROM (` + cols + ` AND recorded_ms >= ? AND recorded_ms <= ?` + limit + `)
		UNION ALL SELECT * FROM (` + cols + ` AND recorded_ms > ? ORDER BY recorded_ms, id LIMIT 1)`
	rows, err := s.conn.Query(ctx, q, kind, id, from, kind, id, from, to, kind, id, to)
	if err != nil {
		return nil, fmt.Errorf("parts of %s %d: %w", kind, id, err)
	}
	defer rows.Close()
	var out []PeriodPart
	inside := 0
	for rows.Next() {
		var p PeriodPart
		var has uint8
		if err := rows.Scan(&p.ID, &p.RecordedMs, &p.CycleTime, &has, &p.IdealCycleTime, &p.Quantity); err != nil {
			return nil, fmt.Errorf("parts of %s %d: %w", kind, id, err)
		}
		p.HasCycleTime = has == 1
		out = append(out, p)
		if p.RecordedMs >= from && p.RecordedMs <= to {
			inside++
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("parts of %s %d: %w", kind, id, err)
	}
	if max > 0 && inside > max {
		return nil, fmt.Errorf("parts of %s %d: more than %d in the window: %w", kind, id, max, ErrTooManyParts)
	}
	return out, nil
}

// ErrTooManyParts: a window holds more parts than a call may read.
var ErrTooManyParts = errors.New("too many parts")

const periodCols = `id, site, location, toString(location_kind), externalid, toString(state),
	toInt64(toUInt32(start)) * 1000, toInt64(toUInt32(ifNull(end, toDateTime(0)))) * 1000, isNull(end), reason,
	first_of_stop, dispatch, dispatchtype, rule_version, version`

func scanPeriods(rows interface {
	Next() bool
	Scan(...any) error
	Err() error
}, what string) ([]PeriodRow, error) {
	var out []PeriodRow
	for rows.Next() {
		var p PeriodRow
		var open uint8
		if err := rows.Scan(&p.ID, &p.Site, &p.Location, &p.LocationKind, &p.ExternalID, &p.State,
			&p.Start, &p.End, &open, &p.Reason, &p.FirstOfStop, &p.Dispatch, &p.DispatchType, &p.RuleVersion, &p.Version); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		p.Open = open == 1
		if p.Open {
			p.End = 0
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// LocationPeriods returns the live periods of a location that overlap
// [from, to) (Unix ms), by start.
func (s *Store) LocationPeriods(ctx context.Context, kind string, id uint64, from, to int64) ([]PeriodRow, error) {
	rows, err := s.conn.Query(ctx, `SELECT `+periodCols+` FROM (SELECT * FROM productionperiods FINAL
		WHERE location_kind = ? AND location = ? AND start < toDateTime(?))
		WHERE deleted = 0 AND (isNull(end) OR end > toDateTime(?)) ORDER BY start`, kind, id, ceilDiv(to, 1000), from/1000)
	if err != nil {
		return nil, fmt.Errorf("periods of %s %d: %w", kind, id, err)
	}
	defer rows.Close()
	return scanPeriods(rows, fmt.Sprintf("periods of %s %d", kind, id))
}

// InsertPeriodHistory keeps the period versions a recompute replaced
// (productionperiods_history), in one block.
func (s *Store) InsertPeriodHistory(ctx context.Context, recompute string, at time.Time, rows []PeriodRow) error {
	if len(rows) == 0 {
		return nil
	}
	b, err := s.conn.PrepareBatch(ctx, "INSERT INTO productionperiods_history (recompute, id, site, location, location_kind, externalid,"+
		" state, start, end, duration, reason, first_of_stop, dispatch, dispatchtype, rule_version, version, replaced_at)")
	if err != nil {
		return fmt.Errorf("prepare insert into productionperiods_history: %w", err)
	}
	for _, r := range rows {
		var end *time.Time
		dur := 0.0
		if !r.Open {
			e := time.UnixMilli(r.End).UTC()
			end = &e
			dur = float64(r.End-r.Start) / 1000
		}
		if err := b.Append(recompute, r.ID, r.Site, r.Location, r.LocationKind, r.ExternalID, r.State,
			time.UnixMilli(r.Start).UTC(), end, dur, r.Reason, r.FirstOfStop, r.Dispatch, r.DispatchType, r.RuleVersion,
			r.Version, at.UTC()); err != nil {
			b.Abort()
			return fmt.Errorf("insert into productionperiods_history: %w", err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("insert into productionperiods_history: %w", err)
	}
	return nil
}

// PeriodHistory returns the period versions recompute replaced, by start.
func (s *Store) PeriodHistory(ctx context.Context, kind string, id uint64, recompute string) ([]PeriodRow, error) {
	rows, err := s.conn.Query(ctx, `SELECT `+periodCols+` FROM productionperiods_history FINAL
		WHERE location_kind = ? AND location = ? AND recompute = ? ORDER BY start, id`, kind, id, recompute)
	if err != nil {
		return nil, fmt.Errorf("period history of %s: %w", recompute, err)
	}
	defer rows.Close()
	return scanPeriods(rows, "period history of "+recompute)
}

// Recompute is the result of one recompute request (period_recomputes).
type Recompute struct {
	ID           string
	Site         uint64
	LocationKind string
	Location     uint64
	ExternalID   string
	// StartMs, EndMs: the window asked for; FromMs, ToMs: the window
	// derived again (FromMs == ToMs: nothing could be).
	StartMs, EndMs int64
	FromMs, ToMs   int64
	RuleVersion    uint64
	// Parts counts the parts the periods were derived from.
	Parts uint64
	// Replaced, Created, Deleted, Unchanged count periods: stored ones
	// given a new version, new ones, stored ones that no longer exist,
	// and stored ones the rules derive as they were.
	Replaced, Created, Deleted, Unchanged uint32
	ReasonsKept                           uint32
	// ReasonsLost is the JSON list of the reasons that no period carries
	// any more.
	ReasonsLost string
	By          string
	DoneAt      time.Time
	// Error says why the request derived nothing (empty: it ran): its
	// window held more parts than one recompute may read, or reading them
	// kept running out of time.
	Error string
}

// InsertRecompute records the result of a recompute request.
func (s *Store) InsertRecompute(ctx context.Context, r Recompute) error {
	b, err := s.conn.PrepareBatch(ctx, "INSERT INTO period_recomputes (id, site, location_kind, location, externalid, start_ms, end_ms,"+
		" from_ms, to_ms, rule_version, parts, replaced, created, deleted, unchanged, reasons_kept, reasons_lost, requested_by, done_at, error)")
	if err != nil {
		return fmt.Errorf("prepare insert into period_recomputes: %w", err)
	}
	if err := b.Append(r.ID, r.Site, r.LocationKind, r.Location, r.ExternalID, r.StartMs, r.EndMs, r.FromMs, r.ToMs,
		r.RuleVersion, r.Parts, r.Replaced, r.Created, r.Deleted, r.Unchanged, r.ReasonsKept, r.ReasonsLost, r.By,
		r.DoneAt.UTC(), r.Error); err != nil {
		b.Abort()
		return fmt.Errorf("insert into period_recomputes: %w", err)
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("insert into period_recomputes: %w", err)
	}
	return nil
}

// RecomputeByID returns the result of recompute request id, or
// ErrNotFound while it has not run.
func (s *Store) RecomputeByID(ctx context.Context, id string) (Recompute, error) {
	rows, err := s.conn.Query(ctx, `SELECT id, site, toString(location_kind), location, externalid, start_ms, end_ms, from_ms, to_ms,
		rule_version, parts, replaced, created, deleted, unchanged, reasons_kept, reasons_lost, requested_by, done_at, error
		FROM period_recomputes FINAL WHERE id = ?`, id)
	if err != nil {
		return Recompute{}, fmt.Errorf("read recompute %s: %w", id, err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return Recompute{}, fmt.Errorf("read recompute %s: %w", id, err)
		}
		return Recompute{}, fmt.Errorf("recompute %s: %w", id, ErrNotFound)
	}
	var r Recompute
	if err := rows.Scan(&r.ID, &r.Site, &r.LocationKind, &r.Location, &r.ExternalID, &r.StartMs, &r.EndMs, &r.FromMs, &r.ToMs,
		&r.RuleVersion, &r.Parts, &r.Replaced, &r.Created, &r.Deleted, &r.Unchanged, &r.ReasonsKept, &r.ReasonsLost,
		&r.By, &r.DoneAt, &r.Error); err != nil {
		return Recompute{}, fmt.Errorf("scan recompute %s: %w", id, err)
	}
	return r, nil
}
