// Package kafkax is how Takt's processes reach Kafka: one constructor for
// every client (brokers, logging, and the producer settings the delivery
// promise depends on), and the franz-go → slog adapter.
package kafkax

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Config is what tells Takt's Kafka clients apart.
type Config struct {
	Brokers []string
	// ProduceTopic receives the records that name no topic; "" means each
	// record names its own.
	ProduceTopic string
	// Linger is how long the producer waits to fill a batch; 0 sends each
	// record at once (a caller that awaits every record wants that).
	Linger time.Duration
	// DeliveryTimeout bounds a record's delivery, retries included; 0
	// leaves it to the context of the produce call.
	DeliveryTimeout time.Duration
	// LogLevel is the most verbose franz-go level logged (default
	// kgo.LogLevelWarn: a client's warnings and errors).
	LogLevel kgo.LogLevel
	// Security is TLS and SASL towards the brokers (none by default).
	Security Security
}

// NewClient returns a client for cfg; opts add to and override its
// settings (a consumer adds its group's). Every client produces with
// acks=all and the idempotent producer (franz-go's default, stated here so
// no option drops it): an acknowledged record is on every in-sync replica,
// which is what a 200 of the ingest API promises, and a retry never
// duplicates it.
func NewClient(cfg Config, logger *slog.Logger, opts ...kgo.Opt) (*kgo.Client, error) {
	level := cfg.LogLevel
	if level == kgo.LogLevelNone {
		level = kgo.LogLevelWarn
	}
	all := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(cfg.Linger),
		kgo.WithLogger(NewLogger(logger.With("component", "kafka"), level)),
	}
	if cfg.ProduceTopic != "" {
		all = append(all, kgo.DefaultProduceTopic(cfg.ProduceTopic))
	}
	if cfg.DeliveryTimeout > 0 {
		all = append(all, kgo.RecordDeliveryTimeout(cfg.DeliveryTimeout))
	}
	sec, err := cfg.Security.Opts()
	if err != nil {
		return nil, fmt.Errorf("kafka client %v: %w", cfg.Brokers, err)
	}
	all = append(all, sec...)
	cl, err := kgo.NewClient(append(all, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka client %v: %w", cfg.Brokers, err)
	}
	return cl, nil
}
