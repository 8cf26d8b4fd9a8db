package queryapi

import (
	"context"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"
)

// forgetter is a cache that drops one entry everywhere (auth.Authenticator,
// locations.Cache): in this process, in Redis, and, through Redis pub/sub,
// in every other process.
type forgetter interface {
	Forget(ctx context.Context, key string) error
}

// cacheInvalidator drops cached master data after a write. Each entry is
// forgotten twice: at once, and again after refetchDelay, because a look-up
// that read ClickHouse just before the write may store the old answer in
// Redis just after the first Forget.
type cacheInvalidator struct {
	keys, locations forgetter
	rdb             *redis.Client
	channel         string // redisx.Keys.MasterDataChanges: table names of changed master data
	delay           time.Duration
	logger          *slog.Logger
}

const refetchDelay = 2 * time.Second

func (c *cacheInvalidator) forget(ctx context.Context, f forgetter, what, key string) {
	if f == nil {
		return
	}
	if err := f.Forget(ctx, key); err != nil {
		c.logger.Warn("cache invalidation failed; the entry expires with its TTL", "what", what, "err", err)
	}
	time.AfterFunc(c.delay, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = f.Forget(ctx, key)
	})
}

func (c *cacheInvalidator) forgetKey(ctx context.Context, hash string) {
	c.forget(ctx, c.keys, "api key", hash)
}

func (c *cacheInvalidator) forgetLocation(ctx context.Context, externalID string) {
	c.forget(ctx, c.locations, "location", externalID)
}

// changed announces that a master-data table changed, for processes that
// cache whole tables (the processor's products and reasons).
func (c *cacheInvalidator) changed(ctx context.Context, table string) {
	if c.rdb == nil {
		return
	}
	if err := c.rdb.Publish(ctx, c.channel, table).Err(); err != nil {
		c.logger.Warn("publish master-data change", "table", table, "err", err)
	}
}
