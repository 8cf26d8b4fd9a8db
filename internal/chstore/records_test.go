package chstore_test

import (
	"context"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/l2l"
	"github.com/takt/takt/internal/testenv"
)

// seedRecords writes two sites with a line and a product each, a deleted
// product, a product updated once, and four parts (three of site 1).
func seedRecords(t *testing.T, ctx context.Context, s *chstore.Store) {
	t.Helper()
	audit := chstore.Audit{CreatedBy: "test", LastUpdatedBy: "test"}
	old := audit
	old.Version = 1
	put := []error{
		s.PutSite(ctx, chstore.Site{ID: 1, Description: "One", Timezone: "Europe/Berlin", Audit: audit}),
		s.PutSite(ctx, chstore.Site{ID: 2, Description: "Two", Timezone: "America/Chicago", Audit: audit}),
		s.PutLine(ctx, chstore.Line{ID: 1, Site: 1, Area: 1, Code: "L1", ExternalID: "line_1", Audit: audit}),
		s.PutLine(ctx, chstore.Line{ID: 2, Site: 2, Area: 2, Code: "L2", Audit: audit}),
		s.PutProduct(ctx, chstore.Product{ID: 1, Site: 1, Code: "OLD", IdealCycleTime: 1, Audit: old}),
		s.PutProduct(ctx, chstore.Product{ID: 1, Site: 1, Code: "P1", IdealCycleTime: 45, Audit: audit}),
		s.PutProduct(ctx, chstore.Product{ID: 2, Site: 1, Code: "GONE", Audit: func() chstore.Audit { a := audit; a.Deleted = true; return a }()}),
		s.PutProduct(ctx, chstore.Product{ID: 3, Site: 2, Code: "P3", Fallback: true, Audit: audit}),
	}
	for _, err := range put {
		if err != nil {
			t.Fatal(err)
		}
	}
	var b chstore.PartsBlock
	base := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC).UnixMilli()
	rows := []chstore.PartRow{
		{Site: 1, ExternalID: "line_1", LocationID: 1, ProductID: 1, ProductCode: "P1", ProductReported: "P1",
			ProductResolution: "code", Quantity: 1, Quality: "good", CycleTime: 44.5, HasCycleTime: true},
		{Site: 1, ExternalID: "line_1", LocationID: 1, ProductResolution: "none", Quantity: 2, Quality: "scrap", Reason: "R1"},
		{Site: 1, ExternalID: "line_1", LocationID: 1, ProductID: 1, ProductCode: "P1", ProductResolution: "cycle_time",
			Quantity: 3, Quality: "rework", CycleTime: 0, HasCycleTime: true, RecordedDefaulted: true},
		{Site: 2, ExternalID: "m_2", LocationID: 9, ProductID: 3, ProductCode: "P3", ProductResolution: "fallback",
			Quantity: 4, Quality: "good"},
	}
	for i := range rows {
		r := &rows[i]
		r.Partition, r.Offset = 0, int64(i)
		r.ID = chstore.PartID(r.Partition, r.Offset)
		r.EventID = uuid.Must(uuid.NewV7())
		r.LocationKind = "line"
		if r.Site == 2 {
			r.LocationKind = "machine"
		}
		r.RecordedMs = base + int64(i)*1500
		r.ReceivedMs = r.RecordedMs + 7
		r.Topic = "t"
		if err := b.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.InsertParts(ctx, &b); err != nil {
		t.Fatal(err)
	}
}

func readIDs(t *testing.T, ctx context.Context, s *chstore.Store, area, raw string, sites ...uint64) []int64 {
	t.Helper()
	a, ok := chstore.RecordAreaByName(area)
	if !ok {
		t.Fatalf("no area %s", area)
	}
	v, _ := url.ParseQuery(raw)
	q, err := l2l.Parse(v, a.Schema())
	if err != nil {
		t.Fatalf("parse %q: %v", raw, err)
	}
	p, err := s.Records(ctx, a, q, sites)
	if err != nil {
		t.Fatalf("%s?%s: %v", area, raw, err)
	}
	idCol := -1
	for i, f := range p.Fields {
		if f.Name == "id" {
			idCol = i
		}
	}
	ids := []int64{}
	for _, row := range p.Rows {
		if idCol >= 0 {
			ids = append(ids, row[idCol].(int64))
		}
	}
	return ids
}

// TestRecordsEveryOperator runs every operator on every field and every
// order of every area against ClickHouse: each statement must be valid on
// the server the tests run on.
func TestRecordsEveryOperator(t *testing.T) {
	s, _ := testenv.ClickHouse(t)
	// Hundreds of statements: the bound is for a hung server, not a
	// measure (a loaded 2-core machine takes about two minutes).
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	seedRecords(t, ctx, s)
	sample := map[l2l.Type]string{
		l2l.Int: "1", l2l.Float: "1.5", l2l.String: "x", l2l.Bool: "True",
		l2l.DateTime: "2024-03-01T12:00:01.5Z", l2l.LocalDateTime: "2024-03-01", l2l.Date: "2024-03-01",
	}
	for _, name := range chstore.RecordAreaNames() {
		a, _ := chstore.RecordAreaByName(name)
		for _, f := range a.Schema().Fields() {
			if f.AfterRead {
				// Shown and picked only (l2l refuses filters and orders).
				readIDs(t, ctx, s, name, "fields=id,"+f.Name, 1, 2)
				continue
			}
			for _, op := range []string{"", "__lt", "__lte", "__gt", "__gte"} {
				readIDs(t, ctx, s, name, "fields=id,"+f.Name+"&"+f.Name+op+"="+url.QueryEscape(sample[f.Type]), 1, 2)
			}
			readIDs(t, ctx, s, name, "fields="+f.Name+"&"+f.Name+"__isnull=True", 1)
			readIDs(t, ctx, s, name, "order_by=-"+f.Name+"&"+f.Name+"__isnull=False", 1)
		}
	}
}

func TestRecordsSemantics(t *testing.T) {
	s, _ := testenv.ClickHouse(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	seedRecords(t, ctx, s)
	p1 := int64(chstore.PartID(0, 1))
	p2 := int64(chstore.PartID(0, 2))
	tests := []struct {
		area, query string
		sites       []uint64
		want        []int64
	}{
		{"parts", "", []uint64{1}, []int64{0, p1, p2}},
		{"parts", "", []uint64{1, 2}, []int64{0, p1, p2, int64(chstore.PartID(0, 3))}},
		{"parts", "", nil, []int64{}},
		{"parts", "order_by=-id&limit=2", []uint64{1}, []int64{p2, p1}},
		{"parts", "limit=2&offset=2", []uint64{1}, []int64{p2}},
		{"parts", "quality=scrap", []uint64{1}, []int64{p1}},
		{"parts", "quality=unknown", []uint64{1}, []int64{}},
		{"parts", "cycle_time__isnull=True", []uint64{1}, []int64{p1}},
		{"parts", "cycle_time__lt=1", []uint64{1}, []int64{p2}},
		{"parts", "product__isnull=True", []uint64{1}, []int64{p1}},
		{"parts", "reason=R1", []uint64{1}, []int64{p1}},
		{"parts", "recorded_defaulted=True", []uint64{1}, []int64{p2}},
		{"parts", "recorded_at__gte=2024-03-01T12:00:01.5", []uint64{1}, []int64{p1, p2}},
		{"parts", "recorded_at__gt=2024-03-01T12:00:01.5", []uint64{1}, []int64{p2}},
		{"parts", "recorded_at_local__lt=2024-03-01T13:00:01%2B01:00", []uint64{1}, []int64{0}},
		{"parts", "recorded_at__lt=2024-03-01", []uint64{1}, []int64{}},
		{"parts", "order_by=-quantity&quantity__lte=2", []uint64{1}, []int64{p1, 0}},
		{"parts", "site=2", []uint64{1}, []int64{}},
		{"sites", "", []uint64{1, 2}, []int64{1, 2}},
		{"sites", "timezone=Europe/Berlin", []uint64{1, 2}, []int64{1}},
		{"sites", "", []uint64{2}, []int64{2}},
		{"lines", "externalid__isnull=True", []uint64{1, 2}, []int64{2}},
		{"products", "", []uint64{1, 2}, []int64{1, 3}},
		{"products", "code=OLD", []uint64{1, 2}, []int64{}},
		{"products", "fallback=True", []uint64{1, 2}, []int64{3}},
		{"products", "ideal_cycle_time__gt=44.5", []uint64{1, 2}, []int64{1}},
	}
	for _, tt := range tests {
		got := readIDs(t, ctx, s, tt.area, tt.query, tt.sites...)
		if len(got) != len(tt.want) {
			t.Errorf("%s?%s sites %v: ids %v, want %v", tt.area, tt.query, tt.sites, got, tt.want)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("%s?%s sites %v: ids %v, want %v", tt.area, tt.query, tt.sites, got, tt.want)
				break
			}
		}
	}

	parts, _ := chstore.RecordAreaByName("parts")
	q, _ := l2l.Parse(url.Values{"fields": {"id,cycle_time,reason,recorded_at,recorded_defaulted,product"}}, parts.Schema())
	p, err := s.RecordByID(ctx, parts, uint64(p1), q, []uint64{1})
	if err != nil {
		t.Fatal(err)
	}
	want := []any{p1, nil, "R1", time.Date(2024, 3, 1, 12, 0, 1, 500e6, time.UTC), false, nil}
	for i, v := range p.Rows[0] {
		if v != want[i] {
			t.Errorf("record %d: %s = %#v, want %#v", p1, p.Fields[i].Name, v, want[i])
		}
	}
	if len(p.Sites) != 1 || p.Sites[0] != 1 {
		t.Errorf("record sites = %v", p.Sites)
	}
	if _, err := s.RecordByID(ctx, parts, uint64(chstore.PartID(0, 3)), q, []uint64{1}); !errors.Is(err, chstore.ErrNotFound) {
		t.Errorf("record of another site: %v, want ErrNotFound", err)
	}
	if _, err := s.RecordByID(ctx, parts, 999, q, []uint64{1}); !errors.Is(err, chstore.ErrNotFound) {
		t.Errorf("missing record: %v, want ErrNotFound", err)
	}

	tz, err := s.SiteTimezones(ctx)
	if err != nil || tz[1] != "Europe/Berlin" || tz[2] != "America/Chicago" {
		t.Errorf("SiteTimezones = %v, %v", tz, err)
	}
}
