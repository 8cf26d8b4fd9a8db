package period

import (
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// play runs steps on m and fails on the first step whose rows differ.
func play(t *testing.T, m *Machine, steps []step) {
	t.Helper()
	for i, s := range steps {
		var got []Row
		switch {
		case s.part != nil:
			var out Outcome
			got, out = m.Part(*s.part)
			if out != s.out {
				t.Fatalf("step %d: outcome %v, want %v", i, out, s.out)
			}
		case s.assign != nil:
			var err error
			got, err = m.Assign(PeriodID(key, at(s.assign.start)), s.assign.reason)
			if !errors.Is(err, s.err) {
				t.Fatalf("step %d: err %v, want %v", i, err, s.err)
			}
		default:
			got = m.Tick(s.tick)
		}
		if s.want == nil {
			continue
		}
		if g, w := strings.Join(describeAll(got), "\n"), strings.Join(s.want, "\n"); g != w {
			t.Fatalf("step %d rows:\n%s\nwant:\n%s", i, g, w)
		}
	}
}

// TestReasonFollowsStop: a reason is given to a stop and stays on every
// piece of it, and on what is left of it when a late part moves its start
// or splits it; it goes with the stop when a late part bridges it.
func TestReasonFollowsStop(t *testing.T) {
	planned := Reason{ID: 3, Planned: true}
	twoShifts := &Calendar{Loc: time.UTC, Shifts: []Shift{mustShift("A", "06:00", "14:00", ""), mustShift("B", "14:00", "22:00", "")}}
	cases := []struct {
		name  string
		cfg   Config
		steps []step
	}{
		{
			name: "a late part moves the stop's start",
			steps: []step{
				{part: part("08:00:00", 10)},
				{tick: at("08:05:00"), want: []string{"running 07:59:50-08:00:00", "down 08:00:00-open"}},
				{assign: &assignStep{"08:00:00", planned}, want: []string{"planned_down 08:00:00-open +reason 3"}},
				{part: part("08:30:00", 10), want: []string{"planned_down 08:00:00-08:29:50 +reason 3", "running 08:29:50-open"}},
				{part: part("08:00:40", 0), out: Late, want: []string{
					"running 07:59:50-08:00:40", "planned_down 08:00:40-08:29:50 +reason 3",
					"planned_down 08:00:00-08:29:50 +reason 3 deleted"}},
			},
		},
		{
			name: "a late part splits a planned stop into two planned stops",
			steps: []step{
				{part: part("08:00:00", 10)},
				{part: part("08:30:00", 10)},
				{assign: &assignStep{"08:00:00", planned}, want: []string{"planned_down 08:00:00-08:29:50 +reason 3"}},
				{part: part("08:15:00", 30), out: Late, want: []string{
					"planned_down 08:00:00-08:14:30 +reason 3", "running 08:14:30-08:15:00",
					"planned_down 08:15:00-08:29:50 +reason 3"}},
			},
		},
		{
			name: "another reason for one half of a split stop leaves the other half's",
			steps: []step{
				{part: part("08:00:00", 10)},
				{part: part("08:30:00", 10)},
				{assign: &assignStep{"08:00:00", planned}},
				{part: part("08:15:00", 30), out: Late},
				{assign: &assignStep{"08:15:00", Reason{ID: 4}}, want: []string{"down 08:15:00-08:29:50 +reason 4"}},
				{assign: &assignStep{"08:00:00", Reason{}}, want: []string{"down 08:00:00-08:14:30"}},
				{tick: at("09:00:00"), want: []string{"running 08:29:50-08:30:00", "down 08:30:00-open"}},
			},
		},
		{
			name: "a reason given while the stop was open stays on both stops a late part splits it into",
			steps: []step{
				{part: part("08:00:00", 10)},
				{tick: at("08:05:00")},
				{assign: &assignStep{"08:00:00", planned}, want: []string{"planned_down 08:00:00-open +reason 3"}},
				{part: part("08:30:00", 10), want: []string{"planned_down 08:00:00-08:29:50 +reason 3", "running 08:29:50-open"}},
				{part: part("08:15:00", 30), out: Late, want: []string{
					"planned_down 08:00:00-08:14:30 +reason 3", "running 08:14:30-08:15:00",
					"planned_down 08:15:00-08:29:50 +reason 3"}},
			},
		},
		{
			name: "an open stop cut at a shift boundary keeps its reason on the next piece",
			cfg:  Config{Calendar: twoShifts},
			steps: []step{
				{part: part("13:50:00", 10)},
				{tick: at("13:52:00"), want: []string{"running 13:49:50-13:50:00", "down 13:50:00-open"}},
				{assign: &assignStep{"13:50:00", planned}, want: []string{"planned_down 13:50:00-open +reason 3"}},
				{tick: at("14:00:05"), want: []string{"planned_down 13:50:00-14:00:00 +reason 3", "planned_down 14:00:00-open +reason 3"}},
			},
		},
		{
			name: "a stop across an unscheduled night keeps its reason on both shifts' pieces",
			cfg:  Config{Calendar: shifts06to14},
			steps: []step{
				{part: part("13:00:00", 10)},
				{tick: at("13:05:00"), want: []string{"running 12:59:50-13:00:00", "down 13:00:00-open"}},
				{assign: &assignStep{"13:00:00", Reason{ID: 4}}, want: []string{"down 13:00:00-open +reason 4"}},
				{tick: at("30:30:00"), want: []string{"down 13:00:00-14:00:00 +reason 4", "unscheduled 14:00:00-30:00:00",
					"down 30:00:00-open +reason 4"}},
			},
		},
		{
			name: "a late part that bridges the stop takes its reason with it",
			steps: []step{
				{part: part("08:00:00", 0)},
				{part: part("08:01:40", 0)},
				{assign: &assignStep{"08:00:00", planned}, want: []string{"planned_down 08:00:00-08:01:30 +reason 3"}},
				{part: part("08:00:50", 0), out: Late, want: []string{
					"running 07:59:50-open", "planned_down 08:00:00-08:01:30 +reason 3 deleted", "running 08:01:30-open deleted"}},
				{tick: at("08:10:00"), want: []string{"running 07:59:50-08:01:40", "down 08:01:40-open"}},
			},
		},
		{
			name: "the reason of a stop that was not one does not go to the next stop",
			steps: []step{
				{part: part("08:00:10", 10)},
				{tick: at("08:01:30"), want: []string{"running 08:00:00-08:00:10", "down 08:00:10-open"}},
				{assign: &assignStep{"08:00:10", planned}, want: []string{"planned_down 08:00:10-open +reason 3"}},
				// A part recorded within the threshold arrives late:
				// the line never stopped.
				{part: part("08:01:05", 0), want: []string{"running 08:00:00-open", "planned_down 08:00:10-open +reason 3 deleted"}},
				{part: part("08:02:00", 0), want: []string{}},
				{tick: at("08:10:00"), want: []string{"running 08:00:00-08:02:00", "down 08:02:00-open"}},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := New(key, tc.cfg)
			play(t, m, tc.steps)
			checkInvariants(t, m)
		})
	}
}

// TestAssignSpan: an assignment to a period a late part has since moved
// goes to the stop that covers its time now; to time where no stop is left
// it is refused; to time before the machine's rows it is for Relabel.
func TestAssignSpan(t *testing.T) {
	m := New(key, Config{})
	m.Part(*part("08:00:00", 0))
	m.Part(*part("08:10:00", 0)) // down 08:00:00–08:09:50
	m.Part(*part("08:00:30", 0)) // moves it: down 08:00:30–08:09:50
	rows, err := m.AssignSpan(at("08:00:00"), at("08:09:50"), Reason{ID: 7, Planned: true})
	if err != nil || strings.Join(describeAll(rows), "|") != "planned_down 08:00:30-08:09:50 +reason 7" {
		t.Fatalf("assign to the moved stop: %v %v", describeAll(rows), err)
	}
	m.Part(*part("08:01:20", 0))
	m.Part(*part("08:02:10", 0))
	m.Part(*part("08:03:00", 0))
	m.Part(*part("08:04:00", 0))
	m.Part(*part("08:05:00", 0))
	m.Part(*part("08:06:00", 0))
	m.Part(*part("08:07:00", 0))
	m.Part(*part("08:08:00", 0))
	m.Part(*part("08:09:00", 0)) // the stop is bridged
	if _, err := m.AssignSpan(at("08:00:30"), at("08:09:50"), Reason{ID: 7}); !errors.Is(err, ErrNotDown) {
		t.Fatalf("assign to a bridged stop: %v, want ErrNotDown", err)
	}
	if _, err := m.AssignSpan(at("06:00:00"), at("07:00:00"), Reason{ID: 7}); !errors.Is(err, ErrUnknownPeriod) {
		t.Fatalf("assign before the machine's rows: %v, want ErrUnknownPeriod", err)
	}
}

// TestFirstOfStop: the first scheduled piece of a stop is marked, and only
// it, however many pieces shift boundaries, an unscheduled night or a
// planned reason cut the stop into; running rows are never marked.
func TestFirstOfStop(t *testing.T) {
	cal := &Calendar{Loc: time.UTC, Shifts: []Shift{mustShift("A", "06:00", "10:00", ""), mustShift("B", "10:00", "14:00", "")}}
	m := New(key, Config{Calendar: cal})
	m.Part(*part("09:00:00", 10))
	m.Tick(at("09:10:00"))
	m.Assign(PeriodID(key, at("09:00:00")), Reason{ID: 2, Planned: true})
	m.Tick(at("30:30:00")) // across B, the night and into the next A
	m.Assign(PeriodID(key, at("09:00:00")), Reason{ID: 5})
	var got []string
	for _, r := range m.Rows() {
		got = append(got, describe(r)+map[int8]string{0: "", FirstPiece: " first"}[r.FirstOfStop])
	}
	want := []string{"running 08:59:50-09:00:00", "down 09:00:00-10:00:00 +reason 5 first", "down 10:00:00-14:00:00 +reason 5",
		"unscheduled 14:00:00-30:00:00", "down 30:00:00-open +reason 5"}
	if !slices.Equal(got, want) {
		t.Fatalf("rows:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// A stop that begins outside the shifts is first where its scheduled
	// time begins.
	m = New(key, Config{Calendar: shifts06to14})
	m.Part(*part("04:00:00", 10))
	m.Tick(at("06:30:00"))
	rows := m.Rows()
	if n := len(rows); n != 3 || rows[1].State != Unscheduled || rows[1].FirstOfStop != 0 || rows[2].FirstOfStop != FirstPiece {
		t.Fatalf("a stop from the night: %v (%+v)", describeAll(rows), rows)
	}
}

// threeShifts schedules all time in three shifts a day, UTC.
var threeShifts = &Calendar{Loc: time.UTC, Shifts: []Shift{
	mustShift("E", "06:00", "14:00", ""), mustShift("L", "14:00", "22:00", ""), mustShift("N", "22:00", "06:00", "")}}

// TestIdleLineStaysBounded: a line idle for 400 days with three shifts a
// day keeps a bounded state and returns a bounded number of rows per tick
// whether ticked every hour or once after the whole idle time, and every
// piece of its stop is written exactly once.
func TestIdleLineStaysBounded(t *testing.T) {
	const days = 400
	end := at("08:00:00") + days*24*3600*1000
	for _, every := range []int64{3600 * 1000, days * 24 * 3600 * 1000} {
		m := New(key, Config{Calendar: threeShifts})
		m.Part(*part("08:00:00", 10))
		written := map[uint64]Row{}
		maxRows, maxSnap, ticks := 0, 0, 0
		for now := at("08:00:00") + every; ; now += every {
			now = min(now, end)
			for m.Clock() < now {
				rows := m.Tick(now)
				ticks++
				maxRows = max(maxRows, len(rows))
				for _, r := range rows {
					written[r.ID] = r
				}
				b, err := json.Marshal(m.Snapshot())
				if err != nil {
					t.Fatal(err)
				}
				maxSnap = max(maxSnap, len(b))
			}
			if now == end {
				break
			}
		}
		if maxRows > maxTickBoundaries+2 {
			t.Errorf("every %v: a tick returned %d rows", time.Duration(every)*time.Millisecond, maxRows)
		}
		if n := len(m.Snapshot().Rows); n > 6 || maxSnap > 4000 {
			t.Errorf("every %v: %d rows held, snapshot up to %d bytes", time.Duration(every)*time.Millisecond, n, maxSnap)
		}
		// Every piece written once, contiguous, the last open.
		var live []Row
		for _, r := range written {
			if !r.Deleted {
				live = append(live, r)
			}
		}
		slices.SortFunc(live, func(a, b Row) int { return int(a.Start - b.Start) })
		// running 07:59:50–08:00, 08:00–14:00, 14:00–22:00, then three
		// pieces a day for 399 days, and the open one from 06:00.
		if want := 1 + 2 + 3*(days-1) + 1 + 1; len(live) != want {
			t.Errorf("every %v: %d periods written, want %d", time.Duration(every)*time.Millisecond, len(live), want)
		}
		for i := 1; i < len(live); i++ {
			if live[i-1].Open || live[i-1].End != live[i].Start {
				t.Fatalf("every %v: period %d ends at %d, next starts at %d", time.Duration(every)*time.Millisecond, i-1, live[i-1].End, live[i].Start)
			}
		}
		if !live[len(live)-1].Open {
			t.Errorf("the last period is closed")
		}
		t.Logf("every %v: %d ticks, at most %d rows a tick, snapshot at most %d bytes", time.Duration(every)*time.Millisecond, ticks, maxRows, maxSnap)
	}
}

// TestRunningLineStaysBounded: a line that never stops for three days,
// with three shifts a day, keeps only the rows of its lateness window.
func TestRunningLineStaysBounded(t *testing.T) {
	m := New(key, Config{Calendar: threeShifts})
	for i := int64(0); i < 3*24*60; i++ {
		rec := at("08:00:00") + i*60_000
		m.Part(Part{RecordedMs: rec, CycleTime: 60, HasCycleTime: true, IdealCycleTime: 50})
		m.Tick(rec + 1000)
	}
	if n := len(m.Snapshot().Rows); n > 3 {
		t.Fatalf("%d rows held after three days of running: %v", n, describeAll(m.Rows()))
	}
}

// TestDefaultThresholdRounds: thresholds are whole milliseconds, rounded.
func TestDefaultThresholdRounds(t *testing.T) {
	if got := DefaultThreshold(12.02); got != 60100*time.Millisecond {
		t.Errorf("DefaultThreshold(12.02) = %v, want 1m0.1s", got)
	}
	for s, want := range map[float64]time.Duration{64.1: 64100 * time.Millisecond, 0.0005: time.Millisecond, 2.0004: 2 * time.Second} {
		if got := Seconds(s); got != want {
			t.Errorf("Seconds(%v) = %v, want %v", s, got, want)
		}
	}
}

// TestClassify: how parts count: placed in scheduled time, outside the
// shifts, or too late.
func TestClassify(t *testing.T) {
	m := New(key, Config{Calendar: shifts06to14, Lateness: 10 * time.Minute})
	for _, c := range []struct {
		p    *Part
		want Class
	}{
		{part("05:59:00", 0), OutsideShifts},
		{part("06:00:00", 0), Counted}, // [start, end): 06:00 is in the shift
		{part("06:00:50", 0), Counted},
		{part("06:30:00", 0), Counted},
		{part("06:10:00", 0), TooLateToPlace},
		{part("06:25:00", 0), Counted}, // late, placed
		{part("13:59:59", 0), Counted},
		{part("14:00:00", 0), OutsideShifts},
	} {
		_, out := m.Part(*c.p)
		if got := m.Classify(*c.p, out); got != c.want {
			t.Errorf("part at %s (%v): %s, want %s", fmtTime(c.p.RecordedMs), out, got, c.want)
		}
	}
}

// TestRestoreEarlierSnapshot: a snapshot saved before reasons followed
// stops (reasons by piece start) restores with the reason on its stop.
func TestRestoreEarlierSnapshot(t *testing.T) {
	a := New(key, Config{})
	a.Part(*part("08:00:00", 0))
	a.Part(*part("08:10:00", 0))
	b, _ := json.Marshal(a.Snapshot())
	b = append(b[:len(b)-1], fmt.Sprintf(`,"reasons":[{"start":%d,"reason":{"id":6,"planned":true}}]}`, at("08:00:00"))...)
	var old Snapshot
	if err := json.Unmarshal(b, &old); err != nil {
		t.Fatal(err)
	}
	m := Restore(old, Config{})
	rows, _ := m.Part(*part("08:05:00", 0)) // splits the stop
	if got := strings.Join(describeAll(rows), "|"); got != "planned_down 08:00:00-08:04:50 +reason 6|running 08:04:50-08:05:00|planned_down 08:05:00-08:09:50 +reason 6" {
		t.Fatalf("after restore: %s", got)
	}
}

// TestBinariesCarryZoneDatabase: every binary that cuts shifts in a site's
// time zone carries the zone database, so a host without one (no
// /usr/share/zoneinfo, no Go installation) does not cut them in UTC: the
// calendar package itself embeds it (the services would have it anyway as
// long as clickhouse-go embeds it).
func TestBinariesCarryZoneDatabase(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go command")
	}
	for _, pkg := range []string{"github.com/takt/takt/internal/period",
		"github.com/takt/takt/processor/cmd/processor", "github.com/takt/takt/queryapi/cmd/queryapi"} {
		out, err := exec.Command("go", "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list %s: %v\n%s", pkg, err, out)
		}
		if !slices.Contains(strings.Fields(string(out)), "time/tzdata") {
			t.Errorf("%s does not embed time/tzdata", pkg)
		}
	}
}
