package chstore

import (
	"context"
	"fmt"
	"time"
)

// HourlyParts is one row of the hourly parts rollup (0020_parts_hourly.sql):
// the quantities of one product at one location in one UTC hour.
type HourlyParts struct {
	Site         uint64
	LocationKind string
	LocationID   uint64
	ProductID    uint64
	Hour         time.Time
	Produced     uint64
	Good         uint64
	Scrap        uint64
	Rework       uint64
	Events       uint64
}

// hourlyColumns is the select list of both hourly reads; the aggregates are
// not named like the columns they sum (ClickHouse would resolve later
// references to the aggregate).
const hourlyColumns = "site, toString(location_kind), location_id, product_id, %s AS h, " +
	"toUInt64(sum(%s)) AS s_produced, toUInt64(sum(%s)) AS s_good, toUInt64(sum(%s)) AS s_scrap, " +
	"toUInt64(sum(%s)) AS s_rework, toUInt64(sum(%s)) AS s_events"

// PartsHourly reads the rollup for site over [from, to) (whole UTC hours),
// summed, in key order.
func (s *Store) PartsHourly(ctx context.Context, site uint64, from, to time.Time) ([]HourlyParts, error) {
	q := "SELECT " + fmt.Sprintf(hourlyColumns, "hour", "produced", "good", "scrap", "rework", "events") +
		" FROM parts_hourly WHERE site = ? AND hour >= ? AND hour < ?" +
		" GROUP BY site, location_kind, location_id, product_id, h ORDER BY site, location_kind, location_id, product_id, h"
	return s.queryHourly(ctx, "parts_hourly", q, site, from.UTC(), to.UTC())
}

// PartsHourlyRaw computes the same rows as PartsHourly from the raw parts
// table. It is the reference the rollup is checked against, and slow.
func (s *Store) PartsHourlyRaw(ctx context.Context, site uint64, from, to time.Time) ([]HourlyParts, error) {
	hour := "toDateTime(intDiv(toUInt32(recorded_at), 3600) * 3600)"
	q := "SELECT " + fmt.Sprintf(hourlyColumns, hour, "quantity", "if(quality = 'good', quantity, 0)",
		"if(quality = 'scrap', quantity, 0)", "if(quality = 'rework', quantity, 0)", "1") +
		" FROM parts WHERE site = ? AND recorded_at >= ? AND recorded_at < ?" +
		" GROUP BY site, location_kind, location_id, product_id, h ORDER BY site, location_kind, location_id, product_id, h"
	return s.queryHourly(ctx, "parts", q, site, from.UTC().Truncate(time.Hour), to.UTC().Truncate(time.Hour))
}

func (s *Store) queryHourly(ctx context.Context, table, q string, args ...any) ([]HourlyParts, error) {
	rows, err := s.conn.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("hourly parts from %s: %w", table, err)
	}
	defer rows.Close()
	var out []HourlyParts
	for rows.Next() {
		var r HourlyParts
		if err := rows.Scan(&r.Site, &r.LocationKind, &r.LocationID, &r.ProductID, &r.Hour,
			&r.Produced, &r.Good, &r.Scrap, &r.Rework, &r.Events); err != nil {
			return nil, fmt.Errorf("hourly parts from %s: %w", table, err)
		}
		r.Hour = r.Hour.UTC()
		out = append(out, r)
	}
	return out, rows.Err()
}

// BackfillPartsHourly rolls up the parts rows recorded in [from, to) into
// parts_hourly. It is for rows stored before migration 0020 and must run
// while nothing inserts into parts for that range: rows inserted while it
// runs could be counted twice (the view and the backfill) or not at all.
func (s *Store) BackfillPartsHourly(ctx context.Context, from, to time.Time) error {
	err := s.conn.Exec(ctx, `INSERT INTO parts_hourly (site, location_kind, location_id, product_id, hour,
		produced, good, scrap, rework, events)
		SELECT site, location_kind, location_id, product_id, toDateTime(intDiv(toUInt32(recorded_at), 3600) * 3600) AS h,
			toUInt64(sum(quantity)), toUInt64(sumIf(quantity, quality = 'good')), toUInt64(sumIf(quantity, quality = 'scrap')),
			toUInt64(sumIf(quantity, quality = 'rework')), toUInt64(count())
		FROM parts WHERE recorded_at >= ? AND recorded_at < ?
		GROUP BY site, location_kind, location_id, product_id, h`, from.UTC(), to.UTC())
	if err != nil {
		return fmt.Errorf("backfill parts_hourly: %w", err)
	}
	return nil
}
