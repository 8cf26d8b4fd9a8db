package chstore

// Reads behind GET /api/1.0/oee/: a site's master data, part quantities
// per location, product and time segment, and production periods. The
// figures themselves are computed by internal/oee.
//
// Quantities by how parts count (parts.oee_class, or the class a recompute
// gave them: partClass, reclass.go) and ideal times come
// from two hourly rollups fed by views on parts: parts_hourly counts every
// part since migration 0020, parts_oee_hourly the parts since migration
// 0025 by class, with the ideal cycle time each was stored with. Their
// difference is the parts stored before 0025: counted, with the backfilled
// ideal cycle time of their product (0025_oee_part_facts.sql).

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
)

// OEELocation is a location of a site as the OEE figures need it: Line is
// the line itself for a line, the machine's line for a machine.
type OEELocation struct {
	Kind       string // "line" or "machine"
	ID         uint64
	Line       uint64
	ExternalID string
}

// OEEProduct is a product of a site with its ideal cycle time (seconds)
// as master data holds it now.
type OEEProduct struct {
	ID             uint64
	Code           string
	IdealCycleTime float64
	// Deleted products are listed too: their parts still count.
	Deleted bool
	// BackfillIdeal is the ideal cycle time of the parts stored without
	// one (before migration 0025): the product's when that migration
	// ran, else IdealCycleTime.
	BackfillIdeal float64
}

// OEEShift is a row of the shifts table: Line 0 is a site-wide shift.
type OEEShift struct {
	Line                  uint64
	Code, Start, End, Day string
}

// OEEMaster is the master data of one site.
type OEEMaster struct {
	// Found is false when the site does not exist (or is deleted).
	Found     bool
	Timezone  string
	Locations []OEELocation
	// Products holds every product of the site, deleted ones included.
	Products []OEEProduct
	Shifts   []OEEShift
}

// OEEMaster reads the site's time zone, locations, products (with their
// backfill ideal cycle times) and shifts (small FINAL reads, run
// concurrently).
func (s *Store) OEEMaster(ctx context.Context, site uint64) (OEEMaster, error) {
	var m OEEMaster
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		rows, err := s.conn.Query(gctx, "SELECT timezone FROM (SELECT * FROM sites FINAL WHERE id = ?) WHERE deleted = 0", site)
		if err != nil {
			return fmt.Errorf("site %d: %w", site, err)
		}
		defer rows.Close()
		for rows.Next() {
			if err := rows.Scan(&m.Timezone); err != nil {
				return fmt.Errorf("site %d: %w", site, err)
			}
			m.Found = true
		}
		return rows.Err()
	})
	g.Go(func() error {
		rows, err := s.conn.Query(gctx, `SELECT kind, id, line, externalid FROM (
			SELECT 'line' AS kind, id, id AS line, externalid FROM (SELECT * FROM lines FINAL WHERE site = ?) WHERE deleted = 0 AND externalid != ''
			UNION ALL
			SELECT 'machine' AS kind, id, line, externalid FROM (SELECT * FROM machines FINAL WHERE site = ?) WHERE deleted = 0 AND externalid != ''
		) ORDER BY kind, id`, site, site)
		if err != nil {
			return fmt.Errorf("locations of site %d: %w", site, err)
		}
		defer rows.Close()
		for rows.Next() {
			var l OEELocation
			if err := rows.Scan(&l.Kind, &l.ID, &l.Line, &l.ExternalID); err != nil {
				return fmt.Errorf("locations of site %d: %w", site, err)
			}
			m.Locations = append(m.Locations, l)
		}
		return rows.Err()
	})
	g.Go(func() error {
		rows, err := s.conn.Query(gctx, `SELECT p.id, p.code, p.ideal_cycle_time, p.deleted, b.n, b.ideal
			FROM (SELECT id, code, ideal_cycle_time, deleted FROM products FINAL WHERE site = ?) AS p
			ANY LEFT JOIN (SELECT product_id AS id, count() AS n, argMin(ideal_cycle_time, taken_at) AS ideal
				FROM product_ideal_backfill WHERE site = ? GROUP BY product_id) AS b USING id
			ORDER BY p.id`, site, site)
		if err != nil {
			return fmt.Errorf("products of site %d: %w", site, err)
		}
		defer rows.Close()
		for rows.Next() {
			var p OEEProduct
			var deleted uint8
			var n uint64
			var backfill float64
			if err := rows.Scan(&p.ID, &p.Code, &p.IdealCycleTime, &deleted, &n, &backfill); err != nil {
				return fmt.Errorf("products of site %d: %w", site, err)
			}
			p.Deleted = deleted == 1
			p.BackfillIdeal = p.IdealCycleTime
			if n > 0 {
				p.BackfillIdeal = backfill
			}
			m.Products = append(m.Products, p)
		}
		return rows.Err()
	})
	g.Go(func() error {
		rows, err := s.conn.Query(gctx, `SELECT line, code, start_time, end_time, days
			FROM (SELECT * FROM shifts FINAL WHERE site = ?) WHERE deleted = 0 AND active = 1 ORDER BY line, code, id`, site)
		if err != nil {
			return fmt.Errorf("shifts of site %d: %w", site, err)
		}
		defer rows.Close()
		for rows.Next() {
			var sh OEEShift
			if err := rows.Scan(&sh.Line, &sh.Code, &sh.Start, &sh.End, &sh.Day); err != nil {
				return fmt.Errorf("shifts of site %d: %w", site, err)
			}
			m.Shifts = append(m.Shifts, sh)
		}
		return rows.Err()
	})
	if err := g.Wait(); err != nil {
		return OEEMaster{}, err
	}
	return m, nil
}

// OEEScope restricts OEE reads to a site and, optionally, to locations and
// a product. Nil Lines and Machines mean every location of the site;
// otherwise only the listed ones (line locations by id in Lines, machine
// locations in Machines).
type OEEScope struct {
	Site     uint64
	All      bool
	Lines    []uint64
	Machines []uint64
	Product  uint64 // 0: every product
}

// where writes the scope's conditions on the columns kind, loc and product
// (product "" skips the product condition).
func (sc OEEScope) where(b *strings.Builder, kind, loc, product string) []any {
	args := []any{sc.Site}
	b.WriteString("site = ?")
	if !sc.All {
		var alts []string
		if len(sc.Lines) > 0 {
			alts = append(alts, kind+" = 'line' AND "+loc+" IN ?")
			args = append(args, groupSet(sc.Lines))
		}
		if len(sc.Machines) > 0 {
			alts = append(alts, kind+" = 'machine' AND "+loc+" IN ?")
			args = append(args, groupSet(sc.Machines))
		}
		if len(alts) == 0 {
			alts = []string{"0"}
		}
		b.WriteString(" AND (" + strings.Join(alts, " OR ") + ")")
	}
	if sc.Product != 0 && product != "" {
		b.WriteString(" AND " + product + " = ?")
		args = append(args, sc.Product)
	}
	return args
}

// OEEPartsRow holds the quantities of one product at one location within
// one segment of an OEEParts read.
type OEEPartsRow struct {
	Kind              string
	Location, Product uint64
	Segment           int
	// Produced, Good, Scrap and Rework count the counted parts.
	Produced, Good, Scrap, Rework uint64
	// IdealTime is Σ ideal cycle time × quantity over the counted parts
	// stored with their ideal cycle time; UnknownIdeal is the quantity of
	// the counted parts stored without one (their product's
	// OEEProduct.BackfillIdeal applies).
	IdealTime    float64
	UnknownIdeal uint64
	// Unscheduled and Late are the quantities of the parts made outside
	// the shifts and too late to be placed.
	Unscheduled, Late uint64
}

// OEEParts sums the parts of scope recorded in [cuts[0], cuts[len-1]) (Unix
// milliseconds) per location, product and segment, segment i being
// [cuts[i], cuts[i+1]); cuts must be sorted and hold at least two values.
//
// Hours wholly inside one segment come from the parts_hourly rollup;
// the others (an edge of the window or a segment boundary not on a whole
// UTC hour) from the parts table, limited to the id ranges that
// parts_hour_ranges gives for those hours. raw reads everything from the
// parts table without those ranges (the reference, and the slow path the
// rollups are measured against), which costs a scan of its site and
// recorded_ms columns.
func (s *Store) OEEParts(ctx context.Context, sc OEEScope, cuts []int64, raw bool) ([]OEEPartsRow, error) {
	// One INSERT into parts updates the two rollups one after the other,
	// so a read between the two may find parts_oee_hourly ahead of
	// parts_hourly. That passes within milliseconds: read again a few
	// times before calling it a real disagreement.
	for wait := 20 * time.Millisecond; ; wait *= 2 {
		rows, err := s.oeePartsOnce(ctx, sc, cuts, raw)
		if !errors.Is(err, errRollupsDisagree) || wait > 400*time.Millisecond {
			return rows, err
		}
		if rollupsDisagreeHook != nil {
			rollupsDisagreeHook()
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(wait):
		}
	}
}

// errRollupsDisagree: parts_oee_hourly holds parts parts_hourly does not.
var errRollupsDisagree = errors.New("the rollups parts_hourly and parts_oee_hourly disagree")

// rollupsDisagreeHook, when set (by tests), runs before each read again.
var rollupsDisagreeHook func()

func (s *Store) oeePartsOnce(ctx context.Context, sc OEEScope, cuts []int64, raw bool) ([]OEEPartsRow, error) {
	if len(cuts) < 2 || !slices.IsSorted(cuts) {
		return nil, fmt.Errorf("oee parts: %d cuts, want at least two, sorted", len(cuts))
	}
	const hourMs = 3_600_000
	from, to := cuts[0], cuts[len(cuts)-1]
	// Whole hours inside the window; of those, the ones a cut splits.
	fullFrom, fullTo := ceilDiv(from, hourMs), to/hourMs // hour numbers [fullFrom, fullTo)
	if raw {
		return s.oeeParts(ctx, sc, cuts, nil, nil, false)
	}
	if fullTo <= fullFrom {
		return s.oeeParts(ctx, sc, cuts, [][2]int64{{from, to}}, nil, true)
	}
	var dirty []int64
	for _, c := range cuts {
		if c%hourMs != 0 {
			if h := c / hourMs; h >= fullFrom && h < fullTo && (len(dirty) == 0 || dirty[len(dirty)-1] != h) {
				dirty = append(dirty, h)
			}
		}
	}
	// The raw read covers the partial hours at both edges and the dirty
	// hours; the rollup the clean whole hours.
	rawRanges := [][2]int64{}
	if from < fullFrom*hourMs {
		rawRanges = append(rawRanges, [2]int64{from, fullFrom * hourMs})
	}
	for _, h := range dirty {
		rawRanges = append(rawRanges, [2]int64{h * hourMs, (h + 1) * hourMs})
	}
	if fullTo*hourMs < to {
		rawRanges = append(rawRanges, [2]int64{fullTo * hourMs, to})
	}
	return s.oeeParts(ctx, sc, cuts, rawRanges, &[2]int64{fullFrom, fullTo}, true, dirty...)
}

func ceilDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a > 0 {
		q++
	}
	return q
}

// oeeParts runs the read: the rollup over the hours in rollup (hour
// numbers [a, b)) minus skip, and the part rows over rawRanges (all of
// the cuts' whole range when both are nil), limited to the id ranges of
// their hours when ranged.
func (s *Store) oeeParts(ctx context.Context, sc OEEScope, cuts []int64, rawRanges [][2]int64, rollup *[2]int64, ranged bool, skip ...int64) ([]OEEPartsRow, error) {
	var ids [][2]uint64
	if ranged && len(rawRanges) > 0 {
		var err error
		if ids, err = s.hourRanges(ctx, sc.Site, rawRanges); err != nil {
			return nil, err
		}
		if len(ids) == 0 {
			rawRanges = nil // no part in those hours
			if rollup == nil {
				return nil, nil
			}
		}
	}
	var q strings.Builder
	var args []any
	q.WriteString("SELECT toString(k), l, p, seg, toInt64(sum(s_produced)), toInt64(sum(s_good)), toInt64(sum(s_scrap)), " +
		"toInt64(sum(s_rework)), toFloat64(sum(s_ideal)), toInt64(sum(s_unknown)), toInt64(sum(s_unscheduled)), toInt64(sum(s_late)) FROM (")
	parts := 0
	if rollup == nil && rawRanges == nil {
		rawRanges = [][2]int64{{cuts[0], cuts[len(cuts)-1]}}
	}
	if len(rawRanges) > 0 {
		q.WriteString("SELECT location_kind AS k, location_id AS l, product_id AS p, " +
			"toUInt32(arrayCount(c -> c <= recorded_ms, ?) - 1) AS seg, " +
			"toInt64(sumIf(quantity, " + classIs(0) + ")) AS s_produced, " +
			"toInt64(sumIf(quantity, " + classIs(0) + " AND quality = 'good')) AS s_good, " +
			"toInt64(sumIf(quantity, " + classIs(0) + " AND quality = 'scrap')) AS s_scrap, " +
			"toInt64(sumIf(quantity, " + classIs(0) + " AND quality = 'rework')) AS s_rework, " +
			"toFloat64(sumIf(ideal_cycle_time * quantity, " + classIs(0) + " AND ideal_cycle_time >= 0)) AS s_ideal, " +
			"toInt64(sumIf(quantity, " + classIs(0) + " AND ideal_cycle_time < 0)) AS s_unknown, " +
			"toInt64(sumIf(quantity, " + classIs(1) + ")) AS s_unscheduled, " +
			"toInt64(sumIf(quantity, " + classIs(2) + ")) AS s_late " +
			"FROM parts WHERE ")
		args = append(args, cuts)
		args = append(args, sc.where(&q, "location_kind", "location_id", "product_id")...)
		if len(ids) > 0 {
			// Only the id ranges holding these hours' parts: parts'
			// primary key reads just their granules.
			q.WriteString(" AND (")
			for i, r := range ids {
				if i > 0 {
					q.WriteString(" OR ")
				}
				q.WriteString("id >= ? AND id <= ?")
				args = append(args, r[0], r[1])
			}
			q.WriteString(")")
		}
		// recorded_at (seconds) first: a cheap bound before the exact
		// millisecond ranges.
		lo, hi := rawRanges[0][0], rawRanges[len(rawRanges)-1][1]
		q.WriteString(" AND recorded_at >= toDateTime(?) AND recorded_at <= toDateTime(?) AND (")
		args = append(args, lo/1000, hi/1000)
		for i, r := range rawRanges {
			if i > 0 {
				q.WriteString(" OR ")
			}
			q.WriteString("recorded_ms >= ? AND recorded_ms < ?")
			args = append(args, r[0], r[1])
		}
		q.WriteString(") GROUP BY k, l, p, seg")
		parts++
	}
	if rollup != nil {
		if parts > 0 {
			q.WriteString(" UNION ALL ")
		}
		// Each clean hour lies in one segment: map hours to segments with
		// transform (a hash lookup), ~15x cheaper than an arrayCount
		// lambda per row.
		var hours, segs []uint32
		skipped := map[int64]bool{}
		for _, h := range skip {
			skipped[h] = true
		}
		for h := rollup[0]; h < rollup[1]; h++ {
			if skipped[h] {
				continue
			}
			hours = append(hours, uint32(h*3600))
			segs = append(segs, uint32(sort.Search(len(cuts), func(i int) bool { return cuts[i] > h*3_600_000 })-1))
		}
		// parts_hourly: every part, taken as counted and stored without
		// an ideal cycle time; parts_oee_hourly corrects that for the
		// parts stored since 0025 (see the top of this file).
		hourly := func(table, columns string) {
			q.WriteString("SELECT location_kind AS k, location_id AS l, product_id AS p, " +
				"transform(toUInt32(hour), ?, ?, toUInt32(0)) AS seg, " + columns + " FROM " + table + " WHERE ")
			args = append(args, hours, segs)
			args = append(args, sc.where(&q, "location_kind", "location_id", "product_id")...)
			q.WriteString(" AND hour >= toDateTime(?) AND hour < toDateTime(?)")
			args = append(args, rollup[0]*3600, rollup[1]*3600)
			if len(skip) > 0 {
				q.WriteString(" AND toUInt32(hour) NOT IN ?")
				hs := make([]uint64, len(skip))
				for i, h := range skip {
					hs[i] = uint64(h * 3600)
				}
				args = append(args, groupSet(hs))
			}
			q.WriteString(" GROUP BY k, l, p, seg")
		}
		hourly("parts_hourly", "toInt64(sum(produced)) AS s_produced, toInt64(sum(good)) AS s_good, "+
			"toInt64(sum(scrap)) AS s_scrap, toInt64(sum(rework)) AS s_rework, toFloat64(0) AS s_ideal, "+
			"toInt64(sum(produced)) AS s_unknown, toInt64(0) AS s_unscheduled, toInt64(0) AS s_late")
		q.WriteString(" UNION ALL ")
		hourly("parts_oee_hourly", "-toInt64(sumIf(produced, oee_class != 'counted')) AS s_produced, "+
			"-toInt64(sumIf(good, oee_class != 'counted')) AS s_good, "+
			"-toInt64(sumIf(scrap, oee_class != 'counted')) AS s_scrap, "+
			"-toInt64(sumIf(rework, oee_class != 'counted')) AS s_rework, "+
			"toFloat64(sumIf(ideal_time, oee_class = 'counted')) AS s_ideal, "+
			"-toInt64(sumIf(ideal_qty, oee_class = 'counted')) - toInt64(sumIf(produced, oee_class != 'counted')) AS s_unknown, "+
			"toInt64(sumIf(produced, oee_class = 'unscheduled')) AS s_unscheduled, "+
			"toInt64(sumIf(produced, oee_class = 'late')) AS s_late")
	}
	q.WriteString(") GROUP BY k, l, p, seg")
	rows, err := s.conn.Query(ctx, q.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("oee parts: %w", err)
	}
	defer rows.Close()
	var out []OEEPartsRow
	for rows.Next() {
		var r OEEPartsRow
		var seg uint32
		var n [7]int64
		if err := rows.Scan(&r.Kind, &r.Location, &r.Product, &seg, &n[0], &n[1], &n[2], &n[3], &r.IdealTime,
			&n[4], &n[5], &n[6]); err != nil {
			return nil, fmt.Errorf("oee parts: %w", err)
		}
		for _, x := range n {
			if x < 0 {
				// parts_oee_hourly holds a part parts_hourly does not:
				// an insert between its two views, or a rollup changed
				// by hand.
				return nil, fmt.Errorf("oee parts: %s %d, product %d: %w (%v)",
					r.Kind, r.Location, r.Product, errRollupsDisagree, n)
			}
		}
		r.Segment = int(seg)
		r.Produced, r.Good, r.Scrap, r.Rework = uint64(n[0]), uint64(n[1]), uint64(n[2]), uint64(n[3])
		r.UnknownIdeal, r.Unscheduled, r.Late = uint64(n[4]), uint64(n[5]), uint64(n[6])
		out = append(out, r)
	}
	return out, rows.Err()
}

// hourRanges returns, per Kafka partition, the range of part ids that
// holds the site's parts recorded in the UTC hours the ranges (Unix ms)
// touch (0023_parts_hour_ranges.sql).
func (s *Store) hourRanges(ctx context.Context, site uint64, ranges [][2]int64) ([][2]uint64, error) {
	const hourMs = 3_600_000
	var hours []uint64
	for _, r := range ranges {
		for h := r[0] / hourMs; h*hourMs < r[1]; h++ {
			if n := len(hours); n == 0 || hours[n-1] != uint64(h*3600) {
				hours = append(hours, uint64(h*3600))
			}
		}
	}
	// One range per hour and partition: the hours are apart (a window's
	// two edges), and one range over both would span the days between.
	rows, err := s.conn.Query(ctx, `SELECT minMerge(min_id), maxMerge(max_id) FROM parts_hour_ranges
		WHERE site = ? AND toUInt32(hour) IN ? GROUP BY hour, partition`, site, groupSet(hours))
	if err != nil {
		return nil, fmt.Errorf("oee part ranges: %w", err)
	}
	defer rows.Close()
	var out [][2]uint64
	for rows.Next() {
		var r [2]uint64
		if err := rows.Scan(&r[0], &r[1]); err != nil {
			return nil, fmt.Errorf("oee part ranges: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("oee part ranges: %w", err)
	}
	// Merge overlapping ranges (late parts widen an hour's range).
	slices.SortFunc(out, func(a, b [2]uint64) int { return cmp.Compare(a[0], b[0]) })
	merged := out[:0]
	for _, r := range out {
		if n := len(merged); n > 0 && r[0] <= merged[n-1][1]+1 {
			merged[n-1][1] = max(merged[n-1][1], r[1])
			continue
		}
		merged = append(merged, r)
	}
	return merged, nil
}

// OEEPeriod is a live production period (the newest version of its id).
type OEEPeriod struct {
	Kind       string
	Location   uint64
	State      string
	Start, End int64 // Unix ms; End is 0 while Open
	Open       bool
	// FirstOfStop: 1 on the first scheduled piece of a stop, 0 on other
	// periods, -1 on rows stored before migration 0025.
	FirstOfStop int8
}

// OEEPeriods returns the live periods of scope that overlap [from, to] (Unix
// ms), the ones ending exactly at from included (they tell whether a stop
// continues across from), sorted by location and start.
//
// A period's id, site, location and start never change between its
// versions, so they filter inside FINAL; end, state and deleted do, so they
// filter outside it. The read is of productionperiods_by_location (0049),
// the same versions ordered by location and start: a location's key range,
// not every period of the site.
func (s *Store) OEEPeriods(ctx context.Context, sc OEEScope, from, to int64) ([]OEEPeriod, error) {
	var q strings.Builder
	q.WriteString("SELECT toString(location_kind), location, toString(state), toInt64(toUInt32(start)) * 1000, " +
		"toInt64(toUInt32(ifNull(end, toDateTime(0)))) * 1000, isNull(end), first_of_stop FROM (SELECT * FROM productionperiods_by_location FINAL WHERE ")
	args := sc.where(&q, "location_kind", "location", "")
	q.WriteString(" AND start < toDateTime(?)) WHERE deleted = 0 AND (isNull(end) OR end >= toDateTime(?)) ORDER BY location_kind, location, start")
	args = append(args, ceilDiv(to, 1000), from/1000)
	rows, err := s.conn.Query(ctx, q.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("oee periods: %w", err)
	}
	defer rows.Close()
	var out []OEEPeriod
	for rows.Next() {
		var p OEEPeriod
		var open uint8
		if err := rows.Scan(&p.Kind, &p.Location, &p.State, &p.Start, &p.End, &open, &p.FirstOfStop); err != nil {
			return nil, fmt.Errorf("oee periods: %w", err)
		}
		p.Open = open == 1
		if p.Open {
			p.End = 0
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// PeriodRow is one version of a production period as stored in the
// productionperiods table (0003_shifts_periods.sql). Times are Unix
// milliseconds, stored as whole seconds.
type PeriodRow struct {
	ID           uint64
	Site         uint64
	Location     uint64
	LocationKind string // "line" or "machine"
	ExternalID   string
	State        string // "running", "down", "planned_down" or "unscheduled"
	Start, End   int64
	Open         bool // End is NULL
	Reason       uint64
	// FirstOfStop: 1 on the first scheduled piece of a stop, 0 on other
	// periods, -1 when unknown (a row stored before migration 0025).
	FirstOfStop int8
	// Dispatch and DispatchType: the dispatch whose down window the
	// period is, and its type (0: none).
	Dispatch     uint64
	DispatchType uint64
	// RuleVersion names the rules the period was derived under (0:
	// written before it was recorded).
	RuleVersion uint64
	Version     uint64
	Deleted     bool
}

// InsertPeriods writes period versions in one block.
func (s *Store) InsertPeriods(ctx context.Context, rows []PeriodRow) error {
	if len(rows) == 0 {
		return nil
	}
	b, err := s.conn.PrepareBatch(ctx, "INSERT INTO productionperiods (id, site, location, location_kind, externalid, state, start, end,"+
		" duration, reason, first_of_stop, dispatch, dispatchtype, rule_version, version, deleted)")
	if err != nil {
		return fmt.Errorf("prepare insert into productionperiods: %w", err)
	}
	for _, r := range rows {
		var end *time.Time
		dur := 0.0
		if !r.Open {
			e := time.UnixMilli(r.End).UTC()
			end = &e
			dur = float64(r.End-r.Start) / 1000
		}
		if err := b.Append(r.ID, r.Site, r.Location, r.LocationKind, r.ExternalID, r.State,
			time.UnixMilli(r.Start).UTC(), end, dur, r.Reason, r.FirstOfStop, r.Dispatch, r.DispatchType, r.RuleVersion, r.Version, b2u(r.Deleted)); err != nil {
			b.Abort()
			return fmt.Errorf("insert into productionperiods: %w", err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("insert into productionperiods: %w", err)
	}
	return nil
}
