package ratelimit

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/takt/takt/internal/redisx"
)

// The keys' last uses are a sorted set (redisx.Keys.RateLimitUsed): member
// the key id, score the Redis time (Unix seconds) of its last request.
// Every replica of every service writes it in the bucket script, so it is
// one cheap ZADD per request and never a write to ClickHouse.

// UsageSink stores when keys were last used (*chstore.Store). Storing an
// older time than the one already stored for a key must not move it back.
type UsageSink interface {
	PutKeyUsage(ctx context.Context, used map[uint64]time.Time) error
}

// UsageCopier copies the keys' last uses from Redis to a UsageSink every
// interval, so that a read of the apikeys area shows them at most about an
// interval late.
//
// Any number of replicas may run one. A short lock in Redis lets one
// replica copy per interval; copying the same use twice is harmless (the
// sink keeps the latest time per key), so neither a lost lock nor a replica
// that copies more than the others is a problem. Each copier reads the uses
// since its own last copy (all of them after a start), a few seconds
// early so that no use is missed at the edge.
type UsageCopier struct {
	rdb    *redis.Client
	used   string
	lock   string
	sink   UsageSink
	every  time.Duration
	logger *slog.Logger

	since float64 // score the next copy reads from; used by one goroutine at a time
}

// usageSlack is how far before the newest use it copied a copier reads
// again next time, for uses written with a slightly older Redis time.
const usageSlack = 2.0 // seconds

// NewUsageCopier returns a copier of the uses recorded by Limiters with the
// same Redis prefix, every interval.
func NewUsageCopier(rdb *redis.Client, prefix string, sink UsageSink, every time.Duration, logger *slog.Logger) *UsageCopier {
	return &UsageCopier{rdb: rdb, used: redisx.NewKeys(prefix).RateLimitUsed(), lock: redisx.NewKeys(prefix).RateLimitCopyLock(),
		sink: sink, every: every, logger: logger.With("component", "key_usage")}
}

// Run copies every interval until ctx ends, then once more (without the
// lock), so that the uses of the last seconds are not left behind.
// Failures are logged; Run returns nil.
func (c *UsageCopier) Run(ctx context.Context) error {
	t := time.NewTicker(c.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if _, err := c.Copy(fctx); err != nil {
				c.logger.Warn("copy key usage at stop", "err", err)
			}
			return nil
		case <-t.C:
			ok, err := c.rdb.SetNX(ctx, c.lock, 1, c.every*4/5).Result()
			if err != nil || !ok {
				continue // Redis down (nothing to copy then), or another replica's turn
			}
			if _, err := c.Copy(ctx); err != nil {
				c.logger.Warn("copy key usage", "err", err)
			}
		}
	}
}

// Copy copies the uses recorded since the copier's last copy and returns
// how many keys it copied. Uses older than a bucket's lifetime are dropped
// from Redis (ClickHouse has them by then).
func (c *UsageCopier) Copy(ctx context.Context) (int, error) {
	from := "-inf"
	if c.since > 0 {
		from = strconv.FormatFloat(c.since, 'f', 6, 64)
	}
	zs, err := c.rdb.ZRangeByScoreWithScores(ctx, c.used, &redis.ZRangeBy{Min: from, Max: "+inf"}).Result()
	if err != nil {
		return 0, fmt.Errorf("read key usage: %w", err)
	}
	if len(zs) == 0 {
		return 0, nil
	}
	used := make(map[uint64]time.Time, len(zs))
	newest := 0.0
	for _, z := range zs {
		m, _ := z.Member.(string)
		id, err := strconv.ParseUint(m, 10, 64)
		if err != nil {
			continue // not written by the bucket script
		}
		sec, frac := math.Modf(z.Score)
		used[id] = time.Unix(int64(sec), int64(frac*1e9)).UTC()
		newest = max(newest, z.Score)
	}
	if err := c.sink.PutKeyUsage(ctx, used); err != nil {
		return 0, fmt.Errorf("store key usage: %w", err)
	}
	c.since = newest - usageSlack
	old := strconv.FormatFloat(newest-bucketTTL.Seconds(), 'f', 0, 64)
	if err := c.rdb.ZRemRangeByScore(ctx, c.used, "-inf", "("+old).Err(); err != nil {
		c.logger.Debug("trim key usage", "err", err)
	}
	return len(used), nil
}
