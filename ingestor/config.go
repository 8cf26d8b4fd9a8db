// Package ingestor is Takt's HTTP entry for part events: it authenticates
// the API-KEY header, validates the message, resolves the location, and
// answers 200 only after Kafka acknowledged the record (acks=all,
// idempotent producer).
//
// The endpoint is POST /api/external/production/process_part, compatible
// with the OEE Tools HTTPS API (see DESIGN.md for the contract).
//
// Request bodies are read by a scanner written for the message's one shape
// (parse.go), not by a general JSON decoder, because a kept decoder costs
// more than the ingest path can spare. encoding/json/v2's token decoder
// (jsontext, from github.com/go-json-experiment/json v1.27.2) was tried in
// its place, keeping every field rule and message: it passed the same
// tests and fuzz targets with the same allocations (2, 20 and 202 per op)
// but took BenchmarkParsePart from 310 to 569 ns (x1.8),
// BenchmarkParseParts (100 parts) from 68 to 79 µs (+10 %) and
// BenchmarkHandler, the whole request on in-memory fakes, from about 5.0
// to 5.3-5.7 µs: +4 to +21 % by run, +12 % as the median of four runs of
// 14-20 paired rounds (+3 % with the GC off), against a limit of 10 %.
// Those are CPU seconds per op from getrusage of -test.benchtime=Nx runs,
// old and new alternating, on 2 cores shared with other work. The
// scanner's grammar is checked against encoding/json by FuzzParsePart, and
// its rules by the table tests.
package ingestor

import (
	"crypto/tls"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/takt/takt/internal/auth"
	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/config"
	"github.com/takt/takt/internal/httpx"
	"github.com/takt/takt/internal/kafkax"
	"github.com/takt/takt/internal/ratelimit"
	"github.com/takt/takt/internal/redisx"
	"github.com/takt/takt/internal/tlsx"
)

// Config is the ingestor's configuration.
type Config struct {
	// Addr is the plain HTTP listen address (TAKT_INGEST_ADDR), not
	// served when TLS.Only; TLSAddr the HTTPS one (TAKT_INGEST_TLS_ADDR,
	// empty: none).
	Addr    string
	TLSAddr string
	// TLS is the listeners' certificate (TAKT_TLS_*).
	TLS tlsx.Server
	// MQTTAddr and MQTTTLSAddr are the MQTT listen addresses, plain
	// (TAKT_MQTT_ADDR; not served when TLS.Only) and TLS
	// (TAKT_MQTTS_ADDR); empty: none.
	MQTTAddr    string
	MQTTTLSAddr string
	// MQTTMaxInFlight is the most QoS 1 messages of one connection in
	// hand at once (TAKT_MQTT_MAX_INFLIGHT), told to MQTT 5 clients as
	// the receive maximum.
	MQTTMaxInFlight int
	// MQTTSessionExpiry is the longest a disconnected persistent session
	// is kept (TAKT_MQTT_SESSION_EXPIRY); it is also how long a QoS 1
	// message's resend record lives.
	MQTTSessionExpiry time.Duration
	// MQTTResendWindow is how far back the Kafka search for an earlier
	// copy of a resent message reads (TAKT_MQTT_RESEND_WINDOW).
	MQTTResendWindow time.Duration
	// Bridge subscribes to a plant's existing MQTT broker instead of (or
	// next to) the listener (TAKT_MQTT_BRIDGE_*); off when its URL is
	// empty.
	Bridge BridgeConfig
	// DLQTopic receives the MQTT messages that are invalid, with the
	// reason (TAKT_DLQ_TOPIC).
	DLQTopic string
	// Brokers and Topic say where part events go (TAKT_KAFKA_BROKERS,
	// TAKT_PARTS_TOPIC); Kafka is TLS and SASL towards them
	// (TAKT_KAFKA_TLS*, TAKT_KAFKA_SASL_*).
	Brokers []string
	Topic   string
	Kafka   kafkax.Security
	// ClickHouse holds API keys and locations: the source of truth behind
	// the caches.
	ClickHouse chstore.Config
	// Redis is the shared cache of keys and locations (TAKT_REDIS_*).
	RedisAddr     string
	RedisUser     string
	RedisPassword string
	RedisTLS      tlsx.Client
	RedisPrefix   string
	// MaxBody is the largest request body accepted, in bytes
	// (TAKT_INGEST_MAX_BODY).
	MaxBody int
	// MaxBatchBody is the largest body of a batch (process_parts) request,
	// in bytes (TAKT_INGEST_MAX_BATCH_BODY); the default leaves ~1 KiB for
	// each of MaxBatchParts items.
	MaxBatchBody int
	// ProduceLinger is how long the producer waits to fill a batch
	// (TAKT_PRODUCE_LINGER); every request waits for its ack, so keep it
	// small.
	ProduceLinger time.Duration
	// ProduceTimeout bounds the wait for Kafka's ack of one record
	// (TAKT_PRODUCE_TIMEOUT); past it the request fails with 500.
	ProduceTimeout time.Duration
	// Cache lifetimes of API keys (TAKT_AUTH_*) and locations
	// (TAKT_LOCATION_*): in process, in Redis, and of "not found".
	AuthLocalTTL        time.Duration
	AuthRedisTTL        time.Duration
	AuthNegativeTTL     time.Duration
	LocationLocalTTL    time.Duration
	LocationRedisTTL    time.Duration
	LocationNegativeTTL time.Duration
	// AuthFailures is each client address's budget of failed key
	// look-ups (TAKT_AUTH_FAIL_BURST, TAKT_AUTH_FAIL_RATE).
	AuthFailures auth.FailureLimit
	// RateLimit configures the per-key rate limits (TAKT_RATE_*).
	RateLimit ratelimit.Config
	// LogLevel is debug, info, warn or error (TAKT_LOG_LEVEL).
	LogLevel string
	// AdminAddr is the admin listener (TAKT_ADMIN_ADDR): /healthz,
	// /readyz with reasons, /metrics and /debug/pprof/; empty: none.
	AdminAddr string
}

// DefaultAdminAddr is the ingestor's admin listener unless
// TAKT_ADMIN_ADDR says otherwise.
const DefaultAdminAddr = "127.0.0.1:18083"

// ConfigFromEnv reads the configuration from TAKT_* variables, with
// defaults for the local stack. Parse errors are collected in e.
func ConfigFromEnv(e *config.Env) Config {
	return Config{
		Addr:                e.String("INGEST_ADDR", "127.0.0.1:18080"),
		TLSAddr:             e.String("INGEST_TLS_ADDR", ""),
		TLS:                 tlsx.ServerFromEnv(e),
		MQTTAddr:            e.String("MQTT_ADDR", ""),
		MQTTTLSAddr:         e.String("MQTTS_ADDR", ""),
		MQTTMaxInFlight:     e.Int("MQTT_MAX_INFLIGHT", 256),
		MQTTSessionExpiry:   e.Duration("MQTT_SESSION_EXPIRY", 24*time.Hour),
		MQTTResendWindow:    e.Duration("MQTT_RESEND_WINDOW", time.Minute),
		Bridge:              bridgeConfigFromEnv(e),
		DLQTopic:            e.String("DLQ_TOPIC", "takt.parts.dlq"),
		Brokers:             e.List("KAFKA_BROKERS", []string{"127.0.0.1:19092"}),
		Topic:               e.String("PARTS_TOPIC", "takt.parts"),
		Kafka:               kafkax.SecurityFromEnv(e),
		ClickHouse:          chstore.ConfigFromEnv(e),
		RedisAddr:           e.String("REDIS_ADDR", "127.0.0.1:16379"),
		RedisUser:           e.String("REDIS_USER", ""),
		RedisPassword:       e.String("REDIS_PASSWORD", ""),
		RedisTLS:            tlsx.ClientFromEnv(e, "REDIS"),
		RedisPrefix:         e.String("REDIS_PREFIX", "takt:"),
		MaxBody:             e.Int("INGEST_MAX_BODY", 64<<10),
		MaxBatchBody:        e.Int("INGEST_MAX_BATCH_BODY", 1<<20),
		ProduceLinger:       e.Duration("PRODUCE_LINGER", time.Millisecond),
		ProduceTimeout:      e.Duration("PRODUCE_TIMEOUT", 5*time.Second),
		AuthLocalTTL:        e.Duration("AUTH_LOCAL_TTL", 30*time.Second),
		AuthRedisTTL:        e.Duration("AUTH_REDIS_TTL", 5*time.Minute),
		AuthNegativeTTL:     e.Duration("AUTH_NEGATIVE_TTL", 10*time.Second),
		LocationLocalTTL:    e.Duration("LOCATION_LOCAL_TTL", 30*time.Second),
		LocationRedisTTL:    e.Duration("LOCATION_REDIS_TTL", 5*time.Minute),
		LocationNegativeTTL: e.Duration("LOCATION_NEGATIVE_TTL", 2*time.Second),
		AuthFailures:        auth.FailureLimitFromEnv(e),
		RateLimit:           ratelimit.ConfigFromEnv(e),
		LogLevel:            e.String("LOG_LEVEL", "info"),
		AdminAddr:           e.String("ADMIN_ADDR", DefaultAdminAddr),
	}
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var p config.Problems
	p.Addf(c.Addr == "" && !c.TLS.Only, "TAKT_INGEST_ADDR: empty")
	p.Addf(c.TLSAddr != "" && !c.TLS.Enabled(), "TAKT_INGEST_TLS_ADDR: needs TAKT_TLS_CERT and TAKT_TLS_KEY")
	p.Addf(c.TLS.Only && c.TLSAddr == "", "TAKT_TLS_ONLY=true: TAKT_INGEST_TLS_ADDR is empty, so nothing would listen")
	p.Addf(c.MQTTTLSAddr != "" && !c.TLS.Enabled(), "TAKT_MQTTS_ADDR: needs TAKT_TLS_CERT and TAKT_TLS_KEY")
	p.Addf(c.MQTTMaxInFlight < 1 || c.MQTTMaxInFlight > 65535, "TAKT_MQTT_MAX_INFLIGHT=%d: must be between 1 and 65535", c.MQTTMaxInFlight)
	p.Addf(c.MQTTSessionExpiry < time.Second, "TAKT_MQTT_SESSION_EXPIRY=%s: must be at least 1s", c.MQTTSessionExpiry)
	p.Addf(c.MQTTResendWindow < time.Second, "TAKT_MQTT_RESEND_WINDOW=%s: must be at least 1s", c.MQTTResendWindow)
	p.Addf(c.DLQTopic == "" || c.DLQTopic == c.Topic, "TAKT_DLQ_TOPIC=%q: must be set and differ from TAKT_PARTS_TOPIC", c.DLQTopic)
	p.Addf(c.AdminAddr != "" && (c.AdminAddr == c.Addr || c.AdminAddr == c.TLSAddr),
		"TAKT_ADMIN_ADDR=%s: must differ from the public listeners", c.AdminAddr)
	p.Addf(len(c.Brokers) == 0, "TAKT_KAFKA_BROKERS: empty")
	p.Addf(c.Topic == "", "TAKT_PARTS_TOPIC: empty")
	p.Addf(c.MaxBody < 256, "TAKT_INGEST_MAX_BODY=%d: must be at least 256 bytes", c.MaxBody)
	p.Addf(c.MaxBody > 16<<20, "TAKT_INGEST_MAX_BODY=%d: must be at most 16 MiB", c.MaxBody)
	p.Addf(c.MaxBatchBody < 256 || c.MaxBatchBody > 64<<20,
		"TAKT_INGEST_MAX_BATCH_BODY=%d: must be between 256 bytes and 64 MiB", c.MaxBatchBody)
	p.Addf(c.ProduceLinger < 0 || c.ProduceLinger > time.Second,
		"TAKT_PRODUCE_LINGER=%s: must be between 0 and 1s (every request waits for it)", c.ProduceLinger)
	p.Addf(c.ProduceTimeout <= 0, "TAKT_PRODUCE_TIMEOUT=%s: must be positive", c.ProduceTimeout)
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"TAKT_AUTH_LOCAL_TTL", c.AuthLocalTTL}, {"TAKT_AUTH_REDIS_TTL", c.AuthRedisTTL},
		{"TAKT_AUTH_NEGATIVE_TTL", c.AuthNegativeTTL}, {"TAKT_LOCATION_LOCAL_TTL", c.LocationLocalTTL},
		{"TAKT_LOCATION_REDIS_TTL", c.LocationRedisTTL}, {"TAKT_LOCATION_NEGATIVE_TTL", c.LocationNegativeTTL},
	} {
		p.Addf(d.v < 0, "%s=%s: must not be negative", d.name, d.v)
	}
	_, err := c.Level()
	p.Addf(err != nil, "TAKT_LOG_LEVEL=%q: must be debug, info, warn or error", c.LogLevel)
	for _, err := range []error{c.TLS.Validate(), c.Kafka.Validate(), c.redis().Validate(), c.ClickHouse.Validate()} {
		if err != nil {
			p = append(p, err)
		}
	}
	if err := c.Bridge.Validate(); err != nil {
		p = append(p, err)
	}
	if err := c.AuthFailures.Validate(); err != nil {
		p = append(p, err)
	}
	if err := c.RateLimit.Validate(); err != nil {
		p = append(p, err)
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

// mqtt reports whether an MQTT listener is configured, and its settings.
func (c Config) mqtt(tc *tls.Config) (mqttConfig, bool) {
	m := mqttConfig{Addr: c.MQTTAddr, TLSAddr: c.MQTTTLSAddr, TLS: tc, MaxInFlight: c.MQTTMaxInFlight,
		SessionExpiry: c.MQTTSessionExpiry, MaxPacket: c.MaxBatchBody + 64<<10, DLQTopic: c.DLQTopic}
	if c.TLS.Only {
		m.Addr = ""
	}
	return m, m.Addr != "" || m.TLSAddr != ""
}

// Level returns LogLevel as a slog level.
func (c Config) Level() (slog.Level, error) {
	var l slog.Level
	err := l.UnmarshalText([]byte(c.LogLevel))
	return l, err
}

// BridgeConfig is the bridge to a plant's broker (TAKT_MQTT_BRIDGE_*).
type BridgeConfig struct {
	// URL is the broker: mqtt://host:port or mqtts://host:port
	// (TAKT_MQTT_BRIDGE_URL); empty: no bridge.
	URL string
	// Username and Password are what the bridge connects with
	// (TAKT_MQTT_BRIDGE_USERNAME, TAKT_MQTT_BRIDGE_PASSWORD).
	Username string
	Password string
	// ClientID names the bridge's persistent session on the broker
	// (TAKT_MQTT_BRIDGE_CLIENT_ID): one per ingestor, the same across its
	// restarts, or the messages it had not acknowledged wait in a session
	// nobody resumes. Default: takt-ingestor-<host name>.
	ClientID string
	// Group is the shared subscription's group: every ingestor of a group
	// gets its share of the messages (TAKT_MQTT_BRIDGE_GROUP); empty: a
	// plain subscription, each ingestor gets every message.
	Group string
	// Topics are the topic filters subscribed to, in Takt's layout
	// (TAKT_MQTT_BRIDGE_TOPICS, comma-separated).
	Topics []string
	// Key is the API key the bridged messages are taken under: its ingest
	// scope, sites and rate limit apply (TAKT_MQTT_BRIDGE_KEY).
	Key string
	// InFlight is the most messages the broker may have unacknowledged
	// with the bridge (MQTT 5 receive maximum, TAKT_MQTT_BRIDGE_INFLIGHT).
	InFlight int
	// TLS is the client side of mqtts:// (TAKT_MQTT_BRIDGE_TLS_*).
	TLS tlsx.Client
}

func bridgeConfigFromEnv(e *config.Env) BridgeConfig {
	host, _ := os.Hostname()
	return BridgeConfig{
		URL:      e.String("MQTT_BRIDGE_URL", ""),
		Username: e.String("MQTT_BRIDGE_USERNAME", ""),
		Password: e.String("MQTT_BRIDGE_PASSWORD", ""),
		ClientID: e.String("MQTT_BRIDGE_CLIENT_ID", "takt-ingestor-"+host),
		Group:    e.String("MQTT_BRIDGE_GROUP", "takt"),
		Topics:   e.List("MQTT_BRIDGE_TOPICS", []string{TopicPartPrefix + "#"}),
		Key:      e.String("MQTT_BRIDGE_KEY", ""),
		InFlight: e.Int("MQTT_BRIDGE_INFLIGHT", 256),
		TLS:      tlsx.ClientFromEnv(e, "MQTT_BRIDGE"),
	}
}

// Enabled reports whether the bridge is configured.
func (b BridgeConfig) Enabled() bool { return b.URL != "" }

// Validate reports every problem with b at once; nothing when the bridge
// is off.
func (b BridgeConfig) Validate() error {
	if !b.Enabled() {
		return nil
	}
	var p config.Problems
	u, err := url.Parse(b.URL)
	p.Addf(err != nil || (u.Scheme != "mqtt" && u.Scheme != "mqtts") || u.Host == "",
		"TAKT_MQTT_BRIDGE_URL=%q: must be mqtt://host:port or mqtts://host:port", b.URL)
	p.Addf(err == nil && u.Scheme == "mqtts" && !b.TLS.Enabled, "TAKT_MQTT_BRIDGE_URL=%q: mqtts needs TAKT_MQTT_BRIDGE_TLS=true", b.URL)
	p.Addf(err == nil && u.Scheme == "mqtt" && b.TLS.Enabled, "TAKT_MQTT_BRIDGE_TLS=true: the URL %q is not mqtts://", b.URL)
	p.Addf(err == nil && u.User != nil, "TAKT_MQTT_BRIDGE_URL: no credentials in the URL; use TAKT_MQTT_BRIDGE_USERNAME and _PASSWORD")
	p.Addf(b.ClientID == "" || len(b.ClientID) > 65535, "TAKT_MQTT_BRIDGE_CLIENT_ID: must be set, at most 65,535 bytes")
	p.Addf(strings.ContainsAny(b.Group, "/+#"), "TAKT_MQTT_BRIDGE_GROUP=%q: no '/', '+' or '#' in a share name", b.Group)
	p.Addf(len(b.Topics) == 0, "TAKT_MQTT_BRIDGE_TOPICS: empty")
	for _, t := range b.Topics {
		p.Addf(t == "" || strings.HasPrefix(t, "$"), "TAKT_MQTT_BRIDGE_TOPICS: %q is not a topic filter (the shared subscription is made from TAKT_MQTT_BRIDGE_GROUP)", t)
	}
	p.Addf(!auth.WellFormed(b.Key), "TAKT_MQTT_BRIDGE_KEY: must be an API key (its scope, sites and rate limit apply to bridged messages)")
	p.Addf(b.InFlight < 1 || b.InFlight > 65535, "TAKT_MQTT_BRIDGE_INFLIGHT=%d: must be between 1 and 65535", b.InFlight)
	if err := b.TLS.Validate(); err != nil {
		p = append(p, err)
	}
	return p.Err()
}

// filters are the subscription's topic filters: shared ones when a group
// is set.
func (b BridgeConfig) filters() []string {
	out := make([]string, len(b.Topics))
	for i, t := range b.Topics {
		if b.Group != "" {
			t = "$share/" + b.Group + "/" + t
		}
		out[i] = t
	}
	return out
}
