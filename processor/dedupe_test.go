package processor

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/takt/takt/internal/wire"
)

// TestProcessorDropsRepeatedIdempotencyIDs sends a third of the parts
// twice with the same idempotency id and a fresh event id, as two ingestor
// replicas do when a client retries after the first produce succeeded:
// some copies right behind the first (in the same polls, before anything
// is written), the others after the processor was restarted (only
// ClickHouse knows the first copies then). Each part must be stored once.
func TestProcessorDropsRepeatedIdempotencyIDs(t *testing.T) {
	e := newITEnv(t, 3)
	parts := newParts(600)
	var keyed []wire.Part
	for i := range parts {
		if i%3 == 0 {
			parts[i].IdempotencyID = uuid.NewString()
			keyed = append(keyed, parts[i])
		}
	}
	again := func(ps []wire.Part) []wire.Part {
		out := make([]wire.Part, len(ps))
		for i, p := range ps {
			p.EventID = uuid.Must(uuid.NewV7()).String()
			p.ReceivedAtMs++
			out[i] = p
		}
		return out
	}
	half := len(keyed) / 2
	e.produce(append(parts, again(keyed[:half])...))

	cfg := e.config()
	stop, _ := runInProcess(t, cfg, nil)
	e.waitRows(uint64(len(parts)), 60*time.Second, nil)
	waitMetric(t, cfg.Registry, "takt_processor_duplicates_dropped_total", float64(half), 30*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	e.produce(again(keyed[half:]))
	cfg = e.config()
	stop, _ = runInProcess(t, cfg, nil)
	waitMetric(t, cfg.Registry, "takt_processor_duplicates_dropped_total", float64(len(keyed)-half), 30*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	e.assertExactly(uint64(len(parts)))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := e.store.QueryUint64(ctx, "SELECT uniqExact(idempotency_id) FROM part_keys WHERE topic = ?", e.topic)
	if err != nil || n != uint64(len(keyed)) {
		t.Fatalf("part_keys holds %d ids (%v), want %d", n, err, len(keyed))
	}
}
