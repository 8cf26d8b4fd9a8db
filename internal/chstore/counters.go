package chstore

import (
	"context"
	"fmt"
	"time"
)

// MachineCounter is a version of a machine's cycle counter
// (machine_counters). Version orders the versions of one machine: the
// highest is the counter's value.
type MachineCounter struct {
	Machine uint64
	Site    uint64
	Count   uint64
	// Updated is when the counter was last set or raised by a call that
	// tracks it (zero: never).
	Updated time.Time
	Version uint64
}

// MachineCounter returns the newest version of machine's counter; found is
// false when it was never set.
func (s *Store) MachineCounter(ctx context.Context, machine uint64) (MachineCounter, bool, error) {
	rows, err := s.conn.Query(ctx, `SELECT site, cyclecount, toUInt32(lastupdated), version
		FROM machine_counters FINAL WHERE machine = ? ORDER BY version DESC LIMIT 1`, machine)
	if err != nil {
		return MachineCounter{}, false, fmt.Errorf("cycle counter of machine %d: %w", machine, err)
	}
	defer rows.Close()
	c := MachineCounter{Machine: machine}
	if !rows.Next() {
		return c, false, rows.Err()
	}
	var updated uint32
	if err := rows.Scan(&c.Site, &c.Count, &updated, &c.Version); err != nil {
		return MachineCounter{}, false, fmt.Errorf("cycle counter of machine %d: %w", machine, err)
	}
	if updated > 0 {
		c.Updated = time.Unix(int64(updated), 0).UTC()
	}
	return c, true, nil
}

// PutMachineCounter writes a version of a machine's counter.
func (s *Store) PutMachineCounter(ctx context.Context, c MachineCounter) error {
	updated := time.Unix(0, 0).UTC()
	if !c.Updated.IsZero() {
		updated = c.Updated.UTC()
	}
	return s.insertRow(ctx, "machine_counters (machine, site, cyclecount, lastupdated, version)",
		c.Machine, c.Site, c.Count, updated, c.Version)
}
