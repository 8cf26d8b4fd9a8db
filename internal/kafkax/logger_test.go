package kafkax

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestLevelsAndLines(t *testing.T) {
	var buf bytes.Buffer
	info := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	debug := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	errOnly := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelError}))
	for _, tc := range []struct {
		l    *slog.Logger
		most kgo.LogLevel
		want kgo.LogLevel
	}{
		{info, kgo.LogLevelDebug, kgo.LogLevelInfo},
		{debug, kgo.LogLevelDebug, kgo.LogLevelDebug},
		{debug, kgo.LogLevelWarn, kgo.LogLevelWarn},
		{errOnly, kgo.LogLevelDebug, kgo.LogLevelError},
	} {
		if got := NewLogger(tc.l, tc.most).Level(); got != tc.want {
			t.Errorf("Level() = %v, want %v", got, tc.want)
		}
	}
	NewLogger(info, kgo.LogLevelDebug).Log(kgo.LogLevelWarn, "broker gone", "broker", 3)
	if s := buf.String(); !strings.Contains(s, "level=WARN") || !strings.Contains(s, "broker gone") || !strings.Contains(s, "broker=3") {
		t.Fatalf("logged %q", s)
	}
}
