//go:build !takt_failpoints

package processor

import (
	"log/slog"
	"time"
)

// afterInsertFailpoint returns the hook run between a flush's insert and
// its commit. Normal builds have none; see failpoint_on.go.
func afterInsertFailpoint(*slog.Logger) func() { return func() {} }

// afterPeriodsFailpoint returns the hook run after a batch's period states
// and rows are written, before its parts block.
func afterPeriodsFailpoint(*slog.Logger) func() { return func() {} }

// recomputeFailpoint returns the hook run once a recompute's period rows
// are stored, before their changes are produced.
func recomputeFailpoint(*slog.Logger) func() { return func() {} }

// clockFailpoint returns the wall clock of ticks: time.Now.
func clockFailpoint(*slog.Logger) func() time.Time { return time.Now }
