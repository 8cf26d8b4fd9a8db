package queryapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// streamSlots counts a key's open feed streams across every query API
// instance: a sorted set per key in Redis whose members are the open
// streams and whose scores are when their leases end (Redis's clock). A
// stream renews its lease while it runs and gives it back when it ends;
// an instance that dies leaves leases that run out, so a crash frees its
// slots within one lease.
type streamSlots struct {
	rdb    *redis.Client
	prefix string // redisx.Keys.FeedStreams
	lease  time.Duration
}

// slotScript takes a slot of KEYS[1] for member ARGV[3] when fewer than
// ARGV[2] unexpired leases are held; it answers 1 when taken, 0 when full.
// ARGV[1] is the lease in ms. With ARGV[2] = 0 it renews: the member's
// lease is set again whatever the count (a renewing stream already holds
// its slot, even if Redis lost the set meanwhile).
var slotScript = redis.NewScript(`
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[1])
redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", now)
local limit = tonumber(ARGV[2])
if limit > 0 and redis.call("ZSCORE", KEYS[1], ARGV[3]) == false and redis.call("ZCARD", KEYS[1]) >= limit then
	return 0
end
redis.call("ZADD", KEYS[1], now + lease, ARGV[3])
redis.call("PEXPIRE", KEYS[1], lease)
return 1
`)

// slot is one stream's hold on a slot of its key.
type slot struct {
	s      *streamSlots
	key    string
	member string
}

// take takes one of key's limit slots: ok false when they are all held.
func (s *streamSlots) take(ctx context.Context, keyID uint64, limit int) (*slot, bool, error) {
	var b [12]byte
	_, _ = rand.Read(b[:])
	sl := &slot{s: s, key: s.prefix + strconv.FormatUint(keyID, 10), member: hex.EncodeToString(b[:])}
	n, err := slotScript.Run(ctx, s.rdb, []string{sl.key}, s.lease.Milliseconds(), limit, sl.member).Int()
	if err != nil {
		return nil, false, fmt.Errorf("take a feed stream slot: %w", err)
	}
	return sl, n == 1, nil
}

// renew extends the slot's lease by a whole lease from now.
func (sl *slot) renew(ctx context.Context) error {
	return slotScript.Run(ctx, sl.s.rdb, []string{sl.key}, sl.s.lease.Milliseconds(), 0, sl.member).Err()
}

// release gives the slot back.
func (sl *slot) release() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = sl.s.rdb.ZRem(ctx, sl.key, sl.member).Err()
}
