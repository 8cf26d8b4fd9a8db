package chstore

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/uuid"

	"github.com/takt/takt/internal/watermark"
)

// MaxPartOffset is the largest Kafka offset a part id can carry: an id is
// (partition << 40) | offset, so offsets use the low 40 bits.
const MaxPartOffset = 1<<40 - 1

// PartID returns the parts record id of the message at (partition, offset).
func PartID(partition int32, offset int64) uint64 {
	return uint64(partition)<<40 | uint64(offset)
}

// PartRow is one row of the parts table (schemas/clickhouse/0002_parts.sql).
type PartRow struct {
	// ID is PartID(Partition, Offset).
	ID           uint64
	EventID      uuid.UUID
	Site         uint64
	LocationKind string // "line" or "machine"
	LocationID   uint64
	ExternalID   string
	ProductID    uint64
	// ProductCode is the resolved product's code; ProductReported the code
	// the device sent (either may be empty).
	ProductCode     string
	ProductReported string
	// ProductResolution is "code", "cycle_time", "fallback" or "none".
	ProductResolution string
	Quantity          uint32
	Quality           string // "good", "scrap" or "rework"
	Reason            string
	ReasonID          uint64
	// CycleTime is stored only when HasCycleTime; otherwise the column is
	// NULL.
	CycleTime         float64
	HasCycleTime      bool
	RecordedMs        int64 // recorded_at is RecordedMs truncated to seconds
	RecordedDefaulted bool
	// IdealCycleTime is the resolved product's ideal cycle time (seconds,
	// 0: none) when the part was processed.
	IdealCycleTime float64
	// OEEClass is how the part counts in the OEE figures: "counted" (or
	// ""), "unscheduled" or "late" (period.Class).
	OEEClass    string
	ReceivedMs  int64
	ProcessedMs int64
	// IdempotencyID is the part's wire.Part.IdempotencyID (uuid.Nil:
	// none); InsertParts records it in part_keys.
	IdempotencyID uuid.UUID
	Topic         string
	Partition     int32
	Offset        int64
	// OrderMs is the row's place in insertion order (order_ms); 0: its
	// receive time, until PartsBlock.StampOrder sets it.
	OrderMs int64
}

// Enum8 codes of the parts table; they must match 0002_parts.sql.
var (
	partLocationKinds = map[string]int8{"line": 1, "machine": 2}
	partOEEClasses    = map[string]int8{"": 0, "counted": 0, "unscheduled": 1, "late": 2}
)

// The Enum8 codes of a row's names, 0 for a name the column does not
// know (oeeClassCode: -1). Switches rather than map look-ups: a block
// takes four per row.

func locationKindCode(s string) int8 {
	switch s {
	case "line":
		return 1
	case "machine":
		return 2
	}
	return 0
}

func resolutionCode(s string) int8 {
	switch s {
	case "code":
		return 1
	case "cycle_time":
		return 2
	case "fallback":
		return 3
	case "none":
		return 4
	}
	return 0
}

func qualityCode(s string) int8 {
	switch s {
	case "good":
		return 1
	case "scrap":
		return 2
	case "rework":
		return 3
	}
	return 0
}

func oeeClassCode(s string) int8 {
	switch s {
	case "", "counted":
		return 0
	case "unscheduled":
		return 1
	case "late":
		return 2
	}
	return -1
}

// MaxDateTimeSeconds is the last second a ClickHouse DateTime can hold
// (UInt32 seconds since the epoch, early 2106).
const MaxDateTimeSeconds = 1<<32 - 1

// partsColumns is the explicit column list of every parts INSERT, in the
// order PartsBlock fills its columns.
const partsColumns = "id, event_id, site, location_kind, location_id, externalid, " +
	"product_id, product_code, product_reported, product_resolution, quantity, quality, " +
	"reason, reason_id, cycle_time, recorded_at, recorded_ms, recorded_defaulted, " +
	"received_ms, processed_ms, topic, partition, offset, ideal_cycle_time, oee_class, order_ms"

// PartsBlock collects part rows column by column for one INSERT block, so
// that a batch is handed to the driver as typed slices instead of being
// boxed row by row. Reset keeps the memory for the next block. A PartsBlock
// is not safe for concurrent use.
type PartsBlock struct {
	ids         []uint64
	eventIDs    []uuid.UUID
	sites       []uint64
	kinds       []int8
	locIDs      []uint64
	externalIDs []string
	productIDs  []uint64
	productCode []string
	reported    []string
	resolutions []int8
	quantities  []uint32
	qualities   []int8
	reasons     []string
	reasonIDs   []uint64
	cycleTimes  []float64
	hasCycle    []bool
	cyclePtrs   []*float64
	recordedAt  []time.Time
	recordedMs  []int64
	defaulted   []uint8
	receivedMs  []int64
	processedMs []int64
	topics      []string
	partitions  []int32
	offsets     []int64
	ideals      []float64
	classes     []int8
	// keyRows are the rows with an idempotency id, keyIDs their ids.
	keyRows []int
	keyIDs  []uuid.UUID
	orders  []int64
}

// Len returns the number of rows in b.
func (b *PartsBlock) Len() int { return len(b.ids) }

// IDs returns the ids of b's rows, in order (PartID); the slice is b's own
// and valid until b changes. A sink other than ClickHouse (a test's) reads
// what a block holds through it.
func (b *PartsBlock) IDs() []uint64 { return b.ids }

// ReceivedMs returns when the ingestor received each of b's rows (Unix
// milliseconds), in order; the slice is b's own and valid until b changes.
func (b *PartsBlock) ReceivedMs() []int64 { return b.receivedMs }

// Reset empties b and keeps its memory.
func (b *PartsBlock) Reset() {
	b.ids = b.ids[:0]
	b.eventIDs = b.eventIDs[:0]
	b.sites = b.sites[:0]
	b.kinds = b.kinds[:0]
	b.locIDs = b.locIDs[:0]
	clear(b.externalIDs) // drop string references so the decoded messages can be freed
	b.externalIDs = b.externalIDs[:0]
	b.productIDs = b.productIDs[:0]
	clear(b.productCode)
	b.productCode = b.productCode[:0]
	clear(b.reported)
	b.reported = b.reported[:0]
	b.resolutions = b.resolutions[:0]
	b.quantities = b.quantities[:0]
	b.qualities = b.qualities[:0]
	clear(b.reasons)
	b.reasons = b.reasons[:0]
	b.reasonIDs = b.reasonIDs[:0]
	b.cycleTimes = b.cycleTimes[:0]
	b.hasCycle = b.hasCycle[:0]
	clear(b.cyclePtrs)
	b.cyclePtrs = b.cyclePtrs[:0]
	b.recordedAt = b.recordedAt[:0]
	b.recordedMs = b.recordedMs[:0]
	b.defaulted = b.defaulted[:0]
	b.receivedMs = b.receivedMs[:0]
	b.processedMs = b.processedMs[:0]
	clear(b.topics)
	b.topics = b.topics[:0]
	b.partitions = b.partitions[:0]
	b.offsets = b.offsets[:0]
	b.ideals = b.ideals[:0]
	b.classes = b.classes[:0]
	b.keyRows = b.keyRows[:0]
	b.keyIDs = b.keyIDs[:0]
	b.orders = b.orders[:0]
}

// Append adds r to b. It fails, leaving b unchanged, when r holds a value
// the parts table cannot store (an unknown enum name, a recorded time
// outside DateTime's range): such a row would fail its whole block forever,
// so callers must reject it before batching.
func (b *PartsBlock) Append(r *PartRow) error {
	kind, res, qual, class := locationKindCode(r.LocationKind), resolutionCode(r.ProductResolution),
		qualityCode(r.Quality), oeeClassCode(r.OEEClass)
	if err := checkPartRow(r, kind, res, qual, class); err != nil {
		return err
	}
	b.ids = append(b.ids, r.ID)
	b.eventIDs = append(b.eventIDs, r.EventID)
	b.sites = append(b.sites, r.Site)
	b.kinds = append(b.kinds, kind)
	b.locIDs = append(b.locIDs, r.LocationID)
	b.externalIDs = append(b.externalIDs, r.ExternalID)
	b.productIDs = append(b.productIDs, r.ProductID)
	b.productCode = append(b.productCode, r.ProductCode)
	b.reported = append(b.reported, r.ProductReported)
	b.resolutions = append(b.resolutions, res)
	b.quantities = append(b.quantities, r.Quantity)
	b.qualities = append(b.qualities, qual)
	b.reasons = append(b.reasons, r.Reason)
	b.reasonIDs = append(b.reasonIDs, r.ReasonID)
	b.cycleTimes = append(b.cycleTimes, r.CycleTime)
	b.hasCycle = append(b.hasCycle, r.HasCycleTime)
	b.recordedAt = append(b.recordedAt, time.Unix(r.RecordedMs/1000, 0))
	b.recordedMs = append(b.recordedMs, r.RecordedMs)
	b.defaulted = append(b.defaulted, b2u(r.RecordedDefaulted))
	b.receivedMs = append(b.receivedMs, r.ReceivedMs)
	b.processedMs = append(b.processedMs, r.ProcessedMs)
	b.topics = append(b.topics, r.Topic)
	b.partitions = append(b.partitions, r.Partition)
	b.offsets = append(b.offsets, r.Offset)
	b.ideals = append(b.ideals, r.IdealCycleTime)
	b.classes = append(b.classes, class)
	if r.IdempotencyID != uuid.Nil {
		b.keyRows = append(b.keyRows, len(b.ids)-1)
		b.keyIDs = append(b.keyIDs, r.IdempotencyID)
	}
	order := r.OrderMs
	if order == 0 {
		order = r.ReceivedMs
	}
	b.orders = append(b.orders, order)
	return nil
}

// AppendBlock adds o's rows to b, after b's own, leaving o unchanged: the
// rows of several Kafka partitions then go to ClickHouse as one block.
func (b *PartsBlock) AppendBlock(o *PartsBlock) {
	for k, i := range o.keyRows {
		b.keyRows = append(b.keyRows, len(b.ids)+i)
		b.keyIDs = append(b.keyIDs, o.keyIDs[k])
	}
	b.ids = append(b.ids, o.ids...)
	b.eventIDs = append(b.eventIDs, o.eventIDs...)
	b.sites = append(b.sites, o.sites...)
	b.kinds = append(b.kinds, o.kinds...)
	b.locIDs = append(b.locIDs, o.locIDs...)
	b.externalIDs = append(b.externalIDs, o.externalIDs...)
	b.productIDs = append(b.productIDs, o.productIDs...)
	b.productCode = append(b.productCode, o.productCode...)
	b.reported = append(b.reported, o.reported...)
	b.resolutions = append(b.resolutions, o.resolutions...)
	b.quantities = append(b.quantities, o.quantities...)
	b.qualities = append(b.qualities, o.qualities...)
	b.reasons = append(b.reasons, o.reasons...)
	b.reasonIDs = append(b.reasonIDs, o.reasonIDs...)
	b.cycleTimes = append(b.cycleTimes, o.cycleTimes...)
	b.hasCycle = append(b.hasCycle, o.hasCycle...)
	b.recordedAt = append(b.recordedAt, o.recordedAt...)
	b.recordedMs = append(b.recordedMs, o.recordedMs...)
	b.defaulted = append(b.defaulted, o.defaulted...)
	b.receivedMs = append(b.receivedMs, o.receivedMs...)
	b.processedMs = append(b.processedMs, o.processedMs...)
	b.topics = append(b.topics, o.topics...)
	b.partitions = append(b.partitions, o.partitions...)
	b.offsets = append(b.offsets, o.offsets...)
	b.ideals = append(b.ideals, o.ideals...)
	b.classes = append(b.classes, o.classes...)
	b.orders = append(b.orders, o.orders...)
}

// StampOrder places b's rows, all of one Kafka partition and in offset
// order, in insertion order (watermark.Stamp): each row's order_ms is its
// receive time, raised above floor, the watermark last published for the
// partition, and to at least the previous row's, starting from last. It
// returns the last row's order_ms (last when b is empty).
func (b *PartsBlock) StampOrder(floor, last int64) int64 {
	for i, r := range b.receivedMs {
		last = watermark.Stamp(r, floor, last)
		b.orders[i] = last
	}
	return last
}

// OrderMs returns the order_ms of b's rows, in order; the slice is b's
// own and valid until b changes.
func (b *PartsBlock) OrderMs() []int64 { return b.orders }

// SetLastOEEClass sets the OEE class of the row appended last (one of
// CheckPartRow's classes; an unknown one is taken as counted).
func (b *PartsBlock) SetLastOEEClass(class string) {
	if n := len(b.classes); n > 0 {
		b.classes[n-1] = max(oeeClassCode(class), 0)
	}
}

// CheckPartRow reports why the parts table cannot store r, or nil.
func CheckPartRow(r *PartRow) error {
	return checkPartRow(r, locationKindCode(r.LocationKind), resolutionCode(r.ProductResolution),
		qualityCode(r.Quality), oeeClassCode(r.OEEClass))
}

// checkPartRow is CheckPartRow given r's Enum8 codes.
func checkPartRow(r *PartRow, kind, res, qual, class int8) error {
	switch {
	case kind == 0:
		return fmt.Errorf("part row %d: location_kind %q", r.ID, r.LocationKind)
	case res == 0:
		return fmt.Errorf("part row %d: product_resolution %q", r.ID, r.ProductResolution)
	case qual == 0:
		return fmt.Errorf("part row %d: quality %q", r.ID, r.Quality)
	case class < 0:
		return fmt.Errorf("part row %d: oee_class %q", r.ID, r.OEEClass)
	case math.IsNaN(r.IdealCycleTime) || math.IsInf(r.IdealCycleTime, 0) || r.IdealCycleTime < 0:
		return fmt.Errorf("part row %d: ideal_cycle_time %v", r.ID, r.IdealCycleTime)
	case r.RecordedMs < 0 || r.RecordedMs/1000 > MaxDateTimeSeconds:
		return fmt.Errorf("part row %d: recorded_ms %d outside DateTime range", r.ID, r.RecordedMs)
	case r.Offset < 0 || r.Offset > MaxPartOffset || r.Partition < 0:
		return fmt.Errorf("part row %d: partition %d offset %d do not fit a part id", r.ID, r.Partition, r.Offset)
	}
	return nil
}

// InsertParts writes b as one INSERT block. The parts table has no
// partition key, so ClickHouse stores the block as exactly one data part:
// either every row of b is visible afterwards or none is. An error does not
// say which: the connection may have failed after the server committed the
// part, so a caller that retries must first ask (PartsMaxOffset) whether
// the block is already there. b is left unchanged.
//
// The idempotency ids of b's rows are written to part_keys first (a second
// INSERT): a crash between the two leaves keys whose parts are written
// again at the same positions, never parts without their keys.
func (s *Store) InsertParts(ctx context.Context, b *PartsBlock) error {
	if b.Len() == 0 {
		return nil
	}
	if err := s.insertPartKeys(ctx, b); err != nil {
		return err
	}
	b.cyclePtrs = b.cyclePtrs[:0]
	for i := range b.cycleTimes {
		var p *float64
		if b.hasCycle[i] {
			p = &b.cycleTimes[i]
		}
		b.cyclePtrs = append(b.cyclePtrs, p)
	}
	batch, err := s.conn.PrepareBatch(ctx, s.partsInsertPrefix()+" ("+partsColumns+")")
	if err != nil {
		return fmt.Errorf("prepare insert into parts: %w", err)
	}
	cols := []any{
		b.ids, b.eventIDs, b.sites, b.kinds, b.locIDs, b.externalIDs,
		b.productIDs, b.productCode, b.reported, b.resolutions, b.quantities, b.qualities,
		b.reasons, b.reasonIDs, b.cyclePtrs, b.recordedAt, b.recordedMs, b.defaulted,
		b.receivedMs, b.processedMs, b.topics, b.partitions, b.offsets, b.ideals, b.classes, b.orders,
	}
	for i, col := range cols {
		if err := batch.Column(i).Append(col); err != nil {
			_ = batch.Abort()
			return fmt.Errorf("insert into parts: column %d: %w", i, err)
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("insert %d rows into parts: %w", b.Len(), err)
	}
	return nil
}

// partsInsertPrefix is how every parts INSERT starts. The table is named
// with its database so that RunningPartsInserts can tell this database's
// inserts from others' in system.processes.
func (s *Store) partsInsertPrefix() string { return "INSERT INTO `" + s.db + "`.parts" }

// RunningPartsInserts returns the query ids of the INSERTs into this
// database's parts table that ClickHouse is executing now: on every
// replica that answers, in cluster mode (a killed processor's last INSERT
// may run on any of them; one that does not answer cannot finish it).
func (s *Store) RunningPartsInserts(ctx context.Context) ([]string, error) {
	ids, err := s.runningQueries(ctx, "startsWith(query, ?)", s.partsInsertPrefix())
	if err != nil {
		return nil, fmt.Errorf("running parts inserts: %w", err)
	}
	return ids, nil
}

// runningQueries returns the ids of the queries running on every replica
// that answers whose text meets cond, a condition on system.processes with
// one argument.
func (s *Store) runningQueries(ctx context.Context, cond string, arg any) ([]string, error) {
	var ids []string
	_, err := s.eachReplica(ctx, func(conn driver.Conn) error {
		rows, err := conn.Query(ctx, "SELECT query_id FROM system.processes WHERE "+cond, arg)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return err
			}
			ids = append(ids, id)
		}
		return rows.Err()
	})
	return ids, err
}

// WaitPartsInserts waits until every INSERT into the parts table that is
// running now has ended, committed or failed. A process killed right after
// sending a block leaves its INSERT running in the server, and the rows
// appear only when it ends; whoever resumes from the table's last offset
// must wait for such inserts first. Inserts that start later are not
// waited for. poll is the pause between checks; every is called with the
// count still running after each one (for logging).
func (s *Store) WaitPartsInserts(ctx context.Context, poll time.Duration, every func(running int)) error {
	return waitQueries(ctx, poll, every, s.RunningPartsInserts)
}

// waitQueries waits until every query that running lists now is no longer
// listed; see WaitPartsInserts.
func waitQueries(ctx context.Context, poll time.Duration, every func(running int), running func(context.Context) ([]string, error)) error {
	ids, err := running(ctx)
	if err != nil {
		return err
	}
	waiting := make(map[string]bool, len(ids))
	for _, id := range ids {
		waiting[id] = true
	}
	for len(waiting) > 0 {
		if !sleepCtx(ctx, poll) {
			return ctx.Err()
		}
		now, err := running(ctx)
		if err != nil {
			return err
		}
		still := make(map[string]bool, len(waiting))
		for _, id := range now {
			if waiting[id] {
				still[id] = true
			}
		}
		waiting = still
		if every != nil && len(waiting) > 0 {
			every(len(waiting))
		}
	}
	return nil
}

// sleepCtx waits d or until ctx is done; it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// PartsMaxOffset returns the largest offset of (topic, partition) that the
// parts table holds among offsets >= from, and false when it holds none.
// The id range [(partition<<40)|from, (partition+1)<<40) follows the
// table's ORDER BY, so ClickHouse reads only that range of the index; a
// caller that knows a lower bound (the committed offset) keeps the read
// small.
func (s *Store) PartsMaxOffset(ctx context.Context, topic string, partition int32, from int64) (int64, bool, error) {
	if from < 0 {
		from = 0
	}
	if partition < 0 || from > MaxPartOffset {
		return 0, false, fmt.Errorf("parts max offset: partition %d from %d out of range", partition, from)
	}
	lo, hi := PartID(partition, from), PartID(partition+1, 0)
	var n, maxID uint64
	// The block a previous owner wrote last may be on another replica
	// only: read where every acknowledged block is (replicas.go).
	err := s.syncedRead(ctx, []string{"parts"}, func(conn driver.Conn) error {
		return conn.QueryRow(ctx, "SELECT count(), max(id) FROM parts WHERE id >= ? AND id < ? AND topic = ?",
			lo, hi, topic).Scan(&n, &maxID)
	})
	if err != nil {
		return 0, false, fmt.Errorf("parts max offset of %s/%d: %w", topic, partition, err)
	}
	if n == 0 {
		return 0, false, nil
	}
	return int64(maxID & MaxPartOffset), true, nil
}

// PartsOfTopic returns every row of topic, ordered by id. It is meant for
// tests and tools: it reads the whole topic's rows.
func (s *Store) PartsOfTopic(ctx context.Context, topic string) ([]PartRow, error) {
	rows, err := s.conn.Query(ctx, `SELECT id, event_id, site, toString(location_kind), location_id, externalid,
		product_id, product_code, product_reported, toString(product_resolution), quantity, toString(quality),
		reason, reason_id, cycle_time, recorded_ms, recorded_defaulted, received_ms, processed_ms,
		topic, partition, offset, ideal_cycle_time, `+partClassName+`, order_ms
		FROM parts WHERE topic = ? ORDER BY id`, topic)
	if err != nil {
		return nil, fmt.Errorf("query parts of %s: %w", topic, err)
	}
	defer rows.Close()
	var out []PartRow
	for rows.Next() {
		var (
			r         PartRow
			cycleTime *float64
			defaulted uint8
		)
		if err := rows.Scan(&r.ID, &r.EventID, &r.Site, &r.LocationKind, &r.LocationID, &r.ExternalID,
			&r.ProductID, &r.ProductCode, &r.ProductReported, &r.ProductResolution, &r.Quantity, &r.Quality,
			&r.Reason, &r.ReasonID, &cycleTime, &r.RecordedMs, &defaulted, &r.ReceivedMs, &r.ProcessedMs,
			&r.Topic, &r.Partition, &r.Offset, &r.IdealCycleTime, &r.OEEClass, &r.OrderMs); err != nil {
			return nil, fmt.Errorf("scan part: %w", err)
		}
		if cycleTime != nil {
			r.CycleTime, r.HasCycleTime = *cycleTime, true
		}
		r.RecordedDefaulted = defaulted == 1
		out = append(out, r)
	}
	return out, rows.Err()
}

// PartsCount returns how many rows and how many distinct event ids the
// parts table holds for topic: equal counts mean no event was written twice.
func (s *Store) PartsCount(ctx context.Context, topic string) (rows, events uint64, err error) {
	err = s.conn.QueryRow(ctx, "SELECT count(), uniqExact(event_id) FROM parts WHERE topic = ?", topic).Scan(&rows, &events)
	if err != nil {
		return 0, 0, fmt.Errorf("count parts of %s: %w", topic, err)
	}
	return rows, events, nil
}
