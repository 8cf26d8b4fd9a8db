package period

import (
	"errors"
	"math"
	"sort"
)

// Down windows: times a location is down whatever its parts say, because a
// dispatch says so (a breakdown reported until it was completed). A
// window's time is down in the timeline; the rows of it carry the
// dispatch and its type (Row.Dispatch, Row.DispatchType) instead of a
// reason. The rest of the timeline is the runs' as before: a window
// inside a run cuts it, one inside a stop takes that part of the stop, and
// one where the location reported nothing at all stands on its own.
//
// Windows are known by their dispatch: a later window of the same dispatch
// replaces it (the dispatch was closed, or corrected), and RemoveWindow
// takes it away. Like parts, a window is placed when it reaches into the
// lateness window (or when the location has no parts yet); what lies
// before Final is final and stays as it is.

// Window is the down window of a dispatch.
type Window struct {
	Dispatch uint64 `json:"dispatch"`
	// Type is the dispatch's type: the reason the location is down.
	Type  uint64 `json:"type"`
	Start int64  `json:"start"`
	// End is 0 while the dispatch is open.
	End int64 `json:"end,omitempty"`
}

func (w Window) end() int64 {
	if w.End == 0 {
		return math.MaxInt64
	}
	return w.End
}

// ErrDispatchDown means a reason was assigned to a period that is a
// dispatch's down time: its reason is its dispatch type.
var ErrDispatchDown = errors.New("period is a dispatch's down time")

// Window sets the down window of dispatch w.Dispatch and returns the rows
// that changed: InOrder when it was placed, TooLate when it lies wholly
// before the lateness window (or before Final) and changes nothing.
func (m *Machine) Window(w Window) ([]Row, Outcome) {
	for i, old := range m.st.Windows {
		if old.Dispatch == w.Dispatch {
			if old == w {
				return nil, WithinRun
			}
			m.st.Windows[i] = w
			out := m.recompute()
			m.prune()
			return out, InOrder
		}
	}
	if w.End != 0 && (w.End <= m.st.Final || m.st.Newest > 0 && w.End < m.st.Newest-m.cfg.Lateness.Milliseconds()) {
		return nil, TooLate
	}
	m.st.Windows = append(m.st.Windows, w)
	sort.SliceStable(m.st.Windows, func(i, j int) bool { return m.st.Windows[i].Start < m.st.Windows[j].Start })
	out := m.recompute()
	m.prune()
	return out, InOrder
}

// RemoveWindow takes away the down window of dispatch and returns the rows
// that changed (none when the machine holds no such window).
func (m *Machine) RemoveWindow(dispatch uint64) []Row {
	for i, w := range m.st.Windows {
		if w.Dispatch == dispatch {
			m.st.Windows = append(m.st.Windows[:i], m.st.Windows[i+1:]...)
			out := m.recompute()
			m.prune()
			return out
		}
	}
	return nil
}

// seg is a stretch of the timeline before it is cut at shift boundaries:
// its state, and, for a window's down time, the window.
type seg struct {
	state      State
	start, end int64
	open       bool
	// win is the window of a dispatch's down time (nil: the runs' time).
	win *Window
	// from, to and open0 are the stretch of the runs' timeline a piece
	// comes from (its stop, for the reason of down time); cont marks down
	// time that continues down time before it (no new stop).
	from, to int64
	open0    bool
	cont     bool
}

// overlay lays the windows over the runs' segments: a window's time is
// down (the earliest window that holds an instant names its dispatch), the
// rest keeps its state. Segments must be in order and disjoint.
func (m *Machine) overlay(segs []seg) []seg {
	const inf = int64(math.MaxInt64)
	var cuts []int64
	for i := range segs {
		s := &segs[i]
		s.from, s.to, s.open0 = s.start, s.end, s.open
		if s.open {
			s.end = inf
		}
		cuts = append(cuts, s.start, s.end)
	}
	for _, w := range m.st.Windows {
		cuts = append(cuts, w.Start, w.end())
	}
	sort.Slice(cuts, func(i, j int) bool { return cuts[i] < cuts[j] })
	var out []seg
	si := 0
	for i := 0; i+1 < len(cuts); i++ {
		a, b := cuts[i], cuts[i+1]
		if a == b {
			continue
		}
		var win *Window
		for j := range m.st.Windows {
			if w := &m.st.Windows[j]; w.Start <= a && w.end() >= b {
				win = w
				break
			}
		}
		for si < len(segs) && segs[si].end <= a {
			si++
		}
		var base *seg
		if si < len(segs) && segs[si].start <= a {
			base = &segs[si]
		}
		var p seg
		switch {
		case win != nil:
			p = seg{state: Down, start: a, end: b, win: win}
		case base != nil:
			p = *base
			p.start, p.end, p.win = a, b, nil
		default:
			continue
		}
		if n := len(out); n > 0 && out[n-1].end == a {
			last := &out[n-1]
			sameWin := p.win != nil && last.win != nil && last.win.Dispatch == p.win.Dispatch
			sameBase := p.win == nil && last.win == nil && last.from == p.from && last.state == p.state
			if sameWin || sameBase {
				last.end = b
				continue
			}
			p.cont = p.state == Down && (last.state == Down)
		}
		out = append(out, p)
	}
	for i := range out {
		if out[i].end == inf {
			out[i].open, out[i].end = true, 0
		} else {
			out[i].open = false
		}
	}
	return out
}
