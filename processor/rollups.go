package processor

import (
	"context"
	"fmt"
)

// repairRollups makes the rollups of parts (parts_hourly,
// parts_oee_hourly and parts_hour_ranges, fed by materialized views) agree with the partition's
// rows at offsets [from, to], which ClickHouse holds but whose INSERT may
// have been cut short between the parts block and its views: a ClickHouse
// crash mid-insert, seen by us as an insert error, or by the next owner
// as rows past the committed offset. Skipping such rows is right for parts
// (never twice) and would lose them from the rollups for good, so every
// path that skips stored rows comes here first.
//
// The caller has waited for the INSERTs into parts still running in the
// server, and owns the partition: nobody else writes its locations' rows
// while this runs (see chstore.ReconcileRollups). One attempt; the callers
// retry, and must not go on without it: the next owner would start after
// these rows and never look at them again.
func (c *consumer) repairRollups(ctx context.Context, partition int32, from, to int64) error {
	rep, err := c.store.ReconcileRollups(ctx, c.cfg.Topic, partition, from, to)
	if err != nil {
		return fmt.Errorf("partition %d: repair rollups of offsets %d-%d: %w", partition, from, to, err)
	}
	if rep.Changed() || rep.Surplus > 0 {
		c.logger.Warn("rollups of parts repaired after an interrupted insert", "partition", partition,
			"from", from, "to", to, "rows", rep.Rows, "keys", rep.Keys, "repaired", rep.Repaired,
			"events_added", rep.Events, "oee_repaired", rep.OEERepaired, "oee_quantity_added", rep.OEEProduced,
			"order_rows_added", rep.OrderRepaired, "location_rows_added", rep.LocationRepaired, "surplus_keys", rep.Surplus)
	}
	c.m.rollupRepairs.Add(float64(rep.Repaired + rep.OEERepaired))
	return nil
}
