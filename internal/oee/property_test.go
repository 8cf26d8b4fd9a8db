package oee

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/takt/takt/internal/period"
)

// The property: for random event streams (parts in and out of order within
// the lateness window, threshold changes, shifts, reasons given to stops,
// ticks), the figures computed from the period rows the state machine
// wrote (as a FINAL reader sees them) and the parts as it classified them
// equal the figures of a straightforward computation over all parts at
// once. Availability, quality and performance stay in [0, 1] unless
// performance_over_ideal says performance is above 1; for streams whose
// parts never come faster than their ideal cycle time, performance exceeds
// 1 by no more than one part's ideal time per edge a window or a shift
// start cuts into a run.

// propPart is a generated part event.
type propPart struct {
	rec   int64
	qty   uint32
	ct    float64 // reported cycle time; 0: none
	phase int
	good  bool
}

// propStream is a generated stream and what the machine made of it.
type propStream struct {
	ideal      float64
	cal        *period.Calendar
	thresholds []time.Duration // per phase; 0 derives it
	parts      []propPart      // in arrival order
	now        int64
	honest     bool
	// extents are the stops reasons were given to, in order.
	extents []propExtent
}

type propExtent struct {
	from, to int64
	reason   period.Reason
}

var propBase = time.Date(2024, 3, 4, 4, 0, 0, 0, time.UTC).UnixMilli()

func propCalendars() []*period.Calendar {
	sh := func(name, from, to string) period.Shift {
		s, err := period.ParseShift(name, from, to, "")
		if err != nil {
			panic(err)
		}
		return s
	}
	return []*period.Calendar{
		nil,
		{Loc: time.UTC, Shifts: []period.Shift{sh("A", "06:00", "14:00")}},
		{Loc: time.UTC, Shifts: []period.Shift{sh("A", "05:00", "07:30"), sh("B", "08:00", "10:15")}},
		{Loc: time.UTC, Shifts: []period.Shift{sh("A", "04:00", "06:20"), sh("B", "06:20", "09:40"), sh("C", "09:40", "12:00")}},
	}
}

// generate makes a stream: phases of parts (each phase within 45 minutes,
// so every part arrives within the lateness of the newest one), shuffled
// within their phase, with ticks and reasons in between.
func generate(r *rand.Rand, honest bool) *propStream {
	s := &propStream{ideal: []float64{20, 30, 45, 60}[r.IntN(4)], honest: honest}
	s.cal = propCalendars()[r.IntN(4)]
	phases := 1 + r.IntN(3)
	t := propBase + int64(r.IntN(3600))*1000
	used := map[int64]bool{}
	for ph := range phases {
		s.thresholds = append(s.thresholds, []time.Duration{0, 90 * time.Second, 240 * time.Second,
			period.Seconds(64.1 + float64(r.IntN(100))/10)}[r.IntN(4)])
		end := t + 45*60*1000
		var phase []propPart
		for t < end {
			qty := uint32(1 + r.IntN(3))
			if r.IntN(3) > 0 {
				qty = 1
			}
			need := int64(s.ideal * float64(qty) * 1000)
			gap := need + int64(r.IntN(int(need)/2+1))
			if !honest && r.IntN(4) == 0 {
				gap = need / 2 // faster than ideal
			}
			if r.IntN(8) == 0 {
				gap += int64(60+r.IntN(900)) * 1000 // a stop, or nearly one
			}
			t += gap
			t += (1000 - t%1000) % 1000 // whole seconds, as periods are stored
			if t >= end || used[t] {
				continue
			}
			used[t] = true
			p := propPart{rec: t, qty: qty, phase: ph, good: r.IntN(5) > 0}
			switch r.IntN(3) {
			case 1:
				p.ct = s.ideal * float64(qty)
			case 2:
				p.ct = s.ideal * float64(qty) * 1.5
				if !honest && r.IntN(2) == 0 {
					p.ct = s.ideal * float64(qty) / 2
				}
			}
			phase = append(phase, p)
		}
		// Out of order within the phase: swap neighbours some of the
		// time, and send a few parts much later in the phase.
		for i := range phase {
			if j := i + r.IntN(6); j < len(phase) && r.IntN(3) == 0 {
				phase[i], phase[j] = phase[j], phase[i]
			}
		}
		s.parts = append(s.parts, phase...)
		t = end + int64(r.IntN(3*3600))*1000 // a pause between phases
		t -= t % 1000
	}
	last := slices.MaxFunc(s.parts, func(a, b propPart) int { return cmpInt(a.rec, b.rec) }).rec
	s.now = last + int64(r.IntN(3600))*1000
	return s
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (s *propStream) part(p propPart) period.Part {
	return period.Part{RecordedMs: p.rec, CycleTime: p.ct, HasCycleTime: p.ct > 0, IdealCycleTime: s.ideal, Quantity: p.qty}
}

func quality(p propPart) string {
	if p.good {
		return "good"
	}
	return "scrap"
}

// play feeds the stream to a machine, with ticks and reasons given to
// closed stops along the way, and returns what a FINAL reader sees and the
// parts as classified.
func (s *propStream) play(t *testing.T, r *rand.Rand) ([]Period, []Part) {
	key := period.Key{Kind: "line", ID: 1}
	m := period.New(key, period.Config{Calendar: s.cal, Threshold: s.thresholds[0]})
	table := map[uint64]period.Row{}
	apply := func(rows []period.Row) {
		for _, row := range rows {
			if row.Version <= table[row.ID].Version {
				t.Fatalf("period %d: version %d after %d", row.ID, row.Version, table[row.ID].Version)
			}
			table[row.ID] = row
		}
	}
	var parts []Part
	clock := int64(0)
	phase := 0
	for i, p := range s.parts {
		if p.phase != phase {
			phase = p.phase
			m.SetConfig(period.Config{Calendar: s.cal, Threshold: s.thresholds[phase]})
		}
		pp := s.part(p)
		rows, out := m.Part(pp)
		if out == period.TooLate {
			t.Fatalf("part %d at %s too late: the generator keeps parts within the lateness", i, fmtMs(p.rec))
		}
		apply(rows)
		parts = append(parts, Part{Location: 1, RecordedMs: p.rec, Quantity: p.qty, Quality: quality(p),
			IdealCycleTime: s.ideal, Class: m.Classify(pp, out)})
		if r.IntN(10) == 0 {
			// The wall clock: a little after the newest part so far.
			clock = max(clock, min(p.rec+int64(r.IntN(600))*1000, s.now))
			for m.Clock() < clock {
				apply(m.Tick(clock))
			}
		}
		if r.IntN(12) == 0 {
			s.giveReason(t, r, m, s.parts[:i+1], apply)
		}
	}
	for m.Clock() < s.now {
		apply(m.Tick(s.now))
	}
	var periods []Period
	for _, row := range table {
		if !row.Deleted {
			periods = append(periods, Period{Location: 1, State: row.State, Start: row.Start, End: row.End, Open: row.Open,
				FirstOfStop: row.FirstOfStop})
		}
	}
	return periods, parts
}

// giveReason gives a random reason to a random stop between two runs of
// the parts fed so far (the reference's runs), through one of its pieces
// the machine still holds, and notes the stop's extent: from its first
// piece the machine holds (pieces already final keep theirs) to its end.
func (s *propStream) giveReason(t *testing.T, r *rand.Rand, m *period.Machine, fed []propPart, apply func([]period.Row)) {
	var stops []propSeg
	for _, sg := range s.timeline(fed, m.Clock()) {
		if sg.down && !sg.open {
			stops = append(stops, sg)
		}
	}
	if len(stops) == 0 {
		return
	}
	sg := stops[r.IntN(len(stops))]
	var held []period.Row
	for _, row := range m.Rows() {
		if row.Start >= sg.start && row.Start < sg.end && (row.State == period.Down || row.State == period.PlannedDown) {
			held = append(held, row)
		}
	}
	if len(held) == 0 {
		return // wholly final, or wholly unscheduled
	}
	reason := period.Reason{ID: uint64(1 + r.IntN(3)), Planned: r.IntN(2) == 0}
	out, err := m.Assign(held[r.IntN(len(held))].ID, reason)
	if err != nil {
		t.Fatalf("assign to the stop %s–%s: %v", fmtMs(sg.start), fmtMs(sg.end), err)
	}
	apply(out)
	from := sg.start
	if rows := m.Rows(); len(rows) > 0 {
		from = max(from, rows[0].Start)
	}
	s.extents = append(s.extents, propExtent{from: from, to: sg.end, reason: reason})
}

// propSeg is a stretch of the reference timeline: running, or a stop.
type propSeg struct {
	down       bool
	start, end int64
	open       bool
}

// timeline is the reference's base timeline of the parts fed so far, at
// wall clock now: runs of the parts sorted by recorded_at (each gap judged
// by the threshold in force for the part before it), each from its first
// part's production start (not before the previous run's last part) to
// its last part, and the stops between them; the newest run is running
// until now unless now is past its threshold, then a stop until now.
func (s *propStream) timeline(fed []propPart, now int64) []propSeg {
	ps := slices.Clone(fed)
	sort.Slice(ps, func(i, j int) bool { return ps[i].rec < ps[j].rec })
	lastPhase := 0
	for _, p := range ps {
		lastPhase = max(lastPhase, p.phase)
	}
	// The threshold that judges the gap after part i: its phase's, or
	// the next phase's when that one has begun, set a threshold, and the
	// part is the newest of its phase (the location's threshold is set
	// on the gap a line is in).
	thr := func(i int) int64 {
		p := ps[i]
		d := s.thresholds[p.phase]
		if p.phase < lastPhase && s.thresholds[p.phase+1] > 0 && (i+1 == len(ps) || ps[i+1].phase != p.phase) {
			d = s.thresholds[p.phase+1]
		}
		if d == 0 {
			d = period.DefaultThreshold(s.ideal)
		}
		return d.Milliseconds()
	}
	type run struct{ start, last int64 }
	var runs []run
	for i, p := range ps {
		d := p.ct
		if d == 0 {
			d = s.ideal * float64(p.qty)
		}
		start := p.rec - int64(math.Round(d*1000))
		if i > 0 && p.rec-ps[i-1].rec <= thr(i-1) {
			runs[len(runs)-1].last = p.rec
			continue
		}
		if i > 0 {
			start = max(start, ps[i-1].rec)
		}
		runs = append(runs, run{start: start, last: p.rec})
	}
	var segs []propSeg
	for i, r := range runs {
		if i > 0 && r.start > runs[i-1].last {
			segs = append(segs, propSeg{down: true, start: runs[i-1].last, end: r.start})
		}
		if i < len(runs)-1 || now-r.last > thr(len(ps)-1) {
			if r.last > r.start {
				segs = append(segs, propSeg{start: r.start, end: r.last})
			}
			if i == len(runs)-1 {
				segs = append(segs, propSeg{down: true, start: r.last, end: max(now, r.last), open: true})
			}
			continue
		}
		segs = append(segs, propSeg{start: r.start, end: max(now, r.start), open: true})
	}
	return segs
}

// reference computes the figures of window w from all parts at once: the
// timeline of every part, the calendar's cut, the reasons by the stops
// they were given to, then the elements. It also returns how many edges
// may carry one part's ideal time into a run's time: the window start,
// and each shift start that cuts a run.
func (s *propStream) reference(w Window) (Elements, int) {
	var e Elements
	cuts := 1
	end := min(w.End, s.now)
	e.CalendarTime = float64(end-w.Start) / 1000
	clip := func(a, b int64) float64 {
		a, b = max(a, w.Start), min(b, end)
		if b <= a {
			return 0
		}
		return float64(b-a) / 1000
	}
	for _, sg := range s.timeline(s.parts, s.now) {
		first := true
		for _, pc := range s.cal.Scheduled(sg.start, sg.end) {
			// The newest reason given to the stop's pieces that were
			// not yet final then: those the extent covers.
			var reason period.Reason
			for _, x := range s.extents {
				if sg.down && x.from < pc.End && pc.Start < x.to {
					reason = x.reason
				}
			}
			d := clip(pc.Start, pc.End)
			switch {
			case !pc.Scheduled:
			case !sg.down:
				e.ActualProductionTime += d
				e.PlannedBusyTime += d
				if pc.Start != sg.start && d > 0 {
					cuts++ // a run cut at a shift's start
				}
			case reason.Planned:
				e.PlannedDownTime += d
				first = false
			default:
				e.UnplannedDownTime += d
				e.PlannedBusyTime += d
				if first && pc.Start >= w.Start && pc.Start < end {
					e.DownEvents++
				}
				first = false
			}
		}
	}
	for _, p := range s.parts {
		if p.rec < w.Start || p.rec >= end {
			continue
		}
		if !s.cal.ScheduledAt(p.rec) {
			e.UnscheduledQuantity += uint64(p.qty)
			continue
		}
		e.ProducedQuantity += uint64(p.qty)
		if p.good {
			e.GoodQuantity += uint64(p.qty)
		} else {
			e.ScrapQuantity += uint64(p.qty)
		}
		e.IdealProductionTime += s.ideal * float64(p.qty)
	}
	return e, cuts
}

func fmtMs(ms int64) string { return time.UnixMilli(ms).UTC().Format("15:04:05") }

func closeTo(a, b float64) bool { return math.Abs(a-b) <= 1e-6*math.Max(1, math.Abs(b)) }

func TestPropertyStoredPeriodsEqualReference(t *testing.T) {
	for iter := range 400 {
		honest := iter%2 == 0
		r := rand.New(rand.NewPCG(11, uint64(iter)))
		s := generate(r, honest)
		periods, parts := s.play(t, r)
		first := slices.MinFunc(s.parts, func(a, b propPart) int { return cmpInt(a.rec, b.rec) }).rec
		windows := []Window{{Start: first - 3600*1000, End: s.now}}
		if s.now-first >= 2000 {
			a := first + int64(r.IntN(int(s.now-first)/1000))*1000
			windows = append(windows, Window{Start: a, End: a + int64(r.IntN(int(s.now-a)/1000)+1)*1000})
		}
		for _, w := range windows {
			got := Compute(w, s.now, periods, parts)
			want, cuts := s.reference(w)
			name := fmt.Sprintf("iter %d (honest %v, ideal %v, %d parts, calendar %d shifts, window %s–%s)", iter, honest,
				s.ideal, len(s.parts), len(calendarShifts(s.cal)), fmtMs(w.Start), fmtMs(w.End))
			for _, c := range []struct {
				name      string
				got, want float64
			}{
				{"planned_busy_time", got.PlannedBusyTime, want.PlannedBusyTime},
				{"actual_production_time", got.ActualProductionTime, want.ActualProductionTime},
				{"unplanned_down_time", got.UnplannedDownTime, want.UnplannedDownTime},
				{"planned_down_time", got.PlannedDownTime, want.PlannedDownTime},
				{"produced_quantity", float64(got.ProducedQuantity), float64(want.ProducedQuantity)},
				{"good_quantity", float64(got.GoodQuantity), float64(want.GoodQuantity)},
				{"scrap_quantity", float64(got.ScrapQuantity), float64(want.ScrapQuantity)},
				{"unscheduled_quantity", float64(got.UnscheduledQuantity), float64(want.UnscheduledQuantity)},
				{"late_quantity", float64(got.LateQuantity), 0},
				{"ideal_production_time", got.IdealProductionTime, want.IdealProductionTime},
				{"down_events", float64(got.DownEvents), float64(want.DownEvents)},
				{"calendar_time", got.CalendarTime, want.CalendarTime},
			} {
				if !closeTo(c.got, c.want) {
					t.Fatalf("%s: %s = %v from the stored periods, %v from the parts at once", name, c.name, c.got, c.want)
				}
			}
			ra := got.Ratios()
			if ra.Availability < 0 || ra.Availability > 1 || ra.Quality < 0 || ra.Quality > 1 || ra.Performance < 0 {
				t.Fatalf("%s: availability %v, quality %v, performance %v", name, ra.Availability, ra.Quality, ra.Performance)
			}
			if ra.Performance > 1 && !ra.PerformanceOverIdeal ||
				ra.PerformanceOverIdeal != (got.IdealProductionTime > got.ActualProductionTime) {
				t.Fatalf("%s: performance %v (ideal %v, running %v), performance_over_ideal %v", name, ra.Performance,
					got.IdealProductionTime, got.ActualProductionTime, ra.PerformanceOverIdeal)
			}
			if honest {
				// Parts never faster than ideal: the ideal time fits in
				// the running time but for one part per edge.
				bound := got.ActualProductionTime + float64(cuts)*s.ideal*3
				if got.IdealProductionTime > bound+1e-9 {
					t.Fatalf("%s: ideal time %v over running time %v with %d edges", name, got.IdealProductionTime,
						got.ActualProductionTime, cuts)
				}
				if cuts == 1 && w.Start <= first-3600*1000 && ra.Performance > 1+1e-12 {
					t.Fatalf("%s: performance %v with no edge cutting a run", name, ra.Performance)
				}
			}
		}
	}
}

func calendarShifts(c *period.Calendar) []period.Shift {
	if c == nil {
		return nil
	}
	return c.Shifts
}
