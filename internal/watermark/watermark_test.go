package watermark

import (
	"errors"
	"testing"
)

func TestCovered(t *testing.T) {
	l := NewLog(3)
	l.Add(Observation{At: 1000, Partitions: 2, Ends: map[int32]int64{0: 10, 1: 0}})
	l.Add(Observation{At: 1100, Partitions: 2, Ends: map[int32]int64{0: 15, 1: 0}})
	l.Add(Observation{At: 1050, Ends: map[int32]int64{0: 1}}) // out of order: dropped
	l.Add(Observation{At: 1200, Partitions: 2, Ends: map[int32]int64{0: 20}})
	for _, c := range []struct {
		name   string
		p      int32
		stored int64
		want   int64
		ok     bool
	}{
		{"stored nothing, partition had records", 0, 0, 0, false},
		{"stored up to the first listing", 0, 10, 999, true},
		{"between listings", 0, 17, 1099, true},
		{"everything listed", 0, 20, 1199, true},
		{"idle partition: newest listing that names it", 1, 0, 1099, true},
		{"partition never listed", 2, 100, 0, false},
	} {
		got, ok := l.Covered(c.p, c.stored)
		if got != c.want || ok != c.ok {
			t.Errorf("%s: Covered(%d, %d) = %d, %v; want %d, %v", c.name, c.p, c.stored, got, ok, c.want, c.ok)
		}
	}
	// The log keeps 3: adding a fourth forgets the first.
	l.Add(Observation{At: 1300, Partitions: 2, Ends: map[int32]int64{0: 30, 1: 0}})
	if got, ok := l.Covered(0, 10); ok {
		t.Errorf("forgotten listing still covers: %d", got)
	}
	if o, _ := l.Latest(); o.At != 1300 {
		t.Errorf("Latest = %d", o.At)
	}
}

func TestStamp(t *testing.T) {
	for _, c := range []struct {
		name                  string
		received, floor, last int64
		want                  int64
	}{
		{"receive time", 5000, 4000, 4500, 5000},
		{"raised above the published watermark", 3000, 4000, 0, 4001},
		{"never before the previous row", 5000, 4000, 5200, 5200},
		{"no receive time", 0, 4000, 0, 4001},
	} {
		if got := Stamp(c.received, c.floor, c.last); got != c.want {
			t.Errorf("%s: Stamp(%d, %d, %d) = %d, want %d", c.name, c.received, c.floor, c.last, got, c.want)
		}
	}
}

// TestStampNeverBehindWatermark replays a partition whose parts arrive
// out of receive order (the broker appends in its own order) and checks
// the two promises: no row lands at or below a watermark already
// published, and every part acknowledged by a published watermark is
// stored with order_ms at or below it.
func TestStampNeverBehindWatermark(t *testing.T) {
	type part struct{ received, appended, acked int64 }
	// Appended in offset order; received out of order.
	parts := []part{{100, 110, 111}, {90, 120, 125}, {130, 131, 140}, {95, 200, 201}, {205, 206, 210}, {150, 300, 305}}
	var (
		floor, last int64
		orders      []int64
		stored      int
		published   []int64
	)
	// A listing at time at sees the parts appended before it; a flush
	// stores everything appended so far, then publishes.
	for _, at := range []int64{115, 150, 250, 400} {
		l := NewLog(0)
		end := 0
		for end < len(parts) && parts[end].appended < at {
			end++
		}
		l.Add(Observation{At: at, Partitions: 1, Ends: map[int32]int64{0: int64(end)}})
		for ; stored < end; stored++ {
			last = Stamp(parts[stored].received, floor, last)
			for _, w := range published {
				if last <= w {
					t.Fatalf("part %d stamped %d, at or below published watermark %d", stored, last, w)
				}
			}
			orders = append(orders, last)
		}
		w, ok := l.Covered(0, int64(stored))
		if !ok {
			t.Fatalf("listing at %d not covered", at)
		}
		floor = max(floor, w)
		published = append(published, w)
		for i, p := range parts {
			if p.acked <= w && (i >= stored || orders[i] > w) {
				t.Errorf("part %d acknowledged at %d, watermark %d: stored %v, order_ms %v", i, p.acked, w, i < stored, orders)
			}
		}
	}
}

func TestOf(t *testing.T) {
	for _, c := range []struct {
		name string
		ps   []Partition
		want int64
	}{
		{"none", nil, 0},
		{"smallest partition", []Partition{{0, 3, 500, 0}, {1, 3, 400, 0}, {2, 3, 600, 0}}, 400},
		{"a partition never published", []Partition{{0, 3, 500, 0}, {2, 3, 600, 0}}, 0},
		{"grown topic: the new partition counts", []Partition{{0, 2, 500, 0}, {1, 3, 400, 0}}, 0},
		{"largest of one partition's", []Partition{{0, 1, 500, 0}, {0, 1, 700, 0}}, 700},
	} {
		if got := Of(c.ps); got != c.want {
			t.Errorf("%s: Of = %d, want %d", c.name, got, c.want)
		}
	}
}

func TestParse(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		err  bool
	}{
		{"1795808901123", 1795808901123, false},
		{"2026-11-27T19:48:21.123Z", 1795808901123, false},
		{"2026-11-27T20:48:21.1239+01:00", 1795808901123, false},
		{"", 0, true},
		{"-5", 0, true},
		{"12abc", 0, true},
		{"99999999999999999999", 0, true},
		{"yesterday", 0, true},
	} {
		got, err := Parse(c.in)
		if (err != nil) != c.err || got != c.want {
			t.Errorf("Parse(%q) = %d, %v; want %d, error %v", c.in, got, err, c.want, c.err)
		}
		if err != nil && !errors.Is(err, ErrSyntax) {
			t.Errorf("Parse(%q): %v is not ErrSyntax", c.in, err)
		}
	}
}
