package chstore

import "github.com/takt/takt/internal/l2l"

// The pitches record area: one record per location and UTC hour in which
// the location made parts (parts_hourly) or has a production period
// (productionperiods, newest version, not deleted). Leading2Lean calls
// these hourly production buckets pitches.
//
//   - planned_production_minutes is running + unplanned down time in the
//     hour, from the periods the processor writes: an hour no period
//     covers has 0, and so have its availability, performance and OEE
//     (the OEE endpoint reports such time as unrecorded).
//   - The FROM aggregates parts_hourly and productionperiods whole; the
//     server pushes a request's filters (site, line, pitch_start, …) into
//     it (withPushdown): one line's day reads ~22 ms instead of ~185 ms
//     at 10M parts. A page of a whole site still aggregates the site.
//   - actual is the produced quantity (good + scrap + rework).
//   - overall_equipment_effectiveness = availability × performance ×
//     quality of the hour, each 0 when its denominator is 0.
//   - id = kind << 62 | location << 24 | hour since the epoch (kind 1 for
//     machines), so a pitch keeps its id; location ids must stay below 2^38.
//
// Pitches are per location: a line's own parts, and each machine's (with
// the machine's line in line). Filter line=N&machine__isnull=true for the
// line-level pitches of line N.
const pitchesFrom = `(SELECT
		toUInt64(location_kind = 'machine') * 4611686018427387904 + location_id * 16777216 + intDiv(toUInt32(pitch_hour), 3600) AS id,
		site, location_kind, location_id, pitch_hour,
		if(location_kind = 'line', location_id, machine_line) AS line_id,
		s_produced, s_good, s_scrap, s_rework, s_ideal, s_run, s_down, s_pdown,
		if(s_run + s_down > 0, s_run / (s_run + s_down), 0) AS availability,
		if(s_run > 0, s_ideal / s_run, 0) AS performance,
		if(s_produced > 0, s_good / s_produced, 0) AS quality
	FROM (
		SELECT site, location_kind, location_id, pitch_hour,
			toUInt64(sum(produced)) AS s_produced, toUInt64(sum(good)) AS s_good, toUInt64(sum(scrap)) AS s_scrap,
			toUInt64(sum(rework)) AS s_rework, sum(ideal_s) AS s_ideal,
			sum(run_s) AS s_run, sum(down_s) AS s_down, sum(pdown_s) AS s_pdown
		FROM (
			SELECT site, location_kind, location_id, hour AS pitch_hour, produced, good, scrap, rework,
				toFloat64(produced) * ideal AS ideal_s, toFloat64(0) AS run_s, toFloat64(0) AS down_s, toFloat64(0) AS pdown_s
			FROM parts_hourly
			ANY LEFT JOIN (SELECT id AS product_id, ideal_cycle_time AS ideal FROM products FINAL WHERE deleted = 0) USING product_id
			UNION ALL
			SELECT site, location_kind, location AS location_id, toDateTime(hn * 3600) AS pitch_hour,
				toUInt64(0) AS produced, toUInt64(0) AS good, toUInt64(0) AS scrap, toUInt64(0) AS rework, toFloat64(0) AS ideal_s,
				if(state = 'running', ov, 0) AS run_s, if(state = 'down', ov, 0) AS down_s, if(state = 'planned_down', ov, 0) AS pdown_s
			FROM (
				SELECT site, location_kind, location, state, hn,
					toFloat64(least(toInt64(pe), toInt64(hn + 1) * 3600) - greatest(toInt64(ps), toInt64(hn) * 3600)) AS ov
				FROM (
					SELECT site, location_kind, location, state, toUInt32(start) AS ps, toUInt32(ifNull(end, now())) AS pe
					FROM (SELECT * FROM productionperiods FINAL) WHERE deleted = 0 AND pe > ps
				) ARRAY JOIN arrayMap(i -> intDiv(ps, 3600) + i, range(toUInt32(intDiv(pe - 1, 3600) - intDiv(ps, 3600) + 1))) AS hn
			)
		)
		GROUP BY site, location_kind, location_id, pitch_hour
	) ANY LEFT JOIN (SELECT id AS location_id, line AS machine_line FROM machines FINAL WHERE deleted = 0) USING location_id)`

// pitchesArea is the pitches record area (read-only).
func pitchesArea() *RecordArea {
	return mustRecordArea("pitches", "parts_hourly", false, "site",
		col("id", l2l.Int, "id"),
		col("site", l2l.Int, "site"),
		nullCol("line", l2l.Int, "nullIf(line_id, 0)"),
		nullCol("machine", l2l.Int, "if(location_kind = 'machine', toNullable(location_id), NULL)"),
		col("location", l2l.Int, "location_id"),
		col("location_kind", l2l.String, "toString(location_kind)"),
		col("pitch_start", l2l.DateTime, msOf("pitch_hour")),
		col("pitch_start_local", l2l.LocalDateTime, msOf("pitch_hour")),
		col("pitch_end", l2l.DateTime, msOf("pitch_hour")+" + 3600000"),
		col("pitch_end_local", l2l.LocalDateTime, msOf("pitch_hour")+" + 3600000"),
		col("planned_production_minutes", l2l.Float, "(s_run + s_down) / 60"),
		col("running_minutes", l2l.Float, "s_run / 60"),
		col("down_minutes", l2l.Float, "s_down / 60"),
		col("planned_down_minutes", l2l.Float, "s_pdown / 60"),
		col("actual", l2l.Int, "s_produced"),
		col("good", l2l.Int, "s_good"),
		col("scrap", l2l.Int, "s_scrap"),
		col("rework", l2l.Int, "s_rework"),
		col("ideal_minutes", l2l.Float, "s_ideal / 60"),
		col("availability", l2l.Float, "availability"),
		col("performance", l2l.Float, "performance"),
		col("quality", l2l.Float, "quality"),
		col("overall_equipment_effectiveness", l2l.Float, "availability * performance * quality"),
	).withFrom(pitchesFrom).withPushdown()
}
