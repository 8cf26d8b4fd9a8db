package rcache

import (
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// localCache is a bounded in-process map with per-entry expiry for found
// values. Only keys that exist reach it (API keys, locations), so its
// bound is a safety net: when full, expired entries are swept and, if that
// is not enough, an arbitrary tenth of the entries is dropped (Go's map
// iteration order is random, so this is a cheap random eviction). Reads
// take a shared lock: this is the hot path of every request.
type localCache[K comparable, V any] struct {
	mu    sync.RWMutex
	m     map[K]localEntry[V]
	max   int
	grace time.Duration // how long past expiry an entry may still be served stale
}

type localEntry[V any] struct {
	v       V
	expires time.Time
}

func newLocalCache[K comparable, V any](max int) *localCache[K, V] {
	return &localCache[K, V]{m: make(map[K]localEntry[V]), max: max}
}

// get returns the live entry for k.
func (c *localCache[K, V]) get(k K, now time.Time) (V, bool) {
	c.mu.RLock()
	e, ok := c.m[k]
	c.mu.RUnlock()
	if !ok || !now.Before(e.expires) {
		var zero V
		return zero, false
	}
	return e.v, true
}

// getStale returns the entry for k if it has expired less than grace ago
// (or not at all); fresh says it has not.
func (c *localCache[K, V]) getStale(k K, now time.Time, grace time.Duration) (v V, fresh, ok bool) {
	c.mu.RLock()
	e, ok := c.m[k]
	c.mu.RUnlock()
	if !ok || !now.Before(e.expires.Add(grace)) {
		return v, false, false
	}
	return e.v, now.Before(e.expires), true
}

// put stores v for k until now+ttl.
func (c *localCache[K, V]) put(k K, v V, now time.Time, ttl time.Duration) {
	if ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, exists := c.m[k]; !exists && len(c.m) >= c.max {
		c.evictLocked(now)
	}
	c.m[k] = localEntry[V]{v: v, expires: now.Add(ttl)}
}

// remove forgets k.
func (c *localCache[K, V]) remove(k K) {
	c.mu.Lock()
	delete(c.m, k)
	c.mu.Unlock()
}

// clear forgets every entry.
func (c *localCache[K, V]) clear() {
	c.mu.Lock()
	clear(c.m)
	c.mu.Unlock()
}

// removeIf forgets the entries whose key matches.
func (c *localCache[K, V]) removeIf(match func(K) bool) {
	c.mu.Lock()
	for k := range c.m {
		if match(k) {
			delete(c.m, k)
		}
	}
	c.mu.Unlock()
}

func (c *localCache[K, V]) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}

func (c *localCache[K, V]) evictLocked(now time.Time) {
	for k, e := range c.m {
		if !now.Before(e.expires.Add(c.grace)) {
			delete(c.m, k)
		}
	}
	if len(c.m) < c.max {
		return
	}
	drop := c.max/10 + 1
	for k := range c.m {
		if drop == 0 {
			break
		}
		delete(c.m, k)
		drop--
	}
}

// negCache remembers keys that have no value ("not found") until their
// expiry, so a repeated unknown key costs a look-up in memory and nothing
// more. Its keys come from outside (random API keys, made-up external
// ids), so it is a separate LRU of at most max entries: a flood of made-up
// keys evicts the least recently used of them and never a found value,
// and an unknown key that keeps coming back stays.
type negCache[K comparable] struct {
	lru *lru.Cache[K, time.Time] // key -> expiry
}

func newNegCache[K comparable](max int) *negCache[K] {
	c, err := lru.New[K, time.Time](max)
	if err != nil {
		panic("rcache: " + err.Error()) // only for max < 1, which New rules out
	}
	return &negCache[K]{lru: c}
}

// has reports whether k is known to have no value at now.
func (c *negCache[K]) has(k K, now time.Time) bool {
	expires, ok := c.lru.Get(k)
	if !ok {
		return false
	}
	if !now.Before(expires) {
		c.lru.Remove(k)
		return false
	}
	return true
}

// put remembers until now+ttl that k has no value.
func (c *negCache[K]) put(k K, now time.Time, ttl time.Duration) {
	if ttl > 0 {
		c.lru.Add(k, now.Add(ttl))
	}
}

func (c *negCache[K]) remove(k K) { c.lru.Remove(k) }

func (c *negCache[K]) clear() { c.lru.Purge() }

// removeIf forgets the keys that match.
func (c *negCache[K]) removeIf(match func(K) bool) {
	for _, k := range c.lru.Keys() {
		if match(k) {
			c.lru.Remove(k)
		}
	}
}

func (c *negCache[K]) len() int { return c.lru.Len() }

// logLimiter lets one message through per interval, so an outage (Redis
// down) is logged without a line per request.
type logLimiter struct {
	every time.Duration
	last  atomic.Int64 // unix nanoseconds of the last allowed message
}

func (l *logLimiter) allow(now time.Time) bool {
	last := l.last.Load()
	if now.UnixNano()-last < int64(l.every) {
		return false
	}
	return l.last.CompareAndSwap(last, now.UnixNano())
}

// breaker skips Redis for a while after it failed, so that an outage costs
// one timeout per pause instead of one per request.
type breaker struct {
	pause time.Duration
	until atomic.Int64 // unix nanoseconds; Redis is skipped before it
}

func (b *breaker) open(now time.Time) bool { return now.UnixNano() < b.until.Load() }

func (b *breaker) trip(now time.Time) { b.until.Store(now.Add(b.pause).UnixNano()) }
