package queryapi

// Uniqueness under concurrency. checkUnique asks ClickHouse whether another
// live record has a value, but two creates checking at once both find it
// free. So a write that gives a record a unique value first reserves the
// value for the record in Redis (SET NX, shared by every replica), then
// asks ClickHouse: of simultaneous writes one holds the reservation and the
// others are refused, and a write after the reservation lapsed finds the
// record in ClickHouse. A reservation outlives its write (hold), so it
// covers the write until ClickHouse has the row; a delete or a rename
// gives the old value back at once. Without Redis such writes fail closed.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/takt/takt/internal/record"
)

// errUnavailable means a write needs Redis (a record id, a reservation of
// a unique value) and Redis did not answer: the write is refused, 503.
var errUnavailable = errors.New("redis unavailable")

// reservations hold unique values for the records about to have them.
type reservations struct {
	rdb    *redis.Client
	prefix string        // redisx.Keys.Unique()
	hold   time.Duration // how long a reservation lasts: longer than any write
}

// release deletes a reservation if record id holds it.
var release = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
	return redis.call('DEL', KEYS[1])
end
return 0
`)

// key names the reservation of value v of rule u of area a in site (0
// unless the rule is per site). Areas that share values (lines and
// machines) share keys; the value is hashed to bound the key's length.
func (r *reservations) key(a *record.Area, u record.Unique, site uint64, v any) string {
	scope := a.Name
	if len(u.Areas) > 0 {
		scope = strings.Join(u.Areas, "+")
	}
	if !u.PerSite {
		site = 0
	}
	sum := sha256.Sum256(fmt.Appendf(nil, "%v", v))
	return r.prefix + scope + ":" + u.Field + ":" + strconv.FormatUint(site, 10) + ":" + hex.EncodeToString(sum[:16])
}

// take reserves key for record id; false when another record holds it.
func (r *reservations) take(ctx context.Context, key string, id uint64) (bool, error) {
	ok, err := r.rdb.SetNX(ctx, key, id, r.hold).Result()
	if err != nil {
		return false, fmt.Errorf("reserve unique value: %w: %w", errUnavailable, err)
	}
	if ok {
		return true, nil
	}
	holder, err := r.rdb.Get(ctx, key).Result()
	switch {
	case errors.Is(err, redis.Nil):
		// Released in between: try once more.
		ok, err = r.rdb.SetNX(ctx, key, id, r.hold).Result()
		if err != nil {
			return false, fmt.Errorf("reserve unique value: %w: %w", errUnavailable, err)
		}
		return ok, nil
	case err != nil:
		return false, fmt.Errorf("reserve unique value: %w: %w", errUnavailable, err)
	}
	return holder == strconv.FormatUint(id, 10), nil
}

// give releases the reservations of keys that record id holds. It is best
// effort: a reservation left behind lapses after hold.
func (r *reservations) give(ctx context.Context, keys []string, id uint64) {
	for _, k := range keys {
		_ = release.Run(ctx, r.rdb, []string{k}, id).Err()
	}
}

// reserve reserves the unique values a validated change gives its record
// and checks them again in ClickHouse, now that no other write can take
// them. A create gets its id here (the reservations are the record's). On
// a conflict the change gets a problem and holds nothing.
func (w *writer) reserve(ctx context.Context, c *change) error {
	if c.delete {
		return nil
	}
	site, _ := c.row["site"].(uint64)
	var rules []record.Unique
	for _, u := range c.area.Unique {
		v := c.row[u.Field]
		if record.Zero(v) || !c.create && record.Equal(v, c.old[u.Field]) {
			continue // nothing to take: the value is none, or already the record's
		}
		rules = append(rules, u)
	}
	if len(rules) == 0 {
		return nil
	}
	if c.create && c.id == 0 {
		id, err := w.ids.next(ctx)
		if err != nil {
			return err
		}
		c.id = id
	}
	var held []string
	for _, u := range rules {
		k := w.unique.key(c.area, u, site, c.row[u.Field])
		ok, err := w.unique.take(ctx, k, c.id)
		if err != nil {
			w.unique.give(ctx, held, c.id)
			return err
		}
		if !ok {
			c.bad("%s", takenMessage(u, c.row[u.Field]))
			w.unique.give(ctx, held, c.id)
			return nil
		}
		held = append(held, k)
	}
	before := len(c.problem)
	for _, u := range rules {
		if err := w.checkUnique(ctx, c, u, site); err != nil {
			w.unique.give(ctx, held, c.id)
			return err
		}
	}
	if len(c.problem) > before {
		w.unique.give(ctx, held, c.id)
	}
	return nil
}

// freeOld gives back the reservations of the unique values an applied
// change took from its record (a delete: all; an update: those changed).
func (w *writer) freeOld(ctx context.Context, c *change) {
	if c.create || c.old == nil {
		return
	}
	site, _ := c.old["site"].(uint64)
	var keys []string
	for _, u := range c.area.Unique {
		v := c.old[u.Field]
		if record.Zero(v) || !c.delete && record.Equal(v, c.row[u.Field]) {
			continue
		}
		keys = append(keys, w.unique.key(c.area, u, site, v))
	}
	w.unique.give(ctx, keys, c.id)
}

// takenMessage says that value v of rule u is another record's.
func takenMessage(u record.Unique, v any) string {
	if u.Among != "" {
		return fmt.Sprintf("%s: %q is already used by %s", u.Field, v, u.Among)
	}
	return fmt.Sprintf("%s: %v is already used", u.Field, v)
}
