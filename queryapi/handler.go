package queryapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/takt/takt/internal/auth"
	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/l2l"
	"github.com/takt/takt/internal/ratelimit"
	"github.com/takt/takt/internal/record"
)

// Prefix is the path under which record areas are served.
const Prefix = "/api/1.0/"

// keyHeader is the header that carries the API key, authArg the query
// argument that may carry it instead.
const (
	keyHeader = "L2LAUTH"
	authArg   = "auth"
)

// msgInternal answers failures that are the server's.
const msgInternal = "Internal server error"

// keyChecker authenticates API keys (*auth.Authenticator).
type keyChecker interface {
	Authenticate(ctx context.Context, key string) (auth.Principal, error)
}

// recordReader reads record areas (*chstore.Store).
type recordReader interface {
	Records(ctx context.Context, a *chstore.RecordArea, q l2l.Query, sites []uint64) (chstore.RecordPage, error)
	RecordsAfter(ctx context.Context, a *chstore.RecordArea, q l2l.Query, sites []uint64, after chstore.Cursor) (chstore.RecordPage, error)
	RecordsAt(ctx context.Context, a *chstore.RecordArea, q l2l.Query, sites []uint64, at []chstore.Cursor) (chstore.RecordPage, error)
	RecordByID(ctx context.Context, a *chstore.RecordArea, id uint64, q l2l.Query, sites []uint64) (chstore.RecordPage, error)
	// Areas returns the definitions of the areas the store holds.
	Areas() *record.Registry
}

// area is a served record area: its definition, how it is read, and the
// schema requests are parsed with (the area's fields and the configured
// limits).
type area struct {
	def    *record.Area
	rec    *chstore.RecordArea
	schema *l2l.Schema
}

// handler serves the record areas. It is safe for concurrent use.
type handler struct {
	keys  keyChecker
	store recordReader
	zones *zones
	areas map[string]*area
	// periodHistory reads productionperiods with include_history=true.
	periodHistory *area
	timeout       time.Duration
	logger        *slog.Logger
	m             *metrics
	bufs          sync.Pool // *[]byte answer buffers

	// users finds realuser (nil: a key may act only for its own user);
	// writes does POST, PUT and DELETE (nil: every area is read-only);
	// assigner gives production periods their reasons (nil: the area is
	// read-only); limiter applies each key's rate limit (nil: none).
	users    userFinder
	writes   *writer
	assigner *assigner
	limiter  rateLimiter
	cursors  *cursors // nil: deep offsets are always counted
	// feed serves the live change feed (nil: not enabled).
	feed *streams
	// wm is the parts watermark (nil: reads show every stored part and
	// carry no watermark; see Config.Watermark).
	wm *watermarks
	// actions are the action handlers by "<area>/<action>" (nil: actions
	// answer 405); actionNow is their clock.
	actions   map[string]actionFunc
	actionNow func() time.Time
}

// lookAheadPages is how many pages a read of parts in insertion order finds
// the ids of (see chstore.RecordArea.WithLookAhead): the paging loop's next
// lookAheadPages-1 pages then skip ClickHouse's scan for their ids.
const lookAheadPages = 5

// rateLimiter takes tokens from a key's bucket (*ratelimit.Limiter).
type rateLimiter interface {
	Allow(ctx context.Context, keyID uint64, cost int) ratelimit.Decision
}

// allow applies the key's rate limit to a request: one token per call. It
// answers 429 with Retry-After and returns false when the bucket is empty.
func (h *handler) allow(r *request, p auth.Principal) bool {
	if h.limiter == nil {
		return true
	}
	d := h.limiter.Allow(r.c.Request.Context(), p.KeyID, 1)
	if d.Allowed {
		return true
	}
	r.c.Header("Retry-After", ratelimit.RetryAfterHeader(d.RetryAfter))
	h.finish(r, http.StatusTooManyRequests, "rate_limited", l2l.Failure("Rate limit exceeded: retry later"))
	return false
}

func newHandler(keys keyChecker, store recordReader, z *zones, cfg Config, logger *slog.Logger, m *metrics) (*handler, error) {
	h := &handler{keys: keys, store: store, zones: z, areas: map[string]*area{},
		timeout: cfg.QueryTimeout, logger: logger, m: m}
	for _, def := range store.Areas().Areas() {
		rec, err := chstore.NewRecordArea(def)
		if err != nil {
			return nil, err
		}
		s, err := rec.Schema().WithLimits(cfg.DefaultLimit, cfg.MaxLimit)
		if err != nil {
			return nil, err
		}
		h.areas[def.Name] = &area{def: def, rec: rec.WithSchema(s).WithLookAhead(lookAheadPages), schema: s}
		// Every area's series from the start, so that a scrape before
		// and after a read tells what it cost.
		h.m.rowsRead.WithLabelValues(def.Name)
		h.m.bytesRead.WithLabelValues(def.Name)
	}
	rec, err := chstore.NewRecordArea(record.PeriodHistory)
	if err != nil {
		return nil, err
	}
	s, err := rec.Schema().WithLimits(cfg.DefaultLimit, cfg.MaxLimit)
	if err != nil {
		return nil, err
	}
	h.periodHistory = &area{def: record.PeriodHistory, rec: rec.WithSchema(s), schema: s}
	return h, nil
}

// routes adds the record-area routes to r. Paths are served with and
// without their trailing slash, so clients are never redirected.
func (h *handler) routes(r *gin.Engine) {
	r.RedirectTrailingSlash = false
	for _, p := range []string{Prefix + ":area", Prefix + ":area/"} {
		r.GET(p, h.list)
	}
	for _, p := range []string{Prefix + ":area/:id", Prefix + ":area/:id/"} {
		r.GET(p, h.one)
	}
	for _, p := range []string{Prefix + ":area", Prefix + ":area/", Prefix + ":area/:id", Prefix + ":area/:id/"} {
		r.POST(p, h.mutate)
		r.PUT(p, h.mutate)
		r.DELETE(p, h.mutate)
	}
	// Actions with a path argument (users/clock_in/<username>/); those
	// without one match :area/:id and are told apart there (actionOf).
	for _, p := range []string{Prefix + ":area/:id/:arg", Prefix + ":area/:id/:arg/"} {
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete} {
			r.Handle(m, p, h.actionPath)
		}
	}
	r.NoRoute(func(c *gin.Context) {
		h.fail(c, l2l.FormatOf(c.Request.URL.Query()), http.StatusNotFound, "Not found")
	})
	r.NoMethod(func(c *gin.Context) {
		h.fail(c, l2l.FormatOf(c.Request.URL.Query()), http.StatusMethodNotAllowed, "Method not allowed")
	})
}

// request is what list and one share: the checked caller and area, the
// parsed query, and where the answer goes.
type request struct {
	c      *gin.Context
	start  time.Time
	area   *area
	label  string // area name for metrics ("unknown" when not served)
	write  bool   // POST, PUT or DELETE
	format l2l.Format
	query  l2l.Query
	sites  []uint64
	keyID  uint64 // the API key's id once it authenticated (0 before)
}

// argIncludeHistory asks a list of productionperiods for the versions
// recomputes replaced as well (record.PeriodHistory).
const argIncludeHistory = "include_history"

// begin authorizes the caller, finds the area and parses the query.
// It answers and returns nil when any of these fails.
func (h *handler) begin(c *gin.Context) *request {
	args := c.Request.URL.Query()
	r := &request{c: c, start: time.Now(), label: "unknown", format: l2l.FormatOf(args)}
	name := c.Param("area")
	a, ok := h.areas[name]
	if ok {
		r.label = name
	}
	cl, authorized := h.authorize(r, args, auth.ScopeRead)
	if !authorized {
		return nil
	}
	if !ok {
		h.finish(r, http.StatusNotFound, "not_found", l2l.Failure(fmt.Sprintf("Unknown record area %q", name)))
		return nil
	}
	if v, given := args[argIncludeHistory]; given && a.def.Name == record.PeriodHistory.Name {
		// Not a filter: it picks what the list reads.
		history, err := parseFlag(strings.TrimSpace(v[len(v)-1]))
		if err != nil {
			h.finish(r, http.StatusOK, "invalid", l2l.Invalid(&l2l.QueryError{Problems: []string{
				fmt.Sprintf("%s: %q is not True or False", argIncludeHistory, v[len(v)-1])}}))
			return nil
		}
		args = maps.Clone(args)
		delete(args, argIncludeHistory)
		if history && c.Param("id") == "" {
			a = h.periodHistory
		}
	}
	r.area, r.sites = a, cl.sites
	q, err := l2l.Parse(args, a.schema)
	if err != nil {
		// A validation failure is an answer, not an HTTP error.
		h.finish(r, http.StatusOK, "invalid", l2l.Invalid(err))
		return nil
	}
	r.query, r.format = q, q.Format
	return r
}

// list serves GET /api/1.0/<area>/.
func (h *handler) list(c *gin.Context) {
	r := h.begin(c)
	if r == nil {
		return
	}
	// The watermark is read before the records: every part acknowledged
	// by it is stored by then, so the read that follows finds it.
	wm, ok := h.readWatermark(r, watermarkAreas[r.label])
	if !ok {
		return
	}
	rec := r.area.rec
	if h.wm != nil {
		rec = rec.WithWatermark(wm)
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), h.timeout)
	defer cancel()
	var page chstore.RecordPage
	var err error
	keyset := h.cursors != nil && rec.InsertionOrder(r.query)
	q, limit := r.query, r.query.Limit
	var cur chstore.Cursor
	var at []chstore.Cursor
	found := false
	if keyset && q.Offset > 0 {
		// The page itself (remembered by the read that looked ahead), else
		// where it starts, else count offset rows.
		at, cur, found = h.cursors.get(ctx, h.cursors.key(r.label, q, r.sites, q.Offset), limit)
	}
	switch {
	case len(at) > 0:
		page, err = h.store.RecordsAt(ctx, rec, q, r.sites, at)
	case found:
		page, err = h.store.RecordsAfter(ctx, rec, q, r.sites, cur)
	default:
		page, err = h.store.Records(ctx, rec, q, r.sites)
	}
	if err != nil {
		h.readFailed(r, err)
		return
	}
	if keyset && page.Next != nil && len(page.Rows) > 0 {
		h.cursors.put(ctx, r.label, q, r.sites, q.Offset+len(page.Rows), *page.Next, page.Ahead)
	}
	h.localize(ctx, page)
	h.m.records.WithLabelValues(r.label).Add(float64(len(page.Rows)))
	h.finish(r, http.StatusOK, "ok", l2l.List(page.Fields, page.Rows, r.query.Limit, r.query.Offset))
}

// actionOf returns the area and action a path /api/1.0/<area>/<id>/
// names when <id> is the name of one of the area's actions (an action's
// name is never a number, a record's id always is).
func (h *handler) actionOf(c *gin.Context) (*area, *record.Action, bool) {
	ra, ok := h.areas[c.Param("area")]
	if !ok {
		return nil, nil, false
	}
	ac, ok := ra.def.Action(c.Param("id"))
	return ra, ac, ok
}

// actionPath serves /api/1.0/<area>/<action>/<argument>/.
func (h *handler) actionPath(c *gin.Context) {
	if ra, ac, ok := h.actionOf(c); ok {
		h.serveAction(c, ra, ac, c.Param("arg"))
		return
	}
	// Nothing is served there; the caller is still authorized first, as
	// on every route.
	args := c.Request.URL.Query()
	r := &request{c: c, start: time.Now(), label: "unknown", format: l2l.FormatOf(args)}
	if _, ok := h.authorize(r, args, auth.ScopeRead); ok {
		h.finish(r, http.StatusNotFound, "not_found", l2l.Failure("Not found"))
	}
}

// one serves GET /api/1.0/<area>/<id>/. A record of a site the caller may
// not see is answered exactly like a missing one.
func (h *handler) one(c *gin.Context) {
	if c.Param("area") == streamArea && c.Param("id") == streamPath {
		h.stream(c)
		return
	}
	if ra, ac, ok := h.actionOf(c); ok {
		h.serveAction(c, ra, ac, "")
		return
	}
	r := h.begin(c)
	if r == nil {
		return
	}
	notFound := l2l.Failure(fmt.Sprintf("No %s record with id %s", r.label, c.Param("id")))
	id, err := strconv.ParseUint(c.Param("id"), 10, 64)
	if err != nil {
		h.finish(r, http.StatusNotFound, "not_found", notFound)
		return
	}
	if _, ok := h.readWatermark(r, watermarkAreas[r.label]); !ok {
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), h.timeout)
	defer cancel()
	page, err := h.store.RecordByID(ctx, r.area.rec, id, r.query, r.sites)
	if errors.Is(err, chstore.ErrNotFound) {
		h.finish(r, http.StatusNotFound, "not_found", notFound)
		return
	}
	if err != nil {
		h.readFailed(r, err)
		return
	}
	h.localize(ctx, page)
	h.m.records.WithLabelValues(r.label).Add(1)
	h.finish(r, http.StatusOK, "ok", l2l.Record(page.Fields, page.Rows[0]))
}

// readFailed answers a read that failed. A read stopped by one of its
// limits (its time budget, or ClickHouse's memory and row limits) is the
// request's to narrow: success=false, saying which, never a 500.
func (h *handler) readFailed(r *request, err error) {
	switch chstore.Limit(err) {
	case chstore.ErrBusy:
		h.busy(r, err)
		return
	case chstore.ErrTimeout:
		h.logger.Warn("record query ran out of time", "area", r.label, "query", r.c.Request.URL.RawQuery, "err", err)
		h.finish(r, http.StatusGatewayTimeout, "timeout", l2l.Failure(fmt.Sprintf(
			"The query ran (or would run) past its time budget of %s: narrow it with filters or a smaller limit", h.timeout)))
		return
	case chstore.ErrTooBig:
		h.logger.Warn("record query over its limits", "area", r.label, "query", r.c.Request.URL.RawQuery, "err", err)
		h.finish(r, http.StatusOK, "too_big", l2l.Failure(
			"The query needs more memory or rows than one request may use: narrow it with filters or a smaller limit"))
		return
	}
	if errors.Is(err, context.Canceled) && r.c.Request.Context().Err() != nil {
		// The client went away; nobody reads the answer.
		h.logger.Debug("record query abandoned by the client", "area", r.label)
		h.finish(r, 499, "canceled", l2l.Failure("Request canceled"))
		return
	}
	h.logger.Error("record query failed", "area", r.label, "err", err)
	h.finish(r, http.StatusInternalServerError, "error", l2l.Failure(msgInternal))
}

// busyRetryAfter is the Retry-After (seconds) of a request answered 503
// because every ClickHouse connection stayed in use.
const busyRetryAfter = "1"

// busy answers a request that got no ClickHouse connection within the
// pool's wait (chstore.ErrBusy): 503 with Retry-After, since the same
// request succeeds once the reads ahead of it are done. Each waiting
// request's wait is bounded by the pool's (TAKT_CLICKHOUSE_DIAL_TIMEOUT)
// and by its own time budget.
func (h *handler) busy(r *request, err error) {
	h.logger.Warn("request found every ClickHouse connection in use", "area", r.label, "err", err)
	r.c.Header("Retry-After", busyRetryAfter)
	h.finish(r, http.StatusServiceUnavailable, "busy", l2l.Failure(
		"The server is busy: every ClickHouse connection is in use; retry in a second"))
}

// localize moves the values of LocalDateTime fields into the time zone of
// each record's site.
func (h *handler) localize(ctx context.Context, page chstore.RecordPage) {
	var cols []int
	for i, f := range page.Fields {
		if f.Type == l2l.LocalDateTime {
			cols = append(cols, i)
		}
	}
	if len(cols) == 0 || len(page.Rows) == 0 {
		return
	}
	locs := h.zones.forSites(ctx, page.Sites)
	for i, row := range page.Rows {
		loc := locs[page.Sites[i]]
		for _, j := range cols {
			if t, ok := row[j].(time.Time); ok {
				row[j] = t.In(loc)
			}
		}
	}
}

// finish encodes resp, answers status and records the outcome.
func (h *handler) finish(r *request, status int, outcome string, resp l2l.Response) {
	h.write(r.c, r.format, status, resp, r.query.Microseconds)
	h.m.requests.WithLabelValues(r.label, outcome).Inc()
	if r.keyID != 0 {
		h.m.byKey.WithLabelValues(strconv.FormatUint(r.keyID, 10), outcome).Inc()
	}
	h.m.seconds.WithLabelValues(r.label).Observe(time.Since(r.start).Seconds())
	if rc := chstore.ReadCountOf(r.c.Request.Context()); rc != nil && rc.Rows() > 0 {
		h.m.rowsRead.WithLabelValues(r.label).Add(float64(rc.Rows()))
		h.m.bytesRead.WithLabelValues(r.label).Add(float64(rc.Bytes()))
	}
}

// countReads makes the ClickHouse queries of a request add up what they
// read, which finish counts in takt_queryapi_clickhouse_read_*_total.
func countReads(c *gin.Context) {
	ctx, _ := chstore.CountReads(c.Request.Context())
	c.Request = c.Request.WithContext(ctx)
	c.Next()
}

// fail answers a request that matched no record-area route.
func (h *handler) fail(c *gin.Context, f l2l.Format, status int, msg string) {
	h.write(c, f, status, l2l.Failure(msg), false)
}

func (h *handler) write(c *gin.Context, f l2l.Format, status int, resp l2l.Response, micro bool) {
	bp, _ := h.bufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	b, err := resp.Encode((*bp)[:0], f, micro)
	if err != nil {
		h.logger.Error("encode answer", "err", err)
		status = http.StatusInternalServerError
		fail := l2l.Failure(msgInternal)
		b, _ = fail.Encode((*bp)[:0], f, false)
	}
	hd := c.Writer.Header()
	hd.Set("Content-Type", l2l.ContentType(f))
	hd.Set("Content-Length", strconv.Itoa(len(b)))
	hd.Set("Cache-Control", "no-store")
	c.Writer.WriteHeader(status)
	_, _ = c.Writer.Write(b)
	c.Abort()
	// Keep buffers of ordinary pages; let the rare huge one go.
	if cap(b) <= 4<<20 {
		*bp = b
		h.bufs.Put(bp)
	}
}

// metrics are the query API's own series (HTTP counts come from httpx).
type metrics struct {
	requests *prometheus.CounterVec   // area, outcome
	seconds  *prometheus.HistogramVec // area
	records  *prometheus.CounterVec   // area
	byKey    *prometheus.CounterVec   // key_id, outcome
	// rowsRead and bytesRead: what ClickHouse read for the requests, by
	// area (its progress reports).
	rowsRead  *prometheus.CounterVec
	bytesRead *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "takt_queryapi_requests_total",
			Help: "Record-area requests answered, by area and outcome (ok, created, updated, deleted, invalid, unauthorized, forbidden, not_found, read_only, rate_limited, timeout, too_big, watermark_timeout, unavailable, canceled, error).",
		}, []string{"area", "outcome"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "takt_queryapi_request_duration_seconds",
			Help:    "Time to answer a record-area request, by area.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15), // 1 ms .. 16 s
		}, []string{"area"}),
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "takt_queryapi_records_returned_total",
			Help: "Records returned by record-area requests, by area.",
		}, []string{"area"}),
		byKey: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "takt_queryapi_key_requests_total",
			Help: "Record-area requests answered, by the API key's id and outcome (as takt_queryapi_requests_total; rejections are the outcomes other than ok, created, updated and deleted); requests without a valid key are not counted here.",
		}, []string{"key_id", "outcome"}),
		rowsRead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "takt_queryapi_clickhouse_read_rows_total",
			Help: "Rows ClickHouse read to answer record-area requests (watermark reads included), by area.",
		}, []string{"area"}),
		bytesRead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "takt_queryapi_clickhouse_read_bytes_total",
			Help: "Uncompressed bytes ClickHouse read to answer record-area requests, by area.",
		}, []string{"area"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.requests, m.seconds, m.records, m.byKey, m.rowsRead, m.bytesRead} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register queryapi metrics: %w", err)
			}
		}
	}
	return m, nil
}
