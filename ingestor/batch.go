package ingestor

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/takt/takt/internal/auth"
	"github.com/takt/takt/internal/httpx"
	"github.com/takt/takt/internal/ratelimit"
	"github.com/takt/takt/internal/wire"
)

// BatchPath is the batch ingest endpoint: {"parts":[{...}, ...]}, each item
// shaped like the "part" object of Path.
const BatchPath = "/api/external/production/process_parts"

// MaxBatchParts is the most items one batch may carry.
const MaxBatchParts = 1000

// maxDepth bounds the nesting skipped inside a rejected item, so a hostile
// body cannot recurse the scanner deep.
const maxDepth = 32

// batchItem is one item of a batch: its parsed message or why it was
// rejected (a *formatError).
type batchItem struct {
	in  partInput
	err error
	// fp is the fingerprint of the item's JSON text, taken when it
	// carries an idempotency key.
	fp fingerprint
}

// parseParts parses the body of a process_parts request. A body that is not
// {"parts":[...]} with 1..max items, or is not well-formed JSON, fails as a
// whole (a *formatError); an item that is well-formed JSON but not a valid
// part is rejected alone, with the message the single call would give for
// it as its "part". Byte offsets in messages count from the start of the
// body.
func parseParts(body []byte, now time.Time, max int) ([]batchItem, error) {
	s := scanner{b: body}
	var items []batchItem
	err := s.envelope("parts", '[', "parts must be a JSON array", "missing parts", unknownInBatch,
		func() (err error) {
			items, err = s.items(now, max)
			return err
		})
	if err != nil {
		return nil, err
	}
	if len(items) == 0 {
		return nil, formatErr("parts is empty")
	}
	return items, nil
}

// unknownInBatch is the error for a top-level field other than "parts": a
// single call's envelope says where it belongs.
func unknownInBatch(key []byte) error {
	if string(key) == "part" {
		return formatErr("unknown field \"part\" (a batch carries an array \"parts\"; single parts go to %s)", Path)
	}
	return formatErr("unknown field %s", quote(key))
}

// items reads the array of parts.
func (s *scanner) items(now time.Time, max int) ([]batchItem, error) {
	s.i++ // '['
	s.skipWS()
	if s.peek() == ']' {
		s.i++
		return nil, nil
	}
	items := make([]batchItem, 0, min(max, 64))
	for {
		if len(items) == max {
			return nil, formatErr("more than %d parts in one batch", max)
		}
		start := s.i
		var it batchItem
		switch s.peek() {
		case '{':
			// Fast path: parse in place. On a rejected item, go back and
			// skip it as plain JSON: a syntax error fails the whole body,
			// anything else rejects only this item.
			if err := s.part(&it.in, now); err == nil {
				it.err = it.in.finish(now)
				if it.in.IdempotencyKey != "" {
					it.fp = sha256.Sum256(s.b[start:s.i])
				}
			} else {
				it = batchItem{err: err}
				s.i = start
				if err := s.skip(0); err != nil {
					return nil, err
				}
			}
		case 'n':
			if err := s.literal("null"); err != nil {
				return nil, err
			}
			it.err = formatErr("missing part")
		default:
			if err := s.skip(0); err != nil {
				return nil, err
			}
			it.err = formatErr("part must be a JSON object")
		}
		items = append(items, it)
		s.skipWS()
		switch s.peek() {
		case ',':
			s.i++
			s.skipWS()
		case ']':
			s.i++
			return items, nil
		default:
			return nil, s.syntax("expected ',' or ']'")
		}
	}
}

// skip reads any JSON value, checking its syntax.
func (s *scanner) skip(depth int) error {
	if depth > maxDepth {
		return s.syntax("nested too deep")
	}
	switch s.peek() {
	case '{', '[':
		closer := byte('}')
		if s.peek() == '[' {
			closer = ']'
		}
		obj := closer == '}'
		s.i++
		s.skipWS()
		if s.peek() == closer {
			s.i++
			return nil
		}
		for {
			if obj {
				if _, err := s.key(); err != nil {
					return err
				}
			}
			if err := s.skip(depth + 1); err != nil {
				return err
			}
			s.skipWS()
			switch s.peek() {
			case ',':
				s.i++
				s.skipWS()
			case closer:
				s.i++
				return nil
			default:
				return s.syntax("expected ',' or '" + string(closer) + "'")
			}
		}
	default:
		_, err := s.value()
		return err
	}
}

// batchHandler serves POST BatchPath with the single call's code for
// authentication, validation, location and event ids.
type batchHandler struct {
	*handler
	maxBody      int
	maxParts     int
	bodyTooLarge []byte
	m            *batchMetrics
	bufs         sync.Pool // *[]byte request body buffers
}

func newBatchHandler(h *handler, maxBody int, m *batchMetrics) *batchHandler {
	b := &batchHandler{handler: h, maxBody: maxBody, maxParts: MaxBatchParts, m: m}
	b.bodyTooLarge = errorBody(fmt.Sprintf("Request body too large: limit is %d bytes", maxBody))
	b.bufs.New = func() any {
		buf := make([]byte, 0, min(64<<10, maxBody+1))
		return &buf
	}
	return b
}

// batchResult is the outcome of one batch request.
type batchResult struct {
	result          // the request as a whole: auth and body errors, the status
	items  []result // per item, when the body parsed
	counts struct{ accepted, rejected, failed int }
}

// serve is the gin handler of POST BatchPath.
func (b *batchHandler) serve(c *gin.Context) {
	received := b.now()
	var res batchResult
	b.process(c.Request, received, &res)
	body := res.body
	if res.items != nil {
		body = appendBatchBody(make([]byte, 0, 64+40*len(res.items)), &res)
	}
	if res.status == http.StatusTooManyRequests {
		c.Header("Retry-After", ratelimit.RetryAfterHeader(res.retry))
	}
	if res.replayed && res.items != nil {
		c.Header(idemReplayedHeader, "true")
	}
	httpx.Raw(c, res.status, body)
	b.m.answered(res.status)
	b.handler.m.answeredKey(res.keyID, res.status)
	b.m.accepted.Add(float64(res.counts.accepted))
	b.m.rejected.Add(float64(res.counts.rejected))
	b.m.failed.Add(float64(res.counts.failed))
	if res.status >= 500 && b.errLog.allow(received) {
		b.logger.Error("process parts failed", "status", res.status, "key_prefix", res.prefix,
			"parts", len(res.items), "failed", res.counts.failed, "err", res.err)
	}
	if c.Request.URL.RawQuery != "" {
		if debug, _ := strconv.ParseBool(c.Query("debug")); debug && b.debugLog.allow(received) {
			b.logger.Info("process parts (debug)", "remote", c.Request.RemoteAddr, "key_prefix", res.prefix,
				"status", res.status, "parts", len(res.items), "accepted", res.counts.accepted,
				"rejected", res.counts.rejected, "failed", res.counts.failed,
				"duration_ms", float64(b.now().Sub(received).Microseconds())/1000, "err", res.err)
		}
	}
}

// process authenticates, parses, builds every valid item's message,
// produces them all, and waits for every ack. The answer is 200 only when
// no item failed on the server side (a rejected item is the client's
// problem, told in its result); otherwise 500, with the items that made it
// to Kafka marked 200 and the others 500.
func (b *batchHandler) process(r *http.Request, received time.Time, res *batchResult) {
	ctx := r.Context()
	p, ok := b.authenticate(r, &res.result)
	if !ok {
		return
	}
	if len(r.Header[idemKeyHeader]) > 0 {
		res.status, res.body = http.StatusBadRequest, errorBody("Idempotency-Key applies to "+Path+"; in a batch, give each part an idempotency_key")
		return
	}
	items, err := b.readAndParse(r, received)
	if err != nil {
		res.refuseBody(err, b.bodyTooLarge)
		return
	}
	// One token per part, valid or not: the whole batch or nothing.
	if !b.limit(ctx, p, len(items), &res.result) {
		return
	}

	res.items = make([]result, len(items))
	claims := b.claimItems(ctx, p, items, res.items)
	if claims != nil {
		defer b.finishClaims(ctx, claims, func(i int) (int, []byte) { return res.items[i].status, res.items[i].body })
	}
	toSend := make([]int, 0, len(items))
	for i := range items {
		it, ir := &items[i], &res.items[i]
		if ir.status != 0 {
			continue // answered by its idempotency key
		}
		if it.err != nil {
			ir.status, ir.body, ir.err = http.StatusUnprocessableEntity, errorBody("Invalid message format: "+it.err.Error()), it.err
			continue
		}
		if !b.build(ctx, p, &it.in, received, ir) {
			continue
		}
		toSend = append(toSend, i)
	}
	errs := b.produceAll(ctx, res.items, toSend, nil)
	for k, i := range toSend {
		ir := &res.items[i]
		if errs[k] != nil {
			ir.status, ir.body, ir.err = http.StatusInternalServerError, bodyInternal, errs[k]
			continue
		}
		ir.status, ir.body = http.StatusOK, bodyOK
	}
	res.status = http.StatusOK
	res.replayed = true
	for i := range res.items {
		ir := &res.items[i]
		res.replayed = res.replayed && ir.replayed
		switch {
		case ir.status == http.StatusOK:
			res.counts.accepted++
		case ir.status >= 500:
			res.counts.failed++
			res.status = http.StatusInternalServerError
			if res.err == nil {
				res.err = fmt.Errorf("item %d: %w", i, ir.err)
			}
		default:
			res.counts.rejected++
		}
	}
}

// claimItems claims the idempotency keys of the valid items that carry
// one, and answers (in results) the items a key decides: a replay, a key
// used for another body, one still in progress, one repeated within the
// batch. It returns the claims by item index (nil entries for items
// without one), or nil when no item has a key.
func (h *handler) claimItems(ctx context.Context, p auth.Principal, items []batchItem, results []result) []*idemClaim {
	var claims []*idemClaim
	var open []*idemClaim
	var first map[string]int
	scope := ""
	for i := range items {
		it := &items[i]
		if it.err != nil || it.in.IdempotencyKey == "" {
			continue
		}
		if claims == nil {
			claims, first, scope = make([]*idemClaim, len(items)), map[string]int{}, idemScope(p)
		}
		if j, ok := first[it.in.IdempotencyKey]; ok {
			ir := &results[i]
			ir.status = http.StatusUnprocessableEntity
			ir.body = errorBody(fmt.Sprintf("Invalid message format: idempotency_key repeats that of part %d", j))
			continue
		}
		first[it.in.IdempotencyKey] = i
		if h.idem == nil {
			continue
		}
		claims[i] = h.idem.newClaim(scope, it.in.IdempotencyKey, it.fp)
		open = append(open, claims[i])
	}
	if len(open) == 0 {
		return nil
	}
	h.idem.claim(ctx, open)
	for i, c := range claims {
		if c != nil {
			c.answer(&results[i])
		}
	}
	return claims
}

func (b *batchHandler) readAndParse(r *http.Request, received time.Time) ([]batchItem, error) {
	if r.ContentLength > int64(b.maxBody) {
		return nil, errBodyTooLarge
	}
	bp := b.bufs.Get().(*[]byte)
	defer b.bufs.Put(bp)
	body, err := readLimited(r.Body, (*bp)[:0], b.maxBody)
	*bp = body[:0]
	if err != nil {
		return nil, err
	}
	return parseParts(body, received, b.maxParts)
}

// produceAll hands the messages of items[idx...] to the producer at once
// (so they share produce requests) and waits for every promise, or for the
// produce timeout. errs[k] is the outcome of items[idx[k]]. headers, when
// not nil, gives the record headers of item i.
func (b *batchHandler) produceAll(ctx context.Context, items []result, idx []int, headers func(i int) []kgo.RecordHeader) []error {
	return b.startProduce(ctx, items, idx, headers).wait()
}

// produceWait is a set of records handed to the producer together: wait
// returns their outcomes.
type produceWait struct {
	b       *batchHandler
	ctx     context.Context
	cancel  context.CancelFunc
	items   []result
	idx     []int
	errs    []error
	pending []bool
	waiting int
	acks    chan produceAck
	start   time.Time
}

type produceAck struct {
	k   int
	err error
}

// startProduce hands the messages of items[idx...] to the producer at
// once and returns without waiting; the wait (at most the produce
// timeout from now) is the returned value's. items must not change until
// wait returned.
func (b *batchHandler) startProduce(ctx context.Context, items []result, idx []int, headers func(i int) []kgo.RecordHeader) *produceWait {
	w := &produceWait{b: b, items: items, idx: idx, errs: make([]error, len(idx))}
	if len(idx) == 0 {
		return w
	}
	w.ctx, w.cancel = context.WithTimeout(ctx, b.produceTimeout)
	// Buffered for every record: a promise that fires after the timeout
	// must not block the producer.
	w.acks = make(chan produceAck, len(idx))
	w.pending = make([]bool, len(idx))
	w.start = time.Now()
	acks := w.acks
	// The messages are written one after the other into one buffer, each
	// record's value its own piece of it (its capacity cut at its end):
	// one allocation for the batch, which lives as long as a record of it
	// does. Should the hint fall short, append moves on to a new buffer
	// and the values already handed over keep the old one.
	size := 0
	for _, i := range idx {
		size += wire.EncodedSizeHint(&items[i].part)
	}
	buf := make([]byte, 0, size)
	for k, i := range idx {
		p := &items[i].part
		start := len(buf)
		var err error
		if buf, err = wire.AppendEncode(buf, p); err != nil {
			w.errs[k] = fmt.Errorf("encode part: %w", err)
			continue
		}
		val := buf[start:len(buf):len(buf)]
		w.pending[k] = true
		w.waiting++
		var hs []kgo.RecordHeader
		if headers != nil {
			hs = headers(i)
		}
		b.prod.Produce(w.ctx, &kgo.Record{Topic: b.topic, Key: p.Key(), Value: val, Headers: hs},
			func(_ *kgo.Record, err error) { acks <- produceAck{k, err} })
	}
	return w
}

// wait waits for every promise of w, or for the produce timeout, and
// returns the outcomes: errs[k] is that of items[idx[k]].
func (w *produceWait) wait() []error {
	if len(w.idx) == 0 {
		return w.errs
	}
	defer w.cancel()
	errs, pending := w.errs, w.pending
wait:
	for ; w.waiting > 0; w.waiting-- {
		select {
		case a := <-w.acks:
			pending[a.k] = false
			errs[a.k] = a.err
		case <-w.ctx.Done():
			for k := range pending {
				if pending[k] {
					errs[k] = w.ctx.Err()
				}
			}
			break wait
		}
	}
	b := w.b
	b.m.produceSeconds.Observe(time.Since(w.start).Seconds())
	for k, err := range errs {
		if err != nil {
			b.handler.m.produceErrors.Inc()
			errs[k] = fmt.Errorf("%w: event %s to %s: %w", errProduceFailed, w.items[w.idx[k]].part.EventID, b.topic, err)
		}
	}
	return errs
}

// appendBatchBody writes the answer of a parsed batch:
//
//	{"accepted":n,"rejected":n,"failed":n,"results":[{"index":0,"status":200},
//	 {"index":1,"status":422,"error":"..."}, ...]}
//
// An item's error is the "error" of the body the single call would have
// answered for it, byte for byte.
func appendBatchBody(dst []byte, res *batchResult) []byte {
	dst = append(dst, `{"accepted":`...)
	dst = strconv.AppendInt(dst, int64(res.counts.accepted), 10)
	dst = append(dst, `,"rejected":`...)
	dst = strconv.AppendInt(dst, int64(res.counts.rejected), 10)
	dst = append(dst, `,"failed":`...)
	dst = strconv.AppendInt(dst, int64(res.counts.failed), 10)
	dst = append(dst, `,"results":[`...)
	for i := range res.items {
		ir := &res.items[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"index":`...)
		dst = strconv.AppendInt(dst, int64(i), 10)
		dst = append(dst, `,"status":`...)
		dst = strconv.AppendInt(dst, int64(ir.status), 10)
		if ir.replayed {
			dst = append(dst, `,"replayed":true`...)
		}
		if ir.status == http.StatusOK {
			dst = append(dst, '}')
			continue
		}
		// ir.body is {"error":"..."}: splice its field in.
		dst = append(dst, ',')
		dst = append(dst, ir.body[1:]...)
	}
	return append(dst, "]}"...)
}

// batchMetrics are the batch endpoint's own metrics; produce errors count
// in the single call's counter.
type batchMetrics struct {
	requests       *prometheus.CounterVec
	accepted       prometheus.Counter
	rejected       prometheus.Counter
	failed         prometheus.Counter
	produceSeconds prometheus.Histogram
}

func newBatchMetrics(reg prometheus.Registerer) (*batchMetrics, error) {
	parts := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "takt_ingestor_batch_parts_total",
		Help: "Items of process_parts requests, by outcome: accepted (on Kafka), rejected (invalid, 4xx), failed (5xx).",
	}, []string{"outcome"})
	m := &batchMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "takt_ingestor_batch_requests_total",
			Help: "process_parts requests answered, by HTTP status code.",
		}, []string{"code"}),
		accepted: parts.WithLabelValues("accepted"),
		rejected: parts.WithLabelValues("rejected"),
		failed:   parts.WithLabelValues("failed"),
		produceSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "takt_ingestor_batch_produce_duration_seconds",
			Help:    "Time from handing a batch's records to the producer to the last ack (or the timeout).",
			Buckets: prometheus.ExponentialBuckets(0.00025, 2, 15),
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.requests, parts, m.produceSeconds} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register ingestor batch metrics: %w", err)
			}
		}
	}
	return m, nil
}

func (m *batchMetrics) answered(status int) {
	m.requests.WithLabelValues(strconv.Itoa(status)).Inc()
}
