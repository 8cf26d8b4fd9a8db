package loadtest

import (
	"context"
	"testing"
	"time"
)

// fakeClock advances only when slept on, or when a test moves it. lag is
// added to every sleep: a scheduler that wakes up late.
type fakeClock struct {
	t   time.Time
	lag time.Duration
}

func (c *fakeClock) Now() time.Time { return c.t }

func (c *fakeClock) Sleep(_ context.Context, d time.Duration) { c.t = c.t.Add(d + c.lag) }

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestOpenLoopDueTimes(t *testing.T) {
	clk := &fakeClock{t: t0}
	var dues []time.Duration
	o := openLoop{clock: clk, interval: 4 * time.Millisecond, maxSends: 100, end: t0.Add(20 * time.Millisecond),
		slots: make(chan struct{}, 1), launch: func(f func()) { f() }}
	c := o.run(context.Background(), t0, func(due time.Time) func(time.Time) {
		return func(due time.Time) { dues = append(dues, due.Sub(t0)) }
	})
	want := []time.Duration{0, 4, 8, 12, 16}
	if c.launched != 5 || c.dropped != 0 || len(dues) != 5 {
		t.Fatalf("launched %d dropped %d dues %v", c.launched, c.dropped, dues)
	}
	for i := range want {
		if dues[i] != want[i]*time.Millisecond {
			t.Errorf("send %d due at %v, want %v", i, dues[i], want[i]*time.Millisecond)
		}
	}
}

// TestOpenLoopDropsWhenSlotsAreTaken: sends whose work never finishes
// keep their slots; every send due after the slots are gone is dropped,
// not queued.
func TestOpenLoopDropsWhenSlotsAreTaken(t *testing.T) {
	clk := &fakeClock{t: t0}
	var held []func()
	o := openLoop{clock: clk, interval: time.Millisecond, maxSends: 10, end: t0.Add(time.Hour),
		slots: make(chan struct{}, 3), launch: func(f func()) { held = append(held, f) }}
	c := o.run(context.Background(), t0, func(time.Time) func(time.Time) { return func(time.Time) {} })
	if c.launched != 3 || c.dropped != 7 {
		t.Errorf("launched %d dropped %d, want 3 and 7", c.launched, c.dropped)
	}
	for _, f := range held {
		f()
	}
	if len(o.slots) != 0 {
		t.Errorf("%d slots still taken after every send finished", len(o.slots))
	}
}

// TestOpenLoopLatencyFromDueTime: a server that takes 2 ms per request
// against sends due every 1 ms, measured by a sender that can only send
// one at a time (the work runs inline). Each send starts later than it
// was due; its latency counts from the due time, so it grows by 1 ms per
// send (the queue the server builds), where timing from the actual start
// would claim a flat 2 ms (coordinated omission).
func TestOpenLoopLatencyFromDueTime(t *testing.T) {
	clk := &fakeClock{t: t0}
	h := newHist()
	var lat []time.Duration
	o := openLoop{clock: clk, interval: time.Millisecond, maxSends: 5, end: t0.Add(time.Hour),
		slots: make(chan struct{}, 1), launch: func(f func()) { f() }}
	o.run(context.Background(), t0, func(time.Time) func(time.Time) {
		return func(due time.Time) {
			clk.t = clk.t.Add(2 * time.Millisecond) // the request
			d := clk.Now().Sub(due)
			lat = append(lat, d)
			h.record(d)
		}
	})
	for i, d := range lat {
		if want := time.Duration(i+2) * time.Millisecond; d != want {
			t.Errorf("send %d: latency %v, want %v", i, d, want)
		}
	}
	// HdrHistogram keeps 3 significant digits.
	if p := h.percentiles(); p.Max < 6 || p.Max > 6.01 || p.N != 5 {
		t.Errorf("histogram max %v ms over %d, want 6 ms over 5", p.Max, p.N)
	}
}

// TestOpenLoopLateSchedulerStillSendsEverything: a scheduler that wakes
// up late catches up (sends at once what is overdue) rather than lowering
// the rate; the lateness is in the latencies.
func TestOpenLoopLateSchedulerStillSendsEverything(t *testing.T) {
	clk := &fakeClock{t: t0, lag: 3 * time.Millisecond}
	var late []time.Duration
	o := openLoop{clock: clk, interval: time.Millisecond, maxSends: 6, end: t0.Add(time.Hour),
		slots: make(chan struct{}, 10), launch: func(f func()) { f() }}
	c := o.run(context.Background(), t0, func(time.Time) func(time.Time) {
		return func(due time.Time) { late = append(late, clk.Now().Sub(due)) }
	})
	if c.launched != 6 || c.dropped != 0 {
		t.Fatalf("launched %d dropped %d", c.launched, c.dropped)
	}
	// Sleeps happen before sends 1 and 5 (the others are overdue).
	want := []time.Duration{0, 3, 2, 1, 0, 3}
	for i := range want {
		if late[i] != want[i]*time.Millisecond {
			t.Errorf("send %d started %v after due, want %v", i, late[i], want[i]*time.Millisecond)
		}
	}
}

func TestOpenLoopStopsAtEndAndMax(t *testing.T) {
	for _, c := range []struct {
		max  int
		end  time.Duration
		want int
	}{{100, 10 * time.Millisecond, 10}, {4, time.Hour, 4}} {
		clk := &fakeClock{t: t0}
		o := openLoop{clock: clk, interval: time.Millisecond, maxSends: c.max, end: t0.Add(c.end),
			slots: make(chan struct{}, 1), launch: func(f func()) { f() }}
		got := o.run(context.Background(), t0, func(time.Time) func(time.Time) { return func(time.Time) {} })
		if got.launched != c.want {
			t.Errorf("max %d end %v: %d sends, want %d", c.max, c.end, got.launched, c.want)
		}
	}
}

func TestClosedLoopBoundedByCount(t *testing.T) {
	l := closedLoop{clock: realClock{}, workers: 4, maxSends: 37, end: time.Now().Add(time.Minute)}
	n := 0
	c := l.run(context.Background(), func(time.Time) func(time.Time) {
		n++ // serialised by the loop
		return func(time.Time) {}
	})
	if c.launched != 37 || n != 37 {
		t.Errorf("launched %d, prepared %d, want 37", c.launched, n)
	}
}
