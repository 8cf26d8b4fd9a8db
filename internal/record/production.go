package record

import "github.com/takt/takt/internal/l2l"

// The production areas Leading2Lean's clients use besides parts and
// pitches: production reported in totals (pitch details), scrap records
// and their categories, the shifts of each resource, and the components
// of products.

var pitchDetailArea = &Area{
	Name: "pitchdetails", Record: "PitchDetail", Table: "pitchdetails", Versioned: true,
	Doc: "Production of a line reported in totals over a time range (pitchdetails/record_details). Each record's" +
		" parts go through the ingest pipeline: they show in parts, pitches, production periods and OEE.",
	Site: SiteField, Writes: WriteActions,
	Fields: audited(
		idField(),
		Field{Name: "site", Kind: Uint, Flags: Read},
		Field{Name: "line", Kind: Uint, Flags: Read, Ref: "lines"},
		Field{Name: "linecode", Kind: String, Flags: Read},
		Field{Name: "product", Kind: Uint, Flags: Read, Ref: "products"},
		Field{Name: "productcode", Kind: String, Flags: Read},
		Field{Name: "start", Kind: Time, Flags: Read, Doc: "When the first part of the range was completed."},
		Field{Name: "end", Kind: Time, Flags: Read, Doc: "When the last one was; the parts are recorded at this time."},
		Field{Name: "pitch_start", Type: l2l.DateTime, Expr: "toInt64(intDiv(toUInt32(end), 3600)) * 3600000", Flags: Read,
			Doc: "The start of the (UTC) hour of end: the pitch the details count in."},
		Field{Name: "actual", Kind: Uint, Flags: Read, Doc: "Good parts."},
		Field{Name: "scrap", Kind: Uint, Flags: Read, Doc: "Scrapped parts (besides actual)."},
		Field{Name: "operator_count", Kind: Uint, Flags: Read},
		// Which of the detail's two part events (good, scrap) Kafka has
		// taken: a repeat of the call sends only the others.
		Field{Name: "sent_good", Kind: Bool},
		Field{Name: "sent_scrap", Kind: Bool},
		Field{Name: "recorded", Type: l2l.Bool, Expr: "toUInt8(sent_good = 1 AND sent_scrap = 1)", Flags: Read,
			Doc: "Its parts are in the pipeline (false only while a call that recorded it failed: repeat the call)."},
		Field{Name: "active", Kind: Bool, Flags: Read, Default: true, Doc: "False for a retired record."},
	),
	Actions: []Action{
		{Name: "record_details", Methods: []string{"GET", "POST"}, Scope: scopeWrite,
			Doc: "POST records the production of a line and product over [start, end]: actual good parts and scrap" +
				" scrapped ones, recorded at end through the ingest pipeline exactly once (a product code the site" +
				" does not know creates the product). The answer's data is the pitch detail. Sending the same call" +
				" again (same line, product, start, end and counts) changes nothing and answers the same record;" +
				" other counts for the same range are refused. GET (scope read) answers an object with the line's" +
				" totals over [start, end] (default: the last 24 hours): line, linecode, start, end, actual, scrap," +
				" operator_count, details (the pitch details, oldest first, at most 2000) and, with show_products," +
				" products (the totals per product).",
			Args: []Arg{
				{Name: "linecode", Type: ArgText, Required: true, Doc: "The line's code."},
				{Name: "productcode", Type: ArgText, Doc: "POST: required; GET: only this product."},
				{Name: "actual", Type: ArgCount, Doc: "POST: good parts (default 0); at most 100000."},
				{Name: "scrap", Type: ArgCount, Doc: "POST: scrapped parts (default 0); at most 100000."},
				{Name: "operator_count", Type: ArgCount, Doc: "POST: operators on the line."},
				{Name: "start", Type: ArgTime, Doc: "POST: required; GET: from (by end)."},
				{Name: "end", Type: ArgTime, Doc: "POST: required, not before start; GET: until (by end)."},
				{Name: "show_products", Type: ArgBool, Doc: "GET: add the totals per product."},
			}},
	},
}

// scrapDetailFrom: the scrap events of parts, with the line of each
// machine and the category of each scrap reason.
const scrapDetailFrom = `(SELECT *
	FROM (
		SELECT id, site, location_kind, location_id, externalid, product_id, product_code, reason, quantity, recorded_ms,
			if(location_kind = 'line', location_id, m_line) AS line_id
		FROM (
			SELECT id, site, location_kind, location_id, externalid, product_id, product_code, reason, quantity, recorded_ms
			FROM parts WHERE quality = 'scrap'
		) AS sp
		ANY LEFT JOIN (SELECT id AS location_id, line AS m_line FROM (SELECT * FROM machines FINAL) WHERE deleted = 0) AS ml
		USING location_id
	) AS spl
	ANY LEFT JOIN (SELECT site, code AS reason, scrapcategory AS cat FROM (SELECT * FROM reasons FINAL)
		WHERE deleted = 0 AND kind = 'scrap') AS rc USING site, reason)`

var scrapDetailArea = &Area{
	Name: "scrapdetail", Record: "ScrapDetail", Table: "parts", From: scrapDetailFrom, Site: SiteField,
	Doc: "Each scrap record: the parts events of quality scrap (read-only).",
	Fields: []Field{
		withDoc(idField(), "The part event's id (see parts)."),
		computed("site", l2l.Int, "site"),
		withRef(nullable("line", l2l.Int, "nullIf(line_id, 0)"), "lines"),
		withRef(nullable("machine", l2l.Int, "if(location_kind = 'machine', toNullable(location_id), NULL)"), "machines"),
		computed("location", l2l.Int, "location_id"),
		withOptions(computed("location_kind", l2l.String, "toString(location_kind)"), locationKinds...),
		computed("externalid", l2l.String, "externalid"),
		withRef(nullable("product", l2l.Int, "nullIf(product_id, 0)"), "products"),
		nullable("productcode", l2l.String, "nullIf(product_code, '')"),
		withDoc(nullable("reason", l2l.String, "nullIf(reason, '')"), "The scrap reason's code."),
		withRef(nullable("scrapcategory", l2l.Int, "nullIf(cat, 0)"), "scrapcategory"),
		computed("quantity", l2l.Int, "quantity"),
		withDoc(computed("recorded_at", l2l.DateTime, "recorded_ms"), "When the parts were scrapped."),
		computed("recorded_at_local", l2l.LocalDateTime, "recorded_ms"),
		alwaysActive(),
	},
}

var scrapCategoryArea = &Area{
	Name: "scrapcategory", Record: "ScrapCategory", Table: "scrapcategories", Versioned: true,
	Doc:  "Groups of scrap reasons (reasons.scrapcategory).",
	Site: SiteField, Writes: WriteRows, Scope: scopeWrite,
	Unique: []Unique{uniqueCode},
	Fields: audited(idField(), siteField(), codeField(), descriptionField(), activeField()),
}

// resourceShiftsFrom: every line and machine with each shift that plans
// its time: the line's own shifts, else its site's (a machine has its
// line's).
const resourceShiftsFrom = `(SELECT
		bitAnd(cityHash64(kind, location, shift_id), 9007199254740991) AS id,
		site, kind, location, line_id, rcode, shift_id, scode, sdescription, start_time, end_time, days, eff_line, active
	FROM (
		SELECT site, kind, location, line_id, rcode, active, if(has_own = 1, line_id, 0) AS eff_line
		FROM (
			SELECT site, 'line' AS kind, id AS location, id AS line_id, code AS rcode, active
			FROM (SELECT * FROM lines FINAL) WHERE deleted = 0
			UNION ALL
			SELECT site, 'machine' AS kind, id AS location, line AS line_id, code AS rcode, active
			FROM (SELECT * FROM machines FINAL) WHERE deleted = 0
		) AS res
		ANY LEFT JOIN (SELECT line AS line_id, toUInt8(1) AS has_own FROM (SELECT * FROM shifts FINAL)
			WHERE deleted = 0 AND active = 1 AND line != 0 GROUP BY line) AS own USING line_id
	) AS planned
	ALL INNER JOIN (SELECT site, line AS eff_line, id AS shift_id, code AS scode, description AS sdescription,
			start_time, end_time, days
		FROM (SELECT * FROM shifts FINAL) WHERE deleted = 0 AND active = 1) AS sh USING site, eff_line)`

var resourceShiftArea = &Area{
	Name: "resourceshifts", Record: "ResourceShift", Table: "shifts", From: resourceShiftsFrom, Site: SiteField,
	Doc: "The shifts that plan each line's and machine's time: a line's own shifts, else its site's; a machine has" +
		" its line's (read-only).",
	Fields: []Field{
		withDoc(idField(), "A hash of the resource and the shift."),
		computed("site", l2l.Int, "site"),
		withRef(computed("line", l2l.Int, "line_id"), "lines"),
		withRef(nullable("machine", l2l.Int, "if(kind = 'machine', toNullable(location), NULL)"), "machines"),
		withDoc(computed("resource", l2l.Int, "location"), "The line's or machine's id."),
		withOptions(computed("resource_kind", l2l.String, "kind"), locationKinds...),
		withDoc(computed("resourcecode", l2l.String, "rcode"), "The line's or machine's code."),
		withRef(computed("shift", l2l.Int, "shift_id"), "shifts"),
		computed("shiftcode", l2l.String, "scode"),
		computed("description", l2l.String, "sdescription"),
		withDoc(computed("start_time", l2l.String, "start_time"), "Local HH:MM."),
		withDoc(computed("end_time", l2l.String, "end_time"), "Local HH:MM; not after start_time means the next day."),
		computed("days", l2l.String, "days"),
		withDoc(computed("site_shift", l2l.Bool, "toUInt8(eff_line = 0)"), "The shift is the site's, not the line's own."),
		withDoc(computed("active", l2l.Bool, "active"), "The resource is active."),
	},
}

var productComponentArea = &Area{
	Name: "productcomponents", Record: "ProductComponent", Table: "productcomponents", Versioned: true,
	Doc:  "Components of products: what one product is made of.",
	Site: SiteField, Writes: WriteRows, Scope: scopeWrite,
	Fields: audited(
		idField(),
		siteField(),
		Field{Name: "product", Kind: Uint, Flags: Read | Write | Required, Ref: "products", Doc: "The product made."},
		Field{Name: "code", Kind: String, Flags: Read | Write | Required | NotEmpty, Doc: "The component's code."},
		descriptionField(),
		Field{Name: "quantity", Kind: Float, Flags: Read | Write, Default: 1.0, Doc: "How many of the component one product takes."},
		activeField(),
	),
}
