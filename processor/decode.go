package processor

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/wire"
	"github.com/takt/takt/processor/resolve"
)

// Headers of a dead-letter record. The record keeps the original key,
// value, timestamp and headers.
const (
	HeaderDLQReason          = wire.HeaderDLQReason
	HeaderDLQClass           = wire.HeaderDLQClass
	HeaderDLQSourceTopic     = "takt-dlq-source-topic"
	HeaderDLQSourcePartition = "takt-dlq-source-partition"
	HeaderDLQSourceOffset    = "takt-dlq-source-offset"
)

// Dead-letter classes (the takt-dlq-class header and the metric label).
const (
	dlqDecode  = "decode"   // not JSON of the message's shape
	dlqVersion = "version"  // a schema version this build does not know
	dlqInvalid = "invalid"  // breaks an invariant of wire.Part
	dlqEventID = "event_id" // event id is not a UUID
	dlqRow     = "row"      // a value the parts table cannot store
)

// decoded is a record's message after the pure, CPU-bound part of
// processing; err (with class) says why it must go to the dead letters.
type decoded struct {
	part    wire.Part
	eventID uuid.UUID
	// productID is the product the sender resolved the part's code to
	// (wire.ProductHeader; 0: none).
	productID uint64
	// assign is set for an assignment record, dispatch for a dispatch's
	// down window (wire.KindHeader).
	assign   *wire.Assignment
	dispatch *wire.Dispatch
	// recompute is set for a request to derive periods again.
	recompute *wire.Recompute
	err       error
	class     string
	// idemID is the part's idempotency id (uuid.Nil: none); dup is set
	// by dedupe when another record holds it.
	idemID uuid.UUID
	dup    bool
}

// decode parses one record: a part event, or an assignment or a dispatch's
// down window when its wire.KindHeader says so.
func decode(r *kgo.Record, d *decoded) {
	*d = decoded{}
	for _, h := range r.Headers {
		switch h.Key {
		case wire.KindHeader:
			decodeKind(h.Value, r.Value, d)
			return
		case wire.ProductHeader:
			d.productID, _ = strconv.ParseUint(string(h.Value), 10, 64)
		}
	}
	part, err := wire.Decode(r.Value)
	if err != nil {
		d.err, d.class = err, dlqDecode
		switch {
		case errors.Is(err, wire.ErrVersion):
			d.class = dlqVersion
		case errors.Is(err, wire.ErrInvalid):
			d.class = dlqInvalid
		}
		return
	}
	d.part = part
	if d.eventID, err = uuid.Parse(part.EventID); err != nil {
		d.err, d.class = fmt.Errorf("event_id %q: %w", part.EventID, err), dlqEventID
		return
	}
	if part.IdempotencyID != "" {
		if d.idemID, err = uuid.Parse(part.IdempotencyID); err != nil {
			d.err, d.class = fmt.Errorf("idempotency_id %q: %w", part.IdempotencyID, err), dlqInvalid
		}
	}
}

// decodeKind decodes a record whose wire.KindHeader is kind.
func decodeKind(kind, value []byte, d *decoded) {
	var err error
	switch string(kind) {
	case wire.KindAssignment:
		var a wire.Assignment
		if a, err = wire.DecodeAssignment(value); err == nil {
			d.assign = &a
		}
	case wire.KindDispatch:
		var w wire.Dispatch
		if w, err = wire.DecodeDispatch(value); err == nil {
			d.dispatch = &w
		}
	case wire.KindRecompute:
		var rc wire.Recompute
		if rc, err = wire.DecodeRecompute(value); err == nil {
			d.recompute = &rc
		}
	default:
		d.err, d.class = fmt.Errorf("%w: message kind %q", wire.ErrVersion, kind), dlqVersion
		return
	}
	switch {
	case errors.Is(err, wire.ErrVersion):
		d.err, d.class = err, dlqVersion
	case errors.Is(err, wire.ErrInvalid):
		d.err, d.class = err, dlqInvalid
	case err != nil:
		d.err, d.class = err, dlqDecode
	}
}

// parallelDecodeMin is the batch size from which decoding is split over
// the CPUs: JSON decoding is most of a record's cost.
const parallelDecodeMin = 256

// decodeAll decodes recs into out (reused), in parallel for large polls.
func decodeAll(recs []*kgo.Record, out []decoded) []decoded {
	if cap(out) < len(recs) {
		out = make([]decoded, len(recs))
	}
	out = out[:len(recs)]
	workers := runtime.GOMAXPROCS(0)
	if len(recs) < parallelDecodeMin || workers < 2 {
		for i, r := range recs {
			decode(r, &out[i])
		}
		return out
	}
	var wg sync.WaitGroup
	chunk := (len(recs) + workers - 1) / workers
	for lo := 0; lo < len(recs); lo += chunk {
		hi := min(lo+chunk, len(recs))
		wg.Go(func() {
			for i := lo; i < hi; i++ {
				decode(recs[i], &out[i])
			}
		})
	}
	wg.Wait()
	return out
}

// process turns one decoded record into a row of st's block, or into a
// dead letter. It fails only when ctx ends before a dead letter was
// produced.
func (c *consumer) process(ctx context.Context, st *partState, r *kgo.Record, d *decoded, now time.Time) error {
	if until := st.periods.replayUntil; until > 0 {
		if r.Offset < until {
			if d.err == nil && d.recompute != nil {
				// Run again once the machines are rebuilt (a request
				// runs once: its result is stored; this one may have
				// been cut short). Not now: its flush would save
				// machines that have not seen the records up to until.
				st.periods.recomputes = append(st.periods.recomputes, deferredRecompute{rc: d.recompute, offset: r.Offset})
			}
			c.replay(st, r, d, now)
			if r.Offset == until-1 {
				st.periods.replayUntil = 0
				return c.runDeferred(ctx, st, now)
			}
			return nil
		}
		st.periods.replayUntil = 0
		if err := c.runDeferred(ctx, st, now); err != nil || st.rewound {
			return err
		}
	}
	if d.err != nil {
		return c.deadLetter(ctx, st, r, d.class, d.err, now)
	}
	if d.dup {
		c.m.duplicates.Inc()
		st.consumed(r, now)
		return nil
	}
	if d.assign != nil {
		c.applyAssignment(st, d.assign, r.Offset, now)
		st.consumed(r, now)
		return nil
	}
	if d.dispatch != nil {
		c.applyDispatch(st, d.dispatch, r.Offset, now)
		st.consumed(r, now)
		return nil
	}
	if d.recompute != nil {
		if err := c.applyRecompute(ctx, st, d.recompute, r.Offset, now); err != nil {
			return err // ctx done: r stays unconsumed
		}
		if !st.rewound { // else read again, r with it
			st.consumed(r, now)
		}
		return nil
	}
	part, eventID := &d.part, d.eventID

	cat := c.master.get()
	if part.Product != "" && d.productID == 0 && !cat.HasCode(part.Site, part.Product) {
		// Possibly a product created since the last reload.
		cat = c.master.reloadForUnknownCode(ctx)
	}
	res := resolveProduct(cat, part, d.productID)
	row := chstore.PartRow{
		ID:                chstore.PartID(r.Partition, r.Offset),
		EventID:           eventID,
		Site:              part.Site,
		LocationKind:      part.LocationKind,
		LocationID:        part.LocationID,
		ExternalID:        part.ExternalID,
		ProductID:         res.ID,
		ProductCode:       res.Code,
		ProductReported:   part.Product,
		ProductResolution: string(res.Resolution),
		Quantity:          part.Quantity,
		Quality:           part.Quality,
		CycleTime:         part.CycleTime,
		HasCycleTime:      part.HasCycleTime,
		RecordedMs:        part.RecordedAtMs,
		RecordedDefaulted: part.RecordedDefaulted,
		ReceivedMs:        part.ReceivedAtMs,
		IdempotencyID:     d.idemID,
		ProcessedMs:       now.UnixMilli(),
		Topic:             r.Topic,
		Partition:         r.Partition,
		Offset:            r.Offset,
	}
	if !part.HasCycleTime {
		row.CycleTime = 0
	}
	if part.Quality == wire.QualityScrap {
		row.Reason = part.Reason
		row.ReasonID = cat.Reason(part.Site, part.Reason)
	}
	if st.block.Len() == 0 {
		st.firstRow = r.Offset
	}
	if ideal := res.IdealCycleTime; ideal > 0 && !math.IsInf(ideal, 0) {
		row.IdealCycleTime = ideal
	}
	if err := st.block.Append(&row); err != nil {
		return c.deadLetter(ctx, st, r, dlqRow, err, now)
	}
	st.resolutions.add(res.Resolution)
	st.block.SetLastOEEClass(string(c.feedPart(st, part, row.IdealCycleTime, r.Offset, now)))
	st.consumed(r, now)
	return nil
}

// replay feeds a record that ClickHouse already holds to the period state
// machines only: no row, no dead letter, no commit (see periods.go).
func (c *consumer) replay(st *partState, r *kgo.Record, d *decoded, now time.Time) {
	c.m.replayed.Inc()
	switch {
	case d.err != nil, d.dup:
	case d.assign != nil:
		c.applyAssignment(st, d.assign, r.Offset, now)
	case d.dispatch != nil:
		c.applyDispatch(st, d.dispatch, r.Offset, now)
	case d.recompute != nil: // run by process
	default:
		p := &d.part
		res := resolveProduct(c.master.get(), p, d.productID)
		c.feedPart(st, p, max(res.IdealCycleTime, 0), r.Offset, now)
	}
}

// resolveProduct resolves the product of part p; productID is the product
// its sender resolved the code to (0: none), taken when the catalog does
// not know the code yet (a product created a moment before).
func resolveProduct(cat *resolve.Catalog, p *wire.Part, productID uint64) resolve.Result {
	res := cat.Product(p.Site, p.Product, p.CycleTime, p.HasCycleTime)
	if productID != 0 && p.Product != "" && res.Resolution != resolve.ByCode {
		return resolve.Result{ID: productID, Code: p.Product, Resolution: resolve.ByCode}
	}
	return res
}

// deadLetter produces r to the dead-letter topic and waits for the
// acknowledgement (acks=all), retrying until it succeeds: a record is
// never skipped without a trace. Only then is r counted as consumed.
func (c *consumer) deadLetter(ctx context.Context, st *partState, r *kgo.Record, class string, reason error, now time.Time) error {
	headers := make([]kgo.RecordHeader, 0, len(r.Headers)+5)
	headers = append(headers, r.Headers...)
	headers = append(headers,
		kgo.RecordHeader{Key: HeaderDLQReason, Value: []byte(reason.Error())},
		kgo.RecordHeader{Key: HeaderDLQClass, Value: []byte(class)},
		kgo.RecordHeader{Key: HeaderDLQSourceTopic, Value: []byte(r.Topic)},
		kgo.RecordHeader{Key: HeaderDLQSourcePartition, Value: []byte(strconv.FormatInt(int64(r.Partition), 10))},
		kgo.RecordHeader{Key: HeaderDLQSourceOffset, Value: []byte(strconv.FormatInt(r.Offset, 10))},
	)
	for attempt := 1; ; attempt++ {
		dl := &kgo.Record{Topic: c.cfg.DLQTopic, Key: r.Key, Value: r.Value, Timestamp: r.Timestamp, Headers: headers}
		pctx, cancel := context.WithTimeout(ctx, dlqTimeout)
		err := c.cl.ProduceSync(pctx, dl).FirstErr()
		cancel()
		if err == nil {
			break
		}
		c.m.dlqErrors.Inc()
		c.logger.Error("producing a dead letter failed; the partition waits until it succeeds",
			"dlq_topic", c.cfg.DLQTopic, "partition", r.Partition, "offset", r.Offset, "attempt", attempt, "err", err)
		if !sleep(ctx, backoff(attempt, retryMin, retryMax)) {
			return ctx.Err()
		}
	}
	c.m.dlq.WithLabelValues(class).Inc()
	c.logger.Warn("record sent to the dead-letter topic", "class", class, "reason", reason.Error(),
		"partition", r.Partition, "offset", r.Offset)
	st.consumed(r, now)
	return nil
}
