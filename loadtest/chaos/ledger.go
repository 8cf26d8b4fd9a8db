package chaos

import (
	"net/http"
	"sync"
	"time"

	"github.com/takt/takt/loadtest"
)

// partKey identifies a part: its location and recorded_at in
// milliseconds.
type partKey struct {
	ext string
	ms  int64
}

// ledger records the answer of every part sent during one fault's run.
// The load harness's senders call add concurrently.
type ledger struct {
	mu       sync.Mutex
	parts    map[partKey]int // HTTP status, 0: no answer
	twice    int64           // outcomes reported twice for one part (a harness bug)
	acked    int64
	lastErr  time.Time // when the latest non-200 answer came
	firstErr time.Time
}

func newLedger() *ledger { return &ledger{parts: map[partKey]int{}} }

func (l *ledger) add(o loadtest.PartOutcome) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	k := partKey{o.ExternalID, o.RecordedMs}
	if _, ok := l.parts[k]; ok {
		l.twice++
		return
	}
	l.parts[k] = o.Status
	if o.Status == http.StatusOK {
		l.acked++
		return
	}
	if l.firstErr.IsZero() {
		l.firstErr = now
	}
	l.lastErr = now
}

// ackedSoFar returns how many parts were acknowledged until now.
func (l *ledger) ackedSoFar() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.acked
}

// errorSpan returns when the first and the latest non-200 answers came
// (zero times when there was none).
func (l *ledger) errorSpan() (first, last time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.firstErr, l.lastErr
}

// Tally is the comparison of what was answered with what was stored.
// Counts are in parts (part events, not quantities).
type Tally struct {
	// Sent parts: Acked (200), Rejected (a definite refusal, 4xx) and
	// Uncertain (5xx or no answer: the ingestor may have handed the part
	// to Kafka before it failed).
	Sent      int64 `json:"sent"`
	Acked     int64 `json:"acked"`
	Rejected  int64 `json:"rejected"`
	Uncertain int64 `json:"uncertain"`
	// UncertainStored: uncertain parts that were stored (once). Allowed.
	UncertainStored int64 `json:"uncertain_stored"`
	// Stored is the number of distinct parts stored, Rows the rows.
	Stored int64 `json:"stored"`
	Rows   int64 `json:"rows"`
	// The failures: acknowledged parts not stored; extra copies of any
	// part; refused parts that were stored; stored parts never sent.
	Lost           int64 `json:"lost"`
	Doubled        int64 `json:"doubled"`
	RejectedStored int64 `json:"rejected_stored"`
	Foreign        int64 `json:"foreign"`
	// ByStatus counts sent parts by their answer ("0": none).
	ByStatus map[int]int64 `json:"by_status"`
}

// OK reports whether the tally shows nothing lost, doubled or stored
// that should not be.
func (t Tally) OK() bool {
	return t.Lost == 0 && t.Doubled == 0 && t.RejectedStored == 0 && t.Foreign == 0
}

// tally compares the answers (part → status) with what is stored (part →
// copies).
func tally(answers map[partKey]int, stored map[partKey]int) Tally {
	t := Tally{ByStatus: map[int]int64{}}
	for k, status := range answers {
		t.Sent++
		t.ByStatus[status]++
		n := int64(stored[k])
		if n > 1 {
			t.Doubled += n - 1
		}
		switch {
		case status == http.StatusOK:
			t.Acked++
			if n == 0 {
				t.Lost++
			}
		case status >= 400 && status < 500:
			t.Rejected++
			t.RejectedStored += n
		default:
			t.Uncertain++
			if n > 0 {
				t.UncertainStored++
			}
		}
	}
	for k, n := range stored {
		t.Rows += int64(n)
		t.Stored++
		if _, ok := answers[k]; !ok {
			t.Foreign += int64(n)
		}
	}
	return t
}
