// Command ingestor serves Takt's part ingest API; see package ingestor.
package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/takt/takt/ingestor"
	"github.com/takt/takt/internal/config"
)

func main() {
	var env config.Env
	cfg := ingestor.ConfigFromEnv(&env)
	level, _ := cfg.Level()
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if err := errors.Join(env.Err(), cfg.Validate()); err != nil {
		logger.Error("invalid configuration", "err", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := ingestor.Run(ctx, cfg, logger); err != nil {
		logger.Error("ingestor failed", "err", err)
		os.Exit(1)
	}
}
