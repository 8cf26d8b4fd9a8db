package auth

import (
	"encoding/json"
	"errors"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"
)

// TestSignVectors checks Sign against signatures computed outside Go
// (python3 hmac/hashlib/base64 when the file was written).
func TestSignVectors(t *testing.T) {
	b, err := os.ReadFile("testdata/signatures.json")
	if err != nil {
		t.Fatal(err)
	}
	var vecs []struct {
		Secret    string   `json:"secret"`
		Values    []string `json:"values"`
		Signature string   `json:"signature"`
	}
	if err := json.Unmarshal(b, &vecs); err != nil || len(vecs) == 0 {
		t.Fatalf("vectors: %v", err)
	}
	for _, v := range vecs {
		if got := Sign(v.Secret, v.Values...); got != v.Signature {
			t.Errorf("Sign(%q, %q) = %s, want %s", v.Secret, v.Values, got, v.Signature)
		}
	}
}

// callVector is a signed call whose string to sign and signature were
// computed outside Go (testdata/calls.json, python3).
type callVector struct {
	Name       string      `json:"name"`
	Secret     string      `json:"secret"`
	Server     string      `json:"server"`
	Expiration string      `json:"expiration"`
	Method     string      `json:"method"`
	Area       string      `json:"area"`
	ID         string      `json:"id"`
	Fields     [][]*string `json:"fields"` // [name, value or null (not sent)]
	Extra      [][]string  `json:"extra"`  // unsigned arguments
	String     string      `json:"string_to_sign"`
	Signature  string      `json:"signature"`
}

// Call returns the vector's call and the arguments a client sends.
func (v callVector) Call() (Call, url.Values) {
	c := Call{Method: v.Method, Area: v.Area, ID: v.ID}
	args := url.Values{ArgServer: {v.Server}, ArgExpiration: {v.Expiration}, ArgSignature: {v.Signature}}
	for _, f := range v.Fields {
		c.Fields = append(c.Fields, *f[0])
		if f[1] != nil {
			args.Set(*f[0], *f[1])
		}
	}
	for _, e := range v.Extra {
		args.Set(e[0], e[1])
	}
	return c, args
}

// readCallVectors reads testdata/calls.json.
func readCallVectors(t testing.TB, path string) []callVector {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var vecs []callVector
	if err := json.Unmarshal(b, &vecs); err != nil || len(vecs) == 0 {
		t.Fatalf("%s: %v", path, err)
	}
	return vecs
}

// TestCallVectors: the string to sign and the signature of whole calls are
// those computed outside Go, and Verify accepts each call as a client
// sends it (unsigned arguments such as site or auth besides).
func TestCallVectors(t *testing.T) {
	for _, v := range readCallVectors(t, "testdata/calls.json") {
		c, args := v.Call()
		if got := c.StringToSign(args); got != v.String {
			t.Errorf("%s: string to sign %q, want %q", v.Name, got, v.String)
		}
		if got := Sign(v.Secret, c.Values(args)...); got != v.Signature {
			t.Errorf("%s: signature %s, want %s", v.Name, got, v.Signature)
		}
		exp, _ := time.Parse(ExpirationLayout, v.Expiration)
		if _, err := Verify(args, c, v.Secret, exp.Add(-time.Minute)); err != nil {
			t.Errorf("%s: %v", v.Name, err)
		}
	}
}

// TestREADMEExample: the README's worked example is the first call vector,
// byte for byte.
func TestREADMEExample(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	v := readCallVectors(t, "testdata/calls.json")[0]
	for _, want := range []string{v.Signature, strings.ReplaceAll(v.String, "\n", `\n`), v.Secret, v.Expiration} {
		if !strings.Contains(readme, want) {
			t.Errorf("README.md lacks %q of the worked example", want)
		}
	}
}

func TestVerify(t *testing.T) {
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	const secret = "s3cr3t"
	call := Call{Method: MethodUpdate, Area: "users", ID: "7", Fields: []string{"username", "active"}}
	signed := func(exp time.Time, mutate func(url.Values)) url.Values {
		args := url.Values{ArgServer: {"hr"}, ArgExpiration: {exp.Format(ExpirationLayout)}, "username": {"jo"}, "active": {"True"}}
		args.Set(ArgSignature, Sign(secret, "hr", args.Get(ArgExpiration), "PUT", "users", "7", "jo", "True"))
		if mutate != nil {
			mutate(args)
		}
		return args
	}
	later := now.Add(time.Minute)
	tests := []struct {
		name   string
		args   url.Values
		call   Call
		secret string
		ok     bool
		says   string
	}{
		{"valid", signed(now.Add(15*time.Minute), nil), call, secret, true, ""},
		{"an unsigned argument besides", signed(later, func(a url.Values) { a.Set("site", "1") }), call, secret, true, ""},
		{"expired", signed(now.Add(-time.Second), nil), call, secret, false, "expired"},
		{"expires now", signed(now, nil), call, secret, false, "expired"},
		{"too far ahead", signed(now.Add(time.Hour+time.Second), nil), call, secret, false, "ahead"},
		{"an hour ahead", signed(now.Add(time.Hour), nil), call, secret, true, ""},
		{"unknown server", signed(later, nil), call, "", false, "unknown _server"},
		{"wrong secret", signed(later, nil), call, "other", false, "does not match"},
		{"field changed", signed(later, func(a url.Values) { a.Set("active", "False") }), call, secret, false, "does not match"},
		{"field repeated", signed(later, func(a url.Values) { a.Add("active", "False") }), call, secret, false, `"active" is given 2 times`},
		{"unsigned argument repeated", signed(later, func(a url.Values) { a["site"] = []string{"1", "1"} }), call, secret, false, "given 2 times"},
		{"signature repeated", signed(later, func(a url.Values) { a.Add(ArgSignature, a.Get(ArgSignature)) }), call, secret, false, "given 2 times"},
		{"server changed", signed(later, func(a url.Values) { a.Set(ArgServer, "hr2") }), call, secret, false, "does not match"},
		{"expiration changed", signed(later, func(a url.Values) {
			a.Set(ArgExpiration, now.Add(2*time.Minute).Format(ExpirationLayout))
		}), call, secret, false, "does not match"},
		{"other method", signed(later, nil), Call{Method: MethodCreate, Area: "users", Fields: call.Fields}, secret, false, "does not match"},
		{"other id", signed(later, nil), Call{Method: MethodUpdate, Area: "users", ID: "8", Fields: call.Fields}, secret, false, "does not match"},
		{"other area", signed(later, nil), Call{Method: MethodUpdate, Area: "apikeys", ID: "7", Fields: call.Fields}, secret, false, "does not match"},
		{"more fields", signed(later, nil), Call{Method: MethodUpdate, Area: "users", ID: "7", Fields: []string{"username", "active", "admin"}},
			secret, false, "does not match"},
		{"bad expiration", signed(later, func(a url.Values) { a.Set(ArgExpiration, "2024-05-01T12:01:00Z") }), call, secret, false, "YYYY"},
		{"not base64", signed(later, func(a url.Values) { a.Set(ArgSignature, "%%%") }), call, secret, false, "base64"},
		{"not canonical base64", signed(later, func(a url.Values) {
			s := []byte(a.Get(ArgSignature))
			s[len(s)-3] ^= 1 // the last character before "==" carries 4 unused bits
			a.Set(ArgSignature, string(s))
		}), call, secret, false, "base64"},
		{"missing signature", signed(later, func(a url.Values) { a.Del(ArgSignature) }), call, secret, false, "must be signed"},
	}
	for _, tt := range tests {
		sig, err := Verify(tt.args, tt.call, tt.secret, now)
		if (err == nil) != tt.ok || (err != nil && (!errors.Is(err, ErrSignature) || !strings.Contains(err.Error(), tt.says))) {
			t.Errorf("%s: err %v, want ok=%v (%q)", tt.name, err, tt.ok, tt.says)
		}
		if err == nil && (len(sig.Digest) != 64 || !sig.Expires.After(now)) {
			t.Errorf("%s: signature %+v", tt.name, sig)
		}
	}
}
