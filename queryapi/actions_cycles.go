package queryapi

// Cycle counters of machines: machines/set_cycle_count and
// machines/increment_cycle_count.
//
// A counter's value and version are handed out together by one Redis
// script (counterScript), so concurrent calls never lose an increment, and
// each value is then written to ClickHouse (machine_counters) under its
// version: the highest version there is the newest value, whatever order
// the writes land in. Redis only coordinates: a counter missing there (a
// fresh Redis) is loaded again from ClickHouse, its version moved past any
// write still in flight.
//
// An increment also records its cycles as good parts of the machine
// through the ingest pipeline: one part event (an id of its own, the time
// of the call) produced to the parts topic under the machine's external
// id, as the ingestor does. The counter is raised first; when Kafka
// refuses the part, the increment is taken back and the call answers 503
// with nothing changed.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/wire"
)

// counterScript sets (ARGV[1] = "set") or raises ("add") the counter
// KEYS[1] by ARGV[2], takes the next version, sets its last update to
// ARGV[3] (Unix seconds) when ARGV[4] is "1", keeps the key ARGV[5] ms,
// and returns {count, version, updated}. A missing counter is created
// from ARGV[7..9] (count, version, updated) when ARGV[6] is "1"; otherwise
// the script returns nil and the caller loads it from ClickHouse.
var counterScript = redis.NewScript(`
if redis.call("EXISTS", KEYS[1]) == 0 then
	if ARGV[6] ~= "1" then return false end
	redis.call("HSET", KEYS[1], "count", ARGV[7], "seq", ARGV[8], "updated", ARGV[9])
end
local count
if ARGV[1] == "set" then
	redis.call("HSET", KEYS[1], "count", ARGV[2])
	count = tonumber(ARGV[2])
else
	count = redis.call("HINCRBY", KEYS[1], "count", ARGV[2])
	if count < 0 then
		redis.call("HSET", KEYS[1], "count", 0)
		count = 0
	end
end
local seq = redis.call("HINCRBY", KEYS[1], "seq", 1)
if ARGV[4] == "1" then redis.call("HSET", KEYS[1], "updated", ARGV[3]) end
redis.call("PEXPIRE", KEYS[1], ARGV[5])
return {count, seq, tonumber(redis.call("HGET", KEYS[1], "updated"))}
`)

const (
	// counterTTL is how long an unused counter stays in Redis.
	counterTTL = 7 * 24 * time.Hour
	// counterGap moves the version of a counter loaded again from
	// ClickHouse past the versions of writes still in flight.
	counterGap = 1_000_000
)

// count sets or raises (op "set" or "add", by delta) the counter of
// machine m (of site) and writes the new value to ClickHouse; track sets
// its last update to now.
func (x *actionServer) count(ctx context.Context, machine, site uint64, op string, delta int64, track bool, now time.Time) (chstore.MachineCounter, error) {
	key := x.keys.CycleCount(machine)
	args := []any{op, delta, now.Unix(), b2s(track), counterTTL.Milliseconds(), "0"}
	res, err := counterScript.Run(ctx, x.rdb, []string{key}, args...).Int64Slice()
	if errors.Is(err, redis.Nil) {
		old, _, lerr := x.store.MachineCounter(ctx, machine)
		if lerr != nil {
			return chstore.MachineCounter{}, lerr
		}
		var updated int64
		if !old.Updated.IsZero() {
			updated = old.Updated.Unix()
		}
		args = append(args[:5], "1", old.Count, old.Version+counterGap, updated)
		res, err = counterScript.Run(ctx, x.rdb, []string{key}, args...).Int64Slice()
	}
	if err != nil {
		return chstore.MachineCounter{}, fmt.Errorf("%w: cycle counter of machine %d: %w", errUnavailable, machine, err)
	}
	c := chstore.MachineCounter{Machine: machine, Site: site, Count: uint64(res[0]), Version: uint64(res[1])}
	if res[2] > 0 {
		c.Updated = time.Unix(res[2], 0).UTC()
	}
	if err := x.store.PutMachineCounter(ctx, c); err != nil {
		if op == "add" {
			// Nothing is recorded: take the increment back (a set stays;
			// the next write corrects ClickHouse's copy).
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), compensateTimeout)
			defer cancel()
			back := []any{"add", -delta, now.Unix(), "0", counterTTL.Milliseconds(), "0"}
			_ = counterScript.Run(cctx, x.rdb, []string{key}, back...).Err()
		}
		return chstore.MachineCounter{}, err
	}
	return c, nil
}

func b2s(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// machineByCode finds the machine with the call's code in its site.
func (x *actionServer) machineByCode(ctx context.Context, c *actionCall, arg string) (chstore.FoundRow, actionAnswer, bool) {
	return x.byCode(ctx, c, "machines", c.text(arg), arg)
}

// setCycleCount serves machines/set_cycle_count.
func (x *actionServer) setCycleCount(ctx context.Context, c *actionCall) actionAnswer {
	m, ans, ok := x.machineByCode(ctx, c, "code")
	if !ok {
		return ans
	}
	if _, err := x.count(ctx, m.ID, c.site, "set", int64(c.num("cyclecount")), true, c.now); err != nil {
		return failed(err)
	}
	return x.answerRecord(ctx, c, "machines", m.ID, "updated")
}

// incrementCycleCount serves machines/increment_cycle_count.
func (x *actionServer) incrementCycleCount(ctx context.Context, c *actionCall) actionAnswer {
	m, ans, ok := x.machineByCode(ctx, c, "code")
	if !ok {
		return ans
	}
	n := c.num("cyclecount")
	ext, _ := m.Row["externalid"].(string)
	switch {
	case n > maxActionQuantity:
		return invalid(fmt.Sprintf("cyclecount: %d is above %d", n, maxActionQuantity))
	case n == 0:
		return x.answerRecord(ctx, c, "machines", m.ID, "ok")
	case ext == "":
		return invalid(fmt.Sprintf("code: machine %q has no externalid; give it one (it is then a location) to record its cycles as parts",
			c.text("code")))
	case x.sender == nil:
		return failed(fmt.Errorf("%w: no Kafka client", errNotProduced))
	}
	uid, err := uuid.NewV7()
	if err != nil {
		return failed(fmt.Errorf("event id: %w", err))
	}
	nowMs := c.now.UnixMilli()
	part := wire.Part{EventID: uid.String(), Site: c.site, LocationKind: "machine", LocationID: m.ID, ExternalID: ext,
		Quantity: uint32(n), Quality: wire.QualityGood, RecordedAtMs: nowMs, ReceivedAtMs: nowMs}
	val, err := wire.Encode(&part)
	if err != nil {
		return failed(err)
	}
	if _, err := x.count(ctx, m.ID, c.site, "add", int64(n), !c.flag("skip_lastupdated"), c.now); err != nil {
		return failed(err)
	}
	if err := x.sender.sendOne(ctx, &kgo.Record{Key: part.Key(), Value: val}); err != nil {
		if errors.Is(err, errNotProduced) {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), compensateTimeout)
			defer cancel()
			if _, cerr := x.count(cctx, m.ID, c.site, "add", -int64(n), false, c.now); cerr != nil {
				x.logger.Error("cycle count: taking back an increment whose parts Kafka refused failed",
					"machine", m.ID, "cyclecount", n, "err", cerr)
			}
		}
		return failed(fmt.Errorf("parts of machine %d (event %s): %w", m.ID, part.EventID, err))
	}
	x.logger.Info("cycles recorded as parts", "machine", m.ID, "quantity", n, "event_id", part.EventID)
	return x.answerRecord(ctx, c, "machines", m.ID, "updated")
}

// answerRecord answers record id of area as the call's data (a list of one
// when the action says so).
func (x *actionServer) answerRecord(ctx context.Context, c *actionCall, area string, id uint64, outcome string) actionAnswer {
	resp, err := x.h.recordAnswer(ctx, area, id, c.sites, c.def.List)
	if err != nil {
		return failed(err)
	}
	return actionAnswer{resp: resp, outcome: outcome}
}
