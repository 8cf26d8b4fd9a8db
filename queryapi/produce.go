package queryapi

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// sender produces records to the parts topic for the record API (reason
// assignments, dispatch down windows, the parts of actions) and waits for
// Kafka's acknowledgement of each.
type sender struct {
	prod  recordProducer
	topic string
}

// send produces recs (to s.topic) and waits for each acknowledgement until
// ctx ends. It returns one result per record: nil when Kafka has it,
// errNotProduced when Kafka did not take it (it will never be applied),
// errUnconfirmed when it is unknown whether Kafka has it (it is still in
// flight when the call must answer; it will most likely land).
//
// The producer gives up assignGrace before ctx does, so that the answer
// can still say whether a record was failed (then it is surely not
// applied) or is in flight: franz-go fails a record whose context ended
// only when that is safe, not while a produce request holding it is in
// flight (the idempotent producer cannot know whether the broker wrote it).
func (s *sender) send(ctx context.Context, recs ...*kgo.Record) []error {
	pctx := ctx
	if deadline, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		pctx, cancel = context.WithDeadline(ctx, deadline.Add(-assignGrace))
		defer cancel()
	}
	done := make([]chan error, len(recs))
	for i, rec := range recs {
		rec.Topic = s.topic
		ch := make(chan error, 1)
		done[i] = ch
		s.prod.Produce(pctx, rec, func(_ *kgo.Record, err error) { ch <- err })
	}
	out := make([]error, len(recs))
	for i, ch := range done {
		var err error
		select {
		case err = <-ch:
		case <-pctx.Done():
			select {
			case err = <-ch:
			case <-ctx.Done():
				out[i] = fmt.Errorf("%w: record %d of %d to %s", errUnconfirmed, i+1, len(recs), s.topic)
				continue
			}
		}
		if err != nil {
			out[i] = fmt.Errorf("%w: record %d of %d to %s: %w", errNotProduced, i+1, len(recs), s.topic, err)
		}
	}
	return out
}

// sendOne is send for one record.
func (s *sender) sendOne(ctx context.Context, rec *kgo.Record) error { return s.send(ctx, rec)[0] }

// compensateTimeout bounds the work that undoes the first steps of a call
// whose records Kafka refused, after the call's own time ran out.
const compensateTimeout = 5 * time.Second
