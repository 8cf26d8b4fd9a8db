package period

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
	// Shifts are cut in their site's zone: every binary that computes
	// calendars carries the zone database, so a host without one (a
	// distroless image) cuts them in the right zone instead of in UTC.
	_ "time/tzdata"
)

// Shift is one recurring block of planned production time, in the local
// wall-clock time of its site. A shift whose End is not after its Start ends
// on the next day; it belongs to the day it starts on.
type Shift struct {
	// Name identifies the shift (its code).
	Name string
	// Start and End are offsets from local midnight.
	Start, End time.Duration
	// Days says on which weekdays the shift starts (indexed by
	// time.Weekday).
	Days [7]bool
}

// weekdayNames are the day names the shifts table uses, by time.Weekday.
var weekdayNames = [7]string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

// ParseShift builds a Shift from the shifts table's text form: start and end
// as "HH:MM" local times and days as a comma-separated list of "mon" …
// "sun" (an empty list means every day).
func ParseShift(name, start, end, days string) (Shift, error) {
	s := Shift{Name: name}
	var err error
	if s.Start, err = parseClock(start); err != nil {
		return Shift{}, fmt.Errorf("shift %q start: %w", name, err)
	}
	if s.End, err = parseClock(end); err != nil {
		return Shift{}, fmt.Errorf("shift %q end: %w", name, err)
	}
	days = strings.TrimSpace(days)
	if days == "" {
		s.Days = [7]bool{true, true, true, true, true, true, true}
		return s, nil
	}
	for _, d := range strings.Split(days, ",") {
		d = strings.ToLower(strings.TrimSpace(d))
		found := false
		for i, n := range weekdayNames {
			if d == n {
				s.Days[i], found = true, true
			}
		}
		if !found {
			return Shift{}, fmt.Errorf("shift %q: unknown day %q", name, d)
		}
	}
	return s, nil
}

func parseClock(s string) (time.Duration, error) {
	h, m, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok {
		return 0, fmt.Errorf("%q is not HH:MM", s)
	}
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if err1 != nil || err2 != nil || hh < 0 || hh > 24 || mm < 0 || mm > 59 || (hh == 24 && mm != 0) {
		return 0, fmt.Errorf("%q is not HH:MM", s)
	}
	return time.Duration(hh)*time.Hour + time.Duration(mm)*time.Minute, nil
}

// LineShift is a row of the shifts table in ParseShift's terms: Line 0
// is a shift of the whole site.
type LineShift struct {
	Line                   uint64
	Code, Start, End, Days string
}

// Calendars builds the calendar of a site's locations from its shifts in
// zone loc: the site calendar (the site-wide shifts) and one per line that
// has shifts of its own, which replace the site's for that line and its
// machines.
func Calendars(loc *time.Location, shifts []LineShift) (site *Calendar, lines map[uint64]*Calendar, err error) {
	site = &Calendar{Loc: loc}
	lines = map[uint64]*Calendar{}
	for _, s := range shifts {
		sh, err := ParseShift(s.Code, s.Start, s.End, s.Days)
		if err != nil {
			return nil, nil, err
		}
		if s.Line == 0 {
			site.Shifts = append(site.Shifts, sh)
			continue
		}
		c := lines[s.Line]
		if c == nil {
			c = &Calendar{Loc: loc}
			lines[s.Line] = c
		}
		c.Shifts = append(c.Shifts, sh)
	}
	return site, lines, nil
}

// Interval is one occurrence of a shift, [Start, End) in Unix milliseconds.
type Interval struct {
	Shift      string
	Start, End int64
}

// Calendar is the planned production time of one location: its shifts in
// its site's time zone. A nil Calendar, or one without shifts, means the
// location is always scheduled. Occurrences are computed with time.Date in
// Loc, so a shift on a daylight-saving day is as long as the wall clock
// says (an 06:00–14:00 shift is 8 h on every day; a 22:00–06:00 shift is
// 7 h or 9 h on the nights the clocks change).
type Calendar struct {
	Loc    *time.Location
	Shifts []Shift
}

// Always reports whether the calendar schedules all time.
func (c *Calendar) Always() bool { return c == nil || len(c.Shifts) == 0 }

// Intervals returns the shift occurrences that overlap [from, to), sorted by
// start, clipped to neither bound. Overlapping shifts are returned as they
// are; callers that need disjoint time use Scheduled.
func (c *Calendar) Intervals(from, to int64) []Interval {
	if c.Always() || to <= from {
		return nil
	}
	loc := c.Loc
	if loc == nil {
		loc = time.UTC
	}
	// Start one day early so a shift crossing midnight into the range is
	// found, and stop one day late for the same reason at the end.
	first := time.UnixMilli(from).In(loc)
	day := time.Date(first.Year(), first.Month(), first.Day()-1, 0, 0, 0, 0, loc)
	var out []Interval
	for ; ; day = time.Date(day.Year(), day.Month(), day.Day()+1, 0, 0, 0, 0, loc) {
		if day.UnixMilli() >= to {
			break
		}
		for _, s := range c.Shifts {
			if !s.Days[day.Weekday()] {
				continue
			}
			start := atClock(day, s.Start, loc)
			endDay := day
			if s.End <= s.Start {
				endDay = time.Date(day.Year(), day.Month(), day.Day()+1, 0, 0, 0, 0, loc)
			}
			end := atClock(endDay, s.End, loc)
			iv := Interval{Shift: s.Name, Start: start.UnixMilli(), End: end.UnixMilli()}
			if iv.End > from && iv.Start < to && iv.End > iv.Start {
				out = append(out, iv)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Start != out[j].Start {
			return out[i].Start < out[j].Start
		}
		return out[i].Shift < out[j].Shift
	})
	return out
}

// atClock is the instant at wall-clock offset d after local midnight of day.
// time.Date normalises a wall time that does not exist (spring forward).
func atClock(day time.Time, d time.Duration, loc *time.Location) time.Time {
	m := int(d / time.Minute)
	return time.Date(day.Year(), day.Month(), day.Day(), m/60, m%60, 0, 0, loc)
}

// Scheduled returns [from, to) cut at every shift boundary: consecutive
// pieces, each either inside a shift (Shift set) or outside every shift
// (Shift empty, Scheduled false). Overlapping shifts are merged into the
// earlier one. An always-scheduled calendar returns one scheduled piece.
func (c *Calendar) Scheduled(from, to int64) []Piece {
	if to <= from {
		return nil
	}
	if c.Always() {
		return []Piece{{Start: from, End: to, Scheduled: true}}
	}
	var out []Piece
	at := from
	for _, iv := range c.Intervals(from, to) {
		if iv.End <= at {
			continue
		}
		s := max(iv.Start, at)
		if s > at {
			out = append(out, Piece{Start: at, End: s})
		}
		e := min(iv.End, to)
		out = append(out, Piece{Start: s, End: e, Scheduled: true, Shift: iv.Shift})
		at = e
	}
	if at < to {
		out = append(out, Piece{Start: at, End: to})
	}
	return out
}

// ScheduledAt reports whether instant t (ms) lies in a shift occurrence
// ([start, end)); always true for an always-scheduled calendar.
func (c *Calendar) ScheduledAt(t int64) bool {
	if c.Always() {
		return true
	}
	for _, iv := range c.Intervals(t, t+1) {
		if iv.Start <= t && t < iv.End {
			return true
		}
	}
	return false
}

// Piece is a stretch of time that is wholly inside one shift occurrence or
// wholly outside every shift.
type Piece struct {
	Start, End int64
	Scheduled  bool
	Shift      string
}

// NextBoundary returns the first shift start or end strictly after t, or
// math.MaxInt64 when the calendar has none (always scheduled). It looks
// ahead eight days.
func (c *Calendar) NextBoundary(t int64) int64 {
	best := int64(1<<63 - 1)
	if c.Always() {
		return best
	}
	for _, iv := range c.Intervals(t, t+8*24*3600*1000) {
		if iv.Start > t && iv.Start < best {
			best = iv.Start
		}
		if iv.End > t && iv.End < best {
			best = iv.End
		}
	}
	return best
}

// ShiftStartDate returns the local date (year, month, day in the
// calendar's zone) on which the shift occurrence that instant t (ms) falls
// in started: for t at 02:00 in a 22:00–06:00 shift, the day before. When t
// lies in no shift (the calendar schedules all time, or t is between
// shifts) it is the local date of t itself. Of overlapping occurrences the
// earliest-starting one counts, as in Scheduled.
func (c *Calendar) ShiftStartDate(t int64) (year int, month time.Month, day int) {
	loc := time.UTC
	if c != nil && c.Loc != nil {
		loc = c.Loc
	}
	at := t
	if !c.Always() {
		for _, iv := range c.Intervals(t, t+1) {
			if iv.Start <= t && t < iv.End {
				at = iv.Start
				break
			}
		}
	}
	return time.UnixMilli(at).In(loc).Date()
}
