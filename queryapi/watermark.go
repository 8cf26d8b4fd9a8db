package queryapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/l2l"
	"github.com/takt/takt/internal/watermark"
)

// Reads of the areas the parts feed (parts, productionperiods, pitches)
// and of OEE carry the parts watermark (internal/watermark): every part
// acknowledged by then is in the answer. A client that got its 200 at t
// passes min_watermark=t and the read waits until the watermark reaches
// t (at most maxWatermarkWait).
const (
	watermarkHeader = "X-Takt-Watermark"
	minWatermarkArg = "min_watermark"
	// maxWatermarkWait is the longest a read waits for min_watermark.
	maxWatermarkWait = 5 * time.Second
	// watermarkEvery is how old the watermark a read uses may be: it is
	// read from ClickHouse at most this often per replica, however many
	// reads there are or wait.
	watermarkEvery = 50 * time.Millisecond
	// watermarkReadTimeout bounds one read of the watermark.
	watermarkReadTimeout = 2 * time.Second
)

// watermarkAreas are the record areas whose reads carry the watermark.
var watermarkAreas = map[string]bool{"parts": true, "productionperiods": true, "pitches": true}

// Why a read that asked for min_watermark is answered without its data.
var (
	errWatermarkNotReached = errors.New("watermark not reached")
	errTooManyWaiting      = errors.New("too many reads wait for the watermark")
)

// watermarks gives the query API's reads the parts watermark. The value is
// read from ClickHouse at most every watermarkEvery and shared: a
// watermark read earlier is still true (it only ever grows), so a read may
// use one up to that old. A read waiting for min_watermark holds no
// ClickHouse connection while it waits, only one of a bounded number of
// slots.
type watermarks struct {
	read  func(ctx context.Context) (int64, error)
	every time.Duration
	slots chan struct{}
	m     *watermarkMetrics

	mu      sync.Mutex
	val     int64
	at      time.Time // when the read that gave val started
	pending chan struct{}
	err     error
}

type watermarkMetrics struct {
	waits   *prometheus.CounterVec // outcome
	waiting prometheus.Gauge
	lagMs   prometheus.Gauge
}

func newWatermarks(read func(ctx context.Context) (int64, error), waiters int, reg prometheus.Registerer) (*watermarks, error) {
	m := &watermarkMetrics{
		waits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "takt_queryapi_watermark_waits_total",
			Help: "Reads that asked for a min_watermark ahead of the parts watermark, by outcome (reached, timeout, busy: too many waiting, canceled, error).",
		}, []string{"outcome"}),
		waiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "takt_queryapi_watermark_waiting",
			Help: "Reads waiting for the parts watermark now.",
		}),
		lagMs: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "takt_queryapi_watermark_age_milliseconds",
			Help: "How far the parts watermark was behind the clock when last read.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.waits, m.waiting, m.lagMs} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register watermark metrics: %w", err)
			}
		}
	}
	return &watermarks{read: read, every: watermarkEvery, slots: make(chan struct{}, max(waiters, 1)), m: m}, nil
}

// current returns the watermark as read at most w.every ago, reading it
// when the last read is older; concurrent callers share one read. When a
// read fails, the last value read is still true and is returned; only
// without one does current fail.
func (w *watermarks) current(ctx context.Context) (int64, error) {
	w.mu.Lock()
	if w.pending == nil && time.Since(w.at) < w.every && w.err == nil {
		v := w.val
		w.mu.Unlock()
		return v, nil
	}
	if ch := w.pending; ch != nil {
		w.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.val > 0 {
			return w.val, nil
		}
		return 0, w.err
	}
	ch := make(chan struct{})
	w.pending = ch
	w.mu.Unlock()

	start := time.Now()
	// Not the caller's context: other reads wait for this one.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), watermarkReadTimeout)
	v, err := w.read(rctx)
	cancel()

	w.mu.Lock()
	defer w.mu.Unlock()
	w.pending, w.err = nil, err
	if err == nil {
		w.val, w.at = max(w.val, v), start
		if w.val > 0 && w.m != nil {
			w.m.lagMs.Set(float64(start.UnixMilli() - w.val))
		}
	}
	close(ch)
	if w.val > 0 {
		return w.val, nil
	}
	return 0, err
}

// atLeast returns the watermark once it is at least want, waiting at most
// limit; errWatermarkNotReached (with the watermark reached) when it is
// not by then, errTooManyWaiting when every waiting slot is taken.
func (w *watermarks) atLeast(ctx context.Context, want int64, limit time.Duration) (int64, error) {
	v, err := w.current(ctx)
	if err != nil || v >= want {
		return v, err
	}
	select {
	case w.slots <- struct{}{}:
	default:
		w.m.waits.WithLabelValues("busy").Inc()
		return v, errTooManyWaiting
	}
	w.m.waiting.Inc()
	defer func() {
		<-w.slots
		w.m.waiting.Dec()
	}()
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	tick := time.NewTicker(w.every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			w.m.waits.WithLabelValues("canceled").Inc()
			return v, ctx.Err()
		case <-deadline.C:
			w.m.waits.WithLabelValues("timeout").Inc()
			return v, errWatermarkNotReached
		case <-tick.C:
		}
		if v, err = w.current(ctx); err != nil {
			w.m.waits.WithLabelValues("error").Inc()
			return v, err
		}
		if v >= want {
			w.m.waits.WithLabelValues("reached").Inc()
			return v, nil
		}
	}
}

// readWatermark reads min_watermark from the request, waits for it when
// the area carries the watermark (watermarked), and sets X-Takt-Watermark.
// It returns the watermark the read must show (0 when the area has none)
// and false when it answered the request itself: a malformed
// min_watermark (400), one not reached in time, too many waiting, or a
// failure to read the watermark.
func (h *handler) readWatermark(r *request, watermarked bool) (int64, bool) {
	var want int64
	if raw, given := r.c.Request.URL.Query()[minWatermarkArg]; given {
		var err error
		if len(raw) != 1 {
			err = fmt.Errorf("given %d times; give it once", len(raw))
		} else {
			want, err = watermark.Parse(raw[0])
		}
		if err != nil {
			h.finish(r, http.StatusBadRequest, "invalid", l2l.Failure(fmt.Sprintf(
				"%s: %v (want Unix milliseconds, as %s gives them, or an RFC 3339 time)", minWatermarkArg, err, watermarkHeader)))
			return 0, false
		}
	}
	if h.wm == nil || !watermarked {
		return 0, true
	}
	v, err := h.wm.atLeast(r.c.Request.Context(), want, maxWatermarkWait)
	if err == nil {
		r.c.Header(watermarkHeader, watermark.Format(v))
		return v, true
	}
	switch {
	case errors.Is(err, errWatermarkNotReached):
		r.c.Header(watermarkHeader, watermark.Format(v))
		h.finish(r, http.StatusOK, "watermark_timeout", l2l.Failure(fmt.Sprintf(
			"The parts watermark did not reach min_watermark=%d within %s (it is at %d, %d ms behind): "+
				"parts acknowledged since are not yet stored, or a processor is behind; try again",
			want, maxWatermarkWait, v, want-v)))
	case errors.Is(err, errTooManyWaiting):
		r.c.Header("Retry-After", "1")
		h.finish(r, http.StatusServiceUnavailable, "unavailable", l2l.Failure(
			"Too many reads are waiting for the parts watermark: retry in a second"))
	case errors.Is(err, context.Canceled) && r.c.Request.Context().Err() != nil:
		h.finish(r, 499, "canceled", l2l.Failure("Request canceled"))
	case chstore.Limit(err) == chstore.ErrBusy:
		h.busy(r, err)
	default:
		h.logger.Error("reading the parts watermark failed", "err", err)
		h.finish(r, http.StatusInternalServerError, "error", l2l.Failure(msgInternal))
	}
	return 0, false
}
