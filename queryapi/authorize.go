package queryapi

import (
	"context"
	"errors"
	"net/http"
	"net/url"

	"github.com/takt/takt/internal/auth"
	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/l2l"
)

// Messages of failed authorization.
const (
	msgMissingKey = "Missing API key: send it in the L2LAUTH header or the auth argument"
	msgInvalidKey = "Invalid API key"
	msgRealUser   = "realuser: not allowed for this API user, or no such user within its sites"
)

// userFinder finds a live user by name, for realuser (*chstore.Store).
type userFinder interface {
	UserByName(ctx context.Context, username string) (chstore.User, error)
}

// caller is an authorized request's API key and the user it acts for.
type caller struct {
	key auth.Principal
	// actor is the username changes are attributed to: realuser's, else
	// the key's user's.
	actor string
	// sites are the sites the request may see and change: realuser's,
	// else the key's user's.
	sites []uint64
}

// authorize is the one check every request under Prefix passes before its
// area or arguments are looked at: the API key (the L2LAUTH header, else
// the auth argument of args), its scope (admin may do everything), one
// token of the key's rate limit, and realuser. It answers and returns false
// when any step fails.
func (h *handler) authorize(r *request, args url.Values, scope string) (caller, bool) {
	key := r.c.GetHeader(keyHeader)
	if key == "" {
		key = args.Get(authArg)
	}
	if key == "" {
		h.finish(r, http.StatusUnauthorized, "unauthorized", l2l.Failure(msgMissingKey))
		return caller{}, false
	}
	p, err := h.keys.Authenticate(r.c.Request.Context(), key)
	switch {
	case errors.Is(err, auth.ErrInvalidKey):
		h.finish(r, http.StatusUnauthorized, "unauthorized", l2l.Failure(msgInvalidKey))
		return caller{}, false
	case err != nil:
		h.logger.Error("authenticate", "key_prefix", auth.Prefix(key), "err", err)
		h.finish(r, http.StatusInternalServerError, "error", l2l.Failure(msgInternal))
		return caller{}, false
	}
	r.keyID = p.KeyID
	if !p.HasScope(scope) && !p.HasScope(auth.ScopeAdmin) {
		h.finish(r, http.StatusForbidden, "forbidden", l2l.Failure("API key lacks the "+scope+" scope"))
		return caller{}, false
	}
	if !h.allow(r, p) {
		return caller{}, false
	}
	cl := caller{key: p, actor: p.Username, sites: p.Sites}
	name := args.Get("realuser")
	if name == "" || name == p.Username {
		return cl, true
	}
	// Only an admin API user may act for another user, and only for an
	// active one whose sites are all among its own.
	if !p.Admin || h.users == nil {
		h.finish(r, http.StatusForbidden, "forbidden", l2l.Failure(msgRealUser))
		return caller{}, false
	}
	ctx, cancel := context.WithTimeout(r.c.Request.Context(), h.timeout)
	defer cancel()
	u, err := h.users.UserByName(ctx, name)
	switch {
	case errors.Is(err, chstore.ErrNotFound) || err == nil && (!u.Active || !within(u.Sites, p.Sites)):
		h.finish(r, http.StatusForbidden, "forbidden", l2l.Failure(msgRealUser))
		return caller{}, false
	case err != nil && r.write:
		h.writeFailed(r, err)
		return caller{}, false
	case err != nil:
		h.readFailed(r, err)
		return caller{}, false
	}
	cl.actor, cl.sites = u.Username, u.Sites
	return cl, true
}
