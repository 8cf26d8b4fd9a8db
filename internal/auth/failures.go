package auth

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/hashicorp/golang-lru/v2/simplelru"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/takt/takt/internal/config"
	"github.com/takt/takt/internal/ratelimit"
)

// Failed authentications per client address.
//
// A key that is neither well-formed garbage (refused by its shape) nor in
// this process's cache costs a look-up in Redis and, when Redis does not
// know it either, one in ClickHouse. A flood of random well-formed keys
// would cost one ClickHouse query each, so every client address gets a
// budget of failed look-ups: a token bucket of Burst failures that refills
// at Rate per second. Once it is spent, keys from that address that would
// need a look-up are refused with ErrTooManyFailures (HTTP 429 and
// Retry-After) until a token is back; keys this process has cached still
// answer at once, so the devices behind one factory's NAT address keep
// working while one of them sends a stale key. Repeating one unknown key
// costs nothing (it is cached as unknown), and neither does a malformed
// key: only look-ups that found nothing are counted.
//
// The budget is per process (N instances allow N times the burst) and
// kept in an LRU of at most maxClients addresses. An IPv6 client is
// counted by its /64, the block one host usually owns.

// ErrTooManyFailures means the client address spent its budget of failed
// authentications; RetryAfter tells when to try again.
var ErrTooManyFailures = errors.New("too many failed authentications")

// maxClients bounds the addresses whose failures are remembered (about
// 100 bytes each).
const maxClients = 65_536

// FailureLimit configures the budget of failed authentications per client
// address. A Burst of 0 turns the limit off.
type FailureLimit struct {
	// Burst is how many failed look-ups an address may cause in a row
	// (TAKT_AUTH_FAIL_BURST).
	Burst int
	// Rate is how many failed look-ups per second an address is allowed
	// after its burst (TAKT_AUTH_FAIL_RATE).
	Rate float64
}

// FailureLimitFromEnv reads TAKT_AUTH_FAIL_BURST and TAKT_AUTH_FAIL_RATE:
// by default 10 failures, then one every 5 seconds.
func FailureLimitFromEnv(e *config.Env) FailureLimit {
	return FailureLimit{
		Burst: e.Int("AUTH_FAIL_BURST", 10),
		Rate:  e.Float("AUTH_FAIL_RATE", 0.2),
	}
}

// Validate reports every problem with l.
func (l FailureLimit) Validate() error {
	var p config.Problems
	p.Addf(l.Burst < 0, "TAKT_AUTH_FAIL_BURST=%d: must not be negative (0 turns the limit off)", l.Burst)
	p.Addf(l.Burst > 0 && !(l.Rate > 0), "TAKT_AUTH_FAIL_RATE=%v: must be positive", l.Rate)
	return p.Err()
}

// RetryAfter returns how long the client should wait when err is (or
// wraps) a *FailureError, and whether it is one.
func RetryAfter(err error) (time.Duration, bool) {
	if err == nil {
		return 0, false // without a heap-allocated target: the hot path
	}
	var fe *FailureError
	if errors.As(err, &fe) {
		return fe.RetryAfter, true
	}
	return 0, false
}

// FailureError is the error of a refused authentication: it matches
// ErrTooManyFailures.
type FailureError struct{ RetryAfter time.Duration }

func (e *FailureError) Error() string {
	return ErrTooManyFailures.Error() + "; retry after " + e.RetryAfter.String()
}

func (e *FailureError) Unwrap() error { return ErrTooManyFailures }

// failures is the per-address budget. It is safe for concurrent use.
type failures struct {
	burst, rate float64
	now         func() time.Time

	mu      sync.Mutex
	clients *simplelru.LRU[netip.Prefix, bucket]

	refused prometheus.Counter
}

// bucket is an address's budget: tokens at time at.
type bucket struct {
	tokens float64
	at     time.Time
}

func newFailures(l FailureLimit, now func() time.Time, refused prometheus.Counter) *failures {
	clients, err := simplelru.NewLRU[netip.Prefix, bucket](maxClients, nil)
	if err != nil {
		panic("auth: " + err.Error()) // only for a size < 1
	}
	return &failures{burst: float64(l.Burst), rate: l.Rate, now: now, clients: clients, refused: refused}
}

// refill returns b's tokens at now.
func (f *failures) refill(b bucket, now time.Time) float64 {
	return min(f.burst, b.tokens+f.rate*now.Sub(b.at).Seconds())
}

// blocked reports whether client has no failure left, and how long until
// it has one.
func (f *failures) blocked(client netip.Prefix) (time.Duration, bool) {
	now := f.now()
	f.mu.Lock()
	b, ok := f.clients.Peek(client)
	f.mu.Unlock()
	if !ok {
		return 0, false
	}
	tokens := f.refill(b, now)
	if tokens >= 1 {
		return 0, false
	}
	f.refused.Inc()
	return time.Duration((1 - tokens) / f.rate * float64(time.Second)), true
}

// failed takes one failure from client's budget.
func (f *failures) failed(client netip.Prefix) {
	now := f.now()
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.clients.Get(client)
	if !ok {
		b = bucket{tokens: f.burst, at: now}
	}
	f.clients.Add(client, bucket{tokens: max(f.refill(b, now)-1, 0), at: now})
}

// clientPrefix turns a client address ("ip:port" as in
// http.Request.RemoteAddr, or a bare IP as gin's ClientIP gives) into the
// block it is counted by: the address itself for IPv4, its /64 for IPv6.
// Anything unparsable is counted in one shared bucket (the zero prefix).
func clientPrefix(addr string) netip.Prefix {
	var ip netip.Addr
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		ip = ap.Addr()
	} else if ip, err = netip.ParseAddr(addr); err != nil {
		return netip.Prefix{}
	}
	ip = ip.Unmap().WithZone("")
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, err := ip.Prefix(bits)
	if err != nil {
		return netip.Prefix{}
	}
	return p
}

// client is what a request context says about its client (see
// WithClient).
type client struct {
	addr string
}

type clientKey struct{}

// WithClient returns ctx carrying the client address addr: Authenticate
// then counts the failed look-ups of that address against its budget. It
// never refuses a key itself (see FailureGuard and AuthenticateFrom).
func WithClient(ctx context.Context, addr string) context.Context {
	return context.WithValue(ctx, clientKey{}, client{addr: addr})
}

func clientFrom(ctx context.Context) (client, bool) {
	c, ok := ctx.Value(clientKey{}).(client)
	return c, ok
}

// FailureGuard returns a gin middleware for services that authenticate
// with Authenticate: a client address that has spent its budget of failed
// authentications is answered 429 with a Retry-After header (deny writes
// the body) before anything else runs; the requests of other addresses
// carry their address to Authenticate, which counts their failed look-ups.
// The address is gin's ClientIP: the TCP peer, unless the engine trusts
// proxies (httpx.NewEngine trusts none, so X-Forwarded-For cannot pick a
// fresh budget). Without a FailureLimit it does nothing.
func (a *Authenticator) FailureGuard(deny func(c *gin.Context)) gin.HandlerFunc {
	return func(c *gin.Context) {
		if a.failures == nil {
			c.Next()
			return
		}
		addr := c.ClientIP()
		if retry, blocked := a.failures.blocked(clientPrefix(addr)); blocked {
			c.Header("Retry-After", ratelimit.RetryAfterHeader(retry))
			deny(c)
			c.Abort()
			return
		}
		c.Request = c.Request.WithContext(WithClient(c.Request.Context(), addr))
		c.Next()
	}
}
