package chstore

// How a record area is read: its FROM, the SQL expression of each field,
// the record's site, and the options of the read (insertion order, the
// watermark, look-ahead, custom properties, push-down), all derived from
// the area's definition (internal/record).

import (
	"fmt"

	"github.com/takt/takt/internal/l2l"
	"github.com/takt/takt/internal/record"
)

// column is one field a read may select, filter and order by, and the SQL
// expression that computes it from a row of the area's FROM.
//
// The expression's type follows the field's: Int an integer, Float a
// number, String a string (Enum and UUID columns go through toString),
// Bool a UInt8, DateTime and LocalDateTime Int64 Unix milliseconds, Date
// Int64 days since 1970-01-01; a field computed after the read
// (l2l.Field.AfterRead) an Array(Int64) of what it is computed from. A nullable field's expression may be
// Nullable (nullIf turns a sentinel such as the empty string into null);
// filters and orders apply to the expression itself.
type column struct {
	field l2l.Field
	expr  string
	// order, when set, is what ORDER BY uses instead of expr (the same
	// order, cheaper to compute).
	order string
}

// RecordArea is how one record area is read. It is immutable; With*
// methods return changed copies.
type RecordArea struct {
	def    *record.Area
	master bool   // versioned master data: read FINAL, skip deleted
	from   string // the FROM expression (default: the table, or its FINAL subquery)
	site   string // the record's site, or, with siteArray, its Array(UInt64) of sites
	// siteArray: a record is visible when its sites are a non-empty subset
	// of the caller's (users, and API keys through their user).
	siteArray bool
	// watermarked: reads in insertion order show only the rows with
	// order_ms <= watermark (see WithWatermark); keyset: pages are found
	// by their ids first.
	watermarked bool
	watermark   int64
	keyset      bool
	// index is the area's OrderIndex table (empty: none), indexed the
	// fields whose expressions it can compute.
	index   string
	indexed map[string]bool
	// locIndex is the area's LocationIndex table (empty: none), locKey
	// the expressions of its key fields, locFields the fields whose
	// expressions it can compute.
	locIndex  string
	locKey    [2]string
	locFields map[string]bool
	locLeadMs int64 // record.Area.LocationLead in ms (0: none)
	// ahead: reads in insertion order find the positions of this many
	// pages (see WithLookAhead).
	ahead  int
	cols   []column
	byName map[string]int
	schema *l2l.Schema
}

// NewRecordArea returns how the area def is read, with the default limits.
func NewRecordArea(def *record.Area) (*RecordArea, error) {
	schema, err := def.Schema()
	if err != nil {
		return nil, err
	}
	a := &RecordArea{def: def, master: def.Versioned, from: def.From, keyset: def.InsertionOrder != "",
		byName: map[string]int{}, schema: schema}
	if a.from == "" {
		a.from = def.Table
		if def.Versioned {
			// FINAL in a subquery: the filters then see only the latest
			// version of each record, whatever the server pushes down.
			a.from = "(SELECT * FROM " + def.Table + " FINAL)"
		}
	}
	if def.OrderIndex != "" {
		a.index, a.indexed = def.OrderIndex, map[string]bool{}
		for _, name := range def.IndexFields {
			a.indexed[name] = true
		}
	}
	if def.LocationIndex != "" {
		a.locIndex, a.locFields, a.locLeadMs = def.LocationIndex, map[string]bool{}, def.LocationLead.Milliseconds()
		for _, name := range def.LocationFields {
			a.locFields[name] = true
		}
		for i, name := range def.LocationKey {
			f, ok := def.Field(name)
			if !ok {
				return nil, fmt.Errorf("record area %s: location key field %s is not a field", def.Name, name)
			}
			a.locKey[i] = readExpr(*f)
		}
	}
	for _, f := range def.Fields {
		if !f.Has(record.Read) {
			continue
		}
		c := column{field: f.L2L(), expr: readExpr(f), order: f.Order}
		if f.Derived == record.ShiftStartDate {
			if def.Line == "" {
				return nil, fmt.Errorf("record area %s: field %s needs the area's line", def.Name, f.Name)
			}
			// The read gives the instant and the line; readRecords
			// turns them into the date (shiftDates).
			c.expr = "[toInt64(" + f.Expr + "), toInt64(" + def.Line + ")]"
		}
		a.byName[f.Name] = len(a.cols)
		a.cols = append(a.cols, c)
	}
	switch s := def.Site; {
	case s.Via != "":
		a.site, a.siteArray = s.Expr, true
	case s.Field == "id":
		a.site = "id"
	default:
		f, _ := def.Field(s.Field)
		a.site, a.siteArray = readExpr(*f), f.Kind == record.Uints
		if a.siteArray {
			a.site = f.Name
		}
	}
	if a.site == "" {
		return nil, fmt.Errorf("record area %s: no site expression", def.Name)
	}
	return a, nil
}

// readExpr is the SQL expression of field f: a computed field's own, else
// the column's, shown as its kind is shown.
func readExpr(f record.Field) string {
	if !f.Stored() {
		return f.Expr
	}
	switch f.Kind {
	case record.Uint:
		if f.Nullable {
			return "nullIf(" + f.Name + ", 0)"
		}
	case record.String:
		if f.Nullable {
			return "nullIf(" + f.Name + ", '')"
		}
	case record.Enum:
		return "toString(" + f.Name + ")"
	case record.Uints:
		return "arrayStringConcat(arrayMap(x -> toString(x), " + f.Name + "), ',')"
	case record.Strings:
		return "arrayStringConcat(" + f.Name + ", ',')"
	case record.Time:
		ms := "toInt64(toUInt32(`" + f.Name + "`)) * 1000"
		if f.Nullable {
			return "nullIf(" + ms + ", 0)"
		}
		return ms
	}
	return f.Name
}

// WithWatermark returns a copy of a whose reads in insertion order show
// only the rows with order_ms <= ms, for areas in insertion order (parts);
// other areas are returned unchanged. With ms a published parts watermark
// (internal/watermark), no row is ever stored at or below it later, so the
// rows shown are a prefix of the insertion order that only grows at its
// end, and the paging loop visits every row exactly once; and that prefix
// holds every part acknowledged by ms. Without it, a read in insertion
// order shows every stored row, and a row stored while a client pages may
// land behind the page it read.
func (a *RecordArea) WithWatermark(ms int64) *RecordArea {
	if !a.keyset {
		return a
	}
	c := *a
	c.watermarked, c.watermark = true, ms
	return &c
}

// WithLookAhead returns a copy of a whose reads in insertion order also
// find the positions of the rows of the pages - 1 pages after the one
// asked for (RecordPage.Ahead), at little cost: finding a page's ids is a
// read of its own (a window of the order index, or, without one, a scan of
// the whole table, since ClickHouse 18.16 does not read in index order),
// and a few more ids add little to it. A caller that remembers them reads
// the following pages with RecordsAt, which skips that read. Other areas
// are returned unchanged.
func (a *RecordArea) WithLookAhead(pages int) *RecordArea {
	if !a.keyset {
		return a
	}
	c := *a
	c.ahead = max(pages, 1)
	return &c
}

// WithSchema returns a copy of a that parses requests with s, which must
// be a.Schema() with other limits (l2l.Schema.WithLimits).
func (a *RecordArea) WithSchema(s *l2l.Schema) *RecordArea {
	c := *a
	c.schema = s
	return &c
}

// Name returns the area's name in URLs.
func (a *RecordArea) Name() string { return a.def.Name }

// Schema returns the fields a query of the area may name.
func (a *RecordArea) Schema() *l2l.Schema { return a.schema }

// InsertionOrder reports whether q reads area a in insertion order, the
// order cursors address.
func (a *RecordArea) InsertionOrder(q l2l.Query) bool {
	return a.keyset && len(q.OrderBy) == 2 && q.OrderBy[0] == l2l.Order{Field: a.def.InsertionOrder} && q.OrderBy[1] == l2l.Order{Field: "id"}
}
