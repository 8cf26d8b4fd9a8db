// Command queryapi runs Takt's queryapi; see package queryapi. Settings come from
// TAKT_* environment variables (see the README).
package main

import (
	"github.com/takt/takt/internal/config"
	"github.com/takt/takt/queryapi"
)

func main() { config.Main("queryapi", queryapi.ConfigFromEnv, queryapi.Run) }
