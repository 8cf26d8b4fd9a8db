package wire

import "fmt"

// KindDispatch is the KindHeader value (and the "kind" field) of a
// Dispatch.
const KindDispatch = "dispatch"

// Dispatch is the down window of a dispatch whose type means downtime: its
// machine was down from StartMs until EndMs (0 while the dispatch is
// open). The record API produces it to the parts topic with the machine's
// external id as key, like an Assignment, so the processor that owns the
// machine's state machine applies it in order with the machine's parts.
//
// A window is known by its dispatch: a later message of the same dispatch
// replaces the window (the dispatch was closed), and one with Removed set
// takes it away (the dispatch's recording was undone).
type Dispatch struct {
	Control
	// Dispatch is the dispatch's record id; DispatchType its type's, the
	// reason the machine is down.
	Dispatch     uint64 `json:"dispatch"`
	DispatchType uint64 `json:"dispatch_type"`
	StartMs      int64  `json:"start_ms"`
	// EndMs is 0 while the dispatch is open.
	EndMs   int64 `json:"end_ms"`
	Removed bool  `json:"removed"`
	// SentAtMs is when the API sent the message; By is the user who made
	// the call.
	SentAtMs int64  `json:"sent_at_ms"`
	By       string `json:"by"`
}

// EncodeDispatch returns the JSON form of d with version and kind set.
func EncodeDispatch(d *Dispatch) ([]byte, error) {
	d.V, d.Kind = Version, KindDispatch
	return encodeControl(d)
}

// DecodeDispatch parses a dispatch message and checks its invariants.
func DecodeDispatch(b []byte) (Dispatch, error) {
	return decodeControl[Dispatch](b, "dispatch")
}

// Validate checks the invariants of a dispatch message.
func (d *Dispatch) Validate() error {
	if err := d.check(KindDispatch); err != nil {
		return err
	}
	switch {
	case d.LocationID == 0:
		return fmt.Errorf("%w: location_id 0", ErrInvalid)
	case d.Dispatch == 0 || d.DispatchType == 0:
		return fmt.Errorf("%w: dispatch %d of type %d", ErrInvalid, d.Dispatch, d.DispatchType)
	case d.StartMs <= 0 || d.EndMs < 0 || d.EndMs != 0 && d.EndMs <= d.StartMs:
		return fmt.Errorf("%w: window %d–%d", ErrInvalid, d.StartMs, d.EndMs)
	}
	return nil
}
