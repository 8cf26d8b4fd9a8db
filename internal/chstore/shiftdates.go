package chstore

// Fields computed after the read: the shift start date of a record
// (record.ShiftStartDate), from its instant, its line and the shifts and
// time zone of its site.

import (
	"context"
	"fmt"
	"time"

	// Shifts are cut in their site's zone, which must resolve the same
	// way on a host without /usr/share/zoneinfo.
	_ "time/tzdata"

	"github.com/takt/takt/internal/period"
	"github.com/takt/takt/internal/record"
)

// maxShiftRows bounds the shifts one read of a page's sites loads.
const maxShiftRows = 10_000

// siteCalendar is the shift calendar of a site and of its lines that have
// shifts of their own.
type siteCalendar struct {
	site  *period.Calendar
	lines map[uint64]*period.Calendar
}

// of returns the calendar of line (0: none) of the site.
func (c siteCalendar) of(line uint64) *period.Calendar {
	if lc := c.lines[line]; lc != nil {
		return lc
	}
	return c.site
}

// shiftDates replaces the values of the page's ShiftStartDate fields (the
// instant and the line, as the read selected them) with their dates: the
// calendar day, as a UTC midnight, on which the shift the instant falls in
// started. The page's sites' shifts and zones are read once (two small
// reads), only when such a field is selected and the page has rows.
func (s *Store) shiftDates(ctx context.Context, a *RecordArea, page RecordPage) error {
	var cols []int
	for i, f := range page.Fields {
		if j, ok := a.byName[f.Name]; ok && a.cols[j].field.AfterRead {
			if d, _ := a.def.Field(f.Name); d.Derived != record.ShiftStartDate {
				return fmt.Errorf("%s: field %s: unknown derivation %d", a.def.Name, f.Name, d.Derived)
			}
			cols = append(cols, i)
		}
	}
	if len(cols) == 0 || len(page.Rows) == 0 {
		return nil
	}
	cals, err := s.siteCalendars(ctx, page.Sites)
	if err != nil {
		return readError(ctx, a, err)
	}
	for i, row := range page.Rows {
		sc := cals[page.Sites[i]]
		for _, j := range cols {
			v, ok := row[j].([]int64)
			if !ok || len(v) != 2 || v[1] < 0 {
				return fmt.Errorf("%s: field %s: read %v, want the instant and the line", a.def.Name, page.Fields[j].Name, row[j])
			}
			y, m, d := sc.of(uint64(v[1])).ShiftStartDate(v[0])
			row[j] = time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
		}
	}
	return nil
}

// siteCalendars reads the live shifts and the time zones of the given
// sites and builds their calendars (period.Calendars: a line's own shifts
// replace its site's). A site that is unknown, or whose zone is empty or
// unknown, gets UTC, as its local times are shown in.
func (s *Store) siteCalendars(ctx context.Context, sites []uint64) (map[uint64]siteCalendar, error) {
	seen := map[uint64]bool{}
	var ids []uint64
	for _, id := range sites {
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	zones := map[uint64]*time.Location{}
	rows, err := s.conn.Query(maxRows(ctx, len(ids)),
		"SELECT id, timezone FROM (SELECT * FROM sites FINAL WHERE id IN ?) WHERE deleted = 0", groupSet(ids))
	if err != nil {
		return nil, fmt.Errorf("time zones of sites: %w", err)
	}
	for rows.Next() {
		var id uint64
		var tz string
		if err := rows.Scan(&id, &tz); err != nil {
			rows.Close()
			return nil, fmt.Errorf("time zones of sites: %w", err)
		}
		if loc, err := time.LoadLocation(tz); err == nil && tz != "" {
			zones[id] = loc
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("time zones of sites: %w", err)
	}
	shifts := map[uint64][]period.LineShift{}
	rows, err = s.conn.Query(maxRows(ctx, maxShiftRows), `SELECT site, line, code, start_time, end_time, days
		FROM (SELECT * FROM shifts FINAL WHERE site IN ?) WHERE deleted = 0 AND active = 1 ORDER BY site, line, code, id`, groupSet(ids))
	if err != nil {
		return nil, fmt.Errorf("shifts of sites: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var site uint64
		var sh period.LineShift
		if err := rows.Scan(&site, &sh.Line, &sh.Code, &sh.Start, &sh.End, &sh.Days); err != nil {
			return nil, fmt.Errorf("shifts of sites: %w", err)
		}
		shifts[site] = append(shifts[site], sh)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("shifts of sites: %w", err)
	}
	out := make(map[uint64]siteCalendar, len(ids))
	for _, id := range ids {
		loc := zones[id]
		if loc == nil {
			loc = time.UTC
		}
		site, lines, err := period.Calendars(loc, shifts[id])
		if err != nil {
			return nil, fmt.Errorf("shifts of site %d: %w", id, err)
		}
		out[id] = siteCalendar{site: site, lines: lines}
	}
	return out, nil
}
