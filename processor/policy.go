package processor

import "time"

// flushReason says why pending work has to be written now; noFlush means
// it can wait. The values label the batches metric.
type flushReason string

const (
	noFlush        flushReason = ""
	flushFull      flushReason = "rows"      // TAKT_BATCH_ROWS rows are pending
	flushInterval  flushReason = "interval"  // TAKT_BATCH_INTERVAL passed since the first pending record
	flushRebalance flushReason = "rebalance" // the group wants to rebalance and waits for us
	flushStop      flushReason = "shutdown"  // the processor is stopping
	// flushWatermark writes nothing but the watermarks of partitions with
	// nothing pending (see watermark.go).
	flushWatermark flushReason = "watermark"
	// flushRecompute writes a partition's work with the period rows of a
	// recompute (recompute.go), in the consume loop.
	flushRecompute flushReason = "recompute"
)

// pending describes the work consumed but not yet committed: rows waiting
// for ClickHouse and records already settled (sent to the dead-letter
// topic) whose offsets still need committing.
type pending struct {
	rows int
	// records counts every consumed, uncommitted record, rows included.
	records int
	// since is when the first of those records was consumed.
	since time.Time
}

// flushPolicy is the pure flush decision: it takes the clock as an
// argument so every case is a table test.
type flushPolicy struct {
	rows     int
	interval time.Duration
}

// due says whether the pending work must be flushed at now.
func (fp flushPolicy) due(p pending, now time.Time, rebalanceWanted, stopping bool) flushReason {
	switch {
	case p.records == 0:
		return noFlush
	case stopping:
		return flushStop
	case p.rows >= fp.rows:
		return flushFull
	case rebalanceWanted:
		return flushRebalance
	case !now.Before(p.since.Add(fp.interval)):
		return flushInterval
	}
	return noFlush
}

// deadline is when the pending work becomes due by the interval rule;
// ok is false when nothing is pending (a poll may then wait indefinitely).
func (fp flushPolicy) deadline(p pending) (t time.Time, ok bool) {
	if p.records == 0 {
		return time.Time{}, false
	}
	return p.since.Add(fp.interval), true
}

// pollLimit is how many records the next poll may return so that a batch
// does not grow past its row limit.
func (fp flushPolicy) pollLimit(p pending) int {
	if n := fp.rows - p.rows; n > 0 {
		return n
	}
	return 1
}

// backoff returns the wait before retry attempt n (1-based): doubling from
// min up to max.
func backoff(n int, min, max time.Duration) time.Duration {
	d := min
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	return d
}
