package tlsx

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/takt/takt/internal/config"
)

// Client is the TLS configuration of a connection from Takt to one outside
// system (Kafka, ClickHouse, Redis).
type Client struct {
	// Enabled turns TLS on (TAKT_<SYSTEM>_TLS).
	Enabled bool
	// CAFile is a PEM bundle of the authorities the server's certificate
	// must chain to (TAKT_<SYSTEM>_TLS_CA); empty: the system's roots.
	CAFile string
	// CertFile and KeyFile are a client certificate for servers that ask
	// for one (TAKT_<SYSTEM>_TLS_CERT, TAKT_<SYSTEM>_TLS_KEY).
	CertFile string
	KeyFile  string
	// ServerName overrides the name checked in the server's certificate
	// (TAKT_<SYSTEM>_TLS_SERVER_NAME); empty: the host dialled.
	ServerName string
	// Insecure skips the check of the server's certificate
	// (TAKT_<SYSTEM>_TLS_INSECURE): for trying things out only.
	Insecure bool

	system string // e.g. KAFKA, for messages
}

// ClientFromEnv reads TAKT_<system>_TLS and TAKT_<system>_TLS_*; system is
// e.g. "KAFKA".
func ClientFromEnv(e *config.Env, system string) Client {
	p := system + "_TLS"
	return Client{
		Enabled:    e.Bool(p, false),
		CAFile:     e.String(p+"_CA", ""),
		CertFile:   e.String(p+"_CERT", ""),
		KeyFile:    e.String(p+"_KEY", ""),
		ServerName: e.String(p+"_SERVER_NAME", ""),
		Insecure:   e.Bool(p+"_INSECURE", false),
		system:     system,
	}
}

func (c Client) name(suffix string) string {
	s := c.system
	if s == "" {
		s = "<SYSTEM>"
	}
	return config.Prefix + s + "_TLS" + suffix
}

// Validate reports every problem with c, reading the files it names.
func (c Client) Validate() error {
	var p config.Problems
	configured := c.CAFile != "" || c.CertFile != "" || c.KeyFile != "" || c.ServerName != "" || c.Insecure
	p.Addf(!c.Enabled && configured, "%s_*: set, but %s is not true", c.name(""), c.name(""))
	p.Addf((c.CertFile == "") != (c.KeyFile == ""), "%s and %s: give both or neither", c.name("_CERT"), c.name("_KEY"))
	if c.Enabled {
		if _, err := c.Config(); err != nil {
			p = append(p, err)
		}
	}
	return p.Err()
}

// Config returns the tls.Config of c, or nil when TLS is off.
func (c Client) Config() (*tls.Config, error) {
	if !c.Enabled {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: MinVersion, ServerName: c.ServerName, InsecureSkipVerify: c.Insecure}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.name("_CA"), err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s=%s: no PEM certificate in it", c.name("_CA"), c.CAFile)
		}
		cfg.RootCAs = pool
	}
	if c.CertFile != "" && c.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("%s, %s: %w", c.name("_CERT"), c.name("_KEY"), err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
