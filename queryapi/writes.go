package queryapi

// Writes of master data: what an area's definition (internal/record) says
// a request may set is checked field by field, then the record as a whole
// (its sites, the records it references, what must be unique), and the
// new version of the row is written; the caches that hold the record are
// told to forget it.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/takt/takt/internal/auth"
	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/l2l"
	"github.com/takt/takt/internal/record"
)

// controlArgs are arguments of a write that are not fields.
var controlArgs = map[string]bool{
	"auth": true, "format": true, "realuser": true, "_action": true, "id": true,
	"l2lfmt_microseconds": true, auth.ArgServer: true, auth.ArgExpiration: true, auth.ArgSignature: true,
}

// writeStore is what writes need of ClickHouse (*chstore.Store).
type writeStore interface {
	ReadRow(ctx context.Context, area string, id uint64) (record.Row, chstore.Audit, error)
	WriteRow(ctx context.Context, area string, id uint64, row record.Row, au chstore.Audit) error
	Taken(ctx context.Context, area, field string, value any, site, id uint64) (bool, error)
	UserByName(ctx context.Context, username string) (chstore.User, error)
	SecretByServer(ctx context.Context, server string) (chstore.SecretKey, error)
	KeyHashesOfUser(ctx context.Context, user uint64) ([]string, error)
	ExternalIDsOfSite(ctx context.Context, site uint64) ([]string, error)
	KeyHashesOfSite(ctx context.Context, site uint64) ([]string, error)
}

// invalidator drops cached master data in every process (auth and location
// caches through Redis).
type invalidator interface {
	forgetKey(ctx context.Context, hash string)
	forgetLocation(ctx context.Context, externalID string)
	changed(ctx context.Context, table string)
}

// change is one validated write.
type change struct {
	area    *record.Area
	id      uint64
	create  bool
	delete  bool
	old     record.Row // nil on create
	oldA    chstore.Audit
	row     record.Row
	key     string // the new API key (record.IssueKey), shown once
	actor   string
	sites   []uint64 // the acting user's sites
	problem []string
}

func (c *change) bad(format string, a ...any) {
	c.problem = append(c.problem, fmt.Sprintf(format, a...))
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

// signatureSpender records the signatures of signed calls as used
// (*auth.UsedSignatures).
type signatureSpender interface {
	Spend(ctx context.Context, sig auth.Signature, now time.Time) error
}

// writer does the writes of the record API.
type writer struct {
	store      writeStore
	areas      *record.Registry // the store's areas
	ids        *idSource
	unique     *reservations
	inv        invalidator
	signatures signatureSpender
	now        func() time.Time
}

// errNotFound means the record does not exist or belongs to sites the
// caller may not see (answered alike).
var errNotFound = errors.New("no such record")

// sitesOf returns the sites record id of a (with row) belongs to: none
// when it comes through a reference to a record that is gone.
func (w *writer) sitesOf(ctx context.Context, a *record.Area, id uint64, row record.Row) ([]uint64, error) {
	if sites, ok := a.SiteIDs(id, row); ok {
		return sites, nil
	}
	f, _ := a.Field(a.Site.Via)
	ref := w.areas.Must(f.Ref)
	refID, _ := row[f.Name].(uint64)
	other, _, err := w.store.ReadRow(ctx, ref.Name, refID)
	if errors.Is(err, chstore.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return w.sitesOf(ctx, ref, refID, other)
}

// prepare checks a write and builds the new row. args are the request's
// arguments; c.id is 0 for a create.
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
		old, oldA, err := w.store.ReadRow(ctx, a.Name, c.id)
		if errors.Is(err, chstore.ErrNotFound) {
			return errNotFound
		}
		if err != nil {
			return err
		}
		sites, err := w.sitesOf(ctx, a, c.id, old)
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

	row := a.ZeroRow()
	for k, v := range c.old {
		row[k] = v
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
		if prop, ok := strings.CutPrefix(k, "custom__"); ok && a.Custom {
			if !l2l.CustomName(prop) {
				c.bad("%s: %q is not a custom property name", k, prop)
				continue
			}
			props[prop] = raw
			continue
		}
		f, ok := a.Field(k)
		switch {
		case a.ServerOwned(k):
			c.bad("%s: set by the server, cannot be written", k)
			continue
		case !ok:
			c.bad("%s: unknown field of %s", k, a.Name)
			continue
		case f.Has(record.Fixed) && !c.create:
			if v, err := f.Parse(raw); err != nil || !record.Equal(v, c.old[f.Name]) {
				c.bad("%s: cannot be changed after the record was created", k)
			}
			continue
		}
		v, err := f.Parse(raw)
		if err != nil {
			c.bad("%s", err)
			continue
		}
		row[f.Name] = v
	}
	if c.create {
		for _, f := range a.Fields {
			if !f.Has(record.Write) {
				continue
			}
			_, given := get(f.Name)
			if f.Has(record.Required) && !given {
				c.bad("%s: required", f.Name)
			}
			if !given && f.Default != nil {
				row[f.Name] = f.Default
			}
		}
	}
	if a.Custom && len(props) > 0 {
		setProps(row, props)
	}
	c.row = row
	if err := w.check(ctx, c); err != nil || len(c.problem) > 0 {
		return err
	}
	return w.reserve(ctx, c)
}

// setProps merges custom properties into a row's parallel arrays; an
// empty value removes the property.
func setProps(row record.Row, props map[string]string) {
	keys, _ := row[record.CustomKeys].([]string)
	vals, _ := row[record.CustomValues].([]string)
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
	row[record.CustomKeys], row[record.CustomValues] = names, outV
}

// check validates the new row as a whole: its sites, its fields' values,
// the records it references, uniqueness.
func (w *writer) check(ctx context.Context, c *change) error {
	a, r := c.area, c.row
	site, _ := r["site"].(uint64) // the record's site, when it has a site field
	switch sites, ok := a.SiteIDs(c.id, r); {
	case !ok || a.Site == record.OwnSite:
		// Through a reference (checked with it), or the record is a site.
	case a.Site == record.SiteField:
		if !within(sites, c.sites) {
			c.bad("site: %d is not one of your sites", site)
		}
	default:
		if !within(sites, c.sites) {
			c.bad("%s: must be one or more of your sites", a.Site.Field)
		}
	}
	for _, f := range a.Fields {
		if !f.Has(record.Write) {
			continue
		}
		v := r[f.Name]
		if f.Has(record.NotEmpty) && record.Empty(v) {
			if f.Options != nil {
				c.bad("%s: at least one of %s", f.Name, strings.Join(f.Options, ", "))
			} else {
				c.bad("%s: must not be empty", f.Name)
			}
			continue
		}
		if f.Check != nil {
			if p := f.Check(v, r); p != "" {
				c.bad("%s: %s", f.Name, p)
			}
		}
	}
	var errs []error
	for _, f := range a.Fields {
		if f.Ref == "" || !f.Has(record.Write) {
			continue
		}
		errs = append(errs, w.checkRef(ctx, c, &f, site))
	}
	for _, u := range a.Unique {
		errs = append(errs, w.checkUnique(ctx, c, u, site))
	}
	return errors.Join(errs...)
}

// checkRef checks that field f of the new row names a live record of its
// Ref area: of the record's site, or, when the record's sites come
// through f, one within the caller's sites. 0 names none, which only a
// record whose sites come through f may not do.
func (w *writer) checkRef(ctx context.Context, c *change, f *record.Field, site uint64) error {
	ref := w.areas.Must(f.Ref)
	id, _ := c.row[f.Name].(uint64)
	via := c.area.Site.Via == f.Name
	if id == 0 && !via {
		return nil
	}
	other, _, err := w.store.ReadRow(ctx, ref.Name, id)
	switch {
	case err != nil && !errors.Is(err, chstore.ErrNotFound):
		return err
	case via:
		var sites []uint64
		if err == nil {
			if sites, err = w.sitesOf(ctx, ref, id, other); err != nil {
				return err
			}
		}
		if !within(sites, c.sites) {
			c.bad("%s: no %s %d", f.Name, ref.Noun(), id)
		}
	case err != nil || other["site"] != site:
		c.bad("%s: no %s %d in site %d", f.Name, ref.Noun(), id, site)
	}
	return nil
}

// checkUnique checks that no other live record has the new row's value of
// u.Field (a zero value is exempt).
func (w *writer) checkUnique(ctx context.Context, c *change, u record.Unique, site uint64) error {
	v := c.row[u.Field]
	if record.Zero(v) {
		return nil
	}
	if !u.PerSite {
		site = 0
	}
	areas := u.Areas
	if len(areas) == 0 {
		areas = []string{c.area.Name}
	}
	for _, other := range areas {
		// Ids are unique across areas: "id != c.id" excludes only the
		// record itself.
		taken, err := w.store.Taken(ctx, other, u.Field, v, site, c.id)
		if err != nil {
			return err
		}
		if !taken {
			continue
		}
		c.bad("%s", takenMessage(u, v))
		break
	}
	return nil
}

// apply writes a prepared change and invalidates caches.
func (w *writer) apply(ctx context.Context, c *change) error {
	now := w.now().UTC().Truncate(time.Second)
	au := chstore.Audit{LastUpdated: now, LastUpdatedBy: c.actor}
	if c.create {
		if c.id == 0 {
			id, err := w.ids.next(ctx)
			if err != nil {
				return err
			}
			c.id = id
		}
		au.Created, au.CreatedBy = now, c.actor
		if c.area.OnCreate == record.IssueKey {
			key, prefix, hash := auth.NewKey()
			c.key = key
			c.row["prefix"], c.row["hash"] = prefix, hash
		}
	} else {
		au.Created, au.CreatedBy = c.oldA.Created, c.oldA.CreatedBy
		// A version above the live one even when clocks disagree.
		au.Version = max(uint64(w.now().UnixNano()), c.oldA.Version+1)
	}
	au.Deleted = c.delete
	if err := w.store.WriteRow(ctx, c.area.Name, c.id, c.row, au); err != nil {
		// The reservations stay: the row may have landed all the same.
		return err
	}
	w.freeOld(ctx, c)
	w.invalidate(ctx, c)
	return nil
}

// invalidate drops what caches hold about the changed record, here and in
// every process sharing Redis.
func (w *writer) invalidate(ctx context.Context, c *change) {
	for _, f := range c.area.Forget {
		switch f {
		case record.ForgetLocation:
			for _, r := range []record.Row{c.old, c.row} {
				if ext, _ := r["externalid"].(string); ext != "" {
					w.inv.forgetLocation(ctx, ext)
				}
			}
		case record.ForgetSiteLocations:
			exts, _ := w.store.ExternalIDsOfSite(ctx, c.id)
			for _, ext := range exts {
				w.inv.forgetLocation(ctx, ext)
			}
		case record.ForgetUserKeys:
			hashes, _ := w.store.KeyHashesOfUser(ctx, c.id)
			for _, h := range hashes {
				w.inv.forgetKey(ctx, h)
			}
		case record.ForgetSiteKeys:
			hashes, _ := w.store.KeyHashesOfSite(ctx, c.id)
			for _, h := range hashes {
				w.inv.forgetKey(ctx, h)
			}
		case record.ForgetKey:
			if h, _ := c.row["hash"].(string); h != "" {
				w.inv.forgetKey(ctx, h)
			}
		}
	}
	w.inv.changed(ctx, c.area.Table)
}

// grantSite adds a new site to the API user's sites and, when the call is
// made for a real user, to that user's.
func (w *writer) grantSite(ctx context.Context, p auth.Principal, actor string, site uint64) error {
	names := []string{p.Username}
	if actor != p.Username {
		names = append(names, actor)
	}
	for _, n := range names {
		u, err := w.store.UserByName(ctx, n)
		if err != nil {
			return fmt.Errorf("grant site %d to %s: %w", site, n, err)
		}
		row, au, err := w.store.ReadRow(ctx, "users", u.ID)
		if err != nil {
			return fmt.Errorf("grant site %d to %s: %w", site, n, err)
		}
		row["sites"] = append(row["sites"].([]uint64), site)
		au.LastUpdated, au.LastUpdatedBy = w.now().UTC(), actor
		au.Version = max(uint64(w.now().UnixNano()), au.Version+1)
		if err := w.store.WriteRow(ctx, "users", u.ID, row, au); err != nil {
			return fmt.Errorf("grant site %d to %s: %w", site, n, err)
		}
		w.invalidate(ctx, &change{area: w.areas.Must("users"), id: u.ID})
	}
	return nil
}
