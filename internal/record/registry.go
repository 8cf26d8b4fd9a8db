package record

import (
	"errors"
	"fmt"
	"regexp"
	"slices"

	"github.com/takt/takt/internal/l2l"
)

// Registry is a checked set of areas. It is immutable and safe for
// concurrent use.
type Registry struct {
	areas map[string]*Area
	names []string // sorted
}

var (
	identifier = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	recordName = regexp.MustCompile(`^[A-Z][A-Za-z0-9]*$`)
)

// NewRegistry checks the definitions and returns their registry. It
// reports every problem it finds.
func NewRegistry(areas ...*Area) (*Registry, error) {
	r := &Registry{areas: make(map[string]*Area, len(areas))}
	var errs []error
	for _, a := range areas {
		if _, dup := r.areas[a.Name]; dup {
			errs = append(errs, fmt.Errorf("area %s defined twice", a.Name))
			continue
		}
		r.areas[a.Name] = a
		r.names = append(r.names, a.Name)
	}
	slices.Sort(r.names)
	for _, name := range r.names {
		for _, p := range r.problems(r.areas[name]) {
			errs = append(errs, fmt.Errorf("area %s: %s", name, p))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return r, nil
}

// MustRegistry is NewRegistry for definitions fixed in code; it panics on
// a bad definition.
func MustRegistry(areas ...*Area) *Registry {
	r, err := NewRegistry(areas...)
	if err != nil {
		panic(err)
	}
	return r
}

// Area returns the area called name.
func (r *Registry) Area(name string) (*Area, bool) {
	a, ok := r.areas[name]
	return a, ok
}

// Must returns the area called name, which must exist.
func (r *Registry) Must(name string) *Area {
	a, ok := r.areas[name]
	if !ok {
		panic("record: no area " + name)
	}
	return a
}

// Areas returns every area, sorted by name.
func (r *Registry) Areas() []*Area {
	out := make([]*Area, len(r.names))
	for i, n := range r.names {
		out[i] = r.areas[n]
	}
	return out
}

// problems lists what is wrong with a's definition in r.
func (r *Registry) problems(a *Area) []string {
	var out []string
	bad := func(format string, v ...any) { out = append(out, fmt.Sprintf(format, v...)) }
	if !identifier.MatchString(a.Name) || !identifier.MatchString(a.Table) {
		bad("bad name or table %q", a.Table)
	}
	if !recordName.MatchString(a.Record) {
		bad("Record %q is not a CamelCase name", a.Record)
	}
	if _, err := a.Schema(); err != nil {
		bad("%v", err)
	}
	if len(a.Fields) == 0 || a.Fields[0].Name != "id" || a.Fields[0].Expr != "id" || a.Fields[0].Type != l2l.Int {
		bad("the first field must be id, an Int computed as the table's id column")
	}
	for i := range a.Fields {
		for _, p := range r.fieldProblems(a, &a.Fields[i]) {
			bad("field %s: %s", a.Fields[i].Name, p)
		}
	}
	if a.Custom {
		for _, c := range []string{CustomKeys, CustomValues} {
			if _, clash := a.Field(c); clash {
				bad("field %s clashes with the custom property columns", c)
			}
		}
	}
	// Sites.
	switch s := a.Site; {
	case s.Via != "":
		f, ok := a.Field(s.Via)
		if !ok || f.Ref == "" || f.Kind != Uint || s.Expr == "" || s.Field != "" {
			bad("site via %q: want a Uint Ref field and the Expr of the referenced record's sites", s.Via)
		}
	case s.Field == "id":
	default:
		f, ok := a.Field(s.Field)
		if !ok || f.L2L().Type != l2l.Int && f.Kind != Uints || f.Nullable {
			bad("site field %q: want a non-null Int or a Uints field", s.Field)
		}
		if ok && a.Writes == WriteRows && !f.Stored() {
			bad("site field %q of an area that takes writes must be stored", s.Field)
		}
	}
	// Every record shows its site and whether it is active.
	if f, ok := a.Field("site"); !ok || !f.Has(Read) || f.L2L().Type != l2l.Int {
		bad("every area shows site, an Int field")
	}
	if f, ok := a.Field("active"); !ok || !f.Has(Read) || f.L2L().Type != l2l.Bool {
		bad("every area shows active, a Bool field")
	}
	// Writes.
	switch a.Writes {
	case ReadOnly, WriteActions:
		if a.Scope != "" || a.OnCreate != 0 || len(a.Unique) > 0 || len(a.Forget) > 0 {
			bad("an area that takes no writes of its records has no write scope, create action, uniqueness or invalidation")
		}
		if a.Writes == WriteActions && !a.Versioned {
			bad("an area written by actions must be Versioned")
		}
	case WriteRows, WriteAssign:
		if a.Scope == "" {
			bad("an area that takes writes needs its Scope")
		}
		if a.Writes == WriteRows && !a.Versioned {
			bad("an area whose rows are written must be Versioned")
		}
	default:
		bad("unknown Writes %d", a.Writes)
	}
	for _, u := range a.Unique {
		f, ok := a.Field(u.Field)
		if !ok || !f.Stored() {
			bad("unique %q: not a stored field", u.Field)
		}
		if u.PerSite && a.Site != SiteField {
			bad("unique %q per site: the area has no site field", u.Field)
		}
		for _, other := range u.Areas {
			o, ok := r.areas[other]
			if !ok {
				bad("unique %q: no area %s", u.Field, other)
				continue
			}
			if of, ok := o.Field(u.Field); !ok || !of.Stored() || of.Kind != f.Kind {
				bad("unique %q: area %s has no such stored field", u.Field, other)
			}
		}
	}
	switch a.OnCreate {
	case 0:
	case IssueKey:
		for _, name := range []string{"prefix", "hash"} {
			if f, ok := a.Field(name); !ok || f.Kind != String || f.Has(Write) {
				bad("IssueKey needs a server-owned String field %s", name)
			}
		}
		if f, ok := a.Field("key"); !ok || !f.Has(Once) {
			bad("IssueKey needs a Once field key")
		}
	case GrantSite:
		if a.Site != OwnSite {
			bad("GrantSite is for the sites area (Site: OwnSite)")
		}
	default:
		bad("unknown OnCreate %d", a.OnCreate)
	}
	for _, fg := range a.Forget {
		switch fg {
		case ForgetLocation:
			if f, ok := a.Field("externalid"); !ok || f.Kind != String {
				bad("ForgetLocation needs a String field externalid")
			}
		case ForgetKey:
			if f, ok := a.Field("hash"); !ok || f.Kind != String {
				bad("ForgetKey needs a String field hash")
			}
		case ForgetSiteLocations, ForgetUserKeys, ForgetSiteKeys:
		default:
			bad("unknown Forget %d", fg)
		}
	}
	if a.InsertionOrder != "" {
		if f, ok := a.Field(a.InsertionOrder); !ok || f.Order != "order_ms" {
			bad("insertion order field %q must be ordered by order_ms", a.InsertionOrder)
		}
	}
	if a.OrderIndex != "" && a.InsertionOrder == "" {
		bad("OrderIndex needs an insertion order")
	}
	for _, name := range a.IndexFields {
		if f, ok := a.Field(name); !ok || !f.Has(Read) {
			bad("index field %q is not a read field", name)
		}
	}
	if a.LocationIndex != "" {
		if a.InsertionOrder == "" {
			bad("LocationIndex needs an insertion order")
		}
		for _, name := range a.LocationKey {
			if !slices.Contains(a.LocationFields, name) {
				bad("location key field %q is not one of LocationFields", name)
			}
		}
		for _, name := range a.LocationFields {
			if f, ok := a.Field(name); !ok || !f.Has(Read) {
				bad("location index field %q is not a read field", name)
			}
		}
	}
	seen := map[string]bool{}
	for i := range a.Actions {
		ac := &a.Actions[i]
		if seen[ac.Name] {
			bad("action %s defined twice", ac.Name)
		}
		seen[ac.Name] = true
		for _, p := range r.actionProblems(ac) {
			bad("action %s: %s", ac.Name, p)
		}
	}
	return out
}

// actionProblems lists what is wrong with action ac in r.
func (r *Registry) actionProblems(ac *Action) []string {
	var out []string
	bad := func(format string, v ...any) { out = append(out, fmt.Sprintf(format, v...)) }
	if !identifier.MatchString(ac.Name) {
		bad("bad name")
	}
	if len(ac.Methods) == 0 {
		bad("no methods")
	}
	for _, m := range ac.Methods {
		if m != "GET" && m != "POST" {
			bad("method %q: want GET or POST", m)
		}
	}
	if ac.PathArg != "" && !identifier.MatchString(ac.PathArg) {
		bad("bad path argument %q", ac.PathArg)
	}
	if ac.Scope == "" {
		bad("no scope")
	}
	if _, ok := r.areas[ac.Returns]; ac.Returns != "" && !ok {
		bad("returns records of an unknown area %s", ac.Returns)
	}
	if ac.Returns == "" && ac.Doc == "" {
		bad("an action with data of its own describes it in Doc")
	}
	args := map[string]bool{}
	for _, g := range ac.Args {
		switch {
		case !identifier.MatchString(g.Name) || args[g.Name] || g.Name == ac.PathArg:
			bad("argument %q: bad or repeated name", g.Name)
		case g.Type < ArgID || g.Type > ArgTime:
			bad("argument %s: unknown type %d", g.Name, g.Type)
		}
		args[g.Name] = true
	}
	return out
}

// fieldProblems lists what is wrong with field f of a in r.
func (r *Registry) fieldProblems(a *Area, f *Field) []string {
	var out []string
	bad := func(format string, v ...any) { out = append(out, fmt.Sprintf(format, v...)) }
	switch {
	case f.Stored() && (f.Type != 0 || f.Expr != ""):
		bad("a stored field takes its type and expression from its kind")
	case f.Stored() && f.Kind > Time:
		bad("unknown kind %d", f.Kind)
	case f.Stored() && f.Nullable && f.Kind != Uint && f.Kind != String && f.Kind != Time:
		bad("only Uint, String and Time fields show their zero value as null")
	case !f.Stored() && f.Has(Read) && (f.Type == 0 || f.Expr == ""):
		bad("a computed field needs Type and Expr")
	case !f.Stored() && !f.Has(Read) && !f.Has(Once):
		bad("a field is stored, read or shown once")
	}
	if f.Derived != 0 && (f.Derived != ShiftStartDate || f.Stored() || f.Type != l2l.Date || f.Nullable || f.Has(Write) || a.Line == "") {
		bad("a ShiftStartDate field is a computed, non-null Date of an area with a Line")
	}
	if f.Has(Once) && (f.Stored() || f.Has(Read) || f.Has(Write) || f.Type == 0) {
		bad("a Once field is a Type only")
	}
	if f.Flags&(Required|Fixed|NotEmpty|Signed) != 0 && !f.Has(Write) {
		bad("Required, Fixed, NotEmpty and Signed apply to Write fields")
	}
	if f.Has(Write) {
		switch a.Writes {
		case ReadOnly, WriteActions:
			bad("a Write field in an area that takes no writes of its records")
		case WriteRows:
			if !f.Stored() {
				bad("a Write field of an area whose rows are written must be stored")
			}
		}
	}
	if f.Kind == Enum && len(f.Options) == 0 {
		bad("an Enum needs its Options")
	}
	if f.Default != nil {
		if !f.Stored() || fmt.Sprintf("%T", f.Default) != fmt.Sprintf("%T", f.Kind.Zero()) {
			bad("Default %v is not a %T", f.Default, f.Kind.Zero())
		} else if f.Options != nil {
			if _, err := f.Parse(fmt.Sprint(f.Default)); err != nil {
				bad("Default: %v", err)
			}
		}
	}
	if f.Max != 0 && (f.Kind != Float || f.Max < 0) {
		bad("Max applies to Float fields")
	}
	if f.Ref != "" {
		if _, ok := r.areas[f.Ref]; !ok {
			bad("Ref: no area %s", f.Ref)
		}
		if f.Stored() && f.Kind != Uint || !f.Stored() && f.Type != l2l.Int {
			bad("a Ref field holds an id (Uint)")
		}
	}
	if f.Check != nil && !f.Has(Write) {
		bad("Check applies to Write fields")
	}
	return out
}
