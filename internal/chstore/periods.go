package chstore

// What the processor's production-period state machines read and write:
// the configuration of every location (stop threshold, site time zone,
// shifts) and the machines' saved state (period_state,
// 0022_period_state.sql).

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// PeriodLocation is a live location with an external id, as the period
// state machine needs it: Line is the line itself for a line, the
// machine's line for a machine; StopThreshold is in seconds, 0 meaning
// derived from the product's ideal cycle time.
type PeriodLocation struct {
	Kind          string
	ID, Site      uint64
	Line          uint64
	ExternalID    string
	StopThreshold float64
}

// SiteShift is a live shift of a site (Line 0: the whole site).
type SiteShift struct {
	Site uint64
	OEEShift
}

// PeriodMaster is the configuration of every location's state machine.
type PeriodMaster struct {
	Locations []PeriodLocation
	// Zones maps a live site to its time zone name.
	Zones  map[uint64]string
	Shifts []SiteShift
}

// PeriodMaster reads every live location, site time zone and shift (small
// FINAL reads).
func (s *Store) PeriodMaster(ctx context.Context) (PeriodMaster, error) {
	m := PeriodMaster{Zones: map[uint64]string{}}
	rows, err := s.conn.Query(ctx, `SELECT kind, id, site, line, externalid, stop_threshold FROM (
		SELECT 'line' AS kind, id, site, id AS line, externalid, stop_threshold FROM (SELECT * FROM lines FINAL) WHERE deleted = 0 AND externalid != ''
		UNION ALL
		SELECT 'machine' AS kind, id, site, line, externalid, stop_threshold FROM (SELECT * FROM machines FINAL) WHERE deleted = 0 AND externalid != ''
	) ORDER BY kind, id`)
	if err != nil {
		return PeriodMaster{}, fmt.Errorf("period locations: %w", err)
	}
	for rows.Next() {
		var l PeriodLocation
		if err := rows.Scan(&l.Kind, &l.ID, &l.Site, &l.Line, &l.ExternalID, &l.StopThreshold); err != nil {
			rows.Close()
			return PeriodMaster{}, fmt.Errorf("period locations: %w", err)
		}
		m.Locations = append(m.Locations, l)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return PeriodMaster{}, fmt.Errorf("period locations: %w", err)
	}
	rows, err = s.conn.Query(ctx, "SELECT id, timezone FROM (SELECT * FROM sites FINAL) WHERE deleted = 0")
	if err != nil {
		return PeriodMaster{}, fmt.Errorf("site time zones: %w", err)
	}
	for rows.Next() {
		var id uint64
		var tz string
		if err := rows.Scan(&id, &tz); err != nil {
			rows.Close()
			return PeriodMaster{}, fmt.Errorf("site time zones: %w", err)
		}
		m.Zones[id] = tz
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return PeriodMaster{}, fmt.Errorf("site time zones: %w", err)
	}
	rows, err = s.conn.Query(ctx, `SELECT site, line, code, start_time, end_time, days
		FROM (SELECT * FROM shifts FINAL) WHERE deleted = 0 AND active = 1 ORDER BY site, line, code, id`)
	if err != nil {
		return PeriodMaster{}, fmt.Errorf("shifts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var sh SiteShift
		if err := rows.Scan(&sh.Site, &sh.Line, &sh.Code, &sh.Start, &sh.End, &sh.Day); err != nil {
			return PeriodMaster{}, fmt.Errorf("shifts: %w", err)
		}
		m.Shifts = append(m.Shifts, sh)
	}
	return m, rows.Err()
}

// PeriodState is the saved state of one location's state machine.
type PeriodState struct {
	Topic        string
	LocationKind string
	Location     uint64
	Partition    int32
	// Offset: the state includes every record of the partition before it.
	Offset     int64
	Site       uint64
	ExternalID string
	// State is the machine's snapshot; Outbox the period rows written
	// with it (both JSON).
	State, Outbox []byte
	Version       uint64
}

// InsertPeriodStates writes states in one block (one atomic data part).
func (s *Store) InsertPeriodStates(ctx context.Context, states []PeriodState) error {
	if len(states) == 0 {
		return nil
	}
	b, err := s.conn.PrepareBatch(ctx, "INSERT INTO period_state (topic, location_kind, location, partition, offset, site, externalid, state, outbox, version, written_at)")
	if err != nil {
		return fmt.Errorf("prepare insert into period_state: %w", err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	for _, st := range states {
		if err := b.Append(st.Topic, st.LocationKind, st.Location, st.Partition, st.Offset, st.Site, st.ExternalID,
			string(st.State), string(st.Outbox), st.Version, now); err != nil {
			b.Abort()
			return fmt.Errorf("insert into period_state: %w", err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("insert into period_state: %w", err)
	}
	return nil
}

// PeriodStates returns the newest saved state of every location whose
// newest state belongs to one of the partitions of topic.
func (s *Store) PeriodStates(ctx context.Context, topic string, partitions []int32) ([]PeriodState, error) {
	if len(partitions) == 0 {
		return nil, nil
	}
	set := make([]any, len(partitions))
	for i, p := range partitions {
		set[i] = p
	}
	// A new owner loads what the previous one saved, maybe on another
	// replica: read where every acknowledged state is (replicas.go).
	var out []PeriodState
	err := s.syncedRead(ctx, []string{"period_state"}, func(conn driver.Conn) error {
		out = out[:0]
		rows, err := conn.Query(ctx, `SELECT toString(location_kind), location, partition, offset, site, externalid, state, outbox, version
		FROM (SELECT * FROM period_state FINAL WHERE topic = ?) WHERE partition IN ?`, topic, clickhouse.GroupSet{Value: set})
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			st := PeriodState{Topic: topic}
			var state, outbox string
			if err := rows.Scan(&st.LocationKind, &st.Location, &st.Partition, &st.Offset, &st.Site, &st.ExternalID,
				&state, &outbox, &st.Version); err != nil {
				return err
			}
			st.State, st.Outbox = []byte(state), []byte(outbox)
			out = append(out, st)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("period states: %w", err)
	}
	return out, nil
}

// PeriodCheckpoint says that every saved state of the locations of a
// partition covers its records before Offset.
type PeriodCheckpoint struct {
	Topic     string
	Partition int32
	Offset    int64
	Version   uint64
}

// InsertPeriodCheckpoints writes checkpoints in one block.
func (s *Store) InsertPeriodCheckpoints(ctx context.Context, cps []PeriodCheckpoint) error {
	if len(cps) == 0 {
		return nil
	}
	b, err := s.conn.PrepareBatch(ctx, "INSERT INTO period_checkpoints (topic, partition, offset, version)")
	if err != nil {
		return fmt.Errorf("prepare insert into period_checkpoints: %w", err)
	}
	for _, cp := range cps {
		if err := b.Append(cp.Topic, cp.Partition, cp.Offset, cp.Version); err != nil {
			b.Abort()
			return fmt.Errorf("insert into period_checkpoints: %w", err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("insert into period_checkpoints: %w", err)
	}
	return nil
}

// PeriodCheckpoints returns the newest checkpoint of each of the
// partitions of topic that has one.
func (s *Store) PeriodCheckpoints(ctx context.Context, topic string, partitions []int32) (map[int32]int64, error) {
	out := map[int32]int64{}
	if len(partitions) == 0 {
		return out, nil
	}
	set := make([]any, len(partitions))
	for i, p := range partitions {
		set[i] = p
	}
	err := s.syncedRead(ctx, []string{"period_checkpoints"}, func(conn driver.Conn) error {
		clear(out)
		rows, err := conn.Query(ctx, `SELECT partition, offset FROM period_checkpoints FINAL
		WHERE topic = ? AND partition IN ?`, topic, clickhouse.GroupSet{Value: set})
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var p int32
			var o int64
			if err := rows.Scan(&p, &o); err != nil {
				return err
			}
			out[p] = o
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("period checkpoints: %w", err)
	}
	return out, nil
}
