package chstore

// Generic writes of master-data records (the query API's POST, PUT and
// DELETE). A write is a new version of the whole row: ReplacingMergeTree
// keeps the highest version, a delete is a version with deleted = 1.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// ColumnKind is the Go type a writable column's value has in a Row.
type ColumnKind uint8

// Column kinds.
const (
	KindUint    ColumnKind = iota + 1 // uint64
	KindString                        // string (also Enum8 columns)
	KindFloat                         // float64
	KindBool                          // bool (a UInt8 column)
	KindUints                         // []uint64 (Array(UInt64))
	KindStrings                       // []string (Array(String))
)

// WriteColumn is one column of a master-data table besides id and the
// audit columns.
type WriteColumn struct {
	Name string
	Kind ColumnKind
	enum bool // an Enum8 column: read through toString
}

// Row holds the values of a record's columns by name (see ColumnKind).
type Row map[string]any

// writeTables are the tables the query API writes, with their columns.
var writeTables = map[string][]WriteColumn{
	"sites": {{Name: "description", Kind: KindString}, {Name: "timezone", Kind: KindString}},
	"areas": {{Name: "site", Kind: KindUint}, {Name: "code", Kind: KindString}, {Name: "description", Kind: KindString}},
	"lines": {{Name: "site", Kind: KindUint}, {Name: "area", Kind: KindUint}, {Name: "code", Kind: KindString},
		{Name: "description", Kind: KindString}, {Name: "externalid", Kind: KindString},
		{Name: "stop_threshold", Kind: KindFloat}},
	"machines": {{Name: "site", Kind: KindUint}, {Name: "line", Kind: KindUint}, {Name: "code", Kind: KindString},
		{Name: "description", Kind: KindString}, {Name: "externalid", Kind: KindString},
		{Name: "custom_keys", Kind: KindStrings}, {Name: "custom_values", Kind: KindStrings},
		{Name: "stop_threshold", Kind: KindFloat}},
	"products": {{Name: "site", Kind: KindUint}, {Name: "code", Kind: KindString}, {Name: "description", Kind: KindString},
		{Name: "ideal_cycle_time", Kind: KindFloat}, {Name: "fallback", Kind: KindBool}},
	"reasons": {{Name: "site", Kind: KindUint}, {Name: "code", Kind: KindString}, {Name: "description", Kind: KindString},
		{Name: "kind", Kind: KindString, enum: true}, {Name: "planned", Kind: KindBool}},
	"shifts": {{Name: "site", Kind: KindUint}, {Name: "line", Kind: KindUint}, {Name: "code", Kind: KindString},
		{Name: "description", Kind: KindString}, {Name: "start_time", Kind: KindString},
		{Name: "end_time", Kind: KindString}, {Name: "days", Kind: KindString}},
	"users": {{Name: "username", Kind: KindString}, {Name: "admin", Kind: KindBool},
		{Name: "sites", Kind: KindUints}, {Name: "active", Kind: KindBool}},
	"apikeys": {{Name: "user", Kind: KindUint}, {Name: "prefix", Kind: KindString}, {Name: "hash", Kind: KindString},
		{Name: "scopes", Kind: KindStrings}, {Name: "active", Kind: KindBool},
		{Name: "rate_limit", Kind: KindFloat}, {Name: "rate_burst", Kind: KindFloat}},
}

// WriteColumns returns the writable columns of table (nil: not writable).
func WriteColumns(table string) []WriteColumn { return writeTables[table] }

// ZeroRow returns a row of table with every column at its zero value.
func ZeroRow(table string) Row {
	r := Row{}
	for _, c := range writeTables[table] {
		switch c.Kind {
		case KindUint:
			r[c.Name] = uint64(0)
		case KindString:
			r[c.Name] = ""
		case KindFloat:
			r[c.Name] = 0.0
		case KindBool:
			r[c.Name] = false
		case KindUints:
			r[c.Name] = []uint64{}
		case KindStrings:
			r[c.Name] = []string{}
		}
	}
	return r
}

// ReadRow returns the live version of record id of table with its audit
// fields, or ErrNotFound.
func (s *Store) ReadRow(ctx context.Context, table string, id uint64) (Row, Audit, error) {
	cols, ok := writeTables[table]
	if !ok {
		return nil, Audit{}, fmt.Errorf("table %q is not writable", table)
	}
	var b strings.Builder
	b.WriteString("SELECT ")
	for _, c := range cols {
		if c.enum {
			b.WriteString("toString(" + c.Name + "), ")
		} else {
			b.WriteString("`" + c.Name + "`, ")
		}
	}
	b.WriteString("toUInt32(created), toUInt32(lastupdated), createdby, lastupdatedby, version FROM (SELECT * FROM " +
		table + " FINAL) WHERE id = ? AND deleted = 0")
	rows, err := s.conn.Query(ctx, b.String(), id)
	if err != nil {
		return nil, Audit{}, fmt.Errorf("read %s %d: %w", table, id, err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return nil, Audit{}, fmt.Errorf("read %s %d: %w", table, id, err)
		}
		return nil, Audit{}, fmt.Errorf("%s %d: %w", table, id, ErrNotFound)
	}
	dest := make([]any, 0, len(cols)+5)
	for _, c := range cols {
		switch c.Kind {
		case KindUint:
			dest = append(dest, new(uint64))
		case KindString:
			dest = append(dest, new(string))
		case KindFloat:
			dest = append(dest, new(float64))
		case KindBool:
			dest = append(dest, new(uint8))
		case KindUints:
			dest = append(dest, new([]uint64))
		case KindStrings:
			dest = append(dest, new([]string))
		}
	}
	var created, updated uint32
	var a Audit
	dest = append(dest, &created, &updated, &a.CreatedBy, &a.LastUpdatedBy, &a.Version)
	if err := rows.Scan(dest...); err != nil {
		return nil, Audit{}, fmt.Errorf("scan %s %d: %w", table, id, err)
	}
	r := Row{}
	for i, c := range cols {
		switch d := dest[i].(type) {
		case *uint64:
			r[c.Name] = *d
		case *string:
			r[c.Name] = *d
		case *float64:
			r[c.Name] = *d
		case *uint8:
			r[c.Name] = *d != 0
		case *[]uint64:
			r[c.Name] = *d
		case *[]string:
			r[c.Name] = *d
		}
	}
	a.Created, a.LastUpdated = time.Unix(int64(created), 0).UTC(), time.Unix(int64(updated), 0).UTC()
	return r, a, nil
}

// WriteRow writes a version of record id of table: row must hold every
// writable column. a.Version must be higher than the live version's for the
// write to win; WriteRow sets it from the clock when it is zero.
func (s *Store) WriteRow(ctx context.Context, table string, id uint64, row Row, a Audit) error {
	cols, ok := writeTables[table]
	if !ok {
		return fmt.Errorf("table %q is not writable", table)
	}
	a.fill(time.Now())
	names := make([]string, 0, len(cols)+1)
	values := make([]any, 0, len(cols)+7)
	names = append(names, "id")
	values = append(values, id)
	for _, c := range cols {
		v, ok := row[c.Name]
		if !ok {
			return fmt.Errorf("write %s %d: no value for %s", table, id, c.Name)
		}
		if b, isBool := v.(bool); isBool {
			v = b2u(b)
		}
		names = append(names, "`"+c.Name+"`")
		values = append(values, v)
	}
	values = append(values, a.values()...)
	return s.insertRow(ctx, table+" ("+strings.Join(names, ", ")+", "+auditCols+")", values...)
}

// MaxRecordID returns the largest id of every writable table, deleted
// records included: ids handed out later must be above it.
func (s *Store) MaxRecordID(ctx context.Context) (uint64, error) {
	var parts []string
	for t := range writeTables {
		parts = append(parts, "SELECT max(id) AS m FROM "+t)
	}
	slices.Sort(parts)
	parts = append(parts, "SELECT max(id) AS m FROM secretkeys")
	return s.QueryUint64(ctx, "SELECT max(m) FROM ("+strings.Join(parts, " UNION ALL ")+")")
}

// KeyHashesOfUser returns the hashes of every key of user (deleted ones
// too): what auth caches must forget when the user changes.
func (s *Store) KeyHashesOfUser(ctx context.Context, user uint64) ([]string, error) {
	rows, err := s.conn.Query(ctx, "SELECT DISTINCT hash FROM apikeys WHERE user = ?", user)
	if err != nil {
		return nil, fmt.Errorf("keys of user %d: %w", user, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var h string
		if err := rows.Scan(&h); err != nil {
			return nil, fmt.Errorf("keys of user %d: %w", user, err)
		}
		out = append(out, h)
	}
	return out, rows.Err()
}

// ExternalIDsOfSite returns the external ids of the live locations of site.
func (s *Store) ExternalIDsOfSite(ctx context.Context, site uint64) ([]string, error) {
	ls, err := s.Locations(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range ls {
		if l.Site == site {
			out = append(out, l.ExternalID)
		}
	}
	return out, nil
}

// UserByName returns the live user with that username, or ErrNotFound.
func (s *Store) UserByName(ctx context.Context, username string) (User, error) {
	rows, err := s.conn.Query(ctx, `SELECT id, username, admin, sites, active FROM (SELECT * FROM users FINAL)
		WHERE deleted = 0 AND username = ? ORDER BY id LIMIT 1`, username)
	if err != nil {
		return User{}, fmt.Errorf("user %q: %w", username, err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return User{}, fmt.Errorf("user %q: %w", username, err)
		}
		return User{}, fmt.Errorf("user %q: %w", username, ErrNotFound)
	}
	var u User
	var admin, active uint8
	if err := rows.Scan(&u.ID, &u.Username, &admin, &u.Sites, &active); err != nil {
		return User{}, fmt.Errorf("user %q: %w", username, err)
	}
	u.Admin, u.Active = admin == 1, active == 1
	return u, nil
}

// Taken reports whether a live record of table other than id has column =
// value (and, when site is not 0, belongs to site): uniqueness checks.
// column must be a writable column of table.
func (s *Store) Taken(ctx context.Context, table, column string, value any, site, id uint64) (bool, error) {
	if !slices.ContainsFunc(writeTables[table], func(c WriteColumn) bool { return c.Name == column }) {
		return false, errors.New("uniqueness check on an unknown column")
	}
	q := "SELECT count() FROM (SELECT * FROM " + table + " FINAL) WHERE deleted = 0 AND id != ? AND `" + column + "` = ?"
	args := []any{id, value}
	if site != 0 {
		q += " AND site = ?"
		args = append(args, site)
	}
	n, err := s.QueryUint64(ctx, q, args...)
	if err != nil {
		return false, fmt.Errorf("uniqueness of %s.%s: %w", table, column, err)
	}
	return n > 0, nil
}

// KeyRateLimits returns the rate limit of every live key that has one of
// its own (rate_limit or rate_burst above 0), as [rate, burst].
func (s *Store) KeyRateLimits(ctx context.Context) (map[uint64][2]float64, error) {
	rows, err := s.conn.Query(ctx, `SELECT id, rate_limit, rate_burst FROM (SELECT * FROM apikeys FINAL)
		WHERE deleted = 0 AND (rate_limit > 0 OR rate_burst > 0)`)
	if err != nil {
		return nil, fmt.Errorf("key rate limits: %w", err)
	}
	defer rows.Close()
	out := map[uint64][2]float64{}
	for rows.Next() {
		var id uint64
		var r, b float64
		if err := rows.Scan(&id, &r, &b); err != nil {
			return nil, fmt.Errorf("key rate limits: %w", err)
		}
		out[id] = [2]float64{r, b}
	}
	return out, rows.Err()
}

// PeriodByID returns the live version of production period id (the newest
// version, read FINAL, not deleted), or ErrNotFound. Times are Unix
// milliseconds (whole seconds as stored); End is 0 and Open true while the
// period is open. The query API reads it to give the period a reason.
func (s *Store) PeriodByID(ctx context.Context, id uint64) (PeriodRow, error) {
	// The id filter inside FINAL keeps the read on the primary key: every
	// version of a period has its id.
	rows, err := s.conn.Query(ctx, `SELECT id, site, location, toString(location_kind), externalid, toString(state),
		toInt64(toUInt32(start)) * 1000, toInt64(toUInt32(ifNull(end, toDateTime(0)))) * 1000, isNull(end), reason, version
		FROM (SELECT * FROM productionperiods FINAL WHERE id = ?) WHERE deleted = 0`, id)
	if err != nil {
		return PeriodRow{}, fmt.Errorf("read period %d: %w", id, err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return PeriodRow{}, fmt.Errorf("read period %d: %w", id, err)
		}
		return PeriodRow{}, fmt.Errorf("period %d: %w", id, ErrNotFound)
	}
	var p PeriodRow
	var open uint8
	if err := rows.Scan(&p.ID, &p.Site, &p.Location, &p.LocationKind, &p.ExternalID, &p.State,
		&p.Start, &p.End, &open, &p.Reason, &p.Version); err != nil {
		return PeriodRow{}, fmt.Errorf("scan period %d: %w", id, err)
	}
	p.Open = open == 1
	if p.Open {
		p.End = 0
	}
	return p, nil
}
