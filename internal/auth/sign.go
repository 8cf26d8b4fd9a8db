package auth

// Signed calls, as the Leading2Lean reference describes them: the caller
// joins an ordered list of values with "\n" (always starting with _server
// and _expiration), computes HMAC-SHA512 over the UTF-8 bytes with the
// secret key named by _server, and sends the base64 of the digest as
// _signature.
//
// The reference leaves the list to each call. Takt's list binds the
// signature to the one call it was made for: after _server and
// _expiration come the operation (POST create, PUT update, DELETE
// delete), the record area and the record's id (not for a create), then
// the values of the call's signed fields in the area's order (none for a
// delete). A signature for a create is then no signature for an update,
// nor one for record 5 a signature for record 6, nor one for users a
// signature for apikeys.

import (
	"crypto/hmac"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"slices"
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

// Methods a signed call is bound to: the operation, however the request
// was sent (a POST with an id updates and signs PUT; a POST with
// _action=delete deletes and signs DELETE).
const (
	MethodCreate = "POST"
	MethodUpdate = "PUT"
	MethodDelete = "DELETE"
)

// Call is what a signed call is bound to.
type Call struct {
	// Method is MethodCreate, MethodUpdate or MethodDelete.
	Method string
	// Area is the record area's name, e.g. "apikeys".
	Area string
	// ID is the record's id in decimal; "" for a create, and then it is
	// not part of the string to sign.
	ID string
	// Fields are the names of the arguments signed after the binding, in
	// order (none for a delete).
	Fields []string
}

// Values returns what a call signs, in order: _server, _expiration,
// c.Method, c.Area, c.ID (unless empty), then the value of each of
// c.Fields in args ("" for one not sent).
func (c Call) Values(args url.Values) []string {
	out := make([]string, 0, len(c.Fields)+5)
	out = append(out, args.Get(ArgServer), args.Get(ArgExpiration), c.Method, c.Area)
	if c.ID != "" {
		out = append(out, c.ID)
	}
	for _, name := range c.Fields {
		out = append(out, args.Get(name))
	}
	return out
}

// StringToSign returns what the HMAC of a call is computed over: its
// Values joined by "\n".
func (c Call) StringToSign(args url.Values) string { return strings.Join(c.Values(args), "\n") }

// Signature is a verified signature: the digest the call carried and when
// it expires.
type Signature struct {
	Digest  []byte
	Expires time.Time
}

// Repeated returns the arguments of args given more than once, sorted.
func Repeated(args url.Values) []string {
	var out []string
	for k, v := range args {
		if len(v) > 1 {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// Verify checks a signed call c with arguments args: every argument is
// given once (so the values the call applies are the values verified),
// _server, _expiration and _signature are there, _expiration lies ahead
// of now by at most MaxExpirationAhead, and _signature is the canonical
// base64 of the HMAC-SHA512 of c's string to sign under secret, the secret
// key of args' _server (the caller looks it up; "" when the server is
// unknown). The digest is compared in constant time. Each rejection
// matches ErrSignature and says why.
//
// A verified signature is still to be spent once (UsedSignatures).
func Verify(args url.Values, c Call, secret string, now time.Time) (Signature, error) {
	if rep := Repeated(args); len(rep) > 0 {
		return Signature{}, fmt.Errorf("%w: argument %q is given %d times; a signed call gives each argument once",
			ErrSignature, rep[0], len(args[rep[0]]))
	}
	// Values are joined by "\n": one holding a line break would move the
	// boundary between two arguments without changing the string to sign
	// (username "jo\nsmith", active "True" signs like username "jo",
	// active "smith\nTrue").
	for _, name := range append([]string{ArgServer, ArgExpiration}, c.Fields...) {
		if strings.Contains(args.Get(name), "\n") {
			return Signature{}, fmt.Errorf("%w: argument %q holds a line break; signed values cannot", ErrSignature, name)
		}
	}
	server, exp, sig := args.Get(ArgServer), args.Get(ArgExpiration), args.Get(ArgSignature)
	switch {
	case server == "" || exp == "" || sig == "":
		return Signature{}, fmt.Errorf("%w: this call must be signed with _server, _expiration and _signature", ErrSignature)
	case secret == "":
		return Signature{}, fmt.Errorf("%w: unknown _server %q", ErrSignature, server)
	}
	at, err := time.ParseInLocation(ExpirationLayout, exp, time.UTC)
	switch {
	case err != nil:
		return Signature{}, fmt.Errorf("%w: _expiration %q is not YYYY-MM-DD HH:MM:SS (UTC)", ErrSignature, exp)
	case !now.Before(at):
		return Signature{}, fmt.Errorf("%w: expired at %s UTC", ErrSignature, exp)
	case at.Sub(now) > MaxExpirationAhead:
		return Signature{}, fmt.Errorf("%w: _expiration %s is more than %s ahead", ErrSignature, exp, MaxExpirationAhead)
	}
	// Strict: one spelling per digest, so a used signature cannot come
	// back with different padding bits.
	got, err := base64.StdEncoding.Strict().DecodeString(sig)
	if err != nil {
		return Signature{}, fmt.Errorf("%w: _signature is not base64", ErrSignature)
	}
	m := hmac.New(sha512.New, []byte(secret))
	m.Write([]byte(c.StringToSign(args)))
	if !hmac.Equal(got, m.Sum(nil)) {
		return Signature{}, fmt.Errorf("%w: the signature does not match the call (%s %s%s) and its arguments %s",
			ErrSignature, c.Method, c.Area, idSuffix(c.ID), signedList(c))
	}
	return Signature{Digest: got, Expires: at}, nil
}

func idSuffix(id string) string {
	if id == "" {
		return ""
	}
	return " " + id
}

// signedList names what c signs, for messages.
func signedList(c Call) string {
	names := []string{ArgServer, ArgExpiration, "method", "area"}
	if c.ID != "" {
		names = append(names, "id")
	}
	return strings.Join(append(names, c.Fields...), ", ")
}
