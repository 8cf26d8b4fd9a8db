package chstore

// Limits of one query. A Store made WithLimits sends ClickHouse's own
// limits with every query (max_memory_usage, and max_execution_time: the
// limit's, or sooner when the context's deadline is), so that a request
// the query API serves cannot make ClickHouse work past its budget; record
// reads add max_result_rows per statement. Only integer settings go with a
// query: 18.16's protocol revision sends no other kind.

import (
	"context"
	"errors"
	"maps"
	"math"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// ErrTooBig means ClickHouse stopped a query that needed more memory, or
// read or returned more rows, than its limits allow: the request must
// ask for less.
var ErrTooBig = errors.New("query exceeds its limits")

// ErrBusy means every connection of the Store's pool stayed in use for as
// long as a query may wait for one (the dial timeout): the process has
// more queries in flight than its pool serves. The caller may try again
// shortly; nothing is wrong with the query.
var ErrBusy = errors.New("every ClickHouse connection is in use")

// ClickHouse error codes of limits.
const (
	codeTooManyRows      = 158 // max_rows_to_read
	codeTimeoutExceeded  = 159 // max_execution_time
	codeTooSlow          = 160 // estimated to run past max_execution_time
	codeMemoryLimit      = 241 // max_memory_usage
	codeTooManyRowsBytes = 396 // max_result_rows
)

// Limit says whether err is a query stopped by a limit: ErrTimeout when
// it ran, or ClickHouse estimated it would run, past its time (or its
// context's deadline passed), ErrTooBig when it needed more memory or rows
// than allowed, ErrBusy when it got no connection of the pool in time,
// nil otherwise.
func Limit(err error) error {
	var ex *clickhouse.Exception
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrBusy) || errors.Is(err, clickhouse.ErrAcquireConnTimeout):
		// Before the deadline check: the pool's wait ends with a
		// context whose cause is this error.
		return ErrBusy
	case errors.Is(err, ErrTimeout) || errors.Is(err, context.DeadlineExceeded):
		return ErrTimeout
	case errors.Is(err, ErrTooBig):
		return ErrTooBig
	case errors.As(err, &ex):
		switch ex.Code {
		case codeTimeoutExceeded, codeTooSlow:
			return ErrTimeout
		case codeTooManyRows, codeMemoryLimit, codeTooManyRowsBytes:
			return ErrTooBig
		}
	}
	return nil
}

// Limits bound the ClickHouse work of every query of a Store.
type Limits struct {
	// MaxMemoryUsage is max_memory_usage, in bytes (0: the server's).
	MaxMemoryUsage int
	// MaxExecutionTime is max_execution_time, in whole seconds rounded up
	// (0: none but the context's deadline).
	MaxExecutionTime time.Duration
}

// WithLimits returns a Store like s whose queries carry l (see Limits);
// the two share their connections.
func (s *Store) WithLimits(l Limits) *Store {
	c := *s
	c.conn = limitedConn{Conn: s.conn, limits: l}
	return &c
}

// limitedConn sends its limits with every query; a statement's own
// settings (withSettings) win.
type limitedConn struct {
	driver.Conn
	limits Limits
}

func (c limitedConn) limit(ctx context.Context) context.Context {
	set := clickhouse.Settings{}
	if c.limits.MaxMemoryUsage > 0 {
		set["max_memory_usage"] = c.limits.MaxMemoryUsage
	}
	budget := c.limits.MaxExecutionTime
	if deadline, ok := ctx.Deadline(); ok && (budget == 0 || time.Until(deadline) < budget) {
		budget = time.Until(deadline)
	}
	if budget != 0 {
		set["max_execution_time"] = max(int(math.Ceil(budget.Seconds())), 1)
	}
	own, _ := ctx.Value(settingsKey{}).(map[string]any)
	maps.Copy(set, own)
	return withSettings(ctx, set)
}

func (c limitedConn) Query(ctx context.Context, query string, args ...any) (driver.Rows, error) {
	return c.Conn.Query(c.limit(ctx), query, args...)
}

func (c limitedConn) QueryRow(ctx context.Context, query string, args ...any) driver.Row {
	return c.Conn.QueryRow(c.limit(ctx), query, args...)
}

func (c limitedConn) Select(ctx context.Context, dest any, query string, args ...any) error {
	return c.Conn.Select(c.limit(ctx), dest, query, args...)
}
