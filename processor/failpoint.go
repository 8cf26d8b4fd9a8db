//go:build !takt_failpoints

package processor

import "log/slog"

// afterInsertFailpoint returns the hook run between a flush's insert and
// its commit. Normal builds have none; see failpoint_on.go.
func afterInsertFailpoint(*slog.Logger) func() { return func() {} }
