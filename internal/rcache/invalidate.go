package rcache

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cross-process invalidation.
//
// Forget drops an entry from this process and from Redis, but every other
// process keeps its in-process copy until LocalTTL. So Forget also
// publishes the entry's name on the Redis channel <RedisPrefix>invalidate,
// and every Cache with a Redis layer listens on its channel and drops the
// entries named there: a change reaches every instance within a Redis round
// trip.
//
// Pub/sub delivers at most once: a message published while a listener is
// disconnected is lost. So after any interruption of its subscription a
// listener drops its whole in-process cache (the next look-ups go to Redis,
// which Forget already cleaned); LocalTTL stays the bound when Redis is
// down for good.

// channel is the invalidation channel of the cache.
func (c *Cache[K, V]) channel() string { return c.spec.RedisPrefix + "invalidate" }

// publish announces that name changed. Failures are the caller's to report.
func (c *Cache[K, V]) publish(ctx context.Context, name string) error {
	return c.rdb.Publish(ctx, c.channel(), name).Err()
}

// listen drops the in-process entries named on the channel until the Redis
// client is closed. It runs on its own goroutine, started by New.
func (c *Cache[K, V]) listen() {
	ctx := context.Background()
	ps := c.rdb.Subscribe(ctx)
	defer ps.Close()
	interrupted := false
	for {
		if err := ps.Subscribe(ctx, c.channel()); err != nil {
			if errors.Is(err, redis.ErrClosed) {
				return
			}
			interrupted = true
			time.Sleep(500 * time.Millisecond)
			continue
		}
		for {
			msg, err := ps.ReceiveTimeout(ctx, time.Minute)
			if err != nil {
				if errors.Is(err, redis.ErrClosed) {
					return
				}
				var netErr interface{ Timeout() bool }
				if errors.As(err, &netErr) && netErr.Timeout() {
					// Quiet channel: make sure the connection is alive.
					if perr := ps.Ping(ctx); perr == nil {
						continue
					}
				}
				interrupted = true
				break
			}
			switch m := msg.(type) {
			case *redis.Subscription:
				if interrupted {
					// Messages may have been missed: forget everything.
					c.local.clear()
					c.invalidations.WithLabelValues("reset").Inc()
					interrupted = false
				}
			case *redis.Message:
				c.forgetName(m.Payload)
				c.invalidations.WithLabelValues("message").Inc()
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
}
