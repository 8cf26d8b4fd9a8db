// Package httpx is the HTTP plumbing Takt's gin services share: an engine in
// release mode with panic recovery, the JSON error envelope, the probes of
// the public ports, the admin listener (health, metrics, profiles; see
// admin.go), and a server that shuts down gracefully when its context
// ends.
//
// It stays small on purpose: each service owns its routes and the mapping of
// its errors to answers; httpx only removes the boilerplate around them.
package httpx

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"
)

// DrainTimeout is how long Serve waits for in-flight requests after its
// context ended before it closes the remaining connections.
const DrainTimeout = 15 * time.Second

// NewEngine returns a gin engine in release mode with a recovery middleware
// that logs panics through logger and answers 500 with the error envelope.
// It installs no request logger: services log what matters to them.
func NewEngine(logger *slog.Logger) *gin.Engine {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	// Behind a load balancer the client address is not ours to trust by
	// default; services that need it configure trusted proxies themselves.
	_ = r.SetTrustedProxies(nil)
	r.Use(Recovery(logger))
	r.NoRoute(func(c *gin.Context) { Error(c, http.StatusNotFound, "Not found") })
	r.HandleMethodNotAllowed = true
	r.NoMethod(func(c *gin.Context) { Error(c, http.StatusMethodNotAllowed, "Method not allowed") })
	return r
}

// Recovery turns a panic in a handler into a logged error and a 500 answer
// {"error":"Internal server error"}. http.ErrAbortHandler is re-raised: it
// is net/http's way to abort a response on purpose.
func Recovery(logger *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
				panic(v)
			}
			logger.Error("handler panic", "method", c.Request.Method, "path", c.Request.URL.Path, "panic", fmt.Sprint(v))
			if !c.Writer.Written() {
				Error(c, http.StatusInternalServerError, "Internal server error")
			}
			c.Abort()
		}()
		c.Next()
	}
}

// Error answers status with the body {"error": msg} and aborts the chain.
func Error(c *gin.Context, status int, msg string) {
	c.Abort()
	JSON(c, status, errorBody{Error: msg})
}

type errorBody struct {
	Error string `json:"error"`
}

// JSON answers status with v encoded by encoding/json. Unlike gin's
// renderer it sets Content-Length, so small answers need no chunking.
func JSON(c *gin.Context, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"Internal server error"}`)
	}
	Raw(c, status, b)
}

// Raw answers status with a body that is already JSON (e.g. a prepared
// constant on a hot path).
func Raw(c *gin.Context, status int, body []byte) {
	h := c.Writer.Header()
	h["Content-Type"] = jsonContentType
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	c.Writer.WriteHeader(status)
	_, _ = c.Writer.Write(body)
}

var jsonContentType = []string{"application/json; charset=utf-8"}

// CountRequests returns a middleware that counts answered requests in
// <namespace>_http_requests_total{route, code}. route is the matched route
// pattern (or "unmatched"), so the label set stays small. Install it after
// Recovery (as on an engine from NewEngine).
func CountRequests(reg prometheus.Registerer, namespace string) (gin.HandlerFunc, error) {
	cv := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace,
		Name:      "http_requests_total",
		Help:      "HTTP requests answered, by route pattern and status code.",
	}, []string{"route", "code"})
	if reg != nil {
		if err := reg.Register(cv); err != nil {
			return nil, fmt.Errorf("register http request counter: %w", err)
		}
	}
	return func(c *gin.Context) {
		route := c.FullPath()
		if route == "" {
			route = "unmatched"
		}
		defer func() {
			// A panic passes through here on its way to Recovery, which
			// will answer 500: count it as such.
			if v := recover(); v != nil {
				cv.WithLabelValues(route, "500").Inc()
				panic(v)
			}
		}()
		c.Next()
		cv.WithLabelValues(route, strconv.Itoa(c.Writer.Status())).Inc()
	}, nil
}

// Serve listens on addr and serves h until ctx ends, then shuts down
// gracefully (see ServeListener).
func Serve(ctx context.Context, addr string, h http.Handler, logger *slog.Logger) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	return ServeListener(ctx, ln, h, logger)
}

// ServeListener serves h on ln until ctx ends. Then it stops accepting
// connections and waits up to DrainTimeout for in-flight requests to finish
// before closing what is left. It returns nil after a shutdown that ctx
// asked for, and the server's error otherwise.
//
// Request contexts are not derived from ctx: a request in flight when the
// shutdown starts runs to its end instead of being cancelled half-way.
func ServeListener(ctx context.Context, ln net.Listener, h http.Handler, logger *slog.Logger) error {
	return serve(ctx, ln, h, nil, logger)
}

// ServeListenerTLS is ServeListener over TLS with cfg (whose certificate
// comes from cfg.GetCertificate or cfg.Certificates). It speaks HTTP/2 and
// HTTP/1.1, chosen by ALPN.
func ServeListenerTLS(ctx context.Context, ln net.Listener, h http.Handler, cfg *tls.Config, logger *slog.Logger) error {
	return serve(ctx, ln, h, cfg, logger)
}

// Listeners are the addresses a service answers HTTP on: Plain without
// TLS, TLS with TLSConfig; an empty address is not served.
type Listeners struct {
	Plain     string
	TLS       string
	TLSConfig *tls.Config
}

// ServeAll listens on every address of l and serves h on each until ctx
// ends (see ServeListener). Both listeners are opened before either
// serves, so a port in use fails the start at once.
func ServeAll(ctx context.Context, l Listeners, h http.Handler, logger *slog.Logger) error {
	if l.TLS != "" && l.TLSConfig == nil {
		return errors.New("httpx: a TLS address without a TLS configuration")
	}
	var lc net.ListenConfig
	type listener struct {
		ln  net.Listener
		tls *tls.Config
	}
	var lns []listener
	for _, a := range []struct {
		addr string
		tls  *tls.Config
	}{{l.Plain, nil}, {l.TLS, l.TLSConfig}} {
		if a.addr == "" {
			continue
		}
		ln, err := lc.Listen(ctx, "tcp", a.addr)
		if err != nil {
			for _, o := range lns {
				o.ln.Close()
			}
			return fmt.Errorf("listen on %s: %w", a.addr, err)
		}
		lns = append(lns, listener{ln, a.tls})
	}
	if len(lns) == 0 {
		return errors.New("httpx: no address to listen on")
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, o := range lns {
		g.Go(func() error { return serve(gctx, o.ln, h, o.tls, logger) })
	}
	return g.Wait()
}

func serve(ctx context.Context, ln net.Listener, h http.Handler, tlsCfg *tls.Config, logger *slog.Logger) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	if tlsCfg != nil {
		// ServeTLS sets HTTP/2 up (ALPN "h2") on a copy of TLSConfig.
		srv.TLSConfig = tlsCfg.Clone()
		go func() { errc <- srv.ServeTLS(ln, "", "") }()
	} else {
		go func() { errc <- srv.Serve(ln) }()
	}
	logger.Info("http server listening", "addr", ln.Addr().String(), "tls", tlsCfg != nil)

	select {
	case err := <-errc:
		return fmt.Errorf("http server on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	logger.Info("http server shutting down", "addr", ln.Addr().String())
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DrainTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	<-errc // http.ErrServerClosed once Shutdown started
	if err != nil {
		srv.Close()
		return fmt.Errorf("http server on %s: drain: %w", ln.Addr(), err)
	}
	return nil
}

// NewRegistry returns a metrics registry with the Go runtime and process
// collectors, what every Takt service serves at /metrics besides its own.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}
