package queryapi

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/takt/takt/internal/auth"
	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/config"
	"github.com/takt/takt/internal/testenv"
)

// allSites is a key checker that lets every key read site 1.
type allSites struct{}

func (allSites) Authenticate(context.Context, string) (auth.Principal, error) {
	return auth.Principal{KeyID: 1, Sites: []uint64{1}, Scopes: []string{auth.ScopeRead}}, nil
}

// BenchmarkOEE measures GET /api/1.0/oee/ for 200 locations over 10M parts
// (30 days, two products, three periods per location and day), reading
// parts from the parts_hourly rollup or from the raw table, and reports the
// median and p99 latency. Run it with
//
//	go test -run '^$' -bench OEE -benchtime 20x -timeout 20m ./queryapi/
//
// TAKT_BENCH_PARTS changes the number of parts.
func BenchmarkOEE(b *testing.B) {
	var env config.Env
	total := env.Int("BENCH_PARTS", 10_000_000)
	const locations, days = 200, 30
	store, _ := testenv.ClickHouse(b)
	ctx := context.Background()
	audit := chstore.Audit{CreatedBy: "bench", LastUpdatedBy: "bench"}
	if err := store.PutSite(ctx, chstore.Site{ID: 1, Description: "bench", Timezone: "Europe/Berlin", Audit: audit}); err != nil {
		b.Fatal(err)
	}
	for l := uint64(1); l <= locations; l++ {
		if err := store.PutLine(ctx, chstore.Line{ID: l, Site: 1, Area: 1, Code: fmt.Sprint("L", l), ExternalID: fmt.Sprint("line_", l), Audit: audit}); err != nil {
			b.Fatal(err)
		}
	}
	for p := uint64(1); p <= 2; p++ {
		if err := store.PutProduct(ctx, chstore.Product{ID: p, Site: 1, Code: fmt.Sprint("P", p), IdealCycleTime: float64(30 * p), Audit: audit}); err != nil {
			b.Fatal(err)
		}
	}
	base := time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	span := int64(days) * 24 * 3_600_000
	step := span * locations / int64(total) // ms between parts of one location
	start := time.Now()
	var blk chstore.PartsBlock
	ev := uuid.Must(uuid.NewV7())
	for done := 0; done < total; {
		blk.Reset()
		n := min(200_000, total-done)
		for i := done; i < done+n; i++ {
			rec := base + int64(i/locations)*step
			r := chstore.PartRow{ID: chstore.PartID(0, int64(i)), EventID: ev, Site: 1, LocationKind: "line",
				LocationID: uint64(1 + i%locations), ExternalID: "x", ProductID: uint64(1 + i/locations/5000%2),
				ProductResolution: "code", Quantity: 1, Quality: []string{"good", "good", "good", "scrap"}[i%4],
				RecordedMs: rec, ReceivedMs: rec, Topic: "bench", Offset: int64(i)}
			r.IdealCycleTime = float64(30 * r.ProductID)
			if err := blk.Append(&r); err != nil {
				b.Fatal(err)
			}
		}
		if err := store.InsertParts(ctx, &blk); err != nil {
			b.Fatal(err)
		}
		done += n
	}
	var periods []chstore.PeriodRow
	id := uint64(0)
	for l := uint64(1); l <= locations; l++ {
		for d := int64(0); d < days; d++ {
			day := base + d*24*3_600_000
			for _, p := range []struct {
				state      string
				start, end int64
			}{{"running", 0, 10}, {"down", 10, 11}, {"running", 11, 24}} {
				id++
				periods = append(periods, chstore.PeriodRow{ID: id, Site: 1, Location: l, LocationKind: "line", State: p.state,
					Start: day + p.start*3_600_000, End: day + p.end*3_600_000, Version: 1})
			}
		}
	}
	if err := store.InsertPeriods(ctx, periods); err != nil {
		b.Fatal(err)
	}
	b.Logf("stored %d parts and %d periods in %s", total, len(periods), time.Since(start).Round(time.Millisecond))

	h, err := newHandler(allSites{}, store, newZones(store, time.Minute, testenv.Logger(b)), ConfigFromEnv(&env),
		testenv.Logger(b), mustMetrics(b))
	if err != nil {
		b.Fatal(err)
	}
	gin.SetMode(gin.ReleaseMode)
	queries := map[string]url.Values{
		// Seven whole days, one row per location: the rollup alone.
		"7d_by_location": {"start": {"2024-03-10T00:00:00Z"}, "end": {"2024-03-17T00:00:00Z"}, "group_by": {"location"}},
		// The same with edges off the hour: two raw edge hours.
		"7d_edges_by_location": {"start": {"2024-03-10T00:17:00Z"}, "end": {"2024-03-17T00:43:00Z"}, "group_by": {"location"}},
		// Thirty local days per location (6000 rows).
		"30d_day_by_location": {"start": {"2024-03-01T00:00:00Z"}, "end": {"2024-03-31T00:00:00Z"}, "bucket": {"day"}, "group_by": {"location"}},
		// The whole site, whole month.
		"30d_site": {"start": {"2024-03-01T00:00:00Z"}, "end": {"2024-03-31T00:00:00Z"}},
	}
	names := make([]string, 0, len(queries))
	for n := range queries {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, name := range names {
		for _, raw := range []bool{false, true} {
			mode := "rollup"
			if raw {
				mode = "raw"
			}
			b.Run(name+"/"+mode, func(b *testing.B) {
				o := newOEE(h, store)
				o.raw = raw
				r := gin.New()
				o.routes(r)
				args := queries[name]
				args.Set("site", "1")
				measureGets(b, r, "/api/1.0/oee/?"+args.Encode(), func(w *httptest.ResponseRecorder) bool {
					return w.Body.Len() >= 100
				})
			})
		}
	}
	benchPitches(b, h)
}

// benchPitches measures pages of the pitches area over the same data.
func benchPitches(b *testing.B, h *handler) {
	pages := map[string]url.Values{
		// One line's 24 pitches of one day.
		"pitches_line_day": {"line": {"17"}, "pitch_start__gte": {"2024-03-10 00:00:00"},
			"pitch_start__lt": {"2024-03-11 00:00:00"}, "limit": {"24"}},
		// The newest 500 pitches of the site.
		"pitches_site_page": {"limit": {"500"}, "order_by": {"-pitch_start"}},
	}
	for _, name := range slices.Sorted(maps.Keys(pages)) {
		b.Run(name, func(b *testing.B) {
			r := gin.New()
			h.routes(r)
			args := pages[name]
			args.Set("site", "1")
			measureGets(b, r, "/api/1.0/pitches/?"+args.Encode(), func(w *httptest.ResponseRecorder) bool {
				return strings.Contains(w.Body.String(), `"pitch_start"`)
			})
		})
	}
}

// measureGets sends GET target to r for every b.Loop, fails on an answer
// that is not 200 or not ok, and reports the median and p99 latency.
func measureGets(b *testing.B, r *gin.Engine, target string, ok func(*httptest.ResponseRecorder) bool) {
	var lat []time.Duration
	for b.Loop() {
		req := httptest.NewRequest(http.MethodGet, target, nil)
		req.Header.Set(keyHeader, "bench")
		w := httptest.NewRecorder()
		t0 := time.Now()
		r.ServeHTTP(w, req)
		lat = append(lat, time.Since(t0))
		if w.Code != http.StatusOK || !ok(w) {
			b.Fatalf("%s: %d %.300s", target, w.Code, w.Body.String())
		}
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "ms-median")
	b.ReportMetric(float64(lat[min(len(lat)-1, len(lat)*99/100)].Microseconds())/1000, "ms-p99")
}

func mustMetrics(tb testing.TB) *metrics {
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		tb.Fatal(err)
	}
	return m
}
