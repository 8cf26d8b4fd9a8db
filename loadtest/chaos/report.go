package chaos

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
)

// Result is one fault's row.
type Result struct {
	Fault string `json:"fault"`
	What  string `json:"what"`
	Tally
	// Dropped parts were due while every in-flight slot was taken: never
	// sent, so not in the tally.
	Dropped int64 `json:"dropped"`
	// API is what the parts record area shows; Rollup the rollups'
	// agreement with parts after the fault; RollupRepairs the hourly keys
	// the processor completed after an interrupted insert.
	API           APITally    `json:"parts_area"`
	Rollup        RollupCheck `json:"rollups"`
	RollupRepairs float64     `json:"rollup_repairs"`
	// FaultS is how long the fault lasted (inject to healed); RecoveryS
	// from the heal until the ingestor answered 200 again and ClickHouse
	// held every part acknowledged before the heal.
	FaultS    float64 `json:"fault_s"`
	RecoveryS float64 `json:"recovery_s"`
	Recovered bool    `json:"recovered"`
	Checks    []Check `json:"checks,omitempty"`
	// Err is a problem of the harness while running the fault.
	Err string `json:"error,omitempty"`
}

// Check is a fault's own assertion (e.g. record ids rebuilt).
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

func (r *Result) check(name string, ok bool, detail string) {
	r.Checks = append(r.Checks, Check{name, ok, detail})
}

// OK reports whether the fault lost, doubled or wrongly stored nothing,
// the parts area and the rollups agree, the pipeline recovered and every
// check of the fault held.
func (r Result) OK() bool {
	ok := r.Tally.OK() && r.API.OK() && r.Rollup.OK && r.Recovered && r.Err == "" && r.Acked > 0
	for _, c := range r.Checks {
		ok = ok && c.OK
	}
	return ok
}

// Report is a whole run of the matrix.
type Report struct {
	Date       string   `json:"date"`
	Cores      int      `json:"cores"`
	Mode       string   `json:"mode"` // full or short
	Rate       float64  `json:"rate"`
	Machines   int      `json:"machines"`
	Batch      int      `json:"batch"`
	Partitions int      `json:"partitions"`
	DurationS  float64  `json:"duration_s"`
	Command    string   `json:"command,omitempty"`
	Results    []Result `json:"results"`
}

// OK reports whether every fault's result is OK.
func (r *Report) OK() bool {
	for _, res := range r.Results {
		if !res.OK() {
			return false
		}
	}
	return len(r.Results) > 0
}

// Totals sums the tallies of every fault.
func (r *Report) Totals() Tally {
	t := Tally{ByStatus: map[int]int64{}}
	for _, res := range r.Results {
		t.Sent += res.Sent
		t.Acked += res.Acked
		t.Rejected += res.Rejected
		t.Uncertain += res.Uncertain
		t.UncertainStored += res.UncertainStored
		t.Stored += res.Stored
		t.Rows += res.Rows
		t.Lost += res.Lost
		t.Doubled += res.Doubled
		t.RejectedStored += res.RejectedStored
		t.Foreign += res.Foreign
		for k, v := range res.ByStatus {
			t.ByStatus[k] += v
		}
	}
	return t
}

// WriteJSON writes the report to path.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// Table writes the Markdown table of the results.
func (r *Report) Table(w io.Writer) {
	fmt.Fprintln(w, "| fault | parts sent | acked | not 200: refused / uncertain (of them stored) | stored | lost | doubled | parts area | rollups | fault | recovery |")
	fmt.Fprintln(w, "|---|--:|--:|---|--:|--:|--:|---|---|--:|--:|")
	for _, res := range r.Results {
		fmt.Fprintf(w, "| %s | %d | %d | %s | %d | %d | %d | %s | %s | %.1f s | %s |\n",
			res.Fault, res.Sent, res.Acked, notOK(res.Tally), res.Stored, res.Lost, res.Doubled+res.RejectedStored+res.Foreign,
			apiCell(res.API), rollupCell(res), res.FaultS, recoveryCell(res))
	}
	t := r.Totals()
	fmt.Fprintf(w, "| **total** | **%d** | **%d** | %s | **%d** | **%d** | **%d** | | | | |\n",
		t.Sent, t.Acked, notOK(t), t.Stored, t.Lost, t.Doubled+t.RejectedStored+t.Foreign)
}

// Markdown writes the whole report: the table, what each fault did, the
// answers by status and each fault's own checks.
func (r *Report) Markdown(w io.Writer) {
	t := r.Totals()
	verdict := "every fault: 0 lost, 0 doubled, every non-200 answer accounted for"
	if !r.OK() {
		verdict = "FAILED: see the rows marked below"
	}
	fmt.Fprintf(w, "# Fault matrix (%s)\n\n", r.Mode)
	fmt.Fprintf(w, "%s, %d cores, %d parts sent (%d acknowledged) at %.0f parts/s from %d machines, batch %d, %d partitions, %.0f s in all. Result: %s.\n\n",
		r.Date, r.Cores, t.Sent, t.Acked, r.Rate, r.Machines, r.Batch, r.Partitions, r.DurationS, verdict)
	if r.Command != "" {
		fmt.Fprintf(w, "Command: `%s`\n\n", r.Command)
	}
	r.Table(w)
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Columns: *stored* counts distinct parts in ClickHouse; *lost* acknowledged parts not stored;")
	fmt.Fprintln(w, "*doubled* extra copies of any part, refused parts stored and stored parts never sent.")
	fmt.Fprintln(w, "*Not 200*: refused (4xx: must not be stored) and uncertain (5xx or no answer: stored at most once).")
	fmt.Fprintln(w, "*Parts area*: the record API's parts, paged with the exactly-once loop. *Rollups*: parts_hourly equals")
	fmt.Fprintln(w, "the rollup of parts and parts_hour_ranges covers every row (repairs: hourly keys the processor completed")
	fmt.Fprintln(w, "after an insert cut short between parts and its views). *Recovery*: from the heal until the ingestor")
	fmt.Fprintln(w, "answered 200 again and ClickHouse held every part acknowledged before the heal.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| fault | what | answers by status (parts) | checks |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for _, res := range r.Results {
		var checks []string
		for _, c := range res.Checks {
			mark := "ok"
			if !c.OK {
				mark = "FAILED"
			}
			checks = append(checks, fmt.Sprintf("%s: %s (%s)", c.Name, mark, c.Detail))
		}
		if res.Err != "" {
			checks = append(checks, "harness error: "+res.Err)
		}
		if res.Dropped > 0 {
			checks = append(checks, fmt.Sprintf("%d parts not sent (in-flight cap)", res.Dropped))
		}
		fmt.Fprintf(w, "| %s%s | %s | %s | %s |\n", res.Fault, failMark(res), res.What, statusCell(res.ByStatus),
			strings.Join(checks, "; "))
	}
}

func failMark(r Result) string {
	if r.OK() {
		return ""
	}
	return " **FAILED**"
}

func notOK(t Tally) string {
	if t.Rejected == 0 && t.Uncertain == 0 {
		return "0"
	}
	return fmt.Sprintf("%d / %d (%d)", t.Rejected, t.Uncertain, t.UncertainStored)
}

func apiCell(a APITally) string {
	if !a.Checked {
		return "**not read**"
	}
	if a.OK() {
		return fmt.Sprintf("ok (%d)", a.Records)
	}
	return fmt.Sprintf("**lost %d, doubled %d, foreign %d**", a.Lost, a.Doubled, a.Foreign)
}

func rollupCell(r Result) string {
	s := "ok"
	if !r.Rollup.OK {
		s = fmt.Sprintf("**%d keys differ, %d rows outside ranges**", r.Rollup.DiffKeys, r.Rollup.OutsideRanges)
	}
	if r.RollupRepairs > 0 {
		s += fmt.Sprintf(" (%.0f repaired)", r.RollupRepairs)
	}
	return s
}

func recoveryCell(r Result) string {
	if !r.Recovered {
		return "**not recovered**"
	}
	return fmt.Sprintf("%.1f s", r.RecoveryS)
}

func statusCell(m map[int]int64) string {
	codes := make([]int, 0, len(m))
	for k := range m {
		codes = append(codes, k)
	}
	sort.Ints(codes)
	var parts []string
	for _, k := range codes {
		name := strconv.Itoa(k)
		if k == 0 {
			name = "no answer"
		}
		parts = append(parts, fmt.Sprintf("%s: %d", name, m[k]))
	}
	return strings.Join(parts, ", ")
}
