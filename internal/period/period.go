// Package period is the production-period state machine of one location: a
// pure, clock-free function from part events, ticks (wall-clock time),
// reason assignments and the location's shift calendar to period rows. It
// does no I/O; the processor feeds it and writes the rows it returns.
//
// # Model
//
// A location's parts form runs: maximal sequences of parts (ordered by
// recorded_at, event time) in which each gap to the next part is at most the
// stop threshold. Between two runs the location was down: from the last part
// of the earlier run to the production start of the first part of the later
// one (its recorded_at minus its cycle time when the part has one, never
// before the earlier part). Within a run it was running. The newest run is
// running and open until a tick finds the threshold passed on the wall
// clock; from then on a down period from its last part is open, and the next
// part closes it ("a part ends downtime").
//
// That base timeline is then cut at every shift boundary of the calendar;
// stretches outside every shift become unscheduled. A down period that was
// given a reason keeps it; a planned reason makes it planned_down.
//
// # Threshold
//
// The stop threshold is per location (Config.Threshold). When it is zero the
// gap after a part is judged with DefaultThreshold of that part's product:
// max(5 × ideal cycle time, 60 s), or 300 s when the product has no ideal
// cycle time. The gap is measured from recorded_at to recorded_at; gaps up
// to the threshold are run time, and their loss shows in performance.
//
// # Late parts and versions
//
// A part older than the newest one is placed in order when it is within
// Config.Lateness (default one hour) of the newest recorded_at; older parts
// are reported as TooLate and change no period (the parts table still has
// them). A late part inside a down period splits it. Every call recomputes
// the timeline of the retained window and compares it with the rows it
// returned before: a changed row comes back with a higher Version under the
// same ID, a row that no longer exists comes back with Deleted set. IDs are
// a hash of the location and the period's start, so a period keeps its ID
// while it is closed, shortened or relabelled. Versions come from one
// counter per location, so a new row version is always above every earlier
// one: a ReplacingMergeTree(version) read with FINAL sees exactly one
// version of each period.
//
// Feeding a part that the machine has already seen changes nothing, which
// is what makes a replayed batch harmless.
//
// # State
//
// State is the whole memory of a Machine, plain data with JSON tags: the
// runs and rows of the lateness window, the reasons of retained periods, the
// version counter. Restore(State) gives a Machine that behaves exactly like
// the one that produced it, so the processor persists the Snapshot with the rows
// and a new owner of the location resumes with the same open period.
package period

import (
	"encoding/binary"
	"errors"
	"hash/fnv"
	"math"
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
	// MinThreshold is the floor of the derived stop threshold.
	MinThreshold = 60 * time.Second
	// UnknownThreshold is the derived threshold for a product without an
	// ideal cycle time.
	UnknownThreshold = 300 * time.Second
	// ThresholdCycles is how many ideal cycle times make a stop.
	ThresholdCycles = 5
)

// DefaultThreshold is the stop threshold derived from a product's ideal
// cycle time in seconds: max(5 × ideal, 60 s), or 300 s when ideal ≤ 0.
func DefaultThreshold(idealCycleTime float64) time.Duration {
	if idealCycleTime <= 0 || math.IsNaN(idealCycleTime) || math.IsInf(idealCycleTime, 0) {
		return UnknownThreshold
	}
	d := time.Duration(idealCycleTime * ThresholdCycles * float64(time.Second))
	return max(d, MinThreshold)
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
	// HasCycleTime.
	CycleTime    float64
	HasCycleTime bool
	// IdealCycleTime is the resolved product's ideal cycle time in
	// seconds (0: none); it sets the threshold when Config.Threshold is 0.
	IdealCycleTime float64
}

// Reason is a downtime reason assigned to a period.
type Reason struct {
	ID      uint64 `json:"id"`
	Planned bool   `json:"planned,omitempty"`
}

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
	Shift   string `json:"shift,omitempty"`
	Reason  uint64 `json:"reason,omitempty"`
	Version uint64 `json:"version"`
	Deleted bool   `json:"deleted,omitempty"`
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
		r.Open == o.Open && r.Shift == o.Shift && r.Reason == o.Reason
}

// Run is a maximal sequence of parts whose gaps are all within the
// threshold.
type Run struct {
	// Start is the production start of the first part (its recorded_at
	// minus its cycle time), before clamping to the previous run.
	Start int64 `json:"start"`
	First int64 `json:"first"` // recorded_at of the first part
	Last  int64 `json:"last"`  // recorded_at of the last part
	// Threshold (ms) judges the gap after Last.
	Threshold int64 `json:"threshold"`
}

// Assignment is a reason given to the period starting at Start.
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
	// Runs are the retained runs, oldest first, disjoint.
	Runs []Run `json:"runs,omitempty"`
	// Rows are the live rows last returned, by start.
	Rows    []Row        `json:"rows,omitempty"`
	Reasons []Assignment `json:"reasons,omitempty"`
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
	// TooLate: older than the allowed lateness; ignored.
	TooLate
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
	m.applyThreshold()
	m.next = cfg.Calendar.NextBoundary(m.horizon())
	return m
}

// Snapshot returns a copy of the machine's memory.
func (m *Machine) Snapshot() Snapshot {
	st := m.st
	st.Runs = append([]Run(nil), st.Runs...)
	st.Rows = append([]Row(nil), st.Rows...)
	st.Reasons = append([]Assignment(nil), st.Reasons...)
	return st
}

// Rows returns the live periods of the retained window, oldest first.
func (m *Machine) Rows() []Row { return append([]Row(nil), m.st.Rows...) }

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

// horizon is the newest instant known (event or wall clock).
func (m *Machine) horizon() int64 { return max(m.st.Now, m.st.Newest) }

// downDetected reports whether the wall clock has passed the threshold
// after the newest run.
func (m *Machine) downDetected() bool {
	n := len(m.st.Runs)
	return n > 0 && m.st.Now-m.st.Runs[n-1].Last > m.st.Runs[n-1].Threshold
}

// Part applies one part event and returns the rows that changed.
func (m *Machine) Part(p Part) ([]Row, Outcome) {
	rec := p.RecordedMs
	start := rec
	if p.HasCycleTime && p.CycleTime > 0 && !math.IsInf(p.CycleTime, 0) {
		start = rec - int64(math.Round(p.CycleTime*1000))
	}
	thr := m.threshold(p)
	runs := m.st.Runs
	n := len(runs)
	if n > 0 && (rec < m.st.Newest-m.cfg.Lateness.Milliseconds() || (m.st.Frozen && rec < runs[0].First)) {
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

// Tick tells the machine the wall-clock time (ms) and returns the rows that
// changed: a down period opens once the threshold has passed, and open
// periods are cut at shift boundaries that passed.
func (m *Machine) Tick(now int64) []Row {
	if now <= m.st.Now {
		return nil
	}
	wasDown := m.downDetected()
	m.st.Now = now
	if len(m.st.Runs) == 0 || (wasDown == m.downDetected() && m.horizon() < m.next) {
		return nil
	}
	out := m.recompute()
	m.prune()
	return out
}

// Assign gives reason r to the down period with the given id and returns
// the rows that changed. A planned reason makes it planned_down; Reason{}
// removes the reason.
func (m *Machine) Assign(id uint64, r Reason) ([]Row, error) {
	for _, row := range m.st.Rows {
		if row.ID != id {
			continue
		}
		if row.State != Down && row.State != PlannedDown {
			return nil, ErrNotDown
		}
		kept := m.st.Reasons[:0]
		for _, a := range m.st.Reasons {
			if a.Start != row.Start {
				kept = append(kept, a)
			}
		}
		m.st.Reasons = kept
		if r != (Reason{}) {
			m.st.Reasons = append(m.st.Reasons, Assignment{Start: row.Start, Reason: r})
		}
		return m.recompute(), nil
	}
	return nil, ErrUnknownPeriod
}

// recompute builds the rows of the retained window and returns those that
// differ from the previous ones, with new versions.
func (m *Machine) recompute() []Row {
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
		m.st.Seq++
		rows[i].Version = m.st.Seq
		out = append(out, rows[i])
	}
	// Deletions in start order, so output is deterministic.
	for _, r := range m.st.Rows {
		if _, gone := old[r.ID]; gone {
			m.st.Seq++
			r.Version, r.Deleted = m.st.Seq, true
			out = append(out, r)
		}
	}
	m.st.Rows = rows
	m.next = m.cfg.Calendar.NextBoundary(m.horizon())
	return out
}

// timeline computes the rows of the retained runs.
func (m *Machine) timeline() []Row {
	runs := m.st.Runs
	if len(runs) == 0 {
		return nil
	}
	type seg struct {
		state      State
		start, end int64
		open       bool
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
	reasons := make(map[int64]Reason, len(m.st.Reasons))
	for _, a := range m.st.Reasons {
		reasons[a.Start] = a.Reason
	}
	h := m.horizon()
	var rows []Row
	for _, s := range segs {
		end := s.end
		if s.open {
			// Cut the open period at every boundary up to and
			// including the horizon: the piece holding h is the open
			// one.
			end = max(h, s.start) + 1
		}
		pieces := m.cfg.Calendar.Scheduled(s.start, end)
		for j, p := range pieces {
			row := Row{State: s.state, Start: p.Start, End: p.End, Shift: p.Shift}
			if s.open && j == len(pieces)-1 {
				row.End, row.Open = 0, true
			}
			if !p.Scheduled {
				row.State = Unscheduled
			} else if row.State == Down {
				if r, ok := reasons[row.Start]; ok {
					row.Reason = r.ID
					if r.Planned {
						row.State = PlannedDown
					}
				}
			}
			row.ID = PeriodID(m.st.Key, row.Start)
			rows = append(rows, row)
		}
	}
	return rows
}

// prune drops runs, rows and reasons that no late part can change any more:
// a run is dropped when the run after it began more than the lateness
// before the newest part.
func (m *Machine) prune() {
	horizon := m.st.Newest - m.cfg.Lateness.Milliseconds()
	runs := m.st.Runs
	dropped := 0
	for len(runs)-dropped >= 2 && runs[dropped+1].First < horizon {
		m.st.Frozen, m.st.FrozenLast = true, runs[dropped].Last
		dropped++
	}
	if dropped == 0 {
		return
	}
	m.st.Runs = append(runs[:0], runs[dropped:]...)
	// Rows before the first retained run's start are final.
	b := max(m.st.Runs[0].Start, m.st.FrozenLast)
	rows := m.st.Rows[:0]
	for _, r := range m.st.Rows {
		if r.Open || r.Start >= b {
			rows = append(rows, r)
		}
	}
	m.st.Rows = rows
	reasons := m.st.Reasons[:0]
	for _, a := range m.st.Reasons {
		if a.Start >= b {
			reasons = append(reasons, a)
		}
	}
	m.st.Reasons = reasons
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

// Relabel gives reason r to a final period: one that has left the
// lateness window, so the machine no longer holds it and no part can
// change it again. row is the period as stored (its id, start, end and
// state); Relabel returns its new version, with the state down or
// planned_down after r and a version above every earlier one of this
// location. Stored times may be truncated to seconds, so row.ID is taken
// as given. The machine's timeline is not touched.
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
	m.st.Seq++
	row.Version, row.Deleted = m.st.Seq, false
	return row, nil
}
