package processor

import (
	"reflect"
	"testing"
	"time"

	"github.com/takt/takt/internal/chstore"
)

func TestFlushPolicyDue(t *testing.T) {
	fp := flushPolicy{rows: 100, interval: time.Second}
	t0 := time.Unix(1_700_000_000, 0)
	tests := []struct {
		name      string
		p         pending
		now       time.Time
		rebalance bool
		stopping  bool
		want      flushReason
	}{
		{"nothing pending", pending{}, t0.Add(time.Hour), true, true, noFlush},
		{"few rows, early", pending{rows: 10, records: 10, since: t0}, t0.Add(999 * time.Millisecond), false, false, noFlush},
		{"interval reached exactly", pending{rows: 10, records: 10, since: t0}, t0.Add(time.Second), false, false, flushInterval},
		{"interval passed", pending{rows: 10, records: 10, since: t0}, t0.Add(2 * time.Second), false, false, flushInterval},
		{"row limit reached", pending{rows: 100, records: 100, since: t0}, t0, false, false, flushFull},
		{"row limit passed", pending{rows: 150, records: 150, since: t0}, t0, false, false, flushFull},
		{"dead letters only, early", pending{records: 3, since: t0}, t0, false, false, noFlush},
		{"dead letters only, interval", pending{records: 3, since: t0}, t0.Add(time.Second), false, false, flushInterval},
		{"rebalance waiting", pending{rows: 1, records: 1, since: t0}, t0, true, false, flushRebalance},
		{"full beats rebalance", pending{rows: 100, records: 100, since: t0}, t0, true, false, flushFull},
		{"stopping", pending{rows: 1, records: 1, since: t0}, t0, false, true, flushStop},
		{"clock behind since", pending{rows: 1, records: 1, since: t0}, t0.Add(-time.Minute), false, false, noFlush},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := fp.due(tc.p, tc.now, tc.rebalance, tc.stopping); got != tc.want {
				t.Errorf("due = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestFlushPolicyDeadlineAndLimit(t *testing.T) {
	fp := flushPolicy{rows: 100, interval: time.Second}
	t0 := time.Unix(1_700_000_000, 0)
	if _, ok := fp.deadline(pending{}); ok {
		t.Error("deadline with nothing pending")
	}
	if d, ok := fp.deadline(pending{records: 1, since: t0}); !ok || !d.Equal(t0.Add(time.Second)) {
		t.Errorf("deadline = %v, %v", d, ok)
	}
	for _, tc := range []struct{ rows, want int }{{0, 100}, {40, 60}, {99, 1}, {100, 1}, {250, 1}} {
		if got := fp.pollLimit(pending{rows: tc.rows}); got != tc.want {
			t.Errorf("pollLimit(%d rows) = %d, want %d", tc.rows, got, tc.want)
		}
	}
}

func TestBackoff(t *testing.T) {
	const lo, hi = 100 * time.Millisecond, time.Second
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, w := range want {
		if got := backoff(i+1, lo, hi); got != w*time.Millisecond {
			t.Errorf("backoff(%d) = %v, want %v", i+1, got, w*time.Millisecond)
		}
	}
}

func TestBlockGroups(t *testing.T) {
	batchOf := func(rows ...int) []*batch {
		var bs []*batch
		for i, n := range rows {
			b := &batch{partition: int32(i), block: new(chstore.PartsBlock)}
			for j := range n {
				if err := b.block.Append(&chstore.PartRow{ID: uint64(j), LocationKind: "line", ProductResolution: "none", Quality: "good"}); err != nil {
					t.Fatal(err)
				}
			}
			bs = append(bs, b)
		}
		return bs
	}
	tests := []struct {
		name string
		rows []int
		want [][]int32 // partitions per group
	}{
		{"nothing", nil, nil},
		{"one partition", []int{3}, [][]int32{{0}}},
		{"a moderate rate: one block for all", []int{2, 3, 1, 2, 2, 1}, [][]int32{{0, 1, 2, 3, 4, 5}}},
		{"a drain: blocks of at least the minimum", []int{6, 6, 6, 6, 6, 6}, [][]int32{{0, 1}, {2, 3}, {4, 5}}},
		{"a small rest joins the last block", []int{10, 10, 3}, [][]int32{{0}, {1, 2}}},
		{"an exact fit", []int{10, 10}, [][]int32{{0}, {1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got [][]int32
			for _, g := range blockGroups(batchOf(tt.rows...), 10) {
				var ps []int32
				for _, b := range g {
					ps = append(ps, b.partition)
				}
				got = append(got, ps)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("blockGroups(%v, 10) = %v, want %v", tt.rows, got, tt.want)
			}
		})
	}
	// A flush of the default batch size is one block however its rows
	// spread over the partitions: ClickHouse's cost per part is about
	// halved against blocks of a few partitions each (minBlockRows).
	t.Run("a default batch over six partitions: one block", func(t *testing.T) {
		per := DefaultBatchRows / 6
		if n := len(blockGroups(batchOf(per, per, per, per, per, DefaultBatchRows-5*per), minBlockRows)); n != 1 {
			t.Errorf("%d blocks, want 1", n)
		}
	})
}
