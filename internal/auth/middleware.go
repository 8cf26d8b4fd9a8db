package auth

import (
	"errors"
	"fmt"

	"github.com/gin-gonic/gin"
)

// ErrScope means the key is valid but lacks the scope the route needs.
// It wraps ErrInvalidKey: services that answer both alike need one check.
var ErrScope = fmt.Errorf("%w: missing scope", ErrInvalidKey)

// KeyFunc extracts the presented key from a request ("" when none).
type KeyFunc func(c *gin.Context) string

// HeaderKey reads the key from a request header, e.g. "API-KEY".
func HeaderKey(name string) KeyFunc {
	return func(c *gin.Context) string { return c.GetHeader(name) }
}

const principalKey = "takt.auth.principal"

// Middleware authenticates each request with the key that key extracts and
// requires scope (none when scope is ""). On success the principal is
// available to later handlers through PrincipalFrom. On failure it calls
// fail with ErrInvalidKey, ErrScope or a look-up error (which is not an
// authentication failure: answer it with 500), and aborts the chain.
func (a *Authenticator) Middleware(key KeyFunc, scope string, fail func(c *gin.Context, err error)) gin.HandlerFunc {
	return func(c *gin.Context) {
		p, err := a.Authenticate(c.Request.Context(), key(c))
		if err == nil && scope != "" && !p.HasScope(scope) {
			err = ErrScope
		}
		if err != nil {
			fail(c, err)
			c.Abort()
			return
		}
		c.Set(principalKey, p)
		c.Next()
	}
}

// PrincipalFrom returns the principal Middleware stored in c.
func PrincipalFrom(c *gin.Context) (Principal, bool) {
	v, ok := c.Get(principalKey)
	if !ok {
		return Principal{}, false
	}
	p, ok := v.(Principal)
	return p, ok
}

// IsInvalid reports whether err means "answer 401" (an invalid key or a
// missing scope) rather than a failure to check.
func IsInvalid(err error) bool { return errors.Is(err, ErrInvalidKey) }
