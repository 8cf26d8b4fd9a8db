package chstore

// The record areas the query API serves.

import (
	"slices"

	"github.com/takt/takt/internal/l2l"
)

// recordAreas are the areas the query API serves. A new area is one entry.
var recordAreas = func() map[string]*RecordArea {
	areas := []*RecordArea{
		// Parts: one record per part event. Without order_by they are paged
		// in the order they were stored (stored_at, then id); see
		// WithVisibilityLag.
		mustRecordArea("parts", "parts", false, "site",
			col("id", l2l.Int, "id"),
			col("site", l2l.Int, "site"),
			col("externalid", l2l.String, "externalid"),
			col("location", l2l.Int, "location_id"),
			col("location_kind", l2l.String, "toString(location_kind)"),
			nullCol("product", l2l.Int, "nullIf(product_id, 0)"),
			nullCol("product_code", l2l.String, "nullIf(product_code, '')"),
			col("product_resolution", l2l.String, "toString(product_resolution)"),
			nullCol("product_reported", l2l.String, "nullIf(product_reported, '')"),
			col("quantity", l2l.Int, "quantity"),
			col("quality", l2l.String, "toString(quality)"),
			nullCol("reason", l2l.String, "nullIf(reason, '')"),
			nullCol("cycle_time", l2l.Float, "cycle_time"),
			col("recorded_at", l2l.DateTime, "recorded_ms"),
			col("recorded_at_local", l2l.LocalDateTime, "recorded_ms"),
			col("recorded_defaulted", l2l.Bool, "recorded_defaulted"),
			col("received_at", l2l.DateTime, "received_ms"),
			RecordColumn{Field: l2l.Field{Name: "stored_at", Type: l2l.DateTime}, Expr: msOf("inserted_at"), Order: "inserted_at"},
			col("event_id", l2l.String, "toString(event_id)"),
		).withInsertionOrder("stored_at"),
		mustRecordArea("sites", "sites", true, "id", withAudit(
			col("id", l2l.Int, "id"),
			col("description", l2l.String, "description"),
			col("timezone", l2l.String, "timezone"),
			col("site", l2l.Int, "id"),
		)...),
		mustRecordArea("areas", "areas", true, "site", withAudit(
			col("id", l2l.Int, "id"),
			col("site", l2l.Int, "site"),
			col("code", l2l.String, "code"),
			col("description", l2l.String, "description"),
		)...),
		mustRecordArea("lines", "lines", true, "site", withAudit(
			col("id", l2l.Int, "id"),
			col("site", l2l.Int, "site"),
			col("area", l2l.Int, "area"),
			col("code", l2l.String, "code"),
			col("description", l2l.String, "description"),
			nullCol("externalid", l2l.String, "nullIf(externalid, '')"),
			col("stop_threshold", l2l.Float, "stop_threshold"),
		)...),
		mustRecordArea("machines", "machines", true, "site", withAudit(
			col("id", l2l.Int, "id"),
			col("site", l2l.Int, "site"),
			col("line", l2l.Int, "line"),
			col("code", l2l.String, "code"),
			col("description", l2l.String, "description"),
			nullCol("externalid", l2l.String, "nullIf(externalid, '')"),
			col("stop_threshold", l2l.Float, "stop_threshold"),
		)...).withCustom(),
		mustRecordArea("products", "products", true, "site", withAudit(
			col("id", l2l.Int, "id"),
			col("site", l2l.Int, "site"),
			col("code", l2l.String, "code"),
			col("description", l2l.String, "description"),
			col("ideal_cycle_time", l2l.Float, "ideal_cycle_time"),
			col("fallback", l2l.Bool, "fallback"),
		)...),
		mustRecordArea("reasons", "reasons", true, "site", withAudit(
			col("id", l2l.Int, "id"),
			col("site", l2l.Int, "site"),
			col("code", l2l.String, "code"),
			col("description", l2l.String, "description"),
			col("kind", l2l.String, "toString(kind)"),
			col("planned", l2l.Bool, "planned"),
		)...),
		mustRecordArea("shifts", "shifts", true, "site", withAudit(
			col("id", l2l.Int, "id"),
			col("site", l2l.Int, "site"),
			nullCol("line", l2l.Int, "nullIf(line, 0)"),
			col("code", l2l.String, "code"),
			col("description", l2l.String, "description"),
			col("start_time", l2l.String, "start_time"),
			col("end_time", l2l.String, "end_time"),
			col("days", l2l.String, "days"),
		)...),
		mustRecordArea("productionperiods", "productionperiods", true, "site",
			col("id", l2l.Int, "id"),
			col("site", l2l.Int, "site"),
			col("location", l2l.Int, "location"),
			col("location_kind", l2l.String, "toString(location_kind)"),
			col("externalid", l2l.String, "externalid"),
			col("state", l2l.String, "toString(state)"),
			col("start", l2l.DateTime, msOf("start")),
			col("start_local", l2l.LocalDateTime, msOf("start")),
			nullCol("end", l2l.DateTime, msOf("end")),
			nullCol("end_local", l2l.LocalDateTime, msOf("end")),
			col("duration", l2l.Float, "duration"),
			nullCol("reason", l2l.Int, "nullIf(reason, 0)"),
		),
		mustRecordArea("users", "users", true, "sites", withAudit(
			col("id", l2l.Int, "id"),
			col("username", l2l.String, "username"),
			col("admin", l2l.Bool, "admin"),
			col("sites", l2l.String, joinList("sites")),
			col("site", l2l.Int, "sites[1]"),
			col("active", l2l.Bool, "active"),
		)...).withSiteArray(),
		// API keys never show their hash: only the short prefix. A key is
		// visible when its user is; last_used comes from apikey_usage.
		mustRecordArea("apikeys", "apikeys", true, "user_sites", withAudit(
			col("id", l2l.Int, "id"),
			col("user", l2l.Int, "user"),
			col("prefix", l2l.String, "prefix"),
			col("scopes", l2l.String, "arrayStringConcat(scopes, ',')"),
			col("active", l2l.Bool, "active"),
			col("rate_limit", l2l.Float, "rate_limit"),
			col("rate_burst", l2l.Float, "rate_burst"),
			nullCol("last_used", l2l.DateTime, "nullIf("+msOf("last_used")+", 0)"),
			col("site", l2l.Int, "user_sites[1]"),
		)...).withSiteArray().withFrom(
			"(SELECT * FROM (SELECT * FROM apikeys FINAL)" +
				" ANY LEFT JOIN (SELECT id AS user, sites AS user_sites FROM users FINAL WHERE deleted = 0) USING user)" +
				" ANY LEFT JOIN (SELECT key AS id, max(last_used) AS last_used FROM apikey_usage GROUP BY key) USING id"),
		pitchesArea(), // pitches.go
	}
	m := make(map[string]*RecordArea, len(areas))
	for _, a := range areas {
		m[a.name] = a
	}
	return m
}()

// RecordAreaByName returns the record area served under name.
func RecordAreaByName(name string) (*RecordArea, bool) {
	a, ok := recordAreas[name]
	return a, ok
}

// RecordAreaNames returns the names of every record area, sorted.
func RecordAreaNames() []string {
	names := make([]string, 0, len(recordAreas))
	for n := range recordAreas {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
