package l2l

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"flag"
	"io"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

// berlin is a fixed +02:00 zone so the golden files do not depend on the
// machine's time zone database.
var berlin = time.FixedZone("CEST", 2*3600)

func sampleRows() [][]any {
	at := time.Date(2016, 5, 5, 22, 39, 47, 123456789, time.UTC)
	return [][]any{
		{int64(3), int64(5), nil, 45.0, "Sandbox", nil, true, at, time.Date(2016, 5, 5, 0, 0, 0, 0, time.UTC), at.In(berlin)},
		{uint64(1) << 40, 7, int64(-2), 0.125, "a \"quoted\" <tag> & \\ back\nslash\t\u2028€\x01", "", false,
			at.Truncate(time.Second), nil, at.In(time.UTC)},
	}
}

func TestRenderGolden(t *testing.T) {
	fields := testSchema.Fields()
	rows := sampleRows()
	_, invalidErr := Parse(mustValues(t, "limit=5000&color=red"), testSchema)
	tests := []struct {
		name  string
		resp  Response
		micro bool
	}{
		{"list", List(fields, rows, 100, 0), false},
		{"list_micro", List(fields, rows, 2, 4), true},
		{"list_empty", List(fields, nil, 2000, 10), false},
		{"record", Record(fields, rows[0]), false},
		{"record_fields", Record(testSchema.Fields()[:2], rows[0][:2]), false},
		{"invalid", Invalid(invalidErr), false},
		{"failure", Failure("Invalid API key"), false},
	}
	for _, tt := range tests {
		for _, f := range []Format{JSON, XML} {
			ext := map[Format]string{JSON: "json", XML: "xml"}[f]
			t.Run(tt.name+"."+ext, func(t *testing.T) {
				got, err := tt.resp.Encode(nil, f, tt.micro)
				if err != nil {
					t.Fatalf("Encode: %v", err)
				}
				checkWellFormed(t, f, got)
				golden := filepath.Join("testdata", tt.name+"."+ext)
				if *update {
					if err := os.WriteFile(golden, got, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				want, err := os.ReadFile(golden)
				if err != nil {
					t.Fatalf("%v (run go test -update to create it)", err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("answer changed:\n got %s\nwant %s\n(run go test -update if intended)", got, want)
				}
			})
		}
	}
}

func checkWellFormed(t *testing.T, f Format, b []byte) {
	t.Helper()
	if f == JSON {
		if !json.Valid(b) {
			t.Fatalf("invalid JSON: %s", b)
		}
		return
	}
	if !bytes.HasPrefix(b, []byte(xmlHeader+"<response>")) {
		t.Fatalf("XML does not start with the header and <response>: %s", b)
	}
	d := xml.NewDecoder(bytes.NewReader(b))
	for {
		_, err := d.Token()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatalf("invalid XML: %v\n%s", err, b)
		}
	}
}

// TestRenderDecodes checks what a JSON client reads back, not just bytes.
func TestRenderDecodes(t *testing.T) {
	r := List(testSchema.Fields(), sampleRows(), 100, 0)
	b, err := r.AppendJSON(nil, false)
	if err != nil {
		t.Fatal(err)
	}
	var env struct {
		Success bool             `json:"success"`
		Data    []map[string]any `json:"data"`
		Limit   int              `json:"limit"`
		Offset  int              `json:"offset"`
	}
	if err := json.Unmarshal(b, &env); err != nil {
		t.Fatal(err)
	}
	if !env.Success || env.Limit != 100 || len(env.Data) != 2 {
		t.Fatalf("envelope %+v", env)
	}
	rec := env.Data[1]
	checks := map[string]any{
		"id": float64(1 << 40), "qty_n": float64(-2), "ratio": 0.125,
		"name":  "a \"quoted\" <tag> & \\ back\nslash\t\u2028€\x01",
		"ok":    false,
		"at":    "2016-05-05 22:39:47.000",
		"day":   nil,
		"local": "2016-05-05T22:39:47.123+00:00",
	}
	for k, want := range checks {
		if rec[k] != want {
			t.Errorf("%s = %#v, want %#v", k, rec[k], want)
		}
	}
	if got := env.Data[0]["local"]; got != "2016-05-06T00:39:47.123+02:00" {
		t.Errorf("local = %v", got)
	}
}

func TestRenderErrors(t *testing.T) {
	f := []Field{{Name: "id", Type: Int}, {Name: "v", Type: Float}}
	tests := []struct {
		name string
		resp Response
	}{
		{"string in int", List(f, [][]any{{"1", 1.0}}, 1, 0)},
		{"int in float", List(f, [][]any{{int64(1), int64(1)}}, 1, 0)},
		{"NaN", List(f, [][]any{{int64(1), math.NaN()}}, 1, 0)},
		{"short row", List(f, [][]any{{int64(1)}}, 1, 0)},
		{"single without row", Response{Success: true, Single: true, Fields: f}},
		{"bool field", List([]Field{{Name: "b", Type: Bool}}, [][]any{{1}}, 1, 0)},
		{"string field", List([]Field{{Name: "s", Type: String}}, [][]any{{1}}, 1, 0)},
		{"time field", List([]Field{{Name: "t", Type: DateTime}}, [][]any{{"now"}}, 1, 0)},
	}
	for _, tt := range tests {
		for _, format := range []Format{JSON, XML} {
			prefix := []byte("keep")
			got, err := tt.resp.Encode(prefix, format, false)
			if err == nil {
				t.Errorf("%s (%v): Encode succeeded: %s", tt.name, format, got)
			}
			if string(got) != "keep" {
				t.Errorf("%s (%v): buffer not restored: %q", tt.name, format, got)
			}
		}
	}
}

func TestAppendFloat(t *testing.T) {
	for x, want := range map[float64]string{
		0: "0.0", 45: "45.0", -3: "-3.0", 0.1: "0.1", 1e21: "1000000000000000000000.0", 2.5e-7: "0.00000025",
	} {
		if got := string(appendFloat(nil, x)); got != want {
			t.Errorf("appendFloat(%v) = %s, want %s", x, got, want)
		}
	}
}

func TestXMLText(t *testing.T) {
	got := string(appendXMLText(nil, "a<b>&c\x00\x1f\t\n\uFFFE\xff€"))
	want := "a&lt;b&gt;&amp;c\uFFFD\uFFFD\t\n\uFFFD\uFFFD€"
	if got != want {
		t.Fatalf("got %q want %q", got, want)
	}
}

func TestContentType(t *testing.T) {
	if !strings.Contains(ContentType(XML), "xml") || !strings.Contains(ContentType(JSON), "json") {
		t.Fatal("content types")
	}
}

func TestInvalidPlainError(t *testing.T) {
	r := Invalid(errors.New("boom"))
	if r.Success || r.Error != "boom" || r.Errors != nil {
		t.Fatalf("%+v", r)
	}
}

// BenchmarkEncodeList encodes a full page (2000 records of every type).
func BenchmarkEncodeList(b *testing.B) {
	base := sampleRows()
	rows := make([][]any, MaxLimit)
	for i := range rows {
		rows[i] = base[i%len(base)]
	}
	r := List(testSchema.Fields(), rows, MaxLimit, 0)
	for _, f := range []Format{JSON, XML} {
		b.Run(map[Format]string{JSON: "json", XML: "xml"}[f], func(b *testing.B) {
			b.ReportAllocs()
			var buf []byte
			for b.Loop() {
				var err error
				if buf, err = r.Encode(buf[:0], f, false); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(len(buf)))
		})
	}
}

func BenchmarkParse(b *testing.B) {
	args := url.Values{"limit": {"2000"}, "offset": {"4000"}, "order_by": {"-at"},
		"qty__gte": {"3"}, "at__lt": {"2016-05-05T22:39:47Z"}, "fields": {"id,qty,at"}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(args, testSchema); err != nil {
			b.Fatal(err)
		}
	}
}

// TestNestedRecords: a Records field holds a list of records, shown as a
// JSON array of objects and as <resource> elements in XML; a row of the
// wrong width fails like a top-level one.
func TestNestedRecords(t *testing.T) {
	inner := []Field{{Name: "code", Type: String}, {Name: "n", Type: Int}}
	fields := []Field{{Name: "line", Type: Int}, {Name: "products", Type: Records}}
	r := Record(fields, []any{int64(7), Nested{Fields: inner, Rows: [][]any{{"A", int64(1)}, {"B<", int64(2)}}}})
	j, err := r.Encode(nil, JSON, false)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"success":true,"data":{"line":7,"products":[{"code":"A","n":1},{"code":"B<","n":2}]}}`; string(j) != want {
		t.Errorf("json %s, want %s", j, want)
	}
	x, err := r.Encode(nil, XML, false)
	if err != nil {
		t.Fatal(err)
	}
	if want := xmlHeader + `<response><success>True</success><data><line>7</line><products><resource><code>A</code><n>1</n>` +
		`</resource><resource><code>B&lt;</code><n>2</n></resource></products></data></response>`; string(x) != want {
		t.Errorf("xml %s, want %s", x, want)
	}
	empty := Record(fields, []any{int64(7), Nested{Fields: inner}})
	if j, _ := empty.Encode(nil, JSON, false); !strings.Contains(string(j), `"products":[]`) {
		t.Errorf("empty nested list: %s", j)
	}
	bad := Record(fields, []any{int64(7), Nested{Fields: inner, Rows: [][]any{{"A"}}}})
	if _, err := bad.Encode(nil, JSON, false); err == nil {
		t.Error("a nested row of the wrong width was encoded")
	}
	if _, err := bad.Encode(nil, XML, false); err == nil {
		t.Error("a nested row of the wrong width was encoded as XML")
	}
}
