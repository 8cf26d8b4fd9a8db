package config

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

// Main is the whole main of a Takt service: it reads the logger and the
// service's configuration from TAKT_* variables, exits 1 reporting every
// bad setting at once, and runs the service until SIGINT or SIGTERM,
// exiting 1 when it fails.
func Main[C interface{ Validate() error }](name string, fromEnv func(*Env) C, run func(context.Context, C, *slog.Logger) error) {
	var env Env
	logger, lerr := Logger(&env, os.Stderr)
	cfg := fromEnv(&env)
	if err := errors.Join(lerr, env.Err(), cfg.Validate()); err != nil {
		logger.Error("invalid configuration", "err", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, logger); err != nil {
		logger.Error(name+" failed", "err", err)
		stop()
		os.Exit(1)
	}
}
