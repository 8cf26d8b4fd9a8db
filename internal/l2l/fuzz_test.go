package l2l

import (
	"encoding/json"
	"errors"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParseQuery feeds raw query strings to Parse. Whatever the input,
// Parse must not panic, must fail only with a *QueryError, and a query it
// accepts must respect the schema's limits and survive Encode and Parse
// unchanged; its answers must render as valid JSON and XML.
func FuzzParseQuery(f *testing.F) {
	for _, seed := range []string{
		"",
		"limit=2&offset=0",
		"limit=2001",
		"offset=-1",
		"order_by=-at&fields=id,name,at",
		"qty__gte=1&qty__lt=3&name=Line%2033",
		"ratio__isnull=False&ok=True&day=2016-05-05",
		"at__gt=2016-05-05T22:39:47.5Z&local__lt=2016-05-05",
		"format=xml&l2lfmt_microseconds=true",
		"name__like=x&custom__paint=red&color=1",
		"custom__paint__gte=b&custom__size__isnull=True&fields=id,custom__paint",
		"qty=1&qty=2&auth=k&auth=j",
		"%zz=1&a;b",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		args, _ := url.ParseQuery(raw) // keep what parsed, as net/http does
		q, err := Parse(args, testSchema)
		if err != nil {
			var qe *QueryError
			if !errors.As(err, &qe) || len(qe.Problems) == 0 || !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse(%q): error %#v is not a *QueryError with problems", raw, err)
			}
			checkRenders(t, Invalid(err))
			return
		}
		if q.Limit < 1 || q.Limit > testSchema.MaxLimit() || q.Offset < 0 || len(q.OrderBy) == 0 {
			t.Fatalf("Parse(%q): out of bounds: %+v", raw, q)
		}
		for _, fl := range q.Filters {
			if _, ok := testSchema.Field(fl.Field); !ok {
				t.Fatalf("Parse(%q): filter on unknown field %q", raw, fl.Field)
			}
		}
		back, err := Parse(q.Encode(testSchema), testSchema)
		if err != nil || !reflect.DeepEqual(back, q) {
			t.Fatalf("Parse(%q) = %#v; after Encode: %#v, %v", raw, q, back, err)
		}
		// With custom properties, their filters and fields round-trip too.
		if cq, err := Parse(args, customSchema); err == nil {
			back, err := Parse(cq.Encode(customSchema), customSchema)
			if err != nil || !reflect.DeepEqual(back, cq) {
				t.Fatalf("custom: Parse(%q) = %#v; after Encode: %#v, %v", raw, cq, back, err)
			}
		}
		fields := q.Selected(testSchema)
		row := make([]any, len(fields))
		for i, fl := range fields {
			for _, flt := range q.Filters {
				if flt.Field == fl.Name && flt.Op != OpIsNull {
					row[i] = flt.Value // filter values have the field's Go type
				}
			}
		}
		checkRenders(t, List(fields, [][]any{row}, q.Limit, q.Offset))
	})
}

// FuzzRenderString checks that any string value renders as JSON that
// decodes back to it (after invalid UTF-8 is replaced) and as well-formed XML.
func FuzzRenderString(f *testing.F) {
	for _, seed := range []string{"", "plain", "a\"b\\c\n\t\x00", "<&>", "\xff\xfe", "\u2028\u2029", "€𝄞"} {
		f.Add(seed)
	}
	fields := []Field{{Name: "id", Type: Int}, {Name: "s", Type: String}}
	f.Fuzz(func(t *testing.T, s string) {
		r := Record(fields, []any{int64(1), s})
		b, err := r.AppendJSON(nil, false)
		if err != nil {
			t.Fatal(err)
		}
		var env struct {
			Data struct {
				S string `json:"s"`
			} `json:"data"`
		}
		if err := json.Unmarshal(b, &env); err != nil {
			t.Fatalf("JSON for %q: %v: %s", s, err, b)
		}
		if want := strings.ToValidUTF8(s, "\uFFFD"); utf8.ValidString(s) && env.Data.S != want {
			t.Fatalf("JSON round trip: got %q want %q", env.Data.S, want)
		}
		checkRenders(t, r)
	})
}

func checkRenders(t *testing.T, r Response) {
	t.Helper()
	for _, format := range []Format{JSON, XML} {
		b, err := r.Encode(nil, format, false)
		if err != nil {
			t.Fatalf("render %+v: %v", r, err)
		}
		checkWellFormed(t, format, b)
	}
}
