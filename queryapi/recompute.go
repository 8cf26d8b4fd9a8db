package queryapi

// productionperiods/recompute: a location's periods of a window derived
// again under the current rules. Periods are the processor's (it owns each
// location's state machine), so the API validates the call and produces a
// wire.Recompute per location to the parts topic under the location's
// external id; the processor that owns the location runs it in order with
// the location's parts (processor/recompute.go) and records its result in
// period_recomputes, which the call waits for (bounded) and answers.
//
// The call is signed like the other sensitive writes: it rewrites
// history, and a signature is spent once, so a captured request cannot be
// sent again.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/takt/takt/internal/auth"
	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/l2l"
	"github.com/takt/takt/internal/wire"
)

// recomputeSigned are the arguments a recompute's signature covers, in
// order, after the binding (POST, productionperiods/recompute).
var recomputeSigned = []string{"site", "externalid", "line", "machine", "start", "end"}

// Bounds of a recompute call.
const (
	// maxRecomputeLocations bounds the locations of one call (a line and
	// its machines).
	maxRecomputeLocations = 64
	// recomputeWait is how long a call waits for its results by default;
	// maxRecomputeWait at most.
	recomputeWait    = 10 * time.Second
	maxRecomputeWait = 20 * time.Second
	// recomputePoll is how often the results are looked for.
	recomputePoll = 200 * time.Millisecond
)

// recomputeReader reads the results of recomputes (*chstore.Store).
type recomputeReader interface {
	RecomputeByID(ctx context.Context, id string) (chstore.Recompute, error)
}

// recomputeTarget is one location a recompute call derives again.
type recomputeTarget struct {
	kind       string
	id         uint64
	externalID string
}

// recompute serves productionperiods/recompute.
func (x *actionServer) recompute(ctx context.Context, c *actionCall) actionAnswer {
	if ans, ok := x.checkRecomputeSignature(ctx, c); !ok {
		return ans
	}
	given := 0
	for _, name := range []string{"externalid", "line", "machine"} {
		if c.has(name) {
			given++
		}
	}
	if given != 1 {
		return invalid("give exactly one of externalid, line or machine")
	}
	start, _ := c.time("start")
	end, _ := c.time("end")
	switch {
	case !end.After(start):
		return invalid(fmt.Sprintf("end: %s is not after start (%s)", end.Format(time.DateTime), start.Format(time.DateTime)))
	case end.Sub(start) > wire.MaxRecomputeWindow:
		return invalid(fmt.Sprintf("end: the window is longer than %d days", int(wire.MaxRecomputeWindow/(24*time.Hour))))
	case end.After(c.now):
		return invalid("end: in the future")
	}
	wait := recomputeWait
	if c.has("wait") {
		wait = time.Duration(c.num("wait")) * time.Second
		if wait > maxRecomputeWait {
			return invalid(fmt.Sprintf("wait: at most %d seconds", int(maxRecomputeWait/time.Second)))
		}
	}
	targets, ans, ok := x.recomputeTargets(ctx, c)
	if !ok {
		return ans
	}
	if x.sender == nil {
		return failed(fmt.Errorf("%w: no Kafka client", errNotProduced))
	}
	ids := make([]string, len(targets))
	recs := make([]*kgo.Record, len(targets))
	for i, t := range targets {
		uid, err := uuid.NewV7()
		if err != nil {
			return failed(fmt.Errorf("recompute id: %w", err))
		}
		rc := wire.Recompute{Control: wire.Control{ID: uid.String(), Site: c.site, LocationKind: t.kind, LocationID: t.id,
			ExternalID: t.externalID},
			StartMs: start.UnixMilli(), EndMs: end.UnixMilli(), RequestedAtMs: x.now().UnixMilli(), By: c.actor}
		val, err := wire.EncodeRecompute(&rc)
		if err != nil {
			return failed(fmt.Errorf("encode recompute of %s %d: %w", t.kind, t.id, err))
		}
		ids[i] = rc.ID
		recs[i] = &kgo.Record{Key: rc.Key(), Value: val,
			Headers: []kgo.RecordHeader{{Key: wire.KindHeader, Value: []byte(wire.KindRecompute)}}}
	}
	if err := errors.Join(x.sender.send(ctx, recs...)...); err != nil {
		return failed(err)
	}
	x.logger.Info("recompute sent", "site", c.site, "locations", len(targets), "start", start, "end", end, "by", c.actor)
	results := x.awaitRecomputes(ctx, ids, wait)
	rows := make([][]any, len(targets))
	for i, t := range targets {
		rows[i] = recomputeRecord(ids[i], t, start, end, results[i])
	}
	return actionAnswer{resp: l2l.List(recomputeFields, rows, len(rows), 0), outcome: "created"}
}

// checkRecomputeSignature verifies and spends the call's signature (an
// argument given twice fails it: which value counts is not to be guessed).
func (x *actionServer) checkRecomputeSignature(ctx context.Context, c *actionCall) (actionAnswer, bool) {
	call := auth.Call{Method: auth.MethodCreate, Area: "productionperiods/recompute", Fields: recomputeSigned}
	err := x.h.checkSigned(ctx, c.key, c.args, call)
	switch {
	case errors.Is(err, auth.ErrSignature):
		return actionAnswer{forbidden: err.Error()}, false
	case errors.Is(err, auth.ErrUnavailable):
		x.logger.Warn("signed call refused", "action", "productionperiods/recompute", "err", err)
		return actionAnswer{unavailable: msgSignedUnavailable}, false
	case err != nil:
		return failed(err), false
	}
	return actionAnswer{}, true
}

// recomputeTargets finds the locations of a call in its site: the one its
// externalid or machine names, or a line and those of its machines that are
// locations.
func (x *actionServer) recomputeTargets(ctx context.Context, c *actionCall) ([]recomputeTarget, actionAnswer, bool) {
	var out []recomputeTarget
	add := func(kind string, id uint64, row chstore.Row) {
		if ext, _ := row["externalid"].(string); ext != "" {
			out = append(out, recomputeTarget{kind: kind, id: id, externalID: ext})
		}
	}
	switch {
	case c.has("externalid"):
		ext := c.text("externalid")
		for _, area := range []string{"lines", "machines"} {
			found, err := x.store.FindRows(ctx, area, chstore.Row{"site": c.site, "externalid": ext}, 1)
			if err != nil {
				return nil, failed(err), false
			}
			if len(found) > 0 {
				add(area[:len(area)-1], found[0].ID, found[0].Row)
				break
			}
		}
		if len(out) == 0 {
			return nil, invalid(fmt.Sprintf("externalid: no line or machine %q in site %d", ext, c.site)), false
		}
	case c.has("machine"):
		m, _, ans, ok := x.rowInSite(ctx, c, "machines", c.num("machine"), "machine")
		if !ok {
			return nil, ans, false
		}
		add("machine", c.num("machine"), m)
		if len(out) == 0 {
			return nil, invalid(fmt.Sprintf("machine: %d has no external id: it has no periods", c.num("machine"))), false
		}
	default:
		line := c.num("line")
		l, _, ans, ok := x.rowInSite(ctx, c, "lines", line, "line")
		if !ok {
			return nil, ans, false
		}
		add("line", line, l)
		machines, err := x.store.FindRows(ctx, "machines", chstore.Row{"site": c.site, "line": line}, maxRecomputeLocations+1)
		if err != nil {
			return nil, failed(err), false
		}
		for _, m := range machines {
			add("machine", m.ID, m.Row)
		}
		switch {
		case len(out) == 0:
			return nil, invalid(fmt.Sprintf("line: neither line %d nor any of its machines has an external id", line)), false
		case len(out) > maxRecomputeLocations:
			return nil, invalid(fmt.Sprintf("line: more than %d locations; recompute them one by one", maxRecomputeLocations)), false
		}
	}
	return out, actionAnswer{}, true
}

// awaitRecomputes waits up to wait (and while ctx leaves a second to
// answer) for the results of ids; a result not found is zero.
func (x *actionServer) awaitRecomputes(ctx context.Context, ids []string, wait time.Duration) []chstore.Recompute {
	out := make([]chstore.Recompute, len(ids))
	deadline := time.Now().Add(wait)
	if d, ok := ctx.Deadline(); ok && d.Add(-time.Second).Before(deadline) {
		deadline = d.Add(-time.Second)
	}
	left := len(ids)
	for {
		for i, id := range ids {
			if out[i].ID != "" {
				continue
			}
			r, err := x.recomputes.RecomputeByID(ctx, id)
			if err == nil {
				out[i] = r
				left--
			} else if !errors.Is(err, chstore.ErrNotFound) {
				x.logger.Warn("reading a recompute's result failed", "recompute", id, "err", err)
			}
		}
		if left == 0 || !time.Now().Add(recomputePoll).Before(deadline) {
			return out
		}
		select {
		case <-ctx.Done():
			return out
		case <-time.After(recomputePoll):
		}
	}
}

// recomputeFields are the fields of a recompute's answer.
var recomputeFields = func() []l2l.Field {
	f := func(name string, t l2l.Type) l2l.Field { return l2l.Field{Name: name, Type: t} }
	n := func(name string, t l2l.Type) l2l.Field { return l2l.Field{Name: name, Type: t, Nullable: true} }
	return []l2l.Field{f("id", l2l.String), f("status", l2l.String), f("location_kind", l2l.String), f("location", l2l.Int),
		f("externalid", l2l.String), f("start", l2l.DateTime), f("end", l2l.DateTime), n("from", l2l.DateTime), n("to", l2l.DateTime),
		n("rule_version", l2l.Int), n("parts", l2l.Int), n("replaced", l2l.Int), n("created", l2l.Int), n("deleted", l2l.Int),
		n("unchanged", l2l.Int), n("reasons_kept", l2l.Int), f("reasons_lost", l2l.Records), n("error", l2l.String)}
}()

// lostReasonFields are the fields of each reason a recompute could not
// carry over.
var lostReasonFields = []l2l.Field{{Name: "period", Type: l2l.Int}, {Name: "state", Type: l2l.String},
	{Name: "start", Type: l2l.DateTime}, {Name: "end", Type: l2l.DateTime}, {Name: "reason", Type: l2l.Int}}

// recomputeRecord is the answer's record of one location: status done
// with the figures, pending (nulls) while the processor has not run it,
// or failed with the error that says why it derived nothing.
func recomputeRecord(id string, t recomputeTarget, start, end time.Time, r chstore.Recompute) []any {
	row := []any{id, "pending", t.kind, t.id, t.externalID, start.UTC(), end.UTC(), nil, nil, nil, nil, nil, nil, nil, nil, nil,
		l2l.Nested{Fields: lostReasonFields}, nil}
	switch {
	case r.ID == "":
		return row
	case r.Error != "":
		row[1], row[17] = "failed", r.Error
		return row
	}
	row[1] = "done"
	row[7], row[8] = time.UnixMilli(r.FromMs).UTC(), time.UnixMilli(r.ToMs).UTC()
	row[9], row[10], row[11], row[12], row[13], row[14], row[15] = r.RuleVersion, r.Parts, uint64(r.Replaced),
		uint64(r.Created), uint64(r.Deleted), uint64(r.Unchanged), uint64(r.ReasonsKept)
	var lost []struct {
		Period  uint64 `json:"period"`
		State   string `json:"state"`
		StartMs int64  `json:"start_ms"`
		EndMs   int64  `json:"end_ms"`
		Reason  uint64 `json:"reason"`
	}
	_ = json.Unmarshal([]byte(r.ReasonsLost), &lost) // written by the processor; an unreadable list shows empty
	nested := l2l.Nested{Fields: lostReasonFields}
	for _, l := range lost {
		nested.Rows = append(nested.Rows, []any{l.Period, l.State, time.UnixMilli(l.StartMs).UTC(), time.UnixMilli(l.EndMs).UTC(), l.Reason})
	}
	row[16] = nested
	return row
}

// recomputeResult serves productionperiods/recompute_result/<id>.
func (x *actionServer) recomputeResult(ctx context.Context, c *actionCall) actionAnswer {
	notFound := actionAnswer{notFound: fmt.Sprintf("No recompute with id %s has run", c.path)}
	if _, err := uuid.Parse(c.path); err != nil {
		return notFound
	}
	r, err := x.recomputes.RecomputeByID(ctx, c.path)
	switch {
	case errors.Is(err, chstore.ErrNotFound):
		return notFound
	case err != nil:
		return failed(err)
	case !containsSite(c.sites, r.Site):
		return notFound
	}
	t := recomputeTarget{kind: r.LocationKind, id: r.Location, externalID: r.ExternalID}
	row := recomputeRecord(r.ID, t, time.UnixMilli(r.StartMs), time.UnixMilli(r.EndMs), r)
	return actionAnswer{resp: l2l.Record(recomputeFields, row)}
}
