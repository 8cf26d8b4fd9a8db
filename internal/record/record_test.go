package record

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	_ "time/tzdata" // time zone checks without the host's zoneinfo

	"github.com/takt/takt/internal/l2l"
)

// TestTakt pins what other parts of Takt rely on: the areas, the fields
// writes sign, and the areas whose rows are written.
func TestTakt(t *testing.T) {
	var names, rows []string
	for _, a := range Takt.Areas() {
		names = append(names, a.Name)
		if a.Writes == WriteRows {
			rows = append(rows, a.Name)
		}
	}
	if want := []string{"apikeys", "areas", "clocksessions", "dispatches", "dispatchtypes", "lines", "machines", "parts",
		"pitchdetails", "pitches", "productcomponents", "productionperiods", "products", "reasons", "resourceshifts",
		"scrapcategory", "scrapdetail", "shifts", "sites", "users"}; !slices.Equal(names, want) {
		t.Errorf("areas %v, want %v", names, want)
	}
	if want := []string{"apikeys", "areas", "dispatchtypes", "lines", "machines", "productcomponents", "products", "reasons",
		"scrapcategory", "shifts", "sites", "users"}; !slices.Equal(rows, want) {
		t.Errorf("areas written by rows %v, want %v", rows, want)
	}
	// The actions the query API binds handlers to.
	var actions []string
	for _, a := range Takt.Areas() {
		for _, ac := range a.Actions {
			actions = append(actions, a.Name+"/"+ac.Name)
		}
	}
	if want := []string{"dispatches/open", "dispatches/close", "dispatches/add", "machines/set_cycle_count",
		"machines/increment_cycle_count", "pitchdetails/record_details", "productionperiods/recompute",
		"productionperiods/recompute_result", "users/clock_in", "users/clock_out"}; !slices.Equal(actions, want) {
		t.Errorf("actions %v, want %v", actions, want)
	}
	signed := map[string][]string{}
	for _, a := range Takt.Areas() {
		if fs := a.SignedFields(); fs != nil {
			signed[a.Name] = fs
		}
	}
	if want := map[string][]string{"users": {"username", "admin", "sites", "active"},
		"apikeys": {"user", "scopes", "active", "rate_limit", "rate_burst"}}; !reflect.DeepEqual(signed, want) {
		t.Errorf("signed fields %v, want %v", signed, want)
	}
	keys := Takt.Must("apikeys")
	for _, name := range []string{"prefix", "hash", "key", "last_used", "site", "created", "deleted", "version"} {
		if !keys.ServerOwned(name) {
			t.Errorf("apikeys.%s is not the server's", name)
		}
	}
	if keys.ServerOwned("scopes") || keys.ServerOwned("nope") {
		t.Error("a writable or unknown field is the server's")
	}
	s, err := keys.Schema()
	if err != nil {
		t.Fatal(err)
	}
	for _, hidden := range []string{"hash", "key"} {
		if _, ok := s.Field(hidden); ok {
			t.Errorf("reads show apikeys.%s", hidden)
		}
	}
	if cols := Takt.Must("machines").Columns(); cols[len(cols)-1].Name != CustomValues {
		t.Errorf("machines' columns end with %s", cols[len(cols)-1].Name)
	}
	// Django-style aliases: <field>_id for each reference and for site.
	for area, want := range map[string]map[string]string{
		"lines":      {"site_id": "site", "area_id": "area"},
		"machines":   {"site_id": "site", "line_id": "line"},
		"pitches":    {"site_id": "site", "line_id": "line", "machine_id": "machine"},
		"parts":      {"site_id": "site", "product_id": "product"},
		"reasons":    {"site_id": "site", "scrapcategory_id": "scrapcategory"},
		"apikeys":    {"site_id": "site", "user_id": "user"},
		"dispatches": {"site_id": "site", "machine_id": "machine", "line_id": "line", "dispatchtype_id": "dispatchtype"},
	} {
		if got := Takt.Must(area).Aliases(); !reflect.DeepEqual(got, want) {
			t.Errorf("%s aliases %v, want %v", area, got, want)
		}
	}
	if row := Takt.Must("shifts").ZeroRow(); row["days"] != "" || row["line"] != uint64(0) || len(row) != 8 {
		t.Errorf("zero shift %v", row)
	}
}

// TestRegistryRefusesBadDefinitions: each definition below breaks one rule
// and NewRegistry says which.
func TestRegistryRefusesBadDefinitions(t *testing.T) {
	good := func() *Area {
		return &Area{Name: "things", Record: "Thing", Table: "things", Versioned: true, Site: SiteField,
			Writes: WriteRows, Scope: "write",
			Fields: []Field{idField(), siteField(), codeField(),
				{Name: "owner", Kind: Uint, Flags: Read | Write, Ref: "things"}, activeField()},
			Actions: []Action{{Name: "poke", Methods: []string{"POST"}, PathArg: "id", Scope: "write", Returns: "things",
				Args: []Arg{{Name: "how", Type: ArgText, Required: true}}}}}
	}
	if _, err := NewRegistry(good()); err != nil {
		t.Fatalf("the good definition: %v", err)
	}
	tests := []struct {
		name   string
		change func(a *Area)
		want   string
	}{
		{"bad table", func(a *Area) { a.Table = "x; DROP" }, "bad name or table"},
		{"no id first", func(a *Area) { a.Fields = a.Fields[1:] }, "first field must be id"},
		{"id not the id column", func(a *Area) { a.Fields[0].Expr = "toInt64(id)" }, "first field must be id"},
		{"computed without expression", func(a *Area) {
			a.Fields = append(a.Fields, Field{Name: "x", Type: l2l.Int, Flags: Read})
		}, "needs Type and Expr"},
		{"stored with expression", func(a *Area) { a.Fields[2].Expr = "code" }, "takes its type and expression from its kind"},
		{"reserved name", func(a *Area) { a.Fields[2].Name = "limit" }, "reserved"},
		{"duplicate field", func(a *Area) { a.Fields = append(a.Fields, codeField()) }, "defined twice"},
		{"required but not writable", func(a *Area) { a.Fields[2].Flags = Read | Required }, "apply to Write fields"},
		{"writable computed field", func(a *Area) {
			a.Fields = append(a.Fields, Field{Name: "x", Type: l2l.Int, Expr: "1", Flags: Read | Write})
		}, "must be stored"},
		{"enum without options", func(a *Area) { a.Fields[2].Kind = Enum }, "Options"},
		{"default of another type", func(a *Area) { a.Fields[2].Default = 3 }, "Default"},
		{"default not an option", func(a *Area) {
			a.Fields = append(a.Fields, Field{Name: "d", Kind: Words, Flags: Read | Write, Options: weekdays, Default: "mon,xyz"})
		}, "Default"},
		{"reference to nothing", func(a *Area) { a.Fields[3].Ref = "nothings" }, "no area nothings"},
		{"unique of nothing", func(a *Area) { a.Unique = []Unique{{Field: "nope"}} }, "not a stored field"},
		{"unique across nothing", func(a *Area) { a.Unique = []Unique{{Field: "code", Areas: []string{"x"}}} }, "no area x"},
		{"site field missing", func(a *Area) { a.Site = Site{Field: "plant"} }, "site field"},
		{"site via a non-reference", func(a *Area) { a.Site = Site{Via: "code", Expr: "x"} }, "site via"},
		{"written but not versioned", func(a *Area) { a.Versioned = false }, "Versioned"},
		{"written without a scope", func(a *Area) { a.Scope = "" }, "Scope"},
		{"read-only with uniqueness", func(a *Area) {
			a.Writes, a.Scope, a.Unique = ReadOnly, "", []Unique{{Field: "code"}}
			for i := range a.Fields {
				a.Fields[i].Flags &^= Write | Required | Fixed | NotEmpty
			}
		}, "takes no writes of its records"},
		{"written by actions with a writable field", func(a *Area) { a.Writes, a.Scope = WriteActions, "" },
			"a Write field in an area that takes no writes"},
		{"no active field", func(a *Area) { a.Fields = a.Fields[:4] }, "every area shows active"},
		{"active not a bool", func(a *Area) { a.Fields[4].Kind = Uint; a.Fields[4].Default = nil }, "every area shows active"},
		{"no site field", func(a *Area) { a.Site = OwnSite; a.Fields[1].Name = "plant" }, "every area shows site"},
		{"action twice", func(a *Area) { a.Actions = append(a.Actions, a.Actions[0]) }, "action poke defined twice"},
		{"action without scope", func(a *Area) { a.Actions[0].Scope = "" }, "no scope"},
		{"action with a bad method", func(a *Area) { a.Actions[0].Methods = []string{"DELETE"} }, "want GET or POST"},
		{"action returning nothing known", func(a *Area) { a.Actions[0].Returns = "nothings" }, "unknown area nothings"},
		{"action argument twice", func(a *Area) { a.Actions[0].Args = append(a.Actions[0].Args, a.Actions[0].Args[0]) },
			"bad or repeated name"},
		{"action argument named like the path", func(a *Area) { a.Actions[0].Args[0].Name = "id" }, "bad or repeated name"},
		{"action argument of no type", func(a *Area) { a.Actions[0].Args[0].Type = 0 }, "unknown type"},
		{"action of its own data without a doc", func(a *Area) { a.Actions[0].Returns = "" }, "describes it in Doc"},
		{"issue key without its fields", func(a *Area) { a.OnCreate = IssueKey }, "IssueKey"},
		{"forget location without externalid", func(a *Area) { a.Forget = []Forget{ForgetLocation} }, "externalid"},
		{"shift start date without a line", func(a *Area) {
			a.Fields = append(a.Fields, Field{Name: "day", Type: l2l.Date, Expr: "0", Flags: Read, Derived: ShiftStartDate})
		}, "ShiftStartDate"},
		{"shift start date not a date", func(a *Area) {
			a.Line = "owner"
			a.Fields = append(a.Fields, Field{Name: "day", Type: l2l.DateTime, Expr: "0", Flags: Read, Derived: ShiftStartDate})
		}, "ShiftStartDate"},
		{"custom column clash", func(a *Area) {
			a.Custom = true
			a.Fields = append(a.Fields, Field{Name: CustomKeys, Kind: Strings, Flags: Read})
		}, "clashes"},
	}
	for _, tt := range tests {
		a := good()
		tt.change(a)
		_, err := NewRegistry(a)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want an error with %q", tt.name, err, tt.want)
		}
	}
	if _, err := NewRegistry(good(), good()); err == nil || !strings.Contains(err.Error(), "defined twice") {
		t.Errorf("an area twice: %v", err)
	}
}

// TestParse: the text of a write becomes the Row value of its kind, or an
// error naming the field.
func TestParse(t *testing.T) {
	tests := []struct {
		f    Field
		raw  string
		want any
		err  string
	}{
		{Field{Name: "n", Kind: Uint}, " 42 ", uint64(42), ""},
		{Field{Name: "n", Kind: Uint}, "-1", nil, `n: "-1" is not a whole number`},
		{Field{Name: "x", Kind: Float, Max: 10}, "2.5", 2.5, ""},
		{Field{Name: "x", Kind: Float, Max: 10}, "10.5", nil, `x: "10.5" is above the maximum 10`},
		{Field{Name: "x", Kind: Float}, "NaN", nil, `x: "NaN" is not a number >= 0`},
		{Field{Name: "x", Kind: Float}, "-0.5", nil, `x: "-0.5" is not a number >= 0`},
		{Field{Name: "s", Kind: String}, "a b", "a b", ""},
		{Field{Name: "s", Kind: String}, strings.Repeat("x", MaxText+1), nil, "s: longer than 1000 bytes"},
		{Field{Name: "k", Kind: Enum, Options: []string{"scrap", "downtime"}}, "oops", nil, `k: "oops" is not one of scrap, downtime`},
		{Field{Name: "b", Kind: Bool}, "True", true, ""},
		{Field{Name: "b", Kind: Bool}, "t", true, ""},
		{Field{Name: "b", Kind: Bool}, "F", false, ""},
		{Field{Name: "b", Kind: Bool}, "0", false, ""},
		{Field{Name: "b", Kind: Bool}, "yes", nil, `b: "yes" is not True or False`},
		{Field{Name: "ids", Kind: Uints}, "1, 2,,1", []uint64{1, 2}, ""},
		{Field{Name: "ids", Kind: Uints}, "", []uint64{}, ""},
		{Field{Name: "ws", Kind: Strings, Options: scopes}, "read,write,read", []string{"read", "write"}, ""},
		{Field{Name: "ws", Kind: Strings, Options: scopes}, "read,root", nil, `ws: "root" is not one of ingest, read, write, admin`},
		{Field{Name: "days", Kind: Words, Options: weekdays}, "mon, tue", "mon,tue", ""},
		{Field{Name: "days", Kind: Words, Options: weekdays}, "", "", ""},
		{Field{Name: "at", Kind: Time}, "2024-03-04T06:30:15.9Z", time.Date(2024, 3, 4, 6, 30, 15, 0, time.UTC), ""},
		{Field{Name: "at", Kind: Time}, "2024-03-04 07:30:15+01:00", time.Date(2024, 3, 4, 6, 30, 15, 0, time.UTC), ""},
		{Field{Name: "at", Kind: Time}, "", time.Unix(0, 0).UTC(), ""},
		{Field{Name: "at", Kind: Time}, "Monday", nil, `at: "Monday" is not a UTC ISO 8601 date-time (2016-05-05T22:39:47)`},
	}
	for _, tt := range tests {
		got, err := tt.f.Parse(tt.raw)
		if tt.err != "" {
			if err == nil || err.Error() != tt.err {
				t.Errorf("%s %q: %v, %v; want error %q", tt.f.Name, tt.raw, got, err, tt.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s %q: %#v, %v; want %#v", tt.f.Name, tt.raw, got, err, tt.want)
		}
	}
}

// TestChecks: the value checks of Takt's fields.
func TestChecks(t *testing.T) {
	tests := []struct {
		area, field string
		v           any
		row         Row
		ok          bool
	}{
		{"sites", "timezone", "Europe/Berlin", nil, true},
		{"sites", "timezone", "Mars/Base", nil, false},
		{"sites", "timezone", "", nil, false},
		{"shifts", "start_time", "06:00", nil, true},
		{"shifts", "end_time", "24:00", nil, false},
		{"users", "username", "jo.doe@x", nil, true},
		{"users", "username", "jo doe", nil, false},
		{"reasons", "planned", true, Row{"kind": "downtime"}, true},
		{"reasons", "planned", true, Row{"kind": "scrap"}, false},
		{"reasons", "planned", false, Row{"kind": "scrap"}, true},
	}
	for _, tt := range tests {
		f, _ := Takt.Must(tt.area).Field(tt.field)
		if p := f.Check(tt.v, tt.row); (p == "") != tt.ok {
			t.Errorf("%s.%s = %v: problem %q", tt.area, tt.field, tt.v, p)
		}
	}
}
