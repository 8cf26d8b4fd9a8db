package loadtest

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Retries (-retry-rate): a share of the requests is sent twice with the
// same idempotency keys, as a device does that timed out and sent again.
// Every second such request sends its repeat at once, racing the first
// (the ingestor makes it wait for the first's answer); the others send it
// after the first was answered (answered from the ingestor's record). A
// part counts as acknowledged once, when either copy got a 200, so -verify
// finds a part stored twice as a duplicate.

// retries chooses the requests sent twice and counts them.
type retries struct {
	run      string // the run's part of every key
	seq      atomic.Uint64
	parts    atomic.Int64 // parts sent twice
	replayed atomic.Int64 // answers marked Idempotent-Replayed (per part)
	sends    atomic.Uint64
}

// choose decides whether the request of parts is sent twice (a share rate
// of the requests, spread evenly) and, if so, gives each part its key.
func (rt *retries) choose(rate float64, parts []simPart) {
	if rate <= 0 {
		return
	}
	n := rt.seq.Add(1)
	// The golden-ratio sequence: low-discrepancy, so any stretch of
	// requests holds about its share of retries.
	if frac := float64(n*0x9E3779B97F4A7C15>>11) / (1 << 53); frac >= rate {
		return
	}
	prefix := "lt-" + rt.run + "-" + strconv.FormatUint(n, 36) + "-"
	for i := range parts {
		parts[i].key = prefix + strconv.Itoa(i)
	}
}

// sendTwice sends the request of parts (body) and its repeat, and records
// one outcome per part.
func (r *runner) sendTwice(ctx context.Context, parts []simPart, body []byte, due time.Time) {
	key := ""
	if r.cfg.Batch <= 1 {
		key = parts[0].key
	}
	r.requests.Add(1)
	r.retry.parts.Add(int64(len(parts)))
	var first, again httpAnswer
	if race := r.retry.sends.Add(1)%2 == 1; race {
		var wg sync.WaitGroup
		wg.Go(func() { first = r.post(ctx, body, key) })
		again = r.post(ctx, body, key)
		wg.Wait()
	} else {
		first = r.post(ctx, body, key)
		again = r.post(ctx, body, key)
	}
	a := mergeAnswers(first, again, len(parts))
	if r.cfg.Batch <= 1 {
		if first.replayed || again.replayed {
			r.retry.replayed.Add(1)
		}
	} else {
		r.retry.replayed.Add(int64(replayedItems(first.body) + replayedItems(again.body)))
	}
	r.account(parts, a, due)
}

// batchResults is the shape of a batch answer the harness reads.
type batchResults struct {
	Accepted, Rejected, Failed int
	Results                    []batchResult
}

type batchResult struct {
	Index    int    `json:"index"`
	Status   int    `json:"status"`
	Replayed bool   `json:"replayed,omitempty"`
	Error    string `json:"error,omitempty"`
}

func replayedItems(body []byte) int {
	var a batchResults
	if json.Unmarshal(body, &a) != nil {
		return 0
	}
	n := 0
	for _, res := range a.Results {
		if res.Replayed {
			n++
		}
	}
	return n
}

// mergeAnswers is the outcome of a request sent twice: a part is stored
// when either copy was answered 200. For a single part the better answer
// is taken; a batch's items are merged one by one.
func mergeAnswers(a, b httpAnswer, items int) httpAnswer {
	better := func(x, y httpAnswer) httpAnswer {
		switch {
		case x.status == http.StatusOK && x.err == nil:
			return x
		case y.status == http.StatusOK && y.err == nil:
			return y
		case x.status != 0 && x.err == nil:
			return x
		}
		return y
	}
	if items <= 1 {
		m := better(a, b)
		m.done = later(a.done, b.done)
		return m
	}
	var ra, rb batchResults
	okA := a.err == nil && json.Unmarshal(a.body, &ra) == nil && len(ra.Results) == items
	okB := b.err == nil && json.Unmarshal(b.body, &rb) == nil && len(rb.Results) == items
	switch {
	case !okA && !okB:
		m := better(a, b)
		m.done = later(a.done, b.done)
		return m
	case !okA:
		return b
	case !okB:
		return a
	}
	m := batchResults{Results: make([]batchResult, items)}
	status := http.StatusOK
	for i := range m.Results {
		x, y := ra.Results[i], rb.Results[i]
		if y.Status == http.StatusOK || x.Status != http.StatusOK && x.Status >= 500 {
			x = y
		}
		m.Results[i] = x
		switch {
		case x.Status == http.StatusOK:
			m.Accepted++
		case x.Status >= 500:
			m.Failed++
			status = http.StatusInternalServerError
		default:
			m.Rejected++
		}
	}
	body, err := json.Marshal(m)
	return httpAnswer{status: status, body: body, err: err, done: later(a.done, b.done)}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
