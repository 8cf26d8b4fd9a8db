package kafkax

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/takt/takt/internal/config"
	"github.com/takt/takt/internal/tlsx"
)

func envOf(vars map[string]string) *config.Env {
	return &config.Env{Lookup: func(k string) (string, bool) { v, ok := vars[k]; return v, ok }}
}

func TestSecurityValidate(t *testing.T) {
	for name, tc := range map[string]struct {
		vars map[string]string
		want []string // substrings of the error; nil: valid
	}{
		"none":       {nil, nil},
		"scram":      {map[string]string{"TAKT_KAFKA_SASL_MECHANISM": "scram-sha-512", "TAKT_KAFKA_SASL_USER": "u", "TAKT_KAFKA_SASL_PASSWORD": "p"}, nil},
		"plain+tls":  {map[string]string{"TAKT_KAFKA_SASL_MECHANISM": "PLAIN", "TAKT_KAFKA_SASL_USER": "u", "TAKT_KAFKA_SASL_PASSWORD": "p", "TAKT_KAFKA_TLS": "true"}, nil},
		"plain bare": {map[string]string{"TAKT_KAFKA_SASL_MECHANISM": "PLAIN", "TAKT_KAFKA_SASL_USER": "u", "TAKT_KAFKA_SASL_PASSWORD": "p"}, []string{"clear text"}},
		"no creds":   {map[string]string{"TAKT_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256"}, []string{"TAKT_KAFKA_SASL_USER", "TAKT_KAFKA_SASL_PASSWORD"}},
		"unknown":    {map[string]string{"TAKT_KAFKA_SASL_MECHANISM": "GSSAPI"}, []string{"GSSAPI"}},
		"user alone": {map[string]string{"TAKT_KAFKA_SASL_USER": "u"}, []string{"TAKT_KAFKA_SASL_MECHANISM is empty"}},
	} {
		err := SecurityFromEnv(envOf(tc.vars)).Validate()
		if (err == nil) != (tc.want == nil) {
			t.Errorf("%s: Validate = %v", name, err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %v does not say %q", name, err, w)
			}
		}
	}
}

// TestSecurityAgainstBroker runs a broker that wants TLS and SCRAM and
// produces through NewClient with the settings a deployment would give.
func TestSecurityAgainstBroker(t *testing.T) {
	dir := t.TempDir()
	files, _, err := tlsx.LocalCA(dir, []string{"127.0.0.1", "localhost"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	certs, err := tlsx.NewReloader(files.Cert, files.Key, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.TLS(certs.Config()), kfake.EnableSASL(),
		kfake.Superuser("SCRAM-SHA-256", "takt", "s3cret"), kfake.SeedTopics(1, "parts"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	produce := func(vars map[string]string) error {
		sec := SecurityFromEnv(envOf(vars))
		if err := sec.Validate(); err != nil {
			t.Fatal(err)
		}
		cl, err := NewClient(Config{Brokers: c.ListenAddrs(), ProduceTopic: "parts", Security: sec},
			slog.New(slog.NewTextHandler(io.Discard, nil)), kgo.RequestRetries(0), kgo.RetryTimeout(2*time.Second))
		if err != nil {
			return err
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return cl.ProduceSync(ctx, &kgo.Record{Value: []byte("x")}).FirstErr()
	}
	good := map[string]string{
		"TAKT_KAFKA_TLS": "true", "TAKT_KAFKA_TLS_CA": files.CA,
		"TAKT_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256", "TAKT_KAFKA_SASL_USER": "takt", "TAKT_KAFKA_SASL_PASSWORD": "s3cret",
	}
	if err := produce(good); err != nil {
		t.Fatalf("produce with TLS and SCRAM: %v", err)
	}
	bad := map[string]string{}
	for k, v := range good {
		bad[k] = v
	}
	bad["TAKT_KAFKA_SASL_PASSWORD"] = "wrong"
	if err := produce(bad); err == nil {
		t.Error("produce with a wrong password succeeded")
	}
	delete(bad, "TAKT_KAFKA_TLS_CA")
	bad["TAKT_KAFKA_SASL_PASSWORD"] = "s3cret"
	if err := produce(bad); err == nil {
		t.Error("produce to a broker whose certificate is not trusted succeeded")
	}
}
