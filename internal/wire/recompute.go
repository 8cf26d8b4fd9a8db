package wire

import (
	"fmt"
	"time"
)

// KindRecompute is the KindHeader value (and the "kind" field) of a
// Recompute.
const KindRecompute = "recompute"

// MaxRecomputeWindow bounds the time one Recompute derives again: the
// processor reads the location's parts of the window in one go.
const MaxRecomputeWindow = 31 * 24 * time.Hour

// Recompute asks the processor to derive a location's production periods
// of [StartMs, EndMs) again from the stored parts, under the location's
// current rules (stop threshold, shifts). The record API produces it to
// the parts topic with the location's external id as key, like an
// Assignment, so the one processor that owns the location's state machine
// runs it in order with the location's parts: every part before it is
// seen, and the live machine goes on from its own state.
type Recompute struct {
	Control
	StartMs int64 `json:"start_ms"`
	EndMs   int64 `json:"end_ms"`
	// RequestedAtMs is when the API accepted the request; By is the user
	// who made it.
	RequestedAtMs int64  `json:"requested_at_ms"`
	By            string `json:"by"`
}

// EncodeRecompute returns the JSON form of r with version and kind set.
func EncodeRecompute(r *Recompute) ([]byte, error) {
	r.V, r.Kind = Version, KindRecompute
	return encodeControl(r)
}

// DecodeRecompute parses a recompute message and checks its invariants.
func DecodeRecompute(b []byte) (Recompute, error) {
	return decodeControl[Recompute](b, "recompute")
}

// Validate checks the invariants of a recompute message.
func (r *Recompute) Validate() error {
	if err := r.check(KindRecompute); err != nil {
		return err
	}
	switch {
	case r.LocationID == 0:
		return fmt.Errorf("%w: location_id 0", ErrInvalid)
	case r.StartMs <= 0 || r.EndMs <= r.StartMs:
		return fmt.Errorf("%w: window %d–%d", ErrInvalid, r.StartMs, r.EndMs)
	case r.EndMs-r.StartMs > MaxRecomputeWindow.Milliseconds():
		return fmt.Errorf("%w: window of %s, longer than %s", ErrInvalid,
			time.Duration(r.EndMs-r.StartMs)*time.Millisecond, MaxRecomputeWindow)
	}
	return nil
}
