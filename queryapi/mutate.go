package queryapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/takt/takt/internal/auth"
	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/l2l"
	"github.com/takt/takt/internal/record"
)

// msgReadOnly answers writes to areas that take none; msgWrittenByActions
// writes to areas whose records only their actions write.
const (
	msgReadOnly         = "%s is read-only"
	msgWrittenByActions = "%s: records are written by the actions %s only"
)

// mutate serves POST, PUT and DELETE on /api/1.0/<area>/[<id>/].
func (h *handler) mutate(c *gin.Context) {
	if ra, ac, ok := h.actionOf(c); ok {
		h.serveAction(c, ra, ac, "")
		return
	}
	r := &request{c: c, start: time.Now(), label: "unknown", write: true, format: l2l.FormatOf(c.Request.URL.Query())}
	name := c.Param("area")
	ra, known := h.areas[name]
	if known {
		r.label = name
	}
	args, err := writeArgs(c.Request)
	if err != nil {
		h.finish(r, http.StatusBadRequest, "invalid", l2l.Failure(err.Error()))
		return
	}
	r.format = l2l.FormatOf(args)
	scope := auth.ScopeWrite
	if known && ra.def.Scope != "" {
		scope = ra.def.Scope
	}
	cl, ok := h.authorize(r, args, scope)
	if !ok {
		return
	}
	switch {
	case !known:
		h.finish(r, http.StatusNotFound, "not_found", l2l.Failure(fmt.Sprintf("Unknown record area %q", name)))
		return
	case h.writes == nil || ra.def.Writes == record.ReadOnly || ra.def.Writes == record.WriteAssign && h.assigner == nil:
		h.finish(r, http.StatusMethodNotAllowed, "read_only", l2l.Failure(fmt.Sprintf(msgReadOnly, name)))
		return
	case ra.def.Writes == record.WriteActions:
		h.finish(r, http.StatusMethodNotAllowed, "read_only", l2l.Failure(fmt.Sprintf(msgWrittenByActions, name, actionNames(h.store.Areas(), ra.def))))
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), h.timeout)
	defer cancel()
	sites := cl.sites
	ch := &change{area: ra.def, actor: cl.actor, sites: sites}
	idText := c.Param("id")
	if idText == "" {
		idText = args.Get("id")
	}
	ch.delete = c.Request.Method == http.MethodDelete || args.Get("_action") == "delete"
	if a := args.Get("_action"); a != "" && a != "delete" {
		h.finish(r, http.StatusOK, "invalid", l2l.Invalid(&l2l.QueryError{Problems: []string{fmt.Sprintf("_action %q: only delete is known", a)}}))
		return
	}
	assign := ra.def.Writes == record.WriteAssign
	if assign && (ch.delete || idText == "" && c.Request.Method != http.MethodPut) {
		h.finish(r, http.StatusMethodNotAllowed, "read_only", l2l.Failure(msgPeriodWrites))
		return
	}
	notFound := l2l.Failure(fmt.Sprintf("No %s record with id %s", name, idText))
	signed := len(ra.def.SignedFields()) > 0
	if rep := auth.Repeated(args); len(rep) > 0 && !signed {
		// Which value would count is anybody's guess; a signed call is
		// refused alike, as a bad signature (checkSigned).
		var problems []string
		for _, k := range rep {
			problems = append(problems, fmt.Sprintf("argument %q is given %d times; give it once", k, len(args[k])))
		}
		h.finish(r, http.StatusOK, "invalid", l2l.Invalid(&l2l.QueryError{Problems: problems}))
		return
	}
	if p, a := c.Param("id"), args.Get("id"); p != "" && a != "" && a != p {
		h.finish(r, http.StatusOK, "invalid", l2l.Invalid(&l2l.QueryError{Problems: []string{
			fmt.Sprintf("id: the path names record %s, the arguments %s", p, a)}}))
		return
	}
	if idText == "" {
		if ch.delete || c.Request.Method == http.MethodPut {
			h.finish(r, http.StatusOK, "invalid", l2l.Invalid(&l2l.QueryError{Problems: []string{"id: required"}}))
			return
		}
		ch.create = true
	} else {
		id, err := strconv.ParseUint(idText, 10, 64)
		if err != nil {
			h.finish(r, http.StatusNotFound, "not_found", notFound)
			return
		}
		ch.id = id
	}
	args, siteProblems := siteArgument(ra.def, args, sites, ch.create)
	if len(siteProblems) > 0 {
		h.finish(r, http.StatusOK, "invalid", l2l.Invalid(&l2l.QueryError{Problems: siteProblems}))
		return
	}
	if assign {
		h.assign(ctx, r, cl.key, ra, ch, args, notFound)
		return
	}

	if signed {
		call := auth.Call{Method: auth.MethodUpdate, Area: name, ID: strconv.FormatUint(ch.id, 10), Fields: ra.def.SignedFields()}
		switch {
		case ch.create:
			call.Method, call.ID = auth.MethodCreate, ""
		case ch.delete:
			call.Method, call.Fields = auth.MethodDelete, nil
		}
		err := h.checkSigned(ctx, cl.key, args, call)
		switch {
		case errors.Is(err, auth.ErrSignature):
			h.finish(r, http.StatusForbidden, "forbidden", l2l.Failure(err.Error()))
			return
		case errors.Is(err, auth.ErrUnavailable):
			h.logger.Warn("signed call refused", "area", name, "err", err)
			h.finish(r, http.StatusServiceUnavailable, "unavailable", l2l.Failure(msgSignedUnavailable))
			return
		case err != nil:
			h.writeFailed(r, err)
			return
		}
	}

	err = h.writes.prepare(ctx, ch, args)
	if errors.Is(err, errNotFound) {
		h.finish(r, http.StatusNotFound, "not_found", notFound)
		return
	}
	if err != nil {
		h.writeFailed(r, err)
		return
	}
	if len(ch.problem) > 0 {
		h.finish(r, http.StatusOK, "invalid", l2l.Invalid(&l2l.QueryError{Problems: ch.problem}))
		return
	}
	var before chstore.RecordPage
	q, _ := l2l.Parse(url.Values{}, ra.schema)
	if ch.delete {
		if before, err = h.store.RecordByID(ctx, ra.rec, ch.id, q, sites); err != nil {
			h.writeFailed(r, err)
			return
		}
	}
	if err := h.writes.apply(ctx, ch); err != nil {
		h.writeFailed(r, err)
		return
	}
	if ra.def.OnCreate == record.GrantSite && ch.create {
		// The new site joins the acting users' sites, or nobody could see it.
		if err := h.writes.grantSite(ctx, cl.key, cl.actor, ch.id); err != nil {
			h.writeFailed(r, err)
			return
		}
		sites = append(slices.Clone(sites), ch.id)
	}
	page := before
	if !ch.delete {
		if page, err = h.store.RecordByID(ctx, ra.rec, ch.id, q, sites); err != nil {
			h.writeFailed(r, err)
			return
		}
	}
	h.localize(ctx, page)
	fields, row := page.Fields, page.Rows[0]
	if ch.key != "" {
		fields = append(slices.Clone(fields), l2l.Field{Name: "key", Type: l2l.String})
		row = append(slices.Clone(row), ch.key)
	}
	outcome := "updated"
	switch {
	case ch.create:
		outcome = "created"
	case ch.delete:
		outcome = "deleted"
	}
	h.logger.Info("record written", "area", name, "id", ch.id, "outcome", outcome, "by", cl.actor, "key_prefix", cl.key.Prefix)
	h.finish(r, http.StatusOK, outcome, l2l.Record(fields, row))
}

// msgSignedUnavailable answers a signed call that could not be checked
// for reuse.
const msgSignedUnavailable = "Signed calls are unavailable right now (the record of used signatures cannot be reached); retry later with a new signature"

// msgWriteUnavailable answers a write that needs Redis while it cannot be
// reached (a new record's id, a unique value).
const msgWriteUnavailable = "The write cannot be done right now (Redis, which hands out record ids and keeps values unique, cannot be reached); nothing was changed, retry later"

// checkSigned verifies the signature of call, a write that needs one, and
// spends it: a signature is accepted once. The secret must belong to the
// API key's user. args are the call's only arguments: what was verified
// is what the write applies.
func (h *handler) checkSigned(ctx context.Context, p auth.Principal, args url.Values, call auth.Call) error {
	secret := ""
	k, err := h.writes.store.SecretByServer(ctx, args.Get(auth.ArgServer))
	switch {
	case err == nil && k.User == p.UserID:
		secret = k.Secret
	case err != nil && !errors.Is(err, chstore.ErrNotFound):
		return err
	}
	now := h.writes.now().UTC()
	sig, err := auth.Verify(args, call, secret, now)
	if err != nil {
		return err
	}
	return h.writes.signatures.Spend(ctx, sig, now)
}

func (h *handler) writeFailed(r *request, err error) {
	if errors.Is(err, errUnavailable) {
		h.logger.Warn("record write refused", "area", r.label, "err", err)
		h.finish(r, http.StatusServiceUnavailable, "unavailable", l2l.Failure(msgWriteUnavailable))
		return
	}
	switch chstore.Limit(err) {
	case nil:
	case chstore.ErrBusy:
		h.busy(r, err)
		return
	default:
		h.finish(r, http.StatusGatewayTimeout, "timeout", l2l.Failure("The write took too long"))
		return
	}
	h.logger.Error("record write failed", "area", r.label, "err", err)
	h.finish(r, http.StatusInternalServerError, "error", l2l.Failure(msgInternal))
}
