package rcache

import (
	"context"

	"github.com/takt/takt/internal/redisx"
)

// Cross-process invalidation.
//
// Forget drops an entry from this process and from Redis, but every other
// process keeps its in-process copy until LocalTTL. So Forget also
// publishes the entry's name on the Redis channel <RedisPrefix>invalidate
// (redisx.Invalidations), and every Cache with a Redis layer listens on its
// channel (redisx.Listen) and drops the entries named there: a change
// reaches every instance within a Redis round trip.
//
// Pub/sub delivers at most once: a message published while a listener is
// disconnected is lost. So after any interruption of its subscription a
// listener drops its whole in-process cache (the next look-ups go to Redis,
// which Forget already cleaned); LocalTTL stays the bound when Redis is
// down for good.

// channel is the invalidation channel of the cache.
func (c *Cache[K, V]) channel() string { return redisx.Invalidations(c.spec.RedisPrefix) }

// publish announces that name changed. Failures are the caller's to report.
func (c *Cache[K, V]) publish(ctx context.Context, name string) error {
	return c.rdb.Publish(ctx, c.channel(), name).Err()
}

// listen drops the in-process entries named on the channel until the Redis
// client is closed. It runs on its own goroutine, started by New.
func (c *Cache[K, V]) listen() {
	redisx.Listen(context.Background(), c.rdb, c.channel(), redisx.Listener{
		Subscribed: func(resumed bool) {
			if resumed {
				// Messages may have been missed: forget everything.
				c.local.clear()
				c.neg.clear()
				c.invalidated()
				c.invalidations.WithLabelValues("reset").Inc()
			}
		},
		Message: func(name string) {
			c.forgetName(name)
			c.invalidations.WithLabelValues("message").Inc()
		},
	})
}
