package chstore

// The parts watermark (internal/watermark): what each partition's owner
// published, in parts_watermarks (schemas/clickhouse/0041).

import (
	"context"
	"fmt"

	"github.com/takt/takt/internal/watermark"
)

// InsertPartsWatermarks writes the watermarks a processor publishes for
// partitions of topic, in one INSERT. A partition's largest watermark is
// the one that counts, so a row written twice, or late, changes nothing.
func (s *Store) InsertPartsWatermarks(ctx context.Context, topic string, ws []watermark.Partition) error {
	if len(ws) == 0 {
		return nil
	}
	batch, err := s.conn.PrepareBatch(ctx, "INSERT INTO parts_watermarks (topic, partition, partitions, watermark_ms, stored)")
	if err != nil {
		return fmt.Errorf("prepare insert into parts_watermarks: %w", err)
	}
	for _, w := range ws {
		if err := batch.Append(topic, w.Partition, w.Partitions, w.Ms, w.Stored); err != nil {
			_ = batch.Abort()
			return fmt.Errorf("insert into parts_watermarks: %w", err)
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("insert %d rows into parts_watermarks: %w", len(ws), err)
	}
	return nil
}

// PartsWatermarks returns, for each partition of topic that has one, the
// largest watermark published (with the largest partition count and
// stored offset published); watermark.Of turns them into the topic's.
func (s *Store) PartsWatermarks(ctx context.Context, topic string) ([]watermark.Partition, error) {
	rows, err := s.conn.Query(ctx, "SELECT partition, max(partitions), max(watermark_ms), max(stored) "+
		"FROM parts_watermarks WHERE topic = ? GROUP BY partition ORDER BY partition", topic)
	if err != nil {
		return nil, fmt.Errorf("parts watermarks of %s: %w", topic, err)
	}
	defer rows.Close()
	var out []watermark.Partition
	for rows.Next() {
		var w watermark.Partition
		if err := rows.Scan(&w.Partition, &w.Partitions, &w.Ms, &w.Stored); err != nil {
			return nil, fmt.Errorf("parts watermarks of %s: %w", topic, err)
		}
		out = append(out, w)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("parts watermarks of %s: %w", topic, err)
	}
	return out, nil
}
