package chstore

import (
	"crypto/tls"
	"testing"
	"time"

	"github.com/takt/takt/internal/config"
	"github.com/takt/takt/internal/tlsx"
)

// TestOptionsTLSAndUser: the settings of a ClickHouse that wants TLS and a
// user with a password reach the driver.
func TestOptionsTLSAndUser(t *testing.T) {
	files, _, err := tlsx.LocalCA(t.TempDir(), []string{"127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{
		"TAKT_CLICKHOUSE_ADDR": "ch1:9440,ch2:9440", "TAKT_CLICKHOUSE_USER": "takt",
		"TAKT_CLICKHOUSE_PASSWORD": "pw", "TAKT_CLICKHOUSE_TLS": "true", "TAKT_CLICKHOUSE_TLS_CA": files.CA,
		"TAKT_CLICKHOUSE_TLS_SERVER_NAME": "clickhouse.internal",
	}
	cfg := ConfigFromEnv(&config.Env{Lookup: func(k string) (string, bool) { v, ok := vars[k]; return v, ok }})
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	o, err := options(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if o.Auth.Username != "takt" || o.Auth.Password != "pw" || len(o.Addr) != 2 {
		t.Errorf("auth %q/%q addr %v", o.Auth.Username, o.Auth.Password, o.Addr)
	}
	if o.TLS == nil || o.TLS.RootCAs == nil || o.TLS.ServerName != "clickhouse.internal" || o.TLS.MinVersion != tls.VersionTLS12 {
		t.Fatalf("TLS = %+v", o.TLS)
	}

	cfg.TLS = tlsx.Client{}
	if o, err := options(cfg); err != nil || o.TLS != nil {
		t.Errorf("TLS off: %v, %v", o.TLS, err)
	}
	cfg.TLS = tlsx.Client{Enabled: true, CAFile: files.Key}
	if err := cfg.Validate(); err == nil {
		t.Error("a CA file without certificates passed Validate")
	}
}
