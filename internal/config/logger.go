package config

import (
	"fmt"
	"io"
	"log/slog"
)

// Logger returns the logger every Takt binary uses: TAKT_LOG_FORMAT json
// (default) or text, at TAKT_LOG_LEVEL (debug, info (default), warn,
// error), writing to w. A bad setting is returned as an error together
// with a usable logger at the defaults, so the caller can report it.
func Logger(e *Env, w io.Writer) (*slog.Logger, error) {
	var errs Problems
	var level slog.Level
	name := e.String("LOG_LEVEL", "info")
	if err := level.UnmarshalText([]byte(name)); err != nil {
		errs.Addf(true, "%sLOG_LEVEL=%q: must be debug, info, warn or error", Prefix, name)
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	switch format := e.String("LOG_FORMAT", "json"); format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), errs.Err()
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), errs.Err()
	default:
		errs.Addf(true, "%sLOG_FORMAT=%q: must be json or text", Prefix, format)
		return slog.New(slog.NewJSONHandler(w, opts)), fmt.Errorf("logger: %w", errs.Err())
	}
}
