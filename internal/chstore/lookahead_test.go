package chstore_test

import (
	"context"
	"net/url"
	"reflect"
	"testing"
	"time"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/l2l"
	"github.com/takt/takt/internal/testenv"
)

// TestLookAhead: a read in insertion order with look-ahead returns the
// positions of the following pages, and reading a page at those positions
// (RecordsAt) gives what reading it after the cursor (RecordsAfter) gives.
func TestLookAhead(t *testing.T) {
	s, _ := testenv.ClickHouse(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	seedRecords(t, ctx, s) // parts 0, 1, 2 of site 1 (and one of site 2)

	parts, _ := chstore.RecordAreaByName("parts")
	a := parts.WithLookAhead(3)
	q, err := l2l.Parse(url.Values{"limit": {"1"}}, a.Schema())
	if err != nil {
		t.Fatal(err)
	}
	first, err := s.Records(ctx, a, q, []uint64{1})
	if err != nil {
		t.Fatal(err)
	}
	if len(first.Rows) != 1 || len(first.Ahead) != 2 || first.Next == nil {
		t.Fatalf("first page: %d rows, %d positions ahead, next %v; want 1, 2, set", len(first.Rows), len(first.Ahead), first.Next)
	}
	if noAhead, err := s.Records(ctx, parts, q, []uint64{1}); err != nil || len(noAhead.Ahead) != 0 {
		t.Fatalf("without look-ahead: %d positions, %v", len(noAhead.Ahead), err)
	}
	cur := *first.Next
	for i, pos := range first.Ahead {
		at, err := s.RecordsAt(ctx, a, q, []uint64{1}, []chstore.Cursor{pos})
		if err != nil {
			t.Fatal(err)
		}
		after, err := s.RecordsAfter(ctx, a, q, []uint64{1}, cur)
		if err != nil {
			t.Fatal(err)
		}
		at.Ahead, after.Ahead = nil, nil
		if !reflect.DeepEqual(at, after) {
			t.Fatalf("page %d: by position %+v, after the cursor %+v", i+1, at, after)
		}
		cur = *at.Next
	}
	// The end: nothing after the last part of site 1.
	if end, err := s.RecordsAfter(ctx, a, q, []uint64{1}, cur); err != nil || len(end.Rows) != 0 || len(end.Ahead) != 0 {
		t.Fatalf("after the last part: %d rows, %d ahead, %v", len(end.Rows), len(end.Ahead), err)
	}
	if _, err := s.RecordsAt(ctx, a, q, []uint64{1}, first.Ahead); err == nil {
		t.Error("RecordsAt with more positions than the limit accepted")
	}
}
