package period

import (
	"testing"
	"time"
)

func TestParseShift(t *testing.T) {
	for _, tc := range []struct {
		start, end, days string
		ok               bool
	}{
		{"06:00", "14:00", "", true},
		{"22:00", "06:00", "mon,tue, WED", true},
		{"00:00", "24:00", "sun", true},
		{"6", "14:00", "", false},
		{"06:00", "25:00", "", false},
		{"06:00", "14:00", "monday", false},
	} {
		_, err := ParseShift("x", tc.start, tc.end, tc.days)
		if (err == nil) != tc.ok {
			t.Errorf("ParseShift(%q, %q, %q): err %v", tc.start, tc.end, tc.days, err)
		}
	}
}

func TestIntervalsAcrossDST(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	night, _ := ParseShift("N", "22:00", "06:00", "")
	day, _ := ParseShift("D", "06:00", "14:00", "sat,sun")
	c := &Calendar{Loc: berlin, Shifts: []Shift{night, day}}
	// 2024-03-31: clocks go 02:00 → 03:00 in Berlin. 2024-10-27: 03:00 → 02:00.
	for _, tc := range []struct {
		date  string
		shift string
		want  time.Duration
	}{
		{"2024-03-30", "N", 7 * time.Hour}, // Sat 22:00 → Sun 06:00, one hour short
		{"2024-03-31", "D", 8 * time.Hour},
		{"2024-10-26", "N", 9 * time.Hour},
		{"2024-03-29", "N", 8 * time.Hour},
	} {
		d, _ := time.ParseInLocation("2006-01-02", tc.date, berlin)
		ivs := c.Intervals(d.UnixMilli(), d.Add(24*time.Hour).UnixMilli())
		found := false
		for _, iv := range ivs {
			s := time.UnixMilli(iv.Start).In(berlin)
			if iv.Shift == tc.shift && s.Format("2006-01-02") == tc.date {
				found = true
				if got := time.Duration(iv.End-iv.Start) * time.Millisecond; got != tc.want {
					t.Errorf("%s %s: %v, want %v", tc.date, tc.shift, got, tc.want)
				}
			}
		}
		if !found {
			t.Errorf("%s: no %s shift in %v", tc.date, tc.shift, ivs)
		}
	}
}

func TestScheduledAndNextBoundary(t *testing.T) {
	c := &Calendar{Loc: time.UTC, Shifts: []Shift{mustShift("A", "06:00", "14:00", ""), mustShift("B", "14:00", "22:00", "mon")}}
	got := c.Scheduled(at("05:00:00"), at("23:00:00"))
	want := []Piece{
		{Start: at("05:00:00"), End: at("06:00:00")},
		{Start: at("06:00:00"), End: at("14:00:00"), Scheduled: true, Shift: "A"},
		{Start: at("14:00:00"), End: at("22:00:00"), Scheduled: true, Shift: "B"},
		{Start: at("22:00:00"), End: at("23:00:00")},
	}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("piece %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if nb := c.NextBoundary(at("14:00:00")); nb != at("22:00:00") {
		t.Errorf("next boundary after 14:00: %s", fmtTime(nb))
	}
	var always *Calendar
	if p := always.Scheduled(1, 5); len(p) != 1 || !p[0].Scheduled {
		t.Errorf("nil calendar: %v", p)
	}
}

func TestShiftStartDate(t *testing.T) {
	chicago, err := time.LoadLocation("America/Chicago")
	if err != nil {
		t.Fatal(err)
	}
	night, _ := ParseShift("N", "22:00", "06:00", "mon,tue,wed,thu,fri")
	day, _ := ParseShift("D", "07:00", "15:00", "")
	shifts := &Calendar{Loc: chicago, Shifts: []Shift{night, day}}
	local := func(s string) int64 {
		ts, err := time.ParseInLocation("2006-01-02 15:04", s, chicago)
		if err != nil {
			t.Fatal(err)
		}
		return ts.UnixMilli()
	}
	for _, tc := range []struct {
		name string
		c    *Calendar
		at   string // local time in Chicago
		want string
	}{
		{"night shift before midnight", shifts, "2024-03-06 23:00", "2024-03-06"},
		{"night shift after midnight", shifts, "2024-03-07 02:00", "2024-03-06"},
		{"night shift's last minute", shifts, "2024-03-07 05:59", "2024-03-06"},
		// Friday's night shift ends on Saturday; none starts on Saturday.
		{"Friday's night on Saturday", shifts, "2024-03-09 03:00", "2024-03-08"},
		{"between shifts", shifts, "2024-03-07 06:30", "2024-03-07"},
		{"day shift", shifts, "2024-03-07 07:00", "2024-03-07"},
		{"Saturday night: no shift", shifts, "2024-03-10 01:00", "2024-03-10"},
		// The clocks go 02:00 → 03:00 on 2024-03-10; Sunday starts no night shift.
		{"Sunday night after the change", shifts, "2024-03-11 01:00", "2024-03-11"},
		{"Monday night after the change", shifts, "2024-03-12 01:00", "2024-03-11"},
		{"no shifts: local date, not UTC's", &Calendar{Loc: chicago}, "2024-03-06 23:00", "2024-03-06"},
		{"nil calendar: UTC date", nil, "2024-03-06 23:00", "2024-03-07"},
	} {
		y, m, d := tc.c.ShiftStartDate(local(tc.at))
		if got := time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Format(time.DateOnly); got != tc.want {
			t.Errorf("%s: ShiftStartDate(%s) = %s, want %s", tc.name, tc.at, got, tc.want)
		}
	}
}
