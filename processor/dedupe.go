package processor

import (
	"context"

	"github.com/google/uuid"

	"github.com/takt/takt/internal/chstore"
)

// Idempotent parts.
//
// A part sent with an idempotency key carries an idempotency id
// (wire.Part.IdempotencyID). The ingestor answers a repeat of the key from
// Redis, but a repeat can still reach Kafka: the first request's record
// landed after its produce timed out, a replica died between the ack and
// its answer, Redis was down. Such a record is dropped here: a record is a
// repeat when its id is already held by a record at another position.
//
// Where the ids are held: ClickHouse's part_keys has the id of every
// stored part (a block's keys are written before its rows), which survives
// restarts and rebalances; partState.keys has the ids of the records this
// member consumed but has not seen written yet. The map holds an entry
// only until the flush of its record is applied, so it is bounded by the
// unflushed records, not by the traffic of a day. Both copies of a key
// normally share the partition (the record key is the location), so one
// owner decides; a copy in another partition is caught by part_keys once
// the first is written.

// dedupe marks the part records of the current poll whose idempotency id
// another record holds (decoded.dup). It asks ClickHouse once per poll
// that has ids, retrying until it answers or ctx ends: a record is not
// processed before it is known whether it is a repeat.
func (c *consumer) dedupe(ctx context.Context) error {
	var ids []uuid.UUID
	for i := range c.recs {
		if d := &c.decoded[i]; d.err == nil && d.idemID != uuid.Nil {
			ids = append(ids, d.idemID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	var stored map[uuid.UUID]chstore.PartPosition
	for attempt := 1; ; attempt++ {
		var err error
		if stored, err = c.store.PartKeys(ctx, c.cfg.Topic, ids); err == nil {
			break
		}
		c.logger.Error("looking up idempotency ids failed; the poll waits until it succeeds", "ids", len(ids), "attempt", attempt, "err", err)
		if !sleep(ctx, backoff(attempt, retryMin, retryMax)) {
			return ctx.Err()
		}
	}
	var st *partState
	for i, r := range c.recs {
		d := &c.decoded[i]
		if d.err != nil || d.idemID == uuid.Nil {
			continue
		}
		if st == nil || st.partition != r.Partition {
			st = c.state(r.Partition)
		}
		at := chstore.PartPosition{Partition: r.Partition, Offset: r.Offset}
		if p, ok := stored[d.idemID]; ok && p != at {
			d.dup = true
			continue
		}
		if o, ok := st.keys[d.idemID]; ok && o != r.Offset {
			d.dup = true
			continue
		}
		if st.keys == nil {
			st.keys = map[uuid.UUID]int64{}
		}
		st.keys[d.idemID] = r.Offset
	}
	return nil
}

// forgetKeys drops the ids of records before offset next: their flush was
// applied, so part_keys holds them.
func (st *partState) forgetKeys(next int64) {
	for id, o := range st.keys {
		if o < next {
			delete(st.keys, id)
		}
	}
}
