package chstore

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Rollup reconciliation.
//
// parts_hourly, parts_oee_hourly and parts_hour_ranges are fed by
// materialized views on parts. ClickHouse runs the views of an INSERT after it has committed the
// block's data part in parts, each view writing its own data parts, so a
// server that dies in between keeps the parts rows and loses (some of)
// their rollup rows. Whoever inserted the block sees an error or dies too;
// the next attempt finds the rows in parts and skips them (the block must
// not be written twice), so nothing would ever roll them up again.
//
// ReconcileRollups repairs that for one uncertain range of a partition:
// the rows whose INSERT may have been cut short between parts and its
// views. Only the processor that owns the partition writes those rows'
// locations, so it runs the repair before it writes the partition again:
// after an INSERT error for a block that turns out to be stored, and on
// assignment for the rows between the committed offset and the last one
// ClickHouse holds (a previous owner's last flush). Both callers first
// wait for the INSERTs into parts still running in the server to end
// (WaitPartsInserts): a view still writing would otherwise be counted
// once by the repair and once by itself.

// RollupRepair says what ReconcileRollups found and changed.
type RollupRepair struct {
	// Rows is the number of parts rows in the range.
	Rows uint64
	// Keys is the number of hourly rollup keys (site, location, product,
	// hour) those rows belong to; Repaired of them were short and were
	// completed by one row each.
	Keys     int
	Repaired int
	// Events and Produced are what the repair added to parts_hourly.
	Events   uint64
	Produced uint64
	// OEERepaired counts the parts_oee_hourly keys (with the parts'
	// class) that were short and were completed by one row each;
	// OEEProduced is the quantity added there.
	OEERepaired int
	OEEProduced uint64
	// OrderRepaired counts the parts rows that had no row in parts_order
	// (the index of the parts area's insertion order) and were given one.
	OrderRepaired uint64
	// LocationRepaired counts the parts rows that had no row in
	// parts_by_location (the index of a location's parts by recorded
	// time) and were given one.
	LocationRepaired uint64
	// Surplus counts keys whose rollup holds more than parts (the rollup
	// was fed twice); they are reported, not changed.
	Surplus int
}

// Changed reports whether the repair wrote rollup rows.
func (r RollupRepair) Changed() bool {
	return r.Repaired > 0 || r.OEERepaired > 0 || r.OrderRepaired > 0 || r.LocationRepaired > 0
}

// rollupKey is one parts_hourly key.
type rollupKey struct {
	site     uint64
	kind     string
	location uint64
	product  uint64
	hour     int64 // Unix seconds, a multiple of 3600
}

// rollupSums are parts_hourly's summed columns.
type rollupSums struct {
	produced, good, scrap, rework, events uint64
}

// hourExpr is the UTC epoch hour of a parts row, as the views compute it.
const hourExpr = "toDateTime(intDiv(toUInt32(recorded_at), 3600) * 3600)"

// ReconcileRollups makes parts_hour_ranges and parts_hourly agree with
// parts for the rows of topic's partition with offsets in [from, to]:
// the id ranges of those rows' hours are written again (min and max are
// idempotent), and every parts_hourly key those rows belong to is compared
// with the sum of its raw rows, the shortfall inserted as one more row
// (parts_hourly is summed at read time). Running it again changes nothing.
//
// It must not run while parts rows of the same locations are being
// inserted (see the comment above).
//
// On a cluster it reads and writes on one replica, synced first: the
// rollup blocks of the rows may have been acknowledged by another replica
// (or be missing there: the server died between the parts block and its
// views), and a shortfall computed from a replica that has not fetched
// them yet would count them twice once it has.
func (s *Store) ReconcileRollups(ctx context.Context, topic string, partition int32, from, to int64) (RollupRepair, error) {
	var rep RollupRepair
	err := s.onSyncedReplica(ctx, []string{"parts", "parts_hourly", "parts_oee_hourly", "parts_hour_ranges", "parts_order", "parts_by_location"}, func(rs *Store) error {
		var err error
		rep, err = rs.reconcileRollups(ctx, topic, partition, from, to)
		return err
	})
	return rep, err
}

func (s *Store) reconcileRollups(ctx context.Context, topic string, partition int32, from, to int64) (RollupRepair, error) {
	var rep RollupRepair
	if from < 0 {
		from = 0
	}
	if partition < 0 || from > to || to > MaxPartOffset {
		return rep, fmt.Errorf("reconcile rollups: partition %d offsets [%d, %d] out of range", partition, from, to)
	}
	lo, hi := PartID(partition, from), PartID(partition, to)
	inRange := "id >= ? AND id <= ? AND topic = ?"

	n, err := s.QueryUint64(ctx, "SELECT count() FROM parts WHERE "+inRange, lo, hi, topic)
	if err != nil {
		return rep, fmt.Errorf("reconcile rollups: count range: %w", err)
	}
	if rep.Rows = n; n == 0 {
		return rep, nil
	}

	// Id ranges first: the raw sums below find an hour's rows through them.
	err = s.conn.Exec(ctx, `INSERT INTO parts_hour_ranges (site, hour, partition, min_id, max_id)
		SELECT site, `+hourExpr+` AS h, partition, minState(id), maxState(id)
		FROM parts WHERE `+inRange+` GROUP BY site, h, partition`, lo, hi, topic)
	if err != nil {
		return rep, fmt.Errorf("reconcile rollups: parts_hour_ranges: %w", err)
	}

	// The insertion-order index: the rows of the range it lacks. Its key
	// is (order_ms, id), so the look-up is bounded by the range's order_ms
	// span; parts_order replaces duplicates and is read DISTINCT, so a
	// row written twice by racing repairs is harmless.
	if rep.OrderRepaired, err = s.repairPartsOrder(ctx, inRange, lo, hi, topic); err != nil {
		return rep, err
	}
	if rep.LocationRepaired, err = s.repairPartsByLocation(ctx, inRange, lo, hi, topic); err != nil {
		return rep, err
	}

	// The keys the range touches, by hour.
	rows, err := s.conn.Query(ctx, `SELECT site, toString(location_kind), location_id, product_id, toUInt32(`+hourExpr+`) AS h
		FROM parts WHERE `+inRange+` GROUP BY site, location_kind, location_id, product_id, h`, lo, hi, topic)
	if err != nil {
		return rep, fmt.Errorf("reconcile rollups: keys: %w", err)
	}
	byHour := map[int64]map[rollupKey]bool{}
	for rows.Next() {
		var k rollupKey
		var h uint32
		if err := rows.Scan(&k.site, &k.kind, &k.location, &k.product, &h); err != nil {
			rows.Close()
			return rep, fmt.Errorf("reconcile rollups: keys: %w", err)
		}
		k.hour = int64(h)
		if byHour[k.hour] == nil {
			byHour[k.hour] = map[rollupKey]bool{}
		}
		byHour[k.hour][k] = true
		rep.Keys++
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return rep, fmt.Errorf("reconcile rollups: keys: %w", err)
	}

	var fix []rollupRow
	var oeeFix []oeeRollupRow
	for hour, keys := range byHour {
		rows, oeeRows, err := s.reconcileHour(ctx, hour, keys, &rep)
		if err != nil {
			return rep, err
		}
		fix = append(fix, rows...)
		oeeFix = append(oeeFix, oeeRows...)
	}
	if err := s.insertOEERollupFix(ctx, oeeFix, &rep); err != nil {
		return rep, err
	}
	if len(fix) == 0 {
		return rep, nil
	}
	b, err := s.conn.PrepareBatch(ctx, "INSERT INTO parts_hourly (site, location_kind, location_id, product_id, hour, produced, good, scrap, rework, events)")
	if err != nil {
		return rep, fmt.Errorf("reconcile rollups: prepare parts_hourly: %w", err)
	}
	for _, r := range fix {
		if err := b.Append(r.key.site, r.key.kind, r.key.location, r.key.product, time.Unix(r.key.hour, 0).UTC(),
			r.sums.produced, r.sums.good, r.sums.scrap, r.sums.rework, r.sums.events); err != nil {
			_ = b.Abort()
			return rep, fmt.Errorf("reconcile rollups: parts_hourly: %w", err)
		}
	}
	if err := b.Send(); err != nil {
		return rep, fmt.Errorf("reconcile rollups: parts_hourly: %w", err)
	}
	for _, r := range fix {
		rep.Repaired++
		rep.Events += r.sums.events
		rep.Produced += r.sums.produced
	}
	return rep, nil
}

type rollupRow struct {
	key  rollupKey
	sums rollupSums
}

// reconcileHour compares the given keys of one hour between parts and
// parts_hourly, and between parts and parts_oee_hourly, and returns the
// rows that complete the short ones.
func (s *Store) reconcileHour(ctx context.Context, hour int64, keys map[rollupKey]bool, rep *RollupRepair) ([]rollupRow, []oeeRollupRow, error) {
	sites, locations := map[uint64]bool{}, map[uint64]bool{}
	for k := range keys {
		sites[k.site], locations[k.location] = true, true
	}
	siteList, locList := setList(sites), setList(locations)
	at := time.Unix(hour, 0).UTC()

	// Where the hour's rows lie in parts, every partition (a location's
	// rows normally sit in one, but nothing here relies on it).
	rows, err := s.conn.Query(ctx, `SELECT minMerge(min_id), maxMerge(max_id) FROM parts_hour_ranges
		WHERE has(?, site) AND hour = ? GROUP BY partition`, siteList, at)
	if err != nil {
		return nil, nil, fmt.Errorf("reconcile rollups: ranges of %s: %w", at, err)
	}
	var ranges []string
	for rows.Next() {
		var lo, hi uint64
		if err := rows.Scan(&lo, &hi); err != nil {
			rows.Close()
			return nil, nil, fmt.Errorf("reconcile rollups: ranges of %s: %w", at, err)
		}
		// Literal numbers: the list is built here from UInt64s.
		ranges = append(ranges, "(id >= "+strconv.FormatUint(lo, 10)+" AND id <= "+strconv.FormatUint(hi, 10)+")")
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("reconcile rollups: ranges of %s: %w", at, err)
	}
	if len(ranges) == 0 {
		return nil, nil, fmt.Errorf("reconcile rollups: no id ranges for %s after writing them", at)
	}

	sumCols := "toUInt64(sum(%s)), toUInt64(sum(%s)), toUInt64(sum(%s)), toUInt64(sum(%s)), toUInt64(sum(%s))"
	raw, err := s.hourSums(ctx, "SELECT site, toString(location_kind), location_id, product_id, "+
		fmt.Sprintf(sumCols, "quantity", "if(quality = 'good', quantity, 0)", "if(quality = 'scrap', quantity, 0)",
			"if(quality = 'rework', quantity, 0)", "1")+
		" FROM parts WHERE ("+strings.Join(ranges, " OR ")+") AND has(?, site) AND has(?, location_id)"+
		" AND recorded_at >= ? AND recorded_at < ? GROUP BY site, location_kind, location_id, product_id",
		hour, siteList, locList, at, at.Add(time.Hour))
	if err != nil {
		return nil, nil, fmt.Errorf("reconcile rollups: parts of %s: %w", at, err)
	}
	have, err := s.hourSums(ctx, "SELECT site, toString(location_kind), location_id, product_id, "+
		fmt.Sprintf(sumCols, "produced", "good", "scrap", "rework", "events")+
		" FROM parts_hourly WHERE has(?, site) AND has(?, location_id) AND hour = ?"+
		" GROUP BY site, location_kind, location_id, product_id",
		hour, siteList, locList, at)
	if err != nil {
		return nil, nil, fmt.Errorf("reconcile rollups: parts_hourly of %s: %w", at, err)
	}

	var fix []rollupRow
	for k := range keys {
		want, got := raw[k], have[k]
		d, short, surplus := want.minus(got)
		switch {
		case surplus:
			rep.Surplus++
			s.logger.Warn("parts_hourly holds more than parts for a key; left as it is",
				"site", k.site, "location_kind", k.kind, "location_id", k.location, "product_id", k.product,
				"hour", at, "rollup_events", got.events, "parts_events", want.events)
		case short:
			fix = append(fix, rollupRow{key: k, sums: d})
		}
	}
	oeeFix, err := s.reconcileOEEHour(ctx, hour, keys, ranges, siteList, locList, rep)
	if err != nil {
		return nil, nil, err
	}
	return fix, oeeFix, nil
}

// oeeRollupKey is one parts_oee_hourly key.
type oeeRollupKey struct {
	rollupKey
	class string
}

// oeeRollupSums are parts_oee_hourly's summed columns.
type oeeRollupSums struct {
	produced, good, scrap, rework, idealQty uint64
	idealTime                               float64
}

type oeeRollupRow struct {
	key  oeeRollupKey
	sums oeeRollupSums
}

// reconcileOEEHour does for parts_oee_hourly what reconcileHour does for
// parts_hourly, by key and class. Parts stored before migration 0025 are
// in no parts_oee_hourly row, so a key of an hour that holds some looks
// short and gets them added too: harmless, since such a part counts the
// same way (counted, its product's backfilled ideal) from either rollup.
func (s *Store) reconcileOEEHour(ctx context.Context, hour int64, keys map[rollupKey]bool, ranges []string,
	siteList, locList []uint64, rep *RollupRepair) ([]oeeRollupRow, error) {
	at := time.Unix(hour, 0).UTC()
	sums := func(q string, args ...any) (map[oeeRollupKey]oeeRollupSums, error) {
		rows, err := s.conn.Query(ctx, q, args...)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		out := map[oeeRollupKey]oeeRollupSums{}
		for rows.Next() {
			k := oeeRollupKey{rollupKey: rollupKey{hour: hour}}
			var v oeeRollupSums
			if err := rows.Scan(&k.site, &k.kind, &k.location, &k.product, &k.class,
				&v.produced, &v.good, &v.scrap, &v.rework, &v.idealTime, &v.idealQty); err != nil {
				return nil, err
			}
			out[k] = v
		}
		return out, rows.Err()
	}
	raw, err := sums("SELECT site, toString(location_kind), location_id, product_id, "+partClassName+" AS cls, "+
		"toUInt64(sum(quantity)), toUInt64(sumIf(quantity, quality = 'good')), toUInt64(sumIf(quantity, quality = 'scrap')), "+
		"toUInt64(sumIf(quantity, quality = 'rework')), toFloat64(sumIf(ideal_cycle_time * quantity, ideal_cycle_time >= 0)), "+
		"toUInt64(sumIf(quantity, ideal_cycle_time >= 0))"+
		" FROM parts WHERE ("+strings.Join(ranges, " OR ")+") AND has(?, site) AND has(?, location_id)"+
		" AND recorded_at >= ? AND recorded_at < ? GROUP BY site, location_kind, location_id, product_id, cls",
		siteList, locList, at, at.Add(time.Hour))
	if err != nil {
		return nil, fmt.Errorf("reconcile rollups: parts of %s by class: %w", at, err)
	}
	have, err := sums("SELECT site, toString(location_kind), location_id, product_id, toString(oee_class), "+
		"toUInt64(sum(produced)), toUInt64(sum(good)), toUInt64(sum(scrap)), toUInt64(sum(rework)), "+
		"toFloat64(sum(ideal_time)), toUInt64(sum(ideal_qty))"+
		" FROM parts_oee_hourly WHERE has(?, site) AND has(?, location_id) AND hour = ?"+
		" GROUP BY site, location_kind, location_id, product_id, oee_class",
		siteList, locList, at)
	if err != nil {
		return nil, fmt.Errorf("reconcile rollups: parts_oee_hourly of %s: %w", at, err)
	}
	var fix []oeeRollupRow
	for k, want := range raw {
		if !keys[k.rollupKey] {
			continue
		}
		got := have[k]
		d := oeeRollupSums{idealTime: want.idealTime - got.idealTime}
		short, surplus := false, false
		for _, p := range [][3]*uint64{{&want.produced, &got.produced, &d.produced}, {&want.good, &got.good, &d.good},
			{&want.scrap, &got.scrap, &d.scrap}, {&want.rework, &got.rework, &d.rework}, {&want.idealQty, &got.idealQty, &d.idealQty}} {
			switch {
			case *p[1] > *p[0]:
				surplus = true
			case *p[1] < *p[0]:
				*p[2], short = *p[0]-*p[1], true
			}
		}
		switch {
		case surplus:
			rep.Surplus++
			s.logger.Warn("parts_oee_hourly holds more than parts for a key; left as it is",
				"site", k.site, "location_kind", k.kind, "location_id", k.location, "product_id", k.product,
				"oee_class", k.class, "hour", at, "rollup_produced", got.produced, "parts_produced", want.produced)
		case short:
			fix = append(fix, oeeRollupRow{key: k, sums: d})
		}
	}
	return fix, nil
}

// insertOEERollupFix writes the rows that complete parts_oee_hourly.
func (s *Store) insertOEERollupFix(ctx context.Context, fix []oeeRollupRow, rep *RollupRepair) error {
	if len(fix) == 0 {
		return nil
	}
	b, err := s.conn.PrepareBatch(ctx, "INSERT INTO parts_oee_hourly (site, location_kind, location_id, product_id, hour, oee_class, produced, good, scrap, rework, ideal_time, ideal_qty)")
	if err != nil {
		return fmt.Errorf("reconcile rollups: prepare parts_oee_hourly: %w", err)
	}
	for _, r := range fix {
		if err := b.Append(r.key.site, r.key.kind, r.key.location, r.key.product, time.Unix(r.key.hour, 0).UTC(), r.key.class,
			r.sums.produced, r.sums.good, r.sums.scrap, r.sums.rework, r.sums.idealTime, r.sums.idealQty); err != nil {
			_ = b.Abort()
			return fmt.Errorf("reconcile rollups: parts_oee_hourly: %w", err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("reconcile rollups: parts_oee_hourly: %w", err)
	}
	for _, r := range fix {
		rep.OEERepaired++
		rep.OEEProduced += r.sums.produced
	}
	return nil
}

// hourSums runs a query returning (site, kind, location, product, five
// sums) rows and keys them with hour.
func (s *Store) hourSums(ctx context.Context, q string, hour int64, args ...any) (map[rollupKey]rollupSums, error) {
	rows, err := s.conn.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[rollupKey]rollupSums{}
	for rows.Next() {
		k := rollupKey{hour: hour}
		var v rollupSums
		if err := rows.Scan(&k.site, &k.kind, &k.location, &k.product,
			&v.produced, &v.good, &v.scrap, &v.rework, &v.events); err != nil {
			return nil, err
		}
		out[k] = v
	}
	return out, rows.Err()
}

// minus returns a − b when no column of b exceeds a's (short: some column
// is smaller in b), and surplus when one does.
func (a rollupSums) minus(b rollupSums) (d rollupSums, short, surplus bool) {
	pairs := [][3]*uint64{
		{&a.produced, &b.produced, &d.produced}, {&a.good, &b.good, &d.good}, {&a.scrap, &b.scrap, &d.scrap},
		{&a.rework, &b.rework, &d.rework}, {&a.events, &b.events, &d.events},
	}
	for _, p := range pairs {
		switch {
		case *p[1] > *p[0]:
			return rollupSums{}, false, true
		case *p[1] < *p[0]:
			*p[2] = *p[0] - *p[1]
			short = true
		}
	}
	return d, short, false
}

func setList(m map[uint64]bool) []uint64 {
	out := make([]uint64, 0, len(m))
	for v := range m {
		out = append(out, v)
	}
	return out
}

// repairPartsOrder gives every parts row of the id range [lo, hi] of
// topic (inRange's placeholders) that has no parts_order row one, and
// returns how many it wrote.
func (s *Store) repairPartsOrder(ctx context.Context, inRange string, lo, hi uint64, topic string) (uint64, error) {
	var mn, mx int64
	if err := s.conn.QueryRow(ctx, "SELECT min(order_ms), max(order_ms) FROM parts WHERE "+inRange, lo, hi, topic).Scan(&mn, &mx); err != nil {
		return 0, fmt.Errorf("reconcile rollups: order span: %w", err)
	}
	indexed := "SELECT id FROM parts_order WHERE order_ms >= ? AND order_ms <= ? AND id >= ? AND id <= ?"
	missing, err := s.QueryUint64(ctx, "SELECT count() FROM parts WHERE "+inRange+" AND id NOT IN ("+indexed+")",
		lo, hi, topic, mn, mx, lo, hi)
	if err != nil {
		return 0, fmt.Errorf("reconcile rollups: parts_order: %w", err)
	}
	if missing == 0 {
		return 0, nil
	}
	err = s.conn.Exec(ctx, `INSERT INTO parts_order (order_ms, id, site, location_kind, location_id, externalid)
		SELECT order_ms, id, site, location_kind, location_id, externalid
		FROM parts WHERE `+inRange+" AND id NOT IN ("+indexed+")", lo, hi, topic, mn, mx, lo, hi)
	if err != nil {
		return 0, fmt.Errorf("reconcile rollups: parts_order: %w", err)
	}
	return missing, nil
}

// repairPartsByLocation gives every parts row of the id range [lo, hi] of
// topic (inRange's placeholders) that has no parts_by_location row one,
// and returns how many it wrote. The look-up is bounded by the key: the
// range's locations, between its smallest and largest recorded time.
func (s *Store) repairPartsByLocation(ctx context.Context, inRange string, lo, hi uint64, topic string) (uint64, error) {
	var mn, mx int64
	if err := s.conn.QueryRow(ctx, "SELECT min(recorded_ms), max(recorded_ms) FROM parts WHERE "+inRange, lo, hi, topic).Scan(&mn, &mx); err != nil {
		return 0, fmt.Errorf("reconcile rollups: recorded span: %w", err)
	}
	indexed := "SELECT id FROM parts_by_location WHERE externalid IN (SELECT externalid FROM parts WHERE " + inRange +
		") AND recorded_ms >= ? AND recorded_ms <= ? AND id >= ? AND id <= ?"
	args := []any{lo, hi, topic, lo, hi, topic, mn, mx, lo, hi}
	missing, err := s.QueryUint64(ctx, "SELECT count() FROM parts WHERE "+inRange+" AND id NOT IN ("+indexed+")", args...)
	if err != nil {
		return 0, fmt.Errorf("reconcile rollups: parts_by_location: %w", err)
	}
	if missing == 0 {
		return 0, nil
	}
	err = s.conn.Exec(ctx, `INSERT INTO parts_by_location (externalid, recorded_ms, order_ms, id, site, location_kind, location_id)
		SELECT externalid, recorded_ms, order_ms, id, site, location_kind, location_id
		FROM parts WHERE `+inRange+" AND id NOT IN ("+indexed+")", args...)
	if err != nil {
		return 0, fmt.Errorf("reconcile rollups: parts_by_location: %w", err)
	}
	return missing, nil
}
