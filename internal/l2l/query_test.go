package l2l

import (
	"errors"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"
)

// testSchema has one field of every type; the nullable ones end in "_n".
var testSchema = MustSchema("widgets",
	Field{Name: "id", Type: Int},
	Field{Name: "qty", Type: Int},
	Field{Name: "qty_n", Type: Int, Nullable: true},
	Field{Name: "ratio", Type: Float, Nullable: true},
	Field{Name: "name", Type: String},
	Field{Name: "name_n", Type: String, Nullable: true},
	Field{Name: "ok", Type: Bool},
	Field{Name: "at", Type: DateTime},
	Field{Name: "day", Type: Date, Nullable: true},
	Field{Name: "local", Type: LocalDateTime},
)

func utc(y int, mo time.Month, d, h, mi, s, ns int) time.Time {
	return time.Date(y, mo, d, h, mi, s, ns, time.UTC)
}

func mustValues(t *testing.T, raw string) url.Values {
	t.Helper()
	v, err := url.ParseQuery(raw)
	if err != nil {
		t.Fatalf("parse %q: %v", raw, err)
	}
	return v
}

func TestParseFilters(t *testing.T) {
	at := utc(2016, 5, 5, 22, 39, 47, 0)
	midnight := utc(2016, 5, 5, 0, 0, 0, 0)
	tests := []struct {
		query string
		want  Filter
	}{
		// Int.
		{"qty=5", Filter{"qty", OpEq, int64(5)}},
		{"qty__lt=5", Filter{"qty", OpLt, int64(5)}},
		{"qty__lte=-5", Filter{"qty", OpLte, int64(-5)}},
		{"qty__gt=%2B7", Filter{"qty", OpGt, int64(7)}},
		{"qty__gte=0", Filter{"qty", OpGte, int64(0)}},
		{"qty__isnull=True", Filter{"qty", OpIsNull, true}},
		{"qty_n__isnull=False", Filter{"qty_n", OpIsNull, false}},
		// Float.
		{"ratio=1.5", Filter{"ratio", OpEq, 1.5}},
		{"ratio__lt=2", Filter{"ratio", OpLt, 2.0}},
		{"ratio__lte=1e3", Filter{"ratio", OpLte, 1000.0}},
		{"ratio__gt=-0.25", Filter{"ratio", OpGt, -0.25}},
		{"ratio__gte=45", Filter{"ratio", OpGte, 45.0}},
		{"ratio__isnull=true", Filter{"ratio", OpIsNull, true}},
		// String.
		{"name=Line%2033", Filter{"name", OpEq, "Line 33"}},
		{"name=", Filter{"name", OpEq, ""}},
		{"name__lt=Sandbox", Filter{"name", OpLt, "Sandbox"}},
		{"name__lte=Sandbox", Filter{"name", OpLte, "Sandbox"}},
		{"name__gt=a%27%3B+DROP+TABLE+parts", Filter{"name", OpGt, "a'; DROP TABLE parts"}},
		{"name__gte=%E2%82%AC", Filter{"name", OpGte, "€"}},
		{"name_n__isnull=False", Filter{"name_n", OpIsNull, false}},
		// Bool.
		{"ok=True", Filter{"ok", OpEq, true}},
		{"ok=false", Filter{"ok", OpEq, false}},
		{"ok=1", Filter{"ok", OpEq, true}},
		{"ok=T", Filter{"ok", OpEq, true}},
		{"ok=f", Filter{"ok", OpEq, false}},
		{"ok__lt=0", Filter{"ok", OpLt, false}},
		{"ok__lte=TRUE", Filter{"ok", OpLte, true}},
		{"ok__gt=False", Filter{"ok", OpGt, false}},
		{"ok__gte=true", Filter{"ok", OpGte, true}},
		{"ok__isnull=False", Filter{"ok", OpIsNull, false}},
		// DateTime: ISO 8601 in UTC, with or without fraction and Z, or a date.
		{"at=2016-05-05T22:39:47", Filter{"at", OpEq, at}},
		{"at__lt=2016-05-05T22:39:47Z", Filter{"at", OpLt, at}},
		{"at__lte=2016-05-05T22:39:47.123", Filter{"at", OpLte, at.Add(123 * time.Millisecond)}},
		{"at__gt=2016-05-05T22:39:47.123456Z", Filter{"at", OpGt, at.Add(123456 * time.Microsecond)}},
		{"at__gte=2016-05-05", Filter{"at", OpGte, midnight}},
		{"at=2016-05-05%2022:39:47", Filter{"at", OpEq, at}},
		{"at=2016-05-06T00:39:47%2B02:00", Filter{"at", OpEq, at}},
		{"at__isnull=False", Filter{"at", OpIsNull, false}},
		// LocalDateTime filters by the instant, like DateTime.
		{"local__gte=2016-05-05T22:39:47Z", Filter{"local", OpGte, at}},
		{"local__lt=2016-05-05", Filter{"local", OpLt, midnight}},
		// Date.
		{"day=2016-05-05", Filter{"day", OpEq, midnight}},
		{"day__lt=2016-05-05", Filter{"day", OpLt, midnight}},
		{"day__lte=2016-05-05", Filter{"day", OpLte, midnight}},
		{"day__gt=2016-05-05", Filter{"day", OpGt, midnight}},
		{"day__gte=2016-05-05", Filter{"day", OpGte, midnight}},
		{"day__isnull=True", Filter{"day", OpIsNull, true}},
		// Id.
		{"id__gt=1099511627776", Filter{"id", OpGt, int64(1) << 40}},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			q, err := Parse(mustValues(t, tt.query), testSchema)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if len(q.Filters) != 1 || !reflect.DeepEqual(q.Filters[0], tt.want) {
				t.Fatalf("filters = %#v, want [%#v]", q.Filters, tt.want)
			}
			if tm, ok := q.Filters[0].Value.(time.Time); ok && tm.Location() != time.UTC {
				t.Fatalf("time value in %v, want UTC", tm.Location())
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		query string
		want  string // a substring of the error
	}{
		{"color=red", `unknown field "color" in widgets`},
		{"color__lt=red", `unknown field "color" in widgets`},
		{"custom__paint=red", `widgets has no custom properties ("custom__paint")`},
		{"name__like=x", `unknown operator "like" in "name__like"`},
		{"name__=x", `unknown operator "" in "name__"`},
		{"name__in=a,b", `unknown operator "in"`},
		{"qty=five", `qty: value "five" is not a whole number`},
		{"qty__lt=1.5", `qty__lt: value "1.5" is not a whole number`},
		{"qty=99999999999999999999", `is not a whole number`},
		{"ratio__gt=abc", `ratio__gt: value "abc" is not a number`},
		{"ratio=NaN", `value "NaN" is not a number`},
		{"ratio=Inf", `value "Inf" is not a number`},
		{"ok=yes", `ok: value "yes" is not True or False`},
		{"at__gt=yesterday", `at__gt: value "yesterday" is not a UTC ISO 8601 date-time`},
		{"at=2016-13-05", `is not a UTC ISO 8601 date-time`},
		{"at=2016-05-05T25:00:00", `is not a UTC ISO 8601 date-time`},
		{"at=1462487987", `is not a UTC ISO 8601 date-time`},
		{"day=2016-05-05T22:39:47", `day: value "2016-05-05T22:39:47" is not an ISO 8601 date`},
		{"qty__isnull=maybe", `qty__isnull: value "maybe" is not True or False`},
		{"qty__isnull=", `qty__isnull: value "" is not True or False`},
		{"limit=2001", `limit 2001 is above the maximum 2000 of widgets`},
		{"limit=0", `limit 0 is below 1`},
		{"limit=-1", `limit -1 is below 1`},
		{"limit=ten", `limit "ten" is not a whole number`},
		{"offset=-1", `offset -1 is negative`},
		{"offset=1.5", `offset "1.5" is not a whole number`},
		{"order_by=color", `order_by: unknown field "color" in widgets`},
		{"order_by=-color", `order_by: unknown field "color" in widgets`},
		{"order_by=name,-", `order_by: unknown field "" in widgets`},
		{"fields=id,color", `fields: unknown field "color" in widgets`},
		{"format=csv", `format "csv" is not json or xml`},
		{"l2lfmt_microseconds=sometimes", `l2lfmt_microseconds "sometimes" is not true or false`},
		{"limit=1&limit=2", `argument "limit" is given 2 times`},
		{"qty=1&qty=2", `argument "qty" is given 2 times`},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			_, err := Parse(mustValues(t, tt.query), testSchema)
			if err == nil {
				t.Fatal("Parse succeeded, want an error")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not match ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	_, err := Parse(mustValues(t, "limit=5000&offset=-2&color=red&qty=x"), testSchema)
	var qe *QueryError
	if !errors.As(err, &qe) {
		t.Fatalf("error %v is not a *QueryError", err)
	}
	want := []string{
		`unknown field "color" in widgets`,
		`limit 5000 is above the maximum 2000 of widgets`,
		`offset -2 is negative`,
		`qty: value "x" is not a whole number`,
	}
	if !reflect.DeepEqual(qe.Problems, want) {
		t.Fatalf("problems = %q, want %q", qe.Problems, want)
	}
	if got := Invalid(err); got.Error != strings.Join(want, "; ") || !reflect.DeepEqual(got.Errors, want) {
		t.Fatalf("Invalid() = %+v", got)
	}
}

func TestParseControl(t *testing.T) {
	byID := []Order{{Field: "id"}}
	tests := []struct {
		query string
		want  Query
	}{
		{"", Query{Limit: 100, OrderBy: byID}},
		{"auth=secret&realuser=bob&_server=s&_expiration=x&_signature=y", Query{Limit: 100, OrderBy: byID}},
		{"auth=a&auth=b", Query{Limit: 100, OrderBy: byID}},
		{"limit=&offset=&order_by=&fields=&format=&l2lfmt_microseconds=", Query{Limit: 100, OrderBy: byID}},
		{"limit=2000&offset=4000", Query{Limit: 2000, Offset: 4000, OrderBy: byID}},
		{"limit=1", Query{Limit: 1, OrderBy: byID}},
		{"order_by=-id", Query{Limit: 100, OrderBy: []Order{{"id", true}}}},
		{"order_by=-at", Query{Limit: 100, OrderBy: []Order{{"at", true}, {"id", false}}}},
		{"order_by=name,-qty", Query{Limit: 100, OrderBy: []Order{{"name", false}, {"qty", true}, {"id", false}}}},
		{"order_by=id,name", Query{Limit: 100, OrderBy: []Order{{"id", false}, {"name", false}}}},
		{"order_by=name,-name", Query{Limit: 100, OrderBy: []Order{{"name", false}, {"id", false}}}},
		{"fields=name,id", Query{Limit: 100, OrderBy: byID, Fields: []string{"name", "id"}}},
		{"fields=+name+,,id,name", Query{Limit: 100, OrderBy: byID, Fields: []string{"name", "id"}}},
		{"format=xml", Query{Limit: 100, OrderBy: byID, Format: XML}},
		{"format=XML", Query{Limit: 100, OrderBy: byID, Format: XML}},
		{"format=json", Query{Limit: 100, OrderBy: byID, Format: JSON}},
		{"l2lfmt_microseconds=true", Query{Limit: 100, OrderBy: byID, Microseconds: true}},
		{"l2lfmt_microseconds=False", Query{Limit: 100, OrderBy: byID}},
		{"qty__gte=1&qty__lt=3&name=a", Query{Limit: 100, OrderBy: byID, Filters: []Filter{
			{"name", OpEq, "a"}, {"qty", OpGte, int64(1)}, {"qty", OpLt, int64(3)},
		}}},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			q, err := Parse(mustValues(t, tt.query), testSchema)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !reflect.DeepEqual(q, tt.want) {
				t.Fatalf("got  %#v\nwant %#v", q, tt.want)
			}
			back, err := Parse(q.Encode(testSchema), testSchema)
			if err != nil || !reflect.DeepEqual(back, q) {
				t.Fatalf("round trip through %q: %#v, %v", q.Encode(testSchema).Encode(), back, err)
			}
		})
	}
}

func TestSchemaLimits(t *testing.T) {
	s, err := testSchema.WithLimits(10, 50)
	if err != nil {
		t.Fatal(err)
	}
	q, err := Parse(url.Values{}, s)
	if err != nil || q.Limit != 10 {
		t.Fatalf("default limit: %v, %v", q.Limit, err)
	}
	if _, err := Parse(url.Values{"limit": {"51"}}, s); err == nil || !strings.Contains(err.Error(), "maximum 50") {
		t.Fatalf("limit above 50: %v", err)
	}
	for _, l := range [][2]int{{0, 10}, {20, 10}, {1, 0}} {
		if _, err := testSchema.WithLimits(l[0], l[1]); err == nil {
			t.Errorf("WithLimits(%d, %d) succeeded", l[0], l[1])
		}
	}
}

func TestNewSchemaErrors(t *testing.T) {
	id := Field{Name: "id", Type: Int}
	tests := []struct {
		name   string
		fields []Field
	}{
		{"no id", []Field{{Name: "code", Type: String}}},
		{"string id", []Field{{Name: "id", Type: String}}},
		{"nullable id", []Field{{Name: "id", Type: Int, Nullable: true}}},
		{"duplicate", []Field{id, id}},
		{"operator separator", []Field{id, {Name: "a__b", Type: Int}}},
		{"upper case", []Field{id, {Name: "Code", Type: String}}},
		{"reserved", []Field{id, {Name: "limit", Type: Int}}},
		{"reserved auth", []Field{id, {Name: "auth", Type: String}}},
		{"no type", []Field{id, {Name: "code"}}},
	}
	for _, tt := range tests {
		if _, err := NewSchema("x", tt.fields...); err == nil {
			t.Errorf("%s: NewSchema succeeded", tt.name)
		}
	}
}

func TestSelected(t *testing.T) {
	q := Query{Fields: []string{"name", "id"}}
	got := q.Selected(testSchema)
	if len(got) != 2 || got[0].Name != "name" || got[1].Name != "id" {
		t.Fatalf("Selected = %+v", got)
	}
	if all := (Query{}).Selected(testSchema); len(all) != len(testSchema.Fields()) {
		t.Fatalf("Selected without fields = %d fields", len(all))
	}
}

func TestFormatOf(t *testing.T) {
	for raw, want := range map[string]Format{"": JSON, "format=xml": XML, "format=Xml": XML, "format=csv": JSON, "format=json": JSON} {
		if got := FormatOf(mustValues(t, raw)); got != want {
			t.Errorf("FormatOf(%q) = %v, want %v", raw, got, want)
		}
	}
}

// customSchema is testSchema with custom properties (as machines have).
var customSchema = testSchema.WithCustomProperties()

// TestEncodeCustomProperties: custom-property filters and fields survive
// Encode and Parse (Encode used to drop them, so a client built with it
// asked for more records than it meant to).
func TestEncodeCustomProperties(t *testing.T) {
	byID := []Order{{Field: "id"}}
	tests := []struct {
		query string
		want  Query
		keys  []string // argument names Encode must write
	}{
		{"custom__paint=red", Query{Limit: 100, OrderBy: byID, Custom: []Filter{{"paint", OpEq, "red"}}},
			[]string{"custom__paint"}},
		{"custom__paint__gte=b&custom__size__isnull=True&qty=2", Query{Limit: 100, OrderBy: byID,
			Filters: []Filter{{"qty", OpEq, int64(2)}},
			Custom:  []Filter{{"paint", OpGte, "b"}, {"size", OpIsNull, true}}},
			[]string{"custom__paint__gte", "custom__size__isnull", "qty"}},
		{"custom__note=a%26b%3Dc", Query{Limit: 100, OrderBy: byID, Custom: []Filter{{"note", OpEq, "a&b=c"}}},
			[]string{"custom__note"}},
		{"fields=custom__paint", Query{Limit: 100, OrderBy: byID, CustomFields: []string{"paint"}},
			[]string{"fields"}},
		{"fields=name,custom__paint,id,custom__size", Query{Limit: 100, OrderBy: byID,
			Fields: []string{"name", "id"}, CustomFields: []string{"paint", "size"}},
			[]string{"fields"}},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			q, err := Parse(mustValues(t, tt.query), customSchema)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !reflect.DeepEqual(q, tt.want) {
				t.Fatalf("got  %#v\nwant %#v", q, tt.want)
			}
			enc := q.Encode(customSchema)
			for _, k := range tt.keys {
				if !enc.Has(k) {
					t.Errorf("Encode wrote %q: no %s", enc.Encode(), k)
				}
			}
			back, err := Parse(enc, customSchema)
			if err != nil || !reflect.DeepEqual(back, q) {
				t.Fatalf("round trip through %q: %#v, %v", enc.Encode(), back, err)
			}
		})
	}
}

// TestAliases: an alias names its field in filters (with every operator)
// and in order_by; answers and parsed queries use the field's own name,
// and an alias that is a field, reserved or of no field is refused.
func TestAliases(t *testing.T) {
	s, err := testSchema.WithAliases(map[string]string{"qty_id": "qty"})
	if err != nil {
		t.Fatal(err)
	}
	q, err := Parse(mustValues(t, "qty_id=5&qty_id__gte=2&qty_id__isnull=False&order_by=-qty_id"), s)
	if err != nil {
		t.Fatal(err)
	}
	want := []Filter{{"qty", OpEq, int64(5)}, {"qty", OpGte, int64(2)}, {"qty", OpIsNull, false}}
	if !reflect.DeepEqual(q.Filters, want) {
		t.Errorf("filters %v, want %v", q.Filters, want)
	}
	if want := []Order{{Field: "qty", Desc: true}, {Field: "id"}}; !reflect.DeepEqual(q.OrderBy, want) {
		t.Errorf("order %v, want %v", q.OrderBy, want)
	}
	if _, err := Parse(mustValues(t, "qty_id=5"), testSchema); err == nil {
		t.Error("an alias of another schema was accepted")
	}
	if _, err := Parse(mustValues(t, "qty_id=x"), s); err == nil || !strings.Contains(err.Error(), "qty_id") {
		t.Errorf("a bad value of an alias: %v", err)
	}
	for _, bad := range []map[string]string{{"qty": "name"}, {"limit": "qty"}, {"x_id": "nothing"}, {"Bad": "qty"}} {
		if _, err := testSchema.WithAliases(bad); err == nil {
			t.Errorf("alias %v accepted", bad)
		}
	}
}

// A field computed after the read is shown and picked, never filtered on
// or ordered by.
func TestAfterReadField(t *testing.T) {
	s := MustSchema("buckets", Field{Name: "id", Type: Int}, Field{Name: "shift_day", Type: Date, AfterRead: true})
	q, err := Parse(mustValues(t, "fields=id,shift_day"), s)
	if err != nil {
		t.Fatalf("fields=id,shift_day: %v", err)
	}
	if got := q.Selected(s); len(got) != 2 || !got[1].AfterRead {
		t.Errorf("selected %+v, want id and shift_day", got)
	}
	for _, tc := range []struct{ query, want string }{
		{"shift_day=2024-03-06", "shift_day: shift_day of buckets is computed after the read and cannot be filtered on"},
		{"shift_day__gte=2024-03-06", "shift_day__gte: shift_day of buckets is computed after the read and cannot be filtered on"},
		{"shift_day__isnull=False", "cannot be filtered on"},
		{"order_by=-shift_day", "order_by: shift_day of buckets is computed after the read and cannot be ordered by"},
	} {
		_, err := Parse(mustValues(t, tc.query), s)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want an invalid query saying %q", tc.query, err, tc.want)
		}
	}
	if _, err := s.WithDefaultOrder(Order{Field: "shift_day"}); err == nil {
		t.Error("a default order by an after-read field was accepted")
	}
}
