package processor

import (
	"testing"

	"github.com/takt/takt/internal/period"
	"github.com/takt/takt/internal/wire"
)

// TestChangeOf: what a period row's change event says changed, and where
// the location sits.
func TestChangeOf(t *testing.T) {
	line := func(period.Key) uint64 { return 4 }
	mach := feedGroup{key: period.Key{Kind: "machine", ID: 9}, site: 2, extID: "m9"}
	ln := feedGroup{key: period.Key{Kind: "line", ID: 4}, site: 2, extID: "l4"}
	open := period.Row{ID: 1, State: period.Down, Start: 1000, End: 5000, Open: true, Version: 2}
	closed := period.Row{ID: 1, State: period.Down, Start: 1000, End: 5000, Version: 4}
	gone := closed
	gone.Deleted, gone.Version = true, 6
	for _, tc := range []struct {
		name      string
		g         feedGroup
		r         period.Row
		meta      changeMeta
		change    string
		end       int64
		lineID    uint64
		machineID uint64
	}{
		{"open", mach, open, changeMeta{}, wire.ChangeOpened, 0, 4, 9},
		{"closed", mach, closed, changeMeta{}, wire.ChangeClosed, 5000, 4, 9},
		{"relabelled", ln, closed, changeMeta{Change: wire.ChangeRelabelled}, wire.ChangeRelabelled, 5000, 4, 0},
		{"removed wins", ln, gone, changeMeta{Change: wire.ChangeRelabelled}, wire.ChangeRemoved, 5000, 4, 0},
		{"recomputed", mach, closed, changeMeta{Change: wire.ChangeRecomputed}, wire.ChangeRecomputed, 5000, 4, 9},
	} {
		c := changeOf(tc.g, tc.r, tc.meta, line)
		if c.Change != tc.change || c.EndMs != tc.end || c.Line != tc.lineID || c.Machine != tc.machineID {
			t.Errorf("%s: change %q end %d line %d machine %d; want %q %d %d %d", tc.name, c.Change, c.EndMs, c.Line,
				c.Machine, tc.change, tc.end, tc.lineID, tc.machineID)
		}
		if _, err := wire.EncodePeriodChange(&c); err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}
