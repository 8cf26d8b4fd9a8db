package queryapi

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// idFloor is the first id handed out: fixed ids below it are left to seeds
// and the bootstrap command.
const idFloor = 1000

// idGap is added to the largest id ClickHouse knows when the counter must
// be created again (Redis lost it): creates in flight at that moment are
// not in ClickHouse yet, and their ids must not be handed out twice.
const idGap = 100_000

// maxID keeps ids below 2^53, so that JSON clients that read numbers as
// doubles (JavaScript, Python's json with floats) see them exactly.
const maxID = 1<<53 - 1

// nextID takes the next id from the counter KEYS[1] in one step, so that
// the counter cannot vanish between looking at it and incrementing it (an
// INCR of a missing key would start again at 1). A counter that is missing
// or below the floor ARGV[1] (or not a number) is set to ARGV[2] first;
// without ARGV[2] the script answers -1 instead, and the caller asks
// ClickHouse where to start and calls again.
var nextID = redis.NewScript(`
local v = tonumber(redis.call('GET', KEYS[1]) or '')
if v == nil or v < tonumber(ARGV[1]) then
	if ARGV[2] == '' then
		return -1
	end
	redis.call('SET', KEYS[1], ARGV[2])
end
return redis.call('INCR', KEYS[1])
`)

// idSource hands out record ids from one Redis counter shared by every
// replica, so ids are unique across any number of replicas. The counter
// starts idGap above the largest id in ClickHouse (and above idFloor);
// when Redis loses it, it starts there again.
type idSource struct {
	rdb     *redis.Client
	key     string
	highest func(ctx context.Context) (uint64, error) // largest id in ClickHouse
}

func (s *idSource) next(ctx context.Context) (uint64, error) {
	id, err := nextID.Run(ctx, s.rdb, []string{s.key}, idFloor, "").Int64()
	if err != nil {
		return 0, fmt.Errorf("record id: %w: %w", errUnavailable, err)
	}
	if id < 0 {
		top, err := s.highest(ctx)
		if err != nil {
			return 0, fmt.Errorf("record id: %w", err)
		}
		// Another replica may set the counter first: the script then
		// only increments it.
		if id, err = nextID.Run(ctx, s.rdb, []string{s.key}, idFloor, max(top, idFloor)+idGap).Int64(); err != nil {
			return 0, fmt.Errorf("record id: %w: %w", errUnavailable, err)
		}
	}
	if id <= idFloor || id > maxID {
		return 0, fmt.Errorf("record id %d out of range", id)
	}
	return uint64(id), nil
}
