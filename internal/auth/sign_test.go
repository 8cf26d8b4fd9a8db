package auth

import (
	"encoding/json"
	"errors"
	"os"
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

func TestCheckSignature(t *testing.T) {
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	const secret = "s3cr3t"
	order := []string{"username", "active"}
	signed := func(exp time.Time, mutate func(map[string]string)) map[string]string {
		args := map[string]string{ArgServer: "hr", ArgExpiration: exp.Format(ExpirationLayout), "username": "jo", "active": "True"}
		args[ArgSignature] = Sign(secret, args[ArgServer], args[ArgExpiration], args["username"], args["active"])
		if mutate != nil {
			mutate(args)
		}
		return args
	}
	tests := []struct {
		name   string
		args   map[string]string
		secret string
		ok     bool
	}{
		{"valid", signed(now.Add(15*time.Minute), nil), secret, true},
		{"expired", signed(now.Add(-time.Second), nil), secret, false},
		{"expires now", signed(now, nil), secret, false},
		{"too far ahead", signed(now.Add(time.Hour+time.Second), nil), secret, false},
		{"an hour ahead", signed(now.Add(time.Hour), nil), secret, true},
		{"unknown server", signed(now.Add(time.Minute), nil), "", false},
		{"wrong secret", signed(now.Add(time.Minute), nil), "other", false},
		{"field changed", signed(now.Add(time.Minute), func(a map[string]string) { a["active"] = "False" }), secret, false},
		{"server changed", signed(now.Add(time.Minute), func(a map[string]string) { a[ArgServer] = "hr2" }), secret, false},
		{"expiration changed", signed(now.Add(time.Minute), func(a map[string]string) {
			a[ArgExpiration] = now.Add(2 * time.Minute).Format(ExpirationLayout)
		}), secret, false},
		{"bad expiration", signed(now.Add(time.Minute), func(a map[string]string) { a[ArgExpiration] = "2024-05-01T12:01:00Z" }), secret, false},
		{"not base64", signed(now.Add(time.Minute), func(a map[string]string) { a[ArgSignature] = "%%%" }), secret, false},
		{"missing signature", signed(now.Add(time.Minute), func(a map[string]string) { delete(a, ArgSignature) }), secret, false},
	}
	for _, tt := range tests {
		err := CheckSignature(func(k string) string { return tt.args[k] }, order, tt.secret, now)
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrSignature)) {
			t.Errorf("%s: err %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}
