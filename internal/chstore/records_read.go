package chstore

// Reads of record areas (the query API's /api/1.0/<area>/): one page, the
// page after a cursor, a page at remembered positions, one record.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/takt/takt/internal/l2l"
)

// RecordPage is the answer to a record-area read: the selected fields, one
// row of values per record (see l2l.Response for their Go types; times are
// in UTC), and the site of each record, which a caller needs to show
// LocalDateTime fields in the site's time zone.
type RecordPage struct {
	Fields []l2l.Field
	Rows   [][]any
	Sites  []uint64
	// Next, for a page in insertion order (see Cursor), is where the page
	// after it starts; nil otherwise.
	Next *Cursor
	// Ahead, for a page in insertion order of an area with look-ahead,
	// holds the positions of the rows that follow the page, in order, as
	// far as the read looked (see RecordArea.WithLookAhead).
	Ahead []Cursor
}

// Cursor is a position in insertion order (order_ms, then id): a page
// read after a cursor starts with the first row past it. Rows only ever
// join the end of that order (see RecordArea.WithWatermark), so the
// cursor of an offset stays valid: a caller can remember where offset N
// is and read the page at N without counting N rows again.
type Cursor struct {
	OrderMs int64  `json:"o"`
	ID      uint64 `json:"id"`
}

// ErrTimeout means a read took longer than its context allowed (or the
// server's max_execution_time derived from it).
var ErrTimeout = errors.New("query timed out")

// Records returns the page of records of area a that q asks for, limited to
// records of the given sites (none: no records).
//
// When ctx has a deadline, the server is told to stop at the same time
// (max_execution_time), so an abandoned query does not keep running there.
//
// Areas in insertion order (parts) are read in two steps: the ids of the
// page first, then the page's rows by id through the primary key.
// ClickHouse 18.16 does not read in index order for ORDER BY ... LIMIT, so
// a one-step read would read every column of every row before the page.
// With an order index (parts_order) the ids are found in windows of its
// key range that hold about the page (records_window.go); a read of one
// location around one time, in the location index's key range
// (records_located.go); without either, by reading the filters' and the
// order's columns of every row.
func (s *Store) Records(ctx context.Context, a *RecordArea, q l2l.Query, sites []uint64) (RecordPage, error) {
	return s.readRecords(ctx, a, q, sites, nil, nil, nil)
}

// RecordsAfter is Records for a query in insertion order (InsertionOrder)
// that starts after cursor instead of at q.Offset: the first step reads
// only the rows past the cursor, however deep it is.
func (s *Store) RecordsAfter(ctx context.Context, a *RecordArea, q l2l.Query, sites []uint64, after Cursor) (RecordPage, error) {
	if !a.InsertionOrder(q) {
		return RecordPage{}, fmt.Errorf("%s: a cursor needs the insertion order", a.def.Name)
	}
	return s.readRecords(ctx, a, q, sites, nil, &after, nil)
}

// RecordsAt is Records for a query in insertion order whose page is known:
// the rows at positions at (in order, as an earlier read's Ahead gave them;
// at most q.Limit), read through the primary key without looking for them.
// Rows at positions a paging client has reached never change (rows only
// join the end of the order), so a remembered page is the page.
func (s *Store) RecordsAt(ctx context.Context, a *RecordArea, q l2l.Query, sites []uint64, at []Cursor) (RecordPage, error) {
	if !a.InsertionOrder(q) || len(at) == 0 || len(at) > q.Limit {
		return RecordPage{}, fmt.Errorf("%s: RecordsAt needs the insertion order and 1 to limit positions", a.def.Name)
	}
	return s.readRecords(ctx, a, q, sites, nil, nil, at)
}

// RecordByID returns the record of area a with that id when it is one of
// the given sites' and matches q's filters, else ErrNotFound. A record of
// another site is answered exactly like a missing one.
func (s *Store) RecordByID(ctx context.Context, a *RecordArea, id uint64, q l2l.Query, sites []uint64) (RecordPage, error) {
	p, err := s.readRecords(ctx, a, q, sites, &id, nil, nil)
	if err != nil {
		return RecordPage{}, err
	}
	if len(p.Rows) == 0 {
		return RecordPage{}, fmt.Errorf("%s record %d: %w", a.def.Name, id, ErrNotFound)
	}
	return p, nil
}

// querySettings passes ctx's deadline on to the server, and turns on
// predicate push-down for an area that asks for it.
func querySettings(ctx context.Context, a *RecordArea) context.Context {
	set := clickhouse.Settings{}
	if deadline, ok := ctx.Deadline(); ok {
		set["max_execution_time"] = max(int(math.Ceil(time.Until(deadline).Seconds())), 1)
	}
	if a.def.Pushdown {
		set["enable_optimize_predicate_expression"] = 1
	}
	if len(set) == 0 {
		return ctx
	}
	return withSettings(ctx, set)
}

func (s *Store) readRecords(ctx context.Context, a *RecordArea, q l2l.Query, sites []uint64, id *uint64, after *Cursor, at []Cursor) (RecordPage, error) {
	fields := q.Selected(a.schema)
	if len(sites) == 0 {
		return RecordPage{Fields: fields, Rows: [][]any{}}, nil
	}
	ctx = querySettings(ctx, a)
	props, err := s.customFields(ctx, a, q, sites)
	if err != nil {
		return RecordPage{}, readError(ctx, a, err)
	}
	var query string
	var args []any
	var order map[uint64]int
	// want is the most rows the page's statement may answer.
	want := q.Limit
	if id != nil {
		want = 1
	}
	var next *Cursor
	var ahead []Cursor
	if a.keyset && id == nil {
		var ids []uint64
		var last Cursor
		// span: the order_ms of the page's first and last rows, when
		// its positions are known.
		var span *[2]int64
		if at != nil {
			ids = make([]uint64, len(at))
			for i, c := range at {
				ids[i] = c.ID
			}
			last = at[len(at)-1]
			span = &[2]int64{at[0].OrderMs, last.OrderMs}
		} else {
			n := q.Limit
			if a.ahead > 1 && a.InsertionOrder(q) {
				n *= a.ahead
			}
			var pos []Cursor
			switch {
			case a.locates(q):
				pos, err = s.locatedPositions(ctx, a, q, sites, after, n)
			case a.index != "" && a.InsertionOrder(q):
				pos, err = s.windowPositions(ctx, a, q, sites, after, n)
			default:
				pos, err = s.pageIDs(ctx, a, q, sites, after, n)
			}
			if err != nil {
				return RecordPage{}, err
			}
			if len(pos) > q.Limit {
				pos, ahead = pos[:q.Limit], pos[q.Limit:]
			}
			ids = make([]uint64, len(pos))
			for i, c := range pos {
				ids[i] = c.ID
			}
			if len(pos) > 0 {
				last = pos[len(pos)-1]
				span = &[2]int64{pos[0].OrderMs, last.OrderMs}
			}
		}
		if a.InsertionOrder(q) {
			switch {
			case len(ids) > 0:
				next = &last
			case after != nil:
				next = after
			}
		}
		if len(ids) == 0 {
			return RecordPage{Fields: fields, Rows: [][]any{}}, nil
		}
		order = make(map[uint64]int, len(ids))
		for i, id := range ids {
			order[id] = i
		}
		if a.index == "" || !a.InsertionOrder(q) {
			span = nil
		}
		query, args, err = rowsByIDSQL(a, q, sites, props, ids, span)
		if err != nil {
			return RecordPage{}, err
		}
		want = len(ids)
		if a.InsertionOrder(q) {
			// The id ranges may hold a few rows past the page (see
			// rowsByIDSQL); only a runaway range is stopped.
			want = 10 * q.Limit
		}
	} else {
		query, args, err = recordsSQLProps(a, q, sites, id, props)
		if err != nil {
			return RecordPage{}, err
		}
	}
	for _, p := range props {
		fields = append(fields, l2l.Field{Name: "custom__" + p, Type: l2l.String, Nullable: true})
	}
	rows, err := s.conn.Query(maxRows(ctx, want), query, args...)
	if err != nil {
		return RecordPage{}, readError(ctx, a, err)
	}
	defer rows.Close()
	page := RecordPage{Fields: fields, Rows: make([][]any, 0, min(q.Limit, 256))}
	dest := make([]any, len(fields)+2)
	var rowIDs []uint64
	for rows.Next() {
		var site, rowID uint64
		dest[0], dest[1] = &site, &rowID
		for i, f := range fields {
			dest[i+2] = scanTarget(f)
		}
		if err := rows.Scan(dest...); err != nil {
			return RecordPage{}, fmt.Errorf("scan %s record: %w", a.def.Name, err)
		}
		row := make([]any, len(fields))
		for i, f := range fields {
			row[i] = scannedValue(f, dest[i+2])
		}
		page.Rows = append(page.Rows, row)
		page.Sites = append(page.Sites, site)
		rowIDs = append(rowIDs, rowID)
	}
	if err := rows.Err(); err != nil {
		return RecordPage{}, readError(ctx, a, err)
	}
	if err := s.shiftDates(ctx, a, page); err != nil {
		return RecordPage{}, err
	}
	if order != nil {
		// Put the rows in the order of the ids; a row that vanished between
		// the two reads (it cannot: parts are never deleted) is dropped.
		sorted := RecordPage{Fields: fields, Rows: make([][]any, len(order)), Sites: make([]uint64, len(order))}
		n := 0
		for i, rid := range rowIDs {
			if j, ok := order[rid]; ok && sorted.Rows[j] == nil {
				sorted.Rows[j], sorted.Sites[j] = page.Rows[i], page.Sites[i]
				n++
			}
		}
		if n != len(order) {
			rows, sites := sorted.Rows[:0], sorted.Sites[:0]
			for j := range sorted.Rows {
				if sorted.Rows[j] != nil {
					rows, sites = append(rows, sorted.Rows[j]), append(sites, sorted.Sites[j])
				}
			}
			sorted.Rows, sorted.Sites = rows, sites
		}
		page = sorted
	}
	page.Next = next
	page.Ahead = ahead
	return page, nil
}

// pageIDs returns the ids of the first n rows from the page q asks for
// on, in order, with their insertion-order positions.
func (s *Store) pageIDs(ctx context.Context, a *RecordArea, q l2l.Query, sites []uint64, after *Cursor, n int) ([]Cursor, error) {
	query, args, err := pageIDsSQL(a, q, sites, after, n)
	if err != nil {
		return nil, err
	}
	return s.readCursors(ctx, a, query, args, n, make([]Cursor, 0, n))
}

// readCursors runs query, which selects id and order_ms of at most n rows
// of area a, and appends them to out in order.
func (s *Store) readCursors(ctx context.Context, a *RecordArea, query string, args []any, n int, out []Cursor) ([]Cursor, error) {
	rows, err := s.conn.Query(maxRows(ctx, n), query, args...)
	if err != nil {
		return nil, readError(ctx, a, err)
	}
	defer rows.Close()
	for rows.Next() {
		var c Cursor
		if err := rows.Scan(&c.ID, &c.OrderMs); err != nil {
			return nil, fmt.Errorf("scan %s id: %w", a.def.Name, err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, readError(ctx, a, err)
	}
	return out, nil
}

// customFields returns the custom properties a read of a shows: those
// named in fields=, or, when the request filters on one site (site=N) and
// names no fields, every property of that site's records, sorted.
func (s *Store) customFields(ctx context.Context, a *RecordArea, q l2l.Query, sites []uint64) ([]string, error) {
	if !a.def.Custom {
		return nil, nil
	}
	if len(q.CustomFields) > 0 || len(q.Fields) > 0 {
		return q.CustomFields, nil
	}
	var site any
	for _, f := range q.Filters {
		if f.Field == "site" && f.Op == l2l.OpEq {
			site = f.Value
		}
	}
	if site == nil {
		return nil, nil
	}
	rows, err := s.conn.Query(maxRows(ctx, maxCustomProperties), "SELECT DISTINCT arrayJoin(custom_keys) AS k FROM "+a.from+
		" WHERE deleted = 0 AND site IN ? AND site = ? ORDER BY k", groupSet(sites), site)
	if err != nil {
		return nil, fmt.Errorf("custom properties of %s: %w", a.def.Name, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, fmt.Errorf("custom properties of %s: %w", a.def.Name, err)
		}
		if l2l.CustomName(k) {
			out = append(out, k)
		}
	}
	return out, rows.Err()
}

// readError wraps err, marking a read stopped by a limit (see Limit; the
// context's deadline counts) with ErrTimeout or ErrTooBig.
func readError(ctx context.Context, a *RecordArea, err error) error {
	lim := Limit(err)
	if lim == nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		lim = ErrTimeout
	}
	if lim != nil {
		return fmt.Errorf("read %s: %w: %w", a.def.Name, lim, err)
	}
	return fmt.Errorf("read %s: %w", a.def.Name, err)
}

// maxRows sends max_result_rows with the queries run under the returned
// context: a statement that would answer more rows than the read needs
// fails (ErrTooBig) instead of building them.
func maxRows(ctx context.Context, n int) context.Context {
	return withSettings(ctx, clickhouse.Settings{"max_result_rows": max(n, 1)})
}

// maxCustomProperties bounds the custom property names one read shows.
const maxCustomProperties = 10_000

func scanTarget(f l2l.Field) any {
	if f.AfterRead {
		return new([]int64)
	}
	switch f.Type {
	case l2l.Float:
		if f.Nullable {
			return new(*float64)
		}
		return new(float64)
	case l2l.String:
		if f.Nullable {
			return new(*string)
		}
		return new(string)
	case l2l.Bool:
		if f.Nullable {
			return new(*uint8)
		}
		return new(uint8)
	}
	if f.Nullable {
		return new(*int64)
	}
	return new(int64)
}

// scannedValue turns a scan target into the value l2l renders for f.
func scannedValue(f l2l.Field, dest any) any {
	var v any
	switch d := dest.(type) {
	case *[]int64:
		return *d
	case *int64:
		v = *d
	case **int64:
		if *d == nil {
			return nil
		}
		v = **d
	case *float64:
		return *d
	case **float64:
		if *d == nil {
			return nil
		}
		return **d
	case *string:
		return *d
	case **string:
		if *d == nil {
			return nil
		}
		return **d
	case *uint8:
		return *d != 0
	case **uint8:
		if *d == nil {
			return nil
		}
		return **d != 0
	}
	n := v.(int64)
	switch f.Type {
	case l2l.DateTime, l2l.LocalDateTime:
		return time.UnixMilli(n).UTC()
	case l2l.Date:
		return time.Unix(n*86400, 0).UTC()
	}
	return n
}
