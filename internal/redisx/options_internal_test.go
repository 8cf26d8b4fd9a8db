package redisx

import (
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/takt/takt/internal/config"
	"github.com/takt/takt/internal/tlsx"
)

// TestOptionsTLSAndUser: the settings of a Redis that wants TLS and an ACL
// user reach the client.
func TestOptionsTLSAndUser(t *testing.T) {
	files, _, err := tlsx.LocalCA(t.TempDir(), []string{"127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{
		"TAKT_REDIS_ADDR": "cache:6380", "TAKT_REDIS_USER": "takt", "TAKT_REDIS_PASSWORD": "pw",
		"TAKT_REDIS_TLS": "true", "TAKT_REDIS_TLS_CA": files.CA,
	}
	cfg := ConfigFromEnv(&config.Env{Lookup: func(k string) (string, bool) { v, ok := vars[k]; return v, ok }})
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	o, err := options(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if o.Addr != "cache:6380" || o.Username != "takt" || o.Password != "pw" {
		t.Errorf("addr %q user %q password %q", o.Addr, o.Username, o.Password)
	}
	if o.TLSConfig == nil || o.TLSConfig.RootCAs == nil || o.TLSConfig.MinVersion != tls.VersionTLS12 {
		t.Fatalf("TLS = %+v", o.TLSConfig)
	}
	if o := NewClient("a:1", "pw").Options(); o.TLSConfig != nil || o.Password != "pw" || !o.ContextTimeoutEnabled {
		t.Errorf("NewClient: TLS %v, password %q", o.TLSConfig, o.Password)
	}

	cfg.Password = ""
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "TAKT_REDIS_USER") {
		t.Errorf("user without password: %v", err)
	}
}
