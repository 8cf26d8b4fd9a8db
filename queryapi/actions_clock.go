package queryapi

// Clock sessions: users/clock_in/<username>/ and
// users/clock_out/<username>/. A session is a row of clocksessions, open
// (end none) until the user clocks out. Calls for one user and line take
// a lock, so two clock-ins at once open one session.

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/takt/takt/internal/chstore"
)

// clockParties finds the user of the path and the line of linecode, both
// of the call's site.
func (x *actionServer) clockParties(ctx context.Context, c *actionCall) (user, line chstore.FoundRow, ans actionAnswer, ok bool) {
	users, err := x.store.FindRows(ctx, "users", chstore.Row{"username": c.path}, 1)
	if err != nil {
		return user, line, failed(err), false
	}
	if len(users) == 0 || users[0].Row["active"] != true || !slices.Contains(asIDs(users[0].Row["sites"]), c.site) {
		return user, line, invalid(fmt.Sprintf("username: no active user %q in site %d", c.path, c.site)), false
	}
	line, ans, ok = x.byCode(ctx, c, "lines", c.text("linecode"), "linecode")
	return users[0], line, ans, ok
}

func asIDs(v any) []uint64 {
	ids, _ := v.([]uint64)
	return ids
}

// openSession returns the user's open session on the line, if any.
func (x *actionServer) openSession(ctx context.Context, user, line uint64) (chstore.FoundRow, bool, error) {
	found, err := x.store.FindRows(ctx, "clocksessions", chstore.Row{"user": user, "line": line, "end": zeroTime}, 1)
	if err != nil || len(found) == 0 {
		return chstore.FoundRow{}, false, err
	}
	return found[0], true, nil
}

// clockIn serves users/clock_in/<username>/: a session from now (or
// start), open; with start and end, a closed session in the past. A user
// already clocked in on the line stays in that session.
func (x *actionServer) clockIn(ctx context.Context, c *actionCall) actionAnswer {
	user, line, ans, ok := x.clockParties(ctx, c)
	if !ok {
		return ans
	}
	start, hasStart := c.time("start")
	end, hasEnd := c.time("end")
	switch {
	case hasEnd && !hasStart:
		return invalid("end: give start too (a past session), or clock out with users/clock_out")
	case hasEnd && end.Before(start):
		return invalid(fmt.Sprintf("end: %s is before start (%s)", end.Format(time.DateTime), start.Format(time.DateTime)))
	case !hasStart:
		start = c.now
	}
	release, err := x.locks.hold(ctx, "clock:"+strconv.FormatUint(user.ID, 10)+":"+strconv.FormatUint(line.ID, 10))
	if err != nil {
		return failed(err)
	}
	defer release()
	if !hasEnd {
		if open, found, err := x.openSession(ctx, user.ID, line.ID); err != nil {
			return failed(err)
		} else if found {
			return x.answerRecord(ctx, c, "clocksessions", open.ID, "ok")
		}
		end = zeroTime
	}
	id, err := x.ids.next(ctx)
	if err != nil {
		return failed(err)
	}
	row := x.newRow("clocksessions", chstore.Row{"site": c.site, "line": line.ID, "linecode": line.Row["code"],
		"user": user.ID, "username": user.Row["username"], "start": start, "end": end})
	if _, err := x.putRow(ctx, "clocksessions", id, row, c.actor, nil); err != nil {
		return failed(err)
	}
	return x.answerRecord(ctx, c, "clocksessions", id, "created")
}

// clockOut serves users/clock_out/<username>/: the user's open session on
// the line ends now (or at end).
func (x *actionServer) clockOut(ctx context.Context, c *actionCall) actionAnswer {
	user, line, ans, ok := x.clockParties(ctx, c)
	if !ok {
		return ans
	}
	release, err := x.locks.hold(ctx, "clock:"+strconv.FormatUint(user.ID, 10)+":"+strconv.FormatUint(line.ID, 10))
	if err != nil {
		return failed(err)
	}
	defer release()
	open, found, err := x.openSession(ctx, user.ID, line.ID)
	if err != nil {
		return failed(err)
	}
	if !found {
		return invalid(fmt.Sprintf("username: %s is not clocked in on line %s", c.path, c.text("linecode")))
	}
	end, given := c.time("end")
	if !given {
		end = c.now
	}
	start, _ := open.Row["start"].(time.Time)
	if end.Before(start) {
		return invalid(fmt.Sprintf("end: %s is before the session began (%s)", end.Format(time.DateTime), start.Format(time.DateTime)))
	}
	open.Row["end"] = end
	if _, err := x.putRow(ctx, "clocksessions", open.ID, open.Row, c.actor, &open.Audit); err != nil {
		return failed(err)
	}
	return x.answerRecord(ctx, c, "clocksessions", open.ID, "updated")
}
