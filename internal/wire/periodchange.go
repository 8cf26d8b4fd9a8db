package wire

import (
	"fmt"
	"strconv"
)

// KindPeriodChange is the KindHeader value (and the "kind" field) of a
// PeriodChange.
const KindPeriodChange = "period_change"

// The changes a PeriodChange reports (its Change field).
const (
	// ChangeOpened: the period is open (it began, or an open period
	// changed, e.g. a late part moved its start).
	ChangeOpened = "opened"
	// ChangeClosed: the period is closed (it ended, or a closed period
	// changed: shortened, lengthened, split by a late part).
	ChangeClosed = "closed"
	// ChangeRelabelled: a reason assignment gave the period a reason, or
	// took it away.
	ChangeRelabelled = "relabelled"
	// ChangeRemoved: the period no longer exists; other periods replace
	// it (Deleted is set).
	ChangeRemoved = "removed"
	// ChangeRecomputed: the period is a new version written when its
	// window was re-derived under the location's current rules.
	ChangeRecomputed = "recomputed"
)

// PeriodChange is one new version of a production period, as the processor
// decided it: the row it wrote to the productionperiods table, with what
// changed. The processor produces it to the period-changes topic after the
// row is in ClickHouse, with the location's external id as key and in the
// partition of the location's parts, so the changes of one location are
// in order. The live feed (GET /api/1.0/productionperiods/stream/) serves
// these messages.
//
// A period is known by Period; a later message with a higher Version
// replaces it, and one with Deleted set removes it. ID names the version
// (location, period, version), the same however often the processor
// decides it, so a client may also deduplicate by it.
type PeriodChange struct {
	V    int    `json:"v"`
	Kind string `json:"kind"`
	// ID is "<location_kind>-<location_id>-<period>-<version>".
	ID           string `json:"id"`
	Change       string `json:"change"`
	Site         uint64 `json:"site"`
	LocationKind string `json:"location_kind"`
	LocationID   uint64 `json:"location_id"`
	ExternalID   string `json:"external_id"`
	// Line is the location's line (a line's own id; 0 when the master
	// data did not know it); Machine is the machine's id, 0 for a line.
	Line    uint64 `json:"line"`
	Machine uint64 `json:"machine"`
	// Period is the id of the production period.
	Period  uint64 `json:"period"`
	State   string `json:"state"`
	StartMs int64  `json:"start_ms"`
	// EndMs is 0 while the period is open.
	EndMs int64 `json:"end_ms"`
	Open  bool  `json:"open"`
	// Shift is the shift occurrence the period lies in ("" outside shifts).
	Shift  string `json:"shift"`
	Reason uint64 `json:"reason"`
	// FirstOfStop is 1 on the first scheduled piece of a stop, else 0
	// (-1 on a final period relabelled as stored before marks existed).
	FirstOfStop  int8   `json:"first_of_stop"`
	Dispatch     uint64 `json:"dispatch"`
	DispatchType uint64 `json:"dispatch_type"`
	Version      uint64 `json:"version"`
	Deleted      bool   `json:"deleted"`
	// DecidedAtMs is when the processor decided the change (its wall
	// clock, Unix milliseconds).
	DecidedAtMs int64 `json:"decided_at_ms"`
}

// PeriodChangeID returns the id of a period version.
func PeriodChangeID(locationKind string, location, period, version uint64) string {
	b := make([]byte, 0, 64)
	b = append(b, locationKind...)
	b = append(b, '-')
	b = strconv.AppendUint(b, location, 10)
	b = append(b, '-')
	b = strconv.AppendUint(b, period, 10)
	b = append(b, '-')
	b = strconv.AppendUint(b, version, 10)
	return string(b)
}

// Key returns the Kafka record key of c: its location's external id.
func (c *PeriodChange) Key() []byte { return []byte(c.ExternalID) }

// EncodePeriodChange returns the JSON form of c with version, kind and id
// set.
func EncodePeriodChange(c *PeriodChange) ([]byte, error) {
	c.V, c.Kind = Version, KindPeriodChange
	c.ID = PeriodChangeID(c.LocationKind, c.LocationID, c.Period, c.Version)
	return encodeControl(c)
}

// DecodePeriodChange parses a period-change message and checks its
// invariants.
func DecodePeriodChange(b []byte) (PeriodChange, error) {
	return decodeControl[PeriodChange](b, "period change")
}

func (c *PeriodChange) version() int { return c.V }

// Validate checks the invariants of a period-change message.
func (c *PeriodChange) Validate() error {
	if err := (&Control{Kind: c.Kind, ID: c.ID, Site: c.Site, LocationKind: c.LocationKind,
		ExternalID: c.ExternalID}).check(KindPeriodChange); err != nil {
		return err
	}
	switch c.Change {
	case ChangeOpened, ChangeClosed, ChangeRelabelled, ChangeRemoved, ChangeRecomputed:
	default:
		return fmt.Errorf("%w: change %q", ErrInvalid, c.Change)
	}
	switch c.State {
	case "running", "down", "planned_down", "unscheduled":
	default:
		return fmt.Errorf("%w: state %q", ErrInvalid, c.State)
	}
	switch {
	case c.LocationID == 0:
		return fmt.Errorf("%w: location 0", ErrInvalid)
	case c.Period == 0:
		return fmt.Errorf("%w: period 0", ErrInvalid)
	case c.ID != PeriodChangeID(c.LocationKind, c.LocationID, c.Period, c.Version):
		return fmt.Errorf("%w: id %q does not name location, period and version", ErrInvalid, c.ID)
	case c.StartMs <= 0 || c.EndMs < 0 || (c.EndMs != 0 && c.EndMs < c.StartMs):
		return fmt.Errorf("%w: period times %d–%d", ErrInvalid, c.StartMs, c.EndMs)
	case c.Open && c.EndMs != 0:
		return fmt.Errorf("%w: an open period with an end", ErrInvalid)
	case c.Deleted != (c.Change == ChangeRemoved):
		return fmt.Errorf("%w: deleted=%t with change %q", ErrInvalid, c.Deleted, c.Change)
	case c.LocationKind == "machine" && c.Machine != c.LocationID,
		c.LocationKind == "line" && (c.Machine != 0 || c.Line != c.LocationID):
		return fmt.Errorf("%w: line %d, machine %d for %s %d", ErrInvalid, c.Line, c.Machine, c.LocationKind, c.LocationID)
	case c.FirstOfStop < -1 || c.FirstOfStop > 1:
		return fmt.Errorf("%w: first_of_stop %d", ErrInvalid, c.FirstOfStop)
	}
	return nil
}
