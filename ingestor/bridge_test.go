package ingestor

import (
	"reflect"
	"strings"
	"testing"
)

func TestBridgeConfig(t *testing.T) {
	key := "takt_" + strings.Repeat("a", 40)
	ok := map[string]string{"TAKT_MQTT_BRIDGE_URL": "mqtt://10.0.0.5:1883", "TAKT_MQTT_BRIDGE_KEY": key}

	e := newConfigEnv(ok)
	cfg := ConfigFromEnv(&e.Env)
	if err := cfg.Validate(); err != nil {
		t.Fatalf("a bridge with defaults: %v", err)
	}
	b := cfg.Bridge
	if !b.Enabled() || b.Group != "takt" || !strings.HasPrefix(b.ClientID, "takt-ingestor-") || b.InFlight != 256 {
		t.Errorf("defaults: %+v", b)
	}
	if got, want := b.filters(), []string{"$share/takt/takt/parts/#"}; !reflect.DeepEqual(got, want) {
		t.Errorf("filters %q, want %q", got, want)
	}
	b.Group, b.Topics = "", []string{"takt/parts/#", "takt/parts"}
	if got, want := b.filters(), []string{"takt/parts/#", "takt/parts"}; !reflect.DeepEqual(got, want) {
		t.Errorf("filters without a group %q, want %q", got, want)
	}

	e = newConfigEnv(nil)
	if cfg := ConfigFromEnv(&e.Env); cfg.Bridge.Enabled() || cfg.Validate() != nil {
		t.Errorf("no URL: the bridge must be off and need nothing")
	}

	for _, tc := range []struct {
		name string
		set  map[string]string
		want string
	}{
		{"not an MQTT URL", map[string]string{"TAKT_MQTT_BRIDGE_URL": "http://10.0.0.5"}, "TAKT_MQTT_BRIDGE_URL"},
		{"no host", map[string]string{"TAKT_MQTT_BRIDGE_URL": "mqtt://"}, "TAKT_MQTT_BRIDGE_URL"},
		{"credentials in the URL", map[string]string{"TAKT_MQTT_BRIDGE_URL": "mqtt://u:p@10.0.0.5:1883"}, "no credentials in the URL"},
		{"mqtts without TLS", map[string]string{"TAKT_MQTT_BRIDGE_URL": "mqtts://10.0.0.5:8883"}, "TAKT_MQTT_BRIDGE_TLS=true"},
		{"TLS on plain", map[string]string{"TAKT_MQTT_BRIDGE_TLS": "true"}, "is not mqtts://"},
		{"no key", map[string]string{"TAKT_MQTT_BRIDGE_KEY": ""}, "TAKT_MQTT_BRIDGE_KEY"},
		{"not a key", map[string]string{"TAKT_MQTT_BRIDGE_KEY": "secret"}, "TAKT_MQTT_BRIDGE_KEY"},
		{"group with a slash", map[string]string{"TAKT_MQTT_BRIDGE_GROUP": "a/b"}, "TAKT_MQTT_BRIDGE_GROUP"},
		{"shared filter given", map[string]string{"TAKT_MQTT_BRIDGE_TOPICS": "$share/x/takt/parts/#"}, "TAKT_MQTT_BRIDGE_TOPICS"},
		{"in flight 0", map[string]string{"TAKT_MQTT_BRIDGE_INFLIGHT": "0"}, "TAKT_MQTT_BRIDGE_INFLIGHT"},
	} {
		kv := map[string]string{}
		for k, v := range ok {
			kv[k] = v
		}
		for k, v := range tc.set {
			kv[k] = v
		}
		e := newConfigEnv(kv)
		err := ConfigFromEnv(&e.Env).Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Validate: %v; want a problem with %s", tc.name, err, tc.want)
		}
	}
}
