package chstore

import (
	"context"
	"fmt"
)

// SiteTimezones returns the IANA time zone name of every live site.
func (s *Store) SiteTimezones(ctx context.Context) (map[uint64]string, error) {
	rows, err := s.conn.Query(ctx, "SELECT id, timezone FROM (SELECT * FROM sites FINAL) WHERE deleted = 0")
	if err != nil {
		return nil, fmt.Errorf("query site time zones: %w", err)
	}
	defer rows.Close()
	out := map[uint64]string{}
	for rows.Next() {
		var id uint64
		var tz string
		if err := rows.Scan(&id, &tz); err != nil {
			return nil, fmt.Errorf("scan site time zone: %w", err)
		}
		out[id] = tz
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query site time zones: %w", err)
	}
	return out, nil
}
