package chstore

// Finding a page in insertion order through the area's order index
// (record.Area.OrderIndex: parts_order, sorted by order_ms, id).
//
// ClickHouse 18.16 answers ORDER BY ... LIMIT by reading every row the
// WHERE selects and sorting them: it cannot stop after the first rows of
// the sort key (optimize_read_in_order came later). So a page is found in
// windows: a bounded range of order_ms, which the index's primary key
// narrows to its own granules, read and sorted on its own. The first
// window starts at the cursor (or at the first row); when it holds fewer
// rows than the page needs, the next one starts where it ended, wider by
// what the rows found so far say about their density. The windows tile
// the order without overlap, so their rows, each window's sorted, are the
// order's rows from the cursor on, and each row is found once.

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/takt/takt/internal/l2l"
)

// orderStats is what a search of an order index starts from.
type orderStats struct {
	rows  uint64 // rows in the index (with duplicates not yet merged)
	first int64  // at most the smallest order_ms in the index, by less than a minute
	at    time.Time
}

// orderStatsTTL is how long the row count of an index is reused for the
// first window's width.
const orderStatsTTL = 5 * time.Second

// indexPartitionMs is the span of order_ms one partition of an order
// index holds (PARTITION BY intDiv(order_ms, 2592000000), see 0048).
const indexPartitionMs = 2_592_000_000

// indexStats caches orderStats per index table.
type indexStats struct {
	mu sync.Mutex
	m  map[string]orderStats
}

// orderStats returns the row count of index and where its first row lies.
//
// Both come without reading the table: ClickHouse 18.16 reads a whole
// column for count() or min() (100M rows: ~0.1 s and ~2.5 s). The count
// is the active data parts' (system.parts), and only sizes the first
// window. The first row is found by halving a range, from the first
// partition's, while the lower half holds a row (each check reads the
// first block of a key range), down to a minute. It is kept: rows only
// ever join the end of the insertion order (a row is stored with an
// order_ms above the published watermark), so it stays a lower bound of
// every row's order_ms; each refresh of the count checks that no row lies
// below it (one read of at most a block), and searches again if one does.
func (s *Store) orderStats(ctx context.Context, index string) (orderStats, error) {
	s.stats.mu.Lock()
	st, ok := s.stats.m[index]
	s.stats.mu.Unlock()
	if ok && time.Since(st.at) < orderStatsTTL {
		return st, nil
	}
	var rows uint64
	var partition int64
	if err := s.conn.QueryRow(ctx, "SELECT toUInt64(sum(rows)), toInt64(min(toInt64(partition))) FROM system.parts "+
		"WHERE active AND database = currentDatabase() AND table = ?", index).Scan(&rows, &partition); err != nil {
		return orderStats{}, fmt.Errorf("rows of %s: %w", index, err)
	}
	st.rows, st.at = rows, time.Now()
	if ok && rows > 0 {
		// A row below the kept bound (stored with an older order_ms than
		// every row before it: a replay of old data, a test's fixture)
		// would never be shown: look for one, and search again if so.
		n, err := s.QueryUint64(ctx, "SELECT count() FROM (SELECT order_ms FROM "+index+" WHERE order_ms < ? LIMIT 1)", st.first)
		if err != nil {
			return orderStats{}, fmt.Errorf("first row of %s: %w", index, err)
		}
		ok = n == 0
	}
	if !ok && rows > 0 {
		lo, hi := partition*indexPartitionMs, (partition+1)*indexPartitionMs
		for hi-lo > 60_000 {
			mid := lo + (hi-lo)/2
			n, err := s.QueryUint64(ctx, "SELECT count() FROM (SELECT order_ms FROM "+index+" WHERE order_ms >= ? AND order_ms < ? LIMIT 1)", lo, mid)
			if err != nil {
				return orderStats{}, fmt.Errorf("first row of %s: %w", index, err)
			}
			if n > 0 {
				hi = mid
			} else {
				lo = mid
			}
		}
		st.first = lo
		ok = true
	}
	if ok {
		s.stats.mu.Lock()
		if s.stats.m == nil {
			s.stats.m = map[string]orderStats{}
		}
		s.stats.m[index] = st
		s.stats.mu.Unlock()
	}
	return st, nil
}

// windowPositions returns the positions of the first n rows of the page q
// asks for (after the cursor after, else at q.Offset), in insertion
// order, found window by window in a's order index.
func (s *Store) windowPositions(ctx context.Context, a *RecordArea, q l2l.Query, sites []uint64, after *Cursor, n int) ([]Cursor, error) {
	st, err := s.orderStats(ctx, a.index)
	if err != nil {
		return nil, readError(ctx, a, err)
	}
	if st.rows == 0 {
		return nil, nil
	}
	// end is the last order_ms the read may show; windows grow until one
	// reaches stop, which then runs to end. Without a watermark the
	// newest rows are about now; the last window is open-ended anyway.
	end, stop := int64(math.MaxInt64), time.Now().Add(time.Hour).UnixMilli()
	if a.watermarked {
		end, stop = a.watermark, a.watermark
	}
	lo, skip := st.first, q.Offset
	if after != nil {
		lo, skip = max(after.OrderMs, st.first), 0
	}
	// The first window: the index's average density would fill it with
	// the n rows and half as many again.
	span := max(min(stop, time.Now().UnixMilli())-st.first, 1)
	width := max(int64(float64(span)/float64(st.rows)*float64(n)*1.5), minWindow)
	if firstWindowHook != nil {
		width = firstWindowHook(width)
	}
	out := make([]Cursor, 0, min(n, 1<<16))
	for lo <= end && len(out) < n {
		hi := lo + width - 1
		last := hi >= stop || hi < lo
		if last {
			hi = end
		}
		if skip > 0 {
			c, err := s.windowCount(ctx, a, q, sites, lo, hi)
			if err != nil {
				return nil, err
			}
			if c <= skip {
				skip -= c
				if last {
					break
				}
				width, lo = nextWidth(width, c, skip+n), hi+1
				continue
			}
		}
		got, err := s.windowRows(ctx, a, q, sites, after, lo, hi, n-len(out), skip)
		if err != nil {
			return nil, err
		}
		skip = 0
		out = append(out, got...)
		if last {
			break
		}
		width, lo = nextWidth(width, len(got), n-len(out)), hi+1
	}
	return out, nil
}

// minWindow is the narrowest first window (ms).
const minWindow = 1000

// firstWindowHook, when set (by tests), changes the first window's width.
var firstWindowHook func(width int64) int64

// nextWidth is the width of the window after one of width ms that held
// found rows, when need rows are still wanted: as wide as their density
// says the need takes, and a quarter more; at least as wide as this one
// and at most 64 times as wide (8 times after an empty one).
func nextWidth(width int64, found, need int) int64 {
	if found <= 0 {
		return min(width*8, math.MaxInt64/16)
	}
	w := float64(width) * float64(need) / float64(found) * 1.25
	return int64(max(float64(width), min(w, float64(width)*64, math.MaxInt64/16)))
}

// windowRows returns the positions of the first n rows (after skipping
// skip) in insertion order within order_ms [lo, hi].
func (s *Store) windowRows(ctx context.Context, a *RecordArea, q l2l.Query, sites []uint64, after *Cursor, lo, hi int64, n, skip int) ([]Cursor, error) {
	query, args, err := windowSQL(a, q, sites, after, lo, hi, false)
	if err != nil {
		return nil, err
	}
	query += " LIMIT ? OFFSET ?"
	args = append(args, n, skip)
	return s.readCursors(ctx, a, query, args, n, nil)
}

// windowCount counts the rows of q within order_ms [lo, hi].
func (s *Store) windowCount(ctx context.Context, a *RecordArea, q l2l.Query, sites []uint64, lo, hi int64) (int, error) {
	query, args, err := windowSQL(a, q, sites, nil, lo, hi, true)
	if err != nil {
		return 0, err
	}
	n, err := s.QueryUint64(ctx, query, args...)
	if err != nil {
		return 0, readError(ctx, a, err)
	}
	return int(n), nil
}

// windowSQL builds the read of a window: the ids and order_ms of q's rows
// within order_ms [lo, hi] past after, in order (count: their number).
//
// When every filter names a field of the index, the index alone answers
// (DISTINCT: a row the view and the migration's backfill both copied is
// there twice until a merge). Otherwise the area's table answers, for the
// ids the index holds in the window: the IN set's ids give the primary
// key ranges of the table to read.
func windowSQL(a *RecordArea, q l2l.Query, sites []uint64, after *Cursor, lo, hi int64, count bool) (string, []any, error) {
	indexOnly := len(q.Custom) == 0
	for _, f := range q.Filters {
		indexOnly = indexOnly && a.indexed[f.Field]
	}
	var b strings.Builder
	switch {
	case count && indexOnly:
		b.WriteString("SELECT uniqExact(id)")
	case count:
		b.WriteString("SELECT count()")
	case indexOnly:
		b.WriteString("SELECT DISTINCT id, order_ms")
	default:
		b.WriteString("SELECT id, order_ms")
	}
	from := a.from
	if indexOnly {
		from = a.index
	}
	where, args, err := whereFromSQL(a, from, q, sites, nil)
	if err != nil {
		return "", nil, err
	}
	b.WriteString(where)
	b.WriteString(" AND order_ms >= ? AND order_ms <= ?")
	args = append(args, lo, hi)
	if !indexOnly {
		b.WriteString(" AND id IN (SELECT id FROM " + a.index + " WHERE order_ms >= ? AND order_ms <= ? AND " + a.site + " IN ?)")
		args = append(args, lo, hi, groupSet(sites))
	}
	if after != nil {
		b.WriteString(" AND (order_ms > ? OR order_ms = ? AND id > ?)")
		args = append(args, after.OrderMs, after.OrderMs, after.ID)
	}
	if count {
		return b.String(), args, nil
	}
	if err := orderSQL(&b, a, q); err != nil {
		return "", nil, err
	}
	return b.String(), args, nil
}
