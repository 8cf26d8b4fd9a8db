package auth_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/takt/takt/internal/auth"
	"github.com/takt/takt/internal/redisx"
	"github.com/takt/takt/internal/testenv"
)

// TestUsedSignatures: a signature is spent once, remembered until its
// expiration plus the clock margin, and without Redis nothing is spent.
func TestUsedSignatures(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Redis")
	}
	rdb, prefix := testenv.Redis(t)
	ctx := context.Background()
	keys := redisx.NewKeys(prefix)
	used := auth.NewUsedSignatures(rdb, keys.Signatures())
	now := time.Now()
	sig := auth.Signature{Digest: make([]byte, 64), Expires: now.Add(10 * time.Minute)}
	sig.Digest[0] = 1
	if err := used.Spend(ctx, sig, now); err != nil {
		t.Fatalf("first spend: %v", err)
	}
	if err := used.Spend(ctx, sig, now); !errors.Is(err, auth.ErrSignature) {
		t.Fatalf("second spend: %v, want ErrSignature", err)
	}
	other := auth.Signature{Digest: make([]byte, 64), Expires: sig.Expires}
	if err := used.Spend(ctx, other, now); err != nil {
		t.Fatalf("another signature: %v", err)
	}
	ks, err := rdb.Keys(ctx, keys.Signatures()+"*").Result()
	if err != nil || len(ks) != 2 {
		t.Fatalf("keys %v, %v", ks, err)
	}
	ttl, err := rdb.PTTL(ctx, ks[0]).Result()
	if want := 10*time.Minute + auth.ClockMargin; err != nil || ttl > want || ttl < want-time.Minute {
		t.Errorf("remembered for %s, want about %s", ttl, want)
	}
	if err := used.Spend(ctx, auth.Signature{Digest: sig.Digest, Expires: now.Add(-2 * auth.ClockMargin)}, now); !errors.Is(err, auth.ErrSignature) {
		t.Errorf("an expired signature: %v", err)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	down := redisx.NewClient(dead, "")
	defer down.Close()
	err = auth.NewUsedSignatures(down, keys.Signatures()).Spend(ctx, auth.Signature{Digest: make([]byte, 64), Expires: sig.Expires}, now)
	if !errors.Is(err, auth.ErrUnavailable) || errors.Is(err, auth.ErrSignature) {
		t.Errorf("Redis down: %v, want ErrUnavailable", err)
	}
}
