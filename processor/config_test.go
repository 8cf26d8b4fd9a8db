package processor

import (
	"strings"
	"testing"
	"time"

	"github.com/takt/takt/internal/config"
)

func envOf(m map[string]string) *config.Env {
	return &config.Env{Lookup: func(k string) (string, bool) { v, ok := m[k]; return v, ok }}
}

func TestConfigFromEnvDefaults(t *testing.T) {
	e := envOf(nil)
	c := ConfigFromEnv(e)
	if err := e.Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	if c.Topic != "takt.parts" || c.DLQTopic != "takt.parts.dlq" || c.Group != "takt-processor" ||
		c.BatchRows != DefaultBatchRows || DefaultBatchRows != 50000 || c.BatchInterval != 500*time.Millisecond || c.CycleTimeTolerance != 0.1 ||
		c.CatalogRefresh != 5*time.Second || c.Addr != "127.0.0.1:18082" ||
		len(c.Brokers) != 1 || c.Brokers[0] != "127.0.0.1:19092" || c.InstanceID != "" ||
		c.SessionTimeout != 45*time.Second {
		t.Errorf("defaults: %+v", c)
	}
}

func TestConfigFromEnvOverrides(t *testing.T) {
	e := envOf(map[string]string{
		"TAKT_KAFKA_BROKERS":            "a:1, b:2",
		"TAKT_PARTS_TOPIC":              "p",
		"TAKT_DLQ_TOPIC":                "d",
		"TAKT_CONSUMER_GROUP":           "g",
		"TAKT_CONSUMER_INSTANCE_ID":     "i",
		"TAKT_CONSUMER_SESSION_TIMEOUT": "6s",
		"TAKT_BATCH_ROWS":               "500",
		"TAKT_BATCH_INTERVAL":           "50ms",
		"TAKT_CYCLE_TIME_TOLERANCE":     "0.2",
		"TAKT_CATALOG_REFRESH":          "1m",
		"TAKT_PROCESSOR_ADDR":           "127.0.0.1:0",
	})
	c := ConfigFromEnv(e)
	if err := e.Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(c.Brokers) != 2 || c.Brokers[1] != "b:2" || c.Topic != "p" || c.DLQTopic != "d" || c.Group != "g" ||
		c.InstanceID != "i" || c.SessionTimeout != 6*time.Second || c.BatchRows != 500 ||
		c.BatchInterval != 50*time.Millisecond || c.CycleTimeTolerance != 0.2 || c.CatalogRefresh != time.Minute ||
		c.Addr != "127.0.0.1:0" {
		t.Errorf("overrides: %+v", c)
	}
}

func TestConfigValidateReportsEverything(t *testing.T) {
	e := envOf(map[string]string{
		"TAKT_PARTS_TOPIC":          "same",
		"TAKT_DLQ_TOPIC":            "same",
		"TAKT_BATCH_ROWS":           "0",
		"TAKT_BATCH_INTERVAL":       "-1s",
		"TAKT_CYCLE_TIME_TOLERANCE": "1.5",
		"TAKT_CATALOG_REFRESH":      "0s",
	})
	c := ConfigFromEnv(e)
	c.Group = ""
	err := c.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"TAKT_DLQ_TOPIC", "TAKT_BATCH_ROWS", "TAKT_BATCH_INTERVAL",
		"TAKT_CYCLE_TIME_TOLERANCE", "TAKT_CATALOG_REFRESH", "TAKT_CONSUMER_GROUP"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %s: %v", want, err)
		}
	}
	bad := envOf(map[string]string{"TAKT_BATCH_ROWS": "many", "TAKT_BATCH_INTERVAL": "soon"})
	ConfigFromEnv(bad)
	if err := bad.Err(); err == nil || !strings.Contains(err.Error(), "TAKT_BATCH_ROWS") || !strings.Contains(err.Error(), "TAKT_BATCH_INTERVAL") {
		t.Errorf("parse errors: %v", err)
	}
}
