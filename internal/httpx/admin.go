package httpx

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The admin listener (TAKT_ADMIN_ADDR) is where operators look inside a
// service: /healthz, /readyz with the reason a dependency fails, /metrics
// and the Go profiles under /debug/pprof/. It is on loopback by default
// and never on the public ports: metrics name internals, a readiness
// failure quotes addresses of the systems behind the service, and a CPU
// profile costs CPU.
//
// The public ports keep /healthz and /readyz without reasons (Probes),
// because a load balancer probes the port it sends traffic to.

// readyTimeout bounds one readiness check.
const readyTimeout = 5 * time.Second

var (
	bodyOK          = []byte(`{"status":"ok"}`)
	bodyUnavailable = []byte(`{"status":"unavailable"}`)
)

// Admin returns the handler of a service's admin listener: GET /healthz
// (always 200), GET /readyz (200, or 503 with the reason ready gives),
// GET /metrics (g in the Prometheus text format; none when g is nil) and
// the runtime profiles under /debug/pprof/. ready is called with a
// 5-second bound and should honour its context; nil means always ready.
func Admin(ready func(ctx context.Context) error, g prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, bodyOK)
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := checkReady(r.Context(), ready); err != nil {
			b, _ := json.Marshal(struct {
				Status string `json:"status"`
				Error  string `json:"error"`
			}{"unavailable", err.Error()})
			writeJSON(w, http.StatusServiceUnavailable, b)
			return
		}
		writeJSON(w, http.StatusOK, bodyOK)
	})
	if g != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	}
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return mux
}

// Probes adds the public ports' GET /healthz (always 200) and GET /readyz
// (200, or 503 without the reason: that is on the admin listener) to r.
func Probes(r gin.IRoutes, ready func(ctx context.Context) error) {
	r.GET("/healthz", func(c *gin.Context) { Raw(c, http.StatusOK, bodyOK) })
	r.GET("/readyz", func(c *gin.Context) {
		if checkReady(c.Request.Context(), ready) != nil {
			Raw(c, http.StatusServiceUnavailable, bodyUnavailable)
			return
		}
		Raw(c, http.StatusOK, bodyOK)
	})
}

func checkReady(ctx context.Context, ready func(ctx context.Context) error) error {
	if ready == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	return ready(ctx)
}

func writeJSON(w http.ResponseWriter, status int, b []byte) {
	w.Header().Set("Content-Type", jsonContentType[0])
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// ServeAdmin serves h on addr until ctx ends (see ServeListener); an empty
// addr serves nothing and returns when ctx ends. An address that is not
// loopback is served, with a warning: the listener has no authentication.
func ServeAdmin(ctx context.Context, addr string, h http.Handler, logger *slog.Logger) error {
	if addr == "" {
		<-ctx.Done()
		return nil
	}
	if !Loopback(addr) {
		logger.Warn("admin listener is not on loopback: metrics, readiness reasons and profiles are open to whoever reaches it",
			"addr", addr)
	}
	return Serve(ctx, addr, h, logger.With("listener", "admin"))
}

// Loopback reports whether addr (host:port) listens on a loopback address
// only: 127.0.0.0/8, ::1 or localhost. An empty host (all interfaces) is
// not loopback.
func Loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
