// Package record defines Takt's record areas: the Leading2Lean-style
// collections the query API serves under /api/1.0/<area>/. Each area is
// described once, as data (an Area): its fields with their types and what
// a request may do with each (read, write, required on create, fixed after
// it, signed), how a record belongs to sites, which areas its fields
// reference, what must be unique, and which caches a change must drop.
//
// Everything else is derived from that one description: the read
// statements (internal/chstore), the query language's schema of each area
// (internal/l2l), the validation and the effects of writes (queryapi), the
// JSON and XML answers, and the area schemas of the OpenAPI description
// (OpenAPI). Adding a field to an area is one edit of its definition (plus
// a migration when the field is a new column).
//
// The package is pure: definitions and the rules that read them, no I/O.
// Computed fields and a few areas carry SQL fragments (Field.Expr,
// Area.From); they are fixed text, never request text.
package record

import (
	"slices"
	"strings"
	"time"

	"github.com/takt/takt/internal/l2l"
)

// Kind is how a stored field is kept: the type of its column, how the text
// of a write is parsed, and the Go type of its value in a Row.
type Kind uint8

// Column kinds.
const (
	// Uint is a UInt64 column: a whole number >= 0 (uint64). Fields that
	// hold the id of another record are Uint.
	Uint Kind = iota + 1
	// Float is a Float64 column: a finite number >= 0, at most Field.Max
	// when that is set (float64).
	Float
	// String is a String column: text of at most MaxText bytes (string).
	String
	// Enum is an Enum8 column of Field.Options (string).
	Enum
	// Bool is a UInt8 column of 0 or 1; a write gives True or False
	// (true/false, 1/0) (bool).
	Bool
	// Uints is an Array(UInt64) column: whole numbers separated by commas,
	// shown as "1,2" ([]uint64).
	Uints
	// Strings is an Array(String) column of Field.Options: words separated
	// by commas, shown as "a,b" ([]string).
	Strings
	// Words is a String column holding words of Field.Options separated by
	// commas, e.g. "mon,tue" (string).
	Words
	// Time is a DateTime column (UTC, whole seconds): an instant, shown
	// and filtered as a UTC datetime (time.Time; the zero instant is
	// 1970-01-01, which a Nullable field shows as null).
	Time
)

// Type returns the type a field of kind k is shown and filtered as.
func (k Kind) Type() l2l.Type {
	switch k {
	case Uint:
		return l2l.Int
	case Float:
		return l2l.Float
	case Bool:
		return l2l.Bool
	case Time:
		return l2l.DateTime
	}
	return l2l.String
}

// Zero returns the Row value of kind k that nothing was given for.
func (k Kind) Zero() any {
	switch k {
	case Uint:
		return uint64(0)
	case Float:
		return 0.0
	case Bool:
		return false
	case Uints:
		return []uint64{}
	case Strings:
		return []string{}
	case Time:
		return time.Unix(0, 0).UTC()
	}
	return ""
}

// Flag says what requests may do with a field.
type Flag uint16

// Field flags.
const (
	// Read: reads show the field, filter on it, order by it and pick it
	// with fields=.
	Read Flag = 1 << iota
	// Write: a write may set the field. In an area that takes writes, a
	// field without Write is the server's: a write that names it is
	// refused.
	Write
	// Required: a create must give the field.
	Required
	// Fixed: only a create may set the field (an update may repeat its
	// value).
	Fixed
	// NotEmpty: the field's value may not be empty text or an empty list.
	NotEmpty
	// Signed: every write of the area (create, update, delete) must be
	// signed, and the signature of a create or an update covers the
	// field's value, in the order of the fields; every write is bound to
	// its operation, area and record (internal/auth.Call).
	Signed
	// Once: the field is not stored; the answer of the create that made
	// the record shows it, once (an API key's key).
	Once
)

// Field is one field of an area.
type Field struct {
	Name string
	// Kind is the kind of the field's column when the field is stored in
	// the area's table (in a column of its name); 0 for a field computed
	// by Expr.
	Kind Kind
	// Type is how a computed field is shown and filtered; a stored field's
	// follows from its Kind.
	Type l2l.Type
	// Nullable: the field can be null. A stored field shows its zero value
	// (0, "") as null.
	Nullable bool
	// Expr is the SQL expression that computes the field from a row of the
	// area's From. Stored fields leave it empty: theirs follows from the
	// kind (internal/chstore).
	Expr string
	// Order, when set, is what ORDER BY uses instead of the field's
	// expression (the same order, cheaper to compute).
	Order string
	Flags Flag
	// Options are the values the field may take (Enum, Strings, Words);
	// on a read-only field they document its values.
	Options []string
	// Default is the Row value a create stores when it does not give the
	// field (nil: the kind's zero value).
	Default any
	// Max is the largest value of a Float field (0: no maximum).
	Max float64
	// Ref names the area whose record id the field holds (0 holds none).
	// A write must name a live record of that area of the record's own
	// site, or, for the field the record's sites come through (Site.Via),
	// one within the caller's sites.
	Ref string
	// Check returns what is wrong with the field's value v in the record r
	// about to be written, "" when nothing is.
	Check func(v any, r Row) string
	// Doc describes the field in the OpenAPI description.
	Doc string
	// Derived, when set, says how the server computes the field after it
	// read the page, from the value of Expr: such a field is shown and
	// picked with fields=, but filters and order_by may not name it.
	Derived Derivation
}

// Derivation is how the server computes a field after the read.
type Derivation uint8

// Derivations.
const (
	// ShiftStartDate: a Date field whose Expr is an instant (Int64 Unix
	// milliseconds). Its value is the local date on which the shift that
	// the instant falls in started, by the shifts of the record's line
	// (Area.Line) when that line has shifts of its own, else by its site's,
	// in the site's time zone: 02:00 in a 22:00–06:00 shift gives the day
	// before. An instant in no shift (between shifts, or at a site without
	// shifts) gives its own local date.
	ShiftStartDate Derivation = iota + 1
)

// Has reports whether f has every one of flags.
func (f *Field) Has(flags Flag) bool { return f.Flags&flags == flags }

// Stored reports whether f is a column of the area's table.
func (f *Field) Stored() bool { return f.Kind != 0 }

// L2L returns the field as the query language sees it.
func (f *Field) L2L() l2l.Field {
	t := f.Type
	if f.Stored() {
		t = f.Kind.Type()
	}
	return l2l.Field{Name: f.Name, Type: t, Nullable: f.Nullable, AfterRead: f.Derived != 0}
}

// Site says which sites a record belongs to. A key sees and changes only
// records all of whose sites are among its user's.
type Site struct {
	// Field is the field holding the record's site (an Int field) or
	// sites (a Uints field), or "id" for a record that is a site.
	Field string
	// Via names the Ref field whose record's sites the record has (an API
	// key has its user's); Expr is then the SQL of that Array(UInt64),
	// which the area's From provides.
	Via  string
	Expr string
}

// OwnSite is the site rule of the records that are sites; SiteField the
// rule of records with a site field.
var (
	OwnSite   = Site{Field: "id"}
	SiteField = Site{Field: "site"}
)

// Unique says that no two live records may have the same value of Field.
// Zero values (0, "", false) are exempt.
type Unique struct {
	Field string
	// PerSite: only among the records of one site.
	PerSite bool
	// Areas are the areas whose records share the values (external ids
	// are unique across lines and machines); empty: the area itself.
	Areas []string
	// Among, when set, names the other records in the problem ("another
	// location").
	Among string
}

// Forget names what caches hold about a record, which a change of it must
// drop in every process. Every change of a master-data table is also
// announced by the table's name.
type Forget uint8

// What a change drops.
const (
	// ForgetLocation: the location cached under the record's externalid,
	// before and after the change.
	ForgetLocation Forget = iota + 1
	// ForgetSiteLocations: every location of the site (locations carry
	// their site's time zone).
	ForgetSiteLocations
	// ForgetUserKeys: every API key of the user (a key carries its user's
	// sites and rights).
	ForgetUserKeys
	// ForgetKey: the API key, by its hash.
	ForgetKey
	// ForgetSiteKeys: every API key of the users of the site (a key
	// carries its user's open sites).
	ForgetSiteKeys
)

// Writes is how an area takes writes.
type Writes uint8

// Write modes.
const (
	// ReadOnly areas answer writes with 405.
	ReadOnly Writes = iota
	// WriteRows areas are master data: a create, update or delete writes
	// a new version of the record's row (deleted = 1 for a delete), checked
	// field by field against the definition.
	WriteRows
	// WriteAssign areas take only updates of their Write fields, which the
	// pipeline applies (a production period's reason; queryapi/assign.go).
	WriteAssign
	// WriteActions areas are written only by the server, through the
	// area's actions (a dispatch opened or closed, a user clocked in):
	// their rows are versioned like master data, and POST, PUT and DELETE
	// of a record answer 405.
	WriteActions
)

// OnCreate is what the server does when a record is created.
type OnCreate uint8

// Create actions.
const (
	// IssueKey: the record is a new API key: the server fills its fields
	// prefix and hash (the key's SHA-256) and the answer shows the key once
	// (a Once field named key).
	IssueKey OnCreate = iota + 1
	// GrantSite: the record is a new site: it joins the sites of the API
	// user and of the user it acts for, or nobody could see it.
	GrantSite
)

// Columns of the custom properties of an area with Custom.
const (
	CustomKeys   = "custom_keys"
	CustomValues = "custom_values"
)

// MaxText is the longest text a String field takes, in bytes.
const MaxText = 1000

// Row holds the stored values of one record by field name (see Kind for
// their Go types), without its id and audit columns; an area with custom
// properties has them in CustomKeys and CustomValues ([]string each).
type Row map[string]any

// Area is the definition of one record area. Definitions are data: build
// them as literals and hand them to NewRegistry, which checks them; do not
// change one after that.
type Area struct {
	// Name is the area's name in URLs.
	Name string
	// Record names one record in the OpenAPI description (CamelCase) and,
	// in lower case, in messages.
	Record string
	// Doc describes the area in the OpenAPI description.
	Doc string
	// Table is the ClickHouse table of the area.
	Table string
	// From is what reads select from instead of Table (a fixed fragment).
	From string
	// Versioned: Table is a ReplacingMergeTree of versions with a deleted
	// flag; reads see the newest live version of each record.
	Versioned bool
	// Pushdown: reads have the server push their filters into From (an
	// aggregating subquery).
	Pushdown bool
	// InsertionOrder names the field that reads without order_by are
	// ordered by (then id): the order rows were stored in. The field's
	// Order must be the table's order_ms column; pages are then found by
	// id first (see internal/chstore).
	InsertionOrder string
	// OrderIndex, for an area in insertion order, is where its pages are
	// found: a table holding order_ms and id of every row of Table,
	// sorted by (order_ms, id), with the stored columns of the fields in
	// IndexFields (see internal/chstore: a page is found in a narrow key
	// range of it instead of by sorting Table). Empty: pages are found in
	// Table.
	OrderIndex  string
	IndexFields []string
	// LocationIndex, for an area in insertion order, is where the rows of
	// one location around one time are found: a table holding order_ms
	// and id of every row of Table, sorted by the stored columns of
	// LocationKey's two fields (an equality on the first, a range of the
	// second), with the stored columns of the fields in LocationFields.
	// A read in insertion order that filters on both is answered from
	// that key range, however deep in the order its rows lie.
	LocationIndex  string
	LocationKey    [2]string
	LocationFields []string
	// LocationLead is how far LocationKey's second field (a time) may lie
	// after a row's insertion order time (order_ms). A lower bound of that
	// field, less this, is then a lower bound of order_ms, by which a read
	// of the index skips its partitions (spans of order_ms) that end
	// before it: without it, each data part of the index costs a read of
	// at least one granule, at 100M parts about a hundred. Zero: no bound.
	LocationLead time.Duration
	Site         Site
	// Line is the SQL expression of the line a record belongs to (0: none),
	// a UInt64 of a row of From; ShiftStartDate fields need it.
	Line string
	// Custom: records carry custom properties (custom__<name>=value),
	// kept in the columns CustomKeys and CustomValues.
	Custom bool
	// Fields in display order. The first is id.
	Fields []Field
	Writes Writes
	// Scope is the scope a key needs to write the area (admin may write
	// every area).
	Scope    string
	OnCreate OnCreate
	Unique   []Unique
	Forget   []Forget
	// Actions are the calls served under the area's path besides its
	// records (/api/1.0/<area>/<action>/).
	Actions []Action
}

// Action is a call served at /api/1.0/<area>/<name>/ (and
// /api/1.0/<area>/<name>/<path argument>/ when PathArg is set), such as
// dispatches/open or users/clock_in/<username>. The query API binds each
// to its handler by area and name; the definition says what the call takes
// and answers, for validation and the OpenAPI description.
//
// An action reads the arguments it lists from the query and the body (the
// body wins) and ignores others, as Leading2Lean's API does: its own
// sample clients send arguments left over from earlier calls.
type Action struct {
	Name string
	// Methods are the HTTP methods the action answers (GET, POST).
	Methods []string
	// PathArg names the path segment after the action; "" for none.
	PathArg string
	Args    []Arg
	// Scope is the scope a key needs for the call.
	Scope string
	// Returns names the area whose record the answer's data holds ("":
	// the action's own data, described by Doc); List: a list of them.
	Returns string
	List    bool
	Doc     string
}

// ArgType is the type of an action argument.
type ArgType uint8

// Argument types.
const (
	// ArgID is the id of a record (a whole number >= 1).
	ArgID ArgType = iota + 1
	// ArgCount is a whole number >= 0.
	ArgCount
	// ArgText is text of at most MaxText bytes.
	ArgText
	// ArgBool is True or False (true/false, 1/0).
	ArgBool
	// ArgTime is an instant in the site's local time, "YYYY-MM-DD HH:MM"
	// or "YYYY-MM-DD HH:MM:SS", or "now", or ISO 8601 with Z or an offset.
	ArgTime
)

// Arg is one argument of an action.
type Arg struct {
	Name     string
	Type     ArgType
	Required bool
	Doc      string
}

// Action returns the action called name.
func (a *Area) Action(name string) (*Action, bool) {
	for i := range a.Actions {
		if a.Actions[i].Name == name {
			return &a.Actions[i], true
		}
	}
	return nil, false
}

// Aliases returns the other names filters and order_by accept for the
// area's Read fields, Django-style: <field>_id for each field that holds
// the id of another record (a Ref field, and site), by alias.
func (a *Area) Aliases() map[string]string {
	out := map[string]string{}
	for _, f := range a.Fields {
		if !f.Has(Read) || f.Ref == "" && f.Name != "site" {
			continue
		}
		alias := f.Name + "_id"
		if _, taken := a.Field(alias); !taken {
			out[alias] = f.Name
		}
	}
	return out
}

// Field returns the field called name.
func (a *Area) Field(name string) (*Field, bool) {
	for i := range a.Fields {
		if a.Fields[i].Name == name {
			return &a.Fields[i], true
		}
	}
	return nil, false
}

// Schema returns the query language's schema of the area: its Read fields,
// its default order and custom properties, with the default limits.
func (a *Area) Schema() (*l2l.Schema, error) {
	var fields []l2l.Field
	for i := range a.Fields {
		if f := &a.Fields[i]; f.Has(Read) {
			fields = append(fields, f.L2L())
		}
	}
	s, err := l2l.NewSchema(a.Name, fields...)
	if err != nil {
		return nil, err
	}
	if a.InsertionOrder != "" {
		if s, err = s.WithDefaultOrder(l2l.Order{Field: a.InsertionOrder}); err != nil {
			return nil, err
		}
	}
	if a.Custom {
		s = s.WithCustomProperties()
	}
	return s.WithAliases(a.Aliases())
}

// Columns returns the stored columns of a record's Row, in field order
// (the custom property columns last).
func (a *Area) Columns() []Field {
	var out []Field
	for _, f := range a.Fields {
		if f.Stored() {
			out = append(out, f)
		}
	}
	if a.Custom {
		out = append(out, Field{Name: CustomKeys, Kind: Strings}, Field{Name: CustomValues, Kind: Strings})
	}
	return out
}

// ZeroRow returns a Row with every stored column at its zero value.
func (a *Area) ZeroRow() Row {
	r := Row{}
	for _, c := range a.Columns() {
		r[c.Name] = c.Kind.Zero()
	}
	return r
}

// SignedFields returns the names of the fields a write of the area signs,
// in order; none when its writes are not signed.
func (a *Area) SignedFields() []string {
	var out []string
	for _, f := range a.Fields {
		if f.Has(Signed) {
			out = append(out, f.Name)
		}
	}
	return out
}

// systemColumns are columns of every versioned table that a write may never
// name.
var systemColumns = []string{"deleted", "version"}

// ServerOwned reports whether name is a field (or column) of the area that
// only the server sets: a write that names it is refused.
func (a *Area) ServerOwned(name string) bool {
	if slices.Contains(systemColumns, name) {
		return true
	}
	f, ok := a.Field(name)
	return ok && !f.Has(Write)
}

// SiteIDs returns the sites of a record of a with that id and row, when
// they follow from the row itself (ok false for Site.Via: they are the
// referenced record's).
func (a *Area) SiteIDs(id uint64, row Row) (sites []uint64, ok bool) {
	switch {
	case a.Site.Via != "":
		return nil, false
	case a.Site.Field == "id":
		return []uint64{id}, true
	}
	switch v := row[a.Site.Field].(type) {
	case uint64:
		return []uint64{v}, true
	case []uint64:
		return v, true
	}
	return nil, true
}

// Noun is how messages name one record of the area ("line").
func (a *Area) Noun() string { return strings.ToLower(a.Record) }
