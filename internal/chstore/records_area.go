package chstore

// How a record area is read: its table, the SQL expression of each field,
// the record's site, and the options of the read (insertion order,
// visibility lag, look-ahead, custom properties, push-down).

import (
	"fmt"
	"regexp"
	"slices"
	"time"

	"github.com/takt/takt/internal/l2l"
)

// RecordColumn is one field of a record area and the SQL expression that
// computes it from a row of the area's table.
//
// The expression's type follows the field's: Int an integer, Float a
// number, String a string (Enum and UUID columns go through toString),
// Bool a UInt8, DateTime and LocalDateTime Int64 Unix milliseconds, Date
// Int64 days since 1970-01-01. A nullable field's expression may be
// Nullable (nullIf turns a sentinel such as the empty string into null);
// filters and orders apply to the expression itself.
type RecordColumn struct {
	Field l2l.Field
	Expr  string
	// Order, when set, is what ORDER BY uses instead of Expr (the same
	// order, cheaper to compute).
	Order string
}

// RecordArea describes how one record area is read: its table, its columns
// and which expression holds a record's site. Areas are defined in this
// file and are immutable; With* methods return changed copies.
type RecordArea struct {
	name   string
	table  string
	master bool   // ReplacingMergeTree master data: read FINAL, skip deleted
	from   string // the FROM expression (default: the table, or its FINAL subquery)
	// pushdown: filters are pushed into the FROM subquery (withPushdown).
	pushdown bool
	site     string // the record's site, or, with siteArray, its Array(UInt64) of sites
	// siteArray: a record is visible when its sites are a non-empty subset
	// of the caller's (users, and API keys through their user).
	siteArray bool
	// custom: the table has custom_keys/custom_values (custom properties).
	custom bool
	// lag hides rows whose inserted_at is within the last lag (see
	// WithVisibilityLag); keyset: pages are found by their ids first.
	lag    time.Duration
	keyset bool
	// ahead: reads in insertion order find the positions of this many
	// pages (see WithLookAhead).
	ahead  int
	cols   []RecordColumn
	byName map[string]int
	schema *l2l.Schema
}

var identifier = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// newRecordArea checks a definition. master tables are read through FINAL
// with deleted = 0; siteExpr is the expression of the record's site.
func newRecordArea(name, table string, master bool, siteExpr string, cols ...RecordColumn) (*RecordArea, error) {
	if !identifier.MatchString(name) || !identifier.MatchString(table) || siteExpr == "" {
		return nil, fmt.Errorf("record area %q: bad name, table or site expression", name)
	}
	fields := make([]l2l.Field, len(cols))
	byName := make(map[string]int, len(cols))
	for i, c := range cols {
		if c.Expr == "" {
			return nil, fmt.Errorf("record area %s: field %s has no expression", name, c.Field.Name)
		}
		fields[i] = c.Field
		byName[c.Field.Name] = i
	}
	schema, err := l2l.NewSchema(name, fields...)
	if err != nil {
		return nil, err
	}
	if cols[byName["id"]].Expr != "id" {
		return nil, fmt.Errorf("record area %s: field id must be the table's id column", name)
	}
	from := table
	if master {
		// FINAL in a subquery: the filters then see only the latest
		// version of each record, whatever the server pushes down.
		from = "(SELECT * FROM " + table + " FINAL)"
	}
	return &RecordArea{name: name, table: table, master: master, from: from, site: siteExpr,
		cols: slices.Clone(cols), byName: byName, schema: schema}, nil
}

func mustRecordArea(name, table string, master bool, siteExpr string, cols ...RecordColumn) *RecordArea {
	a, err := newRecordArea(name, table, master, siteExpr, cols...)
	if err != nil {
		panic(err)
	}
	return a
}

// withPushdown has the server push the request's filters into the FROM
// subquery (enable_optimize_predicate_expression: off by default on 18.16,
// on in later versions), for an area whose FROM aggregates whole tables.
func (a *RecordArea) withPushdown() *RecordArea {
	c := *a
	c.pushdown = true
	return &c
}

// withFrom replaces the FROM expression (a fixed fragment of this file).
func (a *RecordArea) withFrom(from string) *RecordArea {
	c := *a
	c.from = from
	return &c
}

// withSiteArray makes site an Array(UInt64) expression of the record's
// sites.
func (a *RecordArea) withSiteArray() *RecordArea {
	c := *a
	c.siteArray = true
	return &c
}

// withCustom gives the area custom properties (custom_keys and
// custom_values columns).
func (a *RecordArea) withCustom() *RecordArea {
	c := *a
	c.custom = true
	c.schema = c.schema.WithCustomProperties()
	return &c
}

// withInsertionOrder makes requests without order_by page in the order
// rows were stored (the inserted_at column, then id), read keyset-wise.
func (a *RecordArea) withInsertionOrder(field string) *RecordArea {
	c := *a
	s, err := c.schema.WithDefaultOrder(l2l.Order{Field: field})
	if err != nil {
		panic(err)
	}
	c.schema, c.keyset = s, true
	return &c
}

// WithVisibilityLag returns a copy of a that hides the rows stored in the
// last d (by the server's clock), for areas in insertion order (parts);
// other areas are returned unchanged. See the README's record API section:
// with a lag longer than any INSERT takes, rows only ever appear after the
// rows a paging client has already seen, so the paging loop visits every
// row exactly once.
func (a *RecordArea) WithVisibilityLag(d time.Duration) *RecordArea {
	if !a.keyset {
		return a
	}
	c := *a
	c.lag = d
	return &c
}

// WithLookAhead returns a copy of a whose reads in insertion order also
// find the positions of the rows of the pages - 1 pages after the one
// asked for (RecordPage.Ahead), at almost no cost: finding a page's ids
// scans the whole table (ClickHouse 18.16 does not read in index order),
// however few ids it keeps. A caller that remembers them reads the
// following pages with RecordsAt, which skips that scan. Other areas are
// returned unchanged.
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
func (a *RecordArea) Name() string { return a.name }

// Table returns the ClickHouse table of the area.
func (a *RecordArea) Table() string { return a.table }

// Schema returns the fields a query of the area may name.
func (a *RecordArea) Schema() *l2l.Schema { return a.schema }

// InsertionOrder reports whether q reads area a in insertion order, the
// order cursors address.
func (a *RecordArea) InsertionOrder(q l2l.Query) bool {
	return a.keyset && len(q.OrderBy) == 2 && q.OrderBy[0] == l2l.Order{Field: "stored_at"} && q.OrderBy[1] == l2l.Order{Field: "id"}
}

func col(name string, t l2l.Type, expr string) RecordColumn {
	return RecordColumn{Field: l2l.Field{Name: name, Type: t}, Expr: expr}
}

func nullCol(name string, t l2l.Type, expr string) RecordColumn {
	return RecordColumn{Field: l2l.Field{Name: name, Type: t, Nullable: true}, Expr: expr}
}

// msOf turns a DateTime column (seconds) into Int64 milliseconds.
func msOf(column string) string { return "toInt64(toUInt32(" + column + ")) * 1000" }

// auditColumns are the fields every master-data area shows last.
func auditColumns() []RecordColumn {
	return []RecordColumn{
		col("created", l2l.DateTime, msOf("created")),
		col("lastupdated", l2l.DateTime, msOf("lastupdated")),
		col("createdby", l2l.String, "createdby"),
		col("lastupdatedby", l2l.String, "lastupdatedby"),
	}
}

func withAudit(cols ...RecordColumn) []RecordColumn { return append(cols, auditColumns()...) }

// joinList shows an array column as a comma-separated string.
func joinList(column string) string {
	return "arrayStringConcat(arrayMap(x -> toString(x), " + column + "), ',')"
}
