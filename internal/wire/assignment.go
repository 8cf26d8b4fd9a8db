package wire

import "fmt"

// KindHeader is the record header that names the kind of a message on the
// parts topic. A record without it is a part event (Part); the other kinds
// are KindAssignment and KindDispatch.
const KindHeader = "takt-kind"

// KindAssignment is the KindHeader value (and the "kind" field) of an
// Assignment.
const KindAssignment = "assignment"

// Assignment gives a downtime reason to a production period. The record
// API produces it to the parts topic with the location's external id as
// key, so it lands in the partition of the location's parts and the one
// processor that owns the location's state machine applies it, in order
// with the parts and with the same exactly-once bookkeeping.
//
// Start, End, State, FirstOfStop and Version describe the period as the
// API read it. The processor needs them for a period that is not one of
// its state machine's rows: one a late part has moved or split since (its
// time says which stops take the reason), or one that has left the
// machine's window (a final period), whose new version it writes from them
// at Version + 1, so that it never wins over a version written after the
// read.
type Assignment struct {
	Control
	// Period is the id of the production period.
	Period  uint64 `json:"period"`
	StartMs int64  `json:"start_ms"`
	// EndMs is 0 while the period is open.
	EndMs int64  `json:"end_ms"`
	State string `json:"state"`
	// FirstOfStop is the period's first-of-stop mark (1, 0, or -1 for a
	// row stored before marks existed).
	FirstOfStop int8 `json:"first_of_stop"`
	// Version is the version of the period that was read.
	Version uint64 `json:"version"`
	// Reason is the id of a downtime reason, 0 to remove the reason;
	// Planned is that reason's planned flag.
	Reason  uint64 `json:"reason"`
	Planned bool   `json:"planned"`
	// AssignedAtMs is when the API accepted the assignment; By is the
	// user who made it.
	AssignedAtMs int64  `json:"assigned_at_ms"`
	By           string `json:"by"`
}

// EncodeAssignment returns the JSON form of a with version and kind set.
func EncodeAssignment(a *Assignment) ([]byte, error) {
	a.V, a.Kind = Version, KindAssignment
	return encodeControl(a)
}

// DecodeAssignment parses an assignment message and checks its invariants.
func DecodeAssignment(b []byte) (Assignment, error) {
	return decodeControl[Assignment](b, "assignment")
}

// Validate checks the invariants of an assignment message.
func (a *Assignment) Validate() error {
	if err := a.check(KindAssignment); err != nil {
		return err
	}
	switch {
	case a.Period == 0:
		return fmt.Errorf("%w: period 0", ErrInvalid)
	case a.State != "down" && a.State != "planned_down":
		return fmt.Errorf("%w: a reason goes only to a down period, not %q", ErrInvalid, a.State)
	case a.StartMs <= 0 || a.EndMs < 0 || (a.EndMs != 0 && a.EndMs < a.StartMs):
		return fmt.Errorf("%w: period times %d–%d", ErrInvalid, a.StartMs, a.EndMs)
	case a.FirstOfStop < -1 || a.FirstOfStop > 1:
		return fmt.Errorf("%w: first_of_stop %d", ErrInvalid, a.FirstOfStop)
	case a.Planned && a.Reason == 0:
		return fmt.Errorf("%w: planned without a reason", ErrInvalid)
	}
	return nil
}
