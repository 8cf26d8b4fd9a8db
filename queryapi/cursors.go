package queryapi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/l2l"
)

// cursors remembers where the next page of a paging loop in insertion
// order starts, so that the page at a deep offset is read from there
// (keyset) instead of by counting offset rows again. Entries live in Redis,
// shared by every replica, for cursorTTL; they name the query (area,
// filters, sites, the fields do not matter) and the offset. A cursor stays
// correct for as long as it exists because rows only join the end of the
// insertion order. Without an entry (first page, expired, Redis down) the
// page is read by offset: slower, same rows.
type cursors struct {
	rdb    *redis.Client
	prefix string // <redis prefix>cursor:
}

const (
	cursorTTL     = 10 * time.Minute
	cursorTimeout = 50 * time.Millisecond
)

// key names the position offset of query q over area for sites.
func (c *cursors) key(area string, q l2l.Query, sites []uint64, offset int) string {
	var b strings.Builder
	b.WriteString(area)
	for _, f := range q.Filters {
		b.WriteString("\x00" + f.Field + "\x00" + string(f.Op) + "\x00" + l2l.FormatValue(0, f.Value))
	}
	for _, f := range q.Custom {
		b.WriteString("\x00custom\x00" + f.Field + "\x00" + string(f.Op) + "\x00" + l2l.FormatValue(0, f.Value))
	}
	s := slices.Clone(sites)
	slices.Sort(s)
	for _, id := range s {
		b.WriteString("\x01" + strconv.FormatUint(id, 10))
	}
	sum := sha256.Sum256([]byte(b.String()))
	return c.prefix + hex.EncodeToString(sum[:16]) + ":" + strconv.Itoa(offset)
}

func (c *cursors) get(ctx context.Context, key string) (chstore.Cursor, bool) {
	if c == nil || c.rdb == nil {
		return chstore.Cursor{}, false
	}
	ctx, cancel := context.WithTimeout(ctx, cursorTimeout)
	defer cancel()
	b, err := c.rdb.Get(ctx, key).Bytes()
	var cur chstore.Cursor
	if err != nil || json.Unmarshal(b, &cur) != nil {
		return cur, false
	}
	return cur, true
}

func (c *cursors) put(ctx context.Context, key string, cur chstore.Cursor) {
	if c == nil || c.rdb == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, cursorTimeout)
	defer cancel()
	b, _ := json.Marshal(cur)
	if err := c.rdb.Set(ctx, key, b, cursorTTL).Err(); err != nil && !errors.Is(err, context.Canceled) {
		return
	}
}
