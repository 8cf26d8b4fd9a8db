// Package watermark is the pure logic of the parts watermark: a time W
// (Unix milliseconds) such that every part whose acknowledgement was sent
// at or before W is in ClickHouse, and is shown by every read, including
// the parts area in insertion order.
//
// The processor that owns a Kafka partition lists the topic's end offsets
// (the high watermarks) from time to time; an Observation is one such
// listing, stamped with the clock read just before the request went out.
// A part the broker acknowledged before that instant lies below the end
// offset it answered, so once the partition is stored up to that offset,
// every part of the partition acknowledged by the observation's time is
// stored (Log.Covered). The broker assigns offsets in its own order, not
// in the order the ingestors received the parts, which is why the
// watermark comes from the broker's end offsets and not from receive
// times; an idle partition is covered by every new listing.
//
// Rows are placed in insertion order by order_ms (Stamp): the receive
// time, raised above the watermark last published for the partition and
// to at least the previous row's. A row therefore never lands at or below
// a published watermark, so a read that shows exactly the rows with
// order_ms <= W shows a prefix of the order that only grows at its end:
// paging in insertion order sees every row once. And every part
// acknowledged by W has order_ms <= W (see Stamp), so that prefix holds
// every part acknowledged by W.
package watermark

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Observation is one listing of the parts topic's end offsets: Ends[p] is
// partition p's end offset as the broker answered a request sent after At
// (Unix milliseconds); Partitions is how many partitions the topic has.
type Observation struct {
	At         int64
	Partitions int32
	Ends       map[int32]int64
}

// Log keeps the most recent observations, oldest first. The zero value
// keeps DefaultLogSize of them.
type Log struct {
	obs  []Observation
	size int
}

// DefaultLogSize is how many observations a Log keeps: at one listing
// every 50 ms, 10 s of them. A partition further behind than that is not
// covered until it catches up.
const DefaultLogSize = 200

// NewLog returns a Log that keeps size observations.
func NewLog(size int) *Log { return &Log{size: max(size, 1)} }

// Add appends o. Observations must come in time order; one that does not
// is dropped.
func (l *Log) Add(o Observation) {
	if n := len(l.obs); n > 0 && o.At <= l.obs[n-1].At {
		return
	}
	size := l.size
	if size == 0 {
		size = DefaultLogSize
	}
	if len(l.obs) >= size {
		copy(l.obs, l.obs[len(l.obs)-size+1:])
		l.obs = l.obs[:size-1]
	}
	l.obs = append(l.obs, o)
}

// Latest returns the newest observation, if any.
func (l *Log) Latest() (Observation, bool) {
	if len(l.obs) == 0 {
		return Observation{}, false
	}
	return l.obs[len(l.obs)-1], true
}

// Covered returns the watermark partition p has reached when every offset
// below stored is in ClickHouse: the time of the newest observation whose
// end offset of p is at most stored, less one millisecond (a part
// acknowledged within the observation's millisecond may have been
// acknowledged after the listing). ok is false when no observation
// covers p.
func (l *Log) Covered(p int32, stored int64) (ms int64, ok bool) {
	for i := len(l.obs) - 1; i >= 0; i-- {
		if end, listed := l.obs[i].Ends[p]; listed && end <= stored {
			return l.obs[i].At - 1, true
		}
	}
	return 0, false
}

// Stamp returns the order_ms of a row received at received (Unix ms) in a
// partition whose published watermark is floor and whose previous row has
// order_ms last: received, raised above floor and to at least last.
//
// Why a part acknowledged by a published watermark W (of any partition's
// reader, W <= this partition's) gets order_ms <= W: it was received
// before its acknowledgement, so received <= W; it is raised above floor
// only when it was not stored when floor was published, that is (by
// Covered) when the broker appended it after floor's listing, so
// floor + 1 <= W; and last is the order_ms of a row the broker appended
// before it, so that row was received, and listed, no later than this
// part was appended, and the same bound holds for it.
func Stamp(received, floor, last int64) int64 {
	return max(received, floor+1, last)
}

// Partition is the watermark one partition's owner published.
type Partition struct {
	Partition int32
	// Partitions is how many partitions the topic had when it was
	// published.
	Partitions int32
	Ms         int64
	// Stored is the offset up to which the partition was stored.
	Stored int64
}

// Of returns the watermark of a topic from its partitions' (one entry per
// partition, the largest published): the smallest of them, or 0 (none)
// when a partition of the topic has published none.
func Of(ps []Partition) int64 {
	var n int32
	for _, p := range ps {
		n = max(n, p.Partitions)
	}
	if n == 0 {
		return 0
	}
	ms := make([]int64, n)
	seen := make([]bool, n)
	for _, p := range ps {
		if p.Partition < 0 || p.Partition >= n {
			continue
		}
		if !seen[p.Partition] || p.Ms > ms[p.Partition] {
			ms[p.Partition], seen[p.Partition] = p.Ms, true
		}
	}
	w := int64(-1)
	for i := range ms {
		if !seen[i] {
			return 0
		}
		if w < 0 || ms[i] < w {
			w = ms[i]
		}
	}
	return max(w, 0)
}

// ErrSyntax is matched (errors.Is) by every error Parse returns.
var ErrSyntax = errors.New("not a watermark")

// Parse reads a watermark as a client writes it: Unix milliseconds (what
// X-Takt-Watermark carries), or an RFC 3339 time (fractions of a second
// below a millisecond round down).
func Parse(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("%w: empty", ErrSyntax)
	}
	if s[0] >= '0' && s[0] <= '9' && !strings.ContainsAny(s, "-:T") {
		ms, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%w: %q is neither Unix milliseconds nor an RFC 3339 time", ErrSyntax, s)
		}
		return ms, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, fmt.Errorf("%w: %q is neither Unix milliseconds nor an RFC 3339 time", ErrSyntax, s)
	}
	return t.UnixMilli(), nil
}

// Format writes a watermark as X-Takt-Watermark carries it.
func Format(ms int64) string { return strconv.FormatInt(ms, 10) }
