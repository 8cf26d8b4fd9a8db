// Package period is the production-period state machine of one location: a
// pure, clock-free function from part events, ticks (wall-clock time),
// reason assignments and the location's shift calendar to period rows. It
// does no I/O; the processor feeds it and writes the rows it returns.
//
// # Model
//
// A location's parts form runs: maximal sequences of parts (ordered by
// recorded_at, event time) in which each gap to the next part is at most the
// stop threshold. A run starts at the production start of its first part:
// its recorded_at minus its reported cycle time, or, without one, minus the
// product's ideal cycle time × its quantity (a part is not made in no time);
// never before the previous run's last part nor before Final. It ends at its
// last part's recorded_at. Between two runs the location was down (a stop).
// The newest run is running and open until a tick finds the threshold passed
// on the wall clock; from then on a down period from its last part is open,
// and the next part closes it ("a part ends downtime").
//
// That base timeline is then cut at every shift boundary of the calendar;
// stretches outside every shift become unscheduled.
//
// # Stops and their reasons
//
// A reason is given to a stop, not to one row: Assign takes any down piece
// of a stop and remembers the reason with the stop's extent as it is known
// ([start, end), or [start, now) while it is open; it grows with the stop).
// Every down piece of every stop that overlaps that extent carries the
// reason: the pieces a shift boundary or an unscheduled night cuts it into,
// what is left when a late part moves its start or end, both stops a late
// part splits it into.
// A planned reason makes the pieces planned_down. A stop that a late part
// bridges entirely is gone, and its reason with it.
//
// The first scheduled piece of each stop is marked (Row.FirstOfStop): a stop
// is one down event however many pieces it has.
//
// # Threshold
//
// The stop threshold is per location (Config.Threshold). When it is zero the
// gap after a part is judged with DefaultThreshold of that part's product:
// max(5 × ideal cycle time, 60 s), or 300 s when the product has no ideal
// cycle time. The gap is measured from recorded_at to recorded_at; gaps up
// to the threshold are run time, and their loss shows in performance.
//
// # Late parts, finality and versions
//
// A part older than the newest one is placed in order when it is within
// Config.Lateness (default one hour) of the newest recorded_at; older parts
// are reported as TooLate and change no period (the parts table still has
// them). A late part inside a down period splits it.
//
// Rows that no accepted part can change any more are final and leave the
// machine's memory: those ending before the lateness horizon (the newest
// part minus the lateness), and, while a location is idle, those ending more
// than Finality (a day) behind the wall clock. Final is where the rows the
// machine holds begin; a part recorded before it is TooLate. So an idle line
// keeps a day of rows however long it is idle, and one Tick cuts at most
// maxTickBoundaries shift boundaries (a clock that jumps ahead catches up
// over several ticks).
//
// Every call recomputes the timeline from Final on and compares it with the
// rows it returned before: a changed row comes back with a higher Version
// under the same ID, a row that no longer exists comes back with Deleted
// set. IDs are a hash of the location and the period's start, so a period
// keeps its ID while it is closed, shortened or relabelled. Versions come
// from one counter per location, in steps of two, so a new row version is
// always above every earlier one and a ReplacingMergeTree(version) read with
// FINAL sees exactly one version of each period; a reason given to a final
// period (Relabel) takes the version it was read at plus one, so it never
// wins over a version the machine wrote after that read.
//
// Feeding a part that the machine has already seen changes nothing, which
// is what makes a replayed batch harmless.
//
// # State
//
// Snapshot is the whole memory of a Machine, plain data with JSON tags: the
// runs and rows from Final on, the reasons of the stops there, the version
// counter. Restore(Snapshot) gives a Machine that behaves exactly like the
// one that produced it, so the processor persists the Snapshot with the rows
// and a new owner of the location resumes with the same open period.
package period

import (
	"encoding/binary"
	"errors"
	"hash/fnv"
	"math"
	"sort"
	"time"
)

// State of a production period. The values are the Enum8 names of the
// productionperiods table.
type State string

// The period states.
const (
	Running     State = "running"
	Down        State = "down"
	PlannedDown State = "planned_down"
	Unscheduled State = "unscheduled"
)

// Defaults.
const (
	// DefaultLateness is how far behind the newest part a late part may
	// be and still be placed in order.
	DefaultLateness = time.Hour
	// Finality is how far behind the wall clock the rows of an idle
	// location become final (at least the lateness). A device whose
	// clock runs more than this behind loses its parts as too late while
	// the line shows down.
	Finality = 24 * time.Hour
	// MinThreshold is the floor of the derived stop threshold.
	MinThreshold = 60 * time.Second
	// UnknownThreshold is the derived threshold for a product without an
	// ideal cycle time.
	UnknownThreshold = 300 * time.Second
	// ThresholdCycles is how many ideal cycle times make a stop.
	ThresholdCycles = 5
)

// maxTickBoundaries bounds the shift boundaries one Tick cuts, and with it
// the rows it returns.
const maxTickBoundaries = 64

// Seconds converts seconds to a Duration rounded to the millisecond, the
// machine's resolution (64.1 s is 64.100 s, not 64.099 s).
func Seconds(s float64) time.Duration {
	if math.IsNaN(s) || math.IsInf(s, 0) {
		return 0
	}
	return time.Duration(math.Round(s*1000)) * time.Millisecond
}

// DefaultThreshold is the stop threshold derived from a product's ideal
// cycle time in seconds: max(5 × ideal, 60 s), or 300 s when ideal ≤ 0.
func DefaultThreshold(idealCycleTime float64) time.Duration {
	if idealCycleTime <= 0 || math.IsNaN(idealCycleTime) || math.IsInf(idealCycleTime, 0) {
		return UnknownThreshold
	}
	return max(Seconds(idealCycleTime*ThresholdCycles), MinThreshold)
}

// Key names a location.
type Key struct {
	Kind string `json:"kind"` // "line" or "machine"
	ID   uint64 `json:"id"`
}

// Config is the per-location configuration of a Machine. It is not part of
// the Snapshot: the processor rebuilds it from master data.
type Config struct {
	// Threshold is the location's stop threshold; 0 derives it from the
	// product of each part (DefaultThreshold).
	Threshold time.Duration
	// Lateness is the allowed lateness of parts; 0 means DefaultLateness.
	Lateness time.Duration
	// Calendar holds the location's shifts; nil means always scheduled.
	Calendar *Calendar
}

// Part is what the machine needs of a part event.
type Part struct {
	// RecordedMs is recorded_at in Unix milliseconds.
	RecordedMs int64
	// CycleTime is the reported cycle time in seconds, used when
	// HasCycleTime and positive.
	CycleTime    float64
	HasCycleTime bool
	// IdealCycleTime is the resolved product's ideal cycle time in
	// seconds (0: none); it sets the threshold when Config.Threshold is 0
	// and, without a reported cycle time, how long before recorded_at the
	// part's production started.
	IdealCycleTime float64
	// Quantity is how many parts the event reports (0 counts as 1).
	Quantity uint32
}

// productionStart is when p's production started: recorded_at minus the
// reported cycle time, else minus ideal cycle time × quantity, else
// recorded_at.
func (p Part) productionStart() int64 {
	if p.HasCycleTime && p.CycleTime > 0 && !math.IsInf(p.CycleTime, 0) {
		return p.RecordedMs - Seconds(p.CycleTime).Milliseconds()
	}
	if p.IdealCycleTime > 0 && !math.IsInf(p.IdealCycleTime, 0) {
		return p.RecordedMs - Seconds(p.IdealCycleTime*float64(max(p.Quantity, 1))).Milliseconds()
	}
	return p.RecordedMs
}

// Reason is a downtime reason assigned to a period.
type Reason struct {
	ID      uint64 `json:"id"`
	Planned bool   `json:"planned,omitempty"`
}

// FirstOfStop values of a Row.
const (
	// FirstUnknown marks a row written before the mark existed.
	FirstUnknown int8 = -1
	// FirstPiece marks the first scheduled piece of a stop.
	FirstPiece int8 = 1
)

// Row is one version of one production period.
type Row struct {
	ID    uint64 `json:"id"`
	State State  `json:"state"`
	// Start and End are Unix milliseconds; End is meaningless while Open.
	Start int64 `json:"start"`
	End   int64 `json:"end,omitempty"`
	Open  bool  `json:"open,omitempty"`
	// Shift is the shift occurrence the period lies in ("" outside
	// shifts or without a calendar).
	Shift  string `json:"shift,omitempty"`
	Reason uint64 `json:"reason,omitempty"`
	// FirstOfStop is FirstPiece on the first scheduled piece of a stop
	// (down or planned_down), 0 on every other row.
	FirstOfStop int8 `json:"first_of_stop,omitempty"`
	// Dispatch and DispatchType name the dispatch whose down window the
	// period is (see Window); 0 for the runs' periods.
	Dispatch     uint64 `json:"dispatch,omitempty"`
	DispatchType uint64 `json:"dispatch_type,omitempty"`
	Version      uint64 `json:"version"`
	Deleted      bool   `json:"deleted,omitempty"`
	// Rules names the rules (threshold, shifts) the row was derived
	// under; the processor sets it (0: not recorded). It is not part of
	// what makes a row changed.
	Rules uint64 `json:"rules,omitempty"`
}

// Duration is the length of a closed period (0 while open).
func (r Row) Duration() time.Duration {
	if r.Open {
		return 0
	}
	return time.Duration(r.End-r.Start) * time.Millisecond
}

func (r Row) same(o Row) bool {
	return r.ID == o.ID && r.State == o.State && r.Start == o.Start && r.End == o.End &&
		r.Open == o.Open && r.Shift == o.Shift && r.Reason == o.Reason && r.FirstOfStop == o.FirstOfStop &&
		r.Dispatch == o.Dispatch && r.DispatchType == o.DispatchType
}

// Run is a maximal sequence of parts whose gaps are all within the
// threshold.
type Run struct {
	// Start is the production start of the first part, before clamping
	// to the previous run.
	Start int64 `json:"start"`
	First int64 `json:"first"` // recorded_at of the first part
	Last  int64 `json:"last"`  // recorded_at of the last part
	// Threshold (ms) judges the gap after Last.
	Threshold int64 `json:"threshold"`
}

// StopReason is a reason given to a stop: it applies to every stop that
// overlaps [From, To) (Unix ms), the stop's extent when it was given.
type StopReason struct {
	From   int64  `json:"from"`
	To     int64  `json:"to"`
	Reason Reason `json:"reason"`
}

// Assignment is a reason given to the period starting at Start: the form
// in which snapshots written before StopReason kept reasons. Restore turns
// them into StopReasons.
type Assignment struct {
	Start  int64  `json:"start"`
	Reason Reason `json:"reason"`
}

// Snapshot is the serialisable memory of a Machine.
type Snapshot struct {
	Key Key `json:"key"`
	// Seq is the last version handed out.
	Seq uint64 `json:"seq"`
	// Now is the newest wall-clock time seen by Tick (ms).
	Now int64 `json:"now"`
	// Newest is the newest recorded_at seen (ms).
	Newest int64 `json:"newest"`
	// Frozen is set once runs were dropped from the window; FrozenLast is
	// the last part of the newest dropped run.
	Frozen     bool  `json:"frozen,omitempty"`
	FrozenLast int64 `json:"frozen_last,omitempty"`
	// Final is where the rows the machine holds begin: rows before it
	// are final (0: none is).
	Final int64 `json:"final,omitempty"`
	// FinalGap is the start of the stop that Final cuts (0: none), and
	// FinalGapScheduled says whether a scheduled piece of it lies before
	// Final (then no held piece of it is its first).
	FinalGap          int64 `json:"final_gap,omitempty"`
	FinalGapScheduled bool  `json:"final_gap_scheduled,omitempty"`
	// Runs are the retained runs, oldest first, disjoint.
	Runs []Run `json:"runs,omitempty"`
	// Rows are the live rows last returned, by start.
	Rows []Row `json:"rows,omitempty"`
	// Stops are the reasons given to stops, oldest first.
	Stops []StopReason `json:"stop_reasons,omitempty"`
	// Reasons is only read from snapshots of an earlier format.
	Reasons []Assignment `json:"reasons,omitempty"`
	// Windows are the down windows of dispatches, by start.
	Windows []Window `json:"windows,omitempty"`
}

// Outcome says what a part did to the machine.
type Outcome int

// Outcomes of Machine.Part.
const (
	// InOrder: the part is the newest so far.
	InOrder Outcome = iota
	// Late: an older part, placed in order.
	Late
	// WithinRun: the part lies inside a run (a late part between parts
	// that were already close enough, or a replay); nothing changed.
	WithinRun
	// TooLate: older than the allowed lateness, or before Final; ignored.
	TooLate
)

// Class says how a part counts in the OEE figures. The values are the
// Enum8 names of the parts table's oee_class column.
type Class string

// The classes of a part.
const (
	// Counted: placed in a run, in scheduled time; its quantity and ideal
	// time count where the run's time counts.
	Counted Class = "counted"
	// OutsideShifts: made in unscheduled time, which is in no figure's
	// time; its quantity is reported apart.
	OutsideShifts Class = "unscheduled"
	// TooLateToPlace: too late to change any period; its quantity is
	// reported apart.
	TooLateToPlace Class = "late"
)

// Errors of Machine.Assign.
var (
	// ErrUnknownPeriod means no retained period has the given id (it does
	// not exist or has left the lateness window and is final).
	ErrUnknownPeriod = errors.New("unknown or final period")
	// ErrNotDown means the period is not a down period.
	ErrNotDown = errors.New("period is not down")
)

// Machine is the state machine of one location. It is not safe for
// concurrent use.
type Machine struct {
	cfg Config
	st  Snapshot
	// next is the first calendar boundary after the horizon the current
	// rows were computed for (cache for the fast path).
	next int64
}

// New returns a machine for a location that has no history.
func New(key Key, cfg Config) *Machine {
	return Restore(Snapshot{Key: key}, cfg)
}

// Restore returns a machine that continues from st.
func Restore(st Snapshot, cfg Config) *Machine {
	if cfg.Lateness <= 0 {
		cfg.Lateness = DefaultLateness
	}
	m := &Machine{cfg: cfg, st: st}
	if m.st.Final == 0 && m.st.Frozen && len(m.st.Runs) > 0 {
		// A snapshot of an earlier format: rows before the first
		// retained run were already final.
		m.st.Final = max(m.st.Runs[0].Start, m.st.FrozenLast)
	}
	m.applyThreshold()
	// An earlier format kept a reason by the start of the piece it was
	// given to: the stop that holds that instant takes it.
	for _, a := range m.st.Reasons {
		for _, g := range m.gaps() {
			if a.Reason != (Reason{}) && g.overlaps(a.Start, a.Start+1) {
				m.setStopReason(g, a.Reason)
			}
		}
	}
	m.st.Reasons = nil
	m.next = cfg.Calendar.NextBoundary(m.horizon())
	return m
}

// Snapshot returns a copy of the machine's memory.
func (m *Machine) Snapshot() Snapshot {
	st := m.st
	st.Runs = append([]Run(nil), st.Runs...)
	st.Rows = append([]Row(nil), st.Rows...)
	st.Stops = append([]StopReason(nil), st.Stops...)
	st.Windows = append([]Window(nil), st.Windows...)
	return st
}

// Rows returns the live periods the machine holds, oldest first.
func (m *Machine) Rows() []Row { return append([]Row(nil), m.st.Rows...) }

// Clock returns the newest wall-clock time the machine has caught up to
// (Tick may need several calls to reach a time far ahead).
func (m *Machine) Clock() int64 { return m.st.Now }

// SetConfig replaces the configuration (e.g. after a shift edit); the next
// event recomputes with it. A location threshold (Config.Threshold > 0)
// also judges the gap the location is in now, so a line stopped for
// longer than a newly set threshold shows down at the next tick; gaps
// between earlier runs stay as they were judged.
func (m *Machine) SetConfig(cfg Config) {
	if cfg.Lateness <= 0 {
		cfg.Lateness = DefaultLateness
	}
	m.cfg = cfg
	m.applyThreshold()
	m.next = math.MinInt64 // force the slow path once
}

// applyThreshold sets a location threshold on the newest run.
func (m *Machine) applyThreshold() {
	if n := len(m.st.Runs); n > 0 && m.cfg.Threshold > 0 {
		m.st.Runs[n-1].Threshold = m.cfg.Threshold.Milliseconds()
	}
}

func (m *Machine) threshold(p Part) int64 {
	if m.cfg.Threshold > 0 {
		return m.cfg.Threshold.Milliseconds()
	}
	return DefaultThreshold(p.IdealCycleTime).Milliseconds()
}

// horizon is the newest instant known (event, wall clock, or the start of
// a dispatch's down window).
func (m *Machine) horizon() int64 {
	h := max(m.st.Now, m.st.Newest)
	if n := len(m.st.Windows); n > 0 {
		h = max(h, m.st.Windows[n-1].Start) // windows are by start
	}
	return h
}

// downDetected reports whether the wall clock has passed the threshold
// after the newest run.
func (m *Machine) downDetected() bool {
	n := len(m.st.Runs)
	return n > 0 && m.st.Now-m.st.Runs[n-1].Last > m.st.Runs[n-1].Threshold
}

// Part applies one part event and returns the rows that changed.
func (m *Machine) Part(p Part) ([]Row, Outcome) {
	rec := p.RecordedMs
	start := max(p.productionStart(), m.st.Final)
	thr := m.threshold(p)
	runs := m.st.Runs
	n := len(runs)
	if rec < m.st.Final || n > 0 && (rec < m.st.Newest-m.cfg.Lateness.Milliseconds() || (m.st.Frozen && rec < runs[0].First)) {
		return nil, TooLate
	}
	// Fast path: the newest part extends the newest run, the open period
	// is running and no shift boundary was crossed: no row changes.
	if n > 0 && rec > runs[n-1].Last && rec-runs[n-1].Last <= runs[n-1].Threshold &&
		!m.downDetected() && max(m.horizon(), rec) < m.next {
		runs[n-1].Last, runs[n-1].Threshold = rec, thr
		m.st.Newest = max(m.st.Newest, rec)
		m.prune()
		return nil, InOrder
	}
	// i is the first run ending at or after rec.
	i := 0
	for i < n && runs[i].Last < rec {
		i++
	}
	outcome := InOrder
	if rec < m.st.Newest {
		outcome = Late
	}
	if i < n && runs[i].First <= rec {
		return nil, WithinRun
	}
	// A part joins a neighbouring run when the gap in recorded_at is
	// within the threshold. Only recorded_at decides, which keeps runs
	// independent of the order parts arrive in; a cycle time that covers
	// a long gap leaves two adjacent running periods and no down.
	joinPrev := i > 0 && rec-runs[i-1].Last <= runs[i-1].Threshold
	joinNext := i < n && runs[i].First-rec <= thr
	switch {
	case joinPrev && joinNext:
		runs[i-1].Last, runs[i-1].Threshold = runs[i].Last, runs[i].Threshold
		runs = append(runs[:i], runs[i+1:]...)
	case joinPrev:
		runs[i-1].Last, runs[i-1].Threshold = rec, thr
	case joinNext:
		runs[i].First, runs[i].Start = rec, start
	default:
		runs = append(runs, Run{})
		copy(runs[i+1:], runs[i:])
		runs[i] = Run{Start: start, First: rec, Last: rec, Threshold: thr}
	}
	m.st.Runs = runs
	m.st.Newest = max(m.st.Newest, rec)
	out := m.recompute()
	m.prune()
	return out, outcome
}

// Classify says how a part the machine returned outcome for counts in the
// figures: TooLateToPlace when it was too late, OutsideShifts when its
// recorded_at lies outside the shifts (as the machine cut its periods),
// else Counted.
func (m *Machine) Classify(p Part, out Outcome) Class {
	if out == TooLate {
		return TooLateToPlace
	}
	if !m.Scheduled(p.RecordedMs) {
		return OutsideShifts
	}
	return Counted
}

// Scheduled reports whether instant t (ms) is scheduled time: the state of
// the held row that holds it ([start, end)), else the calendar's.
func (m *Machine) Scheduled(t int64) bool {
	rows := m.st.Rows
	if n := len(rows); n > 0 && rows[n-1].Start <= t && (rows[n-1].Open || t < rows[n-1].End) {
		return rows[n-1].State != Unscheduled // the usual case: the open row
	}
	i := sort.Search(len(rows), func(i int) bool { return rows[i].Open || rows[i].End > t })
	if i < len(rows) && rows[i].Start <= t {
		return rows[i].State != Unscheduled
	}
	return m.cfg.Calendar.ScheduledAt(t)
}

// Tick tells the machine the wall-clock time (ms) and returns the rows that
// changed: a down period opens once the threshold has passed, and open
// periods are cut at shift boundaries that passed. A tick cuts at most
// maxTickBoundaries boundaries; Clock says how far it got, and the next
// tick goes on from there.
func (m *Machine) Tick(now int64) []Row {
	if now <= m.st.Now {
		return nil
	}
	if (len(m.st.Runs) > 0 || len(m.st.Windows) > 0) && now >= m.next && !m.cfg.Calendar.Always() {
		b := m.cfg.Calendar.NextBoundary(m.horizon())
		for crossed := 0; b <= now; crossed++ {
			if crossed == maxTickBoundaries {
				now = b - 1
				break
			}
			b = m.cfg.Calendar.NextBoundary(b)
		}
	}
	wasDown := m.downDetected()
	m.st.Now = now
	if len(m.st.Runs) == 0 && len(m.st.Windows) == 0 || (wasDown == m.downDetected() && m.horizon() < m.next) {
		return nil
	}
	out := m.recompute()
	m.prune()
	return out
}

// gap is a stop: the time between two runs (or after the newest one, open,
// once the threshold passed on the wall clock).
type gap struct {
	from, to int64 // to is meaningless when open
	open     bool
}

func (g gap) overlaps(from, to int64) bool {
	return from < to && g.from < to && (g.open || from < g.to)
}

// gaps returns the stops of the retained runs, oldest first.
func (m *Machine) gaps() []gap {
	var out []gap
	runs := m.st.Runs
	prevLast, hasPrev := m.st.FrozenLast, m.st.Frozen
	for i, r := range runs {
		if hasPrev {
			if start := max(r.Start, prevLast); i > 0 && start > prevLast {
				out = append(out, gap{from: prevLast, to: start})
			}
		}
		prevLast, hasPrev = r.Last, true
	}
	if m.downDetected() {
		out = append(out, gap{from: runs[len(runs)-1].Last, open: true})
	}
	return out
}

// Assign gives reason r to the stop the down period with the given id is a
// piece of and returns the rows that changed. A planned reason makes its
// pieces planned_down; Reason{} removes the reason.
func (m *Machine) Assign(id uint64, r Reason) ([]Row, error) {
	for _, row := range m.st.Rows {
		if row.ID != id {
			continue
		}
		if row.State != Down && row.State != PlannedDown {
			return nil, ErrNotDown
		}
		if row.Dispatch != 0 {
			return nil, ErrDispatchDown
		}
		for _, g := range m.gaps() {
			if g.overlaps(row.Start, row.Start+1) {
				m.setStopReason(g, r)
				return m.recompute(), nil
			}
		}
		return nil, ErrUnknownPeriod // not expected: a down row lies in a stop
	}
	return nil, ErrUnknownPeriod
}

// AssignSpan gives reason r to every stop the machine holds that overlaps
// [from, to) (to 0: a period that was open when read, up to the machine's
// clock), for a period that is no longer one of the machine's rows because
// a late part moved or split it. It returns ErrUnknownPeriod when the span
// lies wholly before the rows the machine holds (a final period: see
// Relabel), and ErrNotDown when the machine holds that time but no stop
// overlaps it any more (a late part bridged it).
func (m *Machine) AssignSpan(from, to int64, r Reason) ([]Row, error) {
	if to == 0 {
		to = max(m.horizon(), from+1)
	}
	if len(m.st.Rows) == 0 || to <= m.st.Rows[0].Start {
		return nil, ErrUnknownPeriod
	}
	found := false
	for _, g := range m.gaps() {
		if g.overlaps(from, to) {
			m.setStopReason(g, r)
			found = true
		}
	}
	if !found {
		return nil, ErrNotDown
	}
	return m.recompute(), nil
}

// setStopReason gives stop g reason r (Reason{}: none). The newest reason
// of an extent a stop overlaps wins, so an older reason stays on the other
// stops its extent covers (the other half of a split stop); one that
// applies only within g is dropped.
func (m *Machine) setStopReason(g gap, r Reason) {
	to := g.to
	if g.open {
		to = max(m.horizon(), g.from+1)
	}
	kept := m.st.Stops[:0]
	for _, s := range m.st.Stops {
		if s.From < g.from || s.To > to {
			kept = append(kept, s)
		}
	}
	m.st.Stops = append(kept, StopReason{From: g.from, To: to, Reason: r})
}

// stopReason returns the reason of stop g: the newest given to an extent
// it overlaps (Reason{} when none, or when it was removed).
func (m *Machine) stopReason(g gap) Reason {
	for i := len(m.st.Stops) - 1; i >= 0; i-- {
		if s := m.st.Stops[i]; g.overlaps(s.From, s.To) {
			return s.Reason
		}
	}
	return Reason{}
}

// growStops widens the extent of each stop reason to the stop that
// overlaps it as that stop is known now: an open stop grows with the
// clock, and a stop closed since keeps its whole time, so that a late part
// splitting it later leaves the reason on both parts.
func (m *Machine) growStops() {
	if len(m.st.Stops) == 0 {
		return
	}
	h := m.horizon()
	for _, g := range m.gaps() {
		end := g.to
		if g.open {
			end = max(h, g.from+1)
		}
		for i := range m.st.Stops {
			if s := &m.st.Stops[i]; g.overlaps(s.From, s.To) {
				s.From, s.To = min(s.From, g.from), max(s.To, end)
			}
		}
	}
}

// recompute builds the rows from Final on and returns those that differ
// from the previous ones, with new versions.
func (m *Machine) recompute() []Row {
	m.growStops()
	rows := m.timeline()
	var out []Row
	old := make(map[uint64]Row, len(m.st.Rows))
	for _, r := range m.st.Rows {
		old[r.ID] = r
	}
	for i := range rows {
		prev, ok := old[rows[i].ID]
		delete(old, rows[i].ID)
		if ok && prev.same(rows[i]) {
			rows[i].Version = prev.Version
			continue
		}
		rows[i].Version = m.nextVersion()
		out = append(out, rows[i])
	}
	// Deletions in start order, so output is deterministic.
	for _, r := range m.st.Rows {
		if _, gone := old[r.ID]; gone {
			r.Version, r.Deleted = m.nextVersion(), true
			out = append(out, r)
		}
	}
	m.st.Rows = rows
	m.next = m.cfg.Calendar.NextBoundary(m.horizon())
	return out
}

// nextVersion hands out the next version: steps of two, so that the
// version after any version read stays free for Relabel.
func (m *Machine) nextVersion() uint64 {
	m.st.Seq += 2
	return m.st.Seq
}

// timeline computes the rows of the retained runs and the windows from
// Final on.
func (m *Machine) timeline() []Row {
	runs := m.st.Runs
	if len(runs) == 0 && len(m.st.Windows) == 0 {
		return nil
	}
	var segs []seg
	prevLast, hasPrev := m.st.FrozenLast, m.st.Frozen
	for i, r := range runs {
		start := r.Start
		if hasPrev {
			start = max(start, prevLast)
			if i > 0 && start > prevLast {
				segs = append(segs, seg{state: Down, start: prevLast, end: start})
			}
		}
		last := i == len(runs)-1
		switch {
		case !last:
			if r.Last > start {
				segs = append(segs, seg{state: Running, start: start, end: r.Last})
			}
		case m.downDetected():
			if r.Last > start {
				segs = append(segs, seg{state: Running, start: start, end: r.Last})
			}
			segs = append(segs, seg{state: Down, start: r.Last, open: true})
		default:
			segs = append(segs, seg{state: Running, start: start, open: true})
		}
		prevLast, hasPrev = r.Last, true
	}
	if len(m.st.Windows) > 0 {
		segs = m.overlay(segs)
	} else {
		for i := range segs {
			segs[i].from, segs[i].to, segs[i].open0 = segs[i].start, segs[i].end, segs[i].open
		}
	}
	h := m.horizon()
	final := m.st.Final
	var rows []Row
	for _, s := range segs {
		end := s.end
		if s.open {
			// Cut the open period at every boundary up to and
			// including the horizon: the piece holding h is the open
			// one.
			end = max(h, s.start) + 1
		} else if end <= final {
			continue
		}
		var reason Reason
		var firstDone bool
		switch {
		case s.win != nil:
			// A window begun before Final had its first piece there.
			firstDone = s.cont || s.win.Start < final
		case s.state == Down:
			reason = m.stopReason(gap{from: s.from, to: s.to, open: s.open0})
			firstDone = s.cont || s.from < final && m.st.FinalGap == s.from && m.st.FinalGapScheduled
		}
		pieces := m.cfg.Calendar.Scheduled(max(s.start, final), end)
		for j, p := range pieces {
			row := Row{State: s.state, Start: p.Start, End: p.End, Shift: p.Shift}
			if s.open && j == len(pieces)-1 {
				row.End, row.Open = 0, true
			}
			switch {
			case !p.Scheduled:
				row.State = Unscheduled
			case s.state == Down:
				if !firstDone {
					row.FirstOfStop, firstDone = FirstPiece, true
				}
				row.Reason = reason.ID
				if reason.Planned {
					row.State = PlannedDown
				}
			}
			if s.win != nil && p.Scheduled {
				row.Dispatch, row.DispatchType = s.win.Dispatch, s.win.Type
			}
			row.ID = PeriodID(m.st.Key, row.Start)
			rows = append(rows, row)
		}
	}
	return rows
}

// prune drops what no part the machine still accepts can change: runs
// whose successor began more than the lateness before the newest part, and
// rows that end before the lateness horizon or, on the wall clock, more
// than Finality ago. Final moves to the first row kept.
func (m *Machine) prune() {
	lateness := m.cfg.Lateness.Milliseconds()
	horizon := m.st.Newest - lateness
	runs := m.st.Runs
	dropped := 0
	for len(runs)-dropped >= 2 && runs[dropped+1].First < horizon {
		m.st.Frozen, m.st.FrozenLast = true, runs[dropped].Last
		dropped++
	}
	final := m.st.Final
	if dropped > 0 {
		m.st.Runs = append(runs[:0], runs[dropped:]...)
		final = max(final, m.st.Runs[0].Start, m.st.FrozenLast)
	}
	// The row holding the horizon (event time, or the wall clock for an
	// idle location) and those after it stay; earlier ones are final.
	x := max(horizon, m.st.Now-max(Finality.Milliseconds(), lateness))
	rows := m.st.Rows
	if len(rows) > 1 && rows[1].Start <= x {
		i := sort.Search(len(rows), func(i int) bool { return rows[i].Start > x }) - 1
		final = max(final, rows[i].Start)
	}
	if final > m.st.Final {
		m.finalize(final)
	}
}

// finalize moves Final to f (the start of a held row, or the start of the
// first retained run) and forgets what lies before it.
func (m *Machine) finalize(f int64) {
	// The stop that f cuts, if any: whether one of its pieces before f
	// was scheduled decides whether a held piece can be its first.
	var cut gap
	hasCut := false
	for _, g := range m.gaps() {
		if g.from < f && (g.open || f < g.to) {
			cut, hasCut = g, true
		}
	}
	scheduled := hasCut && m.st.FinalGap == cut.from && m.st.FinalGapScheduled
	kept := m.st.Rows[:0]
	for _, r := range m.st.Rows {
		if r.Start >= f || r.Open {
			kept = append(kept, r)
			continue
		}
		if hasCut && r.Start >= cut.from && (r.State == Down || r.State == PlannedDown) {
			scheduled = true
		}
	}
	clear(m.st.Rows[len(kept):])
	m.st.Rows = kept
	m.st.Final = f
	m.st.FinalGap, m.st.FinalGapScheduled = 0, false
	if hasCut {
		m.st.FinalGap, m.st.FinalGapScheduled = cut.from, scheduled
	}
	// Reasons of stops wholly before f are not needed any more; one that
	// the cut stop overlaps keeps applying to its held pieces.
	reasons := m.st.Stops[:0]
	for _, s := range m.st.Stops {
		switch {
		case s.To > f:
			reasons = append(reasons, s)
		case hasCut && cut.overlaps(s.From, s.To):
			s.From, s.To = f, f+1
			reasons = append(reasons, s)
		}
	}
	m.st.Stops = reasons
	windows := m.st.Windows[:0]
	for _, w := range m.st.Windows {
		if w.End == 0 || w.End > f {
			windows = append(windows, w)
		}
	}
	clear(m.st.Windows[len(windows):])
	m.st.Windows = windows
}

// PeriodID is the id of the period of location k starting at start (ms): a
// 63-bit FNV-1a hash, so it fits both UInt64 and signed readers.
func PeriodID(k Key, start int64) uint64 {
	h := fnv.New64a()
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], k.ID)
	binary.BigEndian.PutUint64(b[8:], uint64(start))
	h.Write([]byte(k.Kind))
	h.Write(b[:])
	return h.Sum64() &^ (1 << 63)
}

// ErrNotFinal means Relabel was given a period that is still in the
// machine's window (use Assign) or still open.
var ErrNotFinal = errors.New("period is not final")

// Relabel gives reason r to a final period: one that lies before every row
// the machine holds, so no part can change it again. row is the period as
// stored and read (its id, start, end, state, first-of-stop mark and
// version); Relabel returns its new version, with the state down or
// planned_down after r. That version is row.Version + 1: above the version
// read, and below any version the machine wrote after it (versions step by
// two), so a relabel based on a read that a late part has since overtaken
// loses and resurrects nothing. Row.Version 0 (an assignment of an earlier
// format) takes a version above every version so far. Stored times may be
// truncated to seconds, so row.ID is taken as given. The machine's
// timeline is not touched.
func (m *Machine) Relabel(row Row, r Reason) (Row, error) {
	if row.State != Down && row.State != PlannedDown {
		return Row{}, ErrNotDown
	}
	if row.Open {
		return Row{}, ErrNotFinal
	}
	for _, live := range m.st.Rows {
		if live.ID == row.ID || row.End > live.Start {
			return Row{}, ErrNotFinal
		}
	}
	row.State, row.Reason = Down, r.ID
	if r.Planned {
		row.State = PlannedDown
	}
	if row.Version == 0 {
		row.Version = m.nextVersion() + 1
	} else {
		row.Version++
	}
	row.Deleted = false
	return row, nil
}
