package loadtest

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Clock is the scheduler's time source; tests use a fake one.
type Clock interface {
	Now() time.Time
	// Sleep waits for d or until ctx ends.
	Sleep(ctx context.Context, d time.Duration)
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) Sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// openLoop sends at a fixed rate whatever the answers: send i is due at
// start + i×interval. A send starts as soon as it is due if one of the
// in-flight slots is free; when none is, the send is dropped (counted, not
// sent, never queued), because a queued send would start late and hide
// the server's slowness from the latency figures. Latency is measured from
// the due time, so a scheduler that falls behind (a starved CPU) shows up
// in the latencies instead of silently lowering the rate.
type openLoop struct {
	clock    Clock
	interval time.Duration
	// maxSends and end bound the run: no send is due at or after end.
	maxSends int
	end      time.Time
	// slots holds one token per outstanding send.
	slots chan struct{}
	// launch runs a send's work; go f() unless a test says otherwise.
	launch func(func())
}

// loopCounts says what a loop did with its sends.
type loopCounts struct {
	launched, dropped int
}

// run schedules sends from start. prepare is called on the scheduler's
// goroutine for each send that can start (so it may use unsynchronised
// state, e.g. the simulation) and returns the work to run; the work gets
// the due time and runs holding an in-flight slot.
func (o *openLoop) run(ctx context.Context, start time.Time, prepare func(due time.Time) func(due time.Time)) loopCounts {
	var c loopCounts
	launch := o.launch
	if launch == nil {
		launch = func(f func()) { go f() }
	}
	for i := 0; i < o.maxSends; i++ {
		due := start.Add(time.Duration(float64(i) * float64(o.interval)))
		if !due.Before(o.end) {
			break
		}
		if wait := due.Sub(o.clock.Now()); wait > 0 {
			o.clock.Sleep(ctx, wait)
		}
		if ctx.Err() != nil {
			break
		}
		select {
		case o.slots <- struct{}{}:
		default:
			c.dropped++
			continue
		}
		work := prepare(due)
		c.launched++
		launch(func() {
			defer func() { <-o.slots }()
			work(due)
		})
	}
	return c
}

// closedLoop runs workers senders, each sending again as soon as it has
// its answer: the server's saturation rate. Latency is measured from the
// start of each send.
type closedLoop struct {
	clock    Clock
	workers  int
	maxSends int
	end      time.Time
}

// run is like openLoop.run; prepare is serialised by a mutex.
func (l *closedLoop) run(ctx context.Context, prepare func(due time.Time) func(due time.Time)) loopCounts {
	var mu sync.Mutex
	var claimed, launched atomic.Int64
	var wg sync.WaitGroup
	for range l.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				now := l.clock.Now()
				if !now.Before(l.end) || claimed.Add(1) > int64(l.maxSends) {
					return
				}
				mu.Lock()
				work := prepare(now)
				mu.Unlock()
				launched.Add(1)
				work(now)
			}
		}()
	}
	wg.Wait()
	return loopCounts{launched: int(launched.Load())}
}
