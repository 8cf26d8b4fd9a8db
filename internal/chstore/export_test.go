package chstore

import (
	"context"

	"github.com/takt/takt/internal/record"
)

// RecordAreaByName returns how the area name of record.Takt is read.
func RecordAreaByName(name string) (*RecordArea, bool) {
	def, ok := record.Takt.Area(name)
	if !ok {
		return nil, false
	}
	a, err := NewRecordArea(def)
	if err != nil {
		panic(err)
	}
	return a, true
}

// RecordAreaNames returns the names of the areas of record.Takt, sorted.
func RecordAreaNames() []string {
	var names []string
	for _, a := range record.Takt.Areas() {
		names = append(names, a.Name)
	}
	return names
}

// ErrRollupsDisagree is errRollupsDisagree.
var ErrRollupsDisagree = errRollupsDisagree

// OnRollupsDisagree sets what runs before OEEParts reads again after
// finding the rollups apart (nil: nothing), and returns how to undo it.
func OnRollupsDisagree(f func()) (undo func()) {
	rollupsDisagreeHook = f
	return func() { rollupsDisagreeHook = nil }
}

// UnindexedRecordArea is RecordAreaByName without the area's order and
// location indexes: pages in insertion order are found in its table.
func UnindexedRecordArea(name string) *RecordArea {
	def, ok := record.Takt.Area(name)
	if !ok {
		panic(name)
	}
	plain := *def
	plain.OrderIndex, plain.IndexFields = "", nil
	plain.LocationIndex, plain.LocationFields = "", nil
	a, err := NewRecordArea(&plain)
	if err != nil {
		panic(err)
	}
	return a
}

// SetFirstWindow makes searches of order indexes start with a window of
// width ms (0: as they would), and returns how to undo it.
func SetFirstWindow(width int64) (undo func()) {
	firstWindowHook = func(w int64) int64 {
		if width > 0 {
			return width
		}
		return w
	}
	return func() { firstWindowHook = nil }
}

// DayRollupDDL is the CREATE of table's day-partitioned twin named name
// (migration 0052).
func DayRollupDDL(table, name string) string {
	for _, r := range dayRollups {
		if r.table == table {
			return r.createDDL(name)
		}
	}
	panic("no day rollup " + table)
}

// MigrationLockTable is the name of the lock table of migration version.
func MigrationLockTable(version uint32) string { return migrationLockName(version) }

// SetRollupStepHook sets what runs at the named points of migration 0052
// (nil: nothing).
func SetRollupStepHook(f func(ctx context.Context, point string) error) { rollupStepHook = f }

// RollupWriters is rollupWriters.
func RollupWriters(db string) string { return rollupWriters(db) }
