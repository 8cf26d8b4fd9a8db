package chcompat

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/takt/takt/internal/auth"
	"github.com/takt/takt/internal/bootstrap"
	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/l2l"
	"github.com/takt/takt/internal/record"
	"github.com/takt/takt/internal/watermark"
)

// Workload sends every statement shape of the services through a Store
// whose database is empty: it migrates it, writes a small fixed dataset
// the way the services write (master data by Put* and the record API's
// WriteRow, parts in blocks, periods, saved states, checkpoints, key
// uses), and reads it the way they read: every record area with each
// filter operator on each field and each order, the OEE and pitch reads,
// the processor's catalog, offset and checkpoint reads.
type Workload struct {
	Store *chstore.Store
	// Both runs a set-up statement that is not the Store's on the
	// reference server and the engine under test (Checker.Both).
	Both func(ctx context.Context, sql string) error
	// Thorough reads each field of each record area with every operator,
	// isnull and in both orders. Otherwise each field is read with = only,
	// and each area once with isnull and in one order besides its default:
	// every kind of value and expression still goes through, in a fifth
	// of the reads.
	Thorough bool
}

// workloadSites are the sites the workload's reads may see.
var workloadSites = []uint64{1, 2, 3}

// day1 is the dataset's clock: parts and periods lie on it and the day
// after, master data was written in the days before.
var day1 = time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC)

func at(h, m int) time.Time {
	return day1.Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute)
}

// Run runs the workload. Reads whose answers differ are the Checker's to
// report; Run fails only when the reference server fails or answers what
// the dataset rules out.
func (w *Workload) Run(ctx context.Context) error {
	steps := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"migrate", w.Store.Migrate},
		{"master data", w.masterData},
		{"record writes", w.recordWrites},
		{"parts", w.parts},
		{"periods", w.periods},
		{"processor reads", w.processorReads},
		{"oee", w.oee},
		{"record areas", w.recordAreas},
		{"open periods", w.openPeriods},
		{"recompute", w.recompute},
		{"backfill", w.backfill},
	}
	for _, s := range steps {
		if err := s.fn(ctx); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	return nil
}

// audit is the audit fields of master data written before day1.
func audit(version uint64) chstore.Audit {
	return chstore.Audit{Created: at(-240, 0), LastUpdated: at(-24, 30), CreatedBy: "seed", LastUpdatedBy: "seed", Version: version}
}

func deleted(version uint64) chstore.Audit {
	a := audit(version)
	a.Deleted = true
	return a
}

// masterData writes what the demo set-up and the record API write:
// sites in three zones (one with a half-hour offset), lines and machines
// with and without external ids, custom properties, updated and deleted
// records.
func (w *Workload) masterData(ctx context.Context) error {
	s := w.Store
	if _, err := bootstrap.FirstAdmin(ctx, s, "admin", "Europe/Berlin", "takt-demo"); err != nil {
		return err
	}
	return errors.Join(
		s.PutSite(ctx, chstore.Site{ID: 2, Description: "Plant Ohio", Timezone: "America/New_York", Audit: audit(1)}),
		s.PutSite(ctx, chstore.Site{ID: 3, Description: "Plant Pune", Timezone: "Asia/Kolkata", Audit: audit(1)}),
		s.PutSite(ctx, chstore.Site{ID: 4, Description: "Closed", Timezone: "UTC", Audit: deleted(2)}),
		s.PutArea(ctx, chstore.Area{ID: 1, Site: 1, Code: "A1", Description: "Assembly", Audit: audit(1)}),
		s.PutArea(ctx, chstore.Area{ID: 2, Site: 2, Code: "A2", Description: "Press shop", Audit: audit(1)}),
		s.PutLine(ctx, chstore.Line{ID: 1, Site: 1, Area: 1, Code: "L1", Description: "old", ExternalID: "line_1", Audit: audit(1)}),
		s.PutLine(ctx, chstore.Line{ID: 1, Site: 1, Area: 1, Code: "L1", Description: "Line one", ExternalID: "line_1", Audit: audit(2)}),
		s.PutLine(ctx, chstore.Line{ID: 2, Site: 1, Area: 1, Code: "L2", Description: "Line two", ExternalID: "line_2", StopThreshold: 120, Audit: audit(1)}),
		s.PutLine(ctx, chstore.Line{ID: 3, Site: 2, Area: 2, Code: "L3", Description: "no location", Audit: audit(1)}),
		s.PutLine(ctx, chstore.Line{ID: 4, Site: 2, Area: 2, Code: "L4", Description: "Press line", ExternalID: "line_4", StopThreshold: 90.5, Audit: audit(1)}),
		s.PutLine(ctx, chstore.Line{ID: 5, Site: 3, Area: 0, Code: "L5", Description: "Pune line", ExternalID: "line_5", Audit: audit(1)}),
		s.PutMachine(ctx, chstore.Machine{ID: 10, Site: 1, Line: 1, Code: "M10", Description: "Robot", ExternalID: "m_10", Audit: audit(1)}),
		s.PutMachine(ctx, chstore.Machine{ID: 11, Site: 1, Line: 1, Code: "M11", Description: "Welder", ExternalID: "m_11", StopThreshold: 30, Audit: audit(1)}),
		s.PutMachine(ctx, chstore.Machine{ID: 12, Site: 2, Line: 4, Code: "M12", Description: "no location", Audit: audit(1)}),
		s.PutMachine(ctx, chstore.Machine{ID: 13, Site: 1, Line: 2, Code: "M13", Description: "gone", ExternalID: "m_13", Audit: deleted(2)}),
		s.PutProduct(ctx, chstore.Product{ID: 1, Site: 1, Code: "P1", Description: "Bracket", IdealCycleTime: 45, Audit: audit(1)}),
		s.PutProduct(ctx, chstore.Product{ID: 2, Site: 1, Code: "P2", Description: "Hinge", IdealCycleTime: 30.5, Audit: audit(1)}),
		s.PutProduct(ctx, chstore.Product{ID: 3, Site: 1, Code: "FALLBACK", Description: "unknown", Fallback: true, Audit: audit(1)}),
		s.PutProduct(ctx, chstore.Product{ID: 4, Site: 2, Code: "P4", Description: "Panel", IdealCycleTime: 60, Audit: audit(1)}),
		s.PutProduct(ctx, chstore.Product{ID: 5, Site: 1, Code: "OLD", Description: "retired", IdealCycleTime: 10, Audit: deleted(2)}),
		s.PutReason(ctx, chstore.Reason{ID: 1, Site: 1, Code: "SCRAP1", Description: "Dent", Kind: "scrap", Audit: audit(1)}),
		s.PutReason(ctx, chstore.Reason{ID: 2, Site: 1, Code: "DOWN1", Description: "Jam", Kind: "downtime", Audit: audit(1)}),
		s.PutReason(ctx, chstore.Reason{ID: 3, Site: 1, Code: "BREAK", Description: "Break", Kind: "downtime", Planned: true, Audit: audit(1)}),
		s.PutReason(ctx, chstore.Reason{ID: 4, Site: 2, Code: "SCRAP2", Description: "Crack", Kind: "scrap", Audit: audit(1)}),
		s.PutUser(ctx, chstore.User{ID: 2, Username: "reader", Sites: []uint64{1, 2}, Active: true, Audit: audit(1)}),
		s.PutUser(ctx, chstore.User{ID: 3, Username: "nobody", Active: true, Audit: audit(1)}),
		s.PutUser(ctx, chstore.User{ID: 4, Username: "ohio", Sites: []uint64{2}, Audit: audit(1)}),
		s.PutAPIKey(ctx, chstore.APIKey{ID: 2, User: 2, Prefix: "rd2", Hash: "hash-2", Scopes: []string{auth.ScopeRead}, Active: true, Audit: audit(1)}),
		s.PutAPIKey(ctx, chstore.APIKey{ID: 3, User: 3, Prefix: "nb3", Hash: "hash-3", Scopes: []string{auth.ScopeIngest, auth.ScopeRead}, Active: true, Audit: audit(1)}),
		s.PutAPIKey(ctx, chstore.APIKey{ID: 4, User: 4, Prefix: "oh4", Hash: "hash-4", Active: false, Audit: audit(1)}),
		s.PutSecretKey(ctx, chstore.SecretKey{ID: 2, User: 2, Server: "reader-srv", Secret: "s3cr3t", Active: true, Audit: audit(1)}),
		s.PutKeyUsage(ctx, map[uint64]time.Time{2: at(11, 0), 3: at(12, 30).Add(17 * time.Second)}),
		s.PutKeyUsage(ctx, map[uint64]time.Time{2: at(10, 0)}),
	)
}

// recordWrites goes through the record API's write path: read, check
// uniqueness, write a new version, for every writable table.
func (w *Workload) recordWrites(ctx context.Context) error {
	s := w.Store
	if _, err := s.MaxRecordID(ctx); err != nil {
		return err
	}
	writes := []struct {
		table string
		id    uint64
		set   chstore.Row
	}{
		{"shifts", 30, chstore.Row{"site": uint64(1), "code": "EARLY", "description": "Early", "start_time": "06:00", "end_time": "14:00", "days": "mon,tue,wed,thu,fri"}},
		{"shifts", 31, chstore.Row{"site": uint64(1), "line": uint64(1), "code": "NIGHT", "description": "Night", "start_time": "22:00", "end_time": "06:00", "days": "mon,tue"}},
		{"shifts", 32, chstore.Row{"site": uint64(2), "code": "DAY", "description": "Day", "start_time": "07:30", "end_time": "16:00", "days": "mon,tue,wed,thu,fri,sat"}},
		{"machines", 10, chstore.Row{"site": uint64(1), "line": uint64(1), "code": "M10", "description": "Robot", "externalid": "m_10",
			record.CustomKeys: []string{"vendor", "cell"}, record.CustomValues: []string{"acme", "b"}}},
		{"machines", 11, chstore.Row{"site": uint64(1), "line": uint64(1), "code": "M11", "description": "Welder", "externalid": "m_11",
			record.CustomKeys: []string{"vendor"}, record.CustomValues: []string{"zeta"}, "stop_threshold": 30.0}},
		{"apikeys", 4, chstore.Row{"user": uint64(4), "prefix": "oh4", "hash": "hash-4", "scopes": []string{auth.ScopeRead}, "active": true, "rate_limit": 5.5, "rate_burst": 20.0}},
		{"sites", 3, chstore.Row{"description": "Plant Pune (new)", "timezone": "Asia/Kolkata"}},
		{"areas", 2, chstore.Row{"site": uint64(2), "code": "A2", "description": "Press shop 2"}},
		{"lines", 2, chstore.Row{"site": uint64(1), "area": uint64(1), "code": "L2", "description": "Line two", "externalid": "line_2", "stop_threshold": 150.0}},
		{"products", 2, chstore.Row{"site": uint64(1), "code": "P2", "description": "Hinge v2", "ideal_cycle_time": 31.25}},
		{"reasons", 4, chstore.Row{"site": uint64(2), "code": "SCRAP2", "description": "Crack", "kind": "scrap", "planned": false}},
		{"users", 3, chstore.Row{"username": "nobody", "admin": false, "sites": []uint64{}, "active": true}},
		// The Leading2Lean areas, and rows the record API's actions write.
		{"dispatchtypes", 40, chstore.Row{"site": uint64(1), "code": "BREAK", "description": "Breakdown", "downtime": true, "active": true}},
		{"scrapcategory", 41, chstore.Row{"site": uint64(1), "code": "WELD", "description": "Welding", "active": true}},
		{"productcomponents", 42, chstore.Row{"site": uint64(1), "product": uint64(2), "code": "SCREW", "quantity": 4.0, "active": true}},
		{"dispatches", 43, chstore.Row{"site": uint64(1), "dispatchnumber": uint64(43), "machine": uint64(10), "machinecode": "M10",
			"line": uint64(1), "dispatchtype": uint64(40), "dispatchtypecode": "BREAK", "description": "jam", "reported": at(9, 0),
			"completed": at(9, 34), "status": "closed", "downtime": true, "active": true}},
		{"dispatches", 44, chstore.Row{"site": uint64(1), "dispatchnumber": uint64(44), "machine": uint64(10), "machinecode": "M10",
			"line": uint64(1), "dispatchtype": uint64(40), "dispatchtypecode": "BREAK", "reported": at(10, 0),
			"completed": time.Unix(0, 0).UTC(), "status": "open", "downtime": true, "active": true}},
		{"clocksessions", 45, chstore.Row{"site": uint64(1), "line": uint64(1), "linecode": "L1", "user": uint64(2), "username": "reader",
			"start": at(6, 0), "end": at(14, 0), "active": true}},
		{"pitchdetails", 46, chstore.Row{"site": uint64(1), "line": uint64(1), "linecode": "L1", "product": uint64(2), "productcode": "P2",
			"start": at(10, 0), "end": at(10, 5), "actual": uint64(42), "scrap": uint64(7), "operator_count": uint64(3),
			"sent_good": true, "sent_scrap": true, "active": true}},
	}
	for i, wr := range writes {
		row, a, err := s.ReadRow(ctx, wr.table, wr.id)
		switch {
		case errors.Is(err, chstore.ErrNotFound):
			// A create: the defaults a create of the record API takes.
			def := s.Areas().Must(wr.table)
			row, a = chstore.Row(def.ZeroRow()), audit(0)
			for _, f := range def.Fields {
				if f.Stored() && f.Default != nil {
					row[f.Name] = f.Default
				}
			}
		case err != nil:
			return err
		}
		for k, v := range wr.set {
			row[k] = v
		}
		if code, ok := row["code"]; ok {
			taken, err := s.Taken(ctx, wr.table, "code", code, row["site"].(uint64), wr.id)
			if err != nil {
				return err
			}
			if taken {
				return fmt.Errorf("%s %d: code %v taken", wr.table, wr.id, code)
			}
		}
		if col := stringColumn(s.Areas().Must(wr.table)); col != "" {
			if _, err := s.Taken(ctx, wr.table, col, row[col], 0, wr.id); err != nil {
				return err
			}
		}
		a.LastUpdated, a.LastUpdatedBy, a.Version = at(-1, i), "writer", 10+uint64(i)
		if err := s.WriteRow(ctx, wr.table, wr.id, row, a); err != nil {
			return err
		}
	}
	// What the actions read: rows by fields, machine counters.
	if open, err := s.FindRows(ctx, "dispatches", chstore.Row{"machine": uint64(10), "completed": time.Unix(0, 0).UTC()}, 5); err != nil {
		return err
	} else if len(open) != 1 || open[0].ID != 44 {
		return fmt.Errorf("open dispatches of machine 10: %+v", open)
	}
	if _, err := s.FindRows(ctx, "pitchdetails", chstore.Row{"line": uint64(1), "product": uint64(2), "start": at(10, 0),
		"end": at(10, 5)}, 1); err != nil {
		return err
	}
	for _, c := range []chstore.MachineCounter{{Machine: 10, Site: 1, Count: 832, Updated: at(1, 0), Version: 7},
		{Machine: 10, Site: 1, Count: 837, Updated: at(1, 0), Version: 8}} {
		if err := s.PutMachineCounter(ctx, c); err != nil {
			return err
		}
	}
	if c, ok, err := s.MachineCounter(ctx, 10); err != nil || !ok || c.Count != 837 {
		return fmt.Errorf("counter of machine 10: %+v %v %v", c, ok, err)
	}
	if _, _, err := s.ReadRow(ctx, "machines", 13); !errors.Is(err, chstore.ErrNotFound) {
		return fmt.Errorf("deleted machine 13 read back: %v", err)
	}
	if _, err := s.UserByName(ctx, "reader"); err != nil {
		return err
	}
	if _, err := s.UserByName(ctx, "missing"); !errors.Is(err, chstore.ErrNotFound) {
		return fmt.Errorf("missing user: %v", err)
	}
	if _, err := s.KeyHashesOfUser(ctx, 2); err != nil {
		return err
	}
	if _, err := s.ExternalIDsOfSite(ctx, 1); err != nil {
		return err
	}
	if _, err := s.KeyHashesOfSite(ctx, 1); err != nil {
		return err
	}
	_, err := s.MaxRecordID(ctx)
	return err
}

// stringColumn is a String column of area a, for a uniqueness check
// without a site.
func stringColumn(a *record.Area) string {
	for _, c := range a.Columns() {
		if c.Kind == record.String {
			return c.Name
		}
	}
	return ""
}

// The parts topic of the dataset.
const workloadTopic = "takt.parts"

// parts writes 60 part events over two partitions in three blocks, the
// processor's way, and fixes their insertion time (inserted_at is the
// server's clock at insert otherwise, which differs between the two
// engines).
func (w *Workload) parts(ctx context.Context) error {
	locs := []struct {
		kind string
		id   uint64
		site uint64
		ext  string
	}{{"line", 1, 1, "line_1"}, {"machine", 10, 1, "m_10"}, {"machine", 11, 1, "m_11"}, {"line", 4, 2, "line_4"}, {"line", 5, 3, "line_5"}}
	qualities := []string{"good", "good", "scrap", "good", "rework"}
	var b chstore.PartsBlock
	ns := uuid.MustParse("6f1c0e2a-3d4b-4c5d-8e9f-0a1b2c3d4e5f")
	for i := range 60 {
		l := locs[i%len(locs)]
		r := chstore.PartRow{
			EventID:      uuid.NewSHA1(ns, []byte{byte(i)}),
			Site:         l.site,
			LocationKind: l.kind, LocationID: l.id, ExternalID: l.ext,
			Quantity:   uint32(1 + i%4),
			Quality:    qualities[i%len(qualities)],
			RecordedMs: at(9, 50).Add(time.Duration(i)*4*time.Minute+time.Duration(i%3)*17*time.Second).UnixMilli() + int64(i*37%1000),
			Topic:      workloadTopic,
			Partition:  int32(i % 2), Offset: int64(i / 2),
		}
		if i >= 50 {
			r.RecordedMs += 24 * 3600 * 1000 // the next day
		}
		r.ID = chstore.PartID(r.Partition, r.Offset)
		r.ReceivedMs, r.ProcessedMs = r.RecordedMs+120, r.RecordedMs+450
		// Four rows per partition and second of insertion order, so that
		// pages in insertion order have ties on order_ms that id breaks.
		r.OrderMs = (1709300000 + r.Offset/4) * 1000
		switch i % 4 {
		case 0:
			r.ProductID, r.ProductCode, r.ProductReported, r.ProductResolution = 1, "P1", "P1", "code"
		case 1:
			r.ProductID, r.ProductCode, r.ProductResolution = 2, "P2", "cycle_time"
			r.CycleTime, r.HasCycleTime = 30.75, true
		case 2:
			r.ProductID, r.ProductCode, r.ProductReported, r.ProductResolution = 3, "FALLBACK", "NOPE", "fallback"
			r.CycleTime, r.HasCycleTime = 0, true
		default:
			r.ProductResolution = "none"
			r.RecordedDefaulted = true
		}
		if l.site == 2 {
			r.ProductID, r.ProductCode = 4, "P4"
		}
		if r.Quality == "scrap" {
			r.Reason, r.ReasonID = "SCRAP1", 1
		}
		if i%5 == 0 {
			r.IdempotencyID = workloadIdempotencyID(i)
		}
		if err := b.Append(&r); err != nil {
			return err
		}
		if b.Len() == 20 {
			if err := w.Store.InsertParts(ctx, &b); err != nil {
				return err
			}
			b.Reset()
		}
	}
	if err := w.Both(ctx, "ALTER TABLE parts UPDATE inserted_at = toDateTime(1709300000 + intDiv(offset, 4)) WHERE 1"); err != nil {
		return err
	}
	// The watermarks the processor publishes: partition 0 twice (the
	// larger counts), partition 1 once.
	return w.Store.InsertPartsWatermarks(ctx, workloadTopic, []watermark.Partition{
		{Partition: 0, Partitions: 2, Ms: 1709300004000, Stored: 20},
		{Partition: 0, Partitions: 2, Ms: 1709300009000, Stored: 30},
		{Partition: 1, Partitions: 2, Ms: 1709300005999, Stored: 30},
	})
}

// workloadIdempotencyID is the idempotency id of the workload's part i.
func workloadIdempotencyID(i int) uuid.UUID {
	return uuid.NewSHA1(uuid.NameSpaceOID, fmt.Appendf(nil, "takt workload part %d", i))
}

// periods writes closed production periods (with new versions and a
// deleted one), the state machines' saved states and checkpoints.
func (w *Workload) periods(ctx context.Context) error {
	s := w.Store
	p := func(id uint64, kind string, loc, site uint64, ext, state string, from, to time.Time, reason, version uint64) chstore.PeriodRow {
		return chstore.PeriodRow{ID: id, Site: site, Location: loc, LocationKind: kind, ExternalID: ext, State: state,
			Start: from.UnixMilli(), End: to.UnixMilli(), Reason: reason, Version: version}
	}
	rows := []chstore.PeriodRow{
		p(1, "line", 1, 1, "line_1", "running", at(10, 0), at(11, 0), 0, 1),
		p(2, "line", 1, 1, "line_1", "down", at(11, 0), at(11, 20), 0, 1),
		p(2, "line", 1, 1, "line_1", "down", at(11, 0), at(11, 20), 2, 2),
		p(3, "line", 1, 1, "line_1", "running", at(11, 20), at(12, 35), 0, 1),
		p(4, "line", 1, 1, "line_1", "planned_down", at(12, 35), at(13, 0), 3, 1),
		p(5, "line", 1, 1, "line_1", "running", at(13, 0), at(14, 0), 0, 1),
		p(6, "machine", 10, 1, "m_10", "running", at(10, 30), at(12, 0), 0, 1),
		p(7, "machine", 10, 1, "m_10", "unscheduled", at(12, 0), at(12, 10), 0, 1),
		p(8, "machine", 10, 1, "m_10", "down", at(12, 10), at(12, 45).Add(30*time.Second), 2, 1),
		p(9, "line", 4, 2, "line_4", "running", at(10, 0), at(13, 0), 0, 1),
		p(10, "line", 5, 3, "line_5", "down", at(9, 45), at(10, 15), 0, 1),
	}
	gone := p(11, "machine", 11, 1, "m_11", "down", at(10, 0), at(10, 5), 0, 2)
	gone.Deleted = true
	if err := s.InsertPeriods(ctx, append(rows, gone)); err != nil {
		return err
	}
	if _, err := s.PeriodByID(ctx, 2); err != nil {
		return err
	}
	if _, err := s.PeriodByID(ctx, 11); !errors.Is(err, chstore.ErrNotFound) {
		return fmt.Errorf("deleted period 11: %v", err)
	}
	states := []chstore.PeriodState{
		{Topic: workloadTopic, LocationKind: "line", Location: 1, Partition: 0, Offset: 12, Site: 1, ExternalID: "line_1",
			State: []byte(`{"state":"running"}`), Outbox: []byte(`[]`), Version: 1},
		{Topic: workloadTopic, LocationKind: "line", Location: 1, Partition: 0, Offset: 20, Site: 1, ExternalID: "line_1",
			State: []byte(`{"state":"down","reason":2}`), Outbox: []byte(`[{"id":2}]`), Version: 2},
		{Topic: workloadTopic, LocationKind: "machine", Location: 10, Partition: 1, Offset: 9, Site: 1, ExternalID: "m_10",
			State: []byte(`{"state":"running"}`), Outbox: []byte(`[]`), Version: 1},
		{Topic: "other", LocationKind: "machine", Location: 11, Partition: 1, Offset: 3, Site: 1, ExternalID: "m_11",
			State: []byte(`{}`), Outbox: []byte(`[]`), Version: 1},
	}
	if err := s.InsertPeriodStates(ctx, states); err != nil {
		return err
	}
	return s.InsertPeriodCheckpoints(ctx, []chstore.PeriodCheckpoint{
		{Topic: workloadTopic, Partition: 0, Offset: 10, Version: 1},
		{Topic: workloadTopic, Partition: 0, Offset: 21, Version: 2},
		{Topic: workloadTopic, Partition: 1, Offset: 9, Version: 1},
	})
}

// processorReads are the reads of the ingestor and the processor: keys,
// the catalog, offsets, saved states.
func (w *Workload) processorReads(ctx context.Context) error {
	s := w.Store
	notFound := func(err error) error {
		if errors.Is(err, chstore.ErrNotFound) {
			return nil
		}
		return fmt.Errorf("want not found, got %v", err)
	}
	if n, ok, err := s.PartsMaxOffset(ctx, workloadTopic, 1, 3); err != nil || !ok || n != 29 {
		return fmt.Errorf("parts max offset of partition 1: %d %v %v, want 29", n, ok, err)
	}
	if _, ok, err := s.PartsMaxOffset(ctx, workloadTopic, 2, 0); err != nil || ok {
		return fmt.Errorf("parts max offset of empty partition 2: %v %v", ok, err)
	}
	if rows, events, err := s.PartsCount(ctx, workloadTopic); err != nil || rows != 60 || events != 60 {
		return fmt.Errorf("parts count: %d rows %d events %v, want 60", rows, events, err)
	}
	// Part 10 is stored at partition 0, offset 5; part 11 has no id.
	keys, err := s.PartKeys(ctx, workloadTopic, []uuid.UUID{workloadIdempotencyID(10), workloadIdempotencyID(11)})
	if want := (chstore.PartPosition{Partition: 0, Offset: 5}); err != nil || len(keys) != 1 || keys[workloadIdempotencyID(10)] != want {
		return fmt.Errorf("part keys: %v %v, want only part 10's at %v", keys, err, want)
	}
	if ws, err := s.PartsWatermarks(ctx, workloadTopic); err != nil || watermark.Of(ws) != 1709300005999 {
		return fmt.Errorf("parts watermarks: %+v %v, want the topic's at 1709300005999", ws, err)
	}
	_, err = s.PartsOfTopic(ctx, workloadTopic)
	_, err2 := s.Locations(ctx)
	_, err3 := s.LocationByExternalID(ctx, "m_10")
	_, err4 := s.LocationByExternalID(ctx, "M_10")
	_, err5 := s.Products(ctx)
	_, err6 := s.Reasons(ctx)
	_, err7 := s.KeyByHash(ctx, "hash-2")
	_, err8 := s.KeyByHash(ctx, "hash-4") // inactive
	_, err9 := s.SecretByServer(ctx, "reader-srv")
	_, err10 := s.SecretByServer(ctx, "nope")
	_, err11 := s.KeyRateLimits(ctx)
	_, err12 := s.PeriodMaster(ctx)
	_, err13 := s.PeriodStates(ctx, workloadTopic, []int32{0, 1})
	_, err14 := s.PeriodCheckpoints(ctx, workloadTopic, []int32{0, 1, 2})
	_, err15 := s.SiteTimezones(ctx)
	if err := errors.Join(err, err2, err3, notFound(err4), err5, err6, err7, notFound(err8), err9, notFound(err10),
		err11, err12, err13, err14, err15, s.WaitPartsInserts(ctx, 10*time.Millisecond, nil)); err != nil {
		return err
	}
	// Crash recovery: the rollups of a partition's range made whole. An
	// hour of parts_hourly is emptied first, so that the repair inserts.
	if err := w.Both(ctx, fmt.Sprintf("ALTER TABLE parts_hourly DELETE WHERE hour = toDateTime(%d)", at(11, 0).Unix())); err != nil {
		return err
	}
	// And partition 0's rows of the insertion-order index, so that the
	// repair writes them again.
	if err := w.Both(ctx, fmt.Sprintf("ALTER TABLE parts_order DELETE WHERE id >= %d AND id <= %d",
		chstore.PartID(0, 0), chstore.PartID(0, 29))); err != nil {
		return err
	}
	if err := w.Both(ctx, fmt.Sprintf("ALTER TABLE parts_by_location DELETE WHERE id >= %d AND id <= %d",
		chstore.PartID(0, 0), chstore.PartID(0, 29))); err != nil {
		return err
	}
	rep, err := s.ReconcileRollups(ctx, workloadTopic, 0, 0, 29)
	if err != nil || rep.Repaired == 0 || rep.OrderRepaired == 0 || rep.LocationRepaired == 0 {
		return fmt.Errorf("reconcile rollups: %+v %v, want a repair of parts_hourly, parts_order and parts_by_location", rep, err)
	}
	_, err = s.ReconcileRollups(ctx, workloadTopic, 1, 0, 29)
	return err
}

// oee reads the OEE figures' inputs for windows that take each path of
// OEEParts: whole hours (rollup only), edges off the hour, a window inside
// one hour, a segment cut inside an hour, the raw reference, and an empty
// window.
func (w *Workload) oee(ctx context.Context) error {
	s := w.Store
	if _, err := s.OEEMaster(ctx, 1); err != nil {
		return err
	}
	if _, err := s.OEEMaster(ctx, 4); err != nil { // deleted
		return err
	}
	ms := func(ts ...time.Time) []int64 {
		out := make([]int64, len(ts))
		for i, t := range ts {
			out[i] = t.UnixMilli()
		}
		return out
	}
	scopes := []chstore.OEEScope{
		{Site: 1, All: true},
		{Site: 1, Lines: []uint64{1}},
		{Site: 1, Machines: []uint64{10, 11}, Product: 1},
		{Site: 1, Lines: []uint64{1, 2}, Machines: []uint64{10}},
		{Site: 1},
		{Site: 2, All: true, Product: 4},
	}
	windows := [][]int64{
		ms(at(10, 0), at(11, 0), at(12, 0), at(13, 0), at(14, 0)),
		ms(at(10, 20), at(12, 0), at(13, 30)),
		ms(at(11, 5), at(11, 35)),
		ms(at(10, 0), at(11, 30), at(13, 0)),
		ms(at(0, 0), at(24, 0), at(48, 0)),
		ms(at(400, 0), at(401, 30)),
	}
	for _, sc := range scopes {
		for _, cuts := range windows {
			if _, err := s.OEEParts(ctx, sc, cuts, false); err != nil {
				return err
			}
		}
		if _, err := s.OEEParts(ctx, sc, windows[1], true); err != nil {
			return err
		}
		if _, err := s.OEEPeriods(ctx, sc, at(10, 20).UnixMilli(), at(13, 30).UnixMilli()); err != nil {
			return err
		}
	}
	_, err := s.PartsHourly(ctx, 1, at(0, 0), at(48, 0))
	_, err2 := s.PartsHourlyRaw(ctx, 1, at(0, 0), at(48, 0))
	return errors.Join(err, err2)
}

// recordAreas reads every record area the query API serves, with the
// API's settings for parts (watermark, look-ahead): each field with
// each operator (value: a record's own) and isnull, each field in both
// orders with a page offset, a field selection, one record by id, and the
// area-specific shapes (insertion-order paging, custom properties).
func (w *Workload) recordAreas(ctx context.Context) error {
	var names []string
	for _, a := range w.Store.Areas().Areas() {
		names = append(names, a.Name)
	}
	return w.readAreas(ctx, names)
}

func (w *Workload) readAreas(ctx context.Context, names []string) error {
	for _, name := range names {
		if err := w.readArea(ctx, name); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

func (w *Workload) readArea(ctx context.Context, name string) error {
	def, ok := w.Store.Areas().Area(name)
	if !ok {
		return errors.New("no such area")
	}
	return w.readDef(ctx, def)
}

// readDef reads the records of def as the query API does.
func (w *Workload) readDef(ctx context.Context, def *record.Area) error {
	// With the query API's limits, so their settings are checked too.
	s := w.Store.WithLimits(chstore.Limits{MaxMemoryUsage: 2 << 30, MaxExecutionTime: time.Minute})
	a, err := chstore.NewRecordArea(def)
	if err != nil {
		return err
	}
	// The parts watermark (see parts) hides the last rows of each
	// partition from reads in insertion order.
	a = a.WithWatermark(1709300005999).WithLookAhead(5)
	schema := a.Schema()
	parse := func(raw string) (l2l.Query, error) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return l2l.Query{}, err
		}
		return l2l.Parse(v, schema)
	}
	read := func(raw string, sites []uint64) (chstore.RecordPage, error) {
		q, err := parse(raw)
		if err != nil {
			return chstore.RecordPage{}, fmt.Errorf("%q: %w", raw, err)
		}
		p, err := s.Records(ctx, a, q, sites)
		if err != nil {
			return chstore.RecordPage{}, fmt.Errorf("%q: %w", raw, err)
		}
		return p, nil
	}
	all, err := read("limit=2000", workloadSites)
	if err != nil {
		return err
	}
	if len(all.Rows) == 0 {
		return errors.New("the dataset has no records here")
	}
	fields := all.Fields
	sample := all.Rows[len(all.Rows)/2]
	for i, f := range fields {
		if f.AfterRead {
			// Computed after the read: requests may not filter on it
			// or order by it.
			continue
		}
		v := sample[i]
		if v == nil { // a null: take the field's first value
			for _, r := range all.Rows {
				if r[i] != nil {
					v = r[i]
					break
				}
			}
		}
		ops := []l2l.Op{l2l.OpEq}
		var raws []string
		if w.Thorough {
			ops = append(ops, l2l.OpLt, l2l.OpLte, l2l.OpGt, l2l.OpGte)
			raws = append(raws, f.Name+"__isnull=False", "order_by="+f.Name+"&limit=7&offset=2", "order_by=-"+f.Name+"&limit=7")
			raws = append(raws, f.Name+"__isnull=True")
		} else if i == len(fields)/2 {
			raws = append(raws, "order_by=-"+f.Name+"&limit=7&offset=2", f.Name+"__isnull=True")
		}
		if v != nil {
			value := url.QueryEscape(l2l.FormatValue(f.Type, v))
			for _, op := range ops {
				key := f.Name
				if op != l2l.OpEq {
					key += "__" + string(op)
				}
				raws = append(raws, key+"="+value)
			}
		}
		for _, raw := range raws {
			if _, err := read(raw, workloadSites); err != nil {
				return err
			}
		}
	}
	if _, err := read("fields="+fields[len(fields)-1].Name+","+fields[0].Name+"&site=1&limit=3", []uint64{1}); err != nil {
		return err
	}
	if _, err := read("limit=5", []uint64{2}); err != nil {
		return err
	}
	q, _ := parse("")
	id := all.Rows[0][slices.IndexFunc(fields, func(f l2l.Field) bool { return f.Name == "id" })].(int64)
	if _, err := s.RecordByID(ctx, a, uint64(id), q, workloadSites); err != nil {
		return fmt.Errorf("record %d: %w", id, err)
	}
	if schema.CustomProperties() {
		for _, raw := range []string{"site=1", "site=1&fields=id,custom__vendor", "custom__vendor=acme",
			"custom__cell__gte=a&custom__vendor__lt=zz", "custom__vendor__isnull=True", "custom__cell__isnull=False"} {
			if _, err := read(raw, workloadSites); err != nil {
				return err
			}
		}
	}
	if q, _ := parse("limit=4"); a.InsertionOrder(q) {
		p, err := s.Records(ctx, a, q, workloadSites)
		if err != nil {
			return err
		}
		if p.Next == nil || len(p.Ahead) == 0 {
			return fmt.Errorf("a page in insertion order has no cursor (%v) or look-ahead (%d)", p.Next, len(p.Ahead))
		}
		if _, err := s.RecordsAfter(ctx, a, q, workloadSites, *p.Next); err != nil {
			return err
		}
		if _, err := s.RecordsAt(ctx, a, q, workloadSites, p.Ahead[:min(len(p.Ahead), q.Limit)]); err != nil {
			return err
		}
		// By offset: parts_order's windows are counted (uniqExact on the
		// index, count() on parts for ids the index holds in a window).
		for _, raw := range []string{"limit=4&offset=8&quality=good", "limit=4&offset=8&site=1", "limit=3&offset=2&location=1"} {
			q, _ = parse(raw)
			p, err := s.Records(ctx, a, q, workloadSites)
			if err != nil {
				return err
			}
			// A filter on a field parts_order does not hold, after a
			// cursor: the ids of the window from the index, the rows
			// from parts.
			if p.Next != nil {
				q, _ = parse("limit=2&quality=good")
				if _, err := s.RecordsAfter(ctx, a, q, workloadSites, *p.Next); err != nil {
					return err
				}
			}
		}
	}
	if q, _ := parse("limit=1&externalid=line_1&recorded_at__gte=" + url.QueryEscape(l2l.FormatValue(l2l.DateTime, at(0, 0)))); a.InsertionOrder(q) && def.LocationIndex != "" {
		// By location and recorded time: the location index's key range
		// alone (DISTINCT), or as the ids of the table's rows (a filter
		// the index does not hold, another order), after a cursor too.
		from := "externalid=line_1&recorded_at__gte=" + url.QueryEscape(l2l.FormatValue(l2l.DateTime, at(0, 0)))
		for _, raw := range []string{from + "&limit=3", from + "&quality=good&limit=2&offset=1",
			from + "&order_by=-recorded_at&limit=2", from + "&recorded_at__lt=" + url.QueryEscape(l2l.FormatValue(l2l.DateTime, at(12, 0))) + "&limit=2"} {
			p, err := read(raw, workloadSites)
			if err != nil {
				return err
			}
			if len(p.Rows) == 0 {
				return fmt.Errorf("%q: no parts by location and recorded time", raw)
			}
			if q, _ = parse(raw); p.Next != nil {
				if _, err := s.RecordsAfter(ctx, a, q, workloadSites, *p.Next); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// openPeriods adds the periods that are still open (no end) and reads
// them the way the OEE endpoint and the record API do. The pitches are
// read before: for an open period they count up to now(), which moves.
func (w *Workload) openPeriods(ctx context.Context) error {
	s := w.Store
	rows := []chstore.PeriodRow{
		{ID: 20, Site: 1, Location: 1, LocationKind: "line", ExternalID: "line_1", State: "running", Start: at(14, 0).UnixMilli(), Open: true, Version: 1},
		{ID: 21, Site: 1, Location: 11, LocationKind: "machine", ExternalID: "m_11", State: "down", Start: at(12, 20).UnixMilli(), Open: true, Reason: 2, Version: 1},
		{ID: 5, Site: 1, Location: 1, LocationKind: "line", ExternalID: "line_1", State: "running", Start: at(13, 0).UnixMilli(), End: at(14, 0).UnixMilli(), Version: 2},
	}
	if err := s.InsertPeriods(ctx, rows); err != nil {
		return err
	}
	if p, err := s.PeriodByID(ctx, 21); err != nil || !p.Open {
		return fmt.Errorf("open period 21: %+v %v", p, err)
	}
	for _, sc := range []chstore.OEEScope{{Site: 1, All: true}, {Site: 1, Machines: []uint64{11}}} {
		if _, err := s.OEEPeriods(ctx, sc, at(12, 0).UnixMilli(), at(16, 0).UnixMilli()); err != nil {
			return err
		}
	}
	return w.readAreas(ctx, []string{"productionperiods"})
}

// recompute is what a recompute of periods reads and writes: a
// location's parts with those at the window's edges, its periods of a
// window, the versions it replaced (and the record API's read of them
// with include_history), and its result.
func (w *Workload) recompute(ctx context.Context) error {
	s := w.Store
	parts, err := s.PeriodParts(ctx, "line", 1, at(10, 0).UnixMilli(), at(11, 0).UnixMilli(), 0)
	if err != nil {
		return err
	}
	if len(parts) == 0 {
		return errors.New("no parts of line 1 around 10:00-11:00")
	}
	inside := 0
	for _, p := range parts {
		if p.RecordedMs >= at(10, 0).UnixMilli() && p.RecordedMs <= at(11, 0).UnixMilli() {
			inside++
		}
	}
	// The same read bounded: at the window's count it holds, one below
	// it refuses.
	if bounded, err := s.PeriodParts(ctx, "line", 1, at(10, 0).UnixMilli(), at(11, 0).UnixMilli(), inside); err != nil || len(bounded) != len(parts) {
		return fmt.Errorf("parts bounded at %d: %d %v, want %d", inside, len(bounded), err, len(parts))
	}
	if _, err := s.PeriodParts(ctx, "line", 1, at(10, 0).UnixMilli(), at(11, 0).UnixMilli(), inside-1); inside > 1 && !errors.Is(err, chstore.ErrTooManyParts) {
		return fmt.Errorf("parts bounded at %d of %d: %v, want too many", inside-1, inside, err)
	}
	old, err := s.LocationPeriods(ctx, "line", 1, at(10, 30).UnixMilli(), at(13, 30).UnixMilli())
	if err != nil {
		return err
	}
	if len(old) == 0 {
		return errors.New("no periods of line 1 in 10:30-13:30")
	}
	const id = "0190f2a4-5b6c-7d8e-9f00-1122334455aa"
	if err := s.InsertPeriodHistory(ctx, id, at(15, 0), old); err != nil {
		return err
	}
	if err := s.InsertPeriodHistory(ctx, id, at(15, 0), old[:1]); err != nil { // run again after a crash
		return err
	}
	if kept, err := s.PeriodHistory(ctx, "line", 1, id); err != nil || len(kept) != len(old) {
		return fmt.Errorf("kept versions: %d %v, want %d", len(kept), err, len(old))
	}
	if _, err := s.RecomputeByID(ctx, id); !errors.Is(err, chstore.ErrNotFound) {
		return fmt.Errorf("a recompute not run: %v", err)
	}
	r := chstore.Recompute{ID: id, Site: 1, LocationKind: "line", Location: 1, ExternalID: "line_1",
		StartMs: at(10, 30).UnixMilli(), EndMs: at(13, 30).UnixMilli(), FromMs: at(10, 0).UnixMilli(), ToMs: at(14, 0).UnixMilli(),
		RuleVersion: 77, Parts: uint64(len(parts)), Replaced: 3, Deleted: 1, ReasonsKept: 1,
		ReasonsLost: `[{"period":4,"reason":3}]`, By: "admin", DoneAt: at(15, 0)}
	refused := chstore.Recompute{ID: id + "-refused", Site: 1, LocationKind: "line", Location: 1, ExternalID: "line_1",
		StartMs: r.StartMs, EndMs: r.EndMs, FromMs: r.StartMs, ToMs: r.StartMs, ReasonsLost: "[]", By: "admin",
		DoneAt: at(15, 0), Error: "the window holds more than 5000000 parts"}
	for _, rr := range []chstore.Recompute{r, refused} {
		if err := s.InsertRecompute(ctx, rr); err != nil {
			return err
		}
	}
	if got, err := s.RecomputeByID(ctx, refused.ID); err != nil || got.Error != refused.Error {
		return fmt.Errorf("refused recompute read back: %+v %v", got, err)
	}
	got, err := s.RecomputeByID(ctx, id)
	if err == nil && got.DoneAt.Equal(r.DoneAt) {
		got.DoneAt = r.DoneAt
	}
	if err != nil || got != r {
		return fmt.Errorf("recompute read back: %+v %v", got, err)
	}
	if err := w.reclassify(ctx); err != nil {
		return err
	}
	return w.readDef(ctx, record.PeriodHistory)
}

// reclassify is what a recompute after a shift change does to the parts:
// line 1's parts of 10:00-11:00 made in 10:00-10:30 unscheduled, the rest
// counted (a mutation), the OEE rollup made to follow, twice (a request
// run again), and the figures from the rollup and from the raw rows
// compared.
func (w *Workload) reclassify(ctx context.Context) error {
	s := w.Store
	from, to := at(10, 0).UnixMilli(), at(11, 0).UnixMilli()
	for range 2 {
		if err := s.ReclassifyParts(ctx, "line", 1, from, to, [][2]int64{{from, at(10, 30).UnixMilli()}}); err != nil {
			return err
		}
		if _, err := s.ReconcileClassRollup(ctx, "line", 1, from, to); err != nil {
			return err
		}
	}
	sc := chstore.OEEScope{Site: 1, Lines: []uint64{1}}
	cuts := []int64{at(9, 0).UnixMilli(), at(12, 0).UnixMilli()}
	rolled, err := s.OEEParts(ctx, sc, cuts, false)
	if err != nil {
		return err
	}
	raw, err := s.OEEParts(ctx, sc, cuts, true)
	if err != nil {
		return err
	}
	sum := func(rows []chstore.OEEPartsRow) (produced, unscheduled uint64) {
		for _, r := range rows {
			produced, unscheduled = produced+r.Produced, unscheduled+r.Unscheduled
		}
		return produced, unscheduled
	}
	p1, u1 := sum(rolled)
	p2, u2 := sum(raw)
	if p1 != p2 || u1 != u2 || u1 == 0 {
		return fmt.Errorf("reclassified parts: rollup counts %d produced, %d unscheduled; the rows %d, %d (want some unscheduled)", p1, u1, p2, u2)
	}
	return nil
}

// backfill rolls up the first day again (what a database migrated from
// before the rollup needs) and reads the rollup.
func (w *Workload) backfill(ctx context.Context) error {
	if err := w.Store.BackfillPartsHourly(ctx, at(0, 0), at(24, 0)); err != nil {
		return err
	}
	_, err := w.Store.PartsHourly(ctx, 1, at(0, 0), at(48, 0))
	return err
}
