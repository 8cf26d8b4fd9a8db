// Package queryapi is Takt's record-area API, compatible with
// Leading2Lean's: GET /api/1.0/<area>/ pages through the records of an area
// (filters, limit, offset, order_by, fields, format=xml; see internal/l2l),
// GET /api/1.0/<area>/<id>/ returns one record, and POST, PUT and DELETE
// create, update and delete master data (see writes.go and mutate.go). An
// update of a production period gives it a downtime reason: the API does
// not write the period, it produces a wire.Assignment to the parts topic
// for the processor to apply (see assign.go).
//
// A request is authenticated by an API key in the L2LAUTH header or the
// auth argument; the key needs the read scope to read, write to change
// master data, admin for sites, users and keys (whose writes must also be
// signed), and its user sees only the records of its own sites. Every call
// takes a token from the key's rate-limit bucket. Reads go to ClickHouse
// with a time limit per request.
package queryapi

import (
	"crypto/tls"
	"log/slog"
	"time"

	"github.com/takt/takt/internal/auth"
	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/config"
	"github.com/takt/takt/internal/httpx"
	"github.com/takt/takt/internal/kafkax"
	"github.com/takt/takt/internal/l2l"
	"github.com/takt/takt/internal/ratelimit"
	"github.com/takt/takt/internal/redisx"
	"github.com/takt/takt/internal/tlsx"
)

// Config is the query API's configuration.
type Config struct {
	// Addr is the plain HTTP listen address (TAKT_QUERY_ADDR), not served
	// when TLS.Only; TLSAddr the HTTPS one (TAKT_QUERY_TLS_ADDR, empty:
	// none).
	Addr    string
	TLSAddr string
	// TLS is the listeners' certificate (TAKT_TLS_*).
	TLS tlsx.Server
	// ClickHouse holds the records, API keys and site time zones.
	ClickHouse chstore.Config
	// Redis is the shared cache of API keys (TAKT_REDIS_*).
	RedisAddr     string
	RedisUser     string
	RedisPassword string
	RedisTLS      tlsx.Client
	RedisPrefix   string
	// KafkaBrokers and PartsTopic say where reason assignments of
	// production periods go (TAKT_KAFKA_BROKERS, TAKT_PARTS_TOPIC): the
	// parts topic, which the processor applies them from.
	KafkaBrokers []string
	PartsTopic   string
	// Kafka is TLS and SASL towards the brokers (TAKT_KAFKA_TLS*,
	// TAKT_KAFKA_SASL_*).
	Kafka kafkax.Security
	// PeriodChangesTopic is what the live change feed serves
	// (TAKT_PERIOD_CHANGES_TOPIC; empty: no feed). FeedMaxStreamsPerKey and
	// FeedMaxStreams bound the open streams of one key and of this
	// instance (TAKT_FEED_MAX_STREAMS_PER_KEY, TAKT_FEED_MAX_STREAMS). A
	// stream more than FeedMaxLag changes behind the topic's end for
	// FeedSlowAfter is dropped with a final event (TAKT_FEED_MAX_LAG,
	// TAKT_FEED_SLOW_AFTER); one whose write waits FeedWriteTimeout is cut
	// off (TAKT_FEED_WRITE_TIMEOUT). FeedHeartbeat is how often an idle
	// stream gets a heartbeat (TAKT_FEED_HEARTBEAT). A key's streams are
	// counted across instances in Redis under leases of FeedStreamLease
	// (TAKT_FEED_STREAM_LEASE): a crashed instance's slots are free again
	// within it.
	PeriodChangesTopic   string
	FeedMaxStreamsPerKey int
	FeedMaxStreams       int
	FeedMaxLag           int
	FeedSlowAfter        time.Duration
	FeedWriteTimeout     time.Duration
	FeedHeartbeat        time.Duration
	FeedStreamLease      time.Duration
	// QueryTimeout bounds the ClickHouse work of one request
	// (TAKT_QUERY_TIMEOUT); it is also sent as max_execution_time.
	QueryTimeout time.Duration
	// QueryMaxMemory bounds the memory ClickHouse may use for one query of
	// a request, in bytes (TAKT_QUERY_MAX_MEMORY; max_memory_usage).
	QueryMaxMemory int
	// DefaultLimit is the page size of a request without limit
	// (TAKT_QUERY_DEFAULT_LIMIT); MaxLimit the largest limit a request may
	// ask for (TAKT_QUERY_MAX_LIMIT): above it the request fails.
	DefaultLimit int
	MaxLimit     int
	// ZoneTTL is how long site time zones are cached before they are read
	// again (TAKT_QUERY_ZONE_TTL).
	ZoneTTL time.Duration
	// Cache lifetimes of API keys (TAKT_AUTH_*): in process, in Redis, and
	// of "no such key".
	AuthLocalTTL    time.Duration
	AuthRedisTTL    time.Duration
	AuthNegativeTTL time.Duration
	// AuthFailures is each client address's budget of failed key
	// look-ups (TAKT_AUTH_FAIL_BURST, TAKT_AUTH_FAIL_RATE).
	AuthFailures auth.FailureLimit
	// Watermark (TAKT_QUERY_WATERMARK, default true): reads of parts,
	// productionperiods, pitches and OEE carry the parts watermark the
	// processors of PartsTopic publish (X-Takt-Watermark), wait for a
	// min_watermark, and reads of parts in insertion order show the parts
	// up to the watermark, so that the paging loop sees every part exactly
	// once while parts keep arriving. Off only for a database that no
	// processor writes (tools, tests): reads then show every stored part
	// at once.
	Watermark bool
	// WatermarkWaiters bounds the reads that wait for a min_watermark at
	// once (TAKT_QUERY_WATERMARK_WAITERS); more are refused with 503.
	WatermarkWaiters int
	// RateLimit configures the per-key rate limits (TAKT_RATE_*).
	RateLimit ratelimit.Config
	// KeyUsageInterval is how often the keys' last uses are copied from
	// Redis to ClickHouse (TAKT_KEY_USAGE_INTERVAL): the apikeys area's
	// last_used is about this late.
	KeyUsageInterval time.Duration
	// LogLevel is debug, info, warn or error (TAKT_LOG_LEVEL).
	LogLevel string
	// AdminAddr is the admin listener (TAKT_ADMIN_ADDR): /healthz,
	// /readyz with reasons, /metrics and /debug/pprof/; empty: none.
	AdminAddr string
}

// DefaultAdminAddr is the query API's admin listener unless
// TAKT_ADMIN_ADDR says otherwise.
const DefaultAdminAddr = "127.0.0.1:18084"

// ConfigFromEnv reads the configuration from TAKT_* variables, with
// defaults for the local stack. Parse errors are collected in e.
func ConfigFromEnv(e *config.Env) Config {
	return Config{
		Addr:                 e.String("QUERY_ADDR", "127.0.0.1:18081"),
		TLSAddr:              e.String("QUERY_TLS_ADDR", ""),
		TLS:                  tlsx.ServerFromEnv(e),
		ClickHouse:           chstore.ConfigFromEnv(e),
		RedisAddr:            e.String("REDIS_ADDR", "127.0.0.1:16379"),
		RedisUser:            e.String("REDIS_USER", ""),
		RedisPassword:        e.String("REDIS_PASSWORD", ""),
		RedisTLS:             tlsx.ClientFromEnv(e, "REDIS"),
		RedisPrefix:          e.String("REDIS_PREFIX", "takt:"),
		KafkaBrokers:         e.List("KAFKA_BROKERS", []string{"127.0.0.1:19092"}),
		PartsTopic:           e.String("PARTS_TOPIC", "takt.parts"),
		Kafka:                kafkax.SecurityFromEnv(e),
		PeriodChangesTopic:   e.String("PERIOD_CHANGES_TOPIC", "takt.period-changes"),
		FeedMaxStreamsPerKey: e.Int("FEED_MAX_STREAMS_PER_KEY", 4),
		FeedMaxStreams:       e.Int("FEED_MAX_STREAMS", 256),
		FeedMaxLag:           e.Int("FEED_MAX_LAG", 10000),
		FeedSlowAfter:        e.Duration("FEED_SLOW_AFTER", 30*time.Second),
		FeedWriteTimeout:     e.Duration("FEED_WRITE_TIMEOUT", 10*time.Second),
		FeedHeartbeat:        e.Duration("FEED_HEARTBEAT", 15*time.Second),
		FeedStreamLease:      e.Duration("FEED_STREAM_LEASE", 30*time.Second),
		QueryTimeout:         e.Duration("QUERY_TIMEOUT", 10*time.Second),
		QueryMaxMemory:       e.Int("QUERY_MAX_MEMORY", 2<<30),
		DefaultLimit:         e.Int("QUERY_DEFAULT_LIMIT", l2l.DefaultLimit),
		MaxLimit:             e.Int("QUERY_MAX_LIMIT", l2l.MaxLimit),
		ZoneTTL:              e.Duration("QUERY_ZONE_TTL", time.Minute),
		AuthLocalTTL:         e.Duration("AUTH_LOCAL_TTL", 30*time.Second),
		AuthRedisTTL:         e.Duration("AUTH_REDIS_TTL", 5*time.Minute),
		AuthNegativeTTL:      e.Duration("AUTH_NEGATIVE_TTL", 10*time.Second),
		AuthFailures:         auth.FailureLimitFromEnv(e),
		Watermark:            e.Bool("QUERY_WATERMARK", true),
		WatermarkWaiters:     e.Int("QUERY_WATERMARK_WAITERS", 1000),
		RateLimit:            ratelimit.ConfigFromEnv(e),
		KeyUsageInterval:     e.Duration("KEY_USAGE_INTERVAL", 5*time.Second),
		LogLevel:             e.String("LOG_LEVEL", "info"),
		AdminAddr:            e.String("ADMIN_ADDR", DefaultAdminAddr),
	}
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var p config.Problems
	p.Addf(c.Addr == "" && !c.TLS.Only, "TAKT_QUERY_ADDR: empty")
	p.Addf(c.TLSAddr != "" && !c.TLS.Enabled(), "TAKT_QUERY_TLS_ADDR: needs TAKT_TLS_CERT and TAKT_TLS_KEY")
	p.Addf(c.TLS.Only && c.TLSAddr == "", "TAKT_TLS_ONLY=true: TAKT_QUERY_TLS_ADDR is empty, so nothing would listen")
	p.Addf(c.AdminAddr != "" && (c.AdminAddr == c.Addr || c.AdminAddr == c.TLSAddr),
		"TAKT_ADMIN_ADDR=%s: must differ from the public listeners", c.AdminAddr)
	p.Addf(len(c.KafkaBrokers) == 0, "TAKT_KAFKA_BROKERS: empty")
	p.Addf(c.PartsTopic == "", "TAKT_PARTS_TOPIC: empty")
	p.Addf(c.QueryTimeout < time.Second, "TAKT_QUERY_TIMEOUT=%s: must be at least 1s", c.QueryTimeout)
	p.Addf(c.QueryMaxMemory < 1<<20, "TAKT_QUERY_MAX_MEMORY=%d: must be at least 1 MiB (in bytes)", c.QueryMaxMemory)
	p.Addf(c.MaxLimit < 1, "TAKT_QUERY_MAX_LIMIT=%d: must be at least 1", c.MaxLimit)
	p.Addf(c.DefaultLimit < 1 || c.DefaultLimit > c.MaxLimit,
		"TAKT_QUERY_DEFAULT_LIMIT=%d: must be between 1 and TAKT_QUERY_MAX_LIMIT (%d)", c.DefaultLimit, c.MaxLimit)
	p.Addf(c.ZoneTTL <= 0, "TAKT_QUERY_ZONE_TTL=%s: must be positive", c.ZoneTTL)
	p.Addf(c.FeedMaxStreamsPerKey < 1, "TAKT_FEED_MAX_STREAMS_PER_KEY=%d: must be at least 1", c.FeedMaxStreamsPerKey)
	p.Addf(c.FeedStreamLease < 3*time.Second, "TAKT_FEED_STREAM_LEASE=%s: must be at least 3s", c.FeedStreamLease)
	p.Addf(c.FeedMaxStreams < c.FeedMaxStreamsPerKey, "TAKT_FEED_MAX_STREAMS=%d: must be at least TAKT_FEED_MAX_STREAMS_PER_KEY", c.FeedMaxStreams)
	p.Addf(c.FeedMaxLag < 1, "TAKT_FEED_MAX_LAG=%d: must be at least 1", c.FeedMaxLag)
	p.Addf(c.FeedSlowAfter <= 0, "TAKT_FEED_SLOW_AFTER=%s: must be positive", c.FeedSlowAfter)
	p.Addf(c.FeedWriteTimeout < time.Second, "TAKT_FEED_WRITE_TIMEOUT=%s: must be at least 1s", c.FeedWriteTimeout)
	p.Addf(c.FeedHeartbeat < 100*time.Millisecond, "TAKT_FEED_HEARTBEAT=%s: must be at least 100ms", c.FeedHeartbeat)
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"TAKT_AUTH_LOCAL_TTL", c.AuthLocalTTL}, {"TAKT_AUTH_REDIS_TTL", c.AuthRedisTTL},
		{"TAKT_AUTH_NEGATIVE_TTL", c.AuthNegativeTTL},
	} {
		p.Addf(d.v < 0, "%s=%s: must not be negative", d.name, d.v)
	}
	_, err := c.Level()
	p.Addf(err != nil, "TAKT_LOG_LEVEL=%q: must be debug, info, warn or error", c.LogLevel)
	p.Addf(c.WatermarkWaiters < 1, "TAKT_QUERY_WATERMARK_WAITERS=%d: must be at least 1", c.WatermarkWaiters)
	p.Addf(c.KeyUsageInterval < time.Second, "TAKT_KEY_USAGE_INTERVAL=%s: must be at least 1s", c.KeyUsageInterval)
	if err := c.AuthFailures.Validate(); err != nil {
		p = append(p, err)
	}
	if err := c.RateLimit.Validate(); err != nil {
		p = append(p, err)
	}
	for _, err := range []error{c.TLS.Validate(), c.Kafka.Validate(), c.redis().Validate(), c.ClickHouse.Validate()} {
		if err != nil {
			p = append(p, err)
		}
	}
	return p.Err()
}

// redis is the Redis part of c.
func (c Config) redis() redisx.Config {
	return redisx.Config{Addr: c.RedisAddr, Username: c.RedisUser, Password: c.RedisPassword, TLS: c.RedisTLS}
}

// listeners are the HTTP addresses to serve; tc is the TLS configuration
// of the HTTPS one.
func (c Config) listeners(tc *tls.Config) httpx.Listeners {
	l := httpx.Listeners{Plain: c.Addr, TLS: c.TLSAddr, TLSConfig: tc}
	if c.TLS.Only {
		l.Plain = ""
	}
	return l
}

// Level returns LogLevel as a slog level.
func (c Config) Level() (slog.Level, error) {
	var l slog.Level
	err := l.UnmarshalText([]byte(c.LogLevel))
	return l, err
}
