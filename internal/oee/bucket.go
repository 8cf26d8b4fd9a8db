package oee

import (
	"fmt"
	"time"

	"github.com/takt/takt/internal/period"
)

// Bucket is how figures are split over time.
type Bucket string

// The bucket kinds of GET /api/1.0/oee/.
const (
	None  Bucket = "none"
	Hour  Bucket = "hour"
	Shift Bucket = "shift"
	Day   Bucket = "day"
	Week  Bucket = "week"
	Month Bucket = "month"
)

// ParseBucket checks a bucket name.
func ParseBucket(s string) (Bucket, error) {
	switch b := Bucket(s); b {
	case None, Hour, Shift, Day, Week, Month:
		return b, nil
	case "":
		return None, nil
	}
	return "", fmt.Errorf("bucket %q: want none, hour, shift, day, week or month", s)
}

// Buckets splits w into buckets of kind b in loc, clipped to w. Hours are
// the local clock's hours (in a zone with a half-hour offset they start at
// :30 UTC); days, weeks (Monday to Monday) and months run from local
// midnight to local midnight, so the day the clocks change is 23 h or 25 h
// long. For Shift it returns the occurrences of cal's shifts (the window
// itself when cal has none); time outside shifts is in no bucket.
func Buckets(b Bucket, w Window, loc *time.Location, cal *period.Calendar) []Window {
	if w.End <= w.Start {
		return nil
	}
	if loc == nil {
		loc = time.UTC
	}
	switch b {
	case Shift:
		if cal.Always() {
			return []Window{w}
		}
		var out []Window
		for _, p := range cal.Scheduled(w.Start, w.End) {
			if p.Scheduled {
				out = append(out, Window{Start: p.Start, End: p.End})
			}
		}
		return out
	case Hour, Day, Week, Month:
	default:
		return []Window{w}
	}
	var out []Window
	start := bucketStart(b, time.UnixMilli(w.Start).In(loc))
	for start.UnixMilli() < w.End {
		next := bucketNext(b, start)
		out = append(out, Window{Start: max(start.UnixMilli(), w.Start), End: min(next.UnixMilli(), w.End)})
		start = next
	}
	return out
}

// bucketStart is the start of the bucket of kind b holding t (t in the
// site's location).
func bucketStart(b Bucket, t time.Time) time.Time {
	loc := t.Location()
	switch b {
	case Hour:
		// Truncate the local clock reading; the offset may be a
		// fraction of an hour.
		_, off := t.Zone()
		u := t.Unix() + int64(off)
		return time.Unix(u-u%3600-int64(off), 0).In(loc)
	case Day:
		return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, loc)
	case Week:
		back := (int(t.Weekday()) + 6) % 7 // days since Monday
		return time.Date(t.Year(), t.Month(), t.Day()-back, 0, 0, 0, 0, loc)
	default: // Month
		return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, loc)
	}
}

func bucketNext(b Bucket, start time.Time) time.Time {
	loc := start.Location()
	switch b {
	case Hour:
		// The next local hour starts one hour later unless the offset
		// changes by a fraction of an hour; re-truncate to be sure.
		n := bucketStart(Hour, start.Add(time.Hour))
		if !n.After(start) {
			n = start.Add(time.Hour)
		}
		return n
	case Day:
		return time.Date(start.Year(), start.Month(), start.Day()+1, 0, 0, 0, 0, loc)
	case Week:
		return time.Date(start.Year(), start.Month(), start.Day()+7, 0, 0, 0, 0, loc)
	default:
		return time.Date(start.Year(), start.Month()+1, 1, 0, 0, 0, 0, loc)
	}
}

// Row is the figures of one bucket.
type Row struct {
	Window
	Elements
	Ratios
}

// ComputeBuckets returns one Row per bucket of w.
func ComputeBuckets(b Bucket, w Window, loc *time.Location, cal *period.Calendar, now int64, periods []Period, parts []Part) []Row {
	var out []Row
	for _, bw := range Buckets(b, w, loc, cal) {
		e := Compute(bw, now, periods, parts)
		out = append(out, Row{Window: bw, Elements: e, Ratios: e.Ratios()})
	}
	return out
}
