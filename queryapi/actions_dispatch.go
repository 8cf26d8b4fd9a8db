package queryapi

// Dispatches: dispatches/open, dispatches/close/<id>, dispatches/add.
//
// A dispatch is a row of its own (dispatches). One whose type means
// downtime also has a down window on its machine: the production periods
// are the processor's (it owns each location's state machine), so the API
// does not write them; it produces a wire.Dispatch to the parts topic
// under the machine's external id, and the processor applies it in order
// with the machine's parts (processor/periods.go), as it does reason
// assignments. The row is written first; when Kafka refuses the window,
// the row's change is undone and the call answers 503 with nothing
// changed. A machine without an external id is no location: its
// dispatches are recorded, its periods (it has none) untouched.

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/wire"
)

// openDispatch serves dispatches/open.
func (x *actionServer) openDispatch(ctx context.Context, c *actionCall) actionAnswer {
	dt, _, ans, ok := x.rowInSite(ctx, c, "dispatchtypes", c.num("dispatchtype"), "dispatchtype")
	if !ok {
		return ans
	}
	m, _, ans, ok := x.rowInSite(ctx, c, "machines", c.num("machine"), "machine")
	if !ok {
		return ans
	}
	reported, given := c.time("reported")
	if !given {
		reported = c.now
	}
	return x.createDispatch(ctx, c, c.num("dispatchtype"), dt, c.num("machine"), m, reported, zeroTime)
}

// addDispatch serves dispatches/add: a dispatch that already happened.
func (x *actionServer) addDispatch(ctx context.Context, c *actionCall) actionAnswer {
	dt, ans, ok := x.byCode(ctx, c, "dispatchtypes", c.text("dispatchtypecode"), "dispatchtypecode")
	if !ok {
		return ans
	}
	m, ans, ok := x.byCode(ctx, c, "machines", c.text("machinecode"), "machinecode")
	if !ok {
		return ans
	}
	reported, _ := c.time("reported")
	completed, given := c.time("completed")
	if !given {
		completed = c.now
	}
	if completed.Before(reported) {
		return invalid(fmt.Sprintf("completed: %s is before reported (%s)", completed.Format(time.DateTime), reported.Format(time.DateTime)))
	}
	return x.createDispatch(ctx, c, dt.ID, dt.Row, m.ID, m.Row, reported, completed)
}

// createDispatch writes a new dispatch of type dt on machine m and sends
// its down window when its type means downtime.
func (x *actionServer) createDispatch(ctx context.Context, c *actionCall, dtID uint64, dt chstore.Row, mID uint64, m chstore.Row,
	reported, completed time.Time) actionAnswer {
	if dt["active"] == false {
		return invalid(fmt.Sprintf("dispatchtype: %d (%v) is not active", dtID, dt["code"]))
	}
	id, err := x.ids.next(ctx)
	if err != nil {
		return failed(err)
	}
	status := "open"
	if !isNone(completed) {
		status = "closed"
	}
	row := x.newRow("dispatches", chstore.Row{
		"site": c.site, "dispatchnumber": id, "machine": mID, "machinecode": m["code"], "line": m["line"],
		"dispatchtype": dtID, "dispatchtypecode": dt["code"], "description": c.text("description"),
		"reported": reported, "completed": completed, "status": status, "downtime": dt["downtime"] == true,
	})
	au, err := x.putRow(ctx, "dispatches", id, row, c.actor, nil)
	if err != nil {
		return failed(err)
	}
	if err := x.sendWindow(ctx, c, id, row); err != nil {
		if errors.Is(err, errNotProduced) {
			x.undo(ctx, "dispatches", id, row, c.actor, au, true)
		}
		return failed(err)
	}
	return x.answerRecord(ctx, c, "dispatches", id, "created")
}

// closeDispatch serves dispatches/close/<id>. Closing a closed dispatch
// changes nothing and answers it.
func (x *actionServer) closeDispatch(ctx context.Context, c *actionCall) actionAnswer {
	notFound := actionAnswer{notFound: fmt.Sprintf("No dispatches record with id %s", c.path)}
	id, err := strconv.ParseUint(c.path, 10, 64)
	if err != nil {
		return notFound
	}
	release, err := x.locks.hold(ctx, "dispatch:"+c.path)
	if err != nil {
		return failed(err)
	}
	defer release()
	row, au, err := x.store.ReadRow(ctx, "dispatches", id)
	switch {
	case errors.Is(err, chstore.ErrNotFound):
		return notFound
	case err != nil:
		return failed(err)
	}
	if site, _ := row["site"].(uint64); !containsSite(c.sites, site) {
		return notFound
	}
	if row["status"] == "closed" {
		return x.answerRecord(ctx, c, "dispatches", id, "ok")
	}
	completed, given := c.time("completed")
	if !given {
		completed = c.now
	}
	reported, _ := row["reported"].(time.Time)
	if completed.Before(reported) {
		return invalid(fmt.Sprintf("completed: %s is before the dispatch was reported (%s)",
			completed.Format(time.DateTime), reported.Format(time.DateTime)))
	}
	open := clone(row)
	row["completed"], row["status"] = completed, "closed"
	newAu, err := x.putRow(ctx, "dispatches", id, row, c.actor, &au)
	if err != nil {
		return failed(err)
	}
	if err := x.sendWindow(ctx, c, id, row); err != nil {
		if errors.Is(err, errNotProduced) {
			x.undo(ctx, "dispatches", id, open, c.actor, newAu, false)
		}
		return failed(err)
	}
	return x.answerRecord(ctx, c, "dispatches", id, "updated")
}

// sendWindow sends the down window of dispatch id (its row) to the
// processor, when its type meant downtime and its machine is a location. A
// window of no length (completed when reported) is sent as removed.
func (x *actionServer) sendWindow(ctx context.Context, c *actionCall, id uint64, row chstore.Row) error {
	if row["downtime"] != true {
		return nil
	}
	mID, _ := row["machine"].(uint64)
	m, _, err := x.store.ReadRow(ctx, "machines", mID)
	if errors.Is(err, chstore.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	ext, _ := m["externalid"].(string)
	if ext == "" {
		return nil
	}
	if x.sender == nil {
		return fmt.Errorf("%w: no Kafka client", errNotProduced)
	}
	uid, err := uuid.NewV7()
	if err != nil {
		return fmt.Errorf("dispatch message id: %w", err)
	}
	reported, _ := row["reported"].(time.Time)
	completed, _ := row["completed"].(time.Time)
	d := wire.Dispatch{Control: wire.Control{ID: uid.String(), Site: c.site, LocationKind: "machine", LocationID: mID,
		ExternalID: ext},
		Dispatch: id, StartMs: reported.UnixMilli(), SentAtMs: x.now().UnixMilli(), By: c.actor}
	d.DispatchType, _ = row["dispatchtype"].(uint64)
	switch {
	case isNone(completed):
	case !completed.After(reported):
		d.Removed = true // no down time at all
	default:
		d.EndMs = completed.UnixMilli()
	}
	val, err := wire.EncodeDispatch(&d)
	if err != nil {
		return fmt.Errorf("encode dispatch %d: %w", id, err)
	}
	rec := &kgo.Record{Key: d.Key(), Value: val, Headers: []kgo.RecordHeader{{Key: wire.KindHeader, Value: []byte(wire.KindDispatch)}}}
	if err := x.sender.sendOne(ctx, rec); err != nil {
		return fmt.Errorf("down window of dispatch %d: %w", id, err)
	}
	x.logger.Info("dispatch down window sent", "dispatch", id, "machine", mID, "start_ms", d.StartMs, "end_ms", d.EndMs,
		"removed", d.Removed, "message", d.ID)
	return nil
}

// undo writes row (the record as it was, or retired) as a version above
// au: the change of a call whose records Kafka refused is taken back.
// retire deletes the record instead (it was created by the call).
func (x *actionServer) undo(ctx context.Context, area string, id uint64, row chstore.Row, actor string, au chstore.Audit, retire bool) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), compensateTimeout)
	defer cancel()
	now := x.now().UTC().Truncate(time.Second)
	back := chstore.Audit{Created: au.Created, CreatedBy: au.CreatedBy, LastUpdated: now, LastUpdatedBy: actor,
		Deleted: retire, Version: max(uint64(x.now().UnixNano()), au.Version+1)}
	if err := x.store.WriteRow(cctx, area, id, row, back); err != nil {
		x.logger.Error("undoing a change whose records Kafka refused failed", "area", area, "id", id, "err", err)
	}
}

func containsSite(sites []uint64, s uint64) bool {
	for _, v := range sites {
		if v == s {
			return true
		}
	}
	return false
}

// clone copies a row (its values are never changed in place).
func clone(r chstore.Row) chstore.Row {
	out := make(chstore.Row, len(r))
	for k, v := range r {
		out[k] = v
	}
	return out
}
