package queryapi

// Reason assignment: an update of a production period gives it a downtime
// reason. Periods are the processor's: it owns each location's state
// machine, and a row the API wrote would race with the versions the machine
// writes. So the API only validates the request and produces a
// wire.Assignment to the parts topic, keyed by the location's external id
// like its parts; the processor applies it in order with them and writes
// the period's new version (within about a second). Nothing is written
// before Kafka acknowledged the assignment, so a failure leaves nothing
// half-done.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/takt/takt/internal/auth"
	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/l2l"
	"github.com/takt/takt/internal/wire"
)

// Answers of reason assignments.
const (
	msgPeriodWrites = "productionperiods: periods are written by the pipeline and cannot be created or deleted;" +
		" only their reason can be set (PUT /api/1.0/productionperiods/<id>/ with reason=<downtime reason id>, empty or 0 to remove it)"
	msgNotProduced = "The reason was not assigned: Kafka did not accept the assignment (is it reachable?)." +
		" Nothing was changed; retry later"
	msgUnconfirmed = "The reason assignment was sent, but Kafka did not confirm it in time: it may still be applied." +
		" Repeating the request is safe"
)

var (
	// errNotProduced means Kafka did not take the assignment: it will not
	// be applied.
	errNotProduced = errors.New("assignment not produced")
	// errUnconfirmed means the assignment was sent but its acknowledgement
	// did not come in time: it may or may not be applied.
	errUnconfirmed = errors.New("assignment not acknowledged in time")
)

// periodStore is what a reason assignment reads (*chstore.Store).
type periodStore interface {
	PeriodByID(ctx context.Context, id uint64) (chstore.PeriodRow, error)
	ReadRow(ctx context.Context, area string, id uint64) (chstore.Row, chstore.Audit, error)
}

// recordProducer sends a Kafka record and calls promise with Kafka's
// answer (*kgo.Client).
type recordProducer interface {
	Produce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error))
}

// kafkaClient is what the query API needs of Kafka (*kgo.Client): producing
// assignments, and /readyz.
type kafkaClient interface {
	recordProducer
	Ping(ctx context.Context) error
}

// assignGrace is the part of a request's time left, after the producer
// gave up on a record, for learning whether Kafka had it: franz-go fails a
// record whose context ended only when that is safe, i.e. not while a
// produce request holding it is in flight (the idempotent producer cannot
// know whether the broker wrote it).
const assignGrace = 500 * time.Millisecond

// assigner validates reason assignments and produces them to the parts
// topic. It is safe for concurrent use.
type assigner struct {
	store periodStore
	prod  recordProducer
	topic string
	now   func() time.Time
}

// prepare validates an assignment of args (the request's arguments) to
// period id, made by actor whose sites are sites. It returns errNotFound
// when the period does not exist or belongs to another site, the problems
// of an invalid request, or the assignment to produce.
func (a *assigner) prepare(ctx context.Context, id uint64, sites []uint64, actor string, args url.Values) (*wire.Assignment, []string, error) {
	p, err := a.store.PeriodByID(ctx, id)
	if errors.Is(err, chstore.ErrNotFound) {
		return nil, nil, errNotFound
	}
	if err != nil {
		return nil, nil, err
	}
	if !slices.Contains(sites, p.Site) {
		return nil, nil, errNotFound
	}
	var problems []string
	bad := func(format string, v ...any) { problems = append(problems, fmt.Sprintf(format, v...)) }

	keys := make([]string, 0, len(args))
	for k := range args {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	text, given := "", false
	for _, k := range keys {
		switch {
		case controlArgs[k]:
		case k == "reason":
			if v := args[k]; len(v) > 0 {
				text, given = strings.TrimSpace(v[len(v)-1]), true
			}
		default:
			bad("%s: cannot be written: only reason can be set on a production period", k)
		}
	}
	var reason uint64
	switch {
	case !given:
		bad("reason: required (the id of a downtime reason; empty or 0 removes the reason)")
	case text != "":
		n, err := strconv.ParseUint(text, 10, 64)
		if err != nil {
			bad("reason: %q is not a whole number", text)
		}
		reason = n
	}
	if p.Dispatch != 0 {
		bad("period %d is the down time of dispatch %d: its dispatch type %d is its reason", id, p.Dispatch, p.DispatchType)
	}
	if p.State != "down" && p.State != "planned_down" {
		bad("state: period %d is %s; only a down or planned_down period can be given a reason", id, p.State)
	}
	planned := false
	if reason != 0 {
		row, _, err := a.store.ReadRow(ctx, "reasons", reason)
		switch {
		case errors.Is(err, chstore.ErrNotFound) || err == nil && row["site"] != p.Site:
			bad("reason: no reason %d in site %d", reason, p.Site)
		case err != nil:
			return nil, nil, err
		case row["kind"] != "downtime":
			bad("reason: %d is a %v reason; a period takes a downtime reason", reason, row["kind"])
		default:
			planned = row["planned"] == true
		}
	}
	if len(problems) > 0 {
		return nil, problems, nil
	}
	uid, err := uuid.NewV7()
	if err != nil {
		return nil, nil, fmt.Errorf("assignment id: %w", err)
	}
	return &wire.Assignment{
		Control: wire.Control{ID: uid.String(), Site: p.Site, LocationKind: p.LocationKind, LocationID: p.Location,
			ExternalID: p.ExternalID},
		Period: p.ID, StartMs: p.Start, EndMs: p.End, State: p.State, FirstOfStop: p.FirstOfStop, Version: p.Version,
		Reason: reason, Planned: planned, AssignedAtMs: a.now().UnixMilli(), By: actor,
	}, nil, nil
}

// send produces as to the parts topic (key: the location's external id;
// header wire.KindHeader: wire.KindAssignment) and waits for Kafka's
// acknowledgement until ctx ends. It returns errNotProduced when Kafka did
// not take the record, errUnconfirmed when it is unknown whether it did.
func (a *assigner) send(ctx context.Context, as *wire.Assignment) error {
	val, err := wire.EncodeAssignment(as)
	if err != nil {
		return fmt.Errorf("encode assignment for period %d: %w", as.Period, err)
	}
	rec := &kgo.Record{Key: as.Key(), Value: val,
		Headers: []kgo.RecordHeader{{Key: wire.KindHeader, Value: []byte(wire.KindAssignment)}}}
	if err := (&sender{prod: a.prod, topic: a.topic}).sendOne(ctx, rec); err != nil {
		return fmt.Errorf("assignment %s for period %d: %w", as.ID, as.Period, err)
	}
	return nil
}

// assign serves an update of a production period (ch, with the caller's
// id, actor and sites): it validates the new reason, produces the
// assignment and answers the record as it will read once the processor
// applied it: the reason set (null when removed), the state planned_down
// for a planned reason, else down.
func (h *handler) assign(ctx context.Context, r *request, p auth.Principal, ra *area, ch *change, args url.Values, notFound l2l.Response) {
	as, problems, err := h.assigner.prepare(ctx, ch.id, ch.sites, ch.actor, args)
	switch {
	case errors.Is(err, errNotFound):
		h.finish(r, http.StatusNotFound, "not_found", notFound)
		return
	case err != nil:
		h.writeFailed(r, err)
		return
	case len(problems) > 0:
		h.finish(r, http.StatusOK, "invalid", l2l.Invalid(&l2l.QueryError{Problems: problems}))
		return
	}
	// The record is read before the assignment is produced: a failed read
	// then leaves nothing done.
	q, _ := l2l.Parse(url.Values{}, ra.schema)
	page, err := h.store.RecordByID(ctx, ra.rec, ch.id, q, ch.sites)
	if errors.Is(err, chstore.ErrNotFound) {
		h.finish(r, http.StatusNotFound, "not_found", notFound)
		return
	}
	if err != nil {
		h.writeFailed(r, err)
		return
	}
	if err := h.assigner.send(ctx, as); err != nil {
		h.logger.Error("reason assignment failed", "period", ch.id, "reason", as.Reason, "by", ch.actor,
			"key_prefix", p.Prefix, "err", err)
		if errors.Is(err, errUnconfirmed) {
			h.finish(r, http.StatusGatewayTimeout, "timeout", l2l.Failure(msgUnconfirmed))
			return
		}
		if errors.Is(err, errNotProduced) {
			h.finish(r, http.StatusServiceUnavailable, "unavailable", l2l.Failure(msgNotProduced))
			return
		}
		h.writeFailed(r, err)
		return
	}
	state := "down"
	if as.Planned {
		state = "planned_down"
	}
	var reason any
	if as.Reason != 0 {
		reason = int64(as.Reason)
	}
	row := page.Rows[0]
	for i, f := range page.Fields {
		switch f.Name {
		case "state":
			row[i] = state
		case "reason":
			row[i] = reason
		}
	}
	h.localize(ctx, page)
	h.logger.Info("period reason assigned", "period", ch.id, "reason", as.Reason, "planned", as.Planned,
		"assignment", as.ID, "by", ch.actor, "key_prefix", p.Prefix)
	h.finish(r, http.StatusOK, "updated", l2l.Record(page.Fields, row))
}
