package processor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/demo"
	"github.com/takt/takt/internal/testenv"
	"github.com/takt/takt/internal/wire"
)

// TestRecomputeChangesSurviveKill: a processor killed once a recompute's
// period rows are stored and before their changes are produced; the
// process after it must put every new version the recompute wrote on the
// change feed, as recomputed, once.
func TestRecomputeChangesSurviveKill(t *testing.T) {
	bin := buildProcessor(t)
	e := newITEnv(t, 1)
	changes := testenv.Topic(t, 1)
	clockFile := filepath.Join(t.TempDir(), "clock")
	env := func(kv ...string) map[string]string {
		m := map[string]string{"TAKT_PERIOD_CHANGES_TOPIC": changes, "TAKT_FAILPOINT_CLOCK_FILE": clockFile,
			"TAKT_CATALOG_REFRESH": "200ms"}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	// line_1 (default threshold): a part a minute 06:00–06:59, a 30-minute
	// stop, a part a minute 07:30–08:29.
	base := time.Date(2024, 3, 4, 6, 0, 0, 0, time.UTC)
	var parts []wire.Part
	for i := range 120 {
		at := base.Add(time.Duration(i) * time.Minute)
		if i >= 60 {
			at = at.Add(30 * time.Minute)
		}
		parts = append(parts, wire.Part{EventID: uuid.Must(uuid.NewV7()).String(), Site: demo.SiteID, LocationKind: "line",
			LocationID: demo.LineID, ExternalID: demo.LineExternalID, Quantity: 1, Quality: wire.QualityGood,
			Product: demo.ProductCode, RecordedAtMs: at.UnixMilli(), ReceivedAtMs: at.UnixMilli()})
	}
	setClock := func(at time.Time) {
		if err := os.WriteFile(clockFile, []byte(at.UTC().Format(time.RFC3339)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	setClock(base)
	p := e.startProc(bin, "p1", env("TAKT_FAILPOINT_CRASH_IN_RECOMPUTE", "1"))
	e.produce(parts)
	e.waitRows(uint64(len(parts)), 30*time.Second, p.alive)
	// Three days later the window's periods are final.
	setClock(base.Add(72 * time.Hour))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	from, to := base.Add(-time.Hour).UnixMilli(), base.Add(4*time.Hour).UnixMilli()
	var before []chstore.PeriodRow
	waitFor(t, 30*time.Second, "the stop stored as down", func() bool {
		var err error
		if before, err = e.store.LocationPeriods(ctx, "line", demo.LineID, from, to); err != nil {
			t.Fatal(err)
		}
		for _, r := range before {
			if r.State == "down" && !r.Open {
				return true
			}
		}
		return false
	})
	var top uint64
	for _, r := range before {
		top = max(top, r.Version)
	}

	// The new rule: a stop only after an hour. The request, as the query
	// API sends it.
	if err := e.store.PutLine(ctx, chstore.Line{ID: demo.LineID, Site: demo.SiteID, Area: 1, Code: demo.LineCode,
		ExternalID: demo.LineExternalID, StopThreshold: 3600, Audit: chstore.Audit{CreatedBy: "test", LastUpdatedBy: "test"}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // two catalog refreshes
	rc := wire.Recompute{Control: wire.Control{ID: uuid.Must(uuid.NewV7()).String(), Site: demo.SiteID, LocationKind: "line",
		LocationID: demo.LineID, ExternalID: demo.LineExternalID}, StartMs: from, EndMs: to, RequestedAtMs: time.Now().UnixMilli(),
		By: demo.Username}
	val, err := wire.EncodeRecompute(&rc)
	if err != nil {
		t.Fatal(err)
	}
	e.produceRecords([]*kgo.Record{{Topic: e.topic, Key: rc.Key(), Value: val,
		Headers: []kgo.RecordHeader{{Key: wire.KindHeader, Value: []byte(wire.KindRecompute)}}}})
	p.waitKilledByFailpoint(60 * time.Second)

	p = e.startProc(bin, "p2", env())
	var res chstore.Recompute
	waitFor(t, 60*time.Second, "the recompute's result", func() bool {
		var err error
		res, err = e.store.RecomputeByID(ctx, rc.ID)
		return err == nil
	})
	after, err := e.store.LocationPeriods(ctx, "line", demo.LineID, from, to)
	if err != nil {
		t.Fatal(err)
	}
	// The new versions of the window derived again (the live machine's
	// periods after it are its own).
	want := map[string]int{}
	for _, r := range after {
		if r.Version > top && r.Start < res.ToMs {
			want[fmt.Sprintf("%d v%d", r.ID, r.Version)] = 1
		}
	}
	if len(want) == 0 {
		t.Fatalf("the recompute wrote no new version: before %+v, after %+v", before, after)
	}
	var got map[string]int
	waitFor(t, 30*time.Second, "the recompute's changes on the feed", func() bool {
		got = map[string]int{}
		for _, c := range readChanges(t, e.brokers, changes) {
			if c.Change == wire.ChangeRecomputed && !c.Deleted {
				got[fmt.Sprintf("%d v%d", c.Period, c.Version)]++
			}
		}
		return len(got) >= len(want)
	})
	for id := range want {
		if got[id] != 1 {
			t.Errorf("version %s: %d recomputed changes on the feed, want 1 (feed: %v)", id, got[id], got)
		}
	}
	p.stop()
}
