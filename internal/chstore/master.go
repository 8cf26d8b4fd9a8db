package chstore

import (
	"context"
	"fmt"
	"time"
)

// Audit holds the fields every master-data record carries. Version orders
// writes of one id (ReplacingMergeTree keeps the highest); Put* fill it from
// the clock when it is zero.
type Audit struct {
	Created       time.Time
	LastUpdated   time.Time
	CreatedBy     string
	LastUpdatedBy string
	Deleted       bool
	Version       uint64
}

func (a *Audit) fill(now time.Time) {
	if a.Created.IsZero() {
		a.Created = now
	}
	if a.LastUpdated.IsZero() {
		a.LastUpdated = now
	}
	if a.Version == 0 {
		a.Version = uint64(now.UnixNano())
	}
}

func b2u(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// Site is a plant with its time zone (IANA name).
type Site struct {
	ID          uint64
	Description string
	Timezone    string
	Audit
}

// Area groups lines of a site.
type Area struct {
	ID          uint64
	Site        uint64
	Code        string
	Description string
	Audit
}

// Line is a production line; with an ExternalID it is a location parts can
// be reported against.
type Line struct {
	ID          uint64
	Site        uint64
	Area        uint64
	Code        string
	Description string
	ExternalID  string
	// StopThreshold is the gap between parts (seconds) that makes a stop;
	// 0 derives it from the product (see internal/period).
	StopThreshold float64
	Audit
}

// Machine is a machine of a line; with an ExternalID it is a location.
type Machine struct {
	ID          uint64
	Site        uint64
	Line        uint64
	Code        string
	Description string
	ExternalID  string
	// StopThreshold: as Line's.
	StopThreshold float64
	Audit
}

// Product is what a location makes. IdealCycleTime is in seconds; at most
// one product per site is its Fallback.
type Product struct {
	ID             uint64
	Site           uint64
	Code           string
	Description    string
	IdealCycleTime float64
	Fallback       bool
	Audit
}

// Reason explains scrap or downtime. Kind is "scrap" or "downtime".
type Reason struct {
	ID          uint64
	Site        uint64
	Code        string
	Description string
	Kind        string
	Planned     bool
	Audit
}

// User owns API keys; Sites lists the sites it may see.
type User struct {
	ID       uint64
	Username string
	Admin    bool
	Sites    []uint64
	Active   bool
	Audit
}

// APIKey is stored as the SHA-256 (hex) of the key; Prefix is the short
// public part of the key shown in listings and logs.
type APIKey struct {
	ID     uint64
	User   uint64
	Prefix string
	Hash   string
	Scopes []string
	Active bool
	Audit
}

// SecretKey signs security-sensitive calls; Server names it in a call.
type SecretKey struct {
	ID     uint64
	User   uint64
	Server string
	Secret string
	Active bool
	Audit
}

const auditCols = "created, lastupdated, createdby, lastupdatedby, deleted, version"

func (a Audit) values() []any {
	return []any{a.Created.UTC(), a.LastUpdated.UTC(), a.CreatedBy, a.LastUpdatedBy, b2u(a.Deleted), a.Version}
}

// PutSite writes a version of a site.
func (s *Store) PutSite(ctx context.Context, v Site) error {
	v.fill(time.Now())
	return s.insertRow(ctx, "sites (id, description, timezone, "+auditCols+")",
		append([]any{v.ID, v.Description, v.Timezone}, v.Audit.values()...)...)
}

// PutArea writes a version of an area.
func (s *Store) PutArea(ctx context.Context, v Area) error {
	v.fill(time.Now())
	return s.insertRow(ctx, "areas (id, site, code, description, "+auditCols+")",
		append([]any{v.ID, v.Site, v.Code, v.Description}, v.Audit.values()...)...)
}

// PutLine writes a version of a line.
func (s *Store) PutLine(ctx context.Context, v Line) error {
	v.fill(time.Now())
	return s.insertRow(ctx, "lines (id, site, area, code, description, externalid, stop_threshold, "+auditCols+")",
		append([]any{v.ID, v.Site, v.Area, v.Code, v.Description, v.ExternalID, v.StopThreshold}, v.Audit.values()...)...)
}

// PutMachine writes a version of a machine.
func (s *Store) PutMachine(ctx context.Context, v Machine) error {
	v.fill(time.Now())
	return s.insertRow(ctx, "machines (id, site, line, code, description, externalid, stop_threshold, "+auditCols+")",
		append([]any{v.ID, v.Site, v.Line, v.Code, v.Description, v.ExternalID, v.StopThreshold}, v.Audit.values()...)...)
}

// PutProduct writes a version of a product.
func (s *Store) PutProduct(ctx context.Context, v Product) error {
	v.fill(time.Now())
	return s.insertRow(ctx, "products (id, site, code, description, ideal_cycle_time, fallback, "+auditCols+")",
		append([]any{v.ID, v.Site, v.Code, v.Description, v.IdealCycleTime, b2u(v.Fallback)}, v.Audit.values()...)...)
}

// PutReason writes a version of a reason.
func (s *Store) PutReason(ctx context.Context, v Reason) error {
	if v.Kind != "scrap" && v.Kind != "downtime" {
		return fmt.Errorf("reason %q: kind %q is not scrap or downtime", v.Code, v.Kind)
	}
	v.fill(time.Now())
	return s.insertRow(ctx, "reasons (id, site, code, description, kind, planned, "+auditCols+")",
		append([]any{v.ID, v.Site, v.Code, v.Description, v.Kind, b2u(v.Planned)}, v.Audit.values()...)...)
}

// PutUser writes a version of a user.
func (s *Store) PutUser(ctx context.Context, v User) error {
	v.fill(time.Now())
	sites := v.Sites
	if sites == nil {
		sites = []uint64{}
	}
	return s.insertRow(ctx, "users (id, username, admin, sites, active, "+auditCols+")",
		append([]any{v.ID, v.Username, b2u(v.Admin), sites, b2u(v.Active)}, v.Audit.values()...)...)
}

// PutAPIKey writes a version of an API key (its hash, never the key).
func (s *Store) PutAPIKey(ctx context.Context, v APIKey) error {
	v.fill(time.Now())
	scopes := v.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	return s.insertRow(ctx, "apikeys (id, user, prefix, hash, scopes, active, "+auditCols+")",
		append([]any{v.ID, v.User, v.Prefix, v.Hash, scopes, b2u(v.Active)}, v.Audit.values()...)...)
}

// PutSecretKey writes a version of a secret key.
func (s *Store) PutSecretKey(ctx context.Context, v SecretKey) error {
	v.fill(time.Now())
	return s.insertRow(ctx, "secretkeys (id, user, server, secret, active, "+auditCols+")",
		append([]any{v.ID, v.User, v.Server, v.Secret, b2u(v.Active)}, v.Audit.values()...)...)
}

// Location is a line or machine with an external id: what parts are
// reported against.
type Location struct {
	Kind       string // "line" or "machine"
	ID         uint64
	Site       uint64
	ExternalID string
	Timezone   string // the site's
}

// openSites is the SQL of the ids of the open sites: neither deleted nor
// deactivated. A closed site's locations take no parts, and a key whose
// user has no open site left does not authenticate.
const openSites = "(SELECT groupArray(id) FROM sites FINAL WHERE deleted = 0 AND active = 1)"

// liveSites is the SQL of the ids of the sites not deleted: a deactivated
// site stays among its users' sites, so that they can see it and open it
// again.
const liveSites = "(SELECT groupArray(id) FROM sites FINAL WHERE deleted = 0)"

// Locations returns every live location (not deleted, external id set, of
// an open site).
func (s *Store) Locations(ctx context.Context) ([]Location, error) {
	return s.locations(ctx, "")
}

// LocationByExternalID returns the live location with that external id
// (case-sensitive) of an open site, or ErrNotFound.
func (s *Store) LocationByExternalID(ctx context.Context, externalID string) (Location, error) {
	ls, err := s.locations(ctx, externalID)
	if err != nil {
		return Location{}, err
	}
	if len(ls) == 0 {
		return Location{}, fmt.Errorf("location %q: %w", externalID, ErrNotFound)
	}
	return ls[0], nil
}

func (s *Store) locations(ctx context.Context, externalID string) ([]Location, error) {
	filter := "externalid != ''"
	var args []any
	if externalID != "" {
		filter = "externalid = ?"
		args = []any{externalID, externalID}
	}
	// The site filter is a WHERE, not an INNER JOIN: current ClickHouse
	// keeps one left row per key in an ANY INNER JOIN.
	open := "site IN (SELECT id FROM sites FINAL WHERE deleted = 0 AND active = 1)"
	q := `SELECT kind, id, site, externalid, tz FROM (
		SELECT 'line' AS kind, id, site, externalid FROM lines FINAL WHERE deleted = 0 AND ` + open + ` AND ` + filter + `
		UNION ALL
		SELECT 'machine' AS kind, id, site, externalid FROM machines FINAL WHERE deleted = 0 AND ` + open + ` AND ` + filter + `
	) AS l ANY LEFT JOIN (SELECT id AS site, timezone AS tz FROM sites FINAL WHERE deleted = 0) AS z USING site
	ORDER BY kind, id`
	rows, err := s.conn.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("query locations: %w", err)
	}
	defer rows.Close()
	var out []Location
	for rows.Next() {
		var l Location
		if err := rows.Scan(&l.Kind, &l.ID, &l.Site, &l.ExternalID, &l.Timezone); err != nil {
			return nil, fmt.Errorf("scan location: %w", err)
		}
		out = append(out, l)
	}
	return out, rows.Err()
}

// Products returns every live product of every site.
func (s *Store) Products(ctx context.Context) ([]Product, error) {
	rows, err := s.conn.Query(ctx, `SELECT id, site, code, description, ideal_cycle_time, fallback
		FROM products FINAL WHERE deleted = 0 ORDER BY site, id`)
	if err != nil {
		return nil, fmt.Errorf("query products: %w", err)
	}
	defer rows.Close()
	var out []Product
	for rows.Next() {
		var p Product
		var fb uint8
		if err := rows.Scan(&p.ID, &p.Site, &p.Code, &p.Description, &p.IdealCycleTime, &fb); err != nil {
			return nil, fmt.Errorf("scan product: %w", err)
		}
		p.Fallback = fb == 1
		out = append(out, p)
	}
	return out, rows.Err()
}

// Reasons returns every live reason of every site.
func (s *Store) Reasons(ctx context.Context) ([]Reason, error) {
	rows, err := s.conn.Query(ctx, `SELECT id, site, code, description, toString(kind), planned
		FROM reasons FINAL WHERE deleted = 0 ORDER BY site, id`)
	if err != nil {
		return nil, fmt.Errorf("query reasons: %w", err)
	}
	defer rows.Close()
	var out []Reason
	for rows.Next() {
		var r Reason
		var planned uint8
		if err := rows.Scan(&r.ID, &r.Site, &r.Code, &r.Description, &r.Kind, &planned); err != nil {
			return nil, fmt.Errorf("scan reason: %w", err)
		}
		r.Planned = planned == 1
		out = append(out, r)
	}
	return out, rows.Err()
}

// KeyOwner is an active API key with its active user: what a request
// authenticated by that key may do.
type KeyOwner struct {
	KeyID    uint64
	Prefix   string
	Hash     string
	Scopes   []string
	UserID   uint64
	Username string
	Admin    bool
	Sites    []uint64
}

// KeyByHash returns the active key with that hash and its active user, or
// ErrNotFound. The user's sites are those not deleted; a key whose user
// has no open site left (all deleted or deactivated) is not found.
func (s *Store) KeyByHash(ctx context.Context, hash string) (KeyOwner, error) {
	rows, err := s.conn.Query(ctx, `SELECT k.id, k.prefix, k.hash, k.scopes, u.id, u.username, u.admin, u.live
		FROM (SELECT id, user, prefix, hash, scopes FROM apikeys FINAL WHERE hash = ? AND deleted = 0 AND active = 1) AS k
		ALL INNER JOIN (SELECT id, id AS user, username, admin, arrayFilter(x -> has(`+liveSites+`, x), sites) AS live,
				arrayFilter(x -> has(`+openSites+`, x), sites) AS open
			FROM users FINAL WHERE deleted = 0 AND active = 1) AS u
		USING user WHERE notEmpty(u.open)`, hash)
	if err != nil {
		return KeyOwner{}, fmt.Errorf("query api key: %w", err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return KeyOwner{}, fmt.Errorf("query api key: %w", err)
		}
		return KeyOwner{}, fmt.Errorf("api key: %w", ErrNotFound)
	}
	var k KeyOwner
	var admin uint8
	if err := rows.Scan(&k.KeyID, &k.Prefix, &k.Hash, &k.Scopes, &k.UserID, &k.Username, &admin, &k.Sites); err != nil {
		return KeyOwner{}, fmt.Errorf("scan api key: %w", err)
	}
	k.Admin = admin == 1
	return k, nil
}

// SecretByServer returns the active secret key with that server name, or
// ErrNotFound.
func (s *Store) SecretByServer(ctx context.Context, server string) (SecretKey, error) {
	rows, err := s.conn.Query(ctx, `SELECT id, user, server, secret FROM secretkeys FINAL
		WHERE server = ? AND deleted = 0 AND active = 1 ORDER BY id LIMIT 1`, server)
	if err != nil {
		return SecretKey{}, fmt.Errorf("query secret key: %w", err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return SecretKey{}, fmt.Errorf("query secret key: %w", err)
		}
		return SecretKey{}, fmt.Errorf("secret key for server %q: %w", server, ErrNotFound)
	}
	var k SecretKey
	if err := rows.Scan(&k.ID, &k.User, &k.Server, &k.Secret); err != nil {
		return SecretKey{}, fmt.Errorf("scan secret key: %w", err)
	}
	k.Active = true
	return k, nil
}
