package httpx

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func do(h http.Handler, method, path string) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(method, path, nil))
	return w
}

func TestEngine(t *testing.T) {
	reg := prometheus.NewRegistry()
	count, err := CountRequests(reg, "takt_test")
	if err != nil {
		t.Fatal(err)
	}
	ready := errors.New("clickhouse: connection refused")
	r := NewEngine(quiet)
	r.Use(count)
	Probes(r, func(ctx context.Context) error { return ready })
	r.GET("/panic", func(c *gin.Context) { panic("boom") })
	r.GET("/err", func(c *gin.Context) { Error(c, 422, `bad "thing"`) })

	tests := []struct {
		method, path string
		code         int
		body         string
	}{
		{"GET", "/healthz", 200, `{"status":"ok"}`},
		// The public probe gives no reason: it would quote internal
		// addresses to anyone (the admin listener has it).
		{"GET", "/readyz", 503, `{"status":"unavailable"}`},
		{"GET", "/metrics", 404, `{"error":"Not found"}`},
		{"GET", "/debug/pprof/", 404, `{"error":"Not found"}`},
		{"GET", "/panic", 500, `{"error":"Internal server error"}`},
		{"GET", "/err", 422, `{"error":"bad \"thing\""}`},
		{"GET", "/nowhere", 404, `{"error":"Not found"}`},
		{"POST", "/healthz", 405, `{"error":"Method not allowed"}`},
	}
	for _, tt := range tests {
		w := do(r, tt.method, tt.path)
		if w.Code != tt.code || w.Body.String() != tt.body {
			t.Errorf("%s %s: %d %s; want %d %s", tt.method, tt.path, w.Code, w.Body, tt.code, tt.body)
		}
		if ct := w.Header().Get("Content-Type"); ct != "application/json; charset=utf-8" {
			t.Errorf("%s %s: content type %q", tt.method, tt.path, ct)
		}
	}
	ready = nil
	if w := do(r, "GET", "/readyz"); w.Code != 200 {
		t.Errorf("readyz when ready: %d", w.Code)
	}
	w := do(Admin(nil, reg), "GET", "/metrics")
	if w.Code != 200 || !strings.Contains(w.Body.String(), `takt_test_http_requests_total{code="500",route="/panic"} 1`) {
		t.Errorf("metrics: %d\n%s", w.Code, w.Body)
	}
}

func TestAdmin(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "takt_test_things_total", Help: "Things."})
	c.Add(3)
	reg.MustRegister(c)
	ready := errors.New("clickhouse: dial tcp 10.0.0.5:9000: connection refused")
	h := Admin(func(ctx context.Context) error {
		if _, ok := ctx.Deadline(); !ok {
			t.Error("readiness check without a deadline")
		}
		return ready
	}, reg)
	tests := []struct {
		method, path string
		code         int
		want         string
	}{
		{"GET", "/healthz", 200, `{"status":"ok"}`},
		{"GET", "/readyz", 503, `{"status":"unavailable","error":"clickhouse: dial tcp 10.0.0.5:9000: connection refused"}`},
		{"GET", "/metrics", 200, "takt_test_things_total 3"},
		{"GET", "/debug/pprof/", 200, "goroutine"},
		{"GET", "/debug/pprof/goroutine?debug=1", 200, "goroutine profile"},
		{"GET", "/debug/pprof/cmdline", 200, ""},
		{"POST", "/healthz", 405, ""},
		{"GET", "/api/1.0/parts/", 404, ""},
	}
	for _, tt := range tests {
		w := do(h, tt.method, tt.path)
		if w.Code != tt.code || !strings.Contains(w.Body.String(), tt.want) {
			t.Errorf("%s %s: %d %.200s; want %d with %q", tt.method, tt.path, w.Code, w.Body, tt.code, tt.want)
		}
	}
	ready = nil
	if w := do(h, "GET", "/readyz"); w.Code != 200 || w.Body.String() != `{"status":"ok"}` {
		t.Errorf("readyz when ready: %d %s", w.Code, w.Body)
	}
}

func TestLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:18090": true, "127.0.0.2:1": true, "[::1]:18090": true, "localhost:18090": true,
		":18090": false, "0.0.0.0:18090": false, "[::]:1": false, "10.0.0.5:18090": false, "example.com:80": false, "nonsense": false,
	} {
		if got := Loopback(addr); got != want {
			t.Errorf("Loopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

func TestServeAdmin(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeAdmin(ctx, "", nil, quiet) }()
	select {
	case err := <-done:
		t.Fatalf("ServeAdmin without an address returned before its context ended: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("ServeAdmin without an address: %v", err)
	}
	// A port in use fails the start.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := ServeAdmin(context.Background(), ln.Addr().String(), Admin(nil, nil), quiet); err == nil {
		t.Fatal("ServeAdmin on a busy port returned nil")
	}
}

func TestServeDrainsInFlightRequests(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	release := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		io.WriteString(w, "done")
	})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- ServeListener(ctx, ln, mux, quiet) }()

	got := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String() + "/slow")
		if err != nil {
			got <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		got <- string(b)
	}()
	<-started
	cancel() // shutdown begins while the request is in flight
	select {
	case err := <-served:
		t.Fatalf("server returned before the in-flight request finished: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if b := <-got; b != "done" {
		t.Fatalf("in-flight request got %q", b)
	}
	if err := <-served; err != nil {
		t.Fatalf("ServeListener: %v", err)
	}
	if _, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		t.Fatalf("still accepting connections after shutdown")
	}
}

func TestServeBadAddress(t *testing.T) {
	if err := Serve(context.Background(), "256.0.0.1:bad", http.NotFoundHandler(), quiet); err == nil {
		t.Fatal("Serve on a bad address returned nil")
	}
}
