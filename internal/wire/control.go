package wire

import (
	"encoding/json"
	"fmt"
)

// controlMessage is a message on the parts topic other than a part (an
// assignment, a dispatch): plain JSON, checked when written and read.
type controlMessage[T any] interface {
	*T
	Validate() error
	version() int
}

// encodeControl returns the JSON form of m once it is valid.
func encodeControl[T any, P controlMessage[T]](m P) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(m)
}

// decodeControl parses a control message named what and checks its
// version and invariants.
func decodeControl[T any, P controlMessage[T]](b []byte, what string) (T, error) {
	var m, zero T
	if err := json.Unmarshal(b, &m); err != nil {
		return zero, fmt.Errorf("decode %s message: %w", what, err)
	}
	if v := P(&m).version(); v != Version {
		return zero, fmt.Errorf("decode %s message: %w: %d", what, ErrVersion, v)
	}
	if err := P(&m).Validate(); err != nil {
		return zero, err
	}
	return m, nil
}

// checkHeader checks the fields every control message has: its kind, id,
// site and location.
func checkHeader(kind, want, id string, site uint64, locationKind, externalID string) error {
	switch {
	case kind != want:
		return fmt.Errorf("%w: kind %q", ErrInvalid, kind)
	case id == "":
		return fmt.Errorf("%w: empty id", ErrInvalid)
	case site == 0:
		return fmt.Errorf("%w: site 0", ErrInvalid)
	case locationKind != "line" && locationKind != "machine":
		return fmt.Errorf("%w: location_kind %q", ErrInvalid, locationKind)
	case externalID == "":
		return fmt.Errorf("%w: empty external_id", ErrInvalid)
	}
	return nil
}
