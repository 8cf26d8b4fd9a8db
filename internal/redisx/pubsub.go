package redisx

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// Listener is what Listen does with a channel. Its functions run on
// Listen's goroutine, one at a time; any may be nil.
type Listener struct {
	// Subscribed runs after each subscription: the first, and each one
	// after an interruption (resumed is true then). Pub/sub delivers at
	// most once, so messages published while the subscription was down are
	// lost: this is where a listener makes up for them.
	Subscribed func(resumed bool)
	// Message runs for each message, with its payload.
	Message func(payload string)
	// Down runs when the subscription fails, once per interruption.
	Down func(err error)
}

// Waits of Listen: before subscribing again after an interruption, and
// how long a quiet subscription goes before its connection is checked.
const (
	resubscribeWait = 500 * time.Millisecond
	quietCheck      = time.Minute
)

// Listen subscribes to channel and hands what arrives to l until ctx is
// done or rdb is closed. It subscribes again after every interruption, for
// as long as Redis stays away.
func Listen(ctx context.Context, rdb *redis.Client, channel string, l Listener) {
	ps := rdb.Subscribe(ctx)
	defer ps.Close()
	// A receive does not end with ctx; closing the subscription does.
	stop := context.AfterFunc(ctx, func() { ps.Close() })
	defer stop()
	resumed, down := false, false
	fail := func(err error) {
		resumed = true
		if !down && l.Down != nil {
			l.Down(err)
		}
		down = true
	}
	ended := func(err error) bool { return ctx.Err() != nil || errors.Is(err, redis.ErrClosed) }
	for {
		if err := ps.Subscribe(ctx, channel); err != nil {
			if ended(err) {
				return
			}
			fail(err)
			if !pause(ctx) {
				return
			}
			continue
		}
		for {
			msg, err := ps.ReceiveTimeout(ctx, quietCheck)
			if err != nil {
				if ended(err) {
					return
				}
				var netErr interface{ Timeout() bool }
				if errors.As(err, &netErr) && netErr.Timeout() && ps.Ping(ctx) == nil {
					continue // a quiet channel on a live connection
				}
				fail(err)
				break
			}
			switch m := msg.(type) {
			case *redis.Subscription:
				if m.Kind == "subscribe" {
					if l.Subscribed != nil {
						l.Subscribed(resumed)
					}
					resumed, down = false, false
				}
			case *redis.Message:
				if l.Message != nil {
					l.Message(m.Payload)
				}
			}
		}
		if !pause(ctx) {
			return
		}
	}
}

// pause waits resubscribeWait or until ctx is done; it reports whether the
// wait passed.
func pause(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(resubscribeWait):
		return true
	}
}
