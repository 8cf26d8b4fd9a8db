package httpx

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/takt/takt/internal/tlsx"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TLSClient returns an HTTP client that trusts caFile and may speak
// HTTP/2.
func tlsClient(t *testing.T, caFile string) *http.Client {
	t.Helper()
	cfg, err := tlsx.Client{Enabled: true, CAFile: caFile}.Config()
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Timeout: 5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}}
}

func TestServeAllPlainAndTLS(t *testing.T) {
	files, _, err := tlsx.LocalCA(t.TempDir(), []string{"127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	certs, err := tlsx.NewReloader(files.Cert, files.Key, quiet)
	if err != nil {
		t.Fatal(err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.Proto) })

	for _, tc := range []struct {
		name  string
		plain bool
	}{{"plain and TLS", true}, {"TLS only", false}} {
		t.Run(tc.name, func(t *testing.T) {
			l := Listeners{Plain: freeAddr(t), TLS: freeAddr(t), TLSConfig: certs.Config()}
			plainAddr := l.Plain
			if !tc.plain {
				l.Plain = ""
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- ServeAll(ctx, l, h, quiet) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("ServeAll: %v", err)
				}
			}()

			c := tlsClient(t, files.CA)
			var resp *http.Response
			for deadline := time.Now().Add(5 * time.Second); ; {
				resp, err = c.Get("https://" + l.TLS + "/")
				if err == nil || time.Now().After(deadline) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if err != nil {
				t.Fatalf("HTTPS: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.ProtoMajor != 2 || string(body) != "HTTP/2.0" {
				t.Errorf("HTTPS answered over %s (handler saw %q), want HTTP/2", resp.Proto, body)
			}

			resp, err = http.Get("http://" + plainAddr + "/")
			if tc.plain {
				if err != nil {
					t.Fatalf("plain HTTP: %v", err)
				}
				resp.Body.Close()
			} else if err == nil || !errors.Is(err, syscall.ECONNREFUSED) {
				if err == nil {
					resp.Body.Close()
				}
				t.Errorf("plain HTTP with TLS only: err %v, want connection refused", err)
			}

			// HTTP/1.1 clients are served on the TLS listener too.
			c1 := tlsClient(t, files.CA)
			c1.Transport.(*http.Transport).ForceAttemptHTTP2 = false
			if resp, err := c1.Get("https://" + l.TLS + "/"); err != nil || resp.ProtoMajor != 1 {
				t.Errorf("HTTPS/1.1: %v", err)
			} else {
				resp.Body.Close()
			}
			// A client that does not trust the CA fails the handshake.
			if _, err := (&http.Client{Timeout: 5 * time.Second}).Get("https://" + l.TLS + "/"); err == nil {
				t.Error("a client without the CA was served")
			}
			old := &tls.Config{MaxVersion: tls.VersionTLS11, InsecureSkipVerify: true}
			if conn, err := tls.Dial("tcp", l.TLS, old); err == nil {
				conn.Close()
				t.Error("TLS 1.1 accepted")
			}
		})
	}
}
