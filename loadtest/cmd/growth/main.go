// Command growth measures how the parts area's paging and the OEE read
// cost as the parts table grows: it fills a scratch database of its own on
// the local ClickHouse (default 127.0.0.1:19000) with generated parts, and
// at each size (-sizes, e.g. 1M,10M,100M) measures
//
//   - paging: a loop over the first -rows rows of the parts area in
//     insertion order, -limit rows a page, read the way the query API
//     reads them (a page by offset, then the pages the read looked ahead
//     to by their positions, the others after the cursor; the parts
//     watermark at the last part): latency per page (p50, p99, max) and
//     rows ClickHouse read per page. The same loop with the pages found in
//     the parts table itself, as before parts_order existed, is measured
//     for -before-pages pages ("before"), since it costs a scan of the
//     table per found page;
//   - OEE: the reads of a 7-day OEE figure of one location (its site's
//     master data, then its parts from the rollups and its periods, at
//     once), once per location for -oee-locations locations: median, p99.
//
// The fill writes parts with INSERT ... SELECT FROM numbers() in chunks
// (a progress line each), so every materialized view fills as it does
// for the processor's inserts; 200 locations on 4 sites, each location's
// parts on one of 8 Kafka partitions, a part every ~0.6 s overall (7 days
// per million parts), with production periods and master data to match.
// The database is dropped at the end unless -keep. Figures go to stdout
// as a Markdown table and to -json. `make bench-growth` runs it.
//
// With -into DB it measures nothing: it fills the parts table of a running
// pipeline's database (a scratch stack's: see growthInto) to the one size
// of -sizes, so that the pipeline's own figures can be taken with that
// many parts stored. The generated plant is the same, moved out of the
// pipeline's way: its parts are on topic takt.growth and partitions
// 1000..1007 (ids no consumer of the parts topic ever assigns), all on
// one test site of the target (-site), at locations 8,000,001.. (external
// ids growth_1..) with products 8,000,001.. whose ideal cycle times (1 and
// 2 hours) no part of the load harness resolves to, and every order_ms
// before the fill started (below any parts watermark published after it).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"golang.org/x/sync/errgroup"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/l2l"
	"github.com/takt/takt/internal/period"
	"github.com/takt/takt/internal/record"
)

// The generated plant.
const (
	sites         = 4
	locsPerSite   = 50 // half lines, half machines
	locations     = sites * locsPerSite
	partitions    = 8
	msPerPartX10  = 6048 // 0.6048 s between parts: a million parts is 7 days
	chunkRows     = 5_000_000
	lookAheadPage = 5 // as the query API (queryapi.lookAheadPages)
)

// plant says where the generated plant's records go, so that the parts,
// the tables the views fill from them, the periods and the master data
// agree.
type plant struct {
	topic     string // the parts' topic
	partBase  int32  // location l's parts are on partition partBase + l % partitions
	locBase   uint64 // location l's id is locBase + l + 1
	extPrefix string // and its external id extPrefix + (l + 1)
	site      uint64 // 0: sites 1..4, locsPerSite locations each; else every location on this site
	prodBase  uint64 // a site's products are prodBase + 2 × (site index) + 1 and + 2
	ideal     int    // product k (1, 2) of a site has ideal cycle time ideal × k seconds
	eventPfx  string // event ids are this prefix and 12 hex digits of the part's number
	area      bool   // lines are in the area of their site's id
}

// ownPlant is the plant of the tool's own scratch database.
var ownPlant = plant{topic: "takt.parts", extPrefix: "loc_", ideal: 30, eventPfx: "00000000-0000-4000-8000-", area: true}

// intoPlant is the plant -into adds to a pipeline's database on site.
func intoPlant(site uint64) plant {
	return plant{topic: "takt.growth", partBase: 1000, locBase: 8_000_000, extPrefix: "growth_", site: site,
		prodBase: 8_000_000, ideal: 3600, eventPfx: "67726f77-7468-4000-8000-"}
}

// siteOf is the site of location l.
func (p plant) siteOf(l uint64) uint64 {
	if p.site != 0 {
		return p.site
	}
	return l/locsPerSite + 1
}

// sites are the plant's sites.
func (p plant) sites() []uint64 {
	if p.site != 0 {
		return []uint64{p.site}
	}
	out := make([]uint64, sites)
	for i := range out {
		out[i] = uint64(i + 1)
	}
	return out
}

// Figures are the measurements at one size.
type Figures struct {
	Parts      uint64  `json:"parts"`
	FillSec    float64 `json:"fill_seconds"`
	PageP50    float64 `json:"page_ms_p50"`
	PageP99    float64 `json:"page_ms_p99"`
	PageMax    float64 `json:"page_ms_max"`
	Pages      int     `json:"pages"`
	RowsRead   float64 `json:"rows_read_per_page"`
	MBRead     float64 `json:"mb_read_per_page"`
	BeforeP50  float64 `json:"before_page_ms_p50"`
	BeforeMax  float64 `json:"before_page_ms_max"`
	BeforePgs  int     `json:"before_pages"`
	BeforeRows float64 `json:"before_rows_read_per_page"`
	BeforeMB   float64 `json:"before_mb_read_per_page"`
	FilterP50  float64 `json:"filtered_page_ms_p50"`
	FilterP99  float64 `json:"filtered_page_ms_p99"`
	FilterRows float64 `json:"filtered_rows_read_per_page"`
	FilterMB   float64 `json:"filtered_mb_read_per_page"`
	OEEMedian  float64 `json:"oee_7d_ms_median"`
	OEEP99     float64 `json:"oee_7d_ms_p99"`
	OEEReads   int     `json:"oee_reads"`
	OEERows    float64 `json:"oee_rows_read"`
	OEEMB      float64 `json:"oee_mb_read"`
	DiskBytes  uint64  `json:"disk_bytes"`
}

func main() {
	addr := flag.String("addr", "127.0.0.1:19000", "ClickHouse native address")
	db := flag.String("db", fmt.Sprintf("takt_growth_%d", os.Getpid()), "scratch database (created, dropped at the end)")
	sizesArg := flag.String("sizes", "1M,10M", "sizes to measure at, ascending (K, M suffixes)")
	rows := flag.Int("rows", 1_000_000, "rows each paging loop reads")
	limit := flag.Int("limit", 2000, "rows per page")
	beforePages := flag.Int("before-pages", 10, "pages of the loop without parts_order (each scans the table)")
	oeeLocs := flag.Int("oee-locations", 40, "locations whose 7-day OEE reads are measured")
	keep := flag.Bool("keep", false, "keep the database")
	out := flag.String("json", "", "write the figures here too")
	into := flag.String("into", "", "fill this pipeline database's parts table to the one size of -sizes and measure nothing (see the command's doc)")
	site := flag.Uint64("site", 1, "with -into: the test site the generated locations are on")
	flag.Parse()
	sizes, err := parseSizes(*sizesArg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "growth:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if *into != "" {
		if len(sizes) != 1 {
			fmt.Fprintln(os.Stderr, "growth: -into fills to one size: give -sizes one size")
			os.Exit(2)
		}
		if err := growthInto(ctx, *addr, *into, *site, sizes[0], logger); err != nil {
			fmt.Fprintln(os.Stderr, "growth:", err)
			os.Exit(1)
		}
		return
	}
	g := &growth{plant: ownPlant, db: *db, rows: *rows, limit: *limit, beforePages: *beforePages, oeeLocs: *oeeLocs, logger: logger}
	figs, err := g.run(ctx, *addr, sizes, *keep)
	fmt.Print(markdown(figs))
	if *out != "" && len(figs) > 0 {
		b, _ := json.MarshalIndent(figs, "", "  ")
		if werr := os.WriteFile(*out, append(b, '\n'), 0o644); werr != nil && err == nil {
			err = werr
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "growth:", err)
		os.Exit(1)
	}
}

func parseSizes(s string) ([]uint64, error) {
	var out []uint64
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(strings.ToUpper(f))
		mul := uint64(1)
		switch {
		case strings.HasSuffix(f, "M"):
			mul, f = 1_000_000, strings.TrimSuffix(f, "M")
		case strings.HasSuffix(f, "K"):
			mul, f = 1_000, strings.TrimSuffix(f, "K")
		}
		n, err := strconv.ParseUint(f, 10, 64)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("-sizes: %q is not a size", f)
		}
		if len(out) > 0 && n*mul <= out[len(out)-1] {
			return nil, fmt.Errorf("-sizes: %s is not above the size before", f)
		}
		out = append(out, n*mul)
	}
	return out, nil
}

type growth struct {
	plant
	db                       string
	rows, limit, beforePages int
	oeeLocs                  int
	logger                   *slog.Logger
	store                    *chstore.Store
	t0                       int64 // order_ms of part 0
	after, before            *chstore.RecordArea
}

func (g *growth) run(ctx context.Context, addr string, sizes []uint64, keep bool) ([]Figures, error) {
	cfg := chstore.Config{Addr: []string{addr}, Database: g.db, User: "default", DialTimeout: 5 * time.Second,
		ReadTimeout: 10 * time.Minute, MaxOpenConns: 4}
	s, err := chstore.Open(ctx, cfg, g.logger)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	g.store = s
	if !keep {
		defer func() {
			dctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := s.Exec(dctx, "DROP DATABASE IF EXISTS "+g.db); err != nil {
				fmt.Fprintln(os.Stderr, "growth: drop", g.db+":", err)
			}
		}()
	}
	if err := s.Migrate(ctx); err != nil {
		return nil, err
	}
	// A database kept by an earlier run (-keep) is measured again as it
	// is, at the sizes it holds; its parts go on from there.
	filled, err := s.QueryUint64(ctx, "SELECT count() FROM parts")
	if err != nil {
		return nil, err
	}
	if filled > 0 {
		first, err := s.QueryUint64(ctx, "SELECT toUInt64(min(order_ms)) FROM parts")
		if err != nil {
			return nil, err
		}
		g.t0 = int64(first)
		fmt.Fprintf(os.Stderr, "growth: %s holds %d parts already\n", g.db, filled)
	} else {
		// The data ends about now at the last size.
		g.t0 = time.Now().UnixMilli() - int64(sizes[len(sizes)-1])*msPerPartX10/10
		if err := g.master(ctx, sizes[len(sizes)-1]); err != nil {
			return nil, err
		}
	}
	def, _ := record.Takt.Area("parts")
	if g.after, err = chstore.NewRecordArea(def); err != nil {
		return nil, err
	}
	plain := *def
	plain.OrderIndex, plain.IndexFields = "", nil
	if g.before, err = chstore.NewRecordArea(&plain); err != nil {
		return nil, err
	}
	var figs []Figures
	for _, size := range sizes {
		if size < filled {
			continue
		}
		t := time.Now()
		if err := g.fill(ctx, filled, size); err != nil {
			return figs, err
		}
		f := Figures{Parts: size, FillSec: time.Since(t).Seconds()}
		filled = size
		fmt.Fprintf(os.Stderr, "growth: %d parts stored in %.0f s; measuring\n", size, f.FillSec)
		if err := g.measure(ctx, &f); err != nil {
			return figs, err
		}
		figs = append(figs, f)
		fmt.Fprintf(os.Stderr, "growth: %d parts: page p50 %.1f ms p99 %.1f ms (%.0f rows read), before p50 %.0f ms (%.0f rows read); OEE 7 d median %.1f ms\n",
			size, f.PageP50, f.PageP99, f.RowsRead, f.BeforeP50, f.BeforeRows, f.OEEMedian)
	}
	return figs, nil
}

// growthInto fills the parts table of database db, a running pipeline's,
// with size parts of intoPlant(site), and its master data and periods. It
// refuses a database that is not a scratch stack's: one without Takt's
// tables, whose parts, parts_order or productionperiods hold any row
// (what the pipeline stored would then share the table with the fill's
// order and ids unchecked), whose site is not a test site (sites.test_site,
// as the local stack's demo site is), or that holds locations or products
// in the ids or external ids the fill writes.
func growthInto(ctx context.Context, addr, db string, site, size uint64, logger *slog.Logger) error {
	cfg := chstore.Config{Addr: []string{addr}, Database: "system", User: "default", DialTimeout: 5 * time.Second,
		ReadTimeout: 10 * time.Minute, MaxOpenConns: 4}
	// Looked up from system first: opening a store on db would create it.
	sys, err := chstore.Open(ctx, cfg, logger)
	if err != nil {
		return err
	}
	n, err := sys.QueryUint64(ctx, "SELECT count() FROM system.tables WHERE database = ? AND name IN ('parts', 'parts_order', 'productionperiods', 'sites')", db)
	sys.Close()
	if err != nil {
		return err
	}
	if n != 4 {
		return fmt.Errorf("-into %s: not a Takt database on %s (no parts, parts_order, productionperiods or sites table); start the stack first", db, addr)
	}
	cfg.Database = db
	s, err := chstore.Open(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer s.Close()
	p := intoPlant(site)
	if err := checkInto(ctx, s, p); err != nil {
		return fmt.Errorf("-into %s: %w", db, err)
	}
	g := &growth{plant: p, db: db, logger: logger, store: s}
	// The data ends when the fill starts: every order_ms lies below the
	// parts watermark the pipeline publishes from then on.
	g.t0 = time.Now().UnixMilli() - int64(size)*msPerPartX10/10
	t := time.Now()
	if err := g.master(ctx, size); err != nil {
		return err
	}
	if err := g.fill(ctx, 0, size); err != nil {
		return err
	}
	disk, err := s.QueryUint64(ctx, "SELECT sum(bytes_on_disk) FROM system.parts WHERE active AND database = ?", db)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "growth: %s holds %d generated parts (topic %s, site %d, locations %s1..%d) after %.0f s, %.2f GB on disk\n",
		db, size, p.topic, site, p.extPrefix, locations, time.Since(t).Seconds(), float64(disk)/1e9)
	return nil
}

// checkInto refuses a target that is not a scratch stack's empty
// pipeline database (see growthInto).
func checkInto(ctx context.Context, s *chstore.Store, p plant) error {
	for _, table := range []string{"parts", "parts_order", "productionperiods"} {
		n, err := s.QueryUint64(ctx, "SELECT count() FROM "+table)
		if err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("%s holds %d rows: the fill goes only into a pipeline database with nothing stored yet (a fresh scratch stack)", table, n)
		}
	}
	n, err := s.QueryUint64(ctx, "SELECT count() FROM sites FINAL WHERE id = ? AND deleted = 0 AND test_site = 1", p.site)
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("site %d is not a test site (sites.test_site): the fill goes only into a scratch stack's test site (-site)", p.site)
	}
	locs, err := s.Locations(ctx)
	if err != nil {
		return err
	}
	for _, l := range locs {
		if strings.HasPrefix(l.ExternalID, p.extPrefix) || l.ID > p.locBase && l.ID <= p.locBase+locations {
			return fmt.Errorf("%s %d (%s) is in the ids or external ids the fill writes", l.Kind, l.ID, l.ExternalID)
		}
	}
	prods, err := s.Products(ctx)
	if err != nil {
		return err
	}
	for _, pr := range prods {
		if pr.ID > p.prodBase && pr.ID <= p.prodBase+2*uint64(len(p.sites())) {
			return fmt.Errorf("product %d (%s) is in the ids the fill writes", pr.ID, pr.Code)
		}
	}
	return nil
}

// master writes the sites (of the tool's own plant only), locations,
// products and production periods of the generated plant (periods: each
// location running but for one hour down a day, over the whole span of
// the largest size, with the ids the processor gives periods).
func (g *growth) master(ctx context.Context, largest uint64) error {
	s := g.store
	audit := chstore.Audit{CreatedBy: "growth", LastUpdatedBy: "growth"}
	for i, site := range g.sites() {
		if g.site == 0 {
			if err := s.PutSite(ctx, chstore.Site{ID: site, Description: fmt.Sprint("site ", site), Timezone: "Europe/Berlin", Audit: audit}); err != nil {
				return err
			}
		}
		for k := uint64(1); k <= 2; k++ {
			id := g.prodBase + uint64(i)*2 + k
			if err := s.PutProduct(ctx, chstore.Product{ID: id, Site: site, Code: fmt.Sprint("P", id), IdealCycleTime: float64(g.ideal) * float64(k), Audit: audit}); err != nil {
				return err
			}
		}
	}
	for l := uint64(0); l < locations; l++ {
		site, id, ext := g.siteOf(l), g.locBase+l+1, fmt.Sprint(g.extPrefix, l+1)
		var err error
		if l%locsPerSite < locsPerSite/2 {
			line := chstore.Line{ID: id, Site: site, Code: fmt.Sprint("L", id), ExternalID: ext, Audit: audit}
			if g.area {
				line.Area = site
			}
			err = s.PutLine(ctx, line)
		} else {
			err = s.PutMachine(ctx, chstore.Machine{ID: id, Site: site, Code: fmt.Sprint("M", id), ExternalID: ext, Audit: audit})
		}
		if err != nil {
			return err
		}
	}
	const dayMs = 24 * 3_600_000
	first := g.t0 / dayMs * dayMs
	days := (int64(largest)*msPerPartX10/10)/dayMs + 2
	var rows []chstore.PeriodRow
	for d := int64(0); d < days; d++ {
		day := first + d*dayMs
		for l := uint64(0); l < locations; l++ {
			kind := "line"
			if l%locsPerSite >= locsPerSite/2 {
				kind = "machine"
			}
			key := period.Key{Kind: kind, ID: g.locBase + l + 1}
			for _, p := range []struct {
				state      string
				start, end int64
			}{{"running", 0, 10}, {"down", 10, 11}, {"running", 11, 24}} {
				start := day + p.start*3_600_000
				rows = append(rows, chstore.PeriodRow{ID: period.PeriodID(key, start), Site: g.siteOf(l), Location: key.ID, LocationKind: kind,
					ExternalID: fmt.Sprint(g.extPrefix, l+1), State: p.state, Start: start, End: day + p.end*3_600_000,
					FirstOfStop: 1, Version: 1})
			}
		}
		if len(rows) >= 100_000 || d == days-1 {
			if err := s.InsertPeriods(ctx, rows); err != nil {
				return err
			}
			rows = rows[:0]
		}
	}
	return nil
}

// fill stores parts [from, to) of the generated sequence. Part i is made
// at location i % 200, whose parts go to Kafka partition partBase +
// location % 8, at offset i / 8 there; its place in insertion order
// (order_ms) and its time of receipt are t0 + 0.6048 s × i, recorded up to
// 5 s before.
func (g *growth) fill(ctx context.Context, from, to uint64) error {
	// Blocks of ~1M rows: every block is a data part of parts.
	ins := clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{
		"max_insert_block_size": 1 << 20, "min_insert_block_size_rows": 1 << 20, "max_block_size": 1 << 16,
	}))
	// The index of a location's site among the plant's sites, and the site.
	sidx, site := "intDiv(loc, %[4]d)", "sidx + 1"
	if g.site != 0 {
		sidx, site = "0", fmt.Sprint(g.site)
	}
	start := time.Now()
	for lo := from; lo < to; lo += chunkRows {
		n := min(uint64(chunkRows), to-lo)
		q := fmt.Sprintf(`INSERT INTO parts (id, event_id, site, location_kind, location_id, externalid, product_id, product_code,
	product_reported, product_resolution, quantity, quality, reason, reason_id, cycle_time, recorded_at, recorded_ms,
	recorded_defaulted, received_ms, processed_ms, topic, partition, offset, inserted_at, ideal_cycle_time, oee_class, order_ms)
SELECT
	bitShiftLeft(toUInt64(%[9]d + loc %% %[3]d), 40) + intDiv(i, %[3]d) AS id,
	toUUID(concat('%[10]s', substring(concat('000000000000', hex(i)), length(hex(i)) + 1, 12))),
	toUInt64(`+site+`) AS site,
	if(loc %% %[4]d < %[5]d, 'line', 'machine'),
	%[11]d + loc + 1,
	concat('%[12]s', toString(loc + 1)),
	%[13]d + sidx * 2 + 1 + intDiv(i, 1000) %% 2 AS product,
	concat('P', toString(product)),
	concat('P', toString(product)),
	'code',
	1,
	if(intDiv(i, %[6]d) %% 4 = 3, 'scrap', 'good'),
	'',
	0,
	toNullable(ideal),
	toDateTime(intDiv(order_ms - i %% 5000, 1000)),
	order_ms - i %% 5000,
	0,
	order_ms,
	order_ms + 100,
	'%[14]s',
	toInt32(%[9]d + loc %% %[3]d),
	toInt64(intDiv(i, %[3]d)),
	toDateTime(intDiv(order_ms, 1000)),
	toFloat64(%[15]d * (1 + intDiv(i, 1000) %% 2)) AS ideal,
	'counted',
	toInt64(%[7]d) + intDiv(toInt64(i) * %[8]d, 10) AS order_ms
FROM (SELECT number + %[1]d AS i, i %% %[6]d AS loc, `+sidx+` AS sidx FROM system.numbers LIMIT %[2]d)`,
			lo, n, partitions, locsPerSite, locsPerSite/2, locations, g.t0, msPerPartX10,
			g.partBase, g.eventPfx, g.locBase, g.extPrefix, g.prodBase, g.topic, g.ideal)
		if err := g.store.Exec(ins, q); err != nil {
			return fmt.Errorf("fill parts %d..%d: %w", lo, lo+n, err)
		}
		done := lo + n - from
		el := time.Since(start).Seconds()
		fmt.Fprintf(os.Stderr, "growth: fill %d/%d parts (%.0f%%), %.0f s, %.0fk parts/s\n",
			lo+n, to, 100*float64(done)/float64(to-from), el, float64(done)/el/1000)
	}
	return nil
}

// measure takes the figures of f at the current size.
func (g *growth) measure(ctx context.Context, f *Figures) error {
	// Let the merges of the fill settle (at most a minute): they compete
	// for the same cores, and a page read is measured, not the fill.
	for t := time.Now(); time.Since(t) < time.Minute; time.Sleep(2 * time.Second) {
		n, err := g.store.QueryUint64(ctx, "SELECT count() FROM system.merges WHERE database = ?", g.db)
		if err != nil || n == 0 {
			break
		}
	}
	wm := g.t0 + int64(f.Parts-1)*msPerPartX10/10
	allSites := g.sites()
	lat, rows, mb, err := g.loop(ctx, g.after.WithWatermark(wm).WithLookAhead(lookAheadPage), "", allSites, g.rows/g.limit)
	if err != nil {
		return fmt.Errorf("paging: %w", err)
	}
	f.Pages, f.PageP50, f.PageP99, f.PageMax, f.RowsRead, f.MBRead = len(lat), pct(lat, 50), pct(lat, 99), pct(lat, 100), rows, mb
	// One location of site 1 (1/200 of the rows): up to 50 pages.
	lat, rows, mb, err = g.loop(ctx, g.after.WithWatermark(wm).WithLookAhead(lookAheadPage), "location=7&site=1", allSites,
		min(50, int(f.Parts/locations)/g.limit))
	if err != nil {
		return fmt.Errorf("paging one location: %w", err)
	}
	f.FilterP50, f.FilterP99, f.FilterRows, f.FilterMB = pct(lat, 50), pct(lat, 99), rows, mb
	if g.beforePages > 0 {
		lat, rows, mb, err = g.loop(ctx, g.before.WithWatermark(wm).WithLookAhead(lookAheadPage), "", allSites, g.beforePages)
		if err != nil {
			return fmt.Errorf("paging without parts_order: %w", err)
		}
		f.BeforePgs, f.BeforeP50, f.BeforeMax, f.BeforeRows, f.BeforeMB = len(lat), pct(lat, 50), pct(lat, 100), rows, mb
	}
	if err := g.oee(ctx, f, wm); err != nil {
		return fmt.Errorf("oee: %w", err)
	}
	disk, err := g.store.QueryUint64(ctx, "SELECT sum(bytes_on_disk) FROM system.parts WHERE active AND database = ?", g.db)
	f.DiskBytes = disk
	return err
}

// loop pages through pages pages of area a as the query API does, and
// returns each page's latency (ms) and the rows and MB (uncompressed)
// ClickHouse read per page.
func (g *growth) loop(ctx context.Context, a *chstore.RecordArea, filter string, sites []uint64, pages int) ([]float64, float64, float64, error) {
	var read, bytes atomic.Uint64
	ctx = clickhouse.Context(ctx, clickhouse.WithProgress(func(p *clickhouse.Progress) { read.Add(p.Rows); bytes.Add(p.Bytes) }))
	var lat []float64
	var next *chstore.Cursor
	var ahead []chstore.Cursor
	seen := map[int64]bool{}
	for p := 0; p < pages; p++ {
		v, _ := url.ParseQuery(filter)
		v.Set("limit", strconv.Itoa(g.limit))
		v.Set("offset", strconv.Itoa(p*g.limit))
		q, err := l2l.Parse(v, a.Schema())
		if err != nil {
			return nil, 0, 0, err
		}
		t := time.Now()
		var page chstore.RecordPage
		switch {
		case len(ahead) >= g.limit:
			page, err = g.store.RecordsAt(ctx, a, q, sites, ahead[:g.limit])
			ahead = ahead[g.limit:]
		case next != nil:
			page, err = g.store.RecordsAfter(ctx, a, q, sites, *next)
			ahead = page.Ahead
		default:
			page, err = g.store.Records(ctx, a, q, sites)
			ahead = page.Ahead
		}
		if err != nil {
			return nil, 0, 0, fmt.Errorf("page %d: %w", p, err)
		}
		lat = append(lat, float64(time.Since(t).Microseconds())/1000)
		if len(page.Rows) != g.limit {
			return nil, 0, 0, fmt.Errorf("page %d: %d rows, want %d", p, len(page.Rows), g.limit)
		}
		for _, r := range page.Rows {
			id := r[0].(int64)
			if seen[id] {
				return nil, 0, 0, fmt.Errorf("page %d: part %d twice", p, id)
			}
			seen[id] = true
		}
		next = page.Next
	}
	return lat, float64(read.Load()) / float64(pages), float64(bytes.Load()) / 1e6 / float64(pages), nil
}

// oee measures the reads of the 7-day OEE of single locations: the 7
// whole days before the last part's day.
func (g *growth) oee(ctx context.Context, f *Figures, wm int64) error {
	const dayMs = 24 * 3_600_000
	to := wm / dayMs * dayMs
	from := to - 7*dayMs
	var lat []float64
	var read, bytes atomic.Uint64
	ctx = clickhouse.Context(ctx, clickhouse.WithProgress(func(p *clickhouse.Progress) { read.Add(p.Rows); bytes.Add(p.Bytes) }))
	for i := 0; i < g.oeeLocs; i++ {
		l := uint64(i * locations / g.oeeLocs)
		site := g.siteOf(l)
		sc := chstore.OEEScope{Site: site}
		if l%locsPerSite < locsPerSite/2 {
			sc.Lines = []uint64{g.locBase + l + 1}
		} else {
			sc.Machines = []uint64{g.locBase + l + 1}
		}
		t := time.Now()
		if _, err := g.store.OEEMaster(ctx, site); err != nil {
			return err
		}
		var parts []chstore.OEEPartsRow
		eg, ectx := errgroup.WithContext(ctx)
		eg.Go(func() error {
			var err error
			parts, err = g.store.OEEParts(ectx, sc, []int64{from, to}, false)
			return err
		})
		eg.Go(func() error {
			_, err := g.store.OEEPeriods(ectx, sc, from, to)
			return err
		})
		if err := eg.Wait(); err != nil {
			return err
		}
		lat = append(lat, float64(time.Since(t).Microseconds())/1000)
		var produced uint64
		for _, r := range parts {
			produced += r.Produced
		}
		if produced == 0 {
			return fmt.Errorf("location %d: no parts in the 7 days", l+1)
		}
	}
	f.OEEReads, f.OEEMedian, f.OEEP99 = len(lat), pct(lat, 50), pct(lat, 99)
	f.OEERows, f.OEEMB = float64(read.Load())/float64(len(lat)), float64(bytes.Load())/1e6/float64(len(lat))
	return nil
}

// pct is the p-th percentile of v (nearest rank).
func pct(v []float64, p float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

func markdown(figs []Figures) string {
	var b strings.Builder
	b.WriteString("| parts | fill | page p50 / p99 / max (rows, MB read per page) | one location's pages p50 / p99 (rows, MB read) | before: page p50 / max (rows, MB read), pages | 7-day OEE of a location, median / p99 (rows, MB read) | disk |\n")
	b.WriteString("|---|---|---|---|---|---|---|\n")
	for _, f := range figs {
		fmt.Fprintf(&b, "| %s | %.0f s | %.1f / %.1f / %.1f ms (%.0f, %.1f) | %.1f / %.1f ms (%.0f, %.1f) | %.0f / %.0f ms (%.0f, %.1f), %d | %.1f / %.1f ms (%.0f, %.1f) | %.2f GB |\n",
			human(f.Parts), f.FillSec, f.PageP50, f.PageP99, f.PageMax, f.RowsRead, f.MBRead, f.FilterP50, f.FilterP99, f.FilterRows, f.FilterMB,
			f.BeforeP50, f.BeforeMax, f.BeforeRows, f.BeforeMB, f.BeforePgs, f.OEEMedian, f.OEEP99, f.OEERows, f.OEEMB, float64(f.DiskBytes)/1e9)
	}
	return b.String()
}

func human(n uint64) string {
	if n%1_000_000 == 0 {
		return fmt.Sprintf("%dM", n/1_000_000)
	}
	return strconv.FormatUint(n, 10)
}
