package chstore_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/l2l"
	"github.com/takt/takt/internal/testenv"
)

// TestLimit: which errors are a query stopped by its limits.
func TestLimit(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want error
	}{
		{nil, nil},
		{errors.New("connection refused"), nil},
		{fmt.Errorf("read parts: %w", context.DeadlineExceeded), chstore.ErrTimeout},
		{&clickhouse.Exception{Code: 159, Message: "Timeout exceeded: elapsed 10.1 seconds"}, chstore.ErrTimeout},
		{fmt.Errorf("x: %w", &clickhouse.Exception{Code: 160, Message: "Estimated query execution time (12 seconds) is too long"}), chstore.ErrTimeout},
		{&clickhouse.Exception{Code: 241, Message: "Memory limit (for query) exceeded"}, chstore.ErrTooBig},
		{&clickhouse.Exception{Code: 396, Message: "Limit for result exceeded"}, chstore.ErrTooBig},
		{&clickhouse.Exception{Code: 158, Message: "Limit for rows to read exceeded"}, chstore.ErrTooBig},
		{&clickhouse.Exception{Code: 60, Message: "Table doesn't exist"}, nil},
	} {
		if got := chstore.Limit(tt.err); got != tt.want {
			t.Errorf("Limit(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

// TestLimitsStopQueries: a Store with limits sends them, and ClickHouse
// stops a read that needs more memory than allowed with ErrTooBig.
func TestLimitsStopQueries(t *testing.T) {
	s, _ := testenv.ClickHouse(t)
	seedSpreadParts(t, s, 20_000)
	a, _ := chstore.RecordAreaByName("parts")
	q, err := l2l.Parse(url.Values{"limit": {"2000"}, "order_by": {"-product_code,cycle_time"}}, a.Schema())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.Records(ctx, a, q, []uint64{1}); err != nil {
		t.Fatalf("without limits: %v", err)
	}
	small := s.WithLimits(chstore.Limits{MaxMemoryUsage: 256 << 10, MaxExecutionTime: 5 * time.Second})
	_, err = small.Records(ctx, a, q, []uint64{1})
	if !errors.Is(err, chstore.ErrTooBig) {
		t.Fatalf("with 256 KiB: %v, want ErrTooBig", err)
	}
}
