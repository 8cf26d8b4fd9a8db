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

// idSource hands out record ids from one Redis counter shared by every
// replica (INCR is atomic), so ids are unique across any number of
// replicas. The counter starts above the largest id in ClickHouse; SET NX
// makes that start happen once even when replicas race.
type idSource struct {
	rdb     *redis.Client
	key     string
	highest func(ctx context.Context) (uint64, error) // largest id in ClickHouse
}

func (s *idSource) next(ctx context.Context) (uint64, error) {
	exists, err := s.rdb.Exists(ctx, s.key).Result()
	if err != nil {
		return 0, fmt.Errorf("record id: %w", err)
	}
	if exists == 0 {
		top, err := s.highest(ctx)
		if err != nil {
			return 0, fmt.Errorf("record id: %w", err)
		}
		start := max(top, idFloor) + idGap
		if err := s.rdb.SetNX(ctx, s.key, start, 0).Err(); err != nil {
			return 0, fmt.Errorf("record id: %w", err)
		}
	}
	id, err := s.rdb.Incr(ctx, s.key).Result()
	if err != nil {
		return 0, fmt.Errorf("record id: %w", err)
	}
	if id <= 0 || id > maxID {
		return 0, fmt.Errorf("record id %d out of range", id)
	}
	return uint64(id), nil
}
