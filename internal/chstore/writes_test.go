package chstore_test

import (
	"context"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/l2l"
	"github.com/takt/takt/internal/record"
	"github.com/takt/takt/internal/testenv"
)

// TestStopThresholdWrites: a location's stop threshold is written and read back
// through the generic record writes, shows in the lines and machines
// areas, and is 0 for locations written without it.
func TestStopThresholdWrites(t *testing.T) {
	s, _ := testenv.ClickHouse(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	audit := chstore.Audit{CreatedBy: "test", LastUpdatedBy: "test"}
	if err := s.PutLine(ctx, chstore.Line{ID: 1, Site: 1, Area: 1, Code: "L1", ExternalID: "l1", Audit: audit}); err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"lines", "machines"} {
		row, a, err := s.ReadRow(ctx, "lines", 1)
		if err != nil {
			t.Fatal(err)
		}
		if row["stop_threshold"] != 0.0 {
			t.Errorf("lines 1 written without a threshold: %v", row["stop_threshold"])
		}
		id := uint64(10)
		if table == "machines" {
			id, row = 11, record.Takt.Must("machines").ZeroRow()
			row["site"], row["line"], row["code"] = uint64(1), uint64(1), "M1"
		}
		row["stop_threshold"] = 120.5
		a.Version = 0
		if err := s.WriteRow(ctx, table, id, row, a); err != nil {
			t.Fatal(err)
		}
		back, _, err := s.ReadRow(ctx, table, id)
		if err != nil || back["stop_threshold"] != 120.5 {
			t.Errorf("%s %d: stop_threshold %v, %v", table, id, back["stop_threshold"], err)
		}
		area, _ := chstore.RecordAreaByName(table)
		q, err := l2l.Parse(url.Values{"fields": {"id,stop_threshold"}, "stop_threshold__gt": {"100"}}, area.Schema())
		if err != nil {
			t.Fatal(err)
		}
		page, err := s.Records(ctx, area, q, []uint64{1})
		if err != nil || len(page.Rows) != 1 || page.Rows[0][0] != int64(id) || page.Rows[0][1] != 120.5 {
			t.Errorf("%s area: %v %v", table, page.Rows, err)
		}
	}
}

// TestPeriodByID: PeriodByID reads the newest live version of a period.
func TestPeriodByID(t *testing.T) {
	s, _ := testenv.ClickHouse(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC).UnixMilli()
	row := func(id uint64, version uint64, state string, end int64) chstore.PeriodRow {
		return chstore.PeriodRow{ID: id, Site: 1, Location: 3, LocationKind: "machine", ExternalID: "m3", State: state,
			Start: start, End: end, Open: end == 0, Version: version}
	}
	closed := row(1, 2, "planned_down", start+90e3)
	closed.Reason = 7
	deleted := row(2, 2, "down", start+60e3)
	deleted.Deleted = true
	if err := s.InsertPeriods(ctx, []chstore.PeriodRow{
		row(1, 1, "down", 0), closed, row(2, 1, "down", 0), deleted, row(3, 1, "down", 0),
	}); err != nil {
		t.Fatal(err)
	}
	got, err := s.PeriodByID(ctx, 1)
	if err != nil || got != closed {
		t.Errorf("period 1:\n got %+v %v\nwant %+v", got, err, closed)
	}
	if got, err := s.PeriodByID(ctx, 3); err != nil || got != row(3, 1, "down", 0) || !got.Open || got.End != 0 {
		t.Errorf("open period 3: %+v %v", got, err)
	}
	for _, id := range []uint64{2, 4} {
		if _, err := s.PeriodByID(ctx, id); !errors.Is(err, chstore.ErrNotFound) {
			t.Errorf("period %d: %v, want ErrNotFound", id, err)
		}
	}
}
