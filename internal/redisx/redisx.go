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
package redisx

import (
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// NewClient returns the Redis client of a Takt process. Every caller bounds
// its calls and has a way around a failure (the source, the periodic
// refresh, failing open), so a call is retried once at most and a
// connection is given a second. The client honours each call's context
// deadline on the socket (go-redis otherwise waits its own 3 s read
// timeout, twice): a Redis that hangs without refusing connections (paused,
// a stalled host) must cost a call its caller's bound, not seconds.
func NewClient(addr, password string) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr:                  addr,
		Password:              password,
		ContextTimeoutEnabled: true,
		MaxRetries:            1,
		DialTimeout:           time.Second,
		DialerRetries:         1,
		DialerRetryTimeout:    10 * time.Millisecond,
	})
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

// MasterDataChanges is the channel the record API announces a changed
// master-data table on (its name is the message), for processes that cache
// whole tables.
func (k Keys) MasterDataChanges() string { return k.prefix + "invalidate" }
