package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/takt/takt/internal/chstore"
)

// verify waits for the pipeline to drain and counts what arrived.
//
// Event ids are assigned by the ingestor and not returned, so parts are
// matched by counting: the harness knows, per location, how many parts it
// had acknowledged (and their quantity) and how many had no definite
// answer (timeouts, 5xx). ClickHouse is asked, over the harness's own
// locations and the parts received since the run started, for rows, distinct
// event ids and quantity:
//
//   - duplicated = rows − distinct events (one event stored twice: a replay
//     the processor failed to make idempotent), plus distinct events beyond
//     what was sent at a location (an event the ingestor produced twice);
//   - lost = acknowledged − distinct events, per location.
//
// When some requests had no definite answer, a stored part of one of
// them could hide a lost acknowledged one in the totals, so the counts are
// then taken per location and such parts are reported as unacked_stored
// (allowed: at least once for unanswered requests). With no uncertain
// requests the totals are exact, and the stored quantity must equal the
// acknowledged quantity as well.
//
// Two harness runs at once against the same locations would count each
// other's parts: don't.
func (r *runner) verify(ctx context.Context, store *chstore.Store, start time.Time, machines []*machine, rep *Report) error {
	exts := make([]string, len(machines))
	for i, m := range machines {
		exts[i] = m.ExternalID
	}
	sinceMs := start.UnixMilli()
	// parts is ordered by id, so a filter on its location and time columns
	// alone reads the whole table (seconds at 25M parts, past the timeout
	// at 100M). The run's ids come from the location index, ordered by
	// (externalid, recorded_ms): the harness records every part at or after
	// its due time, so recorded_ms >= the start (a minute of slack) finds
	// them all; parts then reads the granules of those ids, and the outer
	// filter is the exact one. A part stored twice keeps its id (partition
	// and offset), so both rows still count.
	// The location set is bound as a tuple (externalid IN (...)): on
	// 18.16 has(array, externalid) is not matched against the primary
	// key, so it read every row of the index (6.6 s at 100M parts).
	const where = " FROM parts WHERE id IN (SELECT id FROM parts_by_location" +
		" WHERE externalid IN ? AND recorded_ms >= ?) AND externalid IN ? AND received_ms >= ?"
	q := func(expr string, ids []string) (uint64, error) {
		qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		set := clickhouse.GroupSet{Value: make([]any, len(ids))}
		for i, id := range ids {
			set.Value[i] = id
		}
		v, err := store.QueryUint64(qctx, "SELECT toUInt64("+expr+")"+where, set, sinceMs-60_000, set, sinceMs)
		if err != nil {
			return 0, fmt.Errorf("verify: %s: %w", expr, err)
		}
		return v, nil
	}

	acked := uint64(rep.Acked)
	t0 := time.Now()
	deadline := t0.Add(r.cfg.DrainTimeout)
	var rows uint64
	drained := false
	for {
		var err error
		if rows, err = q("count()", exts); err != nil {
			return err
		}
		if rows >= acked {
			drained = true
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		r.clock.Sleep(ctx, 200*time.Millisecond)
	}
	rep.DrainS = time.Since(t0).Seconds()
	if drained {
		// A replayed batch would land after the first; give the
		// processor one flush interval to show it.
		r.clock.Sleep(ctx, 1500*time.Millisecond)
	}
	rows, err := q("count()", exts)
	if err != nil {
		return err
	}
	events, err := q("uniqExact(event_id)", exts)
	if err != nil {
		return err
	}
	qty, err := q("sum(quantity)", exts)
	if err != nil {
		return err
	}
	rep.StoredRows, rep.StoredQty = rows, qty
	rep.Duplicated = int64(rows - events)

	var uncertain int64
	for i := range r.perUncertain {
		uncertain += r.perUncertain[i].Load()
	}
	if uncertain == 0 {
		switch {
		case events < acked:
			rep.Lost = int64(acked - events)
		case events > acked:
			rep.Duplicated += int64(events - acked)
		}
		if rep.Lost == 0 && rep.Duplicated == 0 && qty != uint64(rep.AckedQty) {
			rep.VerifyError = fmt.Sprintf("stored quantity %d differs from the acknowledged %d", qty, rep.AckedQty)
		}
	} else {
		for i, m := range machines {
			ev, err := q("uniqExact(event_id)", []string{m.ExternalID})
			if err != nil {
				return err
			}
			a, u := uint64(r.perAcked[i].Load()), uint64(r.perUncertain[i].Load())
			switch {
			case ev < a:
				rep.Lost += int64(a - ev)
			case ev > a+u:
				rep.Duplicated += int64(ev - a - u)
				rep.UnackedStored += int64(u)
			default:
				rep.UnackedStored += int64(ev - a)
			}
		}
	}
	rep.Verified = rep.VerifyError == ""
	if !drained {
		return fmt.Errorf("%w (%s): %d of %d acknowledged parts stored", errNotDrained, r.cfg.DrainTimeout, rows, acked)
	}
	return nil
}

// freshness samples acknowledged parts and measures how long each takes to
// be visible in the query API's parts area, in its default order. Each
// sample is one read with min_watermark set to the sample's
// acknowledgement: the query API answers it once its watermark has
// passed, without the probe polling, so a sample costs one request (more
// only when the wait runs out). At most maxPolls samples wait at a time,
// one new sample per sampleEvery: the probe must not load the system it
// measures, and its reads are counted.
type freshness struct {
	cfg    Config
	client *http.Client
	logger *slog.Logger

	want     atomic.Bool
	samples  chan sample
	active   atomic.Int32
	h        *hist
	timeouts atomic.Int64
	reads    atomic.Int64
	misses   atomic.Int64
	polls    sync.WaitGroup
	errOnce  sync.Once
	// readAtStart is what ClickHouse had read for the query API's parts
	// reads when the probe started (ok: known).
	readAtStart readCost
}

// readCost is what ClickHouse read for the query API's parts reads, from
// its metrics.
type readCost struct {
	rows, bytes float64
	ok          bool
}

type sample struct {
	ext        string
	recordedMs int64
	ackAt      time.Time
}

const (
	maxPolls = 32
	// sampleEvery: ten samples a second, 300 in a 30 s run. Each is one
	// read of the parts area by location and recorded time (through
	// parts_by_location: ~50k rows, ~0.7 MB and ~9 ms of ClickHouse CPU
	// at 8M stored parts, measured under load), so the probe costs
	// ClickHouse about a tenth of a core at most; the report says what
	// it read.
	sampleEvery = 100 * time.Millisecond
	pollEvery   = 50 * time.Millisecond
)

func newFreshness(cfg Config, client *http.Client, logger *slog.Logger) *freshness {
	f := &freshness{cfg: cfg, client: client, logger: logger, samples: make(chan sample, 1), h: newHist()}
	f.readAtStart = f.readCost()
	return f
}

// readCost reads the query API's takt_queryapi_clickhouse_read_*_total
// of the parts area from its admin listener.
func (f *freshness) readCost() readCost {
	if f.cfg.QueryAdminURL == "" {
		return readCost{}
	}
	resp, err := f.client.Get(f.cfg.QueryAdminURL + "/metrics")
	if err != nil {
		f.logger.Warn("reading the query API's metrics failed", "err", err)
		return readCost{}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		f.logger.Warn("reading the query API's metrics failed", "status", resp.StatusCode, "err", err)
		return readCost{}
	}
	// The series is there once a parts read was answered; a query API
	// without it (an older one) reports nothing.
	var c readCost
	c.ok = bytes.Contains(b, []byte("# TYPE takt_queryapi_clickhouse_read_rows_total counter"))
	for line := range strings.Lines(string(b)) {
		for name, dst := range map[string]*float64{
			`takt_queryapi_clickhouse_read_rows_total{area="parts"} `:  &c.rows,
			`takt_queryapi_clickhouse_read_bytes_total{area="parts"} `: &c.bytes,
		} {
			if v, ok := strings.CutPrefix(line, name); ok {
				*dst, _ = strconv.ParseFloat(strings.TrimSpace(v), 64)
			}
		}
	}
	return c
}

// offer is called for every acknowledged part; it takes one when a sample
// is wanted.
func (f *freshness) offer(ext string, recordedMs int64, ackAt time.Time) {
	if f.want.Load() && f.want.CompareAndSwap(true, false) {
		select {
		case f.samples <- sample{ext, recordedMs, ackAt}:
		default:
		}
	}
}

// sampleLoop asks for samples until ctx ends (sending stopped).
func (f *freshness) sampleLoop(ctx context.Context) {
	t := time.NewTicker(sampleEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			f.want.Store(false)
			return
		case <-t.C:
			if f.active.Load() < maxPolls {
				f.want.Store(true)
			}
		case s := <-f.samples:
			f.active.Add(1)
			f.polls.Add(1)
			go func() {
				defer f.polls.Done()
				defer f.active.Add(-1)
				f.poll(s)
			}()
		}
	}
}

// poll asks the query API for the sampled part, waiting for the watermark
// of its acknowledgement, until it is there or the drain timeout passed
// since its ack. An answer at that watermark without the part is a miss;
// the probe then asks again without waiting.
func (f *freshness) poll(s sample) {
	args := url.Values{
		"externalid":  {s.ext},
		"recorded_at": {time.UnixMilli(s.recordedMs).UTC().Format("2006-01-02T15:04:05.000Z")},
		"limit":       {"1"},
		"fields":      {"id"},
	}
	wait := url.Values{"min_watermark": {strconv.FormatInt(s.ackAt.UnixMilli(), 10)}}
	for k, v := range args {
		wait[k] = v
	}
	deadline := s.ackAt.Add(f.cfg.DrainTimeout)
	u, waiting := f.cfg.QueryURL+"/api/1.0/parts/?"+wait.Encode(), true
	for time.Now().Before(deadline) {
		found, reached, err := f.query(u)
		if err != nil {
			f.errOnce.Do(func() { f.logger.Warn("freshness poll failed", "err", err) })
			break
		}
		if found {
			f.h.record(time.Since(s.ackAt))
			return
		}
		if reached && waiting {
			f.misses.Add(1)
			u, waiting = f.cfg.QueryURL+"/api/1.0/parts/?"+args.Encode(), false
		}
		time.Sleep(pollEvery)
	}
	f.timeouts.Add(1)
}

// query reads u: found says the answer held a record, reached that it
// was an answer (not a wait that ran out).
func (f *freshness) query(u string) (found, reached bool, err error) {
	f.reads.Add(1)
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return false, false, err
	}
	req.Header.Set("L2LAUTH", f.cfg.Key)
	resp, err := f.client.Do(req)
	if err != nil {
		return false, false, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return false, false, err
	}
	var ans struct {
		Success bool
		Data    []json.RawMessage
		Error   string
	}
	if err := json.Unmarshal(b, &ans); err != nil {
		return false, false, fmt.Errorf("query API HTTP %d: %s", resp.StatusCode, cut(b))
	}
	switch {
	case ans.Success:
		return len(ans.Data) > 0, true, nil
	case resp.StatusCode == http.StatusOK && strings.Contains(ans.Error, "min_watermark"):
		return false, false, nil // the wait ran out: ask again
	case resp.StatusCode == http.StatusServiceUnavailable:
		return false, false, nil // too many waiting: ask again
	}
	return false, false, fmt.Errorf("query API: %s", ans.Error)
}

// finish waits for the outstanding polls (each bounded by the drain
// timeout).
func (f *freshness) finish(ctx context.Context, timeout time.Duration) {
	done := make(chan struct{})
	go func() { f.polls.Wait(); close(done) }()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	case <-ctx.Done():
	}
}

func (f *freshness) result() FreshnessSet {
	fs := FreshnessSet{Percentiles: f.h.percentiles(), Timeouts: f.timeouts.Load(), Reads: f.reads.Load(), Misses: f.misses.Load(),
		CHRows: -1, CHBytes: -1}
	if end := f.readCost(); f.readAtStart.ok && end.ok {
		fs.CHRows, fs.CHBytes = int64(end.rows-f.readAtStart.rows), int64(end.bytes-f.readAtStart.bytes)
	}
	return fs
}
