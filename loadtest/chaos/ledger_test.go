package chaos

import (
	"reflect"
	"testing"

	"github.com/takt/takt/loadtest"
)

func TestTally(t *testing.T) {
	k := func(i int64) partKey { return partKey{"lt_m0001", 1_700_000_000_000 + i} }
	answers := map[partKey]int{
		k(1): 200, k(2): 200, k(3): 200, k(4): 200, // acked
		k(5): 422, k(6): 429, // refused
		k(7): 500, k(8): 0, k(9): 503, // uncertain
	}
	stored := map[partKey]int{
		k(1): 1, k(2): 2, // k(3), k(4) lost; k(2) doubled
		k(6): 1,          // refused yet stored
		k(7): 1, k(8): 3, // uncertain: one stored once, one three times
		k(99): 1, // never sent
	}
	got := tally(answers, stored)
	want := Tally{
		Sent: 9, Acked: 4, Rejected: 2, Uncertain: 3, UncertainStored: 2,
		Stored: 6, Rows: 9, Lost: 2, Doubled: 1 + 2, RejectedStored: 1, Foreign: 1,
		ByStatus: map[int]int64{200: 4, 422: 1, 429: 1, 500: 1, 0: 1, 503: 1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("tally:\ngot  %+v\nwant %+v", got, want)
	}
	if got.OK() {
		t.Fatal("a tally with losses is OK")
	}
	clean := tally(map[partKey]int{k(1): 200, k(2): 500, k(3): 0}, map[partKey]int{k(1): 1, k(2): 1})
	if !clean.OK() || clean.UncertainStored != 1 || clean.Lost != 0 {
		t.Fatalf("clean tally %+v", clean)
	}
}

func TestLedger(t *testing.T) {
	l := newLedger()
	l.add(loadtest.PartOutcome{ExternalID: "a", RecordedMs: 1, Status: 200})
	l.add(loadtest.PartOutcome{ExternalID: "a", RecordedMs: 2, Status: 0})
	l.add(loadtest.PartOutcome{ExternalID: "a", RecordedMs: 2, Status: 200})
	if l.ackedSoFar() != 1 || l.twice != 1 || len(l.parts) != 2 || l.parts[partKey{"a", 2}] != 0 {
		t.Fatalf("ledger %+v", l)
	}
	if first, last := l.errorSpan(); first.IsZero() || last.Before(first) {
		t.Fatalf("error span %v %v", first, last)
	}
}
