// Command processor runs Takt's processor; see package processor. Settings come from
// TAKT_* environment variables (see the README).
package main

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"syscall"

	"github.com/takt/takt/internal/config"
	"github.com/takt/takt/processor"
)

func main() {
	var env config.Env
	logger, lerr := config.Logger(&env, os.Stderr)
	cfg := processor.ConfigFromEnv(&env)
	if err := errors.Join(lerr, env.Err(), cfg.Validate()); err != nil {
		logger.Error("invalid configuration", "err", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := processor.Run(ctx, cfg, logger); err != nil {
		logger.Error("processor failed", "err", err)
		os.Exit(1)
	}
}
