package l2l

import (
	"bytes"
	"encoding/xml"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// xmlRecord is a rendered record as an XML client reads it.
type xmlRecord struct {
	ID string `xml:"id"`
	S  string `xml:"s"`
	N  string `xml:"n"`
	F  string `xml:"f"`
	B  string `xml:"b"`
	At string `xml:"at"`
}

// xmlEnvelope is the XML answer as a client decodes it.
type xmlEnvelope struct {
	XMLName xml.Name `xml:"response"`
	Success string   `xml:"success"`
	Data    struct {
		xmlRecord
		Resources []xmlRecord `xml:"resource"`
	} `xml:"data"`
	Error  string   `xml:"error"`
	Errors []string `xml:"errors>resource"`
	Limit  string   `xml:"limit"`
	Offset string   `xml:"offset"`
}

// xmlReadBack is what an XML client reads for a string s rendered as
// character data: characters XML cannot carry became U+FFFD, and the
// parser turns "\r\n" and a lone "\r" into "\n" (XML 1.0, end-of-line
// handling).
func xmlReadBack(s string) string {
	var b strings.Builder
	for _, r := range s { // an invalid byte is U+FFFD here, as in the renderer
		if !xmlChar(r) {
			r = '\uFFFD'
		}
		b.WriteRune(r)
	}
	return strings.ReplaceAll(strings.ReplaceAll(b.String(), "\r\n", "\n"), "\r", "\n")
}

// FuzzXMLRoundTrip renders records and failures as XML and decodes them
// with encoding/xml: every value must read back as it was (strings as
// xmlReadBack says, numbers exactly, times to the millisecond), a list's
// records in order, and a failure's messages; a value the format cannot
// carry (NaN, ±Inf) must be refused with an error, never rendered.
func FuzzXMLRoundTrip(f *testing.F) {
	f.Add("Sandbox", int64(3), 45.0, true, int64(1462487987123), "bad limit")
	f.Add("a<b>&c\"d'e", int64(-1), -0.5, false, int64(0), "<error>")
	f.Add("\x00\x01\r\n\r\t\uFFFE\xff", int64(math.MaxInt64), 1e308, true, int64(253402300799999), "\r")
	f.Add("]]><![CDATA[x", int64(math.MinInt64), math.NaN(), false, int64(-1), "]]>")
	f.Add("€𝄞\u2028", int64(0), math.Inf(1), true, int64(1), "")
	fields := []Field{{Name: "id", Type: Int}, {Name: "s", Type: String}, {Name: "n", Type: String, Nullable: true},
		{Name: "f", Type: Float}, {Name: "b", Type: Bool}, {Name: "at", Type: DateTime}}
	f.Fuzz(func(t *testing.T, s string, n int64, x float64, b bool, ms int64, msg string) {
		// Times a DateTime field can hold: year 1 to 9999.
		ms = min(max(ms, time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()), 253402300799999)
		at := time.UnixMilli(ms).UTC()
		row := []any{n, s, nil, x, b, at}
		finite := !math.IsNaN(x) && !math.IsInf(x, 0)
		for _, r := range []Response{Record(fields, row), List(fields, [][]any{row, row}, 7, 11)} {
			out, err := r.AppendXML(nil, false)
			if !finite {
				if err == nil {
					t.Fatalf("float %v rendered: %s", x, out)
				}
				continue
			}
			if err != nil {
				t.Fatalf("render %q: %v", s, err)
			}
			var env xmlEnvelope
			if err := xml.NewDecoder(bytes.NewReader(out)).Decode(&env); err != nil {
				t.Fatalf("decode: %v\n%s", err, out)
			}
			recs := []xmlRecord{env.Data.xmlRecord}
			if !r.Single {
				recs = env.Data.Resources
				if len(recs) != 2 || env.Limit != "7" || env.Offset != "11" {
					t.Fatalf("list: %d records, limit %q, offset %q\n%s", len(recs), env.Limit, env.Offset, out)
				}
			}
			for _, rec := range recs {
				checkXMLRecord(t, rec, n, s, x, b, at, out)
			}
			if env.Success != "True" {
				t.Fatalf("success %q", env.Success)
			}
		}

		fail := Invalid(&QueryError{Problems: []string{msg, s}})
		out, err := fail.AppendXML(nil, false)
		if err != nil {
			t.Fatal(err)
		}
		var env xmlEnvelope
		if err := xml.NewDecoder(bytes.NewReader(out)).Decode(&env); err != nil {
			t.Fatalf("decode failure: %v\n%s", err, out)
		}
		if env.Success != "False" || env.Error != xmlReadBack(msg+"; "+s) || len(env.Errors) != 2 ||
			env.Errors[0] != xmlReadBack(msg) || env.Errors[1] != xmlReadBack(s) {
			t.Fatalf("failure read back as %+v\n%s", env, out)
		}
	})
}

func checkXMLRecord(t *testing.T, rec xmlRecord, n int64, s string, x float64, b bool, at time.Time, doc []byte) {
	t.Helper()
	if rec.ID != strconv.FormatInt(n, 10) {
		t.Fatalf("id %q, want %d\n%s", rec.ID, n, doc)
	}
	if want := xmlReadBack(s); rec.S != want {
		t.Fatalf("string read back %q, want %q\n%s", rec.S, want, doc)
	}
	if !utf8.ValidString(rec.S) {
		t.Fatalf("string read back is not UTF-8: %q", rec.S)
	}
	if rec.N != "None" {
		t.Fatalf("null read back %q", rec.N)
	}
	if got, err := strconv.ParseFloat(rec.F, 64); err != nil || got != x || !strings.Contains(rec.F, ".") {
		t.Fatalf("float read back %q (%v), want %v written with a point", rec.F, err, x)
	}
	if want := map[bool]string{true: "True", false: "False"}[b]; rec.B != want {
		t.Fatalf("bool read back %q, want %q", rec.B, want)
	}
	got, err := time.Parse("2006-01-02 15:04:05.000", rec.At)
	if err != nil || !got.Equal(at) {
		t.Fatalf("datetime read back %q (%v), want %s", rec.At, err, at)
	}
}
