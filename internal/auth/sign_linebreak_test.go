package auth

import (
	"errors"
	"net/url"
	"testing"
	"time"
)

// TestVerifyRefusesLineBreaks: the values of a signed call are joined by
// "\n", so a line break inside a value moves the boundary between two
// arguments without changing the string to sign: the signature of
// username "jo\nsmith", active "True" also signed username "jo", active
// "smith\nTrue". A call whose signed values hold a line break is refused.
func TestVerifyRefusesLineBreaks(t *testing.T) {
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	const secret = "s3cr3t"
	c := Call{Method: MethodUpdate, Area: "users", ID: "7", Fields: []string{"username", "active"}}
	args := func(username, active string) url.Values {
		return url.Values{ArgServer: {"hr"}, ArgExpiration: {now.Add(time.Minute).Format(ExpirationLayout)},
			"username": {username}, "active": {active}}
	}
	signed := args("jo\nsmith", "True")
	sig := Sign(secret, c.Values(signed)...)
	moved := args("jo", "smith\nTrue")
	if Sign(secret, c.Values(moved)...) != sig {
		t.Fatal("the two calls sign differently; the test shows nothing")
	}
	moved.Set(ArgSignature, sig)
	if _, err := Verify(moved, c, secret, now); !errors.Is(err, ErrSignature) {
		t.Fatalf("a signature made for username %q, active %q verified for username %q, active %q: %v",
			"jo\nsmith", "True", "jo", "smith\nTrue", err)
	}
	signed.Set(ArgSignature, sig)
	if _, err := Verify(signed, c, secret, now); !errors.Is(err, ErrSignature) {
		t.Fatalf("a signed value with a line break verified: %v", err)
	}
	server := args("jo", "True")
	server.Set(ArgServer, "hr\nx")
	server.Set(ArgSignature, Sign(secret, c.Values(server)...))
	if _, err := Verify(server, c, secret, now); !errors.Is(err, ErrSignature) {
		t.Fatalf("a _server with a line break verified: %v", err)
	}
}
