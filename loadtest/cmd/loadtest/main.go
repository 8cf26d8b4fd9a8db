// Command loadtest drives Takt's ingest API like a fleet of machines and
// reports what the pipeline did with the load; see package loadtest and
// bench/README.md.
//
//	go run ./loadtest/cmd/loadtest -rate 5000 -duration 30s -verify -report out.json
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"golang.org/x/term"

	"github.com/takt/takt/loadtest"
)

func main() {
	cfg := loadtest.DefaultConfig()
	var envFile string
	fs := flag.NewFlagSet("loadtest", flag.ExitOnError)
	cfg.Flags(fs, &envFile)
	quiet := fs.Bool("quiet", false, "no live progress line")
	pidDir := fs.String("pids", "", "measure the CPU per part of the stack's processes: the directory of their pid files (.run/pids)")
	procs := fs.String("procs", "ingestor,broker,processor,clickhouse,queryapi,redis", "-pids: the processes (NAME.pid files) to measure")
	_ = fs.Parse(os.Args[1:])
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if err := cfg.ApplyEnvFile(envFile); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(2)
	}
	// The live line is for people: only on a terminal, never in CI.
	cfg.Progress = !*quiet && os.Getenv("CI") == "" && term.IsTerminal(int(os.Stderr.Fd()))

	if *pidDir != "" {
		ps, err := loadtest.ReadPIDDir(*pidDir, strings.Split(*procs, ",")...)
		if err != nil {
			fmt.Fprintln(os.Stderr, "loadtest:", err)
			os.Exit(2)
		}
		cfg.CPU = append(ps, loadtest.Proc{Name: "loadgen", PID: os.Getpid()})
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rep, err := loadtest.Run(ctx, cfg, logger)
	if rep != nil {
		rep.Summary(os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
	if cfg.Verify && (!rep.Verified || rep.Lost > 0 || rep.Duplicated > 0) {
		os.Exit(3)
	}
}
