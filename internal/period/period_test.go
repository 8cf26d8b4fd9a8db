package period

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"
)

var key = Key{Kind: "line", ID: 7}

// t0 is 2024-03-04 (a Monday) 00:00 UTC.
var t0 = time.Date(2024, 3, 4, 0, 0, 0, 0, time.UTC).UnixMilli()

// at returns t0 + "HH:MM:SS".
func at(hms string) int64 {
	var h, m, s int
	if _, err := fmt.Sscanf(hms, "%d:%d:%d", &h, &m, &s); err != nil {
		panic(hms)
	}
	return t0 + int64(h*3600+m*60+s)*1000
}

// step is one input; want are the rows it must return, written as
// "state start-end" (end "open"), with "+reason N" or " deleted".
type step struct {
	part   *Part
	tick   int64
	assign *assignStep
	want   []string
	out    Outcome
	err    error
}

type assignStep struct {
	start  string // start of the period to assign to
	reason Reason
}

func part(hms string, ct float64) *Part {
	return &Part{RecordedMs: at(hms), CycleTime: ct, HasCycleTime: ct > 0, IdealCycleTime: 10}
}

func fmtTime(ms int64) string {
	d := time.Duration(ms-t0) * time.Millisecond
	h := int(d / time.Hour)
	m := int(d % time.Hour / time.Minute)
	s := int(d % time.Minute / time.Second)
	return fmt.Sprintf("%02d:%02d:%02d", h, m, s)
}

func describe(r Row) string {
	var b strings.Builder
	end := "open"
	if !r.Open {
		end = fmtTime(r.End)
	}
	fmt.Fprintf(&b, "%s %s-%s", r.State, fmtTime(r.Start), end)
	if r.Reason != 0 {
		fmt.Fprintf(&b, " +reason %d", r.Reason)
	}
	if r.Deleted {
		b.WriteString(" deleted")
	}
	return b.String()
}

func describeAll(rows []Row) []string {
	out := []string{}
	for _, r := range rows {
		out = append(out, describe(r))
	}
	return out
}

// shifts06to14 is one shift, 06:00–14:00 every day, UTC.
var shifts06to14 = &Calendar{Loc: time.UTC, Shifts: []Shift{mustShift("A", "06:00", "14:00", "")}}

func mustShift(name, start, end, days string) Shift {
	s, err := ParseShift(name, start, end, days)
	if err != nil {
		panic(err)
	}
	return s
}

func TestTransitions(t *testing.T) {
	// Ideal cycle time 10 s → default threshold 60 s unless set, and a
	// part without a cycle time started 10 s before its recorded_at.
	cases := []struct {
		name  string
		cfg   Config
		steps []step
	}{
		{
			name: "first part opens running from its production start",
			steps: []step{
				{part: part("08:00:10", 10), want: []string{"running 08:00:00-open"}},
			},
		},
		{
			name: "first part without cycle time opens running one ideal cycle before recorded_at",
			steps: []step{
				{part: part("08:00:10", 0), want: []string{"running 08:00:00-open"}},
			},
		},
		{
			name: "a part of several without cycle time started ideal cycle time × quantity before",
			steps: []step{
				{part: &Part{RecordedMs: at("08:10:00"), IdealCycleTime: 60, Quantity: 10}, want: []string{"running 08:00:00-open"}},
			},
		},
		{
			name: "a part of a product without ideal cycle time and without cycle time starts at recorded_at",
			steps: []step{
				{part: &Part{RecordedMs: at("08:10:00")}, want: []string{"running 08:10:00-open"}},
			},
		},
		{
			name: "gap within threshold is run time",
			steps: []step{
				{part: part("08:00:10", 10), want: []string{"running 08:00:00-open"}},
				{part: part("08:01:10", 10), want: []string{}},
				{part: part("08:02:00", 0), want: []string{}},
			},
		},
		{
			name: "gap over threshold is down until the next part's production start",
			steps: []step{
				{part: part("08:00:10", 10), want: []string{"running 08:00:00-open"}},
				{part: part("08:05:00", 20), want: []string{
					"running 08:00:00-08:00:10", "down 08:00:10-08:04:40", "running 08:04:40-open"}},
			},
		},
		{
			name: "gap over threshold without cycle time is down until one ideal cycle before the part",
			steps: []step{
				{part: part("08:00:00", 0), want: []string{"running 07:59:50-open"}},
				{part: part("08:05:00", 0), want: []string{
					"running 07:59:50-08:00:00", "down 08:00:00-08:04:50", "running 08:04:50-open"}},
			},
		},
		{
			name: "cycle time covering the whole gap leaves no down",
			steps: []step{
				{part: part("08:00:10", 10), want: []string{"running 08:00:00-open"}},
				{part: part("08:03:00", 300), want: []string{"running 08:00:00-08:00:10", "running 08:00:10-open"}},
			},
		},
		{
			name: "per-location threshold overrides the derived one",
			cfg:  Config{Threshold: 5 * time.Minute},
			steps: []step{
				{part: part("08:00:00", 0), want: []string{"running 07:59:50-open"}},
				{part: part("08:04:00", 0), want: []string{}},
				{part: part("08:09:01", 0), want: []string{
					"running 07:59:50-08:04:00", "down 08:04:00-08:08:51", "running 08:08:51-open"}},
			},
		},
		{
			name: "tick before the threshold changes nothing, after it opens down",
			steps: []step{
				{part: part("08:00:10", 10), want: []string{"running 08:00:00-open"}},
				{tick: at("08:01:10"), want: nil},
				{tick: at("08:01:11"), want: []string{"running 08:00:00-08:00:10", "down 08:00:10-open"}},
				{tick: at("08:05:00"), want: nil},
			},
		},
		{
			name: "a part ends tick-detected downtime",
			steps: []step{
				{part: part("08:00:10", 10), want: []string{"running 08:00:00-open"}},
				{tick: at("08:02:00"), want: []string{"running 08:00:00-08:00:10", "down 08:00:10-open"}},
				{part: part("08:10:00", 30), want: []string{"down 08:00:10-08:09:30", "running 08:09:30-open"}},
			},
		},
		{
			name: "a part that arrives after tick-detected down but was recorded within threshold undoes the down",
			steps: []step{
				{part: part("08:00:10", 10), want: []string{"running 08:00:00-open"}},
				{tick: at("08:01:30"), want: []string{"running 08:00:00-08:00:10", "down 08:00:10-open"}},
				{tick: at("08:01:40")},
				{part: part("08:01:05", 0), out: InOrder, want: []string{"running 08:00:00-open", "down 08:00:10-open deleted"}},
			},
		},
		{
			name: "tick crossing shift end closes running and opens unscheduled",
			cfg:  Config{Calendar: shifts06to14},
			steps: []step{
				{part: part("13:59:00", 0), want: []string{"running 13:58:50-open"}},
				{part: part("13:59:50", 0), want: []string{}},
				{tick: at("14:00:05"), want: []string{"running 13:58:50-14:00:00", "unscheduled 14:00:00-open"}},
			},
		},
		{
			name: "parts outside shifts are unscheduled",
			cfg:  Config{Calendar: shifts06to14},
			steps: []step{
				{part: part("05:00:00", 0), want: []string{"unscheduled 04:59:50-open"}},
				{part: part("05:00:30", 0), want: []string{}},
				{part: part("06:00:20", 0), want: []string{
					"unscheduled 04:59:50-05:00:30", "unscheduled 05:00:30-06:00:00",
					"down 06:00:00-06:00:10", "running 06:00:10-open"}},
			},
		},
		{
			name: "a stop across the shift end is down, unscheduled, down",
			cfg:  Config{Calendar: &Calendar{Loc: time.UTC, Shifts: []Shift{mustShift("A", "06:00", "14:00", ""), mustShift("B", "15:00", "22:00", "")}}},
			steps: []step{
				{part: part("13:00:00", 0), want: []string{"running 12:59:50-open"}},
				{part: part("16:00:00", 0), want: []string{
					"running 12:59:50-13:00:00", "down 13:00:00-14:00:00", "unscheduled 14:00:00-15:00:00",
					"down 15:00:00-15:59:50", "running 15:59:50-open"}},
			},
		},
		{
			name: "adjacent shifts split a period at their boundary",
			cfg:  Config{Calendar: &Calendar{Loc: time.UTC, Shifts: []Shift{mustShift("A", "06:00", "14:00", ""), mustShift("B", "14:00", "22:00", "")}}},
			steps: []step{
				{part: part("13:59:30", 0), want: []string{"running 13:59:20-open"}},
				{part: part("14:00:20", 0), want: []string{"running 13:59:20-14:00:00", "running 14:00:00-open"}},
			},
		},
		{
			name: "a part exactly on a shift boundary opens the next shift's period",
			cfg:  Config{Calendar: &Calendar{Loc: time.UTC, Shifts: []Shift{mustShift("A", "06:00", "14:00", ""), mustShift("B", "14:00", "22:00", "")}}},
			steps: []step{
				{part: part("13:59:30", 0), want: []string{"running 13:59:20-open"}},
				{part: part("14:00:00", 0), want: []string{"running 13:59:20-14:00:00", "running 14:00:00-open"}},
				{part: part("14:00:40", 0), want: []string{}},
				{tick: at("22:00:10"), want: []string{"running 14:00:00-14:00:40", "down 14:00:40-22:00:00", "unscheduled 22:00:00-open"}},
			},
		},
		{
			name: "planned reason makes planned_down, unplanned keeps down, removal restores",
			steps: []step{
				{part: part("08:00:00", 0), want: []string{"running 07:59:50-open"}},
				{part: part("08:10:00", 0), want: []string{"running 07:59:50-08:00:00", "down 08:00:00-08:09:50", "running 08:09:50-open"}},
				{assign: &assignStep{"08:00:00", Reason{ID: 3, Planned: true}}, want: []string{"planned_down 08:00:00-08:09:50 +reason 3"}},
				{assign: &assignStep{"08:00:00", Reason{ID: 4}}, want: []string{"down 08:00:00-08:09:50 +reason 4"}},
				{assign: &assignStep{"08:00:00", Reason{}}, want: []string{"down 08:00:00-08:09:50"}},
			},
		},
		{
			name: "reason on an open down period survives its closing",
			steps: []step{
				{part: part("08:00:00", 0), want: []string{"running 07:59:50-open"}},
				{tick: at("08:05:00"), want: []string{"running 07:59:50-08:00:00", "down 08:00:00-open"}},
				{assign: &assignStep{"08:00:00", Reason{ID: 9, Planned: true}}, want: []string{"planned_down 08:00:00-open +reason 9"}},
				{part: part("08:30:00", 0), want: []string{"planned_down 08:00:00-08:29:50 +reason 9", "running 08:29:50-open"}},
			},
		},
		{
			name: "a reason cannot go to a running period or an unknown one",
			steps: []step{
				{part: part("08:00:00", 0), want: []string{"running 07:59:50-open"}},
				{assign: &assignStep{"07:59:50", Reason{ID: 1}}, err: ErrNotDown},
				{assign: &assignStep{"09:00:00", Reason{ID: 1}}, err: ErrUnknownPeriod},
			},
		},
		{
			name: "a late part inside a down period splits it",
			steps: []step{
				{part: part("08:00:00", 0), want: []string{"running 07:59:50-open"}},
				{part: part("08:10:00", 0), want: []string{"running 07:59:50-08:00:00", "down 08:00:00-08:09:50", "running 08:09:50-open"}},
				{part: part("08:05:00", 30), out: Late, want: []string{
					"down 08:00:00-08:04:30", "running 08:04:30-08:05:00", "down 08:05:00-08:09:50"}},
			},
		},
		{
			name: "a late part that bridges the gap removes the down period",
			steps: []step{
				{part: part("08:00:00", 0), want: []string{"running 07:59:50-open"}},
				{part: part("08:01:40", 0), want: []string{"running 07:59:50-08:00:00", "down 08:00:00-08:01:30", "running 08:01:30-open"}},
				{part: part("08:00:50", 0), out: Late, want: []string{
					"running 07:59:50-open", "down 08:00:00-08:01:30 deleted", "running 08:01:30-open deleted"}},
			},
		},
		{
			name: "a late part close to the earlier run moves the down period's start",
			steps: []step{
				{part: part("08:00:00", 0), want: []string{"running 07:59:50-open"}},
				{part: part("08:10:00", 0), want: []string{"running 07:59:50-08:00:00", "down 08:00:00-08:09:50", "running 08:09:50-open"}},
				{part: part("08:00:30", 0), out: Late, want: []string{
					"running 07:59:50-08:00:30", "down 08:00:30-08:09:50", "down 08:00:00-08:09:50 deleted"}},
			},
		},
		{
			name: "a late part close to the later run moves its start",
			steps: []step{
				{part: part("08:00:00", 0), want: []string{"running 07:59:50-open"}},
				{part: part("08:10:00", 0), want: []string{"running 07:59:50-08:00:00", "down 08:00:00-08:09:50", "running 08:09:50-open"}},
				{part: part("08:09:30", 10), out: Late, want: []string{
					"down 08:00:00-08:09:20", "running 08:09:20-open", "running 08:09:50-open deleted"}},
			},
		},
		{
			name: "the reason of a split stop stays on both stops",
			steps: []step{
				{part: part("08:00:00", 0)},
				{part: part("08:10:00", 0)},
				{assign: &assignStep{"08:00:00", Reason{ID: 5}}, want: []string{"down 08:00:00-08:09:50 +reason 5"}},
				{part: part("08:05:00", 0), out: Late, want: []string{
					"down 08:00:00-08:04:50 +reason 5", "running 08:04:50-08:05:00", "down 08:05:00-08:09:50 +reason 5"}},
			},
		},
		{
			name: "a late part inside a run changes nothing",
			steps: []step{
				{part: part("08:00:00", 0)},
				{part: part("08:00:50", 0), want: []string{}},
				{part: part("08:00:20", 0), out: WithinRun, want: nil},
			},
		},
		{
			name: "a replayed part changes nothing",
			steps: []step{
				{part: part("08:00:00", 0)},
				{part: part("08:10:00", 0)},
				{part: part("08:00:00", 0), out: WithinRun, want: nil},
				{part: part("08:10:00", 0), out: WithinRun, want: nil},
			},
		},
		{
			name: "a part older than the allowed lateness is too late",
			cfg:  Config{Lateness: 10 * time.Minute},
			steps: []step{
				{part: part("08:00:00", 0)},
				{part: part("08:30:00", 0)},
				{part: part("08:19:59", 0), out: TooLate, want: nil},
				{part: part("08:20:00", 0), out: Late, want: []string{
					"down 08:00:00-08:19:50", "running 08:19:50-08:20:00", "down 08:20:00-08:29:50"}},
			},
		},
		{
			name: "periods that left the lateness window are final",
			cfg:  Config{Lateness: 10 * time.Minute},
			steps: []step{
				{part: part("08:00:00", 0)},
				{part: part("08:30:00", 0)},
				{part: part("09:00:00", 0)},
				// The rows before the one holding the lateness horizon
				// (08:50, in the down period from 08:30) are final.
				{part: part("08:15:00", 0), out: TooLate, want: nil},
				{part: part("08:55:00", 0), out: Late, want: []string{
					"down 08:30:00-08:54:50", "running 08:54:50-08:55:00", "down 08:55:00-08:59:50"}},
			},
		},
		{
			name: "a late part's production start does not reach into final rows",
			cfg:  Config{Lateness: 10 * time.Minute},
			steps: []step{
				{part: part("08:00:00", 0)},
				{part: part("08:30:00", 0)},
				{part: part("09:00:00", 0)},
				// Final is 08:30; the part's 30 min cycle would start
				// at 08:25. The stop from 08:30 becomes a running
				// period of the same id.
				{part: part("08:55:00", 1800), out: Late, want: []string{
					"running 08:30:00-08:55:00", "down 08:55:00-08:59:50"}},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := New(key, tc.cfg)
			for i, s := range tc.steps {
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
				if s.want == nil && s.part != nil && s.out == InOrder {
					continue // a set-up step without expectation
				}
				if g, w := strings.Join(describeAll(got), "\n"), strings.Join(s.want, "\n"); g != w {
					t.Fatalf("step %d rows:\n%s\nwant:\n%s", i, g, w)
				}
			}
			checkInvariants(t, m)
		})
	}
}

// checkInvariants: live rows are contiguous, ordered, with one open row at
// the end, and ids match starts.
func checkInvariants(t *testing.T, m *Machine) {
	t.Helper()
	rows := m.Rows()
	for i, r := range rows {
		if r.ID != PeriodID(key, r.Start) {
			t.Errorf("row %d: id does not match start", i)
		}
		if r.Open != (i == len(rows)-1) {
			t.Errorf("row %d: open=%v", i, r.Open)
		}
		if i > 0 && rows[i-1].End != r.Start {
			t.Errorf("row %d starts at %s, previous ends at %s", i, fmtTime(r.Start), fmtTime(rows[i-1].End))
		}
	}
}

func TestVersionsIncreasePerLocation(t *testing.T) {
	m := New(key, Config{})
	seen := map[uint64]uint64{}
	var last uint64
	check := func(rows []Row) {
		for _, r := range rows {
			if r.Version <= last {
				t.Fatalf("version %d after %d", r.Version, last)
			}
			if r.Version <= seen[r.ID] {
				t.Fatalf("id %d: version %d after %d", r.ID, r.Version, seen[r.ID])
			}
			seen[r.ID], last = r.Version, r.Version
		}
	}
	for _, hms := range []string{"08:00:00", "08:10:00", "08:00:50", "08:01:40", "08:05:00", "08:20:00"} {
		rows, _ := m.Part(*part(hms, 0))
		check(rows)
	}
	check(m.Tick(at("09:00:00")))
}

func TestDefaultThreshold(t *testing.T) {
	for _, tc := range []struct {
		ideal float64
		want  time.Duration
	}{
		{0, 300 * time.Second},
		{-1, 300 * time.Second},
		{1, 60 * time.Second},
		{12, 60 * time.Second},
		{45, 225 * time.Second},
		{0.5, 60 * time.Second},
	} {
		if got := DefaultThreshold(tc.ideal); got != tc.want {
			t.Errorf("DefaultThreshold(%v) = %v, want %v", tc.ideal, got, tc.want)
		}
	}
}

func TestThresholdFollowsProductOfEarlierPart(t *testing.T) {
	m := New(key, Config{})
	// Product with ideal 45 s: threshold 225 s after this part.
	m.Part(Part{RecordedMs: at("08:00:00"), IdealCycleTime: 45})
	if rows, _ := m.Part(Part{RecordedMs: at("08:03:00"), IdealCycleTime: 10}); len(rows) != 0 {
		t.Fatalf("180 s gap after a 45 s product is run time, got %v", describeAll(rows))
	}
	// Now the 10 s product's 60 s threshold judges the next gap.
	rows, _ := m.Part(Part{RecordedMs: at("08:04:30"), IdealCycleTime: 10})
	if len(rows) != 3 || rows[1].State != Down {
		t.Fatalf("90 s gap after a 10 s product is down, got %v", describeAll(rows))
	}
}

// TestSnapshotRestore checks that a machine restored from its JSON
// snapshot behaves exactly like the original.
func TestSnapshotRestore(t *testing.T) {
	cfg := Config{Calendar: shifts06to14, Lateness: 30 * time.Minute}
	events := []Part{*part("06:30:00", 5), *part("06:30:40", 5), *part("06:40:00", 5), *part("06:35:00", 0)}
	a := New(key, cfg)
	for _, p := range events {
		a.Part(p)
	}
	a.Tick(at("06:45:00"))
	a.Assign(PeriodID(key, at("06:30:40")), Reason{ID: 2, Planned: true})
	b0, err := json.Marshal(a.Snapshot())
	if err != nil {
		t.Fatal(err)
	}
	var snap Snapshot
	if err := json.Unmarshal(b0, &snap); err != nil {
		t.Fatal(err)
	}
	b := Restore(snap, cfg)
	more := []Part{*part("06:50:00", 0), *part("06:47:00", 0), *part("13:59:00", 0)}
	for _, p := range more {
		ra, oa := a.Part(p)
		rb, ob := b.Part(p)
		if oa != ob || strings.Join(describeAll(ra), "|") != strings.Join(describeAll(rb), "|") {
			t.Fatalf("after restore: %v %v vs %v %v", oa, describeAll(ra), ob, describeAll(rb))
		}
	}
	ra, rb := a.Tick(at("14:10:00")), b.Tick(at("14:10:00"))
	if strings.Join(describeAll(ra), "|") != strings.Join(describeAll(rb), "|") {
		t.Fatalf("tick after restore: %v vs %v", describeAll(ra), describeAll(rb))
	}
	if a.Snapshot().Seq != b.Snapshot().Seq {
		t.Fatalf("seq %d vs %d", a.Snapshot().Seq, b.Snapshot().Seq)
	}
}

// TestOrderIndependence feeds random parts in random order (all within the
// allowed lateness) and checks that the live rows equal those of the same
// parts fed in time order, and that applying the returned rows as
// ReplacingMergeTree would (highest version per id, deleted dropped) gives
// the machine's live rows.
func TestOrderIndependence(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	cfgs := []Config{{}, {Calendar: shifts06to14}}
	for iter := range 200 {
		cfg := cfgs[iter%2]
		n := 2 + r.IntN(12)
		parts := make([]Part, n)
		for i := range parts {
			parts[i] = Part{RecordedMs: at("05:50:00") + int64(r.IntN(40*60))*1000, IdealCycleTime: 10}
			if r.IntN(2) == 0 {
				parts[i].CycleTime, parts[i].HasCycleTime = float64(r.IntN(120)), true
			}
		}
		sorted := append([]Part(nil), parts...)
		sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].RecordedMs < sorted[j].RecordedMs })
		a, b := New(key, cfg), New(key, cfg)
		table := map[uint64]Row{}
		for _, p := range parts {
			rows, _ := a.Part(p)
			for _, row := range rows {
				if row.Version <= table[row.ID].Version {
					t.Fatalf("iter %d: version went back", iter)
				}
				table[row.ID] = row
			}
		}
		for _, p := range sorted {
			b.Part(p)
		}
		// Cycle times of parts that share a recorded_at with an earlier
		// one are ignored, so order among equal times may matter: skip
		// such draws.
		if hasEqualTimes(sorted) {
			continue
		}
		ga, gb := describeAll(a.Rows()), describeAll(b.Rows())
		if strings.Join(ga, "|") != strings.Join(gb, "|") {
			t.Fatalf("iter %d: shuffled:\n%s\nsorted:\n%s", iter, strings.Join(ga, "\n"), strings.Join(gb, "\n"))
		}
		var live []Row
		for _, row := range table {
			if !row.Deleted {
				live = append(live, row)
			}
		}
		sort.Slice(live, func(i, j int) bool { return live[i].Start < live[j].Start })
		if strings.Join(describeAll(live), "|") != strings.Join(ga, "|") {
			t.Fatalf("iter %d: table view:\n%s\nmachine:\n%s", iter, strings.Join(describeAll(live), "\n"), strings.Join(ga, "\n"))
		}
	}
}

func hasEqualTimes(ps []Part) bool {
	for i := 1; i < len(ps); i++ {
		if ps[i].RecordedMs == ps[i-1].RecordedMs {
			return true
		}
	}
	return false
}

// TestRelabelFinalPeriod: a down period that has left the lateness window
// can still get a reason; a period in the window must go through Assign,
// and a running period gets none. The relabelled version is the version
// read plus one.
func TestRelabelFinalPeriod(t *testing.T) {
	m := New(key, Config{Lateness: 30 * time.Minute})
	m.Part(*part("06:00:00", 0))
	rows, _ := m.Part(*part("06:10:00", 0)) // 10 min gap: down 06:00–06:09:50
	var down Row
	for _, r := range rows {
		if r.State == Down {
			down = r
		}
	}
	if down.ID == 0 {
		t.Fatalf("no down period in %v", describeAll(rows))
	}
	if _, err := m.Relabel(down, Reason{ID: 3}); !errors.Is(err, ErrNotFinal) {
		t.Fatalf("relabel of a live period: %v, want ErrNotFinal", err)
	}
	// Parts until 07:21 push the down period out of the window.
	for _, s := range []string{"06:11:00", "06:40:00", "06:41:00", "07:20:00", "07:21:00"} {
		m.Part(*part(s, 0))
	}
	for _, r := range m.Rows() {
		if r.ID == down.ID {
			t.Fatalf("down period still live: %v", describeAll(m.Rows()))
		}
	}
	seq := m.Snapshot().Seq
	got, err := m.Relabel(down, Reason{ID: 3, Planned: true})
	if err != nil {
		t.Fatal(err)
	}
	if got.State != PlannedDown || got.Reason != 3 || got.Version != down.Version+1 || got.ID != down.ID ||
		got.Start != down.Start || got.End != down.End || got.FirstOfStop != FirstPiece {
		t.Fatalf("relabelled %+v from %+v", got, down)
	}
	if got, _ := m.Relabel(got, Reason{}); got.State != Down || got.Reason != 0 || got.Version != down.Version+2 {
		t.Fatalf("reason removed: %+v", got)
	}
	if m.Snapshot().Seq != seq {
		t.Errorf("relabel moved the version counter %d → %d", seq, m.Snapshot().Seq)
	}
	running := down
	running.State = Running
	if _, err := m.Relabel(running, Reason{ID: 3}); !errors.Is(err, ErrNotDown) {
		t.Fatalf("relabel of a running period: %v", err)
	}
}

// TestRelabelDoesNotResurrect: a reason given to a period as it was read,
// after a late part deleted that period and the window moved on, writes a
// version below the deletion's: a FINAL reader keeps the deletion, and the
// period stays gone.
func TestRelabelDoesNotResurrect(t *testing.T) {
	m := New(key, Config{Lateness: 30 * time.Minute})
	versions := map[uint64]Row{} // what a FINAL reader sees
	apply := func(rows []Row) {
		for _, r := range rows {
			if r.Version <= versions[r.ID].Version {
				t.Fatalf("version %d of %d after %d", r.Version, r.ID, versions[r.ID].Version)
			}
			versions[r.ID] = r
		}
	}
	feed := func(hms string) {
		rows, _ := m.Part(*part(hms, 10))
		apply(rows)
	}
	feed("06:00:00")
	feed("06:01:40") // down 06:00:00–06:01:30
	read := versions[PeriodID(key, at("06:00:00"))]
	if read.State != Down {
		t.Fatalf("no down period read: %+v", read)
	}
	feed("06:00:50") // bridges the gap: the down period is deleted
	if !versions[read.ID].Deleted {
		t.Fatalf("down period not deleted: %+v", versions[read.ID])
	}
	for _, s := range []string{"06:40:00", "07:20:00", "07:21:00"} {
		feed(s)
	}
	got, err := m.Relabel(read, Reason{ID: 3, Planned: true})
	if err != nil {
		t.Fatalf("relabel of a final period: %v", err)
	}
	apply(nil)
	if got.Version >= versions[read.ID].Version {
		t.Fatalf("relabel version %d wins over the deletion %d: the period would come back", got.Version, versions[read.ID].Version)
	}
}

// TestThresholdSetWhileStopped: a location threshold set while the line
// is silent judges the current gap at the next tick; earlier gaps keep
// their judgement.
func TestThresholdSetWhileStopped(t *testing.T) {
	m := New(key, Config{})
	m.Part(*part("08:00:00", 0))
	m.Part(*part("08:00:50", 0)) // 50 s gap: within the derived 60 s
	if rows := m.Tick(at("08:01:30")); len(rows) != 0 {
		t.Fatalf("down before the threshold: %v", describeAll(rows))
	}
	m.SetConfig(Config{Threshold: 30 * time.Second})
	rows := m.Tick(at("08:01:31"))
	got := describeAll(m.Rows())
	if len(rows) == 0 || len(got) != 2 || m.Rows()[0].State != Running || m.Rows()[1].State != Down || !m.Rows()[1].Open ||
		m.Rows()[1].Start != at("08:00:50") {
		t.Fatalf("after setting 30 s: %v", got)
	}
	if m.Rows()[0].Start != at("07:59:50") || m.Rows()[0].End != at("08:00:50") {
		t.Fatalf("the earlier gap was judged again: %v", got)
	}
}
