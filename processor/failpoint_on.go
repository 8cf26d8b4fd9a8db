//go:build takt_failpoints

package processor

import (
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
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

// afterPeriodsFailpoint kills the process with SIGKILL right after the
// Nth batch's period states and rows are written and before its parts
// block, N = TAKT_FAILPOINT_CRASH_AFTER_PERIODS: the instant only the
// saved outbox and the machines' idempotence protect against.
func afterPeriodsFailpoint(logger *slog.Logger) func() {
	n, _ := strconv.Atoi(os.Getenv("TAKT_FAILPOINT_CRASH_AFTER_PERIODS"))
	if n <= 0 {
		return func() {}
	}
	var count atomic.Int32
	return func() {
		if int(count.Add(1)) == n {
			logger.Warn("failpoint: killing the process between period rows and parts", "batch", n)
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
	}
}

// recomputeFailpoint kills the process with SIGKILL once the Nth
// recompute's period rows are stored and before their changes are on the
// change feed, N = TAKT_FAILPOINT_CRASH_IN_RECOMPUTE.
func recomputeFailpoint(logger *slog.Logger) func() {
	n, _ := strconv.Atoi(os.Getenv("TAKT_FAILPOINT_CRASH_IN_RECOMPUTE"))
	if n <= 0 {
		return func() {}
	}
	var count atomic.Int32
	return func() {
		if int(count.Add(1)) == n {
			logger.Warn("failpoint: killing the process between a recompute's period rows and their changes", "recompute", n)
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
	}
}

// clockFailpoint, when TAKT_FAILPOINT_CLOCK_FILE names a file, reads the
// tick clock from it (an RFC 3339 time; a missing or empty file is the
// Unix epoch, which ticks nothing), so a test can replay a scenario's
// wall-clock time in a processor it kills.
func clockFailpoint(logger *slog.Logger) func() time.Time {
	file := os.Getenv("TAKT_FAILPOINT_CLOCK_FILE")
	if file == "" {
		return time.Now
	}
	return func() time.Time {
		b, err := os.ReadFile(file)
		if err != nil || len(strings.TrimSpace(string(b))) == 0 {
			return time.Unix(0, 0)
		}
		t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(string(b)))
		if err != nil {
			logger.Warn("failpoint clock file does not parse", "file", file, "err", err)
			return time.Unix(0, 0)
		}
		return t
	}
}
