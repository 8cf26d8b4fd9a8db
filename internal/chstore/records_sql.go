package chstore

// The statements of record-area reads.
//
// Statements are built from two kinds of text only: fragments fixed in the
// area definitions and this file (table names, column expressions,
// operators, keywords) and "?" placeholders. A field name from a request is
// never written into SQL: it only selects one of the area's columns, and
// every value a request carries is bound with "?" (clickhouse-go writes it
// as an escaped literal).

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/takt/takt/internal/l2l"
)

// sqlOps maps filter operators to SQL; only these fragments are written.
var sqlOps = map[l2l.Op]string{l2l.OpEq: " = ", l2l.OpLt: " < ", l2l.OpLte: " <= ", l2l.OpGt: " > ", l2l.OpGte: " >= "}

// recordsSQL builds the one-step read of a page (or of the record id) and
// its arguments: the site and the id come first in the result, then the
// selected fields.
func recordsSQL(a *RecordArea, q l2l.Query, sites []uint64, id *uint64) (string, []any, error) {
	return recordsSQLProps(a, q, sites, id, q.CustomFields)
}

func recordsSQLProps(a *RecordArea, q l2l.Query, sites []uint64, id *uint64, props []string) (string, []any, error) {
	var b strings.Builder
	args := selectSQL(&b, a, q, props)
	where, wargs, err := whereSQL(a, q, sites, id)
	if err != nil {
		return "", nil, err
	}
	b.WriteString(where)
	args = append(args, wargs...)
	if err := orderSQL(&b, a, q); err != nil {
		return "", nil, err
	}
	if id != nil {
		b.WriteString(" LIMIT 1")
	} else {
		b.WriteString(" LIMIT ? OFFSET ?")
		args = append(args, q.Limit, q.Offset)
	}
	return b.String(), args, nil
}

// pageIDsSQL builds the first step of a keyset read: the ids of the first
// n rows from the page on, reading only what the filters and the order
// need.
func pageIDsSQL(a *RecordArea, q l2l.Query, sites []uint64, after *Cursor, n int) (string, []any, error) {
	var b strings.Builder
	b.WriteString("SELECT id, order_ms")
	where, args, err := whereSQL(a, q, sites, nil)
	if err != nil {
		return "", nil, err
	}
	b.WriteString(where)
	return pageTailSQL(&b, args, a, q, after, n)
}

// pageTailSQL ends a page's id read in b: the rows after the cursor (if
// any), the order, and n rows from there (from the query's offset when
// there is no cursor).
func pageTailSQL(b *strings.Builder, args []any, a *RecordArea, q l2l.Query, after *Cursor, n int) (string, []any, error) {
	if after != nil {
		b.WriteString(" AND (order_ms > ? OR order_ms = ? AND id > ?)")
		args = append(args, after.OrderMs, after.OrderMs, after.ID)
	}
	if err := orderSQL(b, a, q); err != nil {
		return "", nil, err
	}
	if after != nil {
		b.WriteString(" LIMIT ?")
		return b.String(), append(args, n), nil
	}
	b.WriteString(" LIMIT ? OFFSET ?")
	return b.String(), append(args, n, q.Offset), nil
}

// rowsByIDSQL builds the second step of a keyset read: the rows with the
// given ids, found through the primary key. The caller orders them.
//
// In insertion order a page's ids are contiguous within each Kafka
// partition, so ranges hold just the page. In any other order (order_by=
// cycle_time) its ids spread over whole partitions and the ranges would
// hold every row between them, so the ids are listed too: the work and
// the rows built stay those of the page.
//
// span, when set, holds the order_ms of the page's first and last rows
// (insertion order, a table with order_ms): it is the PREWHERE. An id
// range selects, in every data part of the table, the granule where the
// partition's ids end as well (the primary key cannot tell what lies
// between two marks), and those granules hold rows of other times: the
// order_ms column alone rules them out, before the other columns are read.
func rowsByIDSQL(a *RecordArea, q l2l.Query, sites []uint64, props []string, ids []uint64, span *[2]int64) (string, []any, error) {
	var b strings.Builder
	args := selectSQL(&b, a, q, props)
	from := a.from
	if span != nil {
		from += " PREWHERE order_ms >= ? AND order_ms <= ?"
		args = append(args, span[0], span[1])
	}
	where, wargs, err := whereFromSQL(a, from, q, sites, nil)
	if err != nil {
		return "", nil, err
	}
	args = append(args, wargs...)
	// Ranges per id >> 40 (a part's Kafka partition) rather than a list
	// of 2000 ids: a long IN list costs more to parse than the read. Within
	// one partition the page's ids are contiguous in insertion order, so a
	// range holds only the page's rows; the caller drops any other.
	lo, hi := map[uint64]uint64{}, map[uint64]uint64{}
	for _, id := range ids {
		g := id >> 40
		if v, ok := lo[g]; !ok || id < v {
			lo[g] = id
		}
		if id > hi[g] {
			hi[g] = id
		}
	}
	groups := make([]uint64, 0, len(lo))
	for g := range lo {
		groups = append(groups, g)
	}
	slices.Sort(groups)
	b.WriteString(where + " AND (")
	for i, g := range groups {
		if i > 0 {
			b.WriteString(" OR ")
		}
		b.WriteString("id BETWEEN ? AND ?")
		args = append(args, lo[g], hi[g])
	}
	b.WriteString(")")
	if !a.InsertionOrder(q) {
		set := make([]any, len(ids))
		for i, id := range ids {
			set[i] = id
		}
		b.WriteString(" AND id IN ?")
		args = append(args, clickhouse.GroupSet{Value: set})
	}
	return b.String(), args, nil
}

// selectSQL writes the select list (without FROM) and returns its
// arguments (custom property names).
func selectSQL(b *strings.Builder, a *RecordArea, q l2l.Query, props []string) []any {
	var args []any
	b.WriteString("SELECT toUInt64(")
	if a.siteArray {
		b.WriteString(a.site + "[1]")
	} else {
		b.WriteString(a.site)
	}
	b.WriteString(") AS _site, toUInt64(id) AS _id")
	for i, f := range q.Selected(a.schema) {
		e := a.cols[a.byName[f.Name]].expr
		if !f.AfterRead {
			e = selectExpr(f, e)
		}
		fmt.Fprintf(b, ", %s AS _c%d", e, i)
	}
	for i, p := range props {
		fmt.Fprintf(b, ", if(has(custom_keys, ?), toNullable(custom_values[indexOf(custom_keys, ?)]), NULL) AS _p%d", i)
		args = append(args, p, p)
	}
	return args
}

// whereSQL writes " FROM ... WHERE ..." with the site restriction, the id,
// the watermark and the filters.
func whereSQL(a *RecordArea, q l2l.Query, sites []uint64, id *uint64) (string, []any, error) {
	return whereFromSQL(a, a.from, q, sites, id)
}

// whereFromSQL is whereSQL reading from, which must have the columns the
// site, the watermark and the filters name.
func whereFromSQL(a *RecordArea, from string, q l2l.Query, sites []uint64, id *uint64) (string, []any, error) {
	var b strings.Builder
	var args []any
	b.WriteString(" FROM " + from + " WHERE ")
	if a.master {
		b.WriteString("deleted = 0 AND ")
	}
	if a.siteArray {
		b.WriteString("notEmpty(" + a.site + ") AND hasAll(?, " + a.site + ")")
		args = append(args, slices.Clone(sites))
	} else {
		b.WriteString(a.site + " IN ?")
		args = append(args, groupSet(sites))
	}
	if id != nil {
		b.WriteString(" AND id = ?")
		args = append(args, *id)
	}
	if a.watermarked && id == nil && a.InsertionOrder(q) {
		// Only the insertion order promises exactly-once paging, so only
		// it stops at the watermark; an explicit order_by sees a row once
		// it is stored.
		b.WriteString(" AND order_ms <= ?")
		args = append(args, a.watermark)
	}
	for _, f := range q.Filters {
		i, ok := a.byName[f.Field]
		if !ok {
			return "", nil, fmt.Errorf("%s: filter on unknown field %q", a.def.Name, f.Field)
		}
		c := a.cols[i]
		if c.field.AfterRead {
			return "", nil, fmt.Errorf("%s: filter on %s, which is computed after the read", a.def.Name, f.Field)
		}
		if f.Op == l2l.OpIsNull {
			isNull, ok := f.Value.(bool)
			if !ok {
				return "", nil, fmt.Errorf("%s: isnull filter on %s with %T", a.def.Name, f.Field, f.Value)
			}
			fn := "isNotNull("
			if isNull {
				fn = "isNull("
			}
			b.WriteString(" AND " + fn + c.expr + ")")
			continue
		}
		op, ok := sqlOps[f.Op]
		if !ok {
			return "", nil, fmt.Errorf("%s: unknown operator %q", a.def.Name, f.Op)
		}
		v, err := sqlValue(c.field, f.Value)
		if err != nil {
			return "", nil, fmt.Errorf("%s: filter on %s: %w", a.def.Name, f.Field, err)
		}
		b.WriteString(" AND (" + c.expr + ")" + op + "?")
		args = append(args, v)
	}
	if len(q.Custom) > 0 && !a.def.Custom {
		return "", nil, fmt.Errorf("%s has no custom properties", a.def.Name)
	}
	for _, f := range q.Custom {
		if f.Op == l2l.OpIsNull {
			isNull, ok := f.Value.(bool)
			if !ok {
				return "", nil, fmt.Errorf("%s: isnull filter on custom %s with %T", a.def.Name, f.Field, f.Value)
			}
			if isNull {
				b.WriteString(" AND NOT has(custom_keys, ?)")
			} else {
				b.WriteString(" AND has(custom_keys, ?)")
			}
			args = append(args, f.Field)
			continue
		}
		op, ok := sqlOps[f.Op]
		v, isString := f.Value.(string)
		if !ok || !isString {
			return "", nil, fmt.Errorf("%s: bad filter on custom %s", a.def.Name, f.Field)
		}
		b.WriteString(" AND has(custom_keys, ?) AND custom_values[indexOf(custom_keys, ?)]" + op + "?")
		args = append(args, f.Field, f.Field, v)
	}
	return b.String(), args, nil
}

// orderSQL writes " ORDER BY ...".
func orderSQL(b *strings.Builder, a *RecordArea, q l2l.Query) error {
	b.WriteString(" ORDER BY ")
	for i, o := range q.OrderBy {
		ci, ok := a.byName[o.Field]
		if !ok {
			return fmt.Errorf("%s: order by unknown field %q", a.def.Name, o.Field)
		}
		if a.cols[ci].field.AfterRead {
			return fmt.Errorf("%s: order by %s, which is computed after the read", a.def.Name, o.Field)
		}
		if i > 0 {
			b.WriteString(", ")
		}
		if c := a.cols[ci]; c.order != "" {
			b.WriteString(c.order)
		} else {
			b.WriteString(c.expr)
		}
		if o.Desc {
			b.WriteString(" DESC")
		}
	}
	return nil
}

// selectExpr converts a column expression to the one type each field type
// is scanned as.
func selectExpr(f l2l.Field, expr string) string {
	var conv string
	switch f.Type {
	case l2l.Int, l2l.DateTime, l2l.LocalDateTime, l2l.Date:
		conv = "toInt64"
	case l2l.Float:
		conv = "toFloat64"
	case l2l.String:
		conv = "toString"
	case l2l.Bool:
		conv = "toUInt8"
	}
	e := conv + "(" + expr + ")"
	if f.Nullable {
		e = "toNullable(" + e + ")"
	}
	return e
}

// sqlValue converts a filter value to what its column expression compares
// with.
func sqlValue(f l2l.Field, v any) (any, error) {
	switch x := v.(type) {
	case int64:
		if f.Type == l2l.Int {
			return x, nil
		}
	case float64:
		if f.Type == l2l.Float {
			return x, nil
		}
	case string:
		if f.Type == l2l.String {
			return x, nil
		}
	case bool:
		if f.Type == l2l.Bool {
			if x {
				return uint8(1), nil
			}
			return uint8(0), nil
		}
	case time.Time:
		switch f.Type {
		case l2l.DateTime, l2l.LocalDateTime:
			return x.UnixMilli(), nil
		case l2l.Date:
			return int64(math.Floor(float64(x.Unix()) / 86400)), nil
		}
	}
	return nil, fmt.Errorf("value %v (%T) does not fit a %v field", v, v, f.Type)
}

func groupSet(sites []uint64) clickhouse.GroupSet {
	set := make([]any, len(sites))
	for i, s := range sites {
		set[i] = s
	}
	return clickhouse.GroupSet{Value: set}
}
