package processor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/period"
	"github.com/takt/takt/internal/testenv"
	"github.com/takt/takt/internal/wire"
)

func TestEdgeParts(t *testing.T) {
	p := func(id uint64, ms int64) chstore.PeriodPart { return chstore.PeriodPart{ID: id, RecordedMs: ms} }
	for _, tc := range []struct {
		name string
		in   []chstore.PeriodPart
		want []uint64
	}{
		{"nothing", nil, nil},
		{"inside only", []chstore.PeriodPart{p(2, 150), p(1, 120)}, []uint64{1, 2}},
		{"the last before and the first after", []chstore.PeriodPart{p(9, 300), p(1, 10), p(2, 90), p(3, 100), p(4, 200),
			p(5, 201), p(6, 250)}, []uint64{2, 3, 4, 5}},
		{"a part stored and pending counts once", []chstore.PeriodPart{p(3, 150), p(3, 150), p(2, 150)}, []uint64{2, 3}},
		{"only outside", []chstore.PeriodPart{p(1, 50), p(2, 60), p(3, 250)}, []uint64{2, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []uint64
			for _, q := range edgeParts(tc.in, 100, 200) {
				got = append(got, q.ID)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("got %v, want %v", got, tc.want)
				}
			}
		})
	}
}

// TestDeriveCutsAtTheWindow: the periods of a fresh machine, cut to the
// window; the first one, begun before it, starts at its start.
func TestDeriveCutsAtTheWindow(t *testing.T) {
	key := period.Key{Kind: "line", ID: 7}
	base := time.Date(2024, 3, 4, 6, 0, 0, 0, time.UTC).UnixMilli()
	minute := int64(time.Minute / time.Millisecond)
	var parts []chstore.PeriodPart
	// Parts every minute 06:01–06:30, then 07:01–07:30: one stop
	// 06:30–07:00 at a 60 s threshold.
	for i := int64(1); i <= 30; i++ {
		parts = append(parts, chstore.PeriodPart{ID: uint64(i), RecordedMs: base + i*minute, CycleTime: 60, HasCycleTime: true},
			chstore.PeriodPart{ID: uint64(100 + i), RecordedMs: base + (60+i)*minute, CycleTime: 60, HasCycleTime: true})
	}
	from, to := base+10*minute, base+70*minute
	rows := derive(key, period.Config{Threshold: time.Minute}, nil, edgeParts(parts, from, to), from, to, to)
	type span struct {
		state      period.State
		start, end int64
	}
	want := []span{{period.Running, from, base + 30*minute}, {period.Down, base + 30*minute, base + 60*minute},
		{period.Running, base + 60*minute, to}}
	if len(rows) != len(want) {
		t.Fatalf("rows %+v, want %+v", rows, want)
	}
	for i, r := range rows {
		if (span{r.State, r.Start, r.End}) != want[i] || r.Open {
			t.Errorf("row %d: %+v, want %+v", i, r, want[i])
		}
	}
	if rows[0].ID != period.PeriodID(key, from) || rows[1].ID != period.PeriodID(key, base+30*minute) {
		t.Errorf("ids: the cut period is known by the window's start, the others by their own")
	}
	if rows[1].FirstOfStop != period.FirstPiece {
		t.Errorf("the stop's first piece is not marked: %+v", rows[1])
	}
}

func TestDispatchWindows(t *testing.T) {
	rows := []chstore.PeriodRow{
		{Start: 100, End: 200, Dispatch: 5, DispatchType: 9},
		{Start: 50, End: 60},
		{Start: 200, End: 300, Dispatch: 5, DispatchType: 9},
		{Start: 400, Open: true, Dispatch: 6, DispatchType: 9},
	}
	got := dispatchWindows(rows)
	if len(got) != 1 || got[0] != (period.Window{Dispatch: 5, Type: 9, Start: 100, End: 300}) {
		t.Fatalf("windows %+v", got)
	}
}

func TestSamePeriodAtStoredPrecision(t *testing.T) {
	a := chstore.PeriodRow{ID: 1, State: "down", Start: 1000, End: 5000, Reason: 3, RuleVersion: 8}
	b := a
	b.Start, b.End = 1400, 5999 // what the table keeps of them: whole seconds
	if !samePeriod(a, b) {
		t.Error("rows equal at whole seconds differ")
	}
	for name, mut := range map[string]func(*chstore.PeriodRow){
		"rules":  func(r *chstore.PeriodRow) { r.RuleVersion = 9 },
		"reason": func(r *chstore.PeriodRow) { r.Reason = 0 },
		"end":    func(r *chstore.PeriodRow) { r.End = 6000 },
		"open":   func(r *chstore.PeriodRow) { r.Open = true },
	} {
		c := a
		mut(&c)
		if samePeriod(a, c) {
			t.Errorf("%s: a changed row is the same", name)
		}
	}
}

// recomputeSink is memSink with an empty window to recompute: no result
// yet, no parts, no periods; it counts the recompute's writes.
type recomputeSink struct {
	*memSink
	writes atomic.Int32
}

func (s *recomputeSink) RecomputeByID(_ context.Context, id string) (chstore.Recompute, error) {
	return chstore.Recompute{}, fmt.Errorf("recompute %s: %w", id, chstore.ErrNotFound)
}
func (*recomputeSink) PeriodParts(context.Context, string, uint64, int64, int64, int) ([]chstore.PeriodPart, error) {
	return nil, nil
}
func (*recomputeSink) LocationPeriods(context.Context, string, uint64, int64, int64) ([]chstore.PeriodRow, error) {
	return nil, nil
}
func (*recomputeSink) PeriodHistory(context.Context, string, uint64, string) ([]chstore.PeriodRow, error) {
	return nil, nil
}
func (s *recomputeSink) InsertPeriodHistory(context.Context, string, time.Time, []chstore.PeriodRow) error {
	s.writes.Add(1)
	return nil
}
func (s *recomputeSink) InsertRecompute(context.Context, chstore.Recompute) error {
	s.writes.Add(1)
	return nil
}
func (s *recomputeSink) ReclassifyParts(context.Context, string, uint64, int64, int64, [][2]int64) error {
	s.writes.Add(1)
	return nil
}
func (s *recomputeSink) ReconcileClassRollup(context.Context, string, uint64, int64, int64) (int, error) {
	s.writes.Add(1)
	return 0, nil
}

// TestRecomputeBehindTheFence: a recompute of a location whose partition
// the group's assignment gives another member writes nothing, not even
// its result; one of the member's own partition runs.
func TestRecomputeBehindTheFence(t *testing.T) {
	e := newFakeEnv(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	member, owns := groupMembers(ctx, t, e)
	a := member()
	owns(a, 2)
	b := member()
	mine := owns(b, 1)
	theirs := 1 - mine[0]
	owns(a, 1)

	key := period.Key{Kind: "line", ID: 7}
	start := time.Date(2024, 3, 4, 6, 0, 0, 0, time.UTC)
	rc := &wire.Recompute{Control: wire.Control{ID: "r1", Site: 1, LocationKind: key.Kind, LocationID: key.ID, ExternalID: "l7"},
		StartMs: start.UnixMilli(), EndMs: start.Add(time.Hour).UnixMilli()}
	for _, tc := range []struct {
		name      string
		partition int32
		refused   bool
	}{
		{"the partition of another member", theirs, true},
		{"its own partition", mine[0], false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := &recomputeSink{memSink: newMemSink()}
			c := &consumer{cfg: e.config(), cl: b, store: sink, logger: testenv.Logger(t)}
			st := &partState{partition: tc.partition, block: new(chstore.PartsBlock), validGen: -1}
			ls := &locState{key: key, site: 1, extID: "l7", m: period.New(key, period.Config{})}
			_, _, err := c.recompute(ctx, st, ls, locationConfig{}, rc, 5, time.Now())
			switch {
			case tc.refused && !errors.Is(err, errLostMembership):
				t.Fatalf("recompute: %v, want the writes refused as lost membership", err)
			case tc.refused && sink.writes.Load() != 0:
				t.Fatalf("%d writes of a recompute the fence refused", sink.writes.Load())
			case !tc.refused && (err != nil || sink.writes.Load() == 0):
				t.Fatalf("recompute of its own partition: %v, %d writes", err, sink.writes.Load())
			}
		})
	}
	// The request as the loop runs it: refused, it gives the partition
	// back to be read again from the request on.
	t.Run("given back", func(t *testing.T) {
		sink := &recomputeSink{memSink: newMemSink()}
		c := testConsumer(t)
		c.cfg, c.cl, c.store, c.fctx = e.config(), b, sink, ctx
		st := &partState{partition: theirs, block: new(chstore.PartsBlock), validGen: -1, positioned: true,
			next: kgo.EpochOffset{Epoch: -1, Offset: 5}}
		c.parts = map[int32]*partState{theirs: st}
		if err := c.applyRecompute(ctx, st, rc, 5, time.Now()); err != nil {
			t.Fatal(err)
		}
		if !st.rewound || sink.writes.Load() != 0 || st.next.Offset != 5 {
			t.Fatalf("refused request: rewound %t, %d writes, position %d; want read again from 5, nothing written",
				st.rewound, sink.writes.Load(), st.next.Offset)
		}
	})
}

// windowSink is recomputeSink whose window's parts cannot be read: err is
// what every read of them answers; kept, the versions an earlier run of
// the request kept; result, the result recorded.
type windowSink struct {
	*recomputeSink
	err    error
	kept   []chstore.PeriodRow
	reads  atomic.Int32
	result atomic.Pointer[chstore.Recompute]
}

func (s *windowSink) PeriodParts(context.Context, string, uint64, int64, int64, int) ([]chstore.PeriodPart, error) {
	s.reads.Add(1)
	return nil, s.err
}
func (s *windowSink) PeriodHistory(context.Context, string, uint64, string) ([]chstore.PeriodRow, error) {
	return s.kept, nil
}
func (s *windowSink) InsertRecompute(_ context.Context, r chstore.Recompute) error {
	s.result.Store(&r)
	return s.recomputeSink.InsertRecompute(context.Background(), r)
}

// TestRecomputeOfAnUnreadableWindow: a request whose window holds more
// parts than a recompute may read, or whose parts' read runs out of time
// on every attempt, is recorded as failed with the reason, and the
// partition's loop goes on; before, it was retried for as long as the
// process ran, holding the partition. One an earlier run already wrote
// for is not refused: it is retried, so its window is never left half
// derived.
func TestRecomputeOfAnUnreadableWindow(t *testing.T) {
	e := newFakeEnv(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	member, owns := groupMembers(ctx, t, e)
	cl := member()
	mine := owns(cl, 1)[0]

	start := time.Date(2024, 3, 4, 6, 0, 0, 0, time.UTC)
	rc := &wire.Recompute{Control: wire.Control{ID: "r1", Site: 1, LocationKind: "line", LocationID: 7, ExternalID: "l7"},
		StartMs: start.UnixMilli(), EndMs: start.Add(time.Hour).UnixMilli()}
	tooMany := fmt.Errorf("parts of line 7: more than 10 in the window: %w", chstore.ErrTooManyParts)
	for _, tc := range []struct {
		name    string
		err     error
		kept    []chstore.PeriodRow
		reads   int32  // reads of the parts before the answer
		failed  string // in the result's error; "": no result
		waitFor time.Duration
	}{
		{"more parts than it may read", tooMany, nil, 1, "more than 10 parts", 0},
		{"every read runs out of time", context.DeadlineExceeded, nil, recomputeTimeouts, "ran out of time", 0},
		{"an earlier run wrote", tooMany, []chstore.PeriodRow{{ID: 1, Version: 3}}, 0, "", time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := &windowSink{recomputeSink: &recomputeSink{memSink: newMemSink()}, err: tc.err, kept: tc.kept}
			c := testConsumer(t)
			c.cfg, c.cl, c.store, c.fctx = e.config(), cl, sink, ctx
			c.cfg.RecomputeMaxParts = 10
			st := &partState{partition: mine, block: new(chstore.PartsBlock), validGen: -1, positioned: true,
				next: kgo.EpochOffset{Epoch: -1, Offset: 5}}
			c.parts = map[int32]*partState{mine: st}
			rctx := ctx
			if tc.waitFor > 0 {
				var rcancel context.CancelFunc
				rctx, rcancel = context.WithTimeout(ctx, tc.waitFor)
				defer rcancel()
			}
			err := c.applyRecompute(rctx, st, rc, 5, time.Now())
			res := sink.result.Load()
			if tc.failed == "" {
				if err == nil || res != nil || sink.reads.Load() < 2 {
					t.Fatalf("applyRecompute: %v, result %+v after %d reads; want it retried until the context ends, nothing recorded",
						err, res, sink.reads.Load())
				}
				return
			}
			if err != nil || res == nil {
				t.Fatalf("applyRecompute: %v, result %+v; want the request recorded as failed", err, res)
			}
			if !strings.Contains(res.Error, tc.failed) || res.ID != rc.ID || res.FromMs != res.ToMs || sink.reads.Load() != tc.reads {
				t.Fatalf("result %+v after %d reads; want error %q, nothing derived, after %d reads", res, sink.reads.Load(), tc.failed, tc.reads)
			}
		})
	}
}
