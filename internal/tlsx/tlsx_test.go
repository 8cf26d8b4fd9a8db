package tlsx

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/takt/takt/internal/config"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

func localHosts() []string { return []string{"127.0.0.1", "::1", "localhost"} }

func TestLocalCAWritesOnceAndRenews(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	f, wrote, err := LocalCA(dir, localHosts(), now)
	if err != nil || !wrote {
		t.Fatalf("first call: wrote=%v err=%v", wrote, err)
	}
	for _, name := range []string{f.CAKey, f.Key} {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", name, fi.Mode().Perm())
		}
	}
	ca1, _ := os.ReadFile(f.CA)
	cert1, _ := os.ReadFile(f.Cert)

	// Again: nothing to do.
	if _, wrote, err := LocalCA(dir, localHosts(), now); err != nil || wrote {
		t.Fatalf("second call: wrote=%v err=%v", wrote, err)
	}
	// A host the certificate lacks: a new server certificate, same CA.
	if _, wrote, err := LocalCA(dir, append(localHosts(), "takt.internal"), now); err != nil || !wrote {
		t.Fatalf("new host: wrote=%v err=%v", wrote, err)
	}
	ca2, _ := os.ReadFile(f.CA)
	cert2, _ := os.ReadFile(f.Cert)
	if string(ca1) != string(ca2) {
		t.Error("the CA changed, so clients that trust it would stop working")
	}
	if string(cert1) == string(cert2) {
		t.Error("server certificate not replaced for a new host")
	}
	// Close to its end: renewed.
	if _, wrote, err := LocalCA(dir, localHosts(), now.Add(serverLifetime-renewBefore/2)); err != nil || !wrote {
		t.Fatalf("near expiry: wrote=%v err=%v", wrote, err)
	}
}

// serve runs a TLS server with cfg on loopback that writes "ok" to each
// connection, and returns its address.
func serve(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = c.Write([]byte("ok"))
			}()
		}
	}()
	return ln.Addr().String()
}

// handshake dials addr trusting caFile and returns the server's leaf.
func handshake(t *testing.T, addr string, c Client) (*x509.Certificate, error) {
	t.Helper()
	cfg, err := c.Config()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

func TestReloaderServesWithLocalCA(t *testing.T) {
	dir := t.TempDir()
	f, _, err := LocalCA(dir, localHosts(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewReloader(f.Cert, f.Key, discard)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, r.Config())

	if _, err := handshake(t, addr, Client{Enabled: true, CAFile: f.CA}); err != nil {
		t.Fatalf("handshake trusting the local CA: %v", err)
	}
	if _, err := handshake(t, addr, Client{Enabled: true}); err == nil {
		t.Error("handshake trusting only the system roots succeeded")
	}
	// TLS 1.1 is refused.
	old := &tls.Config{MaxVersion: tls.VersionTLS11, InsecureSkipVerify: true}
	if c, err := tls.Dial("tcp", addr, old); err == nil {
		c.Close()
		t.Error("TLS 1.1 handshake accepted")
	}
}

func TestReloaderPicksUpNewFiles(t *testing.T) {
	dir := t.TempDir()
	f, _, err := LocalCA(dir, localHosts(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewReloader(f.Cert, f.Key, discard)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, r.Config())
	trust := Client{Enabled: true, CAFile: f.CA}
	first, err := handshake(t, addr, trust)
	if err != nil {
		t.Fatal(err)
	}

	// SIGHUP must reach this process's handler, not kill it: ours first.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx, time.Hour) }()
	defer func() { cancel(); <-done }()

	// A broken file does not replace the certificate in use.
	if err := os.WriteFile(f.Cert, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err == nil {
		t.Fatal("Reload of a broken file succeeded")
	}
	if got, err := handshake(t, addr, trust); err != nil || !got.Equal(first) {
		t.Fatalf("after a failed reload: err=%v, same certificate=%v", err, err == nil && got.Equal(first))
	}

	// New files (another host forces a new certificate); SIGHUP loads them.
	if err := os.Remove(f.Cert); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LocalCA(dir, localHosts(), time.Now()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
		got, err := handshake(t, addr, trust)
		if err == nil && !got.Equal(first) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("certificate not reloaded on SIGHUP (err %v)", err)
		}
	}
}

func TestReloaderWatchesFiles(t *testing.T) {
	dir := t.TempDir()
	f, _, err := LocalCA(dir, localHosts(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewReloader(f.Cert, f.Key, discard)
	if err != nil {
		t.Fatal(err)
	}
	first := r.Certificate()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx, 20*time.Millisecond) }()
	defer func() { cancel(); <-done }()

	if _, _, err := LocalCA(dir, append(localHosts(), "other.example"), time.Now()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for r.Certificate() == first {
		if time.Now().After(deadline) {
			t.Fatal("certificate not reloaded after its files changed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := r.Certificate().Leaf.DNSNames; !strings.Contains(strings.Join(got, ","), "other.example") {
		t.Errorf("reloaded certificate names %v", got)
	}
}

func envOf(vars map[string]string) *config.Env {
	return &config.Env{Lookup: func(k string) (string, bool) { v, ok := vars[k]; return v, ok }}
}

func TestClientFromEnv(t *testing.T) {
	dir := t.TempDir()
	f, _, err := LocalCA(dir, localHosts(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c := ClientFromEnv(envOf(map[string]string{
		"TAKT_REDIS_TLS": "true", "TAKT_REDIS_TLS_CA": f.CA, "TAKT_REDIS_TLS_SERVER_NAME": "cache.internal",
	}), "REDIS")
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg, err := c.Config()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MinVersion != tls.VersionTLS12 || cfg.ServerName != "cache.internal" || cfg.RootCAs == nil || cfg.InsecureSkipVerify {
		t.Errorf("config = min %x, name %q, roots %v, insecure %v", cfg.MinVersion, cfg.ServerName, cfg.RootCAs != nil, cfg.InsecureSkipVerify)
	}

	off := ClientFromEnv(envOf(nil), "REDIS")
	if cfg, err := off.Config(); cfg != nil || err != nil {
		t.Errorf("TLS off: config %v, err %v", cfg, err)
	}

	for name, vars := range map[string]map[string]string{
		"CA without TLS on":  {"TAKT_KAFKA_TLS_CA": f.CA},
		"missing CA file":    {"TAKT_KAFKA_TLS": "true", "TAKT_KAFKA_TLS_CA": filepath.Join(dir, "nope.pem")},
		"CA not PEM":         {"TAKT_KAFKA_TLS": "true", "TAKT_KAFKA_TLS_CA": f.Key},
		"cert without key":   {"TAKT_KAFKA_TLS": "true", "TAKT_KAFKA_TLS_CERT": f.Cert},
		"key not cert's key": {"TAKT_KAFKA_TLS": "true", "TAKT_KAFKA_TLS_CERT": f.Cert, "TAKT_KAFKA_TLS_KEY": f.CAKey},
	} {
		err := ClientFromEnv(envOf(vars), "KAFKA").Validate()
		if err == nil || !strings.Contains(err.Error(), "TAKT_KAFKA_TLS") {
			t.Errorf("%s: Validate = %v, want an error naming TAKT_KAFKA_TLS*", name, err)
		}
	}
}

func TestServerValidate(t *testing.T) {
	for name, tc := range map[string]struct {
		s    Server
		want []string
	}{
		"off":           {Server{CheckEvery: time.Second}, nil},
		"both":          {Server{CertFile: "c", KeyFile: "k", CheckEvery: time.Second}, nil},
		"cert only":     {Server{CertFile: "c", CheckEvery: time.Second}, []string{"TAKT_TLS_KEY"}},
		"only, no cert": {Server{Only: true}, []string{"TAKT_TLS_ONLY", "TAKT_TLS_RELOAD_CHECK"}},
	} {
		err := tc.s.Validate()
		if (err == nil) != (tc.want == nil) {
			t.Errorf("%s: Validate = %v", name, err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %v does not name %s", name, err, w)
			}
		}
	}
}
