package processor

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/takt/takt/internal/testenv"
	"github.com/takt/takt/internal/wire"
)

// BenchmarkProcessorEndToEnd measures how fast the processor drains a
// pre-filled topic into ClickHouse with the default batch settings: each
// iteration fills a fresh 6-partition topic with TAKT_BENCH_PARTS parts
// (default 200000; untimed), then times a processor from start until
// ClickHouse accepted every row, and checks exactly-once afterwards.
//
//	go test ./processor -run XXX -bench BenchmarkProcessorEndToEnd -benchtime 1x
//	TAKT_BENCH_PARTS=1000000 go test ./processor -run XXX -bench EndToEnd -benchtime 1x -timeout 20m
//
// With TAKT_BENCH_SUBPROCESS=1 the processor runs as its own binary and
// the benchmark also reports that process's peak RSS.
func BenchmarkProcessorEndToEnd(b *testing.B) {
	n := 200_000
	if v := os.Getenv("TAKT_BENCH_PARTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("TAKT_BENCH_PARTS=%q", v)
		}
	}
	subprocess := os.Getenv("TAKT_BENCH_SUBPROCESS") != ""
	// TAKT_BENCH_LOCATIONS spreads the parts over that many locations
	// (default 97), each with its production-period state machine.
	locations := 97
	if v := os.Getenv("TAKT_BENCH_LOCATIONS"); v != "" {
		var err error
		if locations, err = strconv.Atoi(v); err != nil || locations < 1 {
			b.Fatalf("TAKT_BENCH_LOCATIONS=%q", v)
		}
	}
	batchRows := DefaultBatchRows
	if v := os.Getenv("TAKT_BENCH_BATCH_ROWS"); v != "" {
		var err error
		if batchRows, err = strconv.Atoi(v); err != nil || batchRows < 1 {
			b.Fatalf("TAKT_BENCH_BATCH_ROWS=%q", v)
		}
	}
	var bin string
	if subprocess {
		bin = buildProcessor(b)
	}
	e := newITEnv(b, 6)
	var total, total99 time.Duration
	var peakKiB int64
	// track notes when 99% of the parts are in: the last partial batch
	// waits up to TAKT_BATCH_INTERVAL, which the full drain time includes.
	var at99 time.Duration
	track := func(v float64, since time.Time) {
		if at99 == 0 && v >= float64(n)*0.99 {
			at99 = time.Since(since)
		}
	}
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		e.topic = testenv.Topic(b, 6)
		e.group = testenv.Name("takt-bench-group-")
		prefill(b, e, n, locations)
		b.StartTimer()

		start := time.Now()
		at99 = 0
		if subprocess {
			p := e.startProc(bin, "bench", map[string]string{
				"TAKT_BATCH_ROWS": strconv.Itoa(batchRows), "TAKT_BATCH_INTERVAL": DefaultBatchInterval.String(),
			})
			for {
				v, err := p.tryMetric("takt_processor_parts_inserted_total")
				if err == nil {
					track(v, start)
				}
				if err == nil && v >= float64(n) {
					break
				}
				if err := p.alive(); err != nil {
					b.Fatal(err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			total += time.Since(start)
			b.StopTimer()
			peakKiB = max(peakKiB, p.peakRSS())
			for _, m := range []string{"go_memstats_heap_sys_bytes", "go_memstats_heap_inuse_bytes", "go_memstats_sys_bytes", "go_memstats_next_gc_bytes"} {
				v, _ := p.tryMetric(m)
				b.Logf("%s %.1f MiB", m, v/(1<<20))
			}
			for _, m := range []string{"takt_processor_period_states_written_total", "takt_processor_period_rows_written_total"} {
				v, _ := p.tryMetric(m)
				b.Logf("%s %.0f", m, v)
			}
			p.stop()
		} else {
			cfg := e.config()
			cfg.BatchRows, cfg.BatchInterval = batchRows, DefaultBatchInterval
			stop, done := runInProcess(b, cfg, nil)
			for {
				v := metricValue(b, cfg.Registry, "takt_processor_parts_inserted_total")
				track(v, start)
				if v >= float64(n) {
					break
				}
				select {
				case err := <-done:
					b.Fatalf("processor stopped: %v", err)
				case <-time.After(10 * time.Millisecond):
				}
			}
			total += time.Since(start)
			b.StopTimer()
			if err := stop(); err != nil {
				b.Fatal(err)
			}
		}
		total99 += at99
		e.assertExactly(uint64(n))
		b.StartTimer()
	}
	b.ReportMetric(float64(n)*float64(b.N)/total.Seconds(), "parts/s")
	b.ReportMetric(0.99*float64(n)*float64(b.N)/total99.Seconds(), "parts/s-first-99%")
	if peakKiB > 0 {
		b.ReportMetric(float64(peakKiB)/1024, "peak-RSS-MiB")
	}
}

// prefill produces n parts to e.topic in batches.
func prefill(b *testing.B, e *itEnv, n, locations int) {
	b.Helper()
	base := time.Now().UnixMilli() - int64(n)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	const chunk = 20_000
	rs := make([]*kgo.Record, 0, chunk)
	for lo := 0; lo < n; lo += chunk {
		rs = rs[:0]
		parts := newPartsAt(min(chunk, n-lo), locations)
		for i := range parts {
			// One clock over the whole topic, ending now: every location's
			// parts are in time order, as a fleet sends them.
			k := lo + i
			parts[i].ExternalID = "line_" + strconv.Itoa(k%locations)
			parts[i].LocationID = uint64(k%locations) + 1
			parts[i].RecordedAtMs = base + int64(k)
			v, err := wire.Encode(&parts[i])
			if err != nil {
				b.Fatal(err)
			}
			rs = append(rs, &kgo.Record{Topic: e.topic, Key: parts[i].Key(), Value: v})
		}
		if err := e.prod.ProduceSync(ctx, rs...).FirstErr(); err != nil {
			b.Fatalf("prefill: %v", err)
		}
	}
}
