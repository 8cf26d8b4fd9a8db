package ingestor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/takt/takt/internal/auth"
	"github.com/takt/takt/internal/redisx"
)

// Idempotent ingest.
//
// A client that may send a part twice (a timeout, then a retry, perhaps
// to another replica) gives it a key: the Idempotency-Key header of
// process_part, or the idempotency_key field of a part. Two layers make
// such a part count once:
//
//  1. The ingestor keeps, in Redis (shared by every replica), a record per
//     key and scope: pending while the first request works (a lease), then
//     its answer for idempotencyTTL. A repeat with the same body gets that
//     answer back (Idempotent-Replayed: true) and produces nothing; a
//     repeat with another body gets 422; a repeat that races the first
//     waits for its answer (at most idem.wait, then 409).
//  2. The Kafka message carries wire.Part.IdempotencyID, a digest of scope
//     and key. The processor stores the first message with an id and
//     drops later ones, durably (ClickHouse's part_keys). That covers what
//     Redis cannot see: a first request that timed out after its record
//     reached Kafka (its record is released, the retry produces again), a
//     replica that died after producing, and Redis being down.
//
// When Redis cannot be reached the request is processed without a record
// (counted in takt_ingestor_idempotency_total{outcome="unchecked"}): the
// part is still stored once, by layer 2, but the retry is answered as a
// fresh request (no replay header, and a different body is not refused).
// Refusing instead would turn a Redis outage into an ingest outage.

// Header names.
const (
	idemKeyHeader      = "Idempotency-Key"
	idemReplayedHeader = "Idempotent-Replayed"
)

// Limits of an idempotency key: 1..maxIdemKeyBytes of letters, digits and
// "-_.:~+/=" (UUIDs, ULIDs, base64 and counters fit; nothing that needs
// escaping in a log line or a Redis key).
const maxIdemKeyBytes = 128

// idempotencyTTL is how long an answer is kept for replays.
const idempotencyTTL = 24 * time.Hour

// checkIdempotencyKey reports what is wrong with key (a *formatError).
func checkIdempotencyKey(field string, key []byte) error {
	switch {
	case len(key) == 0:
		return formatErr("%s is empty", field)
	case len(key) > maxIdemKeyBytes:
		return formatErr("%s is longer than %d bytes", field, maxIdemKeyBytes)
	}
	for _, c := range key {
		if !idemKeyByte(c) {
			return formatErr("%s may hold only letters, digits and -_.:~+/= (found %q)", field, rune(c))
		}
	}
	return nil
}

func idemKeyByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '-', '_', '.', ':', '~', '+', '/', '=':
		return true
	}
	return false
}

// idemScope is the namespace of a principal's keys: its user, so that a
// retry sent with a rotated key of the same user still matches, and two
// tenants never share a key.
func idemScope(p auth.Principal) string {
	if p.UserID != 0 {
		return "u" + strconv.FormatUint(p.UserID, 10)
	}
	return "k" + strconv.FormatUint(p.KeyID, 10)
}

// idempotencyID is the wire.Part.IdempotencyID of key in scope: a digest
// in UUID form (version 8, the name-based layout of RFC 9562), the same on
// every replica.
func idempotencyID(scope, key string) string {
	h := sha256.New()
	h.Write([]byte("takt idempotency key\x00"))
	h.Write([]byte(scope))
	h.Write([]byte{0})
	h.Write([]byte(key))
	var id uuid.UUID
	copy(id[:], h.Sum(nil))
	id[6] = id[6]&0x0f | 0x80 // version 8
	id[8] = id[8]&0x3f | 0x80 // RFC 9562 variant
	return id.String()
}

// fingerprint is the digest of a request as sent (the body, or a batch
// item's JSON text).
type fingerprint [sha256.Size]byte

// claimState is what a claim found.
type claimState uint8

const (
	claimOwned     claimState = iota + 1 // this request is the first: process it, then finish
	claimReplay                          // answered before: status and body are the answer
	claimMismatch                        // the key was used for another body
	claimBusy                            // another request with the key still works
	claimUnchecked                       // Redis did not answer: process without a record
)

// idemClaim is one key's claim within one request.
type idemClaim struct {
	rkey  string // Redis key
	fp    fingerprint
	state claimState
	// pending is the value this request holds the key with (claimOwned).
	pending string
	// status and body are the stored answer (claimReplay).
	status int
	body   []byte
}

// idemStore keeps idempotency records in Redis. It is safe for
// concurrent use.
type idemStore struct {
	rdb  redis.Cmdable
	keys redisx.Keys
	ttl  time.Duration
	// lease bounds a pending record: a replica that dies mid-request
	// frees the key after it. It exceeds the longest a request can work
	// (the produce timeout and the look-ups before it).
	lease time.Duration
	// wait bounds how long a repeat waits for the request it races.
	wait time.Duration
	poll time.Duration

	logger *slog.Logger
	warn   logLimiter
	counts map[string]prometheus.Counter // by outcome
}

func newIdemStore(rdb redis.Cmdable, prefix string, produceTimeout time.Duration, logger *slog.Logger, reg prometheus.Registerer) (*idemStore, error) {
	s := &idemStore{
		rdb: rdb, keys: redisx.NewKeys(prefix), ttl: idempotencyTTL,
		lease: 2*produceTimeout + 5*time.Second, wait: produceTimeout + 2*time.Second, poll: 10 * time.Millisecond,
		logger: logger, warn: logLimiter{every: 10 * time.Second}, counts: map[string]prometheus.Counter{},
	}
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "takt_ingestor_idempotency_total",
		Help: "Parts sent with an idempotency key, by outcome: first (processed), replayed (answered from the record), mismatch (key reused with another body, 422), busy (the first request outlasted the wait, 409), unchecked (Redis unreachable: processed without a record; the processor still stores the part once).",
	}, []string{"outcome"})
	for _, o := range []string{"first", "replayed", "mismatch", "busy", "unchecked"} {
		s.counts[o] = vec.WithLabelValues(o)
	}
	if reg != nil {
		if err := reg.Register(vec); err != nil {
			return nil, fmt.Errorf("register idempotency metrics: %w", err)
		}
	}
	return s, nil
}

// Record values: "p" + fingerprint hex + token while pending, "d" +
// fingerprint hex + three-digit status + body when answered.
const fpHex = 2 * sha256.Size

// claimScript sets KEYS[1] to ARGV[1] for ARGV[2] ms unless it exists, and
// returns the value it found (false: the key is now this request's).
var claimScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false`)

// finishScript replaces KEYS[1] with ARGV[2] for ARGV[3] ms, or deletes it
// when ARGV[2] is empty, if it still holds this request's ARGV[1]: a lease
// that ran out may have passed the key on.
var finishScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
return 1`)

// newClaim returns the claim of key in scope for a request with
// fingerprint fp.
func (s *idemStore) newClaim(scope, key string, fp fingerprint) *idemClaim {
	var tok [8]byte
	u := uuid.New()
	copy(tok[:], u[:8])
	return &idemClaim{
		rkey:    s.keys.Idempotency(scope, key),
		fp:      fp,
		pending: "p" + hex.EncodeToString(fp[:]) + hex.EncodeToString(tok[:]),
	}
}

// claim resolves every claim of cs: owned, replay, mismatch, busy (after
// waiting up to s.wait for the requests they race) or unchecked. One
// round trip per attempt for all of them.
func (s *idemStore) claim(ctx context.Context, cs []*idemClaim) {
	deadline := time.Now().Add(s.wait)
	poll := s.poll
	for {
		open := 0
		pipe := s.rdb.Pipeline()
		cmds := make([]*redis.Cmd, len(cs))
		for i, c := range cs {
			if c.state != 0 && c.state != claimBusy {
				continue
			}
			open++
			cmds[i] = claimScript.Eval(ctx, pipe, []string{c.rkey}, c.pending, s.lease.Milliseconds())
		}
		if open == 0 {
			break
		}
		_, err := pipe.Exec(ctx)
		if err != nil && !errors.Is(err, redis.Nil) {
			for i, c := range cs {
				if cmds[i] != nil {
					c.state = claimUnchecked
				}
			}
			if s.warn.allow(time.Now()) {
				s.logger.Warn("idempotency keys not checked: Redis failed; the parts are processed, the processor drops repeats", "err", err)
			}
			break
		}
		busy := 0
		for i, c := range cs {
			if cmds[i] == nil {
				continue
			}
			v, err := cmds[i].Text()
			if errors.Is(err, redis.Nil) {
				c.state = claimOwned
				continue
			}
			s.found(c, v)
			if c.state == claimBusy {
				busy++
			}
		}
		if busy == 0 || !time.Now().Add(poll).Before(deadline) {
			break
		}
		t := time.NewTimer(poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		poll = min(2*poll, 100*time.Millisecond)
	}
	for _, c := range cs {
		switch c.state {
		case claimOwned:
			s.counts["first"].Inc()
		case claimReplay:
			s.counts["replayed"].Inc()
		case claimMismatch:
			s.counts["mismatch"].Inc()
		case claimBusy:
			s.counts["busy"].Inc()
		case claimUnchecked:
			s.counts["unchecked"].Inc()
		}
	}
}

// found sets c's state from the record v another request wrote.
func (s *idemStore) found(c *idemClaim, v string) {
	if len(v) < 1+fpHex {
		c.state = claimBusy // not a record of ours: wait for it to expire
		return
	}
	if v[1:1+fpHex] != hex.EncodeToString(c.fp[:]) {
		c.state = claimMismatch
		return
	}
	if v[0] != 'd' || len(v) < 1+fpHex+3 {
		c.state = claimBusy
		return
	}
	status, err := strconv.Atoi(v[1+fpHex : 1+fpHex+3])
	if err != nil {
		c.state = claimBusy
		return
	}
	c.state, c.status, c.body = claimReplay, status, []byte(v[1+fpHex+3:])
	if status == http.StatusOK && len(c.body) == 0 {
		c.body = bodyOK
	}
}

// storable reports whether an answer is kept for replays: a part stored
// (200) or refused for what it says (4xx). A server failure is not: the
// retry must try again.
func storable(status int) bool {
	return status >= 200 && status < 500 && status != http.StatusTooManyRequests && status != http.StatusConflict
}

// finish records the answer of every owned claim in cs (nil entries are
// skipped; status(i) is claim i's status and body), or releases the key when it is not
// storable. A failure only costs the replay: the processor still drops a
// repeat.
func (s *idemStore) finish(ctx context.Context, cs []*idemClaim, status func(i int) (int, []byte)) {
	pipe := s.rdb.Pipeline()
	n := 0
	for i, c := range cs {
		if c == nil || c.state != claimOwned {
			continue
		}
		st, body := status(i)
		done := ""
		if st == http.StatusOK && bytes.Equal(body, bodyOK) {
			body = nil // the usual answer, kept short: a record lives a day
		}
		if storable(st) {
			done = "d" + c.pending[1:1+fpHex] + strconv.Itoa(st) + string(body)
		}
		finishScript.Eval(ctx, pipe, []string{c.rkey}, c.pending, done, s.ttl.Milliseconds())
		n++
	}
	if n == 0 {
		return
	}
	if _, err := pipe.Exec(ctx); err != nil && s.warn.allow(time.Now()) {
		s.logger.Warn("idempotency answers not recorded: Redis failed", "err", err)
	}
}

// Answers of claims that are not processed.
var (
	bodyIdemMismatch = []byte(`{"error":"Idempotency-Key was already used with a different request body"}`)
	bodyIdemBusy     = []byte(`{"error":"A request with this Idempotency-Key is still being processed; retry later"}`)
)

// answer sets res to the answer of a claim that is not processed
// (replay, mismatch, busy) and reports whether it did.
func (c *idemClaim) answer(res *result) bool {
	switch c.state {
	case claimReplay:
		res.status, res.body, res.replayed = c.status, c.body, true
	case claimMismatch:
		res.status, res.body = http.StatusUnprocessableEntity, bodyIdemMismatch
	case claimBusy:
		res.status, res.body, res.retry = http.StatusConflict, bodyIdemBusy, time.Second
	default:
		return false
	}
	return true
}
