package queryapi

// Actions: the calls under an area's path besides its records,
// /api/1.0/<area>/<action>/ and /api/1.0/<area>/<action>/<argument>/
// (dispatches/open, users/clock_in/<username>, ...). internal/record
// defines each (record.Action: methods, arguments, scope, answer); the
// handlers bound here by "<area>/<action>" do the work. Every action passes
// the same steps first: authorization (the action's scope; a GET needs
// read), the method, the path argument, the site the call is made in, and
// its arguments, each parsed by its declared type. An action takes the
// arguments it declares and ignores others, as Leading2Lean's API does:
// its own sample clients send arguments left over from earlier calls.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/redis/go-redis/v9"

	"github.com/takt/takt/internal/auth"
	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/l2l"
	"github.com/takt/takt/internal/record"
	"github.com/takt/takt/internal/redisx"
)

// actionFunc serves one action call.
type actionFunc func(ctx context.Context, c *actionCall) actionAnswer

// actionCall is a checked call of an action: who makes it, in which site,
// with which arguments.
type actionCall struct {
	method string
	area   *area
	def    *record.Action
	// path is the path argument ("" when the action has none).
	path  string
	key   auth.Principal
	actor string
	// sites are the caller's; site is the one the call is made in, loc
	// its time zone.
	sites []uint64
	site  uint64
	loc   *time.Location
	now   time.Time
	// args are the call's arguments as sent (a signed call checks them).
	args url.Values
	// vals holds the arguments given, by name: uint64 (ArgID, ArgCount),
	// string (ArgText), bool (ArgBool), time.Time in UTC (ArgTime).
	vals map[string]any
}

func (c *actionCall) has(name string) bool { _, ok := c.vals[name]; return ok }
func (c *actionCall) text(name string) string {
	s, _ := c.vals[name].(string)
	return s
}
func (c *actionCall) num(name string) uint64 {
	n, _ := c.vals[name].(uint64)
	return n
}
func (c *actionCall) flag(name string) bool {
	b, _ := c.vals[name].(bool)
	return b
}
func (c *actionCall) time(name string) (time.Time, bool) {
	t, ok := c.vals[name].(time.Time)
	return t, ok
}

// actionAnswer is what an action did: a success (resp), a validation
// failure (problems: HTTP 200, success false), a record that does not
// exist for the caller (notFound: 404), or a failure (err: 5xx, see
// actionFailed).
type actionAnswer struct {
	resp     l2l.Response
	outcome  string // metrics outcome of a success: ok, created, updated
	problems []string
	notFound string
	// forbidden: the call is refused (403), e.g. a bad signature;
	// unavailable: it cannot be checked now (503).
	forbidden   string
	unavailable string
	err         error
}

func invalid(problems ...string) actionAnswer { return actionAnswer{problems: problems} }
func failed(err error) actionAnswer           { return actionAnswer{err: err} }

// Bounds of action arguments.
const (
	// maxActionQuantity bounds the parts one action call records (as the
	// ingest API bounds a part's quantity).
	maxActionQuantity = 100_000
	// maxCount bounds counters: JSON clients read numbers as doubles.
	maxCount = 1<<53 - 1
	// actionFuture is how far ahead of the server's clock an action's
	// time may lie (clocks differ).
	actionFuture = 24 * time.Hour
)

// actionEarliest is the earliest time an action takes.
var actionEarliest = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// serveAction serves a call of action ac of area ra; pathArg is the path
// segment after the action's name ("" when none was given).
func (h *handler) serveAction(c *gin.Context, ra *area, ac *record.Action, pathArg string) {
	method := c.Request.Method
	r := &request{c: c, start: time.Now(), label: ra.def.Name + "/" + ac.Name, write: method != http.MethodGet,
		format: l2l.FormatOf(c.Request.URL.Query())}
	args := c.Request.URL.Query()
	if r.write {
		var err error
		if args, err = writeArgs(c.Request); err != nil {
			h.finish(r, http.StatusBadRequest, "invalid", l2l.Failure(err.Error()))
			return
		}
	}
	r.format = l2l.FormatOf(args)
	scope := ac.Scope
	if method == http.MethodGet {
		scope = auth.ScopeRead
	}
	cl, ok := h.authorize(r, args, scope)
	if !ok {
		return
	}
	if !slices.Contains(ac.Methods, method) || h.actions == nil {
		h.finish(r, http.StatusMethodNotAllowed, "read_only", l2l.Failure(fmt.Sprintf("%s answers %s",
			r.label, strings.Join(ac.Methods, ", "))))
		return
	}
	fn := h.actions[r.label]
	switch {
	case ac.PathArg != "" && pathArg == "":
		h.finish(r, http.StatusNotFound, "not_found", l2l.Failure(fmt.Sprintf("%s: give the %s in the path: /api/1.0/%s/%s/<%s>/",
			r.label, ac.PathArg, ra.def.Name, ac.Name, ac.PathArg)))
		return
	case ac.PathArg == "" && pathArg != "", fn == nil:
		h.finish(r, http.StatusNotFound, "not_found", l2l.Failure("Not found"))
		return
	}
	if v := args.Get("l2lfmt_microseconds"); v != "" {
		r.query.Microseconds, _ = strconv.ParseBool(strings.ToLower(v))
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), h.timeout)
	defer cancel()
	call := &actionCall{method: method, area: ra, def: ac, path: pathArg, key: cl.key, actor: cl.actor, args: args,
		sites: cl.sites, now: h.actionNow().UTC().Truncate(time.Second), vals: map[string]any{}}
	var problems []string
	call.site, problems = callSite(args, cl.sites)
	if len(problems) == 0 {
		call.loc = h.zones.forSites(ctx, []uint64{call.site})[call.site]
		problems = parseActionArgs(ac, args, call)
	}
	if len(problems) > 0 {
		h.finish(r, http.StatusOK, "invalid", l2l.Invalid(&l2l.QueryError{Problems: problems}))
		return
	}
	ans := fn(ctx, call)
	switch {
	case ans.err != nil:
		h.actionFailed(r, ans.err)
	case len(ans.problems) > 0:
		h.finish(r, http.StatusOK, "invalid", l2l.Invalid(&l2l.QueryError{Problems: ans.problems}))
	case ans.notFound != "":
		h.finish(r, http.StatusNotFound, "not_found", l2l.Failure(ans.notFound))
	case ans.forbidden != "":
		h.finish(r, http.StatusForbidden, "forbidden", l2l.Failure(ans.forbidden))
	case ans.unavailable != "":
		h.finish(r, http.StatusServiceUnavailable, "unavailable", l2l.Failure(ans.unavailable))
	default:
		outcome := ans.outcome
		if outcome == "" {
			outcome = "ok"
		}
		h.logger.Info("action", "action", r.label, "outcome", outcome, "by", cl.actor, "key_prefix", cl.key.Prefix)
		h.finish(r, http.StatusOK, outcome, ans.resp)
	}
}

// callSite returns the site a call is made in: its site argument, which
// must be one of the caller's sites, else the caller's only site.
func callSite(args url.Values, sites []uint64) (uint64, []string) {
	raw := ""
	if v := args["site"]; len(v) > 0 {
		raw = strings.TrimSpace(v[len(v)-1])
	}
	if raw == "" {
		if len(sites) == 1 {
			return sites[0], nil
		}
		return 0, []string{"site: required (the id of the site the call is made in)"}
	}
	site, err := strconv.ParseUint(raw, 10, 64)
	if err != nil {
		return 0, []string{fmt.Sprintf("site: %q is not a whole number", raw)}
	}
	if !slices.Contains(sites, site) {
		return 0, []string{fmt.Sprintf("site: %d is not one of your sites", site)}
	}
	return site, nil
}

// parseActionArgs parses the arguments ac declares into c.vals (times in
// c.loc) and returns every problem.
func parseActionArgs(ac *record.Action, args url.Values, c *actionCall) []string {
	var problems []string
	bad := func(format string, v ...any) { problems = append(problems, fmt.Sprintf(format, v...)) }
	for _, g := range ac.Args {
		vals, given := args[g.Name]
		raw := ""
		if given && len(vals) > 0 {
			raw = vals[len(vals)-1]
		}
		if g.Type != record.ArgText {
			raw = strings.TrimSpace(raw)
		}
		if raw == "" && g.Type != record.ArgText || !given {
			if g.Required {
				bad("%s: required", g.Name)
			}
			continue
		}
		switch g.Type {
		case record.ArgID, record.ArgCount:
			n, err := strconv.ParseUint(raw, 10, 64)
			switch {
			case err != nil || n > maxCount:
				bad("%s: %q is not a whole number (0 to 2^53)", g.Name, raw)
			case g.Type == record.ArgID && n == 0:
				bad("%s: 0 is not an id", g.Name)
			default:
				c.vals[g.Name] = n
			}
		case record.ArgText:
			if len(raw) > record.MaxText {
				bad("%s: longer than %d bytes", g.Name, record.MaxText)
				continue
			}
			c.vals[g.Name] = raw
		case record.ArgBool:
			b, err := parseFlag(raw)
			if err != nil {
				bad("%s: %q is not True or False", g.Name, raw)
				continue
			}
			c.vals[g.Name] = b
		case record.ArgTime:
			t, err := parseLocalTime(raw, c.loc, c.now)
			if err != nil {
				bad("%s: %v", g.Name, err)
				continue
			}
			c.vals[g.Name] = t
		}
	}
	return problems
}

// parseFlag reads a boolean as the record areas do: True, T, 1, False, F,
// 0, in any case.
func parseFlag(s string) (bool, error) {
	switch {
	case s == "1" || strings.EqualFold(s, "true") || strings.EqualFold(s, "t"):
		return true, nil
	case s == "0" || strings.EqualFold(s, "false") || strings.EqualFold(s, "f"):
		return false, nil
	}
	return false, fmt.Errorf("not a boolean: %q", s)
}

// localLayouts are the forms of a site-local time an action takes.
var localLayouts = []string{
	"2006-01-02 15:04", "2006-01-02 15:04:05", "2006-01-02 15:04:05.999999999",
	"2006-01-02T15:04", "2006-01-02T15:04:05", "2006-01-02T15:04:05.999999999",
	time.DateOnly,
}

// parseLocalTime reads an action's time: "now", a site-local time in one of
// localLayouts (in loc), or ISO 8601 with Z or an offset. It is truncated
// to the second and must lie between 2000-01-01 and a day after now.
func parseLocalTime(raw string, loc *time.Location, now time.Time) (time.Time, error) {
	var t time.Time
	switch {
	case strings.EqualFold(raw, "now"):
		t = now
	default:
		iso := raw
		if len(iso) > 10 && iso[10] == ' ' {
			iso = iso[:10] + "T" + iso[11:]
		}
		if z, err := time.Parse(time.RFC3339Nano, iso); err == nil {
			t = z
			break
		}
		found := false
		for _, layout := range localLayouts {
			if l, err := time.ParseInLocation(layout, raw, loc); err == nil {
				t, found = l, true
				break
			}
		}
		if !found {
			return time.Time{}, fmt.Errorf("%q is not a time: give the site's local time as YYYY-MM-DD HH:MM[:SS], now,"+
				" or ISO 8601 with Z or an offset", raw)
		}
	}
	t = t.UTC().Truncate(time.Second)
	if t.Before(actionEarliest) || t.After(now.Add(actionFuture)) {
		return time.Time{}, fmt.Errorf("%q is before 2000 or more than a day ahead", raw)
	}
	return t, nil
}

// actionFailed answers a call that failed on the server's side.
func (h *handler) actionFailed(r *request, err error) {
	switch {
	case errors.Is(err, errUnconfirmed):
		h.logger.Error("action: Kafka did not confirm in time", "action", r.label, "err", err)
		h.finish(r, http.StatusGatewayTimeout, "timeout", l2l.Failure(msgActionUnconfirmed))
	case errors.Is(err, errNotProduced):
		h.logger.Error("action: Kafka did not take the records", "action", r.label, "err", err)
		h.finish(r, http.StatusServiceUnavailable, "unavailable", l2l.Failure(msgActionNotProduced))
	case errors.Is(err, errBusy):
		h.finish(r, http.StatusServiceUnavailable, "unavailable", l2l.Failure(msgActionBusy))
	default:
		h.writeFailed(r, err)
	}
}

// Answers of actions that failed on the server's side.
const (
	msgActionUnconfirmed = "The call was sent to the pipeline, but Kafka did not confirm it in time: it may still" +
		" take effect. Check before repeating it"
	msgActionNotProduced = "Kafka did not accept the call's records (is it reachable?). Nothing was changed; retry later"
	msgActionBusy        = "The record is being changed by another call; retry"
)

// actionNames lists the actions that write the records of area def, as
// area/action, for messages.
func actionNames(reg *record.Registry, def *record.Area) string {
	var out []string
	for _, a := range reg.Areas() {
		for _, ac := range a.Actions {
			if ac.Returns == def.Name && slices.Contains(ac.Methods, http.MethodPost) || a == def && ac.Returns == "" {
				out = append(out, a.Name+"/"+ac.Name)
			}
		}
	}
	return strings.Join(out, ", ")
}

// recordAnswer reads record id of the area called name as the caller sees
// it and returns it as the answer's data: a single record, or a list of
// one when list is set (Leading2Lean's Go client reads a list there).
func (h *handler) recordAnswer(ctx context.Context, name string, id uint64, sites []uint64, list bool) (l2l.Response, error) {
	ra := h.areas[name]
	q, _ := l2l.Parse(url.Values{}, ra.schema)
	page, err := h.store.RecordByID(ctx, ra.rec, id, q, sites)
	if err != nil {
		return l2l.Response{}, err
	}
	h.localize(ctx, page)
	if list {
		return l2l.List(page.Fields, page.Rows, len(page.Rows), 0), nil
	}
	return l2l.Record(page.Fields, page.Rows[0]), nil
}

// actionServer holds what the action handlers share; its methods are the
// handlers (actions_*.go).
type actionServer struct {
	h      *handler // reads records for answers
	store  actionStore
	ids    *idSource
	sender *sender // nil: actions that send to the pipeline answer 503
	// recomputes reads the results of period recomputes.
	recomputes recomputeReader
	rdb        *redis.Client
	keys       redisx.Keys
	locks      *locks
	inv        invalidator
	now        func() time.Time
	logger     *slog.Logger
}

// handlers binds the actions of the registry to their handlers.
func (x *actionServer) handlers() map[string]actionFunc {
	return map[string]actionFunc{
		"dispatches/open":                    x.openDispatch,
		"dispatches/close":                   x.closeDispatch,
		"dispatches/add":                     x.addDispatch,
		"machines/set_cycle_count":           x.setCycleCount,
		"machines/increment_cycle_count":     x.incrementCycleCount,
		"pitchdetails/record_details":        x.recordDetails,
		"productionperiods/recompute":        x.recompute,
		"productionperiods/recompute_result": x.recomputeResult,
		"users/clock_in":                     x.clockIn,
		"users/clock_out":                    x.clockOut,
	}
}

// bindActions gives h the action handlers of x and checks that every
// action of the registry has one.
func (h *handler) bindActions(x *actionServer) error {
	fns := x.handlers()
	for _, a := range h.store.Areas().Areas() {
		for _, ac := range a.Actions {
			if fns[a.Name+"/"+ac.Name] == nil {
				return fmt.Errorf("action %s/%s has no handler", a.Name, ac.Name)
			}
		}
	}
	h.actions, h.actionNow = fns, x.now
	return nil
}

// actionStore is what actions read and write (*chstore.Store).
type actionStore interface {
	ReadRow(ctx context.Context, area string, id uint64) (chstore.Row, chstore.Audit, error)
	WriteRow(ctx context.Context, area string, id uint64, row chstore.Row, au chstore.Audit) error
	FindRows(ctx context.Context, area string, match chstore.Row, limit int) ([]chstore.FoundRow, error)
	MachineCounter(ctx context.Context, machine uint64) (chstore.MachineCounter, bool, error)
	PutMachineCounter(ctx context.Context, c chstore.MachineCounter) error
}
