// Package redisx is Takt's one way to Redis: the client set-up, the key
// layout, and pub/sub. Redis is shared by every instance of every service;
// it is an accelerator and a coordinator, never the source of truth
// (ClickHouse is), so everything kept there may be lost.
//
// # Key layout
//
// Every key and channel of a deployment starts with its prefix
// (TAKT_REDIS_PREFIX, "takt:" by default), so that deployments and test
// runs can share one Redis. Keys below is the only place that spells the
// names; the packages named in the table own what is stored there.
//
//	key or channel                  type      owner             what
//	<p>apikey:<sha-256 hex>         string    auth (rcache)     an API key's principal (JSON, TTL), or {"found":false}
//	<p>apikey:invalidate            channel   auth (rcache)     key hashes whose cached entry is stale
//	<p>location:<external id>       string    locations (rcache) a location by external id (JSON, TTL), or {"found":false}
//	<p>location:invalidate          channel   locations (rcache) external ids whose cached entry is stale
//	<p>ratelimit:<key id>           hash      ratelimit         a key's token bucket (tokens, ts; expires unused)
//	<p>ratelimit:used               zset      ratelimit         each key's last use (score: Redis time)
//	<p>ratelimit:usedcopy           string    ratelimit         short lock: one replica copies uses to ClickHouse
//	<p>ids                          counter   queryapi          the next record id (INCR; recreated above ClickHouse's largest)
//	<p>unique:<areas>:<field>:<site>:<value hash> string queryapi  the record id holding a unique value while it is written (TTL)
//	<p>signature:<digest hex>       string    auth              a used signature of a signed call (TTL: its expiration + 1 min)
//	<p>cursor:<query hash>:<offset> string    queryapi          where a page of a paging loop starts (TTL)
//	<p>cursor:<query hash>:<offset>:rows string queryapi        the row positions of a page read ahead (TTL)
//	<p>invalidate                   channel   queryapi → processor names of master-data tables that changed
//	<p>mqtt:session:<client id>     string    ingestor (MQTT)   a persistent MQTT session: protocol, expiry, subscriptions (JSON, TTL: the expiry)
//	<p>mqtt:pubs:<client id>        hash      ingestor (MQTT)   packet id -> digest of the QoS 1 message stored under it, or pending:<receipt> (TTL: from the last write)
//	<p>lock:<record>                string    queryapi          short lock: one action call changes the record at a time (TTL)
//	<p>cyclecount:<machine id>      hash      queryapi          a machine's cycle counter (count, seq, updated; recreated from ClickHouse)
//	<p>idem:<scope>:<client key>    string    ingestor          an idempotency key: pending (TTL: a lease) or its answer (TTL: 24 h)
package redisx

import (
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/takt/takt/internal/config"
	"github.com/takt/takt/internal/tlsx"
)

// Config says how to reach Redis.
type Config struct {
	// Addr is host:port (TAKT_REDIS_ADDR).
	Addr string
	// Username and Password authenticate (TAKT_REDIS_USER, an ACL user of
	// Redis 6 and later; TAKT_REDIS_PASSWORD, alone for requirepass).
	Username string
	Password string
	// TLS is TAKT_REDIS_TLS and TAKT_REDIS_TLS_*.
	TLS tlsx.Client
}

// ConfigFromEnv reads TAKT_REDIS_ADDR, _USER, _PASSWORD and _TLS*, with
// the local stack's address as the default.
func ConfigFromEnv(e *config.Env) Config {
	return Config{
		Addr:     e.String("REDIS_ADDR", "127.0.0.1:16379"),
		Username: e.String("REDIS_USER", ""),
		Password: e.String("REDIS_PASSWORD", ""),
		TLS:      tlsx.ClientFromEnv(e, "REDIS"),
	}
}

// Validate reports every problem with c.
func (c Config) Validate() error {
	var p config.Problems
	p.Addf(c.Addr == "", "TAKT_REDIS_ADDR: empty")
	p.Addf(c.Username != "" && c.Password == "", "TAKT_REDIS_USER: set without TAKT_REDIS_PASSWORD")
	if err := c.TLS.Validate(); err != nil {
		p = append(p, err)
	}
	return p.Err()
}

// New returns the Redis client of a Takt process. Every caller bounds its
// calls and has a way around a failure (the source, the periodic refresh,
// failing open), so a call is retried once at most and a connection is
// given a second (two with TLS: the handshake is part of it). The client
// honours each call's context deadline on the socket (go-redis otherwise
// waits its own 3 s read timeout, twice): a Redis that hangs without
// refusing connections (paused, a stalled host) must cost a call its
// caller's bound, not seconds.
func New(cfg Config) (*redis.Client, error) {
	o, err := options(cfg)
	if err != nil {
		return nil, err
	}
	return redis.NewClient(o), nil
}

func options(cfg Config) (*redis.Options, error) {
	tc, err := cfg.TLS.Config()
	if err != nil {
		return nil, fmt.Errorf("redis %s: %w", cfg.Addr, err)
	}
	o := &redis.Options{
		Addr:                  cfg.Addr,
		Username:              cfg.Username,
		Password:              cfg.Password,
		TLSConfig:             tc,
		ContextTimeoutEnabled: true,
		MaxRetries:            1,
		DialTimeout:           time.Second,
		DialerRetries:         1,
		DialerRetryTimeout:    10 * time.Millisecond,
	}
	if tc != nil {
		o.DialTimeout = 2 * time.Second
	}
	return o, nil
}

// NewClient is New for a plain connection to addr with a password.
func NewClient(addr, password string) *redis.Client {
	o, _ := options(Config{Addr: addr, Password: password}) // no TLS: no error
	return redis.NewClient(o)
}

// Keys is the key layout of a deployment (see the package doc). The zero
// value has the empty prefix.
type Keys struct{ prefix string }

// NewKeys returns the layout under prefix (TAKT_REDIS_PREFIX).
func NewKeys(prefix string) Keys { return Keys{prefix: prefix} }

// APIKeys prefixes the cached API keys: an entry is APIKeys()+<hash>.
func (k Keys) APIKeys() string { return k.prefix + "apikey:" }

// Locations prefixes the cached locations: an entry is
// Locations()+<external id>.
func (k Keys) Locations() string { return k.prefix + "location:" }

// Invalidations is the channel of a cache whose entries live under
// cachePrefix (APIKeys() or Locations()): the names of stale entries.
func Invalidations(cachePrefix string) string { return cachePrefix + "invalidate" }

// RateLimitBucket is the token bucket of API key id.
func (k Keys) RateLimitBucket(id uint64) string {
	return k.prefix + "ratelimit:" + strconv.FormatUint(id, 10)
}

// RateLimitUsed is the sorted set of the keys' last uses.
func (k Keys) RateLimitUsed() string { return k.prefix + "ratelimit:used" }

// RateLimitCopyLock is the lock of the copy of uses to ClickHouse.
func (k Keys) RateLimitCopyLock() string { return k.prefix + "ratelimit:usedcopy" }

// RecordIDs is the counter record ids are taken from.
func (k Keys) RecordIDs() string { return k.prefix + "ids" }

// Unique prefixes the reservations of unique values: an entry is
// Unique()+<areas>:<field>:<site>:<hash of the value>.
func (k Keys) Unique() string { return k.prefix + "unique:" }

// Signatures prefixes the used signatures of signed calls: an entry is
// Signatures()+<hex of the digest's first 32 bytes>.
func (k Keys) Signatures() string { return k.prefix + "signature:" }

// Cursors prefixes the paging cursors: an entry is
// Cursors()+<query hash>:<offset>, and +":rows" for the row positions.
func (k Keys) Cursors() string { return k.prefix + "cursor:" }

// MQTTSession is the stored persistent session of an MQTT client.
func (k Keys) MQTTSession(clientID string) string { return k.prefix + "mqtt:session:" + clientID }

// MQTTPublished holds the records of the QoS 1 messages of an MQTT
// client: field MQTTPacketField(pid) is that of the message it last sent
// under packet id pid. One hash per client, so the records of many
// messages are written with one command.
func (k Keys) MQTTPublished(clientID string) string { return k.prefix + "mqtt:pubs:" + clientID }

// MQTTPacketField is the field of packet id pid in MQTTPublished.
func MQTTPacketField(pid uint16) string { return strconv.FormatUint(uint64(pid), 10) }

// FeedStreams prefixes the open live-feed streams of an API key, across
// every query API: an entry is FeedStreams()+<key id>.
func (k Keys) FeedStreams() string { return k.prefix + "feedstreams:" }

// ActionLocks prefixes the locks of the record API's actions: a lock is
// ActionLocks()+<record>.
func (k Keys) ActionLocks() string { return k.prefix + "lock:" }

// CycleCount is the cycle counter of machine id.
func (k Keys) CycleCount(id uint64) string {
	return k.prefix + "cyclecount:" + strconv.FormatUint(id, 10)
}

// Idempotency is the record of the idempotency key a client (scope: its
// user) sent; key is already checked to be short and of a plain charset.
func (k Keys) Idempotency(scope, key string) string {
	return k.prefix + "idem:" + scope + ":" + key
}

// MasterDataChanges is the channel the record API announces a changed
// master-data table on (its name is the message), for processes that cache
// whole tables.
func (k Keys) MasterDataChanges() string { return k.prefix + "invalidate" }
