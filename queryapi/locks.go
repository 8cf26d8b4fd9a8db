package queryapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// locks serializes the action calls that change one record, across every
// replica: two closes of one dispatch, two clock-ins of one user on one
// line, two recordings of the same production. A lock is a Redis key with
// a random token that expires after ttl, longer than any call may run
// (the request timeout bounds it), so a crashed holder frees it.
type locks struct {
	rdb    *redis.Client
	prefix string // redisx.Keys.ActionLocks
	ttl    time.Duration
	// wait is how long a call waits for a held lock before answering
	// errBusy.
	wait time.Duration
}

// errBusy means another call held the record's lock for longer than a
// call waits.
var errBusy = errors.New("record busy")

// unlockScript deletes the lock only when it still holds our token: a
// lock that expired and was taken by another call stays theirs.
var unlockScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)

// hold takes the lock called name, waiting up to l.wait, and returns the
// function that releases it.
func (l *locks) hold(ctx context.Context, name string) (func(), error) {
	var b [16]byte
	_, _ = rand.Read(b[:])
	token := hex.EncodeToString(b[:])
	key := l.prefix + name
	deadline := time.Now().Add(l.wait)
	for {
		ok, err := l.rdb.SetNX(ctx, key, token, l.ttl).Result()
		if err != nil {
			return nil, fmt.Errorf("%w: lock %s: %w", errUnavailable, name, err)
		}
		if ok {
			return func() {
				rctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				_ = unlockScript.Run(rctx, l.rdb, []string{key}, token).Err()
			}, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%w: %s", errBusy, name)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %s: %w", errBusy, name, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
