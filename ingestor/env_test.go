package ingestor

import "github.com/takt/takt/internal/config"

// configEnv is a config.Env over a map, for tests.
type configEnv struct{ config.Env }

func newConfigEnv(kv map[string]string) *configEnv {
	e := &configEnv{}
	e.Lookup = func(k string) (string, bool) {
		v, ok := kv[k]
		return v, ok
	}
	return e
}
