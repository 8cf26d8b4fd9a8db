package queryapi

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
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
//
// A read also looks a few pages ahead (chstore.RecordArea.WithLookAhead);
// the positions of the rows of those pages are remembered too, under the
// key of each page's offset, so the loop reads them by id without the scan
// that finds a page's ids. A whole page at a position a client reached
// never changes, for the same reason a cursor stays correct.
type cursors struct {
	rdb    *redis.Client
	prefix string // redisx.Keys.Cursors
}

const (
	cursorTTL     = 10 * time.Minute
	cursorTimeout = 50 * time.Millisecond
	// rowsTTL keeps the pages a read looked ahead to: the paging loop asks
	// for them within seconds; they take 16 bytes a row.
	rowsTTL      = 2 * time.Minute
	rowsSuffix   = ":rows"
	positionSize = 16 // order_ms int64, id uint64, little-endian
	// keyVersion names the layout of the entries: a key of another
	// layout (positions by inserted_at) is never read as one of these.
	keyVersion = "o1"
)

// key names the position offset of query q over area for sites.
func (c *cursors) key(area string, q l2l.Query, sites []uint64, offset int) string {
	var b strings.Builder
	b.WriteString(keyVersion + "\x00" + area)
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

// get returns what is remembered about the page at key for a request of
// limit rows: the positions of its rows (at, when a read looked ahead to
// it and the entry holds at least limit of them; the first limit), or
// where it starts (cur, ok).
func (c *cursors) get(ctx context.Context, key string, limit int) (at []chstore.Cursor, cur chstore.Cursor, ok bool) {
	if c == nil || c.rdb == nil {
		return nil, cur, false
	}
	ctx, cancel := context.WithTimeout(ctx, cursorTimeout)
	defer cancel()
	vals, err := c.rdb.MGet(ctx, key+rowsSuffix, key).Result()
	if err != nil || len(vals) != 2 {
		return nil, cur, false
	}
	if s, isStr := vals[0].(string); isStr && len(s)%positionSize == 0 && len(s)/positionSize >= limit {
		at = make([]chstore.Cursor, limit)
		for i := range at {
			p := s[i*positionSize:]
			at[i] = chstore.Cursor{OrderMs: int64(binary.LittleEndian.Uint64([]byte(p[:8]))), ID: binary.LittleEndian.Uint64([]byte(p[8:16]))}
		}
		return at, at[limit-1], true
	}
	if s, isStr := vals[1].(string); isStr && json.Unmarshal([]byte(s), &cur) == nil {
		return nil, cur, true
	}
	return nil, cur, false
}

// put remembers, for the query q of area over sites, where offset starts
// (next), and the rows of each whole page of limit rows in ahead (the
// positions after offset, see chstore.RecordPage.Ahead).
func (c *cursors) put(ctx context.Context, area string, q l2l.Query, sites []uint64, offset int, next chstore.Cursor, ahead []chstore.Cursor) {
	if c == nil || c.rdb == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, cursorTimeout)
	defer cancel()
	pipe := c.rdb.Pipeline()
	b, _ := json.Marshal(next)
	pipe.Set(ctx, c.key(area, q, sites, offset), b, cursorTTL)
	// Only whole pages: a short one would be the end of the records as
	// they are now, and grows while parts arrive.
	for i := 0; i+q.Limit <= len(ahead); i += q.Limit {
		buf := make([]byte, 0, q.Limit*positionSize)
		for _, p := range ahead[i : i+q.Limit] {
			buf = binary.LittleEndian.AppendUint64(buf, uint64(p.OrderMs))
			buf = binary.LittleEndian.AppendUint64(buf, p.ID)
		}
		pipe.Set(ctx, c.key(area, q, sites, offset+i)+rowsSuffix, buf, rowsTTL)
	}
	// Best effort: without the entries the next pages are read by cursor
	// or by offset, same rows.
	_, _ = pipe.Exec(ctx)
}
