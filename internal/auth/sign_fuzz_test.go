package auth

import (
	"errors"
	"net/url"
	"testing"
	"time"
)

// FuzzVerify feeds signed-call arguments to Verify: whatever the client
// sends (_expiration, _signature, values), it must not panic and must
// refuse only with ErrSignature; a call signed over its string to sign
// verifies while unexpired (unless a value holds a line break, see
// TestVerifyRefusesLineBreaks); and its signature is refused for a call
// whose values differ, text moved from one argument to the next included,
// and for another operation or record.
func FuzzVerify(f *testing.F) {
	f.Add("s3cr3t", "hr", "jo", "True", int64(900), "2024-05-01 12:15:00", "")
	f.Add("ключ", "Serveur été", "Jürgen", "False", int64(3600), "2024-05-01 13:00:01", "AAAA")
	f.Add("k", "s", "", "", int64(1), "not a time", "!!!")
	f.Add("k", "s", "a\nb", "c", int64(60), "", "")
	f.Add("", "", "a", "b", int64(-1), "", "p5d+RwhMcV92ElE0YHdZbEs/S5JqBMRkFuQFIsdmZHER/0dbXOdzzLTHQwEckJEUGD5ofw5xNjwPwQeb/EBTqA==")
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	call := Call{Method: MethodUpdate, Area: "users", ID: "7", Fields: []string{"username", "active"}}
	f.Fuzz(func(t *testing.T, secret, server, v1, v2 string, ahead int64, rawExp, rawSig string) {
		verify := func(args url.Values, c Call, secret string) error {
			_, err := Verify(args, c, secret, now)
			if err != nil && !errors.Is(err, ErrSignature) {
				t.Fatalf("error %v is not ErrSignature", err)
			}
			return err
		}
		// Whatever the client sends.
		raw := url.Values{ArgServer: {server}, ArgExpiration: {rawExp}, ArgSignature: {rawSig}, "username": {v1}, "active": {v2}}
		_ = verify(raw, call, secret)

		// A call signed as documented.
		ahead = min(max(ahead, -7200), 7200)
		exp := now.Add(time.Duration(ahead) * time.Second).Format(ExpirationLayout)
		args := func(u, a string) url.Values {
			return url.Values{ArgServer: {server}, ArgExpiration: {exp}, "username": {u}, "active": {a}}
		}
		signed := args(v1, v2)
		sig := Sign(secret, call.Values(signed)...)
		signed.Set(ArgSignature, sig)
		err := verify(signed, call, secret)
		valid := secret != "" && server != "" && ahead > 0 && ahead <= int64(MaxExpirationAhead/time.Second) &&
			!hasLineBreak(server, v1, v2)
		if valid != (err == nil) {
			t.Fatalf("signed call (secret %q, server %q, values %q %q, %d s ahead): %v", secret, server, v1, v2, ahead, err)
		}
		if !valid {
			return
		}
		if verify(signed, call, secret+"x") == nil {
			t.Fatal("accepted with another secret")
		}
		for _, other := range []Call{
			{Method: MethodDelete, Area: call.Area, ID: call.ID, Fields: call.Fields},
			{Method: call.Method, Area: "apikeys", ID: call.ID, Fields: call.Fields},
			{Method: call.Method, Area: call.Area, ID: "8", Fields: call.Fields},
			{Method: MethodCreate, Area: call.Area, Fields: call.Fields},
		} {
			if verify(signed, other, secret) == nil {
				t.Fatalf("signature for %+v accepted for %+v", call, other)
			}
		}
		// The same signature on other values.
		others := [][2]string{{v1 + "x", v2}, {v1, v2 + "x"}, {v2, v1}, {v1 + "\n" + v2, ""}, {"", v1 + "\n" + v2}}
		if len(v2) > 0 {
			others = append(others, [2]string{v1 + v2[:1], v2[1:]})
		}
		if len(v1) > 0 {
			others = append(others, [2]string{v1[:len(v1)-1], v1[len(v1)-1:] + v2})
		}
		for _, o := range others {
			if o == [2]string{v1, v2} {
				continue
			}
			moved := args(o[0], o[1])
			moved.Set(ArgSignature, sig)
			if verify(moved, call, secret) == nil {
				t.Fatalf("signature of (%q, %q) accepted for (%q, %q)", v1, v2, o[0], o[1])
			}
		}
	})
}

func hasLineBreak(values ...string) bool {
	for _, v := range values {
		for _, r := range v {
			if r == '\n' {
				return true
			}
		}
	}
	return false
}
