package auth

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrUnavailable means a signed call could not be checked for reuse
// (Redis did not answer): signed calls fail closed until it does.
var ErrUnavailable = errors.New("signed calls are unavailable")

// ClockMargin is how long a used signature is remembered past its
// _expiration: replicas whose clocks run up to this much apart still
// refuse it the whole time any of them would accept it.
const ClockMargin = time.Minute

// UsedSignatures remembers the signatures of signed calls in Redis until
// they expire (plus ClockMargin), so that each is accepted once, by any
// replica: a captured call cannot be sent again. It is safe for concurrent
// use.
type UsedSignatures struct {
	rdb    *redis.Client
	prefix string // redisx.Keys.Signatures()
}

// NewUsedSignatures returns the record of used signatures kept in rdb
// under prefix (redisx.Keys.Signatures()).
func NewUsedSignatures(rdb *redis.Client, prefix string) *UsedSignatures {
	return &UsedSignatures{rdb: rdb, prefix: prefix}
}

// Spend records sig as used at now. It returns an error matching
// ErrSignature when sig was used before, and one matching ErrUnavailable
// when Redis did not answer (the call must then be refused: whether the
// signature was used is unknown).
func (u *UsedSignatures) Spend(ctx context.Context, sig Signature, now time.Time) error {
	ttl := sig.Expires.Sub(now) + ClockMargin
	if len(sig.Digest) == 0 || ttl <= 0 {
		return fmt.Errorf("%w: nothing to spend", ErrSignature)
	}
	// The digest is an HMAC: its first half identifies it as well as the
	// whole (2^256 values).
	key := u.prefix + hex.EncodeToString(sig.Digest[:min(len(sig.Digest), 32)])
	fresh, err := u.rdb.SetNX(ctx, key, 1, ttl).Result()
	switch {
	case err != nil:
		return fmt.Errorf("%w: record the signature: %w", ErrUnavailable, err)
	case !fresh:
		return fmt.Errorf("%w: this signature was used already; sign each call anew", ErrSignature)
	}
	return nil
}
