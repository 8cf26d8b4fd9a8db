package bootstrap_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/takt/takt/internal/auth"
	"github.com/takt/takt/internal/bootstrap"
	"github.com/takt/takt/internal/testenv"
)

func TestFirstAdmin(t *testing.T) {
	s, _ := testenv.ClickHouse(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := bootstrap.FirstAdmin(ctx, s, "root", "Europe/Vienna", "hr")
	if err != nil {
		t.Fatal(err)
	}
	k, err := s.KeyByHash(ctx, auth.HashKey(out.APIKey))
	if err != nil || k.Username != "root" || !k.Admin || len(k.Scopes) != 4 || len(k.Sites) != 1 {
		t.Fatalf("bootstrapped key %+v, %v", k, err)
	}
	if sk, err := s.SecretByServer(ctx, "hr"); err != nil || sk.Secret != out.SecretKey || sk.User != k.UserID {
		t.Fatalf("secret %+v, %v", sk, err)
	}
	if _, err := bootstrap.FirstAdmin(ctx, s, "root", "UTC", "hr"); !errors.Is(err, bootstrap.ErrNotEmpty) {
		t.Fatalf("second bootstrap: %v", err)
	}
}
