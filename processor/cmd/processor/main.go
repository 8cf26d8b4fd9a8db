// Command processor consumes part messages from Kafka and writes them to
// ClickHouse. Settings come from TAKT_* environment variables (see the
// processor package's ConfigFromEnv).
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/takt/takt/internal/config"
	"github.com/takt/takt/processor"
)

func main() {
	var env config.Env
	var level slog.Level
	if err := level.UnmarshalText([]byte(env.String("LOG_LEVEL", "info"))); err != nil {
		fmt.Fprintf(os.Stderr, "TAKT_LOG_LEVEL: %v\n", err)
		os.Exit(1)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	cfg := processor.ConfigFromEnv(&env)
	if err := env.Err(); err != nil {
		logger.Error("bad configuration", "err", err)
		os.Exit(1)
	}
	if err := cfg.Validate(); err != nil {
		logger.Error("bad configuration", "err", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := processor.Run(ctx, cfg, logger); err != nil {
		logger.Error("processor failed", "err", err)
		os.Exit(1)
	}
}
