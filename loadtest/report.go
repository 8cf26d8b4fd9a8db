package loadtest

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Report is what a run did. Counts are in parts (a batch request of N parts
// that got an answer counts N); rates are parts per second.
type Report struct {
	Label    string `json:"label,omitempty"`
	Date     string `json:"date"`
	Cores    int    `json:"cores"`
	Target   string `json:"target"`
	Mode     string `json:"mode"` // "open" (rate) or "closed" (concurrency)
	Batch    int    `json:"batch"`
	Machines int    `json:"machines"`

	// Sent counts parts whose request was sent; Acked those the server
	// acknowledged (200 for the part); Errors those answered otherwise
	// or not at all; Dropped those due while every in-flight slot was
	// taken (open loop), never sent.
	Sent     int64 `json:"sent"`
	Acked    int64 `json:"acked"`
	Errors   int64 `json:"errors"`
	Dropped  int64 `json:"dropped"`
	Requests int64 `json:"requests"`

	DurationS float64 `json:"duration_s"`
	// RateTarget is the open-loop target (0 in closed loop); RateAchieved
	// is acked parts over the sending time.
	RateTarget   float64 `json:"rate_target"`
	RateAchieved float64 `json:"rate_achieved"`
	RequestsPerS float64 `json:"requests_per_s"`

	// Latency of requests, from the due time (open loop) or the start of
	// the send (closed loop) to the full answer.
	Latency Percentiles `json:"latency_ms"`
	// Status counts requests by HTTP status ("transport" for requests
	// with no answer); ItemStatus counts batch items by their status.
	Status       map[string]int64 `json:"status"`
	ItemStatus   map[string]int64 `json:"item_status,omitempty"`
	ErrorSamples []string         `json:"error_samples,omitempty"`

	// Verified is true when -verify ran to completion: the pipeline
	// drained and the counts were taken. Lost are acknowledged parts not
	// in ClickHouse; Duplicated are part events stored more than once
	// (same event id twice) plus stored events beyond what was sent.
	// UnackedStored are stored parts whose request failed without a
	// definite answer (timeouts, 5xx): allowed, at least once.
	// Retried are parts whose request was sent twice with the same
	// idempotency keys (-retry-rate); Replayed the answers (per part)
	// the ingestor gave from its record of the first.
	Retried       int64        `json:"retried,omitempty"`
	Replayed      int64        `json:"replayed,omitempty"`
	Verified      bool         `json:"verified"`
	Lost          int64        `json:"lost"`
	Duplicated    int64        `json:"duplicated"`
	UnackedStored int64        `json:"unacked_stored"`
	StoredRows    uint64       `json:"stored_rows"`
	StoredQty     uint64       `json:"stored_quantity"`
	AckedQty      int64        `json:"acked_quantity"`
	DrainS        float64      `json:"drain_s"`
	Freshness     FreshnessSet `json:"freshness_ms"`
	VerifyError   string       `json:"verify_error,omitempty"`
	// CPU is the CPU time of Config.CPU's processes per acknowledged
	// part; CPUError says why it is missing.
	CPU      *CPUUse `json:"cpu,omitempty"`
	CPUError string  `json:"cpu_error,omitempty"`
}

// Percentiles of a latency distribution, in milliseconds.
type Percentiles struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
	N    int64   `json:"n"`
}

// FreshnessSet is the accept → visible-in-the-query-API delay of sampled
// parts (in the parts area's default order); Timeouts are samples never
// seen before the drain deadline. Reads is what the probe cost: the query
// API requests it sent; CHRows and CHBytes what ClickHouse read for the
// query API's parts reads meanwhile (its metrics; the probe's when nobody
// else reads parts there; -1: not measured). Misses are answers whose
// watermark had reached the sample's acknowledgement and that did not
// hold it: each breaks the watermark's promise.
type FreshnessSet struct {
	Percentiles
	Timeouts int64 `json:"timeouts"`
	Reads    int64 `json:"reads"`
	CHRows   int64 `json:"clickhouse_rows_read"`
	CHBytes  int64 `json:"clickhouse_bytes_read"`
	Misses   int64 `json:"watermark_misses"`
}

// hist is a concurrency-safe HdrHistogram of durations in microseconds
// (1 µs to 10 min, 3 significant digits).
type hist struct {
	mu sync.Mutex
	h  *hdrhistogram.Histogram
}

func newHist() *hist { return &hist{h: hdrhistogram.New(1, int64(10*time.Minute/time.Microsecond), 3)} }

func (h *hist) record(d time.Duration) {
	us := max(d.Microseconds(), 1)
	h.mu.Lock()
	_ = h.h.RecordValue(min(us, h.h.HighestTrackableValue()))
	h.mu.Unlock()
}

func (h *hist) percentiles() Percentiles {
	h.mu.Lock()
	defer h.mu.Unlock()
	ms := func(us int64) float64 { return float64(us) / 1000 }
	if h.h.TotalCount() == 0 {
		return Percentiles{}
	}
	return Percentiles{
		P50: ms(h.h.ValueAtQuantile(50)), P90: ms(h.h.ValueAtQuantile(90)),
		P99: ms(h.h.ValueAtQuantile(99)), P999: ms(h.h.ValueAtQuantile(99.9)),
		Max: ms(h.h.Max()), Mean: h.h.Mean() / 1000, N: h.h.TotalCount(),
	}
}

func (h *hist) p99() float64 { return h.percentiles().P99 }

// WriteJSON writes r to path, indented.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// Summary writes the one-screen human form of r.
func (r *Report) Summary(w io.Writer) {
	mode := fmt.Sprintf("open loop, target %.0f parts/s", r.RateTarget)
	if r.Mode == "closed" {
		mode = "closed loop (saturation)"
	}
	endpoint := "single-part"
	if r.Batch > 1 {
		endpoint = fmt.Sprintf("batch of %d", r.Batch)
	}
	title := "takt loadtest"
	if r.Label != "" {
		title += ": " + r.Label
	}
	fmt.Fprintf(w, "%s — %s, %s, %d machines → %s\n", title, mode, endpoint, r.Machines, r.Target)
	fmt.Fprintf(w, "  %s, %d cores, %.1f s of sending\n", r.Date, r.Cores, r.DurationS)
	fmt.Fprintf(w, "  parts     sent %d  acked %d  errors %d  dropped %d  (%d requests)\n", r.Sent, r.Acked, r.Errors, r.Dropped, r.Requests)
	fmt.Fprintf(w, "  rate      %.0f parts/s acked (%.0f requests/s)\n", r.RateAchieved, r.RequestsPerS)
	l := r.Latency
	fmt.Fprintf(w, "  latency   p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f ms\n", l.P50, l.P90, l.P99, l.P999, l.Max)
	fmt.Fprintf(w, "  status    %s\n", countsLine(r.Status))
	if len(r.ItemStatus) > 0 {
		fmt.Fprintf(w, "  items     %s\n", countsLine(r.ItemStatus))
	}
	if r.Retried > 0 {
		fmt.Fprintf(w, "  retried   %d parts sent twice with the same idempotency key; %d answers replayed\n", r.Retried, r.Replayed)
	}
	for _, e := range r.ErrorSamples {
		fmt.Fprintf(w, "  error     %s\n", e)
	}
	if u := r.CPU; u != nil {
		fmt.Fprintf(w, "  cpu       µs per part:%s  (%.1f s window, %.1f s of it settling)\n", u.line(), u.WallS, u.SettleS)
	} else if r.CPUError != "" {
		fmt.Fprintf(w, "  cpu       not measured: %s\n", r.CPUError)
	}
	switch {
	case r.Verified:
		verdict := "OK"
		if r.Lost > 0 || r.Duplicated > 0 {
			verdict = "FAILED"
		}
		fmt.Fprintf(w, "  verify    %s: lost %d  duplicated %d  unacked-but-stored %d  (stored %d rows, quantity %d of %d acked; drained in %.1f s)\n",
			verdict, r.Lost, r.Duplicated, r.UnackedStored, r.StoredRows, r.StoredQty, r.AckedQty, r.DrainS)
		f := r.Freshness
		fmt.Fprintf(w, "  freshness p50 %.0f  p99 %.0f  max %.0f ms  (%d samples, %d never seen; %d probe reads, %d watermark misses)\n",
			f.P50, f.P99, f.Max, f.N, f.Timeouts, f.Reads, f.Misses)
		if f.CHRows >= 0 && f.Reads > 0 {
			fmt.Fprintf(w, "  probe     ClickHouse read %d rows, %.1f MB for the query API's parts reads (%.0f rows, %.1f KB per probe read)\n",
				f.CHRows, float64(f.CHBytes)/1e6, float64(f.CHRows)/float64(f.Reads), float64(f.CHBytes)/1e3/float64(f.Reads))
		}
	case r.VerifyError != "":
		fmt.Fprintf(w, "  verify    NOT VERIFIED: %s\n", r.VerifyError)
	}
}

func countsLine(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var sb strings.Builder
	for i, k := range keys {
		if i > 0 {
			sb.WriteString("  ")
		}
		fmt.Fprintf(&sb, "%s: %d", k, m[k])
	}
	return sb.String()
}
