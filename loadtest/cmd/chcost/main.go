// Command chcost measures what storing parts costs ClickHouse: it writes
// parts blocks like the processor's (chstore.InsertParts, every view of
// the migrations) into a scratch database, waits until the server has no
// merge running, and prints the server's CPU time per part (from /proc,
// so point it at a ClickHouse of your own: others' queries would count)
// with the rows its merges rewrote. The database is dropped afterwards.
//
//	go run ./loadtest/cmd/chcost -addr 127.0.0.1:20000 -pid $(cat ch.pid) -block 50000
//
// -drop names views to drop before writing (parts_order_mv, ...), to see
// what each costs.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/loadtest"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:19000", "ClickHouse native address")
	pid := flag.Int("pid", 0, "the ClickHouse server's pid (its CPU time is measured)")
	total := flag.Int("rows", 2_000_000, "parts to write")
	block := flag.Int("block", 50_000, "rows per INSERT block")
	inflight := flag.Int("inflight", 2, "blocks written at once")
	compression := flag.String("compression", chstore.CompressionAuto, "auto, lz4 or none")
	drop := flag.String("drop", "", "views to drop first (comma-separated)")
	flag.Parse()
	if *pid <= 0 || *block < 6 || *total < *block || *inflight < 1 {
		fmt.Fprintln(os.Stderr, "chcost: need -pid, -block >= 6, -rows >= -block, -inflight >= 1")
		os.Exit(2)
	}
	if err := run(context.Background(), *addr, *pid, *total, *block, *inflight, *compression, *drop); err != nil {
		fmt.Fprintln(os.Stderr, "chcost:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, addr string, pid, total, block, inflight int, compression, drop string) error {
	db := fmt.Sprintf("chcost_%d", time.Now().UnixNano())
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, err := chstore.Open(ctx, chstore.Config{Addr: []string{addr}, Database: db, MaxOpenConns: inflight + 2,
		DialTimeout: 5 * time.Second, ReadTimeout: 5 * time.Minute, Compression: compression}, logger)
	if err != nil {
		return err
	}
	defer st.Close()
	defer func() { _ = st.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db) }()
	if err := st.Migrate(ctx); err != nil {
		return err
	}
	for _, v := range strings.Split(drop, ",") {
		if v = strings.TrimSpace(v); v != "" {
			if err := st.Exec(ctx, "DROP TABLE "+v); err != nil {
				return err
			}
		}
	}
	events := func() (map[string]uint64, error) {
		m := map[string]uint64{}
		for _, e := range []string{"InsertQuery", "InsertedRows", "MergedRows"} {
			v, err := st.QueryUint64(ctx, "SELECT toUInt64(sum(value)) FROM system.events WHERE event = ?", e)
			if err != nil {
				return nil, err
			}
			m[e] = v
		}
		return m, nil
	}
	e0, err := events()
	if err != nil {
		return err
	}
	meter, err := loadtest.StartCPU([]loadtest.Proc{{Name: "clickhouse", PID: pid}})
	if err != nil {
		return err
	}
	gen := newRows(time.Now().UnixMilli())
	start := time.Now()
	sem := make(chan struct{}, inflight)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	written := 0
	for ; written+block <= total; written += block {
		b := gen.block(block)
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := st.InsertParts(ctx, b); err != nil {
				mu.Lock()
				firstErr = cmpErr(firstErr, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	insertS := time.Since(start).Seconds()
	// The merges the blocks cause are part of their cost.
	for quiet := 0; quiet < 3; {
		time.Sleep(time.Second)
		n, err := st.QueryUint64(ctx, "SELECT toUInt64(count()) FROM system.merges")
		if err != nil {
			return err
		}
		if quiet++; n > 0 {
			quiet = 0
		}
	}
	use := meter.Stop(int64(written))
	e1, err := events()
	if err != nil {
		return err
	}
	if use.Procs[0].Error != "" {
		return fmt.Errorf("clickhouse pid %d: %s", pid, use.Procs[0].Error)
	}
	fmt.Printf("%d parts in blocks of %d (%d at once, compression %s, views dropped: %q): written in %.1f s; ClickHouse %.2f µs of CPU per part, merges included; %d inserts, merged rows %.2f× the parts\n",
		written, block, inflight, compression, drop, insertS, use.Procs[0].MicrosPerPart,
		e1["InsertQuery"]-e0["InsertQuery"], float64(e1["MergedRows"]-e0["MergedRows"])/float64(written))
	return nil
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// rows makes parts like the bench's batches: 100 locations, 5 products,
// one part in 20 scrap, spread over 6 Kafka partitions.
type rows struct {
	rng    *rand.Rand
	now    int64
	offset [6]int64
}

func newRows(now int64) *rows { return &rows{rng: rand.New(rand.NewPCG(1, 2)), now: now} }

func (g *rows) block(n int) *chstore.PartsBlock {
	b := new(chstore.PartsBlock)
	for p := range int32(6) {
		for range n / 6 {
			m, prod := g.rng.IntN(100), 1+g.rng.IntN(5)
			off := g.offset[p]
			g.offset[p]++
			r := chstore.PartRow{
				ID: chstore.PartID(p, off), EventID: uuid.New(), Site: 1, LocationKind: "line",
				LocationID: 9_000_001 + uint64(m), ExternalID: fmt.Sprintf("lt_m%04d", m+1),
				ProductID: 9_000_000 + uint64(prod), ProductCode: fmt.Sprintf("LT-P%02d", prod),
				ProductReported: fmt.Sprintf("LT-P%02d", prod), ProductResolution: "code",
				Quantity: uint32(1 + g.rng.IntN(3)), Quality: "good",
				CycleTime: 8 + g.rng.Float64()*80, HasCycleTime: true, IdealCycleTime: 30,
				RecordedMs: g.now + off*10, ReceivedMs: g.now + off*10 + 3, ProcessedMs: g.now + off*10 + 50,
				Topic: "takt.parts", Partition: p, Offset: off,
			}
			if g.rng.IntN(20) == 0 {
				r.Quality, r.Reason = "scrap", "LT-SCRAP"
			}
			if err := b.Append(&r); err != nil {
				panic(err) // the rows above are valid
			}
		}
	}
	return b
}
