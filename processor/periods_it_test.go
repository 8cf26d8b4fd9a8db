package processor

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/demo"
	"github.com/takt/takt/internal/period"
	"github.com/takt/takt/internal/testenv"
	"github.com/takt/takt/internal/wire"
)

// TestPeriodsFollowPartitionsAcrossRebalance: twelve locations send runs
// of parts with stops between them while a second member joins the group
// and the first one leaves, so every partition changes owner mid-stream.
// The stored periods must be exactly those of the pure state machine fed
// every part: nothing lost, nothing doubled by the moves.
func TestPeriodsFollowPartitionsAcrossRebalance(t *testing.T) {
	e := newITEnv(t, 4)
	phase := periodPhase
	cfgA, cfgB := e.config(), e.config()
	epoch := func() time.Time { return time.Unix(0, 0) } // no ticks: parts alone decide
	cfgA.Clock, cfgB.Clock = epoch, epoch
	changes := testenv.Topic(t, 4)
	cfgA.PeriodChangesTopic, cfgB.PeriodChangesTopic = changes, changes
	var all []wire.Part
	send := func(ps []wire.Part) {
		e.produce(ps)
		all = append(all, ps...)
	}
	stopA, _ := runInProcess(t, cfgA, nil)
	send(phase(0))
	e.waitRows(uint64(len(all)), 30*time.Second, nil)
	runInProcess(t, cfgB, nil) // B joins: some partitions move to it
	deadline := time.Now().Add(30 * time.Second)
	for metricValue(t, cfgA.Registry, "takt_processor_period_machines") == locations {
		if time.Now().After(deadline) {
			t.Fatal("A never gave partitions to B")
		}
		time.Sleep(20 * time.Millisecond)
	}
	send(phase(1))
	e.waitRows(uint64(len(all)), 60*time.Second, nil)
	send(phase(2))
	if err := stopA(); err != nil { // A leaves mid-stream: B takes everything
		t.Fatal(err)
	}
	send(phase(3))
	e.waitRows(uint64(len(all)), 60*time.Second, nil)

	checkPeriods(t, e.store, e.topic, all)
	checkChanges(t, e.brokers, changes, all)
	// Both members wrote, and B ends up holding every location's machine,
	// the ones A had among them, restored from their saved states.
	deadline = time.Now().Add(30 * time.Second)
	inserted := func() (a, b float64) {
		return metricValue(t, cfgA.Registry, "takt_processor_parts_inserted_total"),
			metricValue(t, cfgB.Registry, "takt_processor_parts_inserted_total")
	}
	for a, b := inserted(); a+b < float64(len(all)); a, b = inserted() {
		if time.Now().After(deadline) {
			t.Fatalf("inserted by A %v and B %v, want %d in all", a, b, len(all))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if a, b := inserted(); a == 0 || b == 0 || a+b != float64(len(all)) {
		t.Fatalf("parts inserted by A %v, by B %v: want both, %d in all", a, b, len(all))
	}
	if n := metricValue(t, cfgB.Registry, "takt_processor_period_machines"); n != locations {
		t.Fatalf("B holds %v machines, want %d", n, locations)
	}
}

// locations is how many locations periodPhase sends parts of.
const locations = 12

// periodPhase returns the parts of phase p: for each of the locations, a
// run of 20 parts 30 s apart starting at 06:00 + p × 20 min (each run
// lasts 9.5 min, so a 10.5 min stop follows it); every third location also
// sends a late part into its previous stop.
func periodPhase(p int) []wire.Part {
	base := time.Date(2024, 5, 6, 6, 0, 0, 0, time.UTC).UnixMilli()
	var out []wire.Part
	for l := range locations {
		start := base + int64(p)*20*60_000
		for i := range 20 {
			out = append(out, partAt(l, start+int64(i)*30_000))
		}
		if p > 0 && l%3 == 0 {
			out = append(out, partAt(l, start-5*60_000))
		}
		if p >= 3 && l%3 == 0 {
			out = append(out, partAt(l, base-2*3_600_000)) // too late
		}
	}
	return out
}

// checkPeriods waits until the stored periods of every location are
// exactly those of the pure state machine fed all the parts, and checks
// that every stored part counts as that machine classified it.
func checkPeriods(t *testing.T, store *chstore.Store, topic string, all []wire.Part) {
	t.Helper()
	want := map[int][]string{}
	class := map[string]string{}
	for l := range locations {
		key := period.Key{Kind: "line", ID: uint64(l + 1)}
		m := period.New(key, period.Config{})
		var versions []period.Row
		for _, p := range all {
			if p.LocationID == key.ID {
				pp := period.Part{RecordedMs: p.RecordedAtMs, IdealCycleTime: 45, Quantity: p.Quantity}
				rows, out := m.Part(pp)
				versions = append(versions, rows...)
				class[p.EventID] = string(m.Classify(pp, out))
			}
		}
		want[l+1] = renderLive(versions)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stored, err := store.PartsOfTopic(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	late := 0
	for _, r := range stored {
		if w := class[r.EventID.String()]; r.OEEClass != w {
			t.Errorf("part %s of line %d at %d: class %q, want %q", r.EventID, r.LocationID, r.RecordedMs, r.OEEClass, w)
		}
		if r.OEEClass == string(period.TooLateToPlace) {
			late++
		}
	}
	if late == 0 {
		t.Error("no part was too late: the test wants some")
	}
	if len(want[1]) < 7 {
		t.Fatalf("line 1 has %d periods; the test wants runs and stops: %v", len(want[1]), want[1])
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := storedByLocation(t, store)
		diff := ""
		for l := 1; l <= locations; l++ {
			if strings.Join(got[l], "\n") != strings.Join(want[l], "\n") {
				diff = fmt.Sprintf("line %d: stored\n%s\nwant\n%s", l, strings.Join(got[l], "\n"), strings.Join(want[l], "\n"))
				break
			}
		}
		if diff == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(diff)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestPeriodsSurviveKills: the processor is SIGKILLed between phases,
// holding machines it has not saved (the save interval is long), once by
// the failpoint between period rows and parts; each new process replays
// the partitions from their checkpoints into the machines. The periods
// must be exactly those of the pure state machine.
func TestPeriodsSurviveKills(t *testing.T) {
	bin := buildProcessor(t)
	e := newITEnv(t, 3)
	changes := testenv.Topic(t, 3)
	env := func(kv ...string) map[string]string {
		m := map[string]string{"TAKT_CONSUMER_INSTANCE_ID": "periods-kill-test", "TAKT_PERIOD_CHANGES_TOPIC": changes,
			"TAKT_FAILPOINT_CLOCK_FILE": filepath.Join(t.TempDir(), "no-clock"), // the epoch: no ticks
			"TAKT_PERIOD_SAVE_INTERVAL": "1h"}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	var all []wire.Part
	send := func(p int) {
		ps := periodPhase(p)
		e.produce(ps)
		all = append(all, ps...)
	}
	p := e.startProc(bin, "p1", env())
	send(0)
	send(1)
	e.waitRows(uint64(len(all)), 30*time.Second, p.alive)
	// One more part per location, 30 s after its last: absorbed into the
	// running period without a row, so its flush saves no machine (a flush
	// saves those that returned rows, and one fast flush of both phases
	// would have saved them all). The next process must replay them.
	var absorbed []wire.Part
	for l := range locations {
		absorbed = append(absorbed, partAt(l, time.Date(2024, 5, 6, 6, 30, 0, 0, time.UTC).UnixMilli()))
	}
	e.produce(absorbed)
	all = append(all, absorbed...)
	e.waitRows(uint64(len(all)), 30*time.Second, p.alive)
	p.kill()

	p = e.startProc(bin, "p2", env())
	send(2)
	e.waitRows(uint64(len(all)), 30*time.Second, p.alive)
	if n := p.metric("takt_processor_records_replayed_total"); n == 0 {
		t.Error("the second process replayed nothing: the first one saved every machine")
	}
	p.kill()

	p = e.startProc(bin, "p3", env("TAKT_FAILPOINT_CRASH_AFTER_PERIODS", "1"))
	send(3)
	p.waitKilledByFailpoint(30 * time.Second)

	p = e.startProc(bin, "p4", env())
	send(4)
	e.waitRows(uint64(len(all)), 30*time.Second, p.alive)
	checkPeriods(t, e.store, e.topic, all)
	checkChanges(t, e.brokers, changes, all)
	if n := p.metric("takt_processor_period_changes_recovered_total"); n == 0 {
		t.Error("the process after the crash between period rows and parts recovered no change: the crash missed the instant")
	}
	p.stop()
	e.assertExactly(uint64(len(all)))
}

// partAt is a part of line l+1 (external id move_<l>) of the demo product.
func partAt(l int, recordedMs int64) wire.Part {
	return wire.Part{EventID: uuid.Must(uuid.NewV7()).String(), Site: 1, LocationKind: "line",
		LocationID: uint64(l + 1), ExternalID: fmt.Sprintf("move_%d", l), Quantity: 1, Quality: wire.QualityGood,
		Product: demo.ProductCode, RecordedAtMs: recordedMs, ReceivedAtMs: recordedMs}
}

// renderLive is what a FINAL reader of the versions sees, at whole seconds.
func renderLive(versions []period.Row) []string {
	table := map[uint64]period.Row{}
	for _, r := range versions {
		if old, ok := table[r.ID]; !ok || r.Version > old.Version {
			table[r.ID] = r
		}
	}
	var out []string
	for _, r := range table {
		if r.Deleted {
			continue
		}
		end := "open"
		if !r.Open {
			end = fmt.Sprint(r.End / 1000)
		}
		out = append(out, fmt.Sprintf("%d %s %d–%s", r.Start/1000, r.State, r.Start/1000, end))
	}
	slices.Sort(out)
	return out
}

// storedByLocation reads the live periods of site 1 by line.
func storedByLocation(t *testing.T, s *chstore.Store) map[int][]string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ps, err := s.OEEPeriods(ctx, chstore.OEEScope{Site: 1, All: true}, 0, 4_000_000_000_000)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int][]string{}
	for _, p := range ps {
		end := "open"
		if !p.Open {
			end = fmt.Sprint(p.End / 1000)
		}
		out[int(p.Location)] = append(out[int(p.Location)], fmt.Sprintf("%d %s %d–%s", p.Start/1000, p.State, p.Start/1000, end))
	}
	for l := range out {
		slices.Sort(out[l])
	}
	return out
}
