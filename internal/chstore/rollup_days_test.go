package chstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/testenv"
)

// migratedBefore opens a scratch database migrated up to (not including)
// version, each migration recorded as Migrate records it.
func migratedBefore(t *testing.T, version uint32) *chstore.Store {
	t.Helper()
	cfg := testenv.ClickHouseConfig(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := chstore.Open(ctx, cfg, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ms, err := chstore.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version UInt32, name String, applied_at DateTime
	) ENGINE = ReplacingMergeTree(applied_at) ORDER BY version`); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Version >= version {
			break
		}
		if m.Step != nil {
			t.Fatalf("migration %d is a Go step; run it through Migrate", m.Version)
		}
		for _, st := range m.Statements {
			if err := s.Exec(ctx, st); err != nil {
				t.Fatalf("migration %d: %v", m.Version, err)
			}
		}
		if err := s.Exec(ctx, fmt.Sprintf("INSERT INTO schema_migrations SELECT %d, '%s', now()", m.Version, m.Name)); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// insertParts stores n parts with ids from first on, through the parts
// table's views, spread over 70 days from 2026-09-01 (three months), 7
// machines and 3 products.
func insertParts(ctx context.Context, s *chstore.Store, first, n uint64) error {
	return insertPartsOver(ctx, s, first, n, 70)
}

// insertPartsOver is insertParts over the first days days.
func insertPartsOver(ctx context.Context, s *chstore.Store, first, n, days uint64) error {
	return s.Exec(ctx, fmt.Sprintf(`INSERT INTO parts (id, event_id, site, location_kind, location_id, externalid, product_id,
		product_code, product_reported, product_resolution, quantity, quality, reason, reason_id, cycle_time, recorded_at,
		recorded_ms, recorded_defaulted, received_ms, processed_ms, topic, partition, offset, ideal_cycle_time, oee_class)
		SELECT %[1]d + number, generateUUIDv4(), 1 + intDiv(number, 7) %% 2, 'machine', number %% 7 + 1, '', number %% 3 + 1,
		'', '', 'code', toUInt32(number %% 4 + 1), if(number %% 5 = 0, 'scrap', if(number %% 13 = 0, 'rework', 'good')), '', 0, NULL,
		toDateTime(1788220800 + ((%[1]d + number) * 7919) %% (86400 * %[3]d)), 0, 0, 0, 0, 't', 0, %[1]d + number,
		if(number %% 3 = 0, -1, 1.5), if(number %% 11 = 0, 'unscheduled', 'counted')
		FROM numbers(%[2]d)`, first, n, days))
}

// rollupSums reads a rollup summed per key, formatted one line per key.
func rollupSums(t *testing.T, s *chstore.Store, query string) map[string]string {
	t.Helper()
	rows, err := s.QueryStrings(context.Background(), query)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	out := make(map[string]string, len(rows))
	for _, r := range rows {
		k, v, _ := strings.Cut(r, "=")
		out[k] = v
	}
	return out
}

const (
	hourlyFromRollup = `SELECT concat(toString(site), ',', toString(location_id), ',', toString(product_id), ',', toString(hour), '=',
		toString(sum(produced)), ',', toString(sum(good)), ',', toString(sum(scrap)), ',', toString(sum(rework)), ',', toString(sum(events)))
		FROM parts_hourly GROUP BY site, location_id, product_id, hour`
	hourlyFromParts = `SELECT concat(toString(site), ',', toString(location_id), ',', toString(product_id), ',',
		toString(toDateTime(intDiv(toUInt32(recorded_at), 3600) * 3600)), '=',
		toString(sum(quantity)), ',', toString(sumIf(quantity, quality = 'good')), ',', toString(sumIf(quantity, quality = 'scrap')), ',',
		toString(sumIf(quantity, quality = 'rework')), ',', toString(count()))
		FROM parts GROUP BY site, location_id, product_id, intDiv(toUInt32(recorded_at), 3600)`
	oeeFromRollup = `SELECT concat(toString(site), ',', toString(location_id), ',', toString(product_id), ',', toString(hour), ',',
		toString(oee_class), '=', toString(sum(produced)), ',', toString(sum(good)), ',', toString(sum(ideal_qty)), ',',
		toString(round(sum(ideal_time), 3)))
		FROM parts_oee_hourly GROUP BY site, location_id, product_id, hour, oee_class`
	oeeFromParts = `SELECT concat(toString(site), ',', toString(location_id), ',', toString(product_id), ',',
		toString(toDateTime(intDiv(toUInt32(recorded_at), 3600) * 3600)), ',', toString(oee_class), '=',
		toString(sum(quantity)), ',', toString(sumIf(quantity, quality = 'good')), ',', toString(sumIf(quantity, ideal_cycle_time >= 0)), ',',
		toString(round(sumIf(ideal_cycle_time * quantity, ideal_cycle_time >= 0), 3)))
		FROM parts GROUP BY site, location_id, product_id, intDiv(toUInt32(recorded_at), 3600), oee_class`
)

// checkRollupsByDay: both rollups are partitioned by day, hold exactly
// what the parts table rolls up to, and the step left nothing behind.
func checkRollupsByDay(t *testing.T, s *chstore.Store) {
	t.Helper()
	ctx := context.Background()
	for _, table := range []string{"parts_hourly", "parts_oee_hourly"} {
		keys, err := s.QueryStrings(ctx, "SELECT partition_key FROM system.tables WHERE database = currentDatabase() AND name = ?", table)
		if err != nil || len(keys) != 1 || keys[0] != "toYYYYMMDD(hour)" {
			t.Errorf("%s: partition key %q (%v), want toYYYYMMDD(hour)", table, keys, err)
		}
	}
	left, err := s.QueryStrings(ctx, "SELECT name FROM system.tables WHERE database = currentDatabase() AND (name LIKE '%_bymonth' OR name LIKE '%_byday' OR name LIKE 'migration_lock%')")
	if err != nil || len(left) != 0 {
		t.Errorf("tables left behind: %v (%v)", left, err)
	}
	for _, c := range []struct{ name, rollup, parts string }{
		{"parts_hourly", hourlyFromRollup, hourlyFromParts},
		{"parts_oee_hourly", oeeFromRollup, oeeFromParts},
	} {
		got, want := rollupSums(t, s, c.rollup), rollupSums(t, s, c.parts)
		if len(want) == 0 {
			t.Fatalf("%s: no parts: the test checks nothing", c.name)
		}
		bad := 0
		for k, w := range want {
			if got[k] != w {
				if bad < 5 {
					t.Errorf("%s %s: rollup %q, parts %q", c.name, k, got[k], w)
				}
				bad++
			}
		}
		for k, g := range got {
			if _, ok := want[k]; !ok {
				if bad < 5 {
					t.Errorf("%s %s: rollup %q, no parts", c.name, k, g)
				}
				bad++
			}
		}
		if bad > 0 {
			t.Errorf("%s: %d of %d keys differ from the parts", c.name, bad, len(want))
		}
	}
}

// TestRollupsByDayUnderInserts: migration 0052 moves both hourly rollups
// to day partitions while parts keep arriving through the views, and the
// rollups end exactly equal to what the parts roll up to: nothing lost,
// nothing twice.
func TestRollupsByDayUnderInserts(t *testing.T) {
	s := migratedBefore(t, 52)
	ctx := context.Background()
	next := uint64(1)
	for i := 0; i < 20; i++ {
		if err := insertParts(ctx, s, next, 10000); err != nil {
			t.Fatal(err)
		}
		next += 10000
	}
	var during, refused atomic.Int64
	var migrating atomic.Bool
	migrating.Store(true)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var insertErr error
	var mu sync.Mutex
	var cut []uint64 // blocks stored by an INSERT that failed
	wg.Add(1)
	go func() {
		defer wg.Done()
		id := uint64(1_000_000)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := insertPartsOver(ctx, s, id, 300, 2); err != nil {
				// Refused while the table is paused. Like a processor,
				// look whether the block is stored before sending it
				// again: an INSERT that raced the pause may have
				// written it and been cut off in its views; its
				// rollups are then repaired (below, as the processor's
				// repairRollups does).
				if !strings.Contains(err.Error(), "doesn't exist") && !strings.Contains(err.Error(), "UNKNOWN_TABLE") {
					insertErr = err
					return
				}
				refused.Add(1)
				var stored uint64
				for {
					time.Sleep(5 * time.Millisecond)
					n, err := s.QueryUint64(ctx, fmt.Sprintf("SELECT count() FROM parts WHERE id >= %d AND id < %d", id, id+300))
					if err == nil {
						stored = n
						break
					}
				}
				switch stored {
				case 0:
					continue
				case 300:
					mu.Lock()
					cut = append(cut, id)
					mu.Unlock()
				default:
					insertErr = fmt.Errorf("block at %d: %d of 300 rows stored", id, stored)
					return
				}
			}
			id += 300
			if migrating.Load() {
				during.Add(1)
			}
		}
	}()
	err := s.Migrate(ctx)
	migrating.Store(false)
	time.Sleep(200 * time.Millisecond) // inserts after the swap, too
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("migrate: %v", err)
	}
	if insertErr != nil {
		t.Fatalf("insert during the migration: %v", insertErr)
	}
	if during.Load() < 1 || refused.Load() < 1 {
		t.Fatalf("%d inserts ran during the migration, %d were refused: the test checks no overlap", during.Load(), refused.Load())
	}
	t.Logf("%d inserts of 300 parts ran during the migration, %d were refused while parts was paused, %d of them stored",
		during.Load(), refused.Load(), len(cut))
	for _, id := range cut {
		if _, err := s.ReconcileRollups(ctx, "t", 0, int64(id), int64(id+299)); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.QueryUint64(ctx, "SELECT toUInt64(count() - uniqExact(id)) FROM parts"); err != nil || n != 0 {
		t.Fatalf("parts stored twice: %d (%v)", n, err)
	}
	checkRollupsByDay(t, s)
}

// TestRollupsByDayAfterCutOff: a run of migration 0052 cut off at any of
// its points (an error, or a crash that leaves the parts table detached)
// is finished exactly by the next run; rows a writer put into a month
// table between its copy and its swap are carried over; and a run that
// cannot tell whether such rows were carried over keeps the month table
// and says so.
func TestRollupsByDayAfterCutOff(t *testing.T) {
	// A rollup row no part accounts for, as a repair or a recompute could
	// write it by name.
	const stray = `INSERT INTO parts_hourly_bymonth (site, location_kind, location_id, product_id, hour, produced, good, scrap, rework, events)
		SELECT 99, 'machine', 1, 1, toDateTime(1788220800), 5, 5, 0, 0, 1`
	cases := []struct {
		name  string
		hook  func(ctx context.Context, s *chstore.Store, point string) error
		stray bool   // the stray row must end in parts_hourly
		kept  string // the second run must fail, keeping this table
		// merging: after the cut-off run, these month tables must
		// merge again (a stopped one would pile up data parts).
		merging []string
	}{
		{name: "before a rename", hook: cutAt("copied parts_oee_hourly"), merging: []string{"parts_hourly", "parts_oee_hourly"}},
		{name: "after a rename", hook: cutAt("swapped parts_hourly")},
		{name: "before a drop", hook: cutAt("checked parts_oee_hourly")},
		{name: "crash with parts paused", hook: func(_ context.Context, _ *chstore.Store, point string) error {
			if point == "swapped parts_oee_hourly" {
				panic("crash")
			}
			return nil
		}},
		{name: "a write between copy and swap", stray: true, hook: func(ctx context.Context, s *chstore.Store, point string) error {
			if point == "swapped parts_hourly" {
				return s.Exec(ctx, stray)
			}
			return nil
		}},
		{name: "a write between copy and swap, then cut off", kept: "parts_hourly_bymonth",
			hook: func(ctx context.Context, s *chstore.Store, point string) error {
				if point == "swapped parts_hourly" {
					if err := s.Exec(ctx, stray); err != nil {
						return err
					}
					return errors.New("cut off")
				}
				return nil
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := migratedBefore(t, 52)
			ctx := context.Background()
			if err := insertParts(ctx, s, 1, 50000); err != nil {
				t.Fatal(err)
			}
			hit := false
			chstore.SetRollupStepHook(func(ctx context.Context, point string) error {
				err := c.hook(ctx, s, point)
				hit = hit || err != nil
				return err
			})
			func() {
				defer func() {
					if recover() != nil {
						hit = true
					}
				}()
				err := s.Migrate(ctx)
				if (err != nil) != hit {
					t.Fatalf("first run: %v (cut off: %v)", err, hit)
				}
			}()
			chstore.SetRollupStepHook(nil)
			for _, table := range c.merging {
				if err := s.Exec(ctx, "OPTIMIZE TABLE "+table+" FINAL"); err != nil {
					t.Errorf("%s does not merge after the cut-off run: %v", table, err)
				}
			}
			if c.stray && hit {
				t.Fatal("the stray write cut the run off")
			}
			if !c.stray && !hit {
				t.Fatal("the run was not cut off: the test checks nothing")
			}
			err := s.Migrate(ctx)
			if c.kept != "" {
				if err == nil || !strings.Contains(err.Error(), c.kept+" holds rows the recorded copy does not") {
					t.Fatalf("second run: %v; want it to keep %s", err, c.kept)
				}
				if n, err := s.QueryUint64(ctx, "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = ?", c.kept); err != nil || n != 1 {
					t.Fatalf("%s: %d tables (%v), want it kept", c.kept, n, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("second run: %v", err)
			}
			if err := insertParts(ctx, s, 100000, 5000); err != nil {
				t.Fatal(err)
			}
			n, err := s.QueryUint64(ctx, "SELECT sum(produced) FROM parts_hourly WHERE site = 99")
			if err != nil {
				t.Fatal(err)
			}
			if want := map[bool]uint64{true: 5, false: 0}[c.stray]; n != want {
				t.Fatalf("the stray rollup row: %d produced in parts_hourly, want %d", n, want)
			}
			if c.stray {
				if err := s.Exec(ctx, "ALTER TABLE parts_hourly DELETE WHERE site = 99"); err != nil {
					t.Fatal(err)
				}
				waitUntil(t, func() bool {
					n, err := s.QueryUint64(ctx, "SELECT count() FROM parts_hourly WHERE site = 99")
					return err == nil && n == 0
				})
			}
			checkRollupsByDay(t, s)
		})
	}
}

// cutAt returns a hook that cuts the step off at point.
func cutAt(point string) func(context.Context, *chstore.Store, string) error {
	return func(_ context.Context, _ *chstore.Store, p string) error {
		if p == point {
			return errors.New("cut off at " + p)
		}
		return nil
	}
}

func waitUntil(t *testing.T, ok func() bool) {
	t.Helper()
	for i := 0; i < 300; i++ {
		if ok() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("condition not met within 30 s")
}

// TestMigrationLock: a Go-coded migration waits while another process
// holds its lock and beats, and takes over a lock whose holder went
// silent.
func TestMigrationLock(t *testing.T) {
	s := migratedBefore(t, 52)
	ctx := context.Background()
	if err := insertParts(ctx, s, 1, 1000); err != nil {
		t.Fatal(err)
	}
	lock := chstore.MigrationLockTable(52)
	if err := s.Exec(ctx, "CREATE TABLE "+lock+" (holder String, beat DateTime) ENGINE = Log"); err != nil {
		t.Fatal(err)
	}
	if err := s.Exec(ctx, "INSERT INTO "+lock+" SELECT 'other', now()"); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	err := s.Migrate(wctx)
	cancel()
	if err == nil || !strings.Contains(err.Error(), "held by other") {
		t.Fatalf("migrate while another holds the lock: %v; want it to wait for the holder", err)
	}
	if keys, _ := s.QueryStrings(ctx, "SELECT partition_key FROM system.tables WHERE database = currentDatabase() AND name = 'parts_hourly'"); len(keys) != 1 || keys[0] != "toYYYYMM(hour)" {
		t.Fatalf("parts_hourly changed while another process held the lock: %v", keys)
	}
	if err := s.Exec(ctx, "TRUNCATE TABLE "+lock); err != nil {
		t.Fatal(err)
	}
	if err := s.Exec(ctx, "INSERT INTO "+lock+" SELECT 'other', now() - 60"); err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("migrate after the holder went silent: %v", err)
	}
	checkRollupsByDay(t, s)
}

// TestRollupWritersPattern: the INSERTs the migration waits for are those
// into parts and into the rollups, of this database or unqualified, as
// the processor, the repair and the recompute send them; not the lock's
// beats, nor another database's tables.
func TestRollupWritersPattern(t *testing.T) {
	s, _ := testenv.ClickHouse(t)
	ctx := context.Background()
	pattern := chstore.RollupWriters("takt")
	for q, want := range map[string]bool{
		"INSERT INTO `takt`.parts (id, event_id) VALUES":          true,
		"insert into parts_hourly (site, location_kind) VALUES":   true,
		"INSERT INTO parts_oee_hourly(site) VALUES":               true,
		"  INSERT INTO takt.parts_hourly SELECT 1":                true,
		"INSERT INTO `takt`.`migration_lock_0052` (holder, beat)": false,
		"INSERT INTO `other`.parts (id) VALUES":                   false,
		"INSERT INTO parts_watermarks (topic) VALUES":             false,
		"INSERT INTO parts_order (id) VALUES":                     false,
		"SELECT * FROM parts":                                     false,
	} {
		n, err := s.QueryUint64(ctx, "SELECT toUInt64(match(?, ?))", q, pattern)
		if err != nil {
			t.Fatal(err)
		}
		if (n == 1) != want {
			t.Errorf("%q: matched %v, want %v", q, n == 1, want)
		}
	}
}
