package record

import (
	"time"

	"github.com/takt/takt/internal/l2l"
)

// The areas the pipeline writes: parts (read-only), production periods
// (only their reason can be set), and the hourly pitches computed from
// both (read-only).

// computed is a read-only field computed by expr.
func computed(name string, t l2l.Type, expr string) Field {
	return Field{Name: name, Type: t, Expr: expr, Flags: Read}
}

// nullable is computed for an expression that may be null.
func nullable(name string, t l2l.Type, expr string) Field {
	return Field{Name: name, Type: t, Nullable: true, Expr: expr, Flags: Read}
}

// withDoc returns f with its description.
func withDoc(f Field, doc string) Field {
	f.Doc = doc
	return f
}

// withRef returns f, which holds the id of a record of area, with that
// reference (it then also answers to <name>_id in filters).
func withRef(f Field, area string) Field {
	f.Ref = area
	return f
}

// withOptions returns f with the values it takes.
func withOptions(f Field, options ...string) Field {
	f.Options = options
	return f
}

var locationKinds = []string{"line", "machine"}

// partArea: one record per part event. Without order_by parts are paged in
// insertion order (order_ms, then id); see chstore.RecordArea.WithWatermark.
var partArea = &Area{
	Name: "parts", Record: "Part", Table: "parts", InsertionOrder: "stored_at", Site: SiteField,
	// parts_order (0048) holds these fields' columns.
	OrderIndex: "parts_order", IndexFields: []string{"id", "site", "location", "location_kind", "externalid"},
	// parts_by_location (0051): a location's parts by recorded time.
	LocationIndex: "parts_by_location", LocationKey: [2]string{"externalid", "recorded_at"},
	LocationFields: []string{"id", "site", "location", "location_kind", "externalid", "recorded_at", "recorded_at_local"},
	// The ingestor refuses a part recorded more than 24 h after its
	// receipt, and a part's order_ms is at least its receipt (ingestors'
	// clocks may differ: a day more).
	LocationLead: 48 * time.Hour,
	Doc: "One record per part event (read-only). id = (Kafka partition << 40) | offset: unique, stable when a message" +
		" is replayed, below 2^53.",
	Fields: []Field{
		idField(),
		computed("site", l2l.Int, "site"),
		computed("externalid", l2l.String, "externalid"),
		computed("location", l2l.Int, "location_id"),
		withOptions(computed("location_kind", l2l.String, "toString(location_kind)"), locationKinds...),
		withRef(nullable("product", l2l.Int, "nullIf(product_id, 0)"), "products"),
		nullable("product_code", l2l.String, "nullIf(product_code, '')"),
		withOptions(computed("product_resolution", l2l.String, "toString(product_resolution)"),
			"code", "cycle_time", "fallback", "none"),
		withDoc(nullable("product_reported", l2l.String, "nullIf(product_reported, '')"), "The product code the part was reported with."),
		computed("quantity", l2l.Int, "quantity"),
		withOptions(computed("quality", l2l.String, "toString(quality)"), "good", "scrap", "rework"),
		withDoc(nullable("reason", l2l.String, "nullIf(reason, '')"), "The scrap reason code."),
		withDoc(nullable("cycle_time", l2l.Float, "cycle_time"), "Seconds."),
		computed("recorded_at", l2l.DateTime, "recorded_ms"),
		computed("recorded_at_local", l2l.LocalDateTime, "recorded_ms"),
		withDoc(computed("recorded_defaulted", l2l.Bool, "recorded_defaulted"), "The part came without recorded_at: it is the time of receipt."),
		computed("received_at", l2l.DateTime, "received_ms"),
		{Name: "stored_at", Type: l2l.DateTime, Expr: ms("inserted_at"), Order: "order_ms", Flags: Read,
			Doc: "When ClickHouse stored the part (whole seconds). Ordered by insertion order, the order of reads" +
				" without order_by: about the time of receipt, never before a part already shown (see the parts watermark)."},
		withDoc(computed("event_id", l2l.String, "toString(event_id)"), "The event's UUID, given at ingest."),
		alwaysActive(),
	},
}

// periodArea: production periods, written by the processor. An update may
// set only a down period's reason, which the processor applies
// (queryapi/assign.go).
var periodArea = &Area{
	Name: "productionperiods", Record: "ProductionPeriod", Table: "productionperiods", Versioned: true,
	Doc: "Running and down periods of each location, written by the pipeline. An update may set only reason" +
		" (see Reason assignment); create and delete answer 405.",
	Site: SiteField, Writes: WriteAssign, Scope: scopeWrite,
	Fields: []Field{
		withDoc(idField(), "A 63-bit hash of the location and the start: above 2^53."),
		computed("site", l2l.Int, "site"),
		computed("location", l2l.Int, "location"),
		withOptions(computed("location_kind", l2l.String, "toString(location_kind)"), locationKinds...),
		computed("externalid", l2l.String, "externalid"),
		withOptions(computed("state", l2l.String, "toString(state)"), "running", "down", "planned_down", "unscheduled"),
		computed("start", l2l.DateTime, ms("start")),
		computed("start_local", l2l.LocalDateTime, ms("start")),
		withDoc(nullable("end", l2l.DateTime, ms("end")), "null while the period is open."),
		nullable("end_local", l2l.LocalDateTime, ms("end")),
		withDoc(computed("duration", l2l.Float, "duration"), "Seconds."),
		{Name: "reason", Type: l2l.Int, Nullable: true, Expr: "nullIf(reason, 0)", Flags: Read | Write, Ref: "reasons",
			Doc: "The downtime reason's id; null without one. Set on a down or planned_down period (empty or 0 removes it)."},
		withDoc(withRef(nullable("dispatch", l2l.Int, "nullIf(dispatch, 0)"), "dispatches"),
			"The dispatch whose down window the period is (a dispatch of a type that means downtime); null for the others."),
		withDoc(withRef(nullable("dispatchtype", l2l.Int, "nullIf(dispatchtype, 0)"), "dispatchtypes"),
			"The type of that dispatch: why the location is down. Such a period takes no reason."),
		withDoc(computed("rule_version", l2l.Int, "rule_version"),
			"Which rules (stop threshold, shifts, time zone) produced the period: the same rules give the same number; 0 for"+
				" periods written before it was recorded."),
		alwaysActive(),
	},
	Actions: []Action{
		{Name: "recompute", Methods: []string{"POST"}, Scope: scopeWrite,
			Doc: "Derives the production periods of a location (externalid or machine), or of a line and its machines (line)," +
				" from start to end again from the stored parts under the current rules (stop threshold, shifts). The" +
				" replaced versions stay readable (include_history=true); a down period that still starts where it did" +
				" keeps its reason, and the reasons that no period carries any more are listed in the answer. The call is" +
				" signed (_server, _expiration, _signature over POST, productionperiods/recompute, then site, externalid," +
				" line, machine, start, end). It waits up to wait seconds (default 10) for the processor and answers one" +
				" record per location, status done, pending (see recompute_result) or failed (error says why: a window holding more parts than one recompute may read).",
			Args: []Arg{
				{Name: "externalid", Type: ArgText, Doc: "The location's external id."},
				{Name: "line", Type: ArgID, Doc: "A line: the line and each of its machines that is a location."},
				{Name: "machine", Type: ArgID, Doc: "A machine."},
				{Name: "start", Type: ArgTime, Required: true, Doc: "Start of the window."},
				{Name: "end", Type: ArgTime, Required: true, Doc: "End of the window: after start, at most 31 days later, not in the future."},
				{Name: "wait", Type: ArgCount, Doc: "Seconds to wait for the result (0 to 20; default 10)."},
			}},
		{Name: "recompute_result", Methods: []string{"GET"}, PathArg: "id", Scope: scopeWrite,
			Doc: "The result of one location's recompute (the id a recompute answered), once the processor ran it."},
	},
}

// PeriodHistory is how the productionperiods area reads with
// include_history=true: every live period (recompute empty) and every
// version a recompute replaced (productionperiods_history), with the
// request that replaced it and when. It is not an area of its own: the
// query API reads productionperiods through it when asked.
var PeriodHistory = periodHistoryArea()

// periodHistoryFrom unions the live periods and the replaced versions;
// both tables declare the same enums, so the columns' types agree.
const periodHistoryFrom = `(SELECT id, site, location, location_kind, externalid, state, start, end, duration, reason,
		dispatch, dispatchtype, rule_version, version, '' AS recompute, toDateTime(0) AS replaced_at
		FROM (SELECT * FROM productionperiods FINAL) WHERE deleted = 0
	UNION ALL
	SELECT id, site, location, location_kind, externalid, state, start, end, duration, reason,
		dispatch, dispatchtype, rule_version, version, recompute, replaced_at
		FROM productionperiods_history FINAL)`

func periodHistoryArea() *Area {
	a := *periodArea
	a.Table, a.From, a.Versioned, a.Writes, a.Actions = "productionperiods_history", periodHistoryFrom, false, ReadOnly, nil
	a.Fields = append([]Field(nil), periodArea.Fields...)
	// A period's id is on each of its versions: the version and the
	// request that replaced it break ties, so pages are stable.
	a.Fields[0].Order = "(id, version, recompute)"
	a.Fields = append(a.Fields,
		withDoc(computed("version", l2l.Int, "version"), "The version of the period."),
		withDoc(nullable("recompute", l2l.String, "nullIf(recompute, '')"),
			"The recompute that replaced this version; null for the live version."),
		withDoc(nullable("replaced_at", l2l.DateTime, "if(recompute = '', NULL, "+ms("replaced_at")+")"),
			"When it was replaced; null for the live version."))
	return &a
}

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
//     it (Area.Pushdown): one line's day reads ~22 ms instead of ~185 ms
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
			ANY LEFT JOIN (SELECT id AS product_id, ideal_cycle_time AS ideal FROM products FINAL WHERE deleted = 0) AS pr USING product_id
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
	) AS g ANY LEFT JOIN (SELECT id AS location_id, line AS machine_line FROM machines FINAL WHERE deleted = 0) AS ml USING location_id)`

// pitchArea is the pitches record area (read-only).
var pitchArea = &Area{
	Name: "pitches", Record: "Pitch", Table: "parts_hourly", From: pitchesFrom, Pushdown: true, Site: SiteField,
	Line: "line_id",
	Doc:  "Hourly production buckets per location (read-only).",
	Fields: []Field{
		idField(),
		computed("site", l2l.Int, "site"),
		withRef(nullable("line", l2l.Int, "nullIf(line_id, 0)"), "lines"),
		withRef(nullable("machine", l2l.Int, "if(location_kind = 'machine', toNullable(location_id), NULL)"), "machines"),
		computed("location", l2l.Int, "location_id"),
		withOptions(computed("location_kind", l2l.String, "toString(location_kind)"), locationKinds...),
		computed("pitch_start", l2l.DateTime, ms("pitch_hour")),
		computed("pitch_start_local", l2l.LocalDateTime, ms("pitch_hour")),
		computed("pitch_end", l2l.DateTime, ms("pitch_hour")+" + 3600000"),
		computed("pitch_end_local", l2l.LocalDateTime, ms("pitch_hour")+" + 3600000"),
		{Name: "shift_start_date", Type: l2l.Date, Expr: ms("pitch_hour"), Flags: Read, Derived: ShiftStartDate,
			Doc: "The local date (site's time zone) on which the shift that pitch_start falls in started: with a" +
				" 22:00–06:00 shift, a pitch starting at 02:00 has the day before. A line's own shifts replace its" +
				" site's (a machine's pitches follow its line). A pitch that starts between shifts, or at a site" +
				" without shifts, has the local date of pitch_start. Computed after the read: it can be shown and" +
				" picked with fields=, but not filtered on or ordered by (filter on pitch_start instead)."},
		computed("planned_production_minutes", l2l.Float, "(s_run + s_down) / 60"),
		computed("running_minutes", l2l.Float, "s_run / 60"),
		computed("down_minutes", l2l.Float, "s_down / 60"),
		computed("planned_down_minutes", l2l.Float, "s_pdown / 60"),
		computed("actual", l2l.Int, "s_produced"),
		computed("good", l2l.Int, "s_good"),
		computed("scrap", l2l.Int, "s_scrap"),
		computed("rework", l2l.Int, "s_rework"),
		computed("ideal_minutes", l2l.Float, "s_ideal / 60"),
		computed("availability", l2l.Float, "availability"),
		computed("performance", l2l.Float, "performance"),
		computed("quality", l2l.Float, "quality"),
		computed("overall_equipment_effectiveness", l2l.Float, "availability * performance * quality"),
		alwaysActive(),
	},
}
