package chstore

// Reads of record areas (the query API's /api/1.0/<area>/).
//
// Statements are built from two kinds of text only: fragments fixed in this
// file (table names, column expressions, operators, keywords) and "?"
// placeholders. A field name from a request is never written into SQL: it
// only selects one of the area's columns, and every value a request carries
// is bound with "?" (clickhouse-go writes it as an escaped literal).

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

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
}

// RecordArea describes how one record area is read: its table, its columns
// and which expression holds a record's site. Areas are defined in this
// file and are immutable.
type RecordArea struct {
	name   string
	table  string
	master bool // ReplacingMergeTree master data: read FINAL, skip deleted
	site   string
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
	return &RecordArea{name: name, table: table, master: master, site: siteExpr,
		cols: slices.Clone(cols), byName: byName, schema: schema}, nil
}

func mustRecordArea(name, table string, master bool, siteExpr string, cols ...RecordColumn) *RecordArea {
	a, err := newRecordArea(name, table, master, siteExpr, cols...)
	if err != nil {
		panic(err)
	}
	return a
}

// Name returns the area's name in URLs.
func (a *RecordArea) Name() string { return a.name }

// Schema returns the fields a query of the area may name.
func (a *RecordArea) Schema() *l2l.Schema { return a.schema }

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

// recordAreas are the areas the query API serves. A new area is one entry.
var recordAreas = func() map[string]*RecordArea {
	areas := []*RecordArea{
		// Parts: one record per part event. The table is ordered by id, so
		// the default order (id ascending) and id ranges read the index.
		mustRecordArea("parts", "parts", false, "site",
			col("id", l2l.Int, "id"),
			col("site", l2l.Int, "site"),
			col("externalid", l2l.String, "externalid"),
			col("location", l2l.Int, "location_id"),
			col("location_kind", l2l.String, "toString(location_kind)"),
			nullCol("product", l2l.Int, "nullIf(product_id, 0)"),
			nullCol("product_code", l2l.String, "nullIf(product_code, '')"),
			col("product_resolution", l2l.String, "toString(product_resolution)"),
			nullCol("product_reported", l2l.String, "nullIf(product_reported, '')"),
			col("quantity", l2l.Int, "quantity"),
			col("quality", l2l.String, "toString(quality)"),
			nullCol("reason", l2l.String, "nullIf(reason, '')"),
			nullCol("cycle_time", l2l.Float, "cycle_time"),
			col("recorded_at", l2l.DateTime, "recorded_ms"),
			col("recorded_at_local", l2l.LocalDateTime, "recorded_ms"),
			col("recorded_defaulted", l2l.Bool, "recorded_defaulted"),
			col("received_at", l2l.DateTime, "received_ms"),
			col("event_id", l2l.String, "toString(event_id)"),
		),
		mustRecordArea("sites", "sites", true, "id", append([]RecordColumn{
			col("id", l2l.Int, "id"),
			col("description", l2l.String, "description"),
			col("timezone", l2l.String, "timezone"),
			col("site", l2l.Int, "id"),
		}, auditColumns()...)...),
		mustRecordArea("lines", "lines", true, "site", append([]RecordColumn{
			col("id", l2l.Int, "id"),
			col("site", l2l.Int, "site"),
			col("area", l2l.Int, "area"),
			col("code", l2l.String, "code"),
			col("description", l2l.String, "description"),
			nullCol("externalid", l2l.String, "nullIf(externalid, '')"),
		}, auditColumns()...)...),
		mustRecordArea("products", "products", true, "site", append([]RecordColumn{
			col("id", l2l.Int, "id"),
			col("site", l2l.Int, "site"),
			col("code", l2l.String, "code"),
			col("description", l2l.String, "description"),
			col("ideal_cycle_time", l2l.Float, "ideal_cycle_time"),
			col("fallback", l2l.Bool, "fallback"),
		}, auditColumns()...)...),
	}
	m := make(map[string]*RecordArea, len(areas))
	for _, a := range areas {
		m[a.name] = a
	}
	return m
}()

// RecordAreaByName returns the record area served under name.
func RecordAreaByName(name string) (*RecordArea, bool) {
	a, ok := recordAreas[name]
	return a, ok
}

// RecordAreaNames returns the names of every record area, sorted.
func RecordAreaNames() []string {
	names := make([]string, 0, len(recordAreas))
	for n := range recordAreas {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// RecordPage is the answer to a record-area read: the selected fields, one
// row of values per record (see l2l.Response for their Go types; times are
// in UTC), and the site of each record, which a caller needs to show
// LocalDateTime fields in the site's time zone.
type RecordPage struct {
	Fields []l2l.Field
	Rows   [][]any
	Sites  []uint64
}

// ErrTimeout means a read took longer than its context allowed (or the
// server's max_execution_time derived from it).
var ErrTimeout = errors.New("query timed out")

// Records returns the page of records of area a that q asks for, limited to
// records of the given sites (none: no records).
//
// When ctx has a deadline, the server is told to stop at the same time
// (max_execution_time), so an abandoned query does not keep running there.
func (s *Store) Records(ctx context.Context, a *RecordArea, q l2l.Query, sites []uint64) (RecordPage, error) {
	return s.readRecords(ctx, a, q, sites, nil)
}

// RecordByID returns the record of area a with that id when it is one of
// the given sites' and matches q's filters, else ErrNotFound. A record of
// another site is answered exactly like a missing one.
func (s *Store) RecordByID(ctx context.Context, a *RecordArea, id uint64, q l2l.Query, sites []uint64) (RecordPage, error) {
	p, err := s.readRecords(ctx, a, q, sites, &id)
	if err != nil {
		return RecordPage{}, err
	}
	if len(p.Rows) == 0 {
		return RecordPage{}, fmt.Errorf("%s record %d: %w", a.name, id, ErrNotFound)
	}
	return p, nil
}

func (s *Store) readRecords(ctx context.Context, a *RecordArea, q l2l.Query, sites []uint64, id *uint64) (RecordPage, error) {
	fields := q.Selected(a.schema)
	if len(sites) == 0 {
		return RecordPage{Fields: fields, Rows: [][]any{}}, nil
	}
	query, args, err := recordsSQL(a, q, sites, id)
	if err != nil {
		return RecordPage{}, err
	}
	if deadline, ok := ctx.Deadline(); ok {
		secs := int(math.Ceil(time.Until(deadline).Seconds()))
		ctx = clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{
			"max_execution_time": max(secs, 1),
		}))
	}
	rows, err := s.conn.Query(ctx, query, args...)
	if err != nil {
		return RecordPage{}, readError(ctx, a, err)
	}
	defer rows.Close()
	page := RecordPage{Fields: fields, Rows: make([][]any, 0, min(q.Limit, 256))}
	dest := make([]any, len(fields)+1)
	for rows.Next() {
		var site uint64
		dest[0] = &site
		for i, f := range fields {
			dest[i+1] = scanTarget(f)
		}
		if err := rows.Scan(dest...); err != nil {
			return RecordPage{}, fmt.Errorf("scan %s record: %w", a.name, err)
		}
		row := make([]any, len(fields))
		for i, f := range fields {
			row[i] = scannedValue(f, dest[i+1])
		}
		page.Rows = append(page.Rows, row)
		page.Sites = append(page.Sites, site)
	}
	if err := rows.Err(); err != nil {
		return RecordPage{}, readError(ctx, a, err)
	}
	return page, nil
}

// readError wraps err, marking timeouts (the context's or the server's
// TIMEOUT_EXCEEDED, code 159) with ErrTimeout.
func readError(ctx context.Context, a *RecordArea, err error) error {
	var ex *clickhouse.Exception
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) ||
		errors.As(err, &ex) && ex.Code == 159 {
		return fmt.Errorf("read %s: %w: %w", a.name, ErrTimeout, err)
	}
	return fmt.Errorf("read %s: %w", a.name, err)
}

// sqlOps maps filter operators to SQL; only these fragments are written.
var sqlOps = map[l2l.Op]string{l2l.OpEq: " = ", l2l.OpLt: " < ", l2l.OpLte: " <= ", l2l.OpGt: " > ", l2l.OpGte: " >= "}

// recordsSQL builds the statement of a read and its arguments. The site
// column comes first in the result, then the selected fields.
func recordsSQL(a *RecordArea, q l2l.Query, sites []uint64, id *uint64) (string, []any, error) {
	fields := q.Selected(a.schema)
	var b strings.Builder
	var args []any
	b.WriteString("SELECT toUInt64(")
	b.WriteString(a.site)
	b.WriteString(") AS _site")
	for i, f := range fields {
		fmt.Fprintf(&b, ", %s AS _c%d", selectExpr(f, a.cols[a.byName[f.Name]].Expr), i)
	}
	b.WriteString(" FROM ")
	if a.master {
		// FINAL in a subquery: the filters below then see only the latest
		// version of each record, whatever the server pushes down.
		b.WriteString("(SELECT * FROM " + a.table + " FINAL) WHERE deleted = 0 AND ")
	} else {
		b.WriteString(a.table + " WHERE ")
	}
	b.WriteString(a.site + " IN ?")
	siteSet := make([]any, len(sites))
	for i, s := range sites {
		siteSet[i] = s
	}
	args = append(args, clickhouse.GroupSet{Value: siteSet})
	if id != nil {
		b.WriteString(" AND id = ?")
		args = append(args, *id)
	}
	for _, f := range q.Filters {
		i, ok := a.byName[f.Field]
		if !ok {
			return "", nil, fmt.Errorf("%s: filter on unknown field %q", a.name, f.Field)
		}
		c := a.cols[i]
		if f.Op == l2l.OpIsNull {
			isNull, ok := f.Value.(bool)
			if !ok {
				return "", nil, fmt.Errorf("%s: isnull filter on %s with %T", a.name, f.Field, f.Value)
			}
			fn := "isNotNull("
			if isNull {
				fn = "isNull("
			}
			b.WriteString(" AND " + fn + c.Expr + ")")
			continue
		}
		op, ok := sqlOps[f.Op]
		if !ok {
			return "", nil, fmt.Errorf("%s: unknown operator %q", a.name, f.Op)
		}
		v, err := sqlValue(c.Field, f.Value)
		if err != nil {
			return "", nil, fmt.Errorf("%s: filter on %s: %w", a.name, f.Field, err)
		}
		b.WriteString(" AND (" + c.Expr + ")" + op + "?")
		args = append(args, v)
	}
	b.WriteString(" ORDER BY ")
	for i, o := range q.OrderBy {
		ci, ok := a.byName[o.Field]
		if !ok {
			return "", nil, fmt.Errorf("%s: order by unknown field %q", a.name, o.Field)
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(a.cols[ci].Expr)
		if o.Desc {
			b.WriteString(" DESC")
		}
	}
	if id != nil {
		b.WriteString(" LIMIT 1")
	} else {
		b.WriteString(" LIMIT ? OFFSET ?")
		args = append(args, q.Limit, q.Offset)
	}
	return b.String(), args, nil
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

func scanTarget(f l2l.Field) any {
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

// SiteTimezones returns the IANA time zone name of every live site.
func (s *Store) SiteTimezones(ctx context.Context) (map[uint64]string, error) {
	rows, err := s.conn.Query(ctx, "SELECT id, timezone FROM (SELECT * FROM sites FINAL) WHERE deleted = 0")
	if err != nil {
		return nil, fmt.Errorf("query site time zones: %w", err)
	}
	defer rows.Close()
	out := map[uint64]string{}
	for rows.Next() {
		var id uint64
		var tz string
		if err := rows.Scan(&id, &tz); err != nil {
			return nil, fmt.Errorf("scan site time zone: %w", err)
		}
		out[id] = tz
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query site time zones: %w", err)
	}
	return out, nil
}
