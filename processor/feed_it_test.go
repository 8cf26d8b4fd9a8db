package processor

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/takt/takt/internal/period"
	"github.com/takt/takt/internal/testenv"
	"github.com/takt/takt/internal/wire"
)

// readChanges reads every period change on topic, in order per partition.
func readChanges(t *testing.T, brokers []string, topic string) []wire.PeriodChange {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	left := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			left[o.Partition] = o.Offset
		}
	})
	var out []wire.PeriodChange
	for len(left) > 0 {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatalf("read %s: %v", topic, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if header(r, wire.KindHeader) != wire.KindPeriodChange {
				t.Errorf("record %d/%d has kind %q", r.Partition, r.Offset, header(r, wire.KindHeader))
			}
			c, err := wire.DecodePeriodChange(r.Value)
			if err != nil {
				t.Errorf("record %d/%d: %v", r.Partition, r.Offset, err)
			}
			if string(r.Key) != c.ExternalID {
				t.Errorf("record %d/%d: key %q, external id %q", r.Partition, r.Offset, r.Key, c.ExternalID)
			}
			out = append(out, c)
			if r.Offset+1 >= left[r.Partition] {
				delete(left, r.Partition)
			}
		})
	}
	return out
}

// checkChanges checks that the period changes on topic are, for every
// location, exactly the row versions the pure state machine returns when
// fed all the parts, in the machine's order: none missing, none twice.
func checkChanges(t *testing.T, brokers []string, topic string, all []wire.Part) {
	t.Helper()
	want := map[uint64][]string{}
	for l := range locations {
		key := period.Key{Kind: "line", ID: uint64(l + 1)}
		m := period.New(key, period.Config{})
		for _, p := range all {
			if p.LocationID == key.ID {
				rows, _ := m.Part(period.Part{RecordedMs: p.RecordedAtMs, IdealCycleTime: 45, Quantity: p.Quantity})
				for _, r := range rows {
					want[key.ID] = append(want[key.ID], renderChange(r.ID, r.Version, string(r.State), r.Start, r.End, r.Open, r.Deleted))
				}
			}
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := map[uint64][]string{}
		for _, c := range readChanges(t, brokers, topic) {
			end := c.EndMs
			got[c.LocationID] = append(got[c.LocationID], renderChange(c.Period, c.Version, c.State, c.StartMs, end, c.Open, c.Deleted))
			if c.Line != c.LocationID || c.Site != 1 || c.ExternalID != fmt.Sprintf("move_%d", c.LocationID-1) {
				t.Fatalf("change of line %d: line %d, site %d, external id %q", c.LocationID, c.Line, c.Site, c.ExternalID)
			}
		}
		diff := ""
		for l := uint64(1); l <= locations; l++ {
			if !slices.Equal(got[l], want[l]) {
				diff = fmt.Sprintf("line %d: changes on the topic\n%s\nwant\n%s", l, strings.Join(got[l], "\n"), strings.Join(want[l], "\n"))
				break
			}
		}
		if diff == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(diff)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func renderChange(id, version uint64, state string, start, end int64, open, deleted bool) string {
	if open {
		end = 0
	}
	return fmt.Sprintf("%d v%d %s %d–%d open=%t deleted=%t", id, version, state, start, end, open, deleted)
}

// TestChangeFeedRecovery: the changes of a partition's last flush that
// did not all reach the topic are produced by recovery, once; a second
// recovery produces nothing; one that finds the topic behind the flush's
// feed offset produces the flush's changes again (the topic lost them).
func TestChangeFeedRecovery(t *testing.T) {
	brokers := testenv.Stack(t).Brokers
	topic := testenv.Topic(t, 2)
	reg := prometheus.NewRegistry()
	f, err := newChangeFeed(Config{Brokers: brokers, PeriodChangesTopic: topic, Topic: "parts"}, reg,
		func(period.Key) uint64 { return 7 }, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer f.close()
	ctx := context.Background()
	row := func(id, v uint64, open bool) period.Row {
		return period.Row{ID: id, State: period.Running, Start: int64(id) * 1000, End: int64(id)*1000 + 500, Open: open, Version: v}
	}
	old := feedGroup{key: period.Key{Kind: "machine", ID: 9}, site: 1, extID: "m9", rows: []period.Row{row(1, 2, false)}}
	last := []feedGroup{
		{key: period.Key{Kind: "machine", ID: 9}, site: 1, extID: "m9", rows: []period.Row{row(1, 4, false), row(2, 6, true)},
			meta: []changeMeta{{AtMs: 5}, {Change: wire.ChangeRelabelled, AtMs: 6}}},
		{key: period.Key{Kind: "line", ID: 3}, site: 1, extID: "l3", rows: []period.Row{row(3, 2, true)}},
	}
	// The partition holds one earlier change; the last flush began at
	// offset 1 and only its first change (in canonical order: line 3)
	// made it.
	if err := f.produce(ctx, 1, f.records(1, []feedGroup{old})); err != nil {
		t.Fatal(err)
	}
	all := f.records(1, last)
	if err := f.produce(ctx, 1, all[:1]); err != nil {
		t.Fatal(err)
	}
	states := []feedState{{offset: 0, group: old}, {offset: 1, group: last[0]}, {offset: 1, group: last[1]}}
	f.forget([]int32{1})
	if err := f.recover(ctx, 1, states); err != nil {
		t.Fatal(err)
	}
	if err := f.recover(ctx, 1, states); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range readChanges(t, brokers, topic) {
		ids = append(ids, c.ID+" "+c.Change)
	}
	want := []string{"machine-9-1-2 closed", "line-3-3-2 opened", "machine-9-1-4 closed", "machine-9-2-6 relabelled"}
	if !slices.Equal(ids, want) {
		t.Fatalf("topic holds\n%s\nwant\n%s", strings.Join(ids, "\n"), strings.Join(want, "\n"))
	}
	if o, ok := f.position(1); !ok || o != 4 {
		t.Fatalf("position %d %t, want 4", o, ok)
	}
	// Partition 0 is empty, but the saved states say their flush began at
	// offset 3: the topic lost records, and the flush's changes go again.
	if err := f.recover(ctx, 0, []feedState{{offset: 3, group: last[1]}}); err != nil {
		t.Fatal(err)
	}
	if o, ok := f.position(0); !ok || o != 1 {
		t.Fatalf("partition 0: position %d %t, want 1", o, ok)
	}
	if n := metricValue(t, reg, "takt_processor_period_changes_recovered_total"); n != 3 {
		t.Fatalf("recovered %v changes, want 3", n)
	}
}
