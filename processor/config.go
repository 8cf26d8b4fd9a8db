package processor

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/config"
	"github.com/takt/takt/internal/kafkax"
	"github.com/takt/takt/internal/redisx"
	"github.com/takt/takt/internal/tlsx"
)

// Config is everything Run needs. ConfigFromEnv fills it from TAKT_*
// variables; tests build it directly.
type Config struct {
	// Brokers are the Kafka seed brokers (TAKT_KAFKA_BROKERS); Kafka is
	// TLS and SASL towards them (TAKT_KAFKA_TLS*, TAKT_KAFKA_SASL_*).
	Brokers []string
	Kafka   kafkax.Security
	// Topic is the topic of part messages (TAKT_PARTS_TOPIC); DLQTopic
	// receives the records that can never be decoded (TAKT_DLQ_TOPIC).
	Topic    string
	DLQTopic string
	// PeriodChangesTopic receives a wire.PeriodChange for every period
	// row version written (TAKT_PERIOD_CHANGES_TOPIC); it needs as many
	// partitions as Topic. Empty: no change feed.
	PeriodChangesTopic string
	// Group is the consumer group (TAKT_CONSUMER_GROUP).
	Group string
	// InstanceID, when set, makes this member a static group member
	// (TAKT_CONSUMER_INSTANCE_ID): a restart with the same id takes its
	// partitions back at once instead of waiting for the session timeout.
	// A static member does not leave the group on shutdown.
	InstanceID string
	// SessionTimeout is how long the group waits for a silent member
	// before giving its partitions to others (TAKT_CONSUMER_SESSION_TIMEOUT).
	SessionTimeout time.Duration

	// BatchRows and BatchInterval decide when pending rows are written:
	// at BatchRows rows, or BatchInterval after the first pending row
	// (TAKT_BATCH_ROWS, TAKT_BATCH_INTERVAL).
	BatchRows     int
	BatchInterval time.Duration

	// RecomputeMaxParts bounds the parts one recompute request may read
	// (TAKT_RECOMPUTE_MAX_PARTS): they are held in memory, ~50 bytes
	// each. A request whose window holds more is refused with that
	// reason (its result's error) instead of run. 0:
	// DefaultRecomputeMaxParts.
	RecomputeMaxParts int

	// CycleTimeTolerance is the relative tolerance of product resolution
	// by cycle time (TAKT_CYCLE_TIME_TOLERANCE; 0.1 = ±10% of the ideal).
	CycleTimeTolerance float64
	// CatalogRefresh is how often products and reasons are re-read
	// (TAKT_CATALOG_REFRESH).
	CatalogRefresh time.Duration

	// RedisAddr, when set, is where the record API announces master-data
	// changes (TAKT_REDIS_ADDR, TAKT_REDIS_PASSWORD, TAKT_REDIS_PREFIX):
	// the catalog reloads on each. Empty: only the periodic refresh.
	RedisAddr     string
	RedisUser     string
	RedisPassword string
	RedisTLS      tlsx.Client
	RedisPrefix   string

	// PeriodSaveInterval is how long a location's production-period state
	// machine may hold changes that wrote no period row before its state
	// is saved (TAKT_PERIOD_SAVE_INTERVAL). After a crash the new owner
	// reads the partition again from the oldest unsaved change, feeding
	// the machines only; so it bounds that replay. 0 saves every changed
	// machine at every flush.
	PeriodSaveInterval time.Duration

	// Clock is the wall clock the production-period state machines are
	// ticked with; nil means time.Now. Tests set it to replay a
	// scenario's time.
	Clock func() time.Time

	// Addr is the admin listener (TAKT_ADMIN_ADDR, or its older name
	// TAKT_PROCESSOR_ADDR): /healthz, /readyz with reasons, /metrics and
	// /debug/pprof/. The processor has no other listener.
	Addr string

	// ClickHouse says where the parts table and master data are
	// (TAKT_CLICKHOUSE_*).
	ClickHouse chstore.Config

	// Registry receives the processor's metrics and is what /metrics
	// serves. Nil means a new registry with the Go and process collectors.
	Registry *prometheus.Registry
}

// Defaults of the processor's settings. DefaultBatchRows is large
// because ClickHouse pays a fixed cost for every data part an INSERT
// creates (tens of milliseconds for the 23-column parts table on 18.16):
// when a flush wrote one part per Kafka partition, draining 1M parts from
// 6 partitions ran at ~135k parts/s with 10k-row flushes, ~210k with 50k
// and ~245k with 100k (BenchmarkProcessorEndToEnd), for a peak RSS of
// ~210, ~370 and ~550 MiB. Under light load the interval decides, so the
// size costs no freshness. The interval is short because a part must show
// in the parts area within a second: it shows once the flush that stores
// it has published the parts watermark (see watermark.go).
const (
	DefaultGroup              = "takt-processor"
	DefaultPeriodChangesTopic = "takt.period-changes"
	DefaultBatchRows          = 50000
	DefaultBatchInterval      = 500 * time.Millisecond
	DefaultCycleTimeTolerance = 0.1
	DefaultCatalogRefresh     = 5 * time.Second
	DefaultPeriodSaveInterval = 10 * time.Second
	DefaultAddr               = "127.0.0.1:18082"
	DefaultSessionTimeout     = 45 * time.Second
	DefaultRecomputeMaxParts  = 5_000_000
)

// maxBatchRows bounds TAKT_BATCH_ROWS: a block stays one data part and
// one request of bounded size.
const maxBatchRows = 1_000_000

// ConfigFromEnv reads the processor's settings from TAKT_* variables, with
// defaults that work with the local stack. Parse errors are returned by
// e.Err(); check Validate as well.
func ConfigFromEnv(e *config.Env) Config {
	return Config{
		Brokers:            e.List("KAFKA_BROKERS", []string{"127.0.0.1:19092"}),
		Kafka:              kafkax.SecurityFromEnv(e),
		Topic:              e.String("PARTS_TOPIC", "takt.parts"),
		DLQTopic:           e.String("DLQ_TOPIC", "takt.parts.dlq"),
		PeriodChangesTopic: e.String("PERIOD_CHANGES_TOPIC", DefaultPeriodChangesTopic),
		Group:              e.String("CONSUMER_GROUP", DefaultGroup),
		InstanceID:         e.String("CONSUMER_INSTANCE_ID", ""),
		SessionTimeout:     e.Duration("CONSUMER_SESSION_TIMEOUT", DefaultSessionTimeout),
		BatchRows:          e.Int("BATCH_ROWS", DefaultBatchRows),
		BatchInterval:      e.Duration("BATCH_INTERVAL", DefaultBatchInterval),
		RecomputeMaxParts:  e.Int("RECOMPUTE_MAX_PARTS", DefaultRecomputeMaxParts),
		CycleTimeTolerance: e.Float("CYCLE_TIME_TOLERANCE", DefaultCycleTimeTolerance),
		CatalogRefresh:     e.Duration("CATALOG_REFRESH", DefaultCatalogRefresh),
		PeriodSaveInterval: e.Duration("PERIOD_SAVE_INTERVAL", DefaultPeriodSaveInterval),
		RedisAddr:          e.String("REDIS_ADDR", "127.0.0.1:16379"),
		RedisUser:          e.String("REDIS_USER", ""),
		RedisPassword:      e.String("REDIS_PASSWORD", ""),
		RedisTLS:           tlsx.ClientFromEnv(e, "REDIS"),
		RedisPrefix:        e.String("REDIS_PREFIX", "takt:"),
		Addr:               e.String("ADMIN_ADDR", e.String("PROCESSOR_ADDR", DefaultAddr)),
		ClickHouse:         chstore.ConfigFromEnv(e),
	}
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var p config.Problems
	p.Addf(len(c.Brokers) == 0, "TAKT_KAFKA_BROKERS: empty")
	p.Addf(c.Topic == "", "TAKT_PARTS_TOPIC: empty")
	p.Addf(c.DLQTopic == "", "TAKT_DLQ_TOPIC: empty")
	p.Addf(c.DLQTopic != "" && c.DLQTopic == c.Topic, "TAKT_DLQ_TOPIC: must differ from TAKT_PARTS_TOPIC")
	p.Addf(c.PeriodChangesTopic != "" && (c.PeriodChangesTopic == c.Topic || c.PeriodChangesTopic == c.DLQTopic),
		"TAKT_PERIOD_CHANGES_TOPIC: must differ from TAKT_PARTS_TOPIC and TAKT_DLQ_TOPIC")
	p.Addf(c.Group == "", "TAKT_CONSUMER_GROUP: empty")
	p.Addf(c.SessionTimeout < time.Second, "TAKT_CONSUMER_SESSION_TIMEOUT=%s: must be at least 1s", c.SessionTimeout)
	p.Addf(c.BatchRows < 1 || c.BatchRows > maxBatchRows, "TAKT_BATCH_ROWS=%d: must be between 1 and %d", c.BatchRows, maxBatchRows)
	p.Addf(c.RecomputeMaxParts < 0, "TAKT_RECOMPUTE_MAX_PARTS=%d: must be positive", c.RecomputeMaxParts)
	p.Addf(c.BatchInterval <= 0, "TAKT_BATCH_INTERVAL=%s: must be positive", c.BatchInterval)
	p.Addf(!(c.CycleTimeTolerance >= 0 && c.CycleTimeTolerance <= 1), "TAKT_CYCLE_TIME_TOLERANCE=%v: must be between 0 and 1", c.CycleTimeTolerance)
	p.Addf(c.CatalogRefresh <= 0, "TAKT_CATALOG_REFRESH=%s: must be positive", c.CatalogRefresh)
	p.Addf(c.PeriodSaveInterval < 0, "TAKT_PERIOD_SAVE_INTERVAL=%s: must not be negative", c.PeriodSaveInterval)
	p.Addf(c.Addr == "", "TAKT_ADMIN_ADDR: empty")
	for _, err := range []error{c.Kafka.Validate(), c.ClickHouse.Validate()} {
		if err != nil {
			p = append(p, err)
		}
	}
	if c.RedisAddr != "" {
		if err := c.redis().Validate(); err != nil {
			p = append(p, err)
		}
	}
	return p.Err()
}

// redis is the Redis part of c.
func (c Config) redis() redisx.Config {
	return redisx.Config{Addr: c.RedisAddr, Username: c.RedisUser, Password: c.RedisPassword, TLS: c.RedisTLS}
}
