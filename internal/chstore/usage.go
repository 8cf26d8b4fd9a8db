package chstore

import (
	"context"
	"fmt"
	"time"
)

// PutKeyUsage records when API keys were last used (apikey_usage, read by
// the apikeys record area as last_used). Rows only add up: the table keeps
// the latest time per key (ReplacingMergeTree by last_used) and reads take
// max(last_used), so an older time written later, e.g. by another
// replica, never moves a key's last use back.
func (s *Store) PutKeyUsage(ctx context.Context, used map[uint64]time.Time) error {
	if len(used) == 0 {
		return nil
	}
	b, err := s.conn.PrepareBatch(ctx, "INSERT INTO apikey_usage (key, last_used)")
	if err != nil {
		return fmt.Errorf("prepare insert into apikey_usage: %w", err)
	}
	for id, t := range used {
		if err := b.Append(id, t.UTC()); err != nil {
			b.Abort()
			return fmt.Errorf("insert into apikey_usage: %w", err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("insert into apikey_usage: %w", err)
	}
	return nil
}
