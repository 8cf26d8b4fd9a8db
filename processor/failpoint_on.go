//go:build takt_failpoints

package processor

import (
	"log/slog"
	"os"
	"strconv"
	"syscall"
)

// afterInsertFailpoint, in builds with the takt_failpoints tag (the crash
// tests build the binary so), kills the process with SIGKILL right after
// the Nth flush's blocks are in ClickHouse and before their offsets are
// committed, N = TAKT_FAILPOINT_CRASH_AFTER_INSERTS. That is the instant
// only the ClickHouse-side resume offset protects against.
func afterInsertFailpoint(logger *slog.Logger) func() {
	n, _ := strconv.Atoi(os.Getenv("TAKT_FAILPOINT_CRASH_AFTER_INSERTS"))
	if n <= 0 {
		return func() {}
	}
	count := 0
	return func() {
		count++
		if count == n {
			logger.Warn("failpoint: killing the process between insert and commit", "flush", count)
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal is on its way
		}
	}
}
