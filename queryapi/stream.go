package queryapi

// The live change feed: GET /api/1.0/productionperiods/stream/ answers with
// Server-Sent Events, one "period" event per wire.PeriodChange on the
// period-changes topic that the caller may see and its filters select.
//
// Each event's id is a feed.Cursor (the position after it in every
// partition of the topic); a client that reconnects with it in
// Last-Event-ID (or the last_event_id argument) gets every later change
// once: no gaps, no repeats. Without one the stream starts at the topic's
// end. The first event, "ready", carries the starting position as its id,
// so a client that sees no change before it reconnects still resumes
// where it began; heartbeats (an id and a comment, no data) move the id
// forward past changes the filters skipped.
//
// A stream's key is authenticated again every few seconds
// (max(TAKT_AUTH_LOCAL_TTL, 1s)): a revoked key's streams end with a final
// "unauthorized" event.
//
// Bounds: a key may hold FeedMaxStreamsPerKey streams at once across
// every query API instance (counted in Redis, see streamSlots; while
// Redis does not answer, on each instance) and an instance FeedMaxStreams
// (429 / 503 beyond). A stream is a Kafka reader
// that writes as the client reads: nothing is buffered for a client
// beyond the socket and one fetch. A client that reads, but slower than
// the changes come, falls behind the topic's end; once it has been more
// than FeedMaxLag changes behind for FeedSlowAfter, it gets a final
// "dropped" event with the id to resume from, and the stream ends. A
// client that reads nothing is cut off when one write has waited
// FeedWriteTimeout (no final event can reach it).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/takt/takt/internal/auth"
	"github.com/takt/takt/internal/feed"
	"github.com/takt/takt/internal/kafkax"
	"github.com/takt/takt/internal/l2l"
	"github.com/takt/takt/internal/wire"
)

// streamArea and streamPath name the feed's route: the id "stream" of the
// productionperiods area.
const (
	streamArea = "productionperiods"
	streamPath = "stream"
)

// streams serves the live change feed.
type streams struct {
	reader    *feed.Reader
	slots     *streamSlots // nil: a key's streams are counted per instance
	perKey    int
	total     int
	maxLag    int64
	slowAfter time.Duration
	heartbeat time.Duration
	writeWait time.Duration
	// recheck is how often a stream's key is authenticated again: a
	// revoked key's streams end within it (plus the key caches' lives).
	recheck time.Duration
	// stop ends every stream (server shutdown); nil: only the request's
	// end does.
	stop   <-chan struct{}
	logger *slog.Logger

	open    prometheus.Gauge
	events  prometheus.Counter
	endings *prometheus.CounterVec

	mu    sync.Mutex
	byKey map[uint64]int
	n     int
}

func newStreams(cfg Config, slots *streamSlots, stop <-chan struct{}, reg prometheus.Registerer, logger *slog.Logger) (*streams, error) {
	s := &streams{
		reader: feed.NewReader(kafkax.Config{Brokers: cfg.KafkaBrokers, Security: cfg.Kafka}, cfg.PeriodChangesTopic, logger,
			// A change reaches a waiting stream at once; an idle fetch
			// comes back in time for the heartbeat and the slow check.
			kgo.FetchMaxWait(time.Second)),
		perKey: cfg.FeedMaxStreamsPerKey, total: cfg.FeedMaxStreams, maxLag: int64(cfg.FeedMaxLag),
		slowAfter: cfg.FeedSlowAfter, heartbeat: cfg.FeedHeartbeat, writeWait: cfg.FeedWriteTimeout,
		recheck: max(cfg.AuthLocalTTL, time.Second), slots: slots,
		stop: stop, logger: logger, byKey: map[uint64]int{},
		open: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "takt_queryapi_feed_streams",
			Help: "Open streams of the live change feed.",
		}),
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "takt_queryapi_feed_events_total",
			Help: "Period events sent on the live change feed.",
		}),
		endings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "takt_queryapi_feed_stream_endings_total",
			Help: "Ended streams of the live change feed, by why (client, slow, stalled, shutdown, error).",
		}, []string{"why"}),
	}
	if slots != nil {
		// The lease is renewed with the key's check, three times a lease.
		s.recheck = min(s.recheck, slots.lease/3)
	}
	for _, c := range []prometheus.Collector{s.open, s.events, s.endings} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register feed metrics: %w", err)
		}
	}
	return s, nil
}

// acquire takes a stream slot of key; it answers the status to refuse
// with, or 0 and the slot's hold in Redis (nil without one).
func (s *streams) acquire(ctx context.Context, key uint64) (int, string, *slot) {
	tooMany := fmt.Sprintf("Too many open streams for this API key (at most %d): close one first", s.perKey)
	s.mu.Lock()
	if s.byKey[key] >= s.perKey {
		s.mu.Unlock()
		return http.StatusTooManyRequests, tooMany, nil
	}
	if s.n >= s.total {
		s.mu.Unlock()
		return http.StatusServiceUnavailable, "Too many open streams on this server: retry later", nil
	}
	s.byKey[key]++
	s.n++
	s.open.Inc()
	s.mu.Unlock()
	if s.slots == nil {
		return 0, "", nil
	}
	sl, ok, err := s.slots.take(ctx, key, s.perKey)
	switch {
	case err != nil:
		// The bound of this instance still holds; Redis back, the
		// streams opened meanwhile are not counted until they reopen.
		s.logger.Warn("feed streams are counted on this instance only", "err", err)
		return 0, "", nil
	case !ok:
		s.release(key, nil)
		return http.StatusTooManyRequests, tooMany, nil
	}
	return 0, "", sl
}

// release gives back a slot acquire took.
func (s *streams) release(key uint64, sl *slot) {
	if sl != nil {
		sl.release()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byKey[key]--; s.byKey[key] <= 0 {
		delete(s.byKey, key)
	}
	s.n--
	s.open.Dec()
}

// streamFilter selects changes: every field that is set must match.
type streamFilter struct {
	site, line, machine uint64
	externalID          string
	sites               []uint64 // the caller's
}

func (f streamFilter) match(c *wire.PeriodChange) bool {
	return slices.Contains(f.sites, c.Site) &&
		(f.site == 0 || c.Site == f.site) &&
		(f.line == 0 || c.Line == f.line) &&
		(f.machine == 0 || c.Machine == f.machine) &&
		(f.externalID == "" || c.ExternalID == f.externalID)
}

// streamArgs are the arguments the feed takes besides the key's.
var streamArgs = map[string]bool{"site": true, "line": true, "machine": true, "externalid": true,
	"last_event_id": true, authArg: true, "realuser": true}

// parseStreamFilter reads the feed's filters; an unknown argument or a
// malformed id is an error (a typo must not silently widen the stream).
func parseStreamFilter(args url.Values) (streamFilter, error) {
	var f streamFilter
	for name, vs := range args {
		if !streamArgs[name] {
			return f, fmt.Errorf("unknown argument %q: the stream takes site, line, machine, externalid and last_event_id", name)
		}
		if len(vs) > 1 {
			return f, fmt.Errorf("%s: given %d times", name, len(vs))
		}
	}
	for _, a := range []struct {
		name string
		dst  *uint64
	}{{"site", &f.site}, {"line", &f.line}, {"machine", &f.machine}} {
		v := args.Get(a.name)
		if v == "" {
			continue
		}
		id, err := strconv.ParseUint(v, 10, 64)
		if err != nil || id == 0 {
			return f, fmt.Errorf("%s=%q: must be a record id (a positive integer)", a.name, v)
		}
		*a.dst = id
	}
	f.externalID = args.Get("externalid")
	if len(f.externalID) > 256 {
		return f, errors.New("externalid: longer than 256 bytes")
	}
	return f, nil
}

// stream serves GET /api/1.0/productionperiods/stream/.
func (h *handler) stream(c *gin.Context) {
	args := c.Request.URL.Query()
	r := &request{c: c, start: time.Now(), label: streamArea + "/" + streamPath, format: l2l.FormatOf(args)}
	cl, ok := h.authorize(r, args, auth.ScopeRead)
	if !ok {
		return
	}
	if h.feed == nil {
		h.finish(r, http.StatusNotFound, "not_found", l2l.Failure("The live change feed is not enabled on this server (TAKT_PERIOD_CHANGES_TOPIC)"))
		return
	}
	filter, err := parseStreamFilter(args)
	if err != nil {
		h.finish(r, http.StatusOK, "invalid", l2l.Invalid(err))
		return
	}
	filter.sites = cl.sites
	var from feed.Cursor
	last := c.GetHeader("Last-Event-ID")
	if last == "" {
		last = args.Get("last_event_id")
	}
	if last != "" {
		if from, err = feed.ParseCursor(last); err != nil {
			h.finish(r, http.StatusOK, "invalid", l2l.Invalid(err))
			return
		}
	}
	s := h.feed
	status, msg, sl := s.acquire(c.Request.Context(), cl.key.KeyID)
	if status != 0 {
		h.finish(r, status, "refused", l2l.Failure(msg))
		return
	}
	defer s.release(cl.key.KeyID, sl)

	ctx, cancel := context.WithCancel(c.Request.Context())
	defer cancel()
	if s.stop != nil {
		go func() {
			select {
			case <-s.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	octx, ocancel := context.WithTimeout(ctx, h.timeout)
	st, err := s.reader.Open(octx, from)
	ocancel()
	switch {
	case errors.Is(err, feed.ErrCursor):
		h.finish(r, http.StatusOK, "invalid", l2l.Invalid(err))
		return
	case err != nil:
		h.logger.Error("open a feed stream", "err", err)
		h.finish(r, http.StatusServiceUnavailable, "error", l2l.Failure("The change feed is unavailable: retry later"))
		return
	}
	defer st.Close()
	h.m.requests.WithLabelValues(r.label, "ok").Inc()
	h.m.byKey.WithLabelValues(strconv.FormatUint(r.keyID, 10), "ok").Inc()
	key := c.GetHeader(keyHeader)
	if key == "" {
		key = args.Get(authArg)
	}
	valid := func(ctx context.Context) bool {
		if sl != nil {
			if err := sl.renew(ctx); err != nil {
				s.logger.Warn("renew a feed stream's slot", "err", err)
			}
		}
		p, err := h.keys.Authenticate(ctx, key)
		if err != nil {
			// Only a key known to be invalid ends the stream; a cache
			// or store that does not answer now is asked again later.
			return !errors.Is(err, auth.ErrInvalidKey)
		}
		return p.HasScope(auth.ScopeRead) || p.HasScope(auth.ScopeAdmin)
	}
	why := s.serve(ctx, c.Writer, st, filter, valid)
	s.endings.WithLabelValues(why).Inc()
	s.logger.Debug("feed stream ended", "why", why, "key_id", cl.key.KeyID, "position", st.Position().String())
}

// serve writes the stream until it ends and returns why it ended. valid
// says whether the stream's key still may read.
func (s *streams) serve(ctx context.Context, w gin.ResponseWriter, st *feed.Stream, f streamFilter, valid func(context.Context) bool) string {
	rc := http.NewResponseController(w)
	// The server's read timeout is for reading requests; left in place it
	// would end a stream that runs longer (Go cancels the request's
	// context when the connection's background read times out).
	_ = rc.SetReadDeadline(time.Time{})
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream; charset=utf-8")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	buf := make([]byte, 0, 4096)
	flush := func() bool {
		if len(buf) == 0 {
			return true
		}
		_ = rc.SetWriteDeadline(time.Now().Add(s.writeWait))
		_, err := w.Write(buf)
		if err == nil {
			err = rc.Flush()
		}
		buf = buf[:0]
		return err == nil
	}
	ready, _ := json.Marshal(map[string]any{"gap": st.Gap})
	buf = appendEvent(buf, st.Position().String(), "ready", ready)
	if !flush() {
		return "stalled"
	}

	var (
		events    []feed.Event
		lastWrite = time.Now()
		checked   = time.Now()
		slowSince time.Time
		idAt      = st.Position().String()
	)
	for {
		pctx, pcancel := context.WithTimeout(ctx, s.heartbeat/2)
		var err error
		events, err = st.Next(pctx, events[:0])
		pcancel()
		if ctx.Err() != nil {
			if s.stop != nil && isClosed(s.stop) {
				buf = appendEvent(buf, idAt, "closing", []byte(`{"reason":"shutdown","message":"The server is shutting down: reconnect with the last event id"}`))
				flush()
				return "shutdown"
			}
			return "client"
		}
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			s.logger.Warn("feed stream read failed", "err", err)
			buf = appendEvent(buf, idAt, "error", []byte(`{"reason":"unavailable","message":"The change feed is unavailable: reconnect with the last event id"}`))
			flush()
			return "error"
		}
		if time.Since(checked) >= s.recheck {
			checked = time.Now()
			if !valid(ctx) {
				buf = appendEvent(buf, idAt, "unauthorized", []byte(`{"reason":"unauthorized","message":"The API key is no longer valid, or lost the read scope"}`))
				flush()
				return "unauthorized"
			}
		}
		// behind is how many changes the client has not been sent yet:
		// those left in this fetch and those still in the partitions. A
		// fetch may hold every pending change at once, so the lag of the
		// stream's position alone would read 0 while the client crawls.
		behind := func(i int) int64 { return st.Lag() + int64(len(events)-i-1) }
		for i := range events {
			if !f.match(&events[i].Change) {
				continue
			}
			idAt = events[i].ID
			buf = appendEvent(buf, idAt, "period", events[i].Data)
			s.events.Inc()
			if len(buf) >= 32<<10 {
				if !flush() {
					return "stalled"
				}
				lastWrite = time.Now()
				if s.slow(&slowSince, lastWrite, behind(i)) {
					return s.drop(flush, &buf, idAt, behind(i))
				}
			}
		}
		now := time.Now()
		if pos := st.Position().String(); len(buf) == 0 && pos != idAt && now.Sub(lastWrite) >= s.heartbeat {
			// Changes the filters skipped: move the client's id past them.
			idAt = pos
			buf = append(buf, ": heartbeat\nid: "...)
			buf = append(buf, idAt...)
			buf = append(buf, "\n\n"...)
		} else if len(buf) == 0 && now.Sub(lastWrite) >= s.heartbeat {
			buf = append(buf, ": heartbeat\n\n"...)
		}
		if len(buf) > 0 {
			if !flush() {
				return "stalled"
			}
			lastWrite = now
		}
		if s.slow(&slowSince, now, st.Lag()) {
			return s.drop(flush, &buf, idAt, st.Lag())
		}
	}
}

// slow reports whether a client that is behind changes behind at now has
// been more than maxLag behind for slowAfter; since is when it fell
// behind (zero while it keeps up).
func (s *streams) slow(since *time.Time, now time.Time, behind int64) bool {
	if behind <= s.maxLag {
		*since = time.Time{}
		return false
	}
	if since.IsZero() {
		*since = now
		return false
	}
	return now.Sub(*since) >= s.slowAfter
}

// drop ends a slow client's stream with the final "dropped" event at id,
// the last change it was sent.
func (s *streams) drop(flush func() bool, buf *[]byte, id string, behind int64) string {
	msg, _ := json.Marshal(map[string]any{"reason": "slow_client", "behind": behind,
		"message": fmt.Sprintf("The client reads slower than the changes come: it was more than %d changes behind for %s. Reconnect with this event's id to resume.", s.maxLag, s.slowAfter)})
	*buf = appendEvent(*buf, id, "dropped", msg)
	flush()
	return "slow"
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// appendEvent appends one Server-Sent Event. data is one line of JSON.
func appendEvent(b []byte, id, event string, data []byte) []byte {
	b = append(b, "id: "...)
	b = append(b, id...)
	b = append(b, "\nevent: "...)
	b = append(b, event...)
	b = append(b, "\ndata: "...)
	b = append(b, data...)
	return append(b, "\n\n"...)
}
