package ingestor

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/takt/takt/internal/auth"
	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/httpx"
	"github.com/takt/takt/internal/locations"
	"github.com/takt/takt/internal/ratelimit"
	"github.com/takt/takt/internal/wire"
)

// Path is the ingest endpoint.
const Path = "/api/external/production/process_part"

// keyHeader is "API-KEY" in canonical form, so the header map is read
// without canonicalising the name on every request.
const keyHeader = "Api-Key"

// Answers with fixed bodies.
var (
	bodyOK           = []byte(`{"message":"Part processed successfully"}`)
	bodyInvalidKey   = []byte(`{"error":"Invalid API key"}`)
	bodyInternal     = []byte(`{"error":"Internal server error"}`)
	bodyRateLimited  = []byte(`{"error":"Rate limit exceeded"}`)
	bodyTooManyFails = []byte(`{"error":"Too many failed authentications"}`)
	errBodyTooLarge  = errors.New("request body too large")
	errProduceFailed = errors.New("produce failed")
)

// keyChecker authenticates API keys (*auth.Authenticator) for a client
// address (http.Request.RemoteAddr).
type keyChecker interface {
	AuthenticateFrom(ctx context.Context, addr, key string) (auth.Principal, error)
}

// locator resolves external ids (*locations.Cache). It returns
// locations.ErrNotFound for unknown ids.
type locator interface {
	Lookup(ctx context.Context, externalID string) (chstore.Location, error)
}

// producer sends records (*kgo.Client). promise is called exactly once.
type producer interface {
	Produce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error))
}

// handler serves POST Path. It is safe for concurrent use.
type handler struct {
	keys           keyChecker
	locs           locator
	prod           producer
	topic          string
	maxBody        int
	produceTimeout time.Duration
	now            func() time.Time
	logger         *slog.Logger
	m              *metrics

	bodyTooLarge []byte
	bufs         sync.Pool // *[]byte request body buffers
	zones        sync.Map  // time zone name -> *time.Location (nil: unknown)
	errLog       logLimiter
	debugLog     lineBudget // ?debug=true lines

	// idem keeps the records of idempotency keys (nil: keys are not
	// checked at the ingestor; the processor still drops repeats).
	idem *idemStore

	// limiter applies each key's rate limit (nil: none); it fails open
	// when Redis is down.
	limiter interface {
		Allow(ctx context.Context, keyID uint64, cost int) ratelimit.Decision
	}
}

func newHandler(keys keyChecker, locs locator, prod producer, topic string, maxBody int,
	produceTimeout time.Duration, logger *slog.Logger, m *metrics) *handler {
	h := &handler{
		keys: keys, locs: locs, prod: prod, topic: topic, maxBody: maxBody,
		produceTimeout: produceTimeout, now: time.Now, logger: logger, m: m,
		errLog: logLimiter{every: time.Second}, debugLog: lineBudget{max: maxDebugLines},
	}
	h.bodyTooLarge = errorBody(fmt.Sprintf("Request body too large: limit is %d bytes", maxBody))
	h.bufs.New = func() any {
		b := make([]byte, 0, min(1024, maxBody+1))
		return &b
	}
	return h
}

// result is the outcome of one request.
type result struct {
	status int
	body   []byte
	err    error // why, for logs; nil on success and plain client errors
	prefix string
	keyID  uint64        // the authenticated key's id; 0 before or without one
	retry  time.Duration // Retry-After of a 429 or 409
	part   wire.Part
	parsed bool
	// replayed: the answer is the stored one of an earlier request with
	// the same idempotency key.
	replayed bool
}

// refuseBody answers a body that could not be read or parsed: 413 with
// tooLarge over the size limit, else 422 with the parser's message (or a
// plain one when the body could not be read).
func (res *result) refuseBody(err error, tooLarge []byte) {
	switch {
	case errors.Is(err, errBodyTooLarge):
		res.status, res.body = http.StatusRequestEntityTooLarge, tooLarge
	case isFormatError(err):
		res.status, res.body = http.StatusUnprocessableEntity, errorBody("Invalid message format: "+err.Error())
	default:
		res.status, res.body = http.StatusUnprocessableEntity, errorBody("Invalid message format: could not read the body")
	}
	res.err = err
}

// serve is the gin handler of POST Path.
func (h *handler) serve(c *gin.Context) {
	received := h.now()
	var res result
	h.process(c.Request, received, &res)
	if res.status == http.StatusTooManyRequests || res.retry > 0 {
		c.Header("Retry-After", ratelimit.RetryAfterHeader(res.retry))
	}
	if res.replayed {
		c.Header(idemReplayedHeader, "true")
	}
	httpx.Raw(c, res.status, res.body)
	h.m.answered(res.status)
	h.m.answeredKey(res.keyID, res.status)
	if res.status >= 500 && h.errLog.allow(received) {
		h.logger.Error("process part failed", "status", res.status, "key_prefix", res.prefix, "err", res.err)
	}
	if c.Request.URL.RawQuery != "" {
		if debug, _ := strconv.ParseBool(c.Query("debug")); debug && h.debugLog.allow(received) {
			h.logDebug(c, received, &res)
		}
	}
}

// process does the work of one request, in the order the contract fixes:
// authentication, then the message, then the location, then Kafka.
func (h *handler) process(r *http.Request, received time.Time, res *result) {
	ctx := r.Context()
	p, ok := h.authenticate(r, res)
	if !ok || !h.limit(ctx, p, 1, res) {
		return
	}

	hdrKey, ok := idemHeader(r, res)
	if !ok {
		return
	}
	in, fp, err := h.readAndParse(r, received, hdrKey != "")
	if err != nil {
		res.refuseBody(err, h.bodyTooLarge)
		return
	}
	if hdrKey != "" {
		if in.IdempotencyKey != "" && in.IdempotencyKey != hdrKey {
			res.status, res.body = http.StatusBadRequest, errorBody("Idempotency-Key differs from the part's idempotency_key")
			return
		}
		in.IdempotencyKey = hdrKey
	}
	if in.IdempotencyKey != "" && h.idem != nil {
		claim := h.idem.newClaim(idemScope(p), in.IdempotencyKey, fp)
		h.idem.claim(ctx, []*idemClaim{claim})
		if claim.answer(res) {
			return
		}
		defer h.finishClaims(ctx, []*idemClaim{claim}, func(int) (int, []byte) { return res.status, res.body })
	}

	if !h.build(ctx, p, &in, received, res) {
		return
	}
	if err := h.produce(ctx, &res.part); err != nil {
		res.status, res.body, res.err = http.StatusInternalServerError, bodyInternal, err
		return
	}
	res.status, res.body = http.StatusOK, bodyOK
}

// idemHeader returns the Idempotency-Key header ("" when absent). When it
// returns false, the header is malformed and res holds the 400.
func idemHeader(r *http.Request, res *result) (string, bool) {
	v := r.Header[idemKeyHeader]
	switch len(v) {
	case 0:
		return "", true
	case 1:
		if err := checkIdempotencyKey(idemKeyHeader, []byte(v[0])); err != nil {
			res.status, res.body, res.err = http.StatusBadRequest, errorBody("Invalid "+err.Error()), err
			return "", false
		}
		return v[0], true
	}
	res.status, res.body = http.StatusBadRequest, errorBody("Invalid Idempotency-Key: more than one header")
	return "", false
}

// finishClaims records the answers of the claims a request owns. It runs
// when the request is answered, also when the client has gone: a bounded
// context of its own.
func (h *handler) finishClaims(ctx context.Context, cs []*idemClaim, answer func(i int) (int, []byte)) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	h.idem.finish(ctx, cs, answer)
}

// authenticate checks the API-KEY header and the ingest scope. When it
// returns false, res holds the answer. A request with more than one
// API-KEY header is refused: which one counts would depend on who reads it.
func (h *handler) authenticate(r *http.Request, res *result) (auth.Principal, bool) {
	var key string
	switch v := r.Header[keyHeader]; len(v) {
	case 0:
	case 1:
		key = v[0]
	default:
		res.status, res.body, res.err = http.StatusUnauthorized, bodyInvalidKey, errors.New("more than one API-KEY header")
		return auth.Principal{}, false
	}
	if auth.WellFormed(key) {
		res.prefix = auth.Prefix(key)
	}
	p, err := h.keys.AuthenticateFrom(r.Context(), r.RemoteAddr, key)
	retry, limited := auth.RetryAfter(err)
	switch {
	case auth.IsInvalid(err):
		res.status, res.body = http.StatusUnauthorized, bodyInvalidKey
		return p, false
	case limited:
		res.status, res.body, res.retry, res.err = http.StatusTooManyRequests, bodyTooManyFails, retry, err
		return p, false
	case err != nil:
		res.status, res.body, res.err = http.StatusInternalServerError, bodyInternal, err
		return p, false
	}
	res.keyID = p.KeyID
	if !p.HasScope(auth.ScopeIngest) {
		res.status, res.body, res.err = http.StatusUnauthorized, bodyInvalidKey, errors.New("key lacks the ingest scope")
		return p, false
	}
	return p, true
}

// build resolves the location of a parsed message for principal p and
// makes its Kafka message in res.part (res.parsed). When it returns false,
// res holds the answer: 422 for an unknown (or invisible) location or a
// local time that cannot be resolved, 500 when the look-up failed.
func (h *handler) build(ctx context.Context, p auth.Principal, in *partInput, received time.Time, res *result) bool {
	loc, err := h.locs.Lookup(ctx, in.ExternalID)
	if err == nil && !p.CanSeeSite(loc.Site) {
		// Another tenant's location is indistinguishable from none.
		err = fmt.Errorf("site %d not among the key owner's sites: %w", loc.Site, locations.ErrNotFound)
	}
	switch {
	case errors.Is(err, locations.ErrNotFound):
		res.status, res.body, res.err = http.StatusUnprocessableEntity, errorBody("Location not found for external_id: "+in.ExternalID), err
		return false
	case err != nil:
		res.status, res.body, res.err = http.StatusInternalServerError, bodyInternal, err
		return false
	}
	if in.Local {
		if err := in.resolveLocal(h.zone(loc.Timezone), loc.Timezone, received); err != nil {
			res.status, res.body, res.err = http.StatusUnprocessableEntity, errorBody("Invalid message format: "+err.Error()), err
			return false
		}
	}

	id, err := uuid.NewV7()
	if err != nil {
		res.status, res.body, res.err = http.StatusInternalServerError, bodyInternal, fmt.Errorf("event id: %w", err)
		return false
	}
	res.part = wire.Part{
		EventID:           id.String(),
		Site:              loc.Site,
		LocationKind:      loc.Kind,
		LocationID:        loc.ID,
		ExternalID:        in.ExternalID,
		Quantity:          in.Quantity,
		Quality:           in.Quality,
		Product:           in.Product,
		CycleTime:         in.CycleTime,
		HasCycleTime:      in.HasCycleTime,
		Reason:            in.Reason,
		RecordedAtMs:      in.RecordedAtMs,
		RecordedDefaulted: in.RecordedDefaulted,
		ReceivedAtMs:      received.UnixMilli(),
	}
	if in.IdempotencyKey != "" {
		res.part.IdempotencyID = idempotencyID(idemScope(p), in.IdempotencyKey)
	}
	res.parsed = true
	return true
}

// readAndParse reads the body into a pooled buffer and parses it. The
// parsed strings are copies, so the buffer goes back to the pool at once.
// The body's fingerprint is taken when keyed is set or the part carries an
// idempotency key.
func (h *handler) readAndParse(r *http.Request, received time.Time, keyed bool) (partInput, fingerprint, error) {
	if r.ContentLength > int64(h.maxBody) {
		return partInput{}, fingerprint{}, errBodyTooLarge
	}
	bp := h.bufs.Get().(*[]byte)
	defer h.bufs.Put(bp)
	b, err := readLimited(r.Body, (*bp)[:0], h.maxBody)
	*bp = b[:0]
	if err != nil {
		return partInput{}, fingerprint{}, err
	}
	in, err := parsePart(b, received)
	var fp fingerprint
	if err == nil && (keyed || in.IdempotencyKey != "") {
		fp = sha256.Sum256(b)
	}
	return in, fp, err
}

// readLimited appends all of body to b and fails with errBodyTooLarge as
// soon as more than limit bytes arrived.
func readLimited(body io.Reader, b []byte, limit int) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)] // grow
		}
		n, err := body.Read(b[len(b):min(cap(b), limit+1)])
		b = b[:len(b)+n]
		if len(b) > limit {
			return b, errBodyTooLarge
		}
		if errors.Is(err, io.EOF) {
			return b, nil
		}
		if err != nil {
			return b, fmt.Errorf("read body: %w", err)
		}
	}
}

// produce sends the part and waits for Kafka's ack. Only a nil promise
// error counts as written: a timeout or cancellation is a failure even
// though the record may still arrive later (the device retries; the event
// ids differ, which at-least-once delivery allows).
func (h *handler) produce(ctx context.Context, p *wire.Part, headers ...kgo.RecordHeader) error {
	val, err := wire.Encode(p)
	if err != nil {
		return fmt.Errorf("encode part: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, h.produceTimeout)
	defer cancel()
	done := make(chan error, 1)
	start := time.Now()
	h.prod.Produce(ctx, &kgo.Record{Topic: h.topic, Key: p.Key(), Value: val, Headers: headers},
		func(_ *kgo.Record, err error) { done <- err })
	select {
	case err = <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	h.m.produceSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		h.m.produceErrors.Inc()
		return fmt.Errorf("%w: event %s to %s: %w", errProduceFailed, p.EventID, h.topic, err)
	}
	return nil
}

// zone returns the named time zone, loaded once; nil when unknown.
func (h *handler) zone(name string) *time.Location {
	if v, ok := h.zones.Load(name); ok {
		return v.(*time.Location)
	}
	var loc *time.Location
	if name != "" {
		if l, err := time.LoadLocation(name); err == nil {
			loc = l
		} else {
			h.logger.Warn("unknown site time zone", "tz", name, "err", err)
		}
	}
	h.zones.Store(name, loc)
	return loc
}

func (h *handler) logDebug(c *gin.Context, received time.Time, res *result) {
	reqID := c.GetHeader("X-Request-ID")
	if reqID == "" || len(reqID) > 64 {
		reqID = uuid.NewString()
	}
	attrs := []any{
		"request_id", reqID,
		"remote", c.Request.RemoteAddr,
		"key_prefix", res.prefix,
		"status", res.status,
		"duration_ms", float64(h.now().Sub(received).Microseconds()) / 1000,
	}
	if res.err != nil {
		attrs = append(attrs, "err", res.err.Error())
	}
	if res.parsed {
		p := &res.part
		attrs = append(attrs, slog.Group("part",
			"event_id", p.EventID, "external_id", p.ExternalID, "site", p.Site,
			"location_kind", p.LocationKind, "location_id", p.LocationID,
			"quantity", p.Quantity, "quality", p.Quality, "product", p.Product,
			"cycle_time", p.CycleTime, "has_cycle_time", p.HasCycleTime, "reason", p.Reason,
			"recorded_at_ms", p.RecordedAtMs, "recorded_defaulted", p.RecordedDefaulted,
		))
	}
	h.logger.Info("process part (debug)", attrs...)
}

// errorBody returns {"error": msg}.
func errorBody(msg string) []byte {
	b, err := json.Marshal(struct {
		Error string `json:"error"`
	}{msg})
	if err != nil {
		return bodyInternal
	}
	return b
}

// metrics are the ingestor's own Prometheus metrics.
type metrics struct {
	requests       *prometheus.CounterVec
	byStatus       map[int]prometheus.Counter // pre-resolved children
	produceSeconds prometheus.Histogram
	produceErrors  prometheus.Counter
	// byKey counts answers per API key (its id, never the key or its
	// prefix), so an operator sees which device is refused or floods.
	// The ids are those of keys that authenticated: the label set grows
	// with the keys an operator issued, not with what clients send.
	byKey      *prometheus.CounterVec
	byKeyCache sync.Map // keyStatus -> prometheus.Counter of byKey
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "takt_ingestor_requests_total",
			Help: "process_part requests answered, by HTTP status code.",
		}, []string{"code"}),
		produceSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "takt_ingestor_produce_duration_seconds",
			Help:    "Time from handing a record to the producer to Kafka's ack (or failure).",
			Buckets: prometheus.ExponentialBuckets(0.00025, 2, 15), // 0.25 ms .. 4 s
		}),
		produceErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "takt_ingestor_produce_errors_total",
			Help: "Records Kafka did not acknowledge in time; each answered 500.",
		}),
		byKey: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "takt_ingestor_key_requests_total",
			Help: "process_part and process_parts requests answered, by the API key's id and HTTP status code (rejections are the codes other than 200); requests without a valid key are not counted here.",
		}, []string{"key_id", "code"}),
		byStatus: map[int]prometheus.Counter{},
	}
	for _, code := range []int{200, 401, 413, 422, 429, 500} {
		m.byStatus[code] = m.requests.WithLabelValues(strconv.Itoa(code))
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.requests, m.produceSeconds, m.produceErrors, m.byKey} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register ingestor metrics: %w", err)
			}
		}
	}
	return m, nil
}

func (m *metrics) answered(status int) {
	if c, ok := m.byStatus[status]; ok {
		c.Inc()
		return
	}
	m.requests.WithLabelValues(strconv.Itoa(status)).Inc()
}

// answeredKey counts one answer to the key with id keyID (0: none).
func (m *metrics) answeredKey(keyID uint64, status int) {
	if keyID == 0 {
		return
	}
	// The counter of a key and status is looked up once: formatting the
	// labels and hashing them on every request cost the hot path ~10 %.
	k := keyStatus{keyID, status}
	if c, ok := m.byKeyCache.Load(k); ok {
		c.(prometheus.Counter).Inc()
		return
	}
	c := m.byKey.WithLabelValues(strconv.FormatUint(keyID, 10), strconv.Itoa(status))
	m.byKeyCache.Store(k, c)
	c.Inc()
}

// keyStatus is a key id and an HTTP status.
type keyStatus struct {
	key    uint64
	status int
}

// maxDebugLines bounds the lines ?debug=true writes per second and
// process. Debug logging works for bad keys too (it helps to set a device
// up), so without a bound anyone could fill the server's disk with it.
const maxDebugLines = 100

// lineBudget lets max lines through per second.
type lineBudget struct {
	max int64

	mu     sync.Mutex
	second int64 // unix second of the current window
	used   int64
}

func (b *lineBudget) allow(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if s := now.Unix(); s != b.second {
		b.second, b.used = s, 0
	}
	if b.used >= b.max {
		return false
	}
	b.used++
	return true
}

// logLimiter lets one message through per interval, so an outage is
// logged without a line per request.
type logLimiter struct {
	every time.Duration
	last  atomic.Int64
}

func (l *logLimiter) allow(now time.Time) bool {
	last := l.last.Load()
	if now.UnixNano()-last < int64(l.every) {
		return false
	}
	return l.last.CompareAndSwap(last, now.UnixNano())
}
