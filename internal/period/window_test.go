package period

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

// describeW is describe with a row's dispatch and first-of-stop mark.
func describeW(r Row) string {
	s := describe(r)
	if r.Dispatch != 0 {
		s += fmt.Sprintf(" dispatch %d/%d", r.Dispatch, r.DispatchType)
	}
	if r.FirstOfStop == FirstPiece {
		s += " first"
	}
	return s
}

func liveRows(m *Machine) []string {
	var out []string
	for _, r := range m.Rows() {
		out = append(out, describeW(r))
	}
	return out
}

// partsEvery feeds parts every step from from to to (inclusive).
func partsEvery(m *Machine, from, to string, step time.Duration) {
	for t := at(from); t <= at(to); t += step.Milliseconds() {
		m.Part(Part{RecordedMs: t})
	}
}

func windowAt(dispatch uint64, from, to string) Window {
	w := Window{Dispatch: dispatch, Type: 90 + dispatch, Start: at(from)}
	if to != "" {
		w.End = at(to)
	}
	return w
}

// TestWindows: a dispatch's down window in the timeline, table by table.
func TestWindows(t *testing.T) {
	cfg := Config{Threshold: time.Minute}
	tests := []struct {
		name string
		run  func(m *Machine) ([]Row, Outcome)
		want []string
		out  Outcome
	}{
		{"inside a run it cuts the run", func(m *Machine) ([]Row, Outcome) {
			partsEvery(m, "10:00:00", "10:59:30", 30*time.Second)
			return m.Window(windowAt(1, "10:20:00", "10:30:00"))
		}, []string{"running 10:00:00-10:20:00", "down 10:20:00-10:30:00 dispatch 1/91 first", "running 10:30:00-open"}, InOrder},
		{"open, it holds the location down while parts come", func(m *Machine) ([]Row, Outcome) {
			partsEvery(m, "10:00:00", "10:10:00", 30*time.Second)
			m.Window(windowAt(1, "10:05:00", ""))
			partsEvery(m, "10:10:30", "10:20:00", 30*time.Second)
			return nil, InOrder
		}, []string{"running 10:00:00-10:05:00", "down 10:05:00-open dispatch 1/91 first"}, InOrder},
		{"inside a stop it is no new stop", func(m *Machine) ([]Row, Outcome) {
			partsEvery(m, "10:00:00", "10:10:00", 30*time.Second)
			partsEvery(m, "10:40:00", "10:50:00", 30*time.Second)
			return m.Window(windowAt(2, "10:20:00", "10:30:00"))
		}, []string{"running 10:00:00-10:10:00", "down 10:10:00-10:20:00 first", "down 10:20:00-10:30:00 dispatch 2/92",
			"down 10:30:00-10:40:00", "running 10:40:00-open"}, InOrder},
		{"across a stop's start it takes the stop over", func(m *Machine) ([]Row, Outcome) {
			partsEvery(m, "10:00:00", "10:10:00", 30*time.Second)
			partsEvery(m, "10:40:00", "10:50:00", 30*time.Second)
			return m.Window(windowAt(2, "10:05:00", "10:30:00"))
		}, []string{"running 10:00:00-10:05:00", "down 10:05:00-10:30:00 dispatch 2/92 first", "down 10:30:00-10:40:00",
			"running 10:40:00-open"}, InOrder},
		{"without parts it stands alone", func(m *Machine) ([]Row, Outcome) {
			return m.Window(windowAt(3, "10:00:00", "10:34:00"))
		}, []string{"down 10:00:00-10:34:00 dispatch 3/93 first"}, InOrder},
		{"overlapping windows: the earlier names the time", func(m *Machine) ([]Row, Outcome) {
			m.Window(windowAt(4, "10:00:00", "10:30:00"))
			return m.Window(windowAt(5, "10:20:00", "10:50:00"))
		}, []string{"down 10:00:00-10:30:00 dispatch 4/94 first", "down 10:30:00-10:50:00 dispatch 5/95"}, InOrder},
		{"wholly before the lateness window it is too late", func(m *Machine) ([]Row, Outcome) {
			partsEvery(m, "12:00:00", "12:10:00", 30*time.Second)
			return m.Window(windowAt(6, "10:00:00", "10:34:00"))
		}, []string{"running 12:00:00-open"}, TooLate},
		{"reaching into the lateness window it is placed", func(m *Machine) ([]Row, Outcome) {
			partsEvery(m, "11:00:00", "11:40:00", 30*time.Second)
			return m.Window(windowAt(6, "10:00:00", "11:05:00"))
		}, []string{"down 10:00:00-11:05:00 dispatch 6/96 first", "running 11:05:00-open"}, InOrder},
		{"the same window again changes nothing", func(m *Machine) ([]Row, Outcome) {
			m.Window(windowAt(7, "10:00:00", "10:10:00"))
			return m.Window(windowAt(7, "10:00:00", "10:10:00"))
		}, []string{"down 10:00:00-10:10:00 dispatch 7/97 first"}, WithinRun},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New(key, cfg)
			_, out := tt.run(m)
			if got := liveRows(m); !slices.Equal(got, tt.want) || out != tt.out {
				t.Errorf("rows\n %q, outcome %v\nwant\n %q, outcome %v", got, out, tt.want, tt.out)
			}
			// What the machine returned over time adds up to what it holds.
			back := Restore(m.Snapshot(), cfg)
			if got := liveRows(back); !slices.Equal(got, tt.want) {
				t.Errorf("restored: %q", got)
			}
		})
	}
}

// TestWindowLifecycle: open, closed, removed; the rows returned at each
// step, written as a store would keep them (by id, highest version), end
// where the machine is.
func TestWindowLifecycle(t *testing.T) {
	m := New(key, Config{Threshold: time.Minute})
	stored := map[uint64]Row{}
	keep := func(rows []Row) {
		for _, r := range rows {
			if old, ok := stored[r.ID]; !ok || r.Version > old.Version {
				stored[r.ID] = r
			}
		}
	}
	check := func(step string) {
		t.Helper()
		var got []string
		for _, r := range stored {
			if !r.Deleted {
				got = append(got, describeW(r))
			}
		}
		slices.Sort(got)
		want := liveRows(m)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: stored %q, machine %q", step, got, want)
		}
	}
	for ts := at("10:00:00"); ts <= at("10:30:00"); ts += 30_000 {
		rows, _ := m.Part(Part{RecordedMs: ts})
		keep(rows)
	}
	rows, _ := m.Window(windowAt(8, "10:10:00", ""))
	keep(rows)
	check("opened")
	keep(m.Tick(at("10:31:00")))
	rows, _ = m.Window(windowAt(8, "10:10:00", "10:20:00"))
	keep(rows)
	check("closed")
	if got := liveRows(m); !slices.Equal(got, []string{"running 10:00:00-10:10:00", "down 10:10:00-10:20:00 dispatch 8/98 first",
		"running 10:20:00-open"}) {
		t.Errorf("closed: %q", got)
	}
	keep(m.RemoveWindow(8))
	check("removed")
	if got := liveRows(m); !slices.Equal(got, []string{"running 10:00:00-open"}) {
		t.Errorf("removed: %q", got)
	}
	if rows := m.RemoveWindow(8); rows != nil {
		t.Errorf("removing it again: %v", rows)
	}
}

// TestWindowShiftsAndReasons: a window's time outside the shifts is
// unscheduled, an open window is cut at the boundaries the clock passes,
// and its rows take no reason.
func TestWindowShiftsAndReasons(t *testing.T) {
	cal, _, err := Calendars(time.UTC, []LineShift{{Code: "A", Start: "06:00", End: "14:00", Days: "mon,tue,wed,thu,fri,sat,sun"}})
	if err != nil {
		t.Fatal(err)
	}
	m := New(key, Config{Threshold: time.Minute, Calendar: cal})
	m.Window(windowAt(9, "13:00:00", ""))
	m.Tick(at("14:30:00"))
	want := []string{"down 13:00:00-14:00:00 dispatch 9/99 first", "unscheduled 14:00:00-open"}
	if got := liveRows(m); !slices.Equal(got, want) {
		t.Errorf("open across the shift's end: %q, want %q", got, want)
	}
	id := m.Rows()[0].ID
	if _, err := m.Assign(id, Reason{ID: 5}); !errors.Is(err, ErrDispatchDown) {
		t.Errorf("a reason for a dispatch's down time: %v", err)
	}
	b, err := json.Marshal(m.Snapshot())
	if err != nil {
		t.Fatal(err)
	}
	var st Snapshot
	if err := json.Unmarshal(b, &st); err != nil || len(st.Windows) != 1 || st.Windows[0] != windowAt(9, "13:00:00", "") {
		t.Errorf("snapshot windows: %+v %v", st.Windows, err)
	}
}

// TestWindowsLeaveWithFinal: windows wholly before Final are forgotten with
// the rows there.
func TestWindowsLeaveWithFinal(t *testing.T) {
	m := New(key, Config{Threshold: time.Minute})
	partsEvery(m, "08:00:00", "08:10:00", 30*time.Second)
	m.Window(windowAt(10, "08:02:00", "08:04:00"))
	partsEvery(m, "10:00:00", "10:10:00", 30*time.Second)
	if n := len(m.Snapshot().Windows); n != 0 {
		t.Errorf("%d windows kept before Final %s", n, fmtTime(m.Snapshot().Final))
	}
	if got := liveRows(m); !slices.Equal(got, []string{"down 08:10:00-10:00:00 first", "running 10:00:00-open"}) &&
		!slices.Equal(got, []string{"running 10:00:00-open"}) {
		t.Errorf("rows after Final moved: %q", got)
	}
}
