package chstore

import (
	"context"
	"fmt"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/uuid"
)

// The part_keys table (schemas/clickhouse/0045_part_keys.sql) holds where
// each part that carried an idempotency id is stored. InsertParts writes a
// block's keys before its parts, so a part in the parts table always has
// its key there; PartKeys is how the processor asks whether an id is held
// by another message already.

// PartPosition is where a part is stored: its Kafka partition and offset.
type PartPosition struct {
	Partition int32
	Offset    int64
}

// Before reports whether p comes before q (partition, then offset).
func (p PartPosition) Before(q PartPosition) bool {
	return p.Partition < q.Partition || p.Partition == q.Partition && p.Offset < q.Offset
}

// MaxPartKeysLookup bounds the ids of one PartKeys call (the length of its
// statement).
const MaxPartKeysLookup = 2000

// PartKeys returns, for each of ids that part_keys holds for topic, the
// first position it is stored at. Ids it does not hold are absent. On a
// cluster it reads a synced replica (syncedRead): a key another replica
// acknowledged must not be missed.
func (s *Store) PartKeys(ctx context.Context, topic string, ids []uuid.UUID) (map[uuid.UUID]PartPosition, error) {
	found := make(map[uuid.UUID]PartPosition)
	for len(ids) > 0 {
		n := min(len(ids), MaxPartKeysLookup)
		if err := s.partKeys(ctx, topic, ids[:n], found); err != nil {
			return nil, err
		}
		ids = ids[n:]
	}
	return found, nil
}

func (s *Store) partKeys(ctx context.Context, topic string, ids []uuid.UUID, found map[uuid.UUID]PartPosition) error {
	// A UUID's text is hex and dashes: written in as literals, so the IN
	// list is one set the primary key is searched with.
	var in strings.Builder
	in.Grow(len(ids) * 40)
	for i, id := range ids {
		if i > 0 {
			in.WriteString(", ")
		}
		in.WriteByte('\'')
		in.WriteString(id.String())
		in.WriteByte('\'')
	}
	query := "SELECT idempotency_id, partition, offset FROM part_keys WHERE topic = ? AND idempotency_id IN (" + in.String() + ")"
	err := s.syncedRead(ctx, []string{"part_keys"}, func(conn driver.Conn) error {
		rows, err := conn.Query(ctx, query, topic)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id uuid.UUID
			var p PartPosition
			if err := rows.Scan(&id, &p.Partition, &p.Offset); err != nil {
				return err
			}
			if q, ok := found[id]; !ok || p.Before(q) {
				found[id] = p
			}
		}
		return rows.Err()
	})
	if err != nil {
		return fmt.Errorf("part keys: %w", err)
	}
	return nil
}

// insertPartKeys writes the keys of b's rows that carry an idempotency id.
func (s *Store) insertPartKeys(ctx context.Context, b *PartsBlock) error {
	if len(b.keyRows) == 0 {
		return nil
	}
	batch, err := s.conn.PrepareBatch(ctx, "INSERT INTO part_keys (idempotency_id, topic, partition, offset, received_ms)")
	if err != nil {
		return fmt.Errorf("prepare insert into part_keys: %w", err)
	}
	for k, i := range b.keyRows {
		if err := batch.Append(b.keyIDs[k], b.topics[i], b.partitions[i], b.offsets[i], b.receivedMs[i]); err != nil {
			_ = batch.Abort()
			return fmt.Errorf("insert into part_keys: %w", err)
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("insert %d rows into part_keys: %w", len(b.keyRows), err)
	}
	return nil
}
