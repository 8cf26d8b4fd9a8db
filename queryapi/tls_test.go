package queryapi

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"syscall"
	"testing"
	"time"

	"github.com/takt/takt/internal/config"
	"github.com/takt/takt/internal/testenv"
	"github.com/takt/takt/internal/tlsx"
)

// TestRunTLSOnly: with TAKT_TLS_ONLY the query API answers over HTTPS
// (HTTP/2, a certificate from the local CA) and nothing listens on the
// plain address.
func TestRunTLSOnly(t *testing.T) {
	chCfg := testenv.ClickHouseConfig(t)
	stack := testenv.Stack(t)
	files, _, err := tlsx.LocalCA(t.TempDir(), []string{"127.0.0.1", "localhost"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	free := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}
	var env config.Env
	cfg := ConfigFromEnv(&env)
	cfg.Addr, cfg.TLSAddr, cfg.AdminAddr = free(), free(), free()
	cfg.TLS = tlsx.Server{CertFile: files.Cert, KeyFile: files.Key, Only: true, CheckEvery: time.Second}
	cfg.ClickHouse, cfg.RedisAddr, cfg.RedisPrefix = chCfg, stack.Redis, testenv.Name("takt-test-")+":"
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, testenv.Logger(t)) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	tc, err := tlsx.Client{Enabled: true, CAFile: files.CA}.Config()
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true}}
	base := "https://" + cfg.TLSAddr
	for deadline := time.Now().Add(20 * time.Second); ; {
		resp, err := c.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("service not ready: %v", err)
		}
		select {
		case err := <-done:
			t.Fatalf("Run ended early: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	resp, err := c.Get(base + "/api/1.0/parts/?" + url.Values{"auth": {"nope"}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || resp.ProtoMajor != 2 {
		t.Errorf("bad key over HTTPS: %s %d", resp.Proto, resp.StatusCode)
	}
	if _, err := http.Get("http://" + cfg.Addr + "/healthz"); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("plain HTTP with TLS only: %v, want connection refused", err)
	}
}
