package main

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/takt/takt/internal/demo"
	"github.com/takt/takt/internal/period"
	"github.com/takt/takt/internal/testenv"
)

// TestInto fills a seeded pipeline database the way -into does and checks
// that the generated parts keep out of the pipeline's way (topic, ids,
// locations, products, order below now) while the views' tables, the
// periods and the master data agree with them; then that a second fill,
// a site that is no test site and a database that does not exist are
// refused.
func TestInto(t *testing.T) {
	s, cfg := testenv.ClickHouse(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := demo.Seed(ctx, s, "", ""); err != nil {
		t.Fatal(err)
	}
	addr := cfg.Addr[0]
	logger := testenv.Logger(t)
	const size = 20_000
	before := time.Now().UnixMilli()
	if err := growthInto(ctx, addr, cfg.Database, demo.SiteID, size, logger); err != nil {
		t.Fatal(err)
	}
	p := intoPlant(demo.SiteID)
	for _, c := range []struct {
		what  string
		query string
		want  uint64
	}{
		{"parts", "SELECT count() FROM parts", size},
		{"distinct ids", "SELECT uniqExact(id) FROM parts", size},
		{"distinct event ids", "SELECT uniqExact(event_id) FROM parts", size},
		{"parts on the pipeline's topic", "SELECT count() FROM parts WHERE topic != 'takt.growth'", 0},
		{"ids below partition 1000", "SELECT count() FROM parts WHERE id < bitShiftLeft(toUInt64(1000), 40) OR partition < 1000 OR partition > 1007", 0},
		{"ids that are not (partition << 40) | offset", "SELECT count() FROM parts WHERE id != bitShiftLeft(toUInt64(partition), 40) + toUInt64(offset)", 0},
		{"parts off the site", "SELECT count() FROM parts WHERE site != 1", 0},
		{"parts of other locations", "SELECT count() FROM parts WHERE location_id < 8000001 OR location_id > 8000200 OR NOT startsWith(externalid, 'growth_')", 0},
		{"parts of other products", "SELECT count() FROM parts WHERE product_id NOT IN (8000001, 8000002) OR ideal_cycle_time NOT IN (3600, 7200)", 0},
		{"order at or after the fill", "SELECT count() FROM parts WHERE order_ms >= " + itoa(before), 0},
		{"parts_order", "SELECT uniqExact(id) FROM parts_order", size},
		{"parts_hourly quantity", "SELECT sum(produced) FROM parts_hourly", size},
		{"locations", "SELECT (SELECT count() FROM lines FINAL WHERE startsWith(externalid, 'growth_')) + (SELECT count() FROM machines FINAL WHERE startsWith(externalid, 'growth_'))", locations},
		{"periods of other locations", "SELECT count() FROM productionperiods WHERE location < 8000001 OR location > 8000200", 0},
	} {
		got, err := s.QueryUint64(ctx, c.query)
		if err != nil {
			t.Fatalf("%s: %v", c.what, err)
		}
		if got != c.want {
			t.Errorf("%s: %d, want %d", c.what, got, c.want)
		}
	}
	// The processor's resume point of every partition of the parts topic
	// knows nothing of the fill.
	for part := int32(0); part < partitions; part++ {
		if off, ok, err := s.PartsMaxOffset(ctx, "takt.parts", part, 0); err != nil || ok {
			t.Errorf("partition %d of takt.parts: offset %d stored (%v), want none", part, off, err)
		}
	}
	// Periods carry the ids the processor gives them.
	first, err := s.QueryUint64(ctx, "SELECT toUInt64(toUInt32(min(start))) * 1000 FROM productionperiods WHERE location = ? AND location_kind = 'line'", p.locBase+1)
	if err != nil || first == 0 {
		t.Fatalf("no periods of the first generated line (%v)", err)
	}
	id := period.PeriodID(period.Key{Kind: "line", ID: p.locBase + 1}, int64(first))
	if n, err := s.QueryUint64(ctx, "SELECT count() FROM productionperiods WHERE location = ? AND id = ?", p.locBase+1, id); err != nil || n != 1 {
		t.Errorf("the first generated line's first period: %d rows with id %d (%v), want 1", n, id, err)
	}

	refused := func(db string, site uint64, want string) {
		t.Helper()
		err := growthInto(ctx, addr, db, site, size, logger)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("-into %s -site %d: %v, want an error saying %q", db, site, err, want)
		}
	}
	refused(cfg.Database, demo.SiteID, "parts holds 20000 rows")

	empty, ecfg := testenv.ClickHouse(t)
	if _, err := demo.Seed(ctx, empty, "", ""); err != nil {
		t.Fatal(err)
	}
	refused(ecfg.Database, 2, "site 2 is not a test site")
	n, err := empty.QueryUint64(ctx, "SELECT count() FROM parts")
	if err != nil || n != 0 {
		t.Errorf("a refused fill stored %d parts (%v)", n, err)
	}

	missing := testenv.Name("takt_test_missing_")
	refused(missing, demo.SiteID, "not a Takt database")
	if n, err := s.QueryUint64(ctx, "SELECT count() FROM system.databases WHERE name = ?", missing); err != nil || n != 0 {
		t.Errorf("the refused fill created database %s (%d, %v)", missing, n, err)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
