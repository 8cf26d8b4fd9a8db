package auth

// Signed calls, as the Leading2Lean reference describes them: the caller
// joins the values of an ordered list of arguments with "\n" (always
// starting with _server and _expiration), computes HMAC-SHA512 over the
// UTF-8 bytes with the secret key named by _server, and sends the base64 of
// the digest as _signature.

import (
	"crypto/hmac"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Arguments of a signed call.
const (
	ArgServer     = "_server"
	ArgExpiration = "_expiration"
	ArgSignature  = "_signature"
)

// ExpirationLayout is the format of _expiration, in UTC.
const ExpirationLayout = "2006-01-02 15:04:05"

// MaxExpirationAhead is how far in the future an _expiration may lie: a
// signature is not a long-lived credential.
const MaxExpirationAhead = time.Hour

// ErrSignature is matched (errors.Is) by every rejection of a signed call.
var ErrSignature = errors.New("invalid signature")

// Sign returns base64(HMAC-SHA512(secret, values joined by "\n")).
func Sign(secret string, values ...string) string {
	m := hmac.New(sha512.New, []byte(secret))
	m.Write([]byte(strings.Join(values, "\n")))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// CheckSignature verifies a signed call: args returns an argument's value
// ("" when absent), order lists the arguments signed after _server and
// _expiration, secret is the secret key of args(_server) (the caller looks
// it up; "" when the server is unknown). The signature is compared in
// constant time.
func CheckSignature(args func(string) string, order []string, secret string, now time.Time) error {
	server, exp, sig := args(ArgServer), args(ArgExpiration), args(ArgSignature)
	switch {
	case server == "" || exp == "" || sig == "":
		return fmt.Errorf("%w: this call must be signed with _server, _expiration and _signature", ErrSignature)
	case secret == "":
		return fmt.Errorf("%w: unknown _server %q", ErrSignature, server)
	}
	at, err := time.ParseInLocation(ExpirationLayout, exp, time.UTC)
	switch {
	case err != nil:
		return fmt.Errorf("%w: _expiration %q is not YYYY-MM-DD HH:MM:SS (UTC)", ErrSignature, exp)
	case !now.Before(at):
		return fmt.Errorf("%w: expired at %s UTC", ErrSignature, exp)
	case at.Sub(now) > MaxExpirationAhead:
		return fmt.Errorf("%w: _expiration %s is more than %s ahead", ErrSignature, exp, MaxExpirationAhead)
	}
	got, err := base64.StdEncoding.DecodeString(sig)
	if err != nil {
		return fmt.Errorf("%w: _signature is not base64", ErrSignature)
	}
	values := make([]string, 0, len(order)+2)
	values = append(values, server, exp)
	for _, name := range order {
		values = append(values, args(name))
	}
	m := hmac.New(sha512.New, []byte(secret))
	m.Write([]byte(strings.Join(values, "\n")))
	if !hmac.Equal(got, m.Sum(nil)) {
		return fmt.Errorf("%w: the signature does not match the arguments", ErrSignature)
	}
	return nil
}
