// Command queryapi serves Takt's record-area read API; see package queryapi.
package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/takt/takt/internal/config"
	"github.com/takt/takt/queryapi"
)

func main() {
	var env config.Env
	cfg := queryapi.ConfigFromEnv(&env)
	level, _ := cfg.Level()
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if err := errors.Join(env.Err(), cfg.Validate()); err != nil {
		logger.Error("invalid configuration", "err", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := queryapi.Run(ctx, cfg, logger); err != nil {
		logger.Error("queryapi failed", "err", err)
		os.Exit(1)
	}
}
