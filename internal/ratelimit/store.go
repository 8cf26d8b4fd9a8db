package ratelimit

import "context"

// StoreLimits adapts a store that returns [rate, burst] pairs
// (*chstore.Store) to a LimitSource.
type StoreLimits struct {
	Store interface {
		KeyRateLimits(ctx context.Context) (map[uint64][2]float64, error)
	}
}

// KeyRateLimits implements LimitSource.
func (s StoreLimits) KeyRateLimits(ctx context.Context) (map[uint64]Limit, error) {
	m, err := s.Store.KeyRateLimits(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[uint64]Limit, len(m))
	for id, v := range m {
		out[id] = Limit{Rate: v[0], Burst: v[1]}
	}
	return out, nil
}
