package queryapi

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzWriteArgs feeds raw bodies of writes (form or JSON, any content
// type) to writeArgs. Whatever the bytes, it must not panic, must answer
// an error or arguments, never both, and every argument must keep all its
// values, the query's first, then the body's (a repeated argument is
// refused later, so none may be lost here).
func FuzzWriteArgs(f *testing.F) {
	for _, seed := range []struct{ query, ct, body string }{
		{"auth=k", "application/x-www-form-urlencoded", "code=P1&description=Part+one&ideal_cycle_time=30"},
		{"", "application/json", `{"code":"P1","ideal_cycle_time":30.5,"fallback":true,"line":null,"sites":[1,2]}`},
		{"code=Q", "", `{"code":"P1"}`},
		{"", "", "a=1&a=2&%zz=3"},
		{"", "application/json", `{"a":{"b":1}}`},
		{"", "application/json", `{"a":[[1]]}`},
		{"", "application/json", `[1,2]`},
		{"", "text/plain", "x"},
		{"", "application/json; charset=utf-8", "{\"\\u0000\":\"\\ud800\"}"},
		{"", "multipart/form-data; boundary=x", "--x--"},
	} {
		f.Add(seed.query, seed.ct, []byte(seed.body))
	}
	f.Fuzz(func(t *testing.T, query, ct string, body []byte) {
		r := httptest.NewRequest("POST", "/api/1.0/products/", bytes.NewReader(body))
		r.URL.RawQuery = query
		if ct != "" {
			r.Header.Set("Content-Type", ct)
		}
		args, err := writeArgs(r)
		if err != nil {
			if args != nil {
				t.Fatalf("error %v with arguments %v", err, args)
			}
			return
		}
		// What the body alone gives, parsed the way writeArgs chose.
		r2 := httptest.NewRequest("POST", "/", bytes.NewReader(body))
		if ct != "" {
			r2.Header.Set("Content-Type", ct)
		}
		fromBody, err := writeArgs(r2)
		if err != nil {
			t.Fatalf("the body parsed with the query (%v) and fails without it: %v", args, err)
		}
		q, _ := url.ParseQuery(query)
		keys := map[string]bool{}
		for k := range q {
			keys[k] = true
		}
		for k := range fromBody {
			keys[k] = true
		}
		if len(args) != len(keys) {
			t.Fatalf("%d arguments, want %d (query %v, body %v)", len(args), len(keys), q, fromBody)
		}
		for k := range keys {
			if want := append(append([]string(nil), q[k]...), fromBody[k]...); !reflect.DeepEqual(args[k], want) {
				t.Fatalf("argument %q: %q, want the query's then the body's values %q", k, args[k], want)
			}
		}
	})
}

// FuzzWriteArgsRoundTrip: arguments a client encodes as a form or as a
// JSON object of strings reach the write unchanged.
func FuzzWriteArgsRoundTrip(f *testing.F) {
	f.Add("code", "P1", "description", "a & b = c")
	f.Add("custom__paint", "", "sites", "1,2")
	f.Add("a", "\x00\r\n%", "b", "€𝄞+")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		valid := utf8.ValidString(k1) && utf8.ValidString(v1) && utf8.ValidString(k2) && utf8.ValidString(v2)
		if k1 == "" || k2 == "" || k1 == k2 || !valid {
			return // JSON object keys are distinct UTF-8; a form drops empty keys
		}
		want := url.Values{k1: {v1}, k2: {v2}}
		form := want.Encode()
		js, err := json.Marshal(map[string]string{k1: v1, k2: v2})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct{ ct, body string }{
			{"application/x-www-form-urlencoded", form},
			{"application/json", string(js)},
		} {
			r := httptest.NewRequest("POST", "/api/1.0/products/", strings.NewReader(c.body))
			r.Header.Set("Content-Type", c.ct)
			got, err := writeArgs(r)
			if err != nil || !reflect.DeepEqual(got, want) {
				t.Fatalf("%s body %q: got %q, %v; want %q", c.ct, c.body, got, err, want)
			}
		}
	})
}
