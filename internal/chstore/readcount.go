package chstore

import (
	"context"
	"sync/atomic"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// ReadCount adds up what ClickHouse read for the queries run under a
// context made by CountReads: rows and uncompressed bytes, as the server
// reports them in its progress packets. It is safe for concurrent use.
type ReadCount struct {
	rows, bytes atomic.Uint64
}

// Rows returns the rows read so far.
func (c *ReadCount) Rows() uint64 { return c.rows.Load() }

// Bytes returns the bytes read so far.
func (c *ReadCount) Bytes() uint64 { return c.bytes.Load() }

type readCountKey struct{}

// CountReads returns a context whose queries add what ClickHouse read for
// them to the returned ReadCount (ReadCountOf finds it again). A context
// that already counts is returned as it is.
func CountReads(ctx context.Context) (context.Context, *ReadCount) {
	if c := ReadCountOf(ctx); c != nil {
		return ctx, c
	}
	c := &ReadCount{}
	ctx = context.WithValue(ctx, readCountKey{}, c)
	return clickhouse.Context(ctx, clickhouse.WithProgress(func(p *clickhouse.Progress) {
		c.rows.Add(p.Rows)
		c.bytes.Add(p.Bytes)
	})), c
}

// ReadCountOf returns the ReadCount of ctx (nil: its queries are not
// counted).
func ReadCountOf(ctx context.Context) *ReadCount {
	c, _ := ctx.Value(readCountKey{}).(*ReadCount)
	return c
}
