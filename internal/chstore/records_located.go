package chstore

// Finding a page of one location's records around one time through the
// area's location index (record.Area.LocationIndex: parts_by_location,
// sorted by externalid, then recorded_ms).
//
// "The parts line_1 recorded at 10:00:00" (or since, or before) is what a
// client that just sent a part asks, and what an integrator's sync asks
// for a window. In the insertion order's index those rows lie wherever
// they were stored, so a search by windows (records_window.go) walks the
// order from its start until it has found them: for a part stored a
// second ago, every row of the table. In the location index they lie in
// one key range, which the primary key narrows to its granules; the rows
// of that range are sorted into the page's order on their own.

import (
	"context"
	"strings"

	"github.com/takt/takt/internal/l2l"
)

// locates reports whether q is answered through a's location index: q
// filters on the index's first key field with an equality and on its
// second (or a field computed by the same expression) with a comparison.
func (a *RecordArea) locates(q l2l.Query) bool {
	if a.locIndex == "" {
		return false
	}
	var key, span bool
	for _, f := range q.Filters {
		i, ok := a.byName[f.Field]
		if !ok {
			continue
		}
		switch expr := a.cols[i].expr; {
		case expr == a.locKey[0] && f.Op == l2l.OpEq:
			key = true
		case expr == a.locKey[1] && f.Op != l2l.OpIsNull:
			span = true
		}
	}
	return key && span
}

// locatedPositions returns the positions of the first n rows of the page
// q asks for (after the cursor after, else at q.Offset), in q's order,
// found through a's location index (see locates).
func (s *Store) locatedPositions(ctx context.Context, a *RecordArea, q l2l.Query, sites []uint64, after *Cursor, n int) ([]Cursor, error) {
	query, args, err := locatedSQL(a, q, sites, after, n)
	if err != nil {
		return nil, err
	}
	return s.readCursors(ctx, a, query, args, n, make([]Cursor, 0, min(n, 1<<16)))
}

// locatedSQL builds the read of locatedPositions. When every filter names
// a field of the index and the order is the insertion order, the index
// alone answers (DISTINCT: a row the view and the migration's backfill
// both copied is there twice until a merge). Otherwise the area's table
// answers, for the ids the index holds under the filters it can check:
// the IN set's ids give the primary key ranges of the table to read.
func locatedSQL(a *RecordArea, q l2l.Query, sites []uint64, after *Cursor, n int) (string, []any, error) {
	indexOnly := len(q.Custom) == 0 && a.InsertionOrder(q)
	narrow := q
	narrow.Filters, narrow.Custom = nil, nil
	for _, f := range q.Filters {
		if a.locFields[f.Field] {
			narrow.Filters = append(narrow.Filters, f)
		} else {
			indexOnly = false
		}
	}
	var b strings.Builder
	var where string
	var args []any
	var err error
	if indexOnly {
		b.WriteString("SELECT DISTINCT id, order_ms")
		where, args, err = whereFromSQL(a, a.locIndex, q, sites, nil)
		if err != nil {
			return "", nil, err
		}
		b.WriteString(where)
		args = orderFloorSQL(&b, args, a, q)
	} else {
		b.WriteString("SELECT id, order_ms")
		where, args, err = whereFromSQL(a, a.from, q, sites, nil)
		if err != nil {
			return "", nil, err
		}
		b.WriteString(where)
		sub, subArgs, err := whereFromSQL(a, a.locIndex, narrow, sites, nil)
		if err != nil {
			return "", nil, err
		}
		b.WriteString(" AND id IN (SELECT id" + sub)
		args = orderFloorSQL(&b, append(args, subArgs...), a, q)
		b.WriteString(")")
	}
	return pageTailSQL(&b, args, a, q, after, n)
}

// orderFloorSQL adds to a read of a's location index the lower bound of
// order_ms that q's lower bound of the index's time field gives (see
// record.Area.LocationLead), if both exist.
func orderFloorSQL(b *strings.Builder, args []any, a *RecordArea, q l2l.Query) []any {
	if a.locLeadMs <= 0 {
		return args
	}
	var lo int64
	found := false
	for _, f := range q.Filters {
		i, ok := a.byName[f.Field]
		if !ok || a.cols[i].expr != a.locKey[1] || a.cols[i].field.Type != l2l.DateTime || (f.Op != l2l.OpEq && f.Op != l2l.OpGt && f.Op != l2l.OpGte) {
			continue
		}
		v, err := sqlValue(a.cols[i].field, f.Value)
		ms, isMs := v.(int64)
		if err != nil || !isMs {
			continue
		}
		if !found || ms > lo {
			lo, found = ms, true
		}
	}
	if !found {
		return args
	}
	b.WriteString(" AND order_ms >= ?")
	return append(args, lo-a.locLeadMs)
}
