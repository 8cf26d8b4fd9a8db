package queryapi

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/takt/takt/internal/auth"
	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/l2l"
)

// wkind is how a writable field's text is parsed.
type wkind uint8

const (
	wUint    wkind = iota + 1 // a whole number >= 0
	wFloat                    // a finite number
	wString                   // text
	wBool                     // True/False (true/false, 1/0)
	wUints                    // whole numbers separated by commas
	wStrings                  // words separated by commas
)

// wfield is a field a request may set.
type wfield struct {
	name     string
	kind     wkind
	required bool     // on create
	fixed    bool     // set on create only
	options  []string // allowed values (wString, wStrings items)
	def      any      // value on create when not given (else the zero value)
	max      float64  // largest value of a wFloat (0: no maximum)
}

// writeArea says how records of one area are written.
type writeArea struct {
	table  string
	scope  string   // the scope a key needs (besides admin, which may do all)
	signed []string // signed arguments after _server and _expiration; nil: unsigned
	fields []wfield
	// owned are fields the server sets (besides id and the audit fields).
	owned []string
	// custom: custom__<name>=value sets a property, an empty value removes it.
	custom bool
}

var (
	timeOfDay = regexp.MustCompile(`^([01][0-9]|2[0-3]):[0-5][0-9]$`)
	username  = regexp.MustCompile(`^[A-Za-z0-9_.@+-]{1,64}$`)
	weekdays  = []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"}
	allScopes = []string{auth.ScopeIngest, auth.ScopeRead, auth.ScopeWrite, auth.ScopeAdmin}
)

// auditFields can never be set by a request.
var auditFields = []string{"created", "lastupdated", "createdby", "lastupdatedby", "deleted", "version"}

// writeAreas are the writable record areas. parts and productionperiods
// are the pipeline's: parts are read-only, and an update of a production
// period only gives it a reason (assign.go).
var writeAreas = map[string]*writeArea{
	"sites": {table: "sites", scope: auth.ScopeAdmin, fields: []wfield{
		{name: "description", kind: wString},
		{name: "timezone", kind: wString, required: true},
	}, owned: []string{"site"}},
	"areas": {table: "areas", scope: auth.ScopeWrite, fields: []wfield{
		{name: "site", kind: wUint, required: true, fixed: true},
		{name: "code", kind: wString, required: true},
		{name: "description", kind: wString},
	}},
	"lines": {table: "lines", scope: auth.ScopeWrite, fields: []wfield{
		{name: "site", kind: wUint, required: true, fixed: true},
		{name: "area", kind: wUint, required: true},
		{name: "code", kind: wString, required: true},
		{name: "description", kind: wString},
		{name: "externalid", kind: wString},
		stopThreshold,
	}},
	"machines": {table: "machines", scope: auth.ScopeWrite, custom: true, fields: []wfield{
		{name: "site", kind: wUint, required: true, fixed: true},
		{name: "line", kind: wUint, required: true},
		{name: "code", kind: wString, required: true},
		{name: "description", kind: wString},
		{name: "externalid", kind: wString},
		stopThreshold,
	}},
	"products": {table: "products", scope: auth.ScopeWrite, fields: []wfield{
		{name: "site", kind: wUint, required: true, fixed: true},
		{name: "code", kind: wString, required: true},
		{name: "description", kind: wString},
		{name: "ideal_cycle_time", kind: wFloat, required: true},
		{name: "fallback", kind: wBool},
	}},
	"reasons": {table: "reasons", scope: auth.ScopeWrite, fields: []wfield{
		{name: "site", kind: wUint, required: true, fixed: true},
		{name: "code", kind: wString, required: true},
		{name: "description", kind: wString},
		{name: "kind", kind: wString, required: true, options: []string{"scrap", "downtime"}},
		{name: "planned", kind: wBool},
	}},
	"shifts": {table: "shifts", scope: auth.ScopeWrite, fields: []wfield{
		{name: "site", kind: wUint, required: true, fixed: true},
		{name: "line", kind: wUint},
		{name: "code", kind: wString, required: true},
		{name: "description", kind: wString},
		{name: "start_time", kind: wString, required: true},
		{name: "end_time", kind: wString, required: true},
		{name: "days", kind: wStrings, options: weekdays, def: []string{"mon", "tue", "wed", "thu", "fri"}},
	}},
	"users": {table: "users", scope: auth.ScopeAdmin, signed: []string{"username", "active"}, fields: []wfield{
		{name: "username", kind: wString, required: true},
		{name: "admin", kind: wBool},
		{name: "sites", kind: wUints, required: true},
		{name: "active", kind: wBool, def: true},
	}, owned: []string{"site"}},
	"apikeys": {table: "apikeys", scope: auth.ScopeAdmin, signed: []string{"user", "scopes"}, fields: []wfield{
		{name: "user", kind: wUint, required: true, fixed: true},
		{name: "scopes", kind: wStrings, required: true, options: allScopes},
		{name: "active", kind: wBool, def: true},
		{name: "rate_limit", kind: wFloat},
		{name: "rate_burst", kind: wFloat},
	}, owned: []string{"prefix", "hash", "key", "last_used", "site"}},
}

// stopThreshold is a location's stop threshold in seconds (at most a day):
// a gap between parts longer than it is downtime. 0, the default, derives
// it from the product's ideal cycle time (see internal/period).
var stopThreshold = wfield{name: "stop_threshold", kind: wFloat, max: maxStopThreshold}

// maxStopThreshold is the largest stop threshold, in seconds.
const maxStopThreshold = 86400

// controlArgs are arguments of a write that are not fields.
var controlArgs = map[string]bool{
	"auth": true, "format": true, "realuser": true, "_action": true, "id": true,
	"l2lfmt_microseconds": true, auth.ArgServer: true, auth.ArgExpiration: true, auth.ArgSignature: true,
}

// parseWriteValue parses the text of field f.
func parseWriteValue(f wfield, raw string) (any, error) {
	switch f.kind {
	case wUint:
		n, err := strconv.ParseUint(strings.TrimSpace(raw), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %q is not a whole number", f.name, raw)
		}
		return n, nil
	case wFloat:
		x, err := strconv.ParseFloat(strings.TrimSpace(raw), 64)
		if err != nil || math.IsNaN(x) || math.IsInf(x, 0) || x < 0 {
			return nil, fmt.Errorf("%s: %q is not a number >= 0", f.name, raw)
		}
		if f.max > 0 && x > f.max {
			return nil, fmt.Errorf("%s: %q is above the maximum %g", f.name, raw, f.max)
		}
		return x, nil
	case wString:
		if len(raw) > 1000 {
			return nil, fmt.Errorf("%s: longer than 1000 bytes", f.name)
		}
		if f.options != nil && !slices.Contains(f.options, raw) {
			return nil, fmt.Errorf("%s: %q is not one of %s", f.name, raw, strings.Join(f.options, ", "))
		}
		return raw, nil
	case wBool:
		switch {
		case raw == "1" || strings.EqualFold(raw, "true"):
			return true, nil
		case raw == "0" || strings.EqualFold(raw, "false"):
			return false, nil
		}
		return nil, fmt.Errorf("%s: %q is not True or False", f.name, raw)
	case wUints:
		out := []uint64{}
		for item := range strings.SplitSeq(raw, ",") {
			if item = strings.TrimSpace(item); item == "" {
				continue
			}
			n, err := strconv.ParseUint(item, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%s: %q is not a whole number", f.name, item)
			}
			if !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
		return out, nil
	case wStrings:
		out := []string{}
		for item := range strings.SplitSeq(raw, ",") {
			if item = strings.TrimSpace(item); item == "" {
				continue
			}
			if f.options != nil && !slices.Contains(f.options, item) {
				return nil, fmt.Errorf("%s: %q is not one of %s", f.name, item, strings.Join(f.options, ", "))
			}
			if !slices.Contains(out, item) {
				out = append(out, item)
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("%s: not writable", f.name)
}

// rowValue converts a parsed value to the column's Row value.
func rowValue(f wfield, v any) any {
	if f.name == "days" {
		return strings.Join(v.([]string), ",")
	}
	return v
}

// writeStore is what writes need of ClickHouse (*chstore.Store).
type writeStore interface {
	ReadRow(ctx context.Context, table string, id uint64) (chstore.Row, chstore.Audit, error)
	WriteRow(ctx context.Context, table string, id uint64, row chstore.Row, a chstore.Audit) error
	Taken(ctx context.Context, table, column string, value any, site, id uint64) (bool, error)
	UserByName(ctx context.Context, username string) (chstore.User, error)
	SecretByServer(ctx context.Context, server string) (chstore.SecretKey, error)
	KeyHashesOfUser(ctx context.Context, user uint64) ([]string, error)
	ExternalIDsOfSite(ctx context.Context, site uint64) ([]string, error)
	PutUser(ctx context.Context, v chstore.User) error
}

// invalidator drops cached master data in every process (auth and catalog
// caches through Redis).
type invalidator interface {
	forgetKey(ctx context.Context, hash string)
	forgetLocation(ctx context.Context, externalID string)
	changed(ctx context.Context, table string)
}

// change is one validated write.
type change struct {
	area    *writeArea
	name    string
	id      uint64
	create  bool
	delete  bool
	old     chstore.Row // nil on create
	oldA    chstore.Audit
	row     chstore.Row
	key     string // the new API key (apikeys create), shown once
	actor   string
	sites   []uint64 // the acting user's sites
	problem []string
}

func (c *change) bad(format string, a ...any) {
	c.problem = append(c.problem, fmt.Sprintf(format, a...))
}

// sitesOfRow returns the sites a row belongs to, for access checks.
func (w *writer) sitesOfRow(ctx context.Context, table string, id uint64, row chstore.Row) ([]uint64, error) {
	switch table {
	case "sites":
		return []uint64{id}, nil
	case "users":
		return row["sites"].([]uint64), nil
	case "apikeys":
		u, _, err := w.store.ReadRow(ctx, "users", row["user"].(uint64))
		if errors.Is(err, chstore.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		return u["sites"].([]uint64), nil
	}
	return []uint64{row["site"].(uint64)}, nil
}

// within reports whether every one of sites is among allowed (and there
// is at least one).
func within(sites, allowed []uint64) bool {
	if len(sites) == 0 {
		return false
	}
	for _, s := range sites {
		if !slices.Contains(allowed, s) {
			return false
		}
	}
	return true
}

// writer does the writes of the record API.
type writer struct {
	store writeStore
	ids   *idSource
	inv   invalidator
	now   func() time.Time
}

// errNotFound means the record does not exist or belongs to sites the
// caller may not see (answered alike).
var errNotFound = errors.New("no such record")

// prepare checks a write and builds the new row. args are the request's
// arguments; id is 0 for a create.
func (w *writer) prepare(ctx context.Context, c *change, args map[string][]string) error {
	a := c.area
	get := func(k string) (string, bool) {
		v, ok := args[k]
		if !ok || len(v) == 0 {
			return "", false
		}
		return v[len(v)-1], true
	}
	if !c.create {
		old, oldA, err := w.store.ReadRow(ctx, a.table, c.id)
		if errors.Is(err, chstore.ErrNotFound) {
			return errNotFound
		}
		if err != nil {
			return err
		}
		sites, err := w.sitesOfRow(ctx, a.table, c.id, old)
		if err != nil {
			return err
		}
		if !within(sites, c.sites) {
			return errNotFound
		}
		c.old, c.oldA = old, oldA
	}
	if c.delete {
		c.row = c.old
		return nil
	}

	row := chstore.ZeroRow(a.table)
	for k, v := range c.old {
		row[k] = v
	}
	known := map[string]wfield{}
	for _, f := range a.fields {
		known[f.name] = f
	}
	keys := make([]string, 0, len(args))
	for k := range args {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	props := map[string]string{}
	for _, k := range keys {
		if controlArgs[k] {
			continue
		}
		raw, _ := get(k)
		if prop, ok := strings.CutPrefix(k, "custom__"); ok && a.custom {
			if !l2l.CustomName(prop) {
				c.bad("%s: %q is not a custom property name", k, prop)
				continue
			}
			props[prop] = raw
			continue
		}
		f, ok := known[k]
		switch {
		case slices.Contains(auditFields, k) || slices.Contains(a.owned, k):
			c.bad("%s: set by the server, cannot be written", k)
			continue
		case !ok:
			c.bad("%s: unknown field of %s", k, c.name)
			continue
		case f.fixed && !c.create:
			if v, err := parseWriteValue(f, raw); err != nil || !equalValue(rowValue(f, v), c.old[f.name]) {
				c.bad("%s: cannot be changed after the record was created", k)
			}
			continue
		}
		v, err := parseWriteValue(f, raw)
		if err != nil {
			c.bad("%s", err)
			continue
		}
		row[f.name] = rowValue(f, v)
	}
	if c.create {
		for _, f := range a.fields {
			_, given := get(f.name)
			if f.required && !given {
				c.bad("%s: required", f.name)
			}
			if !given && f.def != nil {
				row[f.name] = rowValue(f, f.def)
			}
		}
	}
	if a.custom && len(props) > 0 {
		setProps(row, props)
	}
	c.row = row
	return w.check(ctx, c)
}

func equalValue(a, b any) bool {
	switch x := a.(type) {
	case []uint64:
		y, _ := b.([]uint64)
		return slices.Equal(x, y)
	case []string:
		y, _ := b.([]string)
		return slices.Equal(x, y)
	}
	return a == b
}

// setProps merges custom properties into a row's parallel arrays; an
// empty value removes the property.
func setProps(row chstore.Row, props map[string]string) {
	keys, _ := row["custom_keys"].([]string)
	vals, _ := row["custom_values"].([]string)
	m := map[string]string{}
	for i, k := range keys {
		if i < len(vals) {
			m[k] = vals[i]
		}
	}
	for k, v := range props {
		if v == "" {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	outV := make([]string, len(names))
	for i, k := range names {
		outV[i] = m[k]
	}
	row["custom_keys"], row["custom_values"] = names, outV
}

// check validates the new row as a whole: sites, references, uniqueness.
func (w *writer) check(ctx context.Context, c *change) error {
	r := c.row
	site, _ := r["site"].(uint64)
	if _, has := r["site"]; has && c.area.table != "users" {
		if !slices.Contains(c.sites, site) {
			c.bad("site: %d is not one of your sites", site)
		}
	}
	unique := func(column string, value any, perSite bool) error {
		s := uint64(0)
		if perSite {
			s = site
		}
		taken, err := w.store.Taken(ctx, c.area.table, column, value, s, c.id)
		if err != nil {
			return err
		}
		if taken {
			c.bad("%s: %v is already used", column, value)
		}
		return nil
	}
	ref := func(table, field string, id uint64) error {
		if id == 0 {
			return nil
		}
		other, _, err := w.store.ReadRow(ctx, table, id)
		if errors.Is(err, chstore.ErrNotFound) || err == nil && other["site"] != site {
			c.bad("%s: no %s %d in site %d", field, strings.TrimSuffix(table, "s"), id, site)
			return nil
		}
		return err
	}
	var errs []error
	switch c.area.table {
	case "sites":
		if _, err := time.LoadLocation(r["timezone"].(string)); err != nil || r["timezone"] == "" {
			c.bad("timezone: %q is not an IANA time zone", r["timezone"])
		}
	case "areas", "products", "reasons", "shifts":
		if r["code"] == "" {
			c.bad("code: must not be empty")
		}
		errs = append(errs, unique("code", r["code"], true))
	}
	switch c.area.table {
	case "lines", "machines":
		if r["code"] == "" {
			c.bad("code: must not be empty")
		}
		errs = append(errs, unique("code", r["code"], true))
		if ext := r["externalid"].(string); ext != "" {
			// External ids are unique across lines and machines: ids are
			// unique across tables, so "id != this" excludes only itself.
			for _, t := range []string{"lines", "machines"} {
				taken, err := w.store.Taken(ctx, t, "externalid", ext, 0, c.id)
				errs = append(errs, err)
				if taken {
					c.bad("externalid: %q is already used by another location", ext)
					break
				}
			}
		}
		if c.area.table == "lines" {
			errs = append(errs, ref("areas", "area", r["area"].(uint64)))
		} else {
			errs = append(errs, ref("lines", "line", r["line"].(uint64)))
		}
	case "products":
		if r["fallback"] == true {
			errs = append(errs, unique("fallback", uint8(1), true))
		}
	case "reasons":
		if r["kind"] == "scrap" && r["planned"] == true {
			c.bad("planned: only downtime reasons can be planned")
		}
	case "shifts":
		for _, f := range []string{"start_time", "end_time"} {
			if !timeOfDay.MatchString(r[f].(string)) {
				c.bad("%s: %q is not HH:MM", f, r[f])
			}
		}
		if r["days"] == "" {
			c.bad("days: at least one of %s", strings.Join(weekdays, ", "))
		}
		errs = append(errs, ref("lines", "line", r["line"].(uint64)))
	case "users":
		if !username.MatchString(r["username"].(string)) {
			c.bad("username: 1 to 64 letters, digits or _.@+-")
		}
		errs = append(errs, unique("username", r["username"], false))
		if !within(r["sites"].([]uint64), c.sites) {
			c.bad("sites: must be one or more of your sites")
		}
	case "apikeys":
		owner, _, err := w.store.ReadRow(ctx, "users", r["user"].(uint64))
		switch {
		case errors.Is(err, chstore.ErrNotFound) || err == nil && !within(owner["sites"].([]uint64), c.sites):
			c.bad("user: no user %d", r["user"])
		case err != nil:
			errs = append(errs, err)
		}
		if len(r["scopes"].([]string)) == 0 {
			c.bad("scopes: at least one of %s", strings.Join(allScopes, ", "))
		}
	}
	return errors.Join(errs...)
}

// apply writes a prepared change and invalidates caches.
func (w *writer) apply(ctx context.Context, c *change) error {
	now := w.now().UTC().Truncate(time.Second)
	a := chstore.Audit{LastUpdated: now, LastUpdatedBy: c.actor}
	if c.create {
		id, err := w.ids.next(ctx)
		if err != nil {
			return err
		}
		c.id = id
		a.Created, a.CreatedBy = now, c.actor
		if c.area.table == "apikeys" {
			key, prefix, hash := auth.NewKey()
			c.key = key
			c.row["prefix"], c.row["hash"] = prefix, hash
		}
	} else {
		a.Created, a.CreatedBy = c.oldA.Created, c.oldA.CreatedBy
		// A version above the live one even when clocks disagree.
		a.Version = max(uint64(w.now().UnixNano()), c.oldA.Version+1)
	}
	a.Deleted = c.delete
	if err := w.store.WriteRow(ctx, c.area.table, c.id, c.row, a); err != nil {
		return err
	}
	w.invalidate(ctx, c)
	return nil
}

// invalidate drops what caches hold about the changed record, here and in
// every process sharing Redis.
func (w *writer) invalidate(ctx context.Context, c *change) {
	switch c.area.table {
	case "lines", "machines":
		for _, r := range []chstore.Row{c.old, c.row} {
			if ext, _ := r["externalid"].(string); ext != "" {
				w.inv.forgetLocation(ctx, ext)
			}
		}
	case "sites":
		// Locations carry their site's time zone.
		exts, _ := w.store.ExternalIDsOfSite(ctx, c.id)
		for _, ext := range exts {
			w.inv.forgetLocation(ctx, ext)
		}
	case "users":
		hashes, _ := w.store.KeyHashesOfUser(ctx, c.id)
		for _, h := range hashes {
			w.inv.forgetKey(ctx, h)
		}
	case "apikeys":
		if h, _ := c.row["hash"].(string); h != "" {
			w.inv.forgetKey(ctx, h)
		}
	}
	w.inv.changed(ctx, c.area.table)
}
