package chstore

// Recording: a Store opened with Config.Recorder reports every statement it
// sends, with its arguments, after ClickHouse answered it. The
// compatibility check (internal/chcompat) uses it to run the very
// statements the services send on a second ClickHouse; services leave it
// off and pay nothing for it.

import (
	"context"
	"maps"
	"reflect"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// StatementKind says how a statement was sent.
type StatementKind uint8

// Statement kinds.
const (
	// StatementExec returns no rows: DDL, ALTER, INSERT ... SELECT.
	StatementExec StatementKind = iota + 1
	// StatementQuery returns rows.
	StatementQuery
	// StatementInsert is a batch: Query is "INSERT INTO t (a, b, ...)" and
	// Rows holds the values.
	StatementInsert
)

// Statement is one statement a Store sent.
type Statement struct {
	Kind StatementKind
	// Query is the text as the Store wrote it, with ? placeholders.
	Query string
	// Args are the placeholders' values; Rows an insert's rows, each in
	// the order of the insert's column list.
	Args []any
	Rows [][]any
	// Types are an insert's column types, in the order of its column list.
	Types []string
	// Settings are the per-query settings sent with it.
	Settings map[string]any
	// Err is ClickHouse's answer: nil when the statement succeeded.
	Err error
}

// Recorder receives the statements of a Store (Config.Recorder). Record is
// called after ClickHouse answered, before the caller reads any row, and
// from as many goroutines as use the Store.
type Recorder interface {
	Record(ctx context.Context, st Statement)
}

// settingsKey carries per-query settings for the recorder: clickhouse-go
// keeps the ones it sends to itself.
type settingsKey struct{}

// withSettings sends set, with the settings ctx already carries (set
// wins), with the queries run under the returned context.
func withSettings(ctx context.Context, set clickhouse.Settings) context.Context {
	all := clickhouse.Settings{}
	if own, ok := ctx.Value(settingsKey{}).(map[string]any); ok {
		maps.Copy(all, own)
	}
	maps.Copy(all, set)
	return clickhouse.Context(context.WithValue(ctx, settingsKey{}, map[string]any(all)), clickhouse.WithSettings(all))
}

// recordingConn reports every statement sent through it; the methods it
// does not override send none.
type recordingConn struct {
	driver.Conn
	rec Recorder
}

func (c recordingConn) record(ctx context.Context, st Statement) {
	st.Settings, _ = ctx.Value(settingsKey{}).(map[string]any)
	c.rec.Record(ctx, st)
}

func (c recordingConn) Exec(ctx context.Context, query string, args ...any) error {
	err := c.Conn.Exec(ctx, query, args...)
	c.record(ctx, Statement{Kind: StatementExec, Query: query, Args: args, Err: err})
	return err
}

func (c recordingConn) Query(ctx context.Context, query string, args ...any) (driver.Rows, error) {
	rows, err := c.Conn.Query(ctx, query, args...)
	c.record(ctx, Statement{Kind: StatementQuery, Query: query, Args: args, Err: err})
	return rows, err
}

func (c recordingConn) QueryRow(ctx context.Context, query string, args ...any) driver.Row {
	row := c.Conn.QueryRow(ctx, query, args...)
	c.record(ctx, Statement{Kind: StatementQuery, Query: query, Args: args, Err: row.Err()})
	return row
}

func (c recordingConn) Select(ctx context.Context, dest any, query string, args ...any) error {
	err := c.Conn.Select(ctx, dest, query, args...)
	c.record(ctx, Statement{Kind: StatementQuery, Query: query, Args: args, Err: err})
	return err
}

func (c recordingConn) PrepareBatch(ctx context.Context, query string, opts ...driver.PrepareBatchOption) (driver.Batch, error) {
	b, err := c.Conn.PrepareBatch(ctx, query, opts...)
	if err != nil {
		c.record(ctx, Statement{Kind: StatementInsert, Query: query, Err: err})
		return nil, err
	}
	return &recordingBatch{Batch: b, ctx: ctx, conn: c, query: query}, nil
}

// recordingBatch keeps what is appended to a batch, by row (Append) or by
// column (Column(i).Append), and reports it at Send.
type recordingBatch struct {
	driver.Batch
	ctx   context.Context
	conn  recordingConn
	query string
	rows  [][]any
	cols  map[int][]any
}

func (b *recordingBatch) Append(v ...any) error {
	if err := b.Batch.Append(v...); err != nil {
		return err
	}
	b.rows = append(b.rows, append([]any(nil), v...))
	return nil
}

func (b *recordingBatch) Column(i int) driver.BatchColumn {
	return recordingColumn{BatchColumn: b.Batch.Column(i), b: b, i: i}
}

func (b *recordingBatch) Send() error {
	var types []string
	for _, c := range b.Batch.Columns() {
		types = append(types, string(c.Type()))
	}
	err := b.Batch.Send()
	rows := b.rows
	for i, vs := range b.cols {
		for len(rows) < len(vs) {
			rows = append(rows, nil)
		}
		for r, v := range vs {
			for len(rows[r]) <= i {
				rows[r] = append(rows[r], nil)
			}
			rows[r][i] = v
		}
	}
	b.conn.record(b.ctx, Statement{Kind: StatementInsert, Query: b.query, Rows: rows, Types: types, Err: err})
	return err
}

// recordingColumn keeps the values appended to column i of a batch.
type recordingColumn struct {
	driver.BatchColumn
	b *recordingBatch
	i int
}

// Append appends a column's values (a slice) or one value.
func (c recordingColumn) Append(v any) error {
	if err := c.BatchColumn.Append(v); err != nil {
		return err
	}
	if c.b.cols == nil {
		c.b.cols = map[int][]any{}
	}
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Slice {
		for j := range rv.Len() {
			c.b.cols[c.i] = append(c.b.cols[c.i], rv.Index(j).Interface())
		}
		return nil
	}
	c.b.cols[c.i] = append(c.b.cols[c.i], v)
	return nil
}

// AppendRow appends one value.
func (c recordingColumn) AppendRow(v any) error {
	if err := c.BatchColumn.AppendRow(v); err != nil {
		return err
	}
	if c.b.cols == nil {
		c.b.cols = map[int][]any{}
	}
	c.b.cols[c.i] = append(c.b.cols[c.i], v)
	return nil
}
