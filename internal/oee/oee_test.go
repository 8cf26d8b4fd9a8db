package oee

import (
	"math"
	"testing"
	"time"

	"github.com/takt/takt/internal/period"
)

var h0 = time.Date(2024, 3, 4, 6, 0, 0, 0, time.UTC).UnixMilli()

// m is h0 + minutes.
func m(min float64) int64 { return h0 + int64(min*60000) }

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestCompute(t *testing.T) {
	win := Window{Start: m(0), End: m(60)}
	cases := []struct {
		name    string
		now     int64
		periods []Period
		parts   []Part
		want    Elements
	}{
		{
			name:    "running only",
			now:     m(120),
			periods: []Period{{Location: 1, State: period.Running, Start: m(-10), End: m(70)}},
			want:    Elements{PlannedBusyTime: 3600, ActualProductionTime: 3600, CalendarTime: 3600},
		},
		{
			name: "periods clipped to the window, open one ends at now",
			now:  m(50),
			periods: []Period{
				{Location: 1, State: period.Down, Start: m(-5), End: m(10), FirstOfStop: period.FirstPiece},
				{Location: 1, State: period.Running, Start: m(10), End: m(30)},
				{Location: 1, State: period.PlannedDown, Start: m(30), End: m(40), FirstOfStop: period.FirstPiece},
				{Location: 1, State: period.Unscheduled, Start: m(40), End: m(45)},
				{Location: 1, State: period.Down, Start: m(45), Open: true, FirstOfStop: period.FirstPiece},
			},
			want: Elements{PlannedBusyTime: 600 + 1200 + 300, ActualProductionTime: 1200, UnplannedDownTime: 900,
				PlannedDownTime: 600, DownEvents: 1, CalendarTime: 3000},
		},
		{
			name: "a stop cut by a shift boundary, an unscheduled night and a planned piece is one event",
			now:  m(60),
			periods: []Period{
				{Location: 1, State: period.Down, Start: m(10), End: m(20), FirstOfStop: period.FirstPiece},
				{Location: 1, State: period.Down, Start: m(20), End: m(25)},
				{Location: 1, State: period.Unscheduled, Start: m(25), End: m(30)},
				{Location: 1, State: period.PlannedDown, Start: m(30), End: m(35)},
				{Location: 1, State: period.Down, Start: m(35), End: m(40)},
				{Location: 2, State: period.Down, Start: m(20), End: m(25), FirstOfStop: period.FirstPiece},
			},
			want: Elements{PlannedBusyTime: 1500, UnplannedDownTime: 1500, PlannedDownTime: 300, DownEvents: 2, CalendarTime: 3600},
		},
		{
			name: "rows without a mark: a down period continuing another (shift boundary) is one event",
			now:  m(60),
			periods: []Period{
				{Location: 1, State: period.Down, Start: m(10), End: m(20), FirstOfStop: period.FirstUnknown},
				{Location: 1, State: period.Down, Start: m(20), End: m(25), FirstOfStop: period.FirstUnknown},
				{Location: 2, State: period.Down, Start: m(20), End: m(25), FirstOfStop: period.FirstUnknown},
			},
			want: Elements{PlannedBusyTime: 1200, UnplannedDownTime: 1200, DownEvents: 2, CalendarTime: 3600},
		},
		{
			name: "parts by quality, clipped by recorded_at",
			now:  m(60),
			parts: []Part{
				{RecordedMs: m(-1), Quantity: 5, Quality: "good", IdealCycleTime: 10},
				{RecordedMs: m(0), Quantity: 3, Quality: "good", IdealCycleTime: 10},
				{RecordedMs: m(30), Quantity: 2, Quality: "scrap", IdealCycleTime: 10},
				{RecordedMs: m(59), Quantity: 1, Quality: "rework", IdealCycleTime: 20},
				{RecordedMs: m(60), Quantity: 7, Quality: "good", IdealCycleTime: 10},
			},
			want: Elements{ProducedQuantity: 6, GoodQuantity: 3, ScrapQuantity: 2, ReworkQuantity: 1,
				IdealProductionTime: 70, CalendarTime: 3600},
		},
		{
			name: "parts outside the shifts, too late, or after now are not counted",
			now:  m(40),
			parts: []Part{
				{RecordedMs: m(10), Quantity: 3, Quality: "good", IdealCycleTime: 10, Class: period.Counted},
				{RecordedMs: m(11), Quantity: 4, Quality: "good", IdealCycleTime: 10, Class: period.OutsideShifts},
				{RecordedMs: m(12), Quantity: 5, Quality: "scrap", IdealCycleTime: 10, Class: period.TooLateToPlace},
				{RecordedMs: m(41), Quantity: 6, Quality: "good", IdealCycleTime: 10, Class: period.Counted},
			},
			want: Elements{ProducedQuantity: 3, GoodQuantity: 3, IdealProductionTime: 30, UnscheduledQuantity: 4,
				LateQuantity: 5, CalendarTime: 2400},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Compute(win, tc.now, tc.periods, tc.parts); got != tc.want {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestRatios(t *testing.T) {
	e := Elements{PlannedBusyTime: 1000, ActualProductionTime: 800, UnplannedDownTime: 200,
		ProducedQuantity: 100, GoodQuantity: 90, IdealProductionTime: 600, DownEvents: 2, CalendarTime: 2000}
	r := e.Ratios()
	want := Ratios{Availability: 0.8, Performance: 0.75, Quality: 0.9, OEE: 0.54, TEEP: 0.27,
		MTBF: 400, MTTR: 100, AvailabilityLoss: 200, PerformanceLoss: 200, QualityLoss: 60}
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"availability", r.Availability, want.Availability}, {"performance", r.Performance, want.Performance},
		{"quality", r.Quality, want.Quality}, {"oee", r.OEE, want.OEE}, {"teep", r.TEEP, want.TEEP},
		{"mtbf", r.MTBF, want.MTBF}, {"mttr", r.MTTR, want.MTTR},
		{"availability_loss", r.AvailabilityLoss, want.AvailabilityLoss},
		{"performance_loss", r.PerformanceLoss, want.PerformanceLoss}, {"quality_loss", r.QualityLoss, want.QualityLoss},
	} {
		if !near(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if loss := r.AvailabilityLoss + r.PerformanceLoss + r.QualityLoss; !near(loss, e.PlannedBusyTime*(1-r.OEE)) {
		t.Errorf("losses add up to %v, want %v", loss, e.PlannedBusyTime*(1-r.OEE))
	}
	if z := (Elements{}).Ratios(); z != (Ratios{}) {
		t.Errorf("zero elements: %+v", z)
	}
	if r.PerformanceOverIdeal {
		t.Error("performance 0.75 flagged over ideal")
	}
	e.IdealProductionTime = 801
	if r := e.Ratios(); !r.PerformanceOverIdeal || r.Performance <= 1 {
		t.Errorf("performance %v not flagged over ideal", r.Performance)
	}
}

// TestSumThenDivide: two locations with very different sizes; the ratio
// of the sum is not the mean of the ratios.
func TestSumThenDivide(t *testing.T) {
	a := Elements{PlannedBusyTime: 100, ActualProductionTime: 100}
	b := Elements{PlannedBusyTime: 900, ActualProductionTime: 450}
	var s Elements
	s.Add(a)
	s.Add(b)
	if got := s.Ratios().Availability; !near(got, 0.55) {
		t.Fatalf("availability of the sum = %v, want 0.55 (not the mean 0.75)", got)
	}
}

func TestBuckets(t *testing.T) {
	berlin, _ := time.LoadLocation("Europe/Berlin")
	kolkata, _ := time.LoadLocation("Asia/Kolkata")
	local := func(loc *time.Location, s string) int64 {
		tm, err := time.ParseInLocation("2006-01-02 15:04", s, loc)
		if err != nil {
			t.Fatal(err)
		}
		return tm.UnixMilli()
	}
	cases := []struct {
		name    string
		b       Bucket
		loc     *time.Location
		w       Window
		n       int
		lengths map[int]time.Duration // bucket index → length
	}{
		{"spring-forward day is 23 h", Day, berlin, Window{local(berlin, "2024-03-30 00:00"), local(berlin, "2024-04-02 00:00")}, 3,
			map[int]time.Duration{0: 24 * time.Hour, 1: 23 * time.Hour, 2: 24 * time.Hour}},
		{"fall-back day is 25 h", Day, berlin, Window{local(berlin, "2024-10-27 00:00"), local(berlin, "2024-10-28 00:00")}, 1,
			map[int]time.Duration{0: 25 * time.Hour}},
		{"fall-back day has 25 hours", Hour, berlin, Window{local(berlin, "2024-10-27 00:00"), local(berlin, "2024-10-28 00:00")}, 25, nil},
		{"spring-forward day has 23 hours", Hour, berlin, Window{local(berlin, "2024-03-31 00:00"), local(berlin, "2024-04-01 00:00")}, 23, nil},
		{"half-hour offset hours", Hour, kolkata, Window{local(kolkata, "2024-03-04 10:15"), local(kolkata, "2024-03-04 12:00")}, 2,
			map[int]time.Duration{0: 45 * time.Minute, 1: time.Hour}},
		{"week starts Monday, clipped", Week, berlin, Window{local(berlin, "2024-03-27 00:00"), local(berlin, "2024-04-10 00:00")}, 3,
			map[int]time.Duration{0: 5*24*time.Hour - time.Hour, 1: 7 * 24 * time.Hour, 2: 2 * 24 * time.Hour}},
		{"month", Month, berlin, Window{local(berlin, "2024-02-01 00:00"), local(berlin, "2024-04-01 00:00")}, 2,
			map[int]time.Duration{0: 29 * 24 * time.Hour, 1: 31*24*time.Hour - time.Hour}},
		{"none", None, berlin, Window{0, 1000}, 1, map[int]time.Duration{0: time.Second}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bs := Buckets(tc.b, tc.w, tc.loc, nil)
			if len(bs) != tc.n {
				t.Fatalf("%d buckets, want %d: %v", len(bs), tc.n, bs)
			}
			for i := range bs {
				if i > 0 && bs[i].Start != bs[i-1].End {
					t.Errorf("bucket %d not contiguous", i)
				}
				if want, ok := tc.lengths[i]; ok {
					if got := time.Duration(bs[i].End-bs[i].Start) * time.Millisecond; got != want {
						t.Errorf("bucket %d: %v, want %v", i, got, want)
					}
				}
			}
			if bs[0].Start != tc.w.Start || bs[len(bs)-1].End != tc.w.End {
				t.Errorf("buckets do not cover the window")
			}
		})
	}
}

func TestShiftBuckets(t *testing.T) {
	a, _ := period.ParseShift("A", "06:00", "14:00", "")
	cal := &period.Calendar{Loc: time.UTC, Shifts: []period.Shift{a}}
	bs := Buckets(Shift, Window{Start: m(-60), End: m(25 * 60)}, time.UTC, cal)
	if len(bs) != 2 || bs[0] != (Window{Start: m(0), End: m(480)}) || bs[1].Start != m(24*60) {
		t.Fatalf("shift buckets %v", bs)
	}
	if _, err := ParseBucket("fortnight"); err == nil {
		t.Fatal("bad bucket accepted")
	}
}
