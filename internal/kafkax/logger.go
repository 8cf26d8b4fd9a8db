package kafkax

import (
	"context"
	"log/slog"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Logger is a kgo.Logger writing to an slog.Logger.
type Logger struct {
	l    *slog.Logger
	most kgo.LogLevel
}

// NewLogger returns a kgo.Logger that logs to l at l's level, but never more
// verbosely than most (kgo.LogLevelWarn keeps a client to its warnings and
// errors).
func NewLogger(l *slog.Logger, most kgo.LogLevel) Logger { return Logger{l: l, most: most} }

// Level is the most verbose level l is enabled for, capped at most.
func (k Logger) Level() kgo.LogLevel {
	ctx := context.Background()
	lvl := kgo.LogLevelError
	switch {
	case k.l.Enabled(ctx, slog.LevelDebug):
		lvl = kgo.LogLevelDebug
	case k.l.Enabled(ctx, slog.LevelInfo):
		lvl = kgo.LogLevelInfo
	case k.l.Enabled(ctx, slog.LevelWarn):
		lvl = kgo.LogLevelWarn
	}
	return min(lvl, k.most)
}

// Log writes one franz-go log line.
func (k Logger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	l := slog.LevelDebug
	switch level {
	case kgo.LogLevelError:
		l = slog.LevelError
	case kgo.LogLevelWarn:
		l = slog.LevelWarn
	case kgo.LogLevelInfo:
		l = slog.LevelInfo
	}
	k.l.Log(context.Background(), l, msg, keyvals...)
}
