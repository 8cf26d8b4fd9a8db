package ingestor

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/takt/takt/internal/testenv"
	"github.com/takt/takt/internal/tlsx"
)

// httpsClient trusts caFile and speaks HTTP/2.
func httpsClient(t *testing.T, caFile string) *http.Client {
	t.Helper()
	tc, err := tlsx.Client{Enabled: true, CAFile: caFile}.Config()
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true}}
}

// TestRunTLSOnly: with TAKT_TLS_ONLY the ingest API answers over HTTPS
// (HTTP/2, a certificate from the local CA) and nothing listens on the
// plain address.
func TestRunTLSOnly(t *testing.T) {
	s := newStack(t)
	files, _, err := tlsx.LocalCA(t.TempDir(), []string{"127.0.0.1", "localhost"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.config(t)
	cfg.TLSAddr = freeAddr(t)
	cfg.TLS = tlsx.Server{CertFile: files.Cert, KeyFile: files.Key, Only: true, CheckEvery: time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, testenv.Logger(t)) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	c := httpsClient(t, files.CA)
	base := "https://" + cfg.TLSAddr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := c.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		select {
		case err := <-done:
			t.Fatalf("Run ended early: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready: %v", base, err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	req, _ := http.NewRequest("POST", base+Path, strings.NewReader(`{"part":{"external_id":"line_1","quantity":3}}`))
	req.Header.Set("API-KEY", s.key)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != okBody || resp.ProtoMajor != 2 {
		t.Errorf("HTTPS part: %s %d %s", resp.Proto, resp.StatusCode, body)
	}
	if recs := s.records(t, 1); len(recs) != 1 {
		t.Errorf("%d records", len(recs))
	}

	_, err = http.Get("http://" + cfg.Addr + "/healthz")
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("plain HTTP with TLS only: %v, want connection refused", err)
	}
}
