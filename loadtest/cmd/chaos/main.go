// Command chaos runs Takt's fault matrix (`make chaos`): it starts a
// deployment of its own (ClickHouse, Redis, the broker and the three
// services as processes on free loopback ports, data under -dir), drives
// it with the load harness, injects one fault at a time, and counts every
// part against what the ingestor answered. It writes the report as
// Markdown and JSON (-out) and exits 1 when a fault lost, doubled or
// wrongly stored a part. The shared local stack is not touched.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/takt/takt/loadtest/chaos"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(1)
	}
}

func run() error {
	short := flag.Bool("short", false, "the short matrix of CI: shorter faults, far fewer parts")
	out := flag.String("out", "bench", "directory for chaos.md and chaos.json (\"\": none)")
	dir := flag.String("dir", ".run/chaos", "data, logs and binaries of the harness's deployment (emptied first)")
	faults := flag.String("faults", "", "comma-separated faults to run (default all): "+strings.Join(chaos.Faults(), ","))
	def := chaos.DefaultConfig(false)
	rate := flag.Float64("rate", 0, fmt.Sprintf("parts/s (default %.0f; short %.0f)", def.Rate, chaos.DefaultConfig(true).Rate))
	load := flag.Duration("load", 0, fmt.Sprintf("load per fault (default %s; short %s)", def.Load, chaos.DefaultConfig(true).Load))
	machines := flag.Int("machines", def.Machines, "simulated machines")
	batch := flag.Int("batch", def.Batch, "parts per request (1: the single-part endpoint)")
	flag.Parse()

	cfg := chaos.DefaultConfig(*short)
	cfg.Dir, cfg.Machines, cfg.Batch = *dir, *machines, *batch
	if *rate > 0 {
		cfg.Rate = *rate
	}
	if *load > 0 {
		cfg.Load = *load
	}
	if *faults != "" {
		cfg.Faults = strings.Split(*faults, ",")
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	rep, err := chaos.Run(ctx, cfg, logger)
	if rep != nil {
		rep.Command = "make chaos"
		if len(os.Args) > 1 {
			rep.Command = "go run ./loadtest/cmd/chaos " + strings.Join(os.Args[1:], " ")
		}
		rep.Markdown(os.Stdout)
		if *out != "" {
			if werr := write(rep, *out); werr != nil && err == nil {
				err = werr
			}
		}
	}
	if err != nil {
		return err
	}
	if !rep.OK() {
		return fmt.Errorf("the matrix found faults that lost, doubled or wrongly stored parts (see the report)")
	}
	return nil
}

func write(rep *chaos.Report, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "chaos.md"))
	if err != nil {
		return err
	}
	rep.Markdown(f)
	if err := f.Close(); err != nil {
		return err
	}
	return rep.WriteJSON(filepath.Join(dir, "chaos.json"))
}
