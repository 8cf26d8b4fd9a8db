package chstore

// How parts count after their location's rules changed: a recompute
// (processor/recompute.go) derives a window's periods again, and with a
// changed shift a part made in what is now unscheduled time stops counting
// (or starts to). The parts rows are not written again (their ids, their
// insertion order and parts_hourly stay as they are): the class the
// recompute gives a part goes to its oee_reclass column
// (0047_parts_reclass.sql) by a mutation, and the quantities move between
// parts_oee_hourly's classes by rows that make the rollup equal to the
// parts again (ReconcileClassRollup).
//
// Both steps are idempotent: the mutation sets each row to what the rules
// give it, whatever it held, and the rollup rows are the difference between
// what parts say and what the rollup holds, computed when they are written.
// So a recompute cut short anywhere runs again without counting a part
// twice. Both must run while nothing inserts parts of the location (the
// processor that owns it runs them in its consume loop, after its flushes
// of the partition ended).

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"
)

// partClass is how a parts row counts, as oee_class's Enum8 code (0
// counted, 1 unscheduled, 2 late): the class a recompute gave it, else the
// one it was stored with.
const partClass = "if(oee_reclass >= 0, oee_reclass, toInt8(oee_class))"

// partClassName is partClass as oee_class's names.
const partClassName = "['counted', 'unscheduled', 'late'][" + partClass + " + 1]"

// mutationPoll is how often ReclassifyParts asks whether its mutation is
// done.
const mutationPoll = 50 * time.Millisecond

// ReclassifyParts gives the stored parts of a location recorded in [from,
// to) (Unix ms) that were placed (not 'late') the class the location's
// rules give them now: unscheduled when recorded in one of the unscheduled
// ranges ([start, end) Unix ms), counted otherwise. It returns once the
// server has applied every mutation of the parts table (bounded by ctx).
//
// On a cluster it runs on one synced replica: the mutation is replicated,
// and ReconcileClassRollup reads where it is done.
func (s *Store) ReclassifyParts(ctx context.Context, kind string, id uint64, from, to int64, unscheduled [][2]int64) error {
	return s.onSyncedReplica(ctx, []string{"parts"}, func(rs *Store) error {
		// A mutation of an earlier attempt first: two of them on the same
		// rows would only cost twice.
		if err := rs.waitMutations(ctx); err != nil {
			return err
		}
		cond := "0"
		var condArgs []any
		if len(unscheduled) > 0 {
			alts := make([]string, len(unscheduled))
			for i, r := range unscheduled {
				alts[i] = "(recorded_ms >= ? AND recorded_ms < ?)"
				condArgs = append(condArgs, r[0], r[1])
			}
			cond = strings.Join(alts, " OR ")
		}
		class := "toInt8(if(" + cond + ", 1, 0))"
		where := " WHERE location_kind = ? AND location_id = ? AND oee_class != 'late' AND recorded_ms >= ? AND recorded_ms < ?"
		whereArgs := []any{kind, id, from, to}
		// A mutation rewrites data parts: none when every row has its
		// class already (the rules changed only the stop threshold, or
		// an attempt before this one got that far).
		n, err := rs.QueryUint64(ctx, "SELECT count() FROM parts"+where+" AND "+partClass+" != "+class,
			append(append([]any{}, whereArgs...), condArgs...)...)
		if err != nil {
			return fmt.Errorf("reclassify parts of %s %d: %w", kind, id, err)
		}
		if n == 0 {
			return nil
		}
		if err := rs.conn.Exec(ctx, "ALTER TABLE parts UPDATE oee_reclass = "+class+where,
			append(condArgs, whereArgs...)...); err != nil {
			return fmt.Errorf("reclassify parts of %s %d: %w", kind, id, err)
		}
		return rs.waitMutations(ctx)
	})
}

// waitMutations waits until the server has applied every mutation of the
// parts table.
func (s *Store) waitMutations(ctx context.Context) error {
	for {
		n, err := s.QueryUint64(ctx, "SELECT count() FROM system.mutations WHERE database = currentDatabase() AND table = 'parts' AND is_done = 0")
		if err != nil {
			return fmt.Errorf("mutations of parts: %w", err)
		}
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("mutations of parts: %d not done: %w", n, ctx.Err())
		case <-time.After(mutationPoll):
		}
	}
}

// classKey is one parts_oee_hourly key of a location.
type classKey struct {
	site, product uint64
	hour          uint32
	class         string
}

// ReconcileClassRollup makes parts_oee_hourly equal to the parts of a
// location recorded in the UTC hours that [from, to) (Unix ms) touches,
// key by key and class by class (as partClass counts them), and returns
// how many keys it changed. The rollup's UInt64 sums are modulo 2^64 on
// every server, so a class that lost quantity gets its decrement as the
// two's complement, and the sum read is exact.
//
// Parts stored before migration 0025 are in no parts_oee_hourly row: a
// key that holds some gets them added as counted (harmless, see
// reconcileOEEHour). It must not run while parts of the location are
// inserted.
func (s *Store) ReconcileClassRollup(ctx context.Context, kind string, id uint64, from, to int64) (int, error) {
	changed := 0
	err := s.onSyncedReplica(ctx, []string{"parts", "parts_oee_hourly"}, func(rs *Store) error {
		var err error
		changed, err = rs.reconcileClassRollup(ctx, kind, id, from, to)
		return err
	})
	return changed, err
}

func (s *Store) reconcileClassRollup(ctx context.Context, kind string, id uint64, from, to int64) (int, error) {
	const hourMs = 3_600_000
	if to <= from {
		return 0, nil
	}
	lo := time.Unix(from/hourMs*3600, 0).UTC()
	hi := time.Unix(ceilDiv(to, hourMs)*3600, 0).UTC()
	sums := func(q string, args ...any) (map[classKey]oeeRollupSums, error) {
		rows, err := s.conn.Query(ctx, q, args...)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		out := map[classKey]oeeRollupSums{}
		for rows.Next() {
			var k classKey
			var v oeeRollupSums
			if err := rows.Scan(&k.site, &k.product, &k.hour, &k.class, &v.produced, &v.good, &v.scrap, &v.rework,
				&v.idealTime, &v.idealQty); err != nil {
				return nil, err
			}
			out[k] = v
		}
		return out, rows.Err()
	}
	raw, err := sums("SELECT site, product_id, toUInt32("+hourExpr+") AS h, "+partClassName+" AS cls, "+
		"toUInt64(sum(quantity)), toUInt64(sumIf(quantity, quality = 'good')), toUInt64(sumIf(quantity, quality = 'scrap')), "+
		"toUInt64(sumIf(quantity, quality = 'rework')), toFloat64(sumIf(ideal_cycle_time * quantity, ideal_cycle_time >= 0)), "+
		"toUInt64(sumIf(quantity, ideal_cycle_time >= 0))"+
		" FROM parts WHERE location_kind = ? AND location_id = ? AND recorded_at >= ? AND recorded_at < ?"+
		" GROUP BY site, product_id, h, cls", kind, id, lo, hi)
	if err != nil {
		return 0, fmt.Errorf("reconcile class rollup: parts of %s %d: %w", kind, id, err)
	}
	have, err := sums("SELECT site, product_id, toUInt32(hour) AS h, toString(oee_class) AS cls, "+
		"toUInt64(sum(produced)), toUInt64(sum(good)), toUInt64(sum(scrap)), toUInt64(sum(rework)), "+
		"toFloat64(sum(ideal_time)), toUInt64(sum(ideal_qty))"+
		" FROM parts_oee_hourly WHERE location_kind = ? AND location_id = ? AND hour >= ? AND hour < ?"+
		" GROUP BY site, product_id, h, cls", kind, id, lo, hi)
	if err != nil {
		return 0, fmt.Errorf("reconcile class rollup: parts_oee_hourly of %s %d: %w", kind, id, err)
	}
	var fix []oeeRollupRow
	add := func(k classKey, want, got oeeRollupSums) {
		// Unsigned differences wrap: the rollup's sums do too.
		d := oeeRollupSums{produced: want.produced - got.produced, good: want.good - got.good, scrap: want.scrap - got.scrap,
			rework: want.rework - got.rework, idealQty: want.idealQty - got.idealQty, idealTime: want.idealTime - got.idealTime}
		if d.produced == 0 && d.good == 0 && d.scrap == 0 && d.rework == 0 && d.idealQty == 0 &&
			math.Abs(d.idealTime) <= 1e-9*math.Max(1, math.Abs(want.idealTime)) {
			return // equal, up to the order of a float sum
		}
		fix = append(fix, oeeRollupRow{key: oeeRollupKey{rollupKey: rollupKey{site: k.site, kind: kind, location: id,
			product: k.product, hour: int64(k.hour)}, class: k.class}, sums: d})
	}
	for k, want := range raw {
		add(k, want, have[k])
	}
	for k, got := range have {
		if _, ok := raw[k]; !ok {
			add(k, oeeRollupSums{}, got)
		}
	}
	if len(fix) == 0 {
		return 0, nil
	}
	var rep RollupRepair
	if err := s.insertOEERollupFix(ctx, fix, &rep); err != nil {
		return 0, fmt.Errorf("reconcile class rollup of %s %d: %w", kind, id, err)
	}
	return len(fix), nil
}

// classIs is the condition that a parts row counts as class code c.
func classIs(c int) string { return fmt.Sprintf("%s = %d", partClass, c) }
