package queryapi

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/record"
)

// Rows the actions write: dispatches, clock sessions, pitch details (and
// products record_details creates). Each write is a new version of the
// whole row, as the record API's writes of master data are.

// putRow writes a version of record id of area: a new record when prev is
// nil (created now by actor), else a version above prev.
func (x *actionServer) putRow(ctx context.Context, area string, id uint64, row chstore.Row, actor string, prev *chstore.Audit) (chstore.Audit, error) {
	now := x.now().UTC().Truncate(time.Second)
	au := chstore.Audit{Created: now, CreatedBy: actor, LastUpdated: now, LastUpdatedBy: actor, Version: uint64(x.now().UnixNano())}
	if prev != nil {
		au.Created, au.CreatedBy = prev.Created, prev.CreatedBy
		// A version above the live one even when clocks disagree.
		au.Version = max(uint64(x.now().UnixNano()), prev.Version+1)
	}
	if err := x.store.WriteRow(ctx, area, id, row, au); err != nil {
		return chstore.Audit{}, err
	}
	return au, nil
}

// newRow returns the row of a new record of area: every stored field at
// its default or zero value, then values.
func (x *actionServer) newRow(area string, values chstore.Row) chstore.Row {
	a := x.h.store.Areas().Must(area)
	row := a.ZeroRow()
	for _, f := range a.Fields {
		if f.Stored() && f.Default != nil {
			row[f.Name] = f.Default
		}
	}
	for k, v := range values {
		row[k] = v
	}
	return row
}

// rowInSite reads record id of area for argument arg of call c: it must
// be live and of the call's site; otherwise the answer says which.
func (x *actionServer) rowInSite(ctx context.Context, c *actionCall, area string, id uint64, arg string) (chstore.Row, chstore.Audit, actionAnswer, bool) {
	row, au, err := x.store.ReadRow(ctx, area, id)
	switch {
	case errors.Is(err, chstore.ErrNotFound) || err == nil && row["site"] != c.site:
		noun := x.h.store.Areas().Must(area).Noun()
		return nil, chstore.Audit{}, invalid(fmt.Sprintf("%s: no %s %d in site %d", arg, noun, id, c.site)), false
	case err != nil:
		return nil, chstore.Audit{}, failed(err), false
	}
	return row, au, actionAnswer{}, true
}

// byCode finds the live record of area with the given code in the call's
// site.
func (x *actionServer) byCode(ctx context.Context, c *actionCall, area, code, arg string) (chstore.FoundRow, actionAnswer, bool) {
	found, err := x.store.FindRows(ctx, area, chstore.Row{"site": c.site, "code": code}, 1)
	if err != nil {
		return chstore.FoundRow{}, failed(err), false
	}
	if len(found) == 0 {
		noun := x.h.store.Areas().Must(area).Noun()
		return chstore.FoundRow{}, invalid(fmt.Sprintf("%s: no %s %q in site %d", arg, noun, code, c.site)), false
	}
	return found[0], actionAnswer{}, true
}

// zeroTime is the stored "none" of a Time field.
var zeroTime = time.Unix(0, 0).UTC()

// isNone reports whether t, a Time field's value, is none.
func isNone(t any) bool { return record.Zero(t) }
