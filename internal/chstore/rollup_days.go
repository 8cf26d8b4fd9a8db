package chstore

// Migration 0052: the hourly rollups partitioned by day.
//
// parts_hourly and parts_oee_hourly were created (0020, 0025) partitioned
// by month. Every flush's few hundred rollup rows land in the current
// month's partition, and ClickHouse merges them into that partition's
// largest data part again and again: with 200 locations and 100M parts
// stored, each rollup rewrote 6.5M rows in 35 s of single-part ingest, a
// cost that grows with locations × hours of the month. Partitioned by day,
// the data part a flush merges into holds one day.
//
// ClickHouse cannot change a table's partition key, so the step builds a
// day-partitioned twin of each rollup and swaps it in by name (the views
// and every reader address the rollups by name). Nothing may be lost or
// counted twice, and readers must not see a rollup without its history, so:
//
//  1. While ingest goes on, each rollup T is copied into T_byday. The
//     merges of both are stopped first, so that data parts keep their
//     names: the copy takes T's data parts by name, and checks the data
//     parts it made in T_byday against them (sums of every quantity, and
//     sums weighted by a hash of each row's key: the fingerprint).
//  2. The parts table is paused: renamed to parts_paused on every
//     replica, after the INSERTs running into it have ended, so no view
//     writes a rollup. A processor's INSERT fails meanwhile and is sent
//     again (its offsets stay uncommitted); one that raced the pause may
//     have been cut between parts and its views, which the processor's
//     repair of an interrupted insert completes; a read of the parts area
//     fails. In the pause, T's data parts that came since step 1 are
//     copied and checked the same way, the copy's fingerprint is recorded
//     in rollup_day_copies, and one RENAME makes T T_bymonth and T_byday
//     T, whose merges start again. Then parts is renamed back: from here
//     on the views write the day tables. The pause lasts as long as the
//     copy of what came during step 1 (bench/capacity.md has figures).
//  3. For each T_bymonth, once every INSERT that may still write it has
//     ended: its fingerprint must equal the recorded one. A repair or a
//     recompute that wrote T by name between the copy and the rename
//     wrote T_bymonth; its merges are stopped, so its data parts are the
//     ones not copied, and they are copied now. Then T_bymonth is
//     dropped.
//
// Cut off anywhere, the next run finishes: the parts table is renamed back
// if it was left paused, merges stopped by the run start again, a half-made
// T_byday is dropped and made again, and a T_bymonth whose fingerprint
// equals the recorded copy is dropped. Only a
// run cut off after its swap, when T_bymonth also took rows that the
// recorded copy does not hold, cannot tell whether those were carried over;
// it stops with an error and keeps T_bymonth for an operator rather than
// guess. A database made from scratch goes through the same steps with
// nothing to copy.

import (
	"context"
	"fmt"
	"math"
	"regexp"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// dayRollup is one rollup the step moves to day partitions.
type dayRollup struct {
	table string
	// keys are the columns of the sorting key; counts are the UInt64
	// quantities, floats the Float64 ones.
	keys, counts, floats []string
	// columns is the column list of the table's DDL.
	columns string
}

var dayRollups = []dayRollup{
	{
		table:  "parts_hourly",
		keys:   []string{"site", "location_kind", "location_id", "product_id", "hour"},
		counts: []string{"produced", "good", "scrap", "rework", "events"},
		columns: `site UInt64, location_kind Enum8('line' = 1, 'machine' = 2), location_id UInt64, product_id UInt64,
    hour DateTime, produced UInt64, good UInt64, scrap UInt64, rework UInt64, events UInt64`,
	},
	{
		table:  "parts_oee_hourly",
		keys:   []string{"site", "location_kind", "location_id", "product_id", "hour", "oee_class"},
		counts: []string{"produced", "good", "scrap", "rework", "ideal_qty"},
		floats: []string{"ideal_time"},
		columns: `site UInt64, location_kind Enum8('line' = 1, 'machine' = 2), location_id UInt64, product_id UInt64,
    hour DateTime, oee_class Enum8('counted' = 0, 'unscheduled' = 1, 'late' = 2), produced UInt64, good UInt64,
    scrap UInt64, rework UInt64, ideal_time Float64, ideal_qty UInt64`,
	},
}

func (r dayRollup) byDay() string   { return r.table + "_byday" }
func (r dayRollup) byMonth() string { return r.table + "_bymonth" }

// createDDL is the CREATE of the day-partitioned table named name.
func (r dayRollup) createDDL(name string) string {
	return "CREATE TABLE IF NOT EXISTS " + name + " (\n    " + r.columns + "\n)" +
		" ENGINE = SummingMergeTree() PARTITION BY toYYYYMMDD(hour) ORDER BY (" + strings.Join(r.keys, ", ") + ")"
}

// valueColumns are the columns a copy carries.
func (r dayRollup) valueColumns() string {
	cols := append(append(append([]string{}, r.keys...), r.counts...), r.floats...)
	return strings.Join(cols, ", ")
}

// zeroFingerprint is the fingerprint of no rows.
func (r dayRollup) zeroFingerprint() fingerprint {
	return fingerprint{counts: make([]uint64, 2*len(r.counts)), floats: make([]float64, len(r.floats))}
}

// fingerprint is the SELECT list that sums a set of the rollup's rows: each
// count, and each count weighted by a hash of the row's key, so that rows
// moved between keys do not cancel out (UInt64 sums wrap, which a
// comparison of two such sums does not mind); then each float's sum.
func (r dayRollup) fingerprint() string {
	hashed := make([]string, len(r.keys))
	for i, k := range r.keys {
		switch k {
		case "location_kind", "oee_class":
			hashed[i] = "toInt8(" + k + ")"
		case "hour":
			hashed[i] = "toUInt32(hour)"
		default:
			hashed[i] = k
		}
	}
	h := "cityHash64(" + strings.Join(hashed, ", ") + ")"
	var out []string
	for _, c := range r.counts {
		out = append(out, "sum("+c+")", "sum("+h+" * "+c+")")
	}
	for _, f := range r.floats {
		out = append(out, "sum("+f+")")
	}
	return strings.Join(out, ", ")
}

// rollupStepHook, when set (by tests), runs at the named points of the
// step ("copied T" before the rename, "swapped T" after it, "checked T"
// before T_bymonth's drop); an error cuts the step off there.
var rollupStepHook func(ctx context.Context, point string) error

// migrateRollupsByDay is the Go step of migration 0052.
func (s *Store) migrateRollupsByDay(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			s.restartMerges(context.WithoutCancel(ctx))
		}
	}()
	// A run cut off while the parts table was paused.
	if err := s.resumeParts(ctx); err != nil {
		return err
	}
	var swap, finish []dayRollup
	for _, r := range dayRollups {
		key, err := s.partitionKey(ctx, r.table)
		if err != nil {
			return err
		}
		if !strings.Contains(key, "toYYYYMMDD") {
			swap = append(swap, r)
			finish = append(finish, r)
		} else if ok, err := s.tableExists(ctx, r.byMonth()); err != nil {
			return err
		} else if ok {
			finish = append(finish, r)
		}
	}
	if len(finish) == 0 {
		return nil
	}
	if err := s.ddl(ctx, rollupCopiesDDL); err != nil {
		return fmt.Errorf("create rollup_day_copies: %w", err)
	}
	copies := map[string]*rollupCopy{}
	for _, r := range swap {
		start := time.Now()
		c, err := s.precopyRollup(ctx, r)
		if err != nil {
			return fmt.Errorf("%s by day: %w", r.table, err)
		}
		copies[r.table] = c
		s.logger.Info("rollup copied into its day table", "table", r.table, "data_parts", len(c.src), "took", time.Since(start).Round(time.Millisecond))
	}
	if len(swap) > 0 {
		// No INSERT into parts, so no view writes the rollups while
		// what they gained since is copied and they are swapped.
		if err := s.pauseParts(ctx); err != nil {
			return err
		}
		start := time.Now()
		err := s.waitInserts(ctx)
		for _, r := range swap {
			if err != nil {
				break
			}
			if err = s.swapRollup(ctx, r, copies[r.table]); err == nil && rollupStepHook != nil {
				err = rollupStepHook(ctx, "swapped "+r.table)
			}
		}
		if aerr := s.resumeParts(ctx); aerr != nil && err == nil {
			err = aerr
		}
		if err != nil {
			return err
		}
		s.logger.Info("parts table paused for the rollups' swap", "paused", time.Since(start).Round(time.Millisecond))
	}
	for _, r := range finish {
		var copied []string // nil: another run swapped
		if c := copies[r.table]; c != nil {
			copied = c.src
		}
		if err := s.finishRollup(ctx, r, copied); err != nil {
			return fmt.Errorf("%s by day: %w", r.table, err)
		}
	}
	return nil
}

// rollupCopiesDDL is where step 1 writes the fingerprint of what it
// copied, for a run that finishes another's swap.
const rollupCopiesDDL = `CREATE TABLE IF NOT EXISTS rollup_day_copies (
    rollup String,
    seq    UInt64,
    counts Array(UInt64),
    floats Array(Float64)
) ENGINE = MergeTree() ORDER BY (rollup, seq)`

// restartMerges starts the merges of each live rollup again (the month
// table, or the day table just swapped in) after a run that stopped them
// failed: left stopped, its data parts would pile up with every flush
// until inserts are refused.
func (s *Store) restartMerges(ctx context.Context) {
	for _, r := range dayRollups {
		if err := s.onEveryReplica(ctx, "SYSTEM START MERGES "+r.table); err != nil {
			s.logger.Warn("restarting the merges of a month rollup failed", "table", r.table, "err", err)
		}
	}
}

// rollupCopy is what has been copied of a month table T into T_byday.
// The merges of both are stopped while it is made, so data parts keep
// their names: src are T's data parts copied, day the data parts of
// T_byday that hold them, fp the fingerprint of their rows.
type rollupCopy struct {
	src, day []string
	fp       fingerprint
}

// precopyRollup copies the rows of the month table T's data parts into a
// new day table while writers go on. From here until T's drop, T's merges
// are stopped: a merge would replace copied data parts by new ones
// holding the same rows, and the later copies take only the data parts
// that are not yet copied.
func (s *Store) precopyRollup(ctx context.Context, r dayRollup) (*rollupCopy, error) {
	// A run cut off before its rename left T_byday holding part of a
	// copy; nothing else writes it.
	if err := stillLocked(ctx); err != nil {
		return nil, err
	}
	if err := s.Exec(ctx, s.onCluster(s.dropStatement(r.byDay()))); err != nil {
		return nil, fmt.Errorf("drop %s: %w", r.byDay(), err)
	}
	if err := s.ddl(ctx, r.createDDL(r.byDay())); err != nil {
		return nil, fmt.Errorf("create %s: %w", r.byDay(), err)
	}
	for _, t := range []string{r.table, r.byDay()} {
		if err := s.onEveryReplica(ctx, "SYSTEM STOP MERGES "+t); err != nil {
			return nil, err
		}
	}
	if err := s.waitMerges(ctx, r.table); err != nil {
		return nil, err
	}
	c := &rollupCopy{src: []string{}, day: []string{}, fp: r.zeroFingerprint()}
	return c, s.copyNewParts(ctx, r, c)
}

// copyNewParts copies the rows of T's data parts that c does not hold into
// T_byday, checks that the data parts they made in T_byday add up to them
// and adds them to c. The copy reads only new data parts, and the check
// only the new data parts of both tables, so the copy during the pause
// takes as long as what came since the first.
func (s *Store) copyNewParts(ctx context.Context, r dayRollup, c *rollupCopy) error {
	if s.cluster != "" {
		if err := s.onEveryReplica(ctx, "SYSTEM SYNC REPLICA "+r.table); err != nil {
			return err
		}
	}
	fresh, err := s.newParts(ctx, r.table, c.src)
	if err != nil || len(fresh) == 0 {
		return err
	}
	in, args := amongParts(fresh, true)
	if err := s.Exec(ctx, "INSERT INTO "+r.byDay()+" ("+r.valueColumns()+") SELECT "+r.valueColumns()+" FROM "+r.table+" WHERE "+in, args...); err != nil {
		return fmt.Errorf("copy %s into %s: %w", r.table, r.byDay(), err)
	}
	src, err := s.rollupFingerprint(ctx, r, r.table, in, args...)
	if err != nil {
		return err
	}
	made, err := s.newParts(ctx, r.byDay(), c.day)
	if err != nil {
		return err
	}
	in, args = amongParts(made, true)
	dst, err := s.rollupFingerprint(ctx, r, r.byDay(), in, args...)
	if err != nil {
		return err
	}
	if !src.equal(dst) {
		return fmt.Errorf("the copy of %s into %s does not add up to its source (%v, %v)", r.table, r.byDay(), src, dst)
	}
	c.src, c.day, c.fp = append(c.src, fresh...), append(c.day, made...), c.fp.plus(src)
	return nil
}

// newParts returns table's active data parts that are not in old, and
// fails if one of old is no longer active: a merge ran despite the stop (a
// server restarted), and the next run starts over.
func (s *Store) newParts(ctx context.Context, table string, old []string) ([]string, error) {
	active, err := s.QueryStrings(ctx, "SELECT name FROM system.parts WHERE database = currentDatabase() AND table = ? AND active", table)
	if err != nil {
		return nil, fmt.Errorf("data parts of %s: %w", table, err)
	}
	now := make(map[string]bool, len(active))
	for _, p := range active {
		now[p] = true
	}
	seen := make(map[string]bool, len(old))
	for _, p := range old {
		if !now[p] {
			return nil, fmt.Errorf("data part %s of %s was merged away during the copy", p, table)
		}
		seen[p] = true
	}
	var fresh []string
	for _, p := range active {
		if !seen[p] {
			fresh = append(fresh, p)
		}
	}
	return fresh, nil
}

// swapRollup copies what T gained since precopyRollup, records the copy's
// fingerprint and swaps T_byday in; parts is paused.
func (s *Store) swapRollup(ctx context.Context, r dayRollup, c *rollupCopy) error {
	if err := s.copyNewParts(ctx, r, c); err != nil {
		return err
	}
	if err := s.recordCopy(ctx, r, c.fp); err != nil {
		return err
	}
	if rollupStepHook != nil {
		if err := rollupStepHook(ctx, "copied "+r.table); err != nil {
			return err
		}
	}
	if err := stillLocked(ctx); err != nil {
		return err
	}
	if err := s.Exec(ctx, s.onCluster("RENAME TABLE "+s.qualified(r.table)+" TO "+s.qualified(r.byMonth())+", "+
		s.qualified(r.byDay())+" TO "+s.qualified(r.table))); err != nil {
		return fmt.Errorf("swap in %s: %w", r.byDay(), err)
	}
	return s.onEveryReplica(ctx, "SYSTEM START MERGES "+r.table)
}

// finishRollup copies what the month table gained after the copy, checks
// the whole copy against it, and drops it. copied is what this run's
// swapRollup copied, nil when another run swapped.
func (s *Store) finishRollup(ctx context.Context, r dayRollup, copied []string) error {
	// A run cut off right after its swap left the day table's merges
	// stopped.
	if err := s.onEveryReplica(ctx, "SYSTEM START MERGES "+r.table); err != nil {
		return err
	}
	// Writers that resolved the month table before the rename.
	if err := s.waitInserts(ctx); err != nil {
		return err
	}
	if s.cluster != "" {
		if err := s.onEveryReplica(ctx, "SYSTEM SYNC REPLICA "+r.byMonth()); err != nil {
			return err
		}
	}
	rec, found, err := s.recordedCopy(ctx, r)
	if err != nil {
		return err
	}
	month, err := s.rollupFingerprint(ctx, r, r.byMonth(), "1")
	if err != nil {
		return err
	}
	if !found || !rec.equal(month) {
		if copied == nil {
			// Cut off after the swap, with rows in the month table the
			// copy may or may not have carried over: refuse to guess.
			return fmt.Errorf("%s holds rows the recorded copy does not (%v, %v); it is kept: compare it with %s by hand, copy what is missing, then drop it",
				r.byMonth(), month, rec, r.table)
		}
		notIn, args := amongParts(copied, false)
		if err := s.Exec(ctx, "INSERT INTO "+r.table+" ("+r.valueColumns()+") SELECT "+r.valueColumns()+" FROM "+
			r.byMonth()+" WHERE "+notIn, args...); err != nil {
			return fmt.Errorf("copy what %s gained: %w", r.byMonth(), err)
		}
		delta, err := s.rollupFingerprint(ctx, r, r.byMonth(), notIn, args...)
		if err != nil {
			return err
		}
		s.logger.Info("rows written to the month rollup between its copy and its swap, copied", "table", r.table, "fingerprint", delta)
		rec = rec.plus(delta)
		if !rec.equal(month) {
			return fmt.Errorf("%s changed while it was copied (%v, %v); it is kept", r.byMonth(), month, rec)
		}
		if err := s.recordCopy(ctx, r, rec); err != nil {
			return err
		}
	}
	if rollupStepHook != nil {
		if err := rollupStepHook(ctx, "checked "+r.table); err != nil {
			return err
		}
	}
	if err := stillLocked(ctx); err != nil {
		return err
	}
	if err := s.Exec(ctx, s.onCluster(s.dropStatement(r.byMonth()))); err != nil {
		return fmt.Errorf("drop %s: %w", r.byMonth(), err)
	}
	s.logger.Info("rollup partitioned by day", "table", r.table)
	return nil
}

func (s *Store) recordCopy(ctx context.Context, r dayRollup, fp fingerprint) error {
	return s.insertRow(ctx, "rollup_day_copies (rollup, seq, counts, floats)", r.table, uint64(time.Now().UnixNano()), fp.counts, fp.floats)
}

func (s *Store) recordedCopy(ctx context.Context, r dayRollup) (fingerprint, bool, error) {
	var fp fingerprint
	var n uint64
	err := s.conn.QueryRow(ctx, "SELECT count(), argMax(counts, seq), argMax(floats, seq) FROM rollup_day_copies WHERE rollup = ?", r.table).
		Scan(&n, &fp.counts, &fp.floats)
	if err != nil {
		return fp, false, fmt.Errorf("read rollup_day_copies: %w", err)
	}
	return fp, n > 0, nil
}

type fingerprint struct {
	counts []uint64
	floats []float64
}

func (f fingerprint) equal(g fingerprint) bool {
	if len(f.counts) != len(g.counts) || len(f.floats) != len(g.floats) {
		return false
	}
	for i := range f.counts {
		if f.counts[i] != g.counts[i] {
			return false
		}
	}
	for i := range f.floats {
		a, b := f.floats[i], g.floats[i]
		if math.Abs(a-b) > 1e-9*math.Max(1, math.Max(math.Abs(a), math.Abs(b))) {
			return false
		}
	}
	return true
}

// plus adds two fingerprints: they are sums (the counts' wrapping).
func (f fingerprint) plus(g fingerprint) fingerprint {
	out := fingerprint{counts: append([]uint64{}, f.counts...), floats: append([]float64{}, f.floats...)}
	for i := range out.counts {
		out.counts[i] += g.counts[i]
	}
	for i := range out.floats {
		out.floats[i] += g.floats[i]
	}
	return out
}

func (s *Store) rollupFingerprint(ctx context.Context, r dayRollup, table, where string, args ...any) (fingerprint, error) {
	fp := r.zeroFingerprint()
	dest := make([]any, 0, len(fp.counts)+len(fp.floats))
	for i := range fp.counts {
		dest = append(dest, &fp.counts[i])
	}
	for i := range fp.floats {
		dest = append(dest, &fp.floats[i])
	}
	if err := s.conn.QueryRow(ctx, "SELECT "+r.fingerprint()+" FROM "+table+" WHERE "+where, args...).Scan(dest...); err != nil {
		return fp, fmt.Errorf("sum %s: %w", table, err)
	}
	return fp, nil
}

// pauseParts renames the parts table to parts_paused on every replica
// (every one must answer: one that kept taking inserts would feed the
// rollups). On 18.16 the RENAME waits for the INSERTs running into parts
// (their views included) and an INSERT that starts later fails before it
// writes anything, because the table is not there; a current server's
// RENAME does not wait, which waitInserts covers. The views stay attached
// to the name: renamed back, parts feeds them again. resumeParts undoes
// the pause wherever it is in place, also one a cut-off run left.
func (s *Store) pauseParts(ctx context.Context) error {
	if err := stillLocked(ctx); err != nil {
		return err
	}
	return s.onEveryReplica(ctx, "RENAME TABLE parts TO "+pausedParts)
}

// pausedParts is the parts table's name while it is paused.
const pausedParts = "parts_paused"

func (s *Store) resumeParts(ctx context.Context) error {
	var paused []driver.Conn
	if err := s.forEveryReplica(ctx, func(conn driver.Conn) error {
		var n uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = ?", pausedParts).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			paused = append(paused, conn)
		}
		return nil
	}); err != nil {
		return err
	}
	for _, conn := range paused {
		if err := conn.Exec(context.WithoutCancel(ctx), "RENAME TABLE "+pausedParts+" TO parts"); err != nil {
			return fmt.Errorf("resume parts: %w", err)
		}
	}
	return nil
}

// onEveryReplica runs stmt on every replica (the server, on one).
func (s *Store) onEveryReplica(ctx context.Context, stmt string) error {
	if err := s.forEveryReplica(ctx, func(conn driver.Conn) error { return conn.Exec(ctx, stmt) }); err != nil {
		return fmt.Errorf("%s: %w", stmt, err)
	}
	return nil
}

// forEveryReplica is eachReplica that fails when a replica does not
// answer.
func (s *Store) forEveryReplica(ctx context.Context, fn func(driver.Conn) error) error {
	skipped, err := s.eachReplica(ctx, fn)
	if err == nil && len(skipped) > 0 {
		err = fmt.Errorf("replicas %v do not answer", skipped)
	}
	return err
}

// amongParts is the condition that a row is in one of the data parts
// names (in), or in none of them (!in), with its arguments.
func amongParts(names []string, in bool) (string, []any) {
	if len(names) == 0 {
		if in {
			return "0", nil
		}
		return "1", nil
	}
	if in {
		return "has(?, _part)", []any{names}
	}
	return "NOT has(?, _part)", []any{names}
}

// dropStatement drops a table of the database if it exists.
func (s *Store) dropStatement(table string) string {
	return "DROP TABLE IF EXISTS " + s.qualified(table)
}

// rollupWriters is the pattern (re2, for match()) of the text of an INSERT
// that can write a rollup of database db.
func rollupWriters(db string) string {
	// (?i) is not honoured by 18.16's match(): both cases spelled out.
	return "^\\s*(INSERT|insert)\\s+(INTO|into)\\s+(`?" + regexp.QuoteMeta(db) + "`?\\.)?`?(parts|parts_hourly|parts_oee_hourly)`?[\\s(]"
}

// waitInserts waits until every INSERT that can write a rollup and that
// the server(s) run now has ended: into parts (its views), or into one of
// the rollups by name (a repair, a recompute). A name without its database
// may be another database's; waiting for it too costs only time.
func (s *Store) waitInserts(ctx context.Context) error {
	writers := rollupWriters(s.db)
	err := waitQueries(ctx, 50*time.Millisecond, nil, func(ctx context.Context) ([]string, error) {
		return s.runningQueries(ctx, "match(query, ?)", writers)
	})
	if err != nil {
		return fmt.Errorf("running inserts: %w", err)
	}
	return nil
}

// waitMerges waits until no merge of table runs: one that began before
// its merges were stopped ends on its own.
func (s *Store) waitMerges(ctx context.Context, table string) error {
	for {
		running := uint64(0)
		if err := s.forEveryReplica(ctx, func(conn driver.Conn) error {
			var n uint64
			err := conn.QueryRow(ctx, "SELECT count() FROM system.merges WHERE database = currentDatabase() AND table = ?", table).Scan(&n)
			running += n
			return err
		}); err != nil {
			return fmt.Errorf("merges of %s: %w", table, err)
		}
		if running == 0 {
			return nil
		}
		if !sleepCtx(ctx, 20*time.Millisecond) {
			return ctx.Err()
		}
	}
}

// partitionKey is a table's partition key as ClickHouse reports it.
func (s *Store) partitionKey(ctx context.Context, table string) (string, error) {
	var key string
	err := s.conn.QueryRow(ctx, "SELECT partition_key FROM system.tables WHERE database = currentDatabase() AND name = ?", table).Scan(&key)
	if err != nil {
		return "", fmt.Errorf("partition key of %s: %w", table, err)
	}
	return key, nil
}

func (s *Store) tableExists(ctx context.Context, table string) (bool, error) {
	var n uint64
	if err := s.conn.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = ?", table).Scan(&n); err != nil {
		return false, fmt.Errorf("look up %s: %w", table, err)
	}
	return n > 0, nil
}

// qualified names a table with the database, as a statement run by
// another host's DDL worker needs.
func (s *Store) qualified(table string) string { return quoteIdent(s.db) + "." + quoteIdent(table) }

// onCluster puts ON CLUSTER on a RENAME or DROP in cluster mode.
func (s *Store) onCluster(stmt string) string {
	if s.cluster == "" {
		return stmt
	}
	return stmt + " ON CLUSTER " + quoteIdent(s.cluster)
}
