package chstore

// Generic writes of master-data records (the query API's POST, PUT and
// DELETE). A write is a new version of the whole row: ReplacingMergeTree
// keeps the highest version, a delete is a version with deleted = 1.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/takt/takt/internal/record"
)

// Row holds the stored values of a record (see record.Row).
type Row = record.Row

// Areas returns the record areas of the store (record.Takt unless
// WithAreas says otherwise).
func (s *Store) Areas() *record.Registry { return s.areas }

// WithAreas returns a store on the same connections whose record areas
// are r (a registry with other definitions of Takt's tables, for tests).
// Close only the original.
func (s *Store) WithAreas(r *record.Registry) *Store {
	c := *s
	c.areas = r
	return &c
}

// rowArea returns the area called name, whose rows are written (by
// writes of the record API or by its actions).
func (s *Store) rowArea(name string) (*record.Area, error) {
	a, ok := s.areas.Area(name)
	if !ok || a.Writes != record.WriteRows && a.Writes != record.WriteActions {
		return nil, fmt.Errorf("%q is not an area whose rows are written", name)
	}
	return a, nil
}

// ReadRow returns the live version of record id of the area called area
// (one whose rows are written) with its audit fields, or ErrNotFound.
func (s *Store) ReadRow(ctx context.Context, area string, id uint64) (Row, Audit, error) {
	a, err := s.rowArea(area)
	if err != nil {
		return nil, Audit{}, err
	}
	found, err := s.rowsWhere(ctx, a, "id = ?", []any{id}, 1)
	if err != nil {
		return nil, Audit{}, fmt.Errorf("read %s %d: %w", a.Name, id, err)
	}
	if len(found) == 0 {
		return nil, Audit{}, fmt.Errorf("%s %d: %w", a.Name, id, ErrNotFound)
	}
	return found[0].Row, found[0].Audit, nil
}

// WriteRow writes a version of record id of the area called area (one
// whose rows are written): row must hold every stored column that has no
// default. au.Version must be higher than the live version's for the
// write to win; WriteRow sets it from the clock when it is zero.
func (s *Store) WriteRow(ctx context.Context, area string, id uint64, row Row, au Audit) error {
	a, err := s.rowArea(area)
	if err != nil {
		return err
	}
	cols := a.Columns()
	au.fill(time.Now())
	names := make([]string, 0, len(cols)+1)
	values := make([]any, 0, len(cols)+7)
	names = append(names, "id")
	values = append(values, id)
	for _, c := range cols {
		v, ok := row[c.Name]
		if !ok {
			// A column added since the caller was written takes its
			// default; any other must be given.
			f, has := a.Field(c.Name)
			if !has || f.Default == nil {
				return fmt.Errorf("write %s %d: no value for %s", a.Name, id, c.Name)
			}
			v = f.Default
		}
		v = columnValue(v)
		names = append(names, "`"+c.Name+"`")
		values = append(values, v)
	}
	values = append(values, au.values()...)
	return s.insertRow(ctx, a.Table+" ("+strings.Join(names, ", ")+", "+auditCols+")", values...)
}

// MaxRecordID returns the largest id of every table whose rows the query
// API writes, deleted records included: ids handed out later must be above
// it.
func (s *Store) MaxRecordID(ctx context.Context) (uint64, error) {
	var parts []string
	for _, a := range s.areas.Areas() {
		if a.Writes == record.WriteRows || a.Writes == record.WriteActions {
			parts = append(parts, "SELECT max(id) AS m FROM "+a.Table)
		}
	}
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

// ExternalIDsOfSite returns the external ids of the live locations of
// site, whether the site is open or not: what location caches must forget
// when the site changes.
func (s *Store) ExternalIDsOfSite(ctx context.Context, site uint64) ([]string, error) {
	return s.strings(ctx, "external ids of site", `SELECT externalid FROM (
		SELECT externalid, site, deleted FROM lines FINAL
		UNION ALL
		SELECT externalid, site, deleted FROM machines FINAL
	) WHERE site = ? AND deleted = 0 AND externalid != ''`, site)
}

// KeyHashesOfSite returns the hashes of every key of the users that have
// site among their sites: what auth caches must forget when the site
// changes (a key carries its user's open sites).
func (s *Store) KeyHashesOfSite(ctx context.Context, site uint64) ([]string, error) {
	return s.strings(ctx, "keys of site", `SELECT DISTINCT hash FROM apikeys
		WHERE user IN (SELECT id FROM users WHERE has(sites, ?))`, site)
}

// strings runs a query of one String column.
func (s *Store) strings(ctx context.Context, what, query string, args ...any) ([]string, error) {
	rows, err := s.conn.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		out = append(out, v)
	}
	return out, rows.Err()
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

// Taken reports whether a live record of the area called area other than
// id has field = value (and, when site is not 0, belongs to site):
// uniqueness checks. field must be a stored field of the area.
func (s *Store) Taken(ctx context.Context, area, field string, value any, site, id uint64) (bool, error) {
	a, err := s.rowArea(area)
	if err != nil {
		return false, err
	}
	if f, ok := a.Field(field); !ok || !f.Stored() {
		return false, errors.New("uniqueness check on an unknown column")
	}
	if b, isBool := value.(bool); isBool {
		value = b2u(b)
	}
	q := "SELECT count() FROM (SELECT * FROM " + a.Table + " FINAL) WHERE deleted = 0 AND id != ? AND `" + field + "` = ?"
	args := []any{id, value}
	if site != 0 {
		q += " AND site = ?"
		args = append(args, site)
	}
	n, err := s.QueryUint64(ctx, q, args...)
	if err != nil {
		return false, fmt.Errorf("uniqueness of %s.%s: %w", a.Name, field, err)
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
		toInt64(toUInt32(start)) * 1000, toInt64(toUInt32(ifNull(end, toDateTime(0)))) * 1000, isNull(end), reason, first_of_stop, dispatch, dispatchtype, version
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
		&p.Start, &p.End, &open, &p.Reason, &p.FirstOfStop, &p.Dispatch, &p.DispatchType, &p.Version); err != nil {
		return PeriodRow{}, fmt.Errorf("scan period %d: %w", id, err)
	}
	p.Open = open == 1
	if p.Open {
		p.End = 0
	}
	return p, nil
}
