package queryapi

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/config"
	"github.com/takt/takt/internal/demo"
	"github.com/takt/takt/internal/testenv"
)

// BenchmarkPaging1M pages through 1M parts over HTTP with limit=2000, as
// the reference's paging loop does, and reports rows/s and the p50/p99/max
// page latency. Run it with
//
//	go test -run '^$' -bench Paging1M -benchtime 1x ./queryapi/
//
// TAKT_BENCH_PARTS changes the number of parts.
func BenchmarkPaging1M(b *testing.B) {
	var env config.Env
	total := env.Int("BENCH_PARTS", 1_000_000)
	store, chCfg := testenv.ClickHouse(b)
	rdb, prefix := testenv.Redis(b)
	ctx := context.Background()
	seeded, err := demo.Seed(ctx, store, "", "")
	if err != nil {
		b.Fatal(err)
	}
	// Six partitions, 50k-row blocks, as the processor writes them.
	start := time.Now()
	offsets := make([]int64, 6)
	var blk chstore.PartsBlock
	ev := uuid.Must(uuid.NewV7())
	for done := 0; done < total; {
		blk.Reset()
		p := int32(done / 50_000 % 6)
		n := min(50_000, total-done)
		for range n {
			r := chstore.PartRow{ID: chstore.PartID(p, offsets[p]), EventID: ev, Site: 1, LocationKind: "line",
				LocationID: 1, ExternalID: demo.LineExternalID, ProductID: 1, ProductCode: demo.ProductCode,
				ProductResolution: "code", Quantity: 1, Quality: "good", CycleTime: 45, HasCycleTime: true,
				RecordedMs: 1_700_000_000_000 + int64(done), ReceivedMs: 1_700_000_000_000 + int64(done),
				Topic: "takt.parts", Partition: p, Offset: offsets[p]}
			offsets[p]++
			if err := blk.Append(&r); err != nil {
				b.Fatal(err)
			}
		}
		if err := store.InsertParts(ctx, &blk); err != nil {
			b.Fatal(err)
		}
		done += n
	}
	b.Logf("inserted %d parts in %s", total, time.Since(start).Round(time.Millisecond))

	cfg := ConfigFromEnv(&env)
	cfg.ClickHouse, cfg.RedisPrefix, cfg.Watermark = chCfg, prefix, false
	r, err := newEngine(store, rdb, nil, cfg, nil, testenv.Logger(b), prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(r)
	defer srv.Close()

	b.ResetTimer()
	for range b.N {
		var lat []time.Duration
		rows := 0
		t0 := time.Now()
		for offset := 0; ; {
			req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/1.0/parts/?limit=2000&offset="+strconv.Itoa(offset), nil)
			req.Header.Set("L2LAUTH", seeded.APIKey)
			ps := time.Now()
			resp, err := srv.Client().Do(req)
			if err != nil {
				b.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var env struct {
				Success bool              `json:"success"`
				Data    []json.RawMessage `json:"data"`
				Error   string            `json:"error"`
			}
			if err := json.Unmarshal(body, &env); err != nil || !env.Success {
				b.Fatalf("offset %d: %v %s", offset, err, env.Error)
			}
			lat = append(lat, time.Since(ps))
			rows += len(env.Data)
			offset += len(env.Data)
			if len(env.Data) < 2000 {
				break
			}
		}
		el := time.Since(t0)
		if rows != total {
			b.Fatalf("paged %d rows, want %d", rows, total)
		}
		slices.Sort(lat)
		q := func(f float64) float64 { return float64(lat[int(f*float64(len(lat)-1))].Microseconds()) / 1000 }
		b.ReportMetric(float64(rows)/el.Seconds(), "rows/s")
		b.ReportMetric(q(0.5), "p50_ms")
		b.ReportMetric(q(0.99), "p99_ms")
		b.ReportMetric(q(1), "max_ms")
	}
}
