// Command ingestor runs Takt's ingestor; see package ingestor. Settings come from
// TAKT_* environment variables (see the README).
package main

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"syscall"

	"github.com/takt/takt/ingestor"
	"github.com/takt/takt/internal/config"
)

func main() {
	var env config.Env
	logger, lerr := config.Logger(&env, os.Stderr)
	cfg := ingestor.ConfigFromEnv(&env)
	if err := errors.Join(lerr, env.Err(), cfg.Validate()); err != nil {
		logger.Error("invalid configuration", "err", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := ingestor.Run(ctx, cfg, logger); err != nil {
		logger.Error("ingestor failed", "err", err)
		os.Exit(1)
	}
}
