// Command broker is Takt's single-machine Kafka-protocol broker for the local
// stack: franz-go's kfake with a data directory. Real clients (kcat,
// librdkafka, franz-go) talk to it like to Kafka.
//
// kfake writes topic metadata at start and at Close, so topics are seeded
// here at start (an auto-created topic would be lost on a crash) and the
// broker is closed on SIGTERM / SIGINT to flush its segments.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/takt/takt/internal/config"
)

func main() {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(logger); err != nil {
		logger.Error("broker failed", "err", err)
		os.Exit(1)
	}
}

func run(logger *slog.Logger) error {
	var env config.Env
	addr := env.String("BROKER_ADDR", "127.0.0.1:19092")
	dataDir := env.String("BROKER_DATA_DIR", ".run/kafka")
	topics := env.List("BROKER_TOPICS", []string{"takt.parts", "takt.parts.dlq", "takt.period-changes"})
	partitions := env.Int("BROKER_PARTITIONS", 6)
	if err := env.Err(); err != nil {
		return err
	}
	// kfake listens on loopback only: the local broker is for this machine.
	host, portStr, ok := strings.Cut(addr, ":")
	port, err := strconv.Atoi(portStr)
	if !ok || err != nil || host != "127.0.0.1" {
		return fmt.Errorf("TAKT_BROKER_ADDR=%q: want 127.0.0.1:port", addr)
	}
	if partitions < 1 {
		return fmt.Errorf("TAKT_BROKER_PARTITIONS=%d: must be at least 1", partitions)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	c, err := kfake.NewCluster(
		kfake.Ports(port),
		kfake.DataDir(dataDir),
		kfake.SeedTopics(int32(partitions), topics...),
		kfake.DefaultNumPartitions(partitions),
	)
	if err != nil {
		return fmt.Errorf("start broker on %s: %w", addr, err)
	}
	logger.Info("broker listening", "addr", c.ListenAddrs(), "data_dir", dataDir, "topics", topics, "partitions", partitions)
	<-ctx.Done()
	logger.Info("broker closing")
	c.Close()
	logger.Info("broker closed")
	return nil
}
