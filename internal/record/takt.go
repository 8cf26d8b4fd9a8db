package record

import "github.com/takt/takt/internal/l2l"

// Takt is the registry of the record areas Takt serves.
var Takt = MustRegistry(siteArea, plantArea, lineArea, machineArea, productArea, reasonArea, shiftArea,
	userArea, apiKeyArea, partArea, periodArea, pitchArea,
	dispatchTypeArea, dispatchArea, clockSessionArea, pitchDetailArea, scrapDetailArea, scrapCategoryArea,
	resourceShiftArea, productComponentArea)

// Scopes of API keys (internal/auth names them too; a test keeps the two
// lists equal).
const (
	scopeWrite = "write"
	scopeAdmin = "admin"
)

var (
	scopes   = []string{"ingest", "read", scopeWrite, scopeAdmin}
	weekdays = []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"}
)

// Fields many areas share.

func idField() Field { return Field{Name: "id", Type: l2l.Int, Expr: "id", Flags: Read} }

func siteField() Field {
	return Field{Name: "site", Kind: Uint, Flags: Read | Write | Required | Fixed}
}

func codeField() Field {
	return Field{Name: "code", Kind: String, Flags: Read | Write | Required | NotEmpty}
}

func descriptionField() Field { return Field{Name: "description", Kind: String, Flags: Read | Write} }

// activeField: every record can be retired (active=False) and stays
// readable; Leading2Lean's clients filter active=True.
func activeField() Field {
	return Field{Name: "active", Kind: Bool, Flags: Read | Write, Default: true,
		Doc: "False for a retired record, which stays readable."}
}

// alwaysActive is the active field of records nobody retires (those the
// pipeline writes or computes).
func alwaysActive() Field {
	return Field{Name: "active", Type: l2l.Bool, Expr: "toUInt8(1)", Flags: Read, Doc: "Always true."}
}

func externalIDField() Field {
	return Field{Name: "externalid", Kind: String, Nullable: true, Flags: Read | Write,
		Doc: "The ingest external_id: with one, the record is a location parts are reported against (case-sensitive)."}
}

func stopThresholdField() Field {
	return Field{Name: "stop_threshold", Kind: Float, Flags: Read | Write, Max: 86400,
		Doc: "Seconds: a gap between two parts longer than this is downtime. 0 (the default) derives it from the product's" +
			" ideal cycle time: max(5 × ideal cycle time, 60 s), or 300 s for a product without one."}
}

// ms turns a DateTime column (seconds) into Int64 milliseconds.
func ms(column string) string { return "toInt64(toUInt32(" + column + ")) * 1000" }

// audited appends the audit fields every master-data record shows last.
func audited(fields ...Field) []Field {
	return append(fields,
		Field{Name: "created", Type: l2l.DateTime, Expr: ms("created"), Flags: Read},
		Field{Name: "lastupdated", Type: l2l.DateTime, Expr: ms("lastupdated"), Flags: Read},
		Field{Name: "createdby", Type: l2l.String, Expr: "createdby", Flags: Read, Doc: "The user that created the record."},
		Field{Name: "lastupdatedby", Type: l2l.String, Expr: "lastupdatedby", Flags: Read, Doc: "The user that changed it last."},
	)
}

// uniqueCode: codes are unique in a site.
var uniqueCode = Unique{Field: "code", PerSite: true}

// uniqueExternalID: an external id names one location, a line or a machine.
var uniqueExternalID = Unique{Field: "externalid", Areas: []string{"lines", "machines"}, Among: "another location"}

var siteArea = &Area{
	Name: "sites", Record: "Site", Table: "sites", Versioned: true,
	Doc:  "Plants, each with its time zone.",
	Site: OwnSite, Writes: WriteRows, Scope: scopeAdmin, OnCreate: GrantSite,
	Forget: []Forget{ForgetSiteLocations, ForgetSiteKeys},
	Fields: audited(
		idField(),
		descriptionField(),
		Field{Name: "timezone", Kind: String, Flags: Read | Write | Required, Check: ianaZone,
			Doc: "IANA time zone, e.g. Europe/Berlin: local times of the site's records are shown in it."},
		Field{Name: "site", Type: l2l.Int, Expr: "id", Flags: Read, Doc: "The site's own id."},
		Field{Name: "test_site", Kind: Bool, Flags: Read | Write,
			Doc: "A site for trying integrations out; Leading2Lean's sample clients insist on one."},
		Field{Name: "active", Kind: Bool, Flags: Read | Write, Default: true,
			Doc: "A closed site (False, or deleted) takes no parts: its locations are unknown at ingest, and the keys" +
				" of users left without an open site stop working (within 2 s). A deactivated site stays visible to its" +
				" users, who can set it active again."},
	),
}

var plantArea = &Area{
	Name: "areas", Record: "Area", Table: "areas", Versioned: true,
	Doc:  "Parts of a site that group lines.",
	Site: SiteField, Writes: WriteRows, Scope: scopeWrite,
	Unique: []Unique{uniqueCode},
	Fields: audited(idField(), siteField(), codeField(), descriptionField(), activeField()),
}

var lineArea = &Area{
	Name: "lines", Record: "Line", Table: "lines", Versioned: true,
	Doc:  "Production lines.",
	Site: SiteField, Writes: WriteRows, Scope: scopeWrite,
	Unique: []Unique{uniqueCode, uniqueExternalID},
	Forget: []Forget{ForgetLocation},
	Fields: audited(
		idField(),
		siteField(),
		Field{Name: "area", Kind: Uint, Flags: Read | Write | Required, Ref: "areas"},
		codeField(),
		descriptionField(),
		externalIDField(),
		stopThresholdField(),
		Field{Name: "enable_production", Kind: Bool, Flags: Read | Write, Default: true,
			Doc: "The line records production (Leading2Lean's clients look for lines that do)."},
		activeField(),
	),
}

// machinesFrom: machines with their cycle counters (machine_counters,
// written by the set_cycle_count and increment_cycle_count actions). The
// counters are looked up with transform over arrays of one scalar
// subquery (one row per machine), not joined: current ClickHouse fails to
// push the area's filters into a join with machines FINAL. The leading 0
// keeps the arrays non-empty, which transform requires (no machine has
// id 0).
const machinesFrom = "(WITH (SELECT (arrayConcat([toUInt64(0)], groupArray(machine))," +
	" arrayConcat([toUInt64(0)], groupArray(cyclecount)), arrayConcat([toUInt32(0)], groupArray(toUInt32(lastupdated))))" +
	" FROM machine_counters FINAL) AS cc" +
	" SELECT *, transform(id, tupleElement(cc, 1), tupleElement(cc, 2), toUInt64(0)) AS cc_count," +
	" transform(id, tupleElement(cc, 1), tupleElement(cc, 3), toUInt32(0)) AS cc_updated" +
	" FROM (SELECT * FROM machines FINAL))"

var machineArea = &Area{
	Name: "machines", Record: "Machine", Table: "machines", From: machinesFrom, Versioned: true,
	Doc:  "Machines of a line. Machines carry custom properties: custom__<name>.",
	Site: SiteField, Custom: true, Writes: WriteRows, Scope: scopeWrite,
	Unique: []Unique{uniqueCode, uniqueExternalID},
	Forget: []Forget{ForgetLocation},
	Fields: audited(
		idField(),
		siteField(),
		Field{Name: "line", Kind: Uint, Flags: Read | Write | Required, Ref: "lines"},
		codeField(),
		descriptionField(),
		externalIDField(),
		stopThresholdField(),
		Field{Name: "cyclecount", Type: l2l.Int, Expr: "cc_count", Flags: Read,
			Doc: "The machine's cycle counter: set by machines/set_cycle_count, raised by machines/increment_cycle_count."},
		Field{Name: "cyclecount_lastupdated", Type: l2l.DateTime, Nullable: true, Expr: "nullIf(" + ms("cc_updated") + ", 0)",
			Flags: Read, Doc: "When the counter was last set or raised (not by increments with skip_lastupdated); null if never."},
		activeField(),
	),
	Actions: []Action{
		{Name: "set_cycle_count", Methods: []string{"POST"}, Scope: scopeWrite, Returns: "machines", List: true,
			Doc: "Sets the cycle counter of the machine with that code.",
			Args: []Arg{{Name: "code", Type: ArgText, Required: true, Doc: "The machine's code."},
				{Name: "cyclecount", Type: ArgCount, Required: true, Doc: "The counter's new value."}}},
		{Name: "increment_cycle_count", Methods: []string{"POST"}, Scope: scopeWrite, Returns: "machines", List: true,
			Doc: "Adds cyclecount to the machine's counter and records that many good parts for the machine through" +
				" the ingest pipeline (Kafka, the processor, ClickHouse), at the time of the call: they show in parts," +
				" pitches, production periods and OEE like parts reported to process_part. The machine must have an" +
				" externalid (be a location).",
			Args: []Arg{{Name: "code", Type: ArgText, Required: true, Doc: "The machine's code."},
				{Name: "cyclecount", Type: ArgCount, Required: true, Doc: "How many cycles (parts) to add; at most 100000."},
				{Name: "skip_lastupdated", Type: ArgBool, Doc: "True: leave cyclecount_lastupdated as it is."}}},
	},
}

var productArea = &Area{
	Name: "products", Record: "Product", Table: "products", Versioned: true,
	Doc:  "What locations make.",
	Site: SiteField, Writes: WriteRows, Scope: scopeWrite,
	Unique: []Unique{uniqueCode, {Field: "fallback", PerSite: true}},
	Fields: audited(
		idField(),
		siteField(),
		codeField(),
		descriptionField(),
		Field{Name: "ideal_cycle_time", Kind: Float, Flags: Read | Write | Required, Doc: "Seconds."},
		Field{Name: "fallback", Kind: Bool, Flags: Read | Write,
			Doc: "The product of parts whose product is neither given nor found by cycle time."},
		activeField(),
	),
}

var reasonArea = &Area{
	Name: "reasons", Record: "Reason", Table: "reasons", Versioned: true,
	Doc:  "Why parts were scrapped or locations were down.",
	Site: SiteField, Writes: WriteRows, Scope: scopeWrite,
	Unique: []Unique{uniqueCode},
	Fields: audited(
		idField(),
		siteField(),
		codeField(),
		descriptionField(),
		Field{Name: "kind", Kind: Enum, Flags: Read | Write | Required, Options: []string{"scrap", "downtime"}},
		Field{Name: "planned", Kind: Bool, Flags: Read | Write, Check: plannedDowntime,
			Doc: "Downtime reasons only: a planned stop is not counted against availability."},
		Field{Name: "scrapcategory", Kind: Uint, Nullable: true, Flags: Read | Write, Ref: "scrapcategory", Check: scrapOnly,
			Doc: "Scrap reasons only: the category (group) of the reason; null for none."},
		activeField(),
	),
}

var shiftArea = &Area{
	Name: "shifts", Record: "Shift", Table: "shifts", Versioned: true,
	Doc:  "Planned production time of a site or of one of its lines (a line's own shifts replace its site's).",
	Site: SiteField, Writes: WriteRows, Scope: scopeWrite,
	Unique: []Unique{uniqueCode},
	Fields: audited(
		idField(),
		siteField(),
		Field{Name: "line", Kind: Uint, Nullable: true, Flags: Read | Write, Ref: "lines",
			Doc: "null for a shift of the whole site."},
		codeField(),
		descriptionField(),
		Field{Name: "start_time", Kind: String, Flags: Read | Write | Required, Check: clockTime, Doc: "Local HH:MM."},
		Field{Name: "end_time", Kind: String, Flags: Read | Write | Required, Check: clockTime,
			Doc: "Local HH:MM; not after start_time means the next day."},
		Field{Name: "days", Kind: Words, Flags: Read | Write | NotEmpty, Options: weekdays, Default: "mon,tue,wed,thu,fri"},
		withDoc(activeField(), "False for a retired shift, which plans no time any more."),
	),
}

var userArea = &Area{
	Name: "users", Record: "User", Table: "users", Versioned: true,
	Doc:  "Users own API keys and see the records of their sites.",
	Site: Site{Field: "sites"}, Writes: WriteRows, Scope: scopeAdmin,
	Unique: []Unique{{Field: "username"}},
	Forget: []Forget{ForgetUserKeys},
	Fields: audited(
		idField(),
		Field{Name: "username", Kind: String, Flags: Read | Write | Required | Signed, Check: username},
		Field{Name: "admin", Kind: Bool, Flags: Read | Write | Signed,
			Doc: "An admin API user may act for the users within its sites (realuser)."},
		Field{Name: "sites", Kind: Uints, Flags: Read | Write | Required | Signed,
			Doc: "The sites the user sees, among the acting user's."},
		Field{Name: "site", Type: l2l.Int, Expr: "sites[1]", Flags: Read, Doc: "The first of its sites."},
		Field{Name: "active", Kind: Bool, Flags: Read | Write | Signed, Default: true},
	),
	Actions: clockActions,
}

var apiKeyArea = &Area{
	Name: "apikeys", Record: "APIKey", Table: "apikeys", Versioned: true,
	Doc: "API keys. Never shows a key or its hash, except key in the answer that created it." +
		" A key is visible when its user is.",
	// last_used comes from apikey_usage, where the rate limiter's record of
	// each key's last request is copied.
	From: "(SELECT * FROM (SELECT * FROM apikeys FINAL) AS k" +
		" ANY LEFT JOIN (SELECT id AS user, sites AS user_sites FROM users FINAL WHERE deleted = 0) AS u USING user) AS ku" +
		" ANY LEFT JOIN (SELECT key AS id, max(last_used) AS last_used FROM apikey_usage GROUP BY key) AS lu USING id",
	Site:   Site{Via: "user", Expr: "user_sites"},
	Writes: WriteRows, Scope: scopeAdmin, OnCreate: IssueKey,
	Forget: []Forget{ForgetKey},
	Fields: audited(
		idField(),
		Field{Name: "user", Kind: Uint, Flags: Read | Write | Required | Fixed | Signed, Ref: "users"},
		Field{Name: "prefix", Kind: String, Flags: Read, Doc: "The key's short prefix."},
		Field{Name: "hash", Kind: String},
		Field{Name: "scopes", Kind: Strings, Flags: Read | Write | Required | NotEmpty | Signed, Options: scopes},
		Field{Name: "active", Kind: Bool, Flags: Read | Write | Signed, Default: true},
		Field{Name: "rate_limit", Kind: Float, Flags: Read | Write | Signed,
			Doc: "Tokens per second; 0 means the default (TAKT_RATE_LIMIT)."},
		Field{Name: "rate_burst", Kind: Float, Flags: Read | Write | Signed, Doc: "Bucket size; 0 means the default (TAKT_RATE_BURST)."},
		Field{Name: "last_used", Type: l2l.DateTime, Nullable: true, Expr: "nullIf(" + ms("last_used") + ", 0)", Flags: Read,
			Doc: "The last request with the key to ingest or to this API (whole seconds; null if never used), copied from" +
				" the rate limiter every TAKT_KEY_USAGE_INTERVAL (5 s), so it may be that much late."},
		Field{Name: "site", Type: l2l.Int, Expr: "user_sites[1]", Flags: Read, Doc: "The first site of its user."},
		Field{Name: "key", Type: l2l.String, Flags: Once, Doc: "Only in the answer that created the key."},
	),
}
