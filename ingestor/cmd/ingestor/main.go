// Command ingestor runs Takt's ingestor; see package ingestor. Settings come from
// TAKT_* environment variables (see the README).
package main

import (
	"github.com/takt/takt/ingestor"
	"github.com/takt/takt/internal/config"
)

func main() { config.Main("ingestor", ingestor.ConfigFromEnv, ingestor.Run) }
