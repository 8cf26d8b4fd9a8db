package queryapi

// pitchdetails/record_details: production of a line reported in totals.
//
// POST records actual good parts and scrap scrapped parts of one product
// made on a line over [start, end]. The detail is a row of pitchdetails;
// its parts are two part events (good and scrap), recorded at end, that go
// through the ingest pipeline exactly as parts reported to process_part
// do, so they show in parts, pitches, periods and OEE. A detail is known
// by its line, product, start and end: the same call sent again (a client
// retrying after a timeout) changes nothing and answers the same record,
// and other counts for the same range are refused, so a retry never counts
// twice. The event ids follow from the detail's id, and the row records
// which of its events Kafka has taken: a repeat after a partial failure
// sends only the missing one, with the id it had.
//
// GET answers the line's details over a time range and their totals.

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/l2l"
	"github.com/takt/takt/internal/wire"
)

// pitchDetailEvents is the namespace of the event ids of pitch details'
// part events: uuid.NewSHA1(pitchDetailEvents, "<detail id>/<quality>").
var pitchDetailEvents = uuid.MustParse("7a6b9e0c-3d52-4c8e-9a31-5f0c2b7d1e44")

// maxDetails bounds the details a GET reads.
const maxDetails = 2000

// recordDetails serves pitchdetails/record_details.
func (x *actionServer) recordDetails(ctx context.Context, c *actionCall) actionAnswer {
	if c.method == "GET" {
		return x.readDetails(ctx, c)
	}
	var problems []string
	for _, name := range []string{"productcode", "start", "end"} {
		if !c.has(name) {
			problems = append(problems, name+": required")
		}
	}
	start, _ := c.time("start")
	end, _ := c.time("end")
	actual, scrap := c.num("actual"), c.num("scrap")
	switch {
	case c.has("productcode") && c.text("productcode") == "":
		problems = append(problems, "productcode: must not be empty")
	case end.Before(start):
		problems = append(problems, fmt.Sprintf("end: %s is before start (%s)", end.Format(time.DateTime), start.Format(time.DateTime)))
	}
	for name, n := range map[string]uint64{"actual": actual, "scrap": scrap} {
		if n > maxActionQuantity {
			problems = append(problems, fmt.Sprintf("%s: %d is above %d", name, n, maxActionQuantity))
		}
	}
	if len(problems) > 0 {
		return invalid(problems...)
	}
	line, ans, ok := x.byCode(ctx, c, "lines", c.text("linecode"), "linecode")
	if !ok {
		return ans
	}
	ext, _ := line.Row["externalid"].(string)
	if ext == "" {
		return invalid(fmt.Sprintf("linecode: line %q has no externalid; give it one (it is then a location) to record its production",
			c.text("linecode")))
	}
	if x.sender == nil {
		return failed(fmt.Errorf("%w: no Kafka client", errNotProduced))
	}
	code := c.text("productcode")
	release, err := x.locks.hold(ctx, fmt.Sprintf("pitchdetail:%d:%s:%d:%d", line.ID, code, start.Unix(), end.Unix()))
	if err != nil {
		return failed(err)
	}
	defer release()
	product, problems, err := x.productFor(ctx, c, code)
	switch {
	case err != nil:
		return failed(err)
	case len(problems) > 0:
		return invalid(problems...)
	}

	// The same detail again: a retry.
	found, err := x.store.FindRows(ctx, "pitchdetails", chstore.Row{"line": line.ID, "product": product, "start": start, "end": end}, 1)
	if err != nil {
		return failed(err)
	}
	var id uint64
	var row chstore.Row
	var au chstore.Audit
	if len(found) > 0 {
		id, row, au = found[0].ID, found[0].Row, found[0].Audit
		if row["actual"] != actual || row["scrap"] != scrap || row["operator_count"] != c.num("operator_count") {
			return invalid(fmt.Sprintf("start, end: production of %s on line %s from %s to %s is already recorded (pitch detail %d:"+
				" actual %v, scrap %v, operator_count %v); send each time range once", code, c.text("linecode"),
				start.Format(time.DateTime), end.Format(time.DateTime), id, row["actual"], row["scrap"], row["operator_count"]))
		}
		if row["sent_good"] == true && row["sent_scrap"] == true {
			return x.answerRecord(ctx, c, "pitchdetails", id, "ok")
		}
	} else {
		if id, err = x.ids.next(ctx); err != nil {
			return failed(err)
		}
		row = x.newRow("pitchdetails", chstore.Row{"site": c.site, "line": line.ID, "linecode": line.Row["code"],
			"product": product, "productcode": code, "start": start, "end": end, "actual": actual, "scrap": scrap,
			"operator_count": c.num("operator_count"), "sent_good": actual == 0, "sent_scrap": scrap == 0})
		if au, err = x.putRow(ctx, "pitchdetails", id, row, c.actor, nil); err != nil {
			return failed(err)
		}
	}

	// The events Kafka does not have yet.
	type event struct {
		quality, flag string
		quantity      uint64
	}
	var events []event
	for _, e := range []event{{wire.QualityGood, "sent_good", actual}, {wire.QualityScrap, "sent_scrap", scrap}} {
		if row[e.flag] != true {
			events = append(events, e)
		}
	}
	recs := make([]*kgo.Record, len(events))
	for i, e := range events {
		p := wire.Part{
			EventID: uuid.NewSHA1(pitchDetailEvents, []byte(strconv.FormatUint(id, 10)+"/"+e.quality)).String(),
			Site:    c.site, LocationKind: "line", LocationID: line.ID, ExternalID: ext,
			Quantity: uint32(e.quantity), Quality: e.quality, Product: code,
			RecordedAtMs: end.UnixMilli(), ReceivedAtMs: x.now().UnixMilli(),
		}
		if d := end.Sub(start); d > 0 {
			// The run of the range starts at start (see internal/period).
			p.CycleTime, p.HasCycleTime = d.Seconds(), true
		}
		val, err := wire.Encode(&p)
		if err != nil {
			return failed(err)
		}
		recs[i] = &kgo.Record{Key: p.Key(), Value: val,
			Headers: []kgo.RecordHeader{{Key: wire.ProductHeader, Value: []byte(strconv.FormatUint(product, 10))}}}
	}
	results := x.sender.send(ctx, recs...)
	var sendErr error
	for i, err := range results {
		// An unconfirmed event is most likely in flight: it counts as
		// sent, so that a repeat never records it twice.
		if err == nil || errors.Is(err, errUnconfirmed) {
			row[events[i].flag] = true
		}
		if err != nil && sendErr == nil {
			sendErr = err
		}
	}
	if _, err := x.putRow(ctx, "pitchdetails", id, row, c.actor, &au); err != nil {
		x.logger.Error("pitch detail: recording which events Kafka took failed", "pitchdetail", id, "err", err)
		if sendErr == nil {
			return failed(err)
		}
	}
	if sendErr != nil {
		return failed(fmt.Errorf("parts of pitch detail %d: %w", id, sendErr))
	}
	x.logger.Info("production recorded as parts", "pitchdetail", id, "line", line.ID, "product", code,
		"actual", actual, "scrap", scrap)
	return x.answerRecord(ctx, c, "pitchdetails", id, "created")
}

// productFor returns the id of the product with code in the call's site,
// creating it when the site has none (without an ideal cycle time). The
// create is a write of the record API like any other: validated, its code
// reserved against concurrent creates, announced to the caches.
func (x *actionServer) productFor(ctx context.Context, c *actionCall, code string) (uint64, []string, error) {
	find := func() (uint64, bool, error) {
		found, err := x.store.FindRows(ctx, "products", chstore.Row{"site": c.site, "code": code}, 1)
		if err != nil || len(found) == 0 {
			return 0, false, err
		}
		return found[0].ID, true, nil
	}
	if id, ok, err := find(); err != nil || ok {
		return id, nil, err
	}
	w := x.h.writes
	ch := &change{area: x.h.store.Areas().Must("products"), actor: c.actor, sites: c.sites, create: true}
	args := url.Values{"site": {strconv.FormatUint(c.site, 10)}, "code": {code}, "description": {code},
		"ideal_cycle_time": {"0"}}
	if err := w.prepare(ctx, ch, args); err != nil {
		return 0, nil, err
	}
	if len(ch.problem) > 0 {
		// Another call created it a moment ago.
		if id, ok, err := find(); err != nil || ok {
			return id, nil, err
		}
		for i, p := range ch.problem {
			ch.problem[i] = "productcode: " + p
		}
		return 0, ch.problem, nil
	}
	if err := w.apply(ctx, ch); err != nil {
		return 0, nil, err
	}
	x.logger.Info("product created for recorded production", "product", ch.id, "code", code, "site", c.site)
	return ch.id, nil, nil
}

// readDetails serves GET pitchdetails/record_details: the details of a
// line whose end lies in [start, end] (default: the last day), with their
// totals.
func (x *actionServer) readDetails(ctx context.Context, c *actionCall) actionAnswer {
	line, ans, ok := x.byCode(ctx, c, "lines", c.text("linecode"), "linecode")
	if !ok {
		return ans
	}
	end, hasEnd := c.time("end")
	if !hasEnd {
		end = c.now
	}
	start, hasStart := c.time("start")
	if !hasStart {
		start = end.Add(-24 * time.Hour)
	}
	if end.Before(start) {
		return invalid(fmt.Sprintf("end: %s is before start (%s)", end.Format(time.DateTime), start.Format(time.DateTime)))
	}
	ra := x.h.areas["pitchdetails"]
	args := url.Values{
		"line": {strconv.FormatUint(line.ID, 10)}, "end__gte": {start.Format(time.RFC3339)},
		"end__lte": {end.Format(time.RFC3339)}, "order_by": {"end"}, "limit": {strconv.Itoa(maxDetails)},
	}
	if c.has("productcode") {
		args.Set("productcode", c.text("productcode"))
	}
	q, err := l2l.Parse(args, ra.schema)
	if err != nil {
		return failed(err)
	}
	page, err := x.h.store.Records(ctx, ra.rec, q, []uint64{c.site})
	if err != nil {
		return failed(err)
	}
	if len(page.Rows) >= maxDetails {
		return invalid(fmt.Sprintf("start, end: more than %d details in the range; ask for a shorter one", maxDetails-1))
	}
	x.h.localize(ctx, page)
	col := map[string]int{}
	for i, f := range page.Fields {
		col[f.Name] = i
	}
	num := func(row []any, name string) int64 { n, _ := row[col[name]].(int64); return n }
	type total struct {
		code                 string
		actual, scrap, count int64
	}
	var all total
	var operators int64
	products := map[int64]*total{}
	var order []int64
	for _, row := range page.Rows {
		all.actual += num(row, "actual")
		all.scrap += num(row, "scrap")
		all.count++
		operators = max(operators, num(row, "operator_count"))
		p := num(row, "product")
		if products[p] == nil {
			code, _ := row[col["productcode"]].(string)
			products[p] = &total{code: code}
			order = append(order, p)
		}
		products[p].actual += num(row, "actual")
		products[p].scrap += num(row, "scrap")
		products[p].count++
	}
	f := func(name string, t l2l.Type) l2l.Field { return l2l.Field{Name: name, Type: t} }
	fields := []l2l.Field{f("line", l2l.Int), f("linecode", l2l.String), f("start", l2l.DateTime), f("end", l2l.DateTime),
		f("actual", l2l.Int), f("scrap", l2l.Int), f("operator_count", l2l.Int), f("detail_count", l2l.Int),
		f("details", l2l.Records)}
	values := []any{int64(line.ID), line.Row["code"], start, end, all.actual, all.scrap, operators, all.count,
		l2l.Nested{Fields: page.Fields, Rows: page.Rows}}
	if c.flag("show_products") {
		pf := []l2l.Field{f("product", l2l.Int), f("productcode", l2l.String), f("actual", l2l.Int), f("scrap", l2l.Int),
			f("detail_count", l2l.Int)}
		var rows [][]any
		for _, p := range order {
			t := products[p]
			rows = append(rows, []any{p, t.code, t.actual, t.scrap, t.count})
		}
		fields = append(fields, f("products", l2l.Records))
		values = append(values, l2l.Nested{Fields: pf, Rows: rows})
	}
	return actionAnswer{resp: l2l.Record(fields, values)}
}
