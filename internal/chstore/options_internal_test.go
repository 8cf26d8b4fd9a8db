package chstore

import (
	"crypto/tls"
	"strings"
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

// TestOptionsCompression: blocks go uncompressed to a ClickHouse on this
// machine's loopback interface and LZ4-compressed to any other, unless
// TAKT_CLICKHOUSE_COMPRESSION says otherwise.
func TestOptionsCompression(t *testing.T) {
	tests := []struct {
		addr    []string
		setting string
		cluster string
		want    string
	}{
		{[]string{"127.0.0.1:19000"}, "", "", "none"},
		{[]string{"localhost:9000", "[::1]:9000", "127.0.0.2:9000"}, "auto", "", "none"},
		{[]string{"127.0.0.1:19000", "ch2:9000"}, "auto", "", "lz4"},
		{[]string{"10.0.0.5:9000"}, "", "", "lz4"},
		{[]string{"clickhouse.internal:9440"}, "auto", "", "lz4"},
		{[]string{"127.0.0.1:19000"}, "lz4", "", "lz4"},
		{[]string{"ch1:9000"}, "none", "", "none"},
		{[]string{"127.0.0.1:19000", "127.0.0.1:19200"}, "", "takt", "lz4"},
		{[]string{"127.0.0.1:19000", "127.0.0.1:19200"}, "none", "takt", "none"},
	}
	for _, tt := range tests {
		vars := map[string]string{"TAKT_CLICKHOUSE_ADDR": strings.Join(tt.addr, ",")}
		if tt.setting != "" {
			vars["TAKT_CLICKHOUSE_COMPRESSION"] = tt.setting
		}
		if tt.cluster != "" {
			vars["TAKT_CLICKHOUSE_CLUSTER"] = tt.cluster
		}
		cfg := ConfigFromEnv(&config.Env{Lookup: func(k string) (string, bool) { v, ok := vars[k]; return v, ok }})
		if err := cfg.Validate(); err != nil {
			t.Fatalf("%v %q: %v", tt.addr, tt.setting, err)
		}
		o, err := options(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if got := o.Compression.Method.String(); got != tt.want {
			t.Errorf("%v with %q: compression %s, want %s", tt.addr, tt.setting, got, tt.want)
		}
	}
	cfg := Config{Addr: []string{"127.0.0.1:19000"}, Database: "takt", MaxOpenConns: 1, Compression: "zstd"}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "TAKT_CLICKHOUSE_COMPRESSION") {
		t.Errorf("compression zstd: Validate = %v, want a TAKT_CLICKHOUSE_COMPRESSION error", err)
	}
}
