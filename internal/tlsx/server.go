// Package tlsx is Takt's TLS: the server side of every listener (ingest,
// query and MQTT), the client side towards Kafka, ClickHouse and Redis, and
// a local certificate authority for development machines.
//
// A server certificate is read from its files and read again on SIGHUP or
// when either file changes (checked every few seconds), so a renewed
// certificate takes effect without a restart; connections already open
// keep the certificate they were made with. A reload that fails (a
// half-written file, a key that does not match) keeps the previous
// certificate and is logged.
//
// Every configuration this package makes requires TLS 1.2 at least.
package tlsx

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/takt/takt/internal/config"
)

// MinVersion is the oldest TLS version Takt speaks, as server and client.
const MinVersion = tls.VersionTLS12

// Server is the TLS configuration of a service's listeners.
type Server struct {
	// CertFile and KeyFile are the PEM certificate chain and private key
	// (TAKT_TLS_CERT, TAKT_TLS_KEY). Both empty: no TLS listeners.
	CertFile string
	KeyFile  string
	// Only turns the plain (unencrypted) listeners off (TAKT_TLS_ONLY).
	Only bool
	// CheckEvery is how often the files are checked for changes
	// (TAKT_TLS_RELOAD_CHECK); SIGHUP reloads at once.
	CheckEvery time.Duration
}

// ServerFromEnv reads TAKT_TLS_*.
func ServerFromEnv(e *config.Env) Server {
	return Server{
		CertFile:   e.String("TLS_CERT", ""),
		KeyFile:    e.String("TLS_KEY", ""),
		Only:       e.Bool("TLS_ONLY", false),
		CheckEvery: e.Duration("TLS_RELOAD_CHECK", 5*time.Second),
	}
}

// Enabled reports whether a certificate is configured.
func (s Server) Enabled() bool { return s.CertFile != "" || s.KeyFile != "" }

// Validate reports every problem with s. It does not read the files: a
// service reports those when it starts.
func (s Server) Validate() error {
	var p config.Problems
	p.Addf(s.CertFile != "" && s.KeyFile == "", "TAKT_TLS_KEY: empty, but TAKT_TLS_CERT is set")
	p.Addf(s.KeyFile != "" && s.CertFile == "", "TAKT_TLS_CERT: empty, but TAKT_TLS_KEY is set")
	p.Addf(s.Only && !s.Enabled(), "TAKT_TLS_ONLY=true: needs TAKT_TLS_CERT and TAKT_TLS_KEY")
	p.Addf(s.CheckEvery <= 0, "TAKT_TLS_RELOAD_CHECK=%s: must be positive", s.CheckEvery)
	return p.Err()
}

// Load reads the certificate of s: nil (and no error) when s has none.
func (s Server) Load(logger *slog.Logger) (*Reloader, error) {
	if !s.Enabled() {
		return nil, nil
	}
	return NewReloader(s.CertFile, s.KeyFile, logger)
}

// Reloader holds a server certificate and reloads it from its files. It is
// safe for concurrent use.
type Reloader struct {
	certFile, keyFile string
	logger            *slog.Logger

	cert atomic.Pointer[tls.Certificate]

	mu    sync.Mutex // serialises reloads
	stamp []byte     // what the files looked like at the last load
}

// NewReloader loads the certificate and key; it fails when they cannot be
// read or do not match.
func NewReloader(certFile, keyFile string, logger *slog.Logger) (*Reloader, error) {
	r := &Reloader{certFile: certFile, keyFile: keyFile, logger: logger}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Reload reads the files again; on an error the certificate in use stays.
func (r *Reloader) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	stamp := r.fileStamp()
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("load TLS certificate %s, key %s: %w", r.certFile, r.keyFile, err)
	}
	r.cert.Store(&cert)
	r.stamp = stamp
	return nil
}

// fileStamp is the size and modification time of both files; a change of
// either means the certificate may have been replaced.
func (r *Reloader) fileStamp() []byte {
	var b []byte
	for _, name := range []string{r.certFile, r.keyFile} {
		if fi, err := os.Stat(name); err == nil {
			b = fmt.Appendf(b, "%d:%d;", fi.Size(), fi.ModTime().UnixNano())
		} else {
			b = append(b, "missing;"...)
		}
	}
	return b
}

// changed reports whether the files differ from the last load.
func (r *Reloader) changed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return !bytes.Equal(r.stamp, r.fileStamp())
}

// Certificate returns the certificate in use.
func (r *Reloader) Certificate() *tls.Certificate { return r.cert.Load() }

// GetCertificate is tls.Config.GetCertificate: the certificate in use.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.cert.Load(), nil
}

// Config returns a server configuration that serves the certificate in
// use (nil for a nil Reloader). HTTP servers add their protocols (h2)
// themselves.
func (r *Reloader) Config() *tls.Config {
	if r == nil {
		return nil
	}
	return &tls.Config{MinVersion: MinVersion, GetCertificate: r.GetCertificate}
}

// Run reloads the certificate on SIGHUP and whenever its files change
// (checked every checkEvery), until ctx ends. It returns nil at once for a
// nil Reloader, and nil at the end (errgroup-shaped).
func (r *Reloader) Run(ctx context.Context, checkEvery time.Duration) error {
	if r == nil {
		return nil
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	tick := time.NewTicker(checkEvery)
	defer tick.Stop()
	for {
		var why string
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			why = "SIGHUP"
		case <-tick.C:
			if !r.changed() {
				continue
			}
			why = "files changed"
		}
		if err := r.Reload(); err != nil {
			r.logger.Error("TLS certificate not reloaded; the previous one stays in use", "why", why, "err", err)
			continue
		}
		leaf := r.cert.Load().Leaf
		attrs := []any{"why", why, "cert", r.certFile}
		if leaf != nil {
			attrs = append(attrs, "not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
		}
		r.logger.Info("TLS certificate reloaded", attrs...)
	}
}
