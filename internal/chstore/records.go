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

// recordAreas are the areas the query API serves. A new area is one entry.
var recordAreas = func() map[string]*RecordArea {
	areas := []*RecordArea{
		// Parts: one record per part event. Without order_by they are paged
		// in the order they were stored (stored_at, then id); see
		// WithVisibilityLag.
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
			RecordColumn{Field: l2l.Field{Name: "stored_at", Type: l2l.DateTime}, Expr: msOf("inserted_at"), Order: "inserted_at"},
			col("event_id", l2l.String, "toString(event_id)"),
		).withInsertionOrder("stored_at"),
		mustRecordArea("sites", "sites", true, "id", withAudit(
			col("id", l2l.Int, "id"),
			col("description", l2l.String, "description"),
			col("timezone", l2l.String, "timezone"),
			col("site", l2l.Int, "id"),
		)...),
		mustRecordArea("areas", "areas", true, "site", withAudit(
			col("id", l2l.Int, "id"),
			col("site", l2l.Int, "site"),
			col("code", l2l.String, "code"),
			col("description", l2l.String, "description"),
		)...),
		mustRecordArea("lines", "lines", true, "site", withAudit(
			col("id", l2l.Int, "id"),
			col("site", l2l.Int, "site"),
			col("area", l2l.Int, "area"),
			col("code", l2l.String, "code"),
			col("description", l2l.String, "description"),
			nullCol("externalid", l2l.String, "nullIf(externalid, '')"),
			col("stop_threshold", l2l.Float, "stop_threshold"),
		)...),
		mustRecordArea("machines", "machines", true, "site", withAudit(
			col("id", l2l.Int, "id"),
			col("site", l2l.Int, "site"),
			col("line", l2l.Int, "line"),
			col("code", l2l.String, "code"),
			col("description", l2l.String, "description"),
			nullCol("externalid", l2l.String, "nullIf(externalid, '')"),
			col("stop_threshold", l2l.Float, "stop_threshold"),
		)...).withCustom(),
		mustRecordArea("products", "products", true, "site", withAudit(
			col("id", l2l.Int, "id"),
			col("site", l2l.Int, "site"),
			col("code", l2l.String, "code"),
			col("description", l2l.String, "description"),
			col("ideal_cycle_time", l2l.Float, "ideal_cycle_time"),
			col("fallback", l2l.Bool, "fallback"),
		)...),
		mustRecordArea("reasons", "reasons", true, "site", withAudit(
			col("id", l2l.Int, "id"),
			col("site", l2l.Int, "site"),
			col("code", l2l.String, "code"),
			col("description", l2l.String, "description"),
			col("kind", l2l.String, "toString(kind)"),
			col("planned", l2l.Bool, "planned"),
		)...),
		mustRecordArea("shifts", "shifts", true, "site", withAudit(
			col("id", l2l.Int, "id"),
			col("site", l2l.Int, "site"),
			nullCol("line", l2l.Int, "nullIf(line, 0)"),
			col("code", l2l.String, "code"),
			col("description", l2l.String, "description"),
			col("start_time", l2l.String, "start_time"),
			col("end_time", l2l.String, "end_time"),
			col("days", l2l.String, "days"),
		)...),
		mustRecordArea("productionperiods", "productionperiods", true, "site",
			col("id", l2l.Int, "id"),
			col("site", l2l.Int, "site"),
			col("location", l2l.Int, "location"),
			col("location_kind", l2l.String, "toString(location_kind)"),
			col("externalid", l2l.String, "externalid"),
			col("state", l2l.String, "toString(state)"),
			col("start", l2l.DateTime, msOf("start")),
			col("start_local", l2l.LocalDateTime, msOf("start")),
			nullCol("end", l2l.DateTime, msOf("end")),
			nullCol("end_local", l2l.LocalDateTime, msOf("end")),
			col("duration", l2l.Float, "duration"),
			nullCol("reason", l2l.Int, "nullIf(reason, 0)"),
		),
		mustRecordArea("users", "users", true, "sites", withAudit(
			col("id", l2l.Int, "id"),
			col("username", l2l.String, "username"),
			col("admin", l2l.Bool, "admin"),
			col("sites", l2l.String, joinList("sites")),
			col("site", l2l.Int, "sites[1]"),
			col("active", l2l.Bool, "active"),
		)...).withSiteArray(),
		// API keys never show their hash: only the short prefix. A key is
		// visible when its user is; last_used comes from apikey_usage.
		mustRecordArea("apikeys", "apikeys", true, "user_sites", withAudit(
			col("id", l2l.Int, "id"),
			col("user", l2l.Int, "user"),
			col("prefix", l2l.String, "prefix"),
			col("scopes", l2l.String, "arrayStringConcat(scopes, ',')"),
			col("active", l2l.Bool, "active"),
			col("rate_limit", l2l.Float, "rate_limit"),
			col("rate_burst", l2l.Float, "rate_burst"),
			nullCol("last_used", l2l.DateTime, "nullIf("+msOf("last_used")+", 0)"),
			col("site", l2l.Int, "user_sites[1]"),
		)...).withSiteArray().withFrom(
			"(SELECT * FROM (SELECT * FROM apikeys FINAL)" +
				" ANY LEFT JOIN (SELECT id AS user, sites AS user_sites FROM users FINAL WHERE deleted = 0) USING user)" +
				" ANY LEFT JOIN (SELECT key AS id, max(last_used) AS last_used FROM apikey_usage GROUP BY key) USING id"),
		pitchesArea(), // pitches.go
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
	// Next, for a page in insertion order (see Cursor), is where the page
	// after it starts; nil otherwise.
	Next *Cursor
	// Ahead, for a page in insertion order of an area with look-ahead,
	// holds the positions of the rows that follow the page, in order, as
	// far as the read looked (see RecordArea.WithLookAhead).
	Ahead []Cursor
}

// Cursor is a position in insertion order (inserted_at, then id): a page
// read after a cursor starts with the first row past it. Rows only ever
// join the end of that order (see RecordArea.WithVisibilityLag), so the
// cursor of an offset stays valid: a caller can remember where offset N
// is and read the page at N without counting N rows again.
type Cursor struct {
	InsertedAt uint32 `json:"t"`
	ID         uint64 `json:"id"`
}

// InsertionOrder reports whether q reads area a in insertion order, the
// order cursors address.
func (a *RecordArea) InsertionOrder(q l2l.Query) bool {
	return a.keyset && len(q.OrderBy) == 2 && q.OrderBy[0] == l2l.Order{Field: "stored_at"} && q.OrderBy[1] == l2l.Order{Field: "id"}
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
// page first, reading only the columns the filters and the order need,
// then the page's rows by id through the primary key. ClickHouse 18.16
// does not read in index order for ORDER BY ... LIMIT, so a one-step read
// would read every column of every row before the page.
func (s *Store) Records(ctx context.Context, a *RecordArea, q l2l.Query, sites []uint64) (RecordPage, error) {
	return s.readRecords(ctx, a, q, sites, nil, nil, nil)
}

// RecordsAfter is Records for a query in insertion order (InsertionOrder)
// that starts after cursor instead of at q.Offset: the first step reads
// only the rows past the cursor, however deep it is.
func (s *Store) RecordsAfter(ctx context.Context, a *RecordArea, q l2l.Query, sites []uint64, after Cursor) (RecordPage, error) {
	if !a.InsertionOrder(q) {
		return RecordPage{}, fmt.Errorf("%s: a cursor needs the insertion order", a.name)
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
		return RecordPage{}, fmt.Errorf("%s: RecordsAt needs the insertion order and 1 to limit positions", a.name)
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
		return RecordPage{}, fmt.Errorf("%s record %d: %w", a.name, id, ErrNotFound)
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
	if a.pushdown {
		set["enable_optimize_predicate_expression"] = 1
	}
	if len(set) == 0 {
		return ctx
	}
	return clickhouse.Context(ctx, clickhouse.WithSettings(set))
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
	var next *Cursor
	var ahead []Cursor
	if a.keyset && id == nil {
		var ids []uint64
		var last Cursor
		if at != nil {
			ids = make([]uint64, len(at))
			for i, c := range at {
				ids[i] = c.ID
			}
			last = at[len(at)-1]
		} else {
			n := q.Limit
			if a.ahead > 1 && a.InsertionOrder(q) {
				n *= a.ahead
			}
			pos, err := s.pageIDs(ctx, a, q, sites, after, n)
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
		query, args, err = rowsByIDSQL(a, q, sites, props, ids)
		if err != nil {
			return RecordPage{}, err
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
	rows, err := s.conn.Query(ctx, query, args...)
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
			return RecordPage{}, fmt.Errorf("scan %s record: %w", a.name, err)
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
	rows, err := s.conn.Query(ctx, query, args...)
	if err != nil {
		return nil, readError(ctx, a, err)
	}
	defer rows.Close()
	out := make([]Cursor, 0, n)
	for rows.Next() {
		var c Cursor
		if err := rows.Scan(&c.ID, &c.InsertedAt); err != nil {
			return nil, fmt.Errorf("scan %s id: %w", a.name, err)
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
	if !a.custom {
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
	rows, err := s.conn.Query(ctx, "SELECT DISTINCT arrayJoin(custom_keys) AS k FROM "+a.from+
		" WHERE deleted = 0 AND site IN ? AND site = ? ORDER BY k", groupSet(sites), site)
	if err != nil {
		return nil, fmt.Errorf("custom properties of %s: %w", a.name, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, fmt.Errorf("custom properties of %s: %w", a.name, err)
		}
		if l2l.CustomName(k) {
			out = append(out, k)
		}
	}
	return out, rows.Err()
}

func groupSet(sites []uint64) clickhouse.GroupSet {
	set := make([]any, len(sites))
	for i, s := range sites {
		set[i] = s
	}
	return clickhouse.GroupSet{Value: set}
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
	b.WriteString("SELECT id, toUInt32(inserted_at)")
	where, args, err := whereSQL(a, q, sites, nil)
	if err != nil {
		return "", nil, err
	}
	b.WriteString(where)
	if after != nil {
		b.WriteString(" AND (inserted_at > toDateTime(?) OR inserted_at = toDateTime(?) AND id > ?)")
		args = append(args, after.InsertedAt, after.InsertedAt, after.ID)
	}
	if err := orderSQL(&b, a, q); err != nil {
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
func rowsByIDSQL(a *RecordArea, q l2l.Query, sites []uint64, props []string, ids []uint64) (string, []any, error) {
	var b strings.Builder
	args := selectSQL(&b, a, q, props)
	where, wargs, err := whereSQL(a, q, sites, nil)
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
		fmt.Fprintf(b, ", %s AS _c%d", selectExpr(f, a.cols[a.byName[f.Name]].Expr), i)
	}
	for i, p := range props {
		fmt.Fprintf(b, ", if(has(custom_keys, ?), toNullable(custom_values[indexOf(custom_keys, ?)]), NULL) AS _p%d", i)
		args = append(args, p, p)
	}
	return args
}

// whereSQL writes " FROM ... WHERE ..." with the site restriction, the id,
// the visibility lag and the filters.
func whereSQL(a *RecordArea, q l2l.Query, sites []uint64, id *uint64) (string, []any, error) {
	var b strings.Builder
	var args []any
	b.WriteString(" FROM " + a.from + " WHERE ")
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
	if a.lag > 0 && id == nil && a.InsertionOrder(q) {
		// Only the insertion order promises exactly-once paging, so only
		// it waits; an explicit order_by sees a row once it is stored.
		// inserted_at and now() are whole seconds: with "<=" a row shows
		// between lag-1s and lag after its INSERT started, so a lag of 2s
		// is safe for every INSERT that takes under a second.
		b.WriteString(" AND inserted_at <= now() - ?")
		args = append(args, int64(math.Ceil(a.lag.Seconds())))
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
	if len(q.Custom) > 0 && !a.custom {
		return "", nil, fmt.Errorf("%s has no custom properties", a.name)
	}
	for _, f := range q.Custom {
		if f.Op == l2l.OpIsNull {
			isNull, ok := f.Value.(bool)
			if !ok {
				return "", nil, fmt.Errorf("%s: isnull filter on custom %s with %T", a.name, f.Field, f.Value)
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
			return "", nil, fmt.Errorf("%s: bad filter on custom %s", a.name, f.Field)
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
			return fmt.Errorf("%s: order by unknown field %q", a.name, o.Field)
		}
		if i > 0 {
			b.WriteString(", ")
		}
		if c := a.cols[ci]; c.Order != "" {
			b.WriteString(c.Order)
		} else {
			b.WriteString(c.Expr)
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
