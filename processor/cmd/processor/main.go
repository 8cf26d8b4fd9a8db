// Command processor runs Takt's processor; see package processor. Settings come from
// TAKT_* environment variables (see the README).
package main

import (
	"github.com/takt/takt/internal/config"
	"github.com/takt/takt/processor"
)

func main() { config.Main("processor", processor.ConfigFromEnv, processor.Run) }
