package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/takt/takt/internal/chstore"
)

// Ingest endpoints, as the ingestor serves them.
const (
	singlePath = "/api/external/production/process_part"
	batchPath  = "/api/external/production/process_parts"
)

// runner is one run's shared state. Counters are atomics: senders update
// them concurrently.
type runner struct {
	cfg    Config
	logger *slog.Logger
	client *http.Client
	url    string
	urls   []string // url and one per further ingestor, taken in turn
	turn   atomic.Uint64
	clock  Clock

	lat        *hist
	requests   atomic.Int64
	sent       atomic.Int64
	acked      atomic.Int64
	ackedQty   atomic.Int64
	errs       atomic.Int64
	statusMu   sync.Mutex
	status     map[string]int64
	itemStatus map[string]int64
	errSamples []string

	// Per machine (index as in sim.machines): acknowledged parts and
	// quantity, and parts whose fate is unknown (no answer, 5xx).
	perAcked     []atomic.Int64
	perAckedQty  []atomic.Int64
	perUncertain []atomic.Int64
	index        map[*machine]int

	retry retries    // -retry-rate
	fresh *freshness // nil unless -verify
	mqtt  *mqttPool  // -transport mqtt
	bufs  sync.Pool
}

// Run drives the ingestor as cfg says, verifies when asked, and returns
// the report. It writes the JSON report when cfg.Report is set. An error
// means the run could not be done; a run that found lost parts returns its
// report and no error (the caller decides what failure means).
func Run(ctx context.Context, cfg Config, logger *slog.Logger) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("loadtest config: %w", err)
	}
	conns := cfg.InFlight
	if cfg.Concurrency > 0 {
		conns = cfg.Concurrency
	}
	r := &runner{
		cfg: cfg, logger: logger, clock: realClock{}, lat: newHist(),
		status: map[string]int64{}, itemStatus: map[string]int64{},
		client: &http.Client{
			Timeout: cfg.Timeout,
			Transport: &http.Transport{
				DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
				MaxIdleConns:        conns,
				MaxIdleConnsPerHost: conns,
				MaxConnsPerHost:     conns,
				IdleConnTimeout:     30 * time.Second,
				DisableCompression:  true,
			},
		},
		perAcked: make([]atomic.Int64, cfg.Machines), perAckedQty: make([]atomic.Int64, cfg.Machines),
		perUncertain: make([]atomic.Int64, cfg.Machines),
	}
	defer r.client.CloseIdleConnections()
	r.url = cfg.IngestURL + singlePath
	if cfg.Batch > 1 {
		r.url = cfg.IngestURL + batchPath
	}
	r.urls = []string{r.url}
	for _, u := range cfg.MoreIngestURLs {
		r.urls = append(r.urls, u+strings.TrimPrefix(r.url, cfg.IngestURL))
	}

	if cfg.Transport == "mqtt" {
		pool, err := newMQTTPool(ctx, cfg)
		if err != nil {
			return nil, err
		}
		defer pool.close()
		r.mqtt = pool
		r.url = "mqtt://" + cfg.MQTTAddr
	}

	var store *chstore.Store
	if cfg.Provision || cfg.Verify {
		var err error
		store, err = chstore.Open(ctx, chstore.Config{
			Addr: cfg.ClickHouseAddr, Database: cfg.ClickHouseDB, User: "default",
			DialTimeout: 5 * time.Second, ReadTimeout: 60 * time.Second, MaxOpenConns: 4,
		}, logger)
		if err != nil {
			return nil, err
		}
		defer store.Close()
	}
	if cfg.Provision {
		if err := provision(ctx, store, cfg.Machines, logger); err != nil {
			return nil, err
		}
	}

	start := r.clock.Now().Add(50 * time.Millisecond) // a moment to set up
	s := newSim(cfg, start)
	r.index = make(map[*machine]int, len(s.machines))
	for i, m := range s.machines {
		r.index[m] = i
	}
	if cfg.Verify {
		r.fresh = newFreshness(cfg, r.client, logger)
	}

	sendCtx, stopSending := context.WithCancel(ctx)
	defer stopSending()
	var wg sync.WaitGroup
	progressDone := make(chan struct{})
	if cfg.Progress {
		go r.progress(sendCtx, start, progressDone)
	} else {
		close(progressDone)
	}
	var freshWG sync.WaitGroup
	if r.fresh != nil {
		freshWG.Add(1)
		go func() { defer freshWG.Done(); r.fresh.sampleLoop(sendCtx) }()
	}

	end := start.Add(cfg.Duration)
	maxSends := (cfg.MaxParts + cfg.Batch - 1) / cfg.Batch
	r.retry.run = strconv.FormatInt(start.UnixNano(), 36)
	prepare := func(due time.Time) func(time.Time) {
		parts := make([]simPart, cfg.Batch)
		for i := range parts {
			m := s.pick(due)
			parts[i] = s.part(m, due)
		}
		r.retry.choose(cfg.RetryRate, parts)
		wg.Add(1)
		return func(due time.Time) {
			defer wg.Done()
			r.send(ctx, parts, due)
		}
	}
	var counts loopCounts
	mode := "open"
	r.clock.Sleep(ctx, time.Until(start))
	var meter *CPUMeter
	var cpuErr error
	if len(cfg.CPU) > 0 {
		meter, cpuErr = StartCPU(cfg.CPU)
	}
	if cfg.Concurrency > 0 {
		mode = "closed"
		l := closedLoop{clock: r.clock, workers: cfg.Concurrency, maxSends: maxSends, end: end}
		counts = l.run(ctx, prepare)
	} else {
		o := openLoop{
			clock: r.clock, interval: time.Duration(float64(time.Second) * float64(cfg.Batch) / cfg.Rate),
			maxSends: maxSends, end: end, slots: make(chan struct{}, cfg.InFlight),
		}
		counts = o.run(ctx, start, prepare)
	}
	wg.Wait()
	elapsed := r.clock.Now().Sub(start)
	stopSending()
	<-progressDone

	rep := &Report{
		Label: cfg.Label, Date: time.Now().UTC().Format(time.RFC3339), Cores: runtime.NumCPU(),
		Target: cfg.IngestURL, Mode: mode, Batch: cfg.Batch, Machines: cfg.Machines,
		Sent: r.sent.Load(), Acked: r.acked.Load(), Errors: r.errs.Load(),
		Dropped:  int64(counts.dropped) * int64(cfg.Batch),
		Requests: r.requests.Load(), DurationS: elapsed.Seconds(),
		Latency: r.lat.percentiles(), Status: r.status, ErrorSamples: r.errSamples, AckedQty: r.ackedQty.Load(),
	}
	if cfg.Batch > 1 {
		rep.ItemStatus = r.itemStatus
	}
	rep.Retried, rep.Replayed = r.retry.parts.Load(), r.retry.replayed.Load()
	if mode == "open" {
		rep.RateTarget = cfg.Rate
	}
	if r.mqtt != nil {
		rep.Target = r.url
	}
	if elapsed > 0 {
		rep.RateAchieved = float64(rep.Acked) / elapsed.Seconds()
		rep.RequestsPerS = float64(rep.Requests) / elapsed.Seconds()
	}
	if meter != nil {
		settleStart := time.Now()
		if cfg.Settle != nil {
			cpuErr = cfg.Settle(ctx)
		}
		if cpuErr == nil {
			u := meter.Stop(rep.Acked)
			u.SettleS = time.Since(settleStart).Seconds()
			rep.CPU = &u
		}
	}
	if cpuErr != nil {
		rep.CPUError = cpuErr.Error()
	}

	if cfg.Verify {
		if err := r.verify(ctx, store, start, s.machines, rep); err != nil {
			rep.VerifyError = err.Error()
		}
		freshWG.Wait()
		r.fresh.finish(ctx, cfg.DrainTimeout)
		rep.Freshness = r.fresh.result()
	}
	if cfg.Report != "" {
		if err := rep.WriteJSON(cfg.Report); err != nil {
			return rep, err
		}
	}
	if ctx.Err() != nil {
		return rep, fmt.Errorf("interrupted: %w", ctx.Err())
	}
	return rep, nil
}

// send sends one request of parts and records its outcome.
func (r *runner) send(ctx context.Context, parts []simPart, due time.Time) {
	bp, _ := r.bufs.Get().(*[]byte)
	if bp == nil {
		b := make([]byte, 0, 256*len(parts))
		bp = &b
	}
	defer r.bufs.Put(bp)
	*bp = body((*bp)[:0], parts, r.cfg.Batch > 1)

	r.requests.Add(1)
	r.sent.Add(int64(len(parts)))
	if r.mqtt != nil {
		r.sendMQTT(ctx, parts, *bp, due)
		return
	}
	if parts[0].key != "" {
		r.sendTwice(ctx, parts, *bp, due)
		return
	}
	r.account(parts, r.post(ctx, *bp, ""), due)
}

// httpAnswer is the outcome of one HTTP request.
type httpAnswer struct {
	status   int // 0: no answer (err says why)
	body     []byte
	replayed bool // Idempotent-Replayed: true
	err      error
	done     time.Time
}

// post sends body to the next of r.urls (a repeat goes to another
// ingestor when there are several), with an Idempotency-Key header when
// key is set.
func (r *runner) post(ctx context.Context, body []byte, key string) httpAnswer {
	url := r.urls[(r.turn.Add(1)-1)%uint64(len(r.urls))]
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return httpAnswer{err: err, done: r.clock.Now()}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("API-KEY", r.cfg.Key)
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return httpAnswer{err: err, done: r.clock.Now()}
	}
	ans, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	resp.Body.Close()
	a := httpAnswer{status: resp.StatusCode, body: ans, replayed: resp.Header.Get("Idempotent-Replayed") == "true", done: r.clock.Now()}
	if err != nil {
		a.err = fmt.Errorf("read answer: %w", err)
	}
	return a
}

// account records the answer a of the request of parts, sent at due.
func (r *runner) account(parts []simPart, a httpAnswer, due time.Time) {
	r.lat.record(a.done.Sub(due))
	if a.status == 0 {
		r.fail(parts, "transport", a.err, true)
		return
	}
	code := strconv.Itoa(a.status)
	if a.err != nil {
		r.fail(parts, code, a.err, true)
		return
	}
	if r.cfg.Batch <= 1 {
		if a.status == http.StatusOK {
			r.count(code, 1)
			r.ack(&parts[0], a.done)
			r.outcome(&parts[0], http.StatusOK)
			return
		}
		// 409: a request with the key was still at work; its part may
		// be stored.
		r.fail(parts, code, fmt.Errorf("HTTP %d: %s", a.status, cut(a.body)), a.status >= 500 || a.status == http.StatusConflict)
		return
	}
	r.batchAnswer(parts, a.status, a.body, a.done)
}

// batchAnswer records the per-item outcome of a batch request.
func (r *runner) batchAnswer(parts []simPart, status int, ans []byte, done time.Time) {
	code := strconv.Itoa(status)
	var a struct {
		Accepted, Rejected, Failed int
		Results                    []struct{ Index, Status int }
	}
	if err := json.Unmarshal(ans, &a); err != nil || len(a.Results) != len(parts) {
		r.fail(parts, code, fmt.Errorf("HTTP %d: %s", status, cut(ans)), status >= 500 || status == http.StatusOK)
		return
	}
	r.count(code, 1)
	items := map[string]int64{}
	for i, res := range a.Results {
		items[strconv.Itoa(res.Status)]++
		r.outcome(&parts[i], res.Status)
		switch {
		case res.Status == http.StatusOK:
			r.ack(&parts[i], done)
		default:
			r.errs.Add(1)
			if res.Status >= 500 || res.Status == http.StatusConflict {
				r.perUncertain[r.index[parts[i].m]].Add(1)
			}
		}
	}
	r.statusMu.Lock()
	for k, v := range items {
		r.itemStatus[k] += v
	}
	if a.Rejected+a.Failed > 0 && len(r.errSamples) < 5 {
		r.errSamples = append(r.errSamples, fmt.Sprintf("HTTP %d: %s", status, cut(ans)))
	}
	r.statusMu.Unlock()
}

func (r *runner) ack(p *simPart, done time.Time) {
	i := r.index[p.m]
	r.acked.Add(1)
	r.ackedQty.Add(int64(p.quantity))
	r.perAcked[i].Add(1)
	r.perAckedQty[i].Add(int64(p.quantity))
	if r.fresh != nil {
		r.fresh.offer(p.m.ExternalID, p.recordedMs, done)
	}
}

// fail records a request whose parts were not acknowledged; uncertain
// says the parts may still have been stored (no answer, or 5xx).
func (r *runner) fail(parts []simPart, code string, err error, uncertain bool) {
	r.count(code, 1)
	if r.cfg.Outcome != nil {
		status, _ := strconv.Atoi(code) // "transport": 0
		if err != nil && uncertain && status == http.StatusOK {
			status = 0 // a 200 whose answer could not be read
		}
		for i := range parts {
			r.outcome(&parts[i], status)
		}
	}
	r.errs.Add(int64(len(parts)))
	if uncertain {
		for i := range parts {
			r.perUncertain[r.index[parts[i].m]].Add(1)
		}
	}
	r.statusMu.Lock()
	if len(r.errSamples) < 5 {
		r.errSamples = append(r.errSamples, err.Error())
	}
	r.statusMu.Unlock()
}

// outcome reports p's fate to cfg.Outcome, when set.
func (r *runner) outcome(p *simPart, status int) {
	if r.cfg.Outcome != nil {
		r.cfg.Outcome(PartOutcome{ExternalID: p.m.ExternalID, RecordedMs: p.recordedMs, Quantity: p.quantity, Status: status})
	}
}

func (r *runner) count(code string, n int64) {
	r.statusMu.Lock()
	r.status[code] += n
	r.statusMu.Unlock()
}

func cut(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "…"
	}
	return string(b)
}

// progress prints a status line every second until ctx ends.
func (r *runner) progress(ctx context.Context, start time.Time, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var lastAcked int64
	last := start
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(os.Stderr)
			return
		case now := <-t.C:
			acked := r.acked.Load()
			rate := float64(acked-lastAcked) / now.Sub(last).Seconds()
			lastAcked, last = acked, now
			fmt.Fprintf(os.Stderr, "\r%6.1fs  sent %d  acked %d (%.0f/s)  errors %d  p99 %.2f ms   ",
				now.Sub(start).Seconds(), r.sent.Load(), acked, rate, r.errs.Load(), r.lat.p99())
		}
	}
}

// errNotDrained means the pipeline did not store every acknowledged part
// before the drain deadline (those count as lost).
var errNotDrained = errors.New("pipeline did not drain before the deadline")
