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

// Control is what every control message starts with: its version and
// kind, the request's id, and the location it is about. Embedded first in
// each message, its fields lead the JSON object in this order.
type Control struct {
	V    int    `json:"v"`
	Kind string `json:"kind"`
	// ID is a unique id of the request (UUIDv7, text form); the
	// processor applies a request once however often it reads it.
	ID           string `json:"id"`
	Site         uint64 `json:"site"`
	LocationKind string `json:"location_kind"`
	LocationID   uint64 `json:"location_id"`
	ExternalID   string `json:"external_id"`
}

// Key returns the Kafka record key of the message: its location's
// external id, so it lands in the partition of the location's parts.
func (c *Control) Key() []byte { return []byte(c.ExternalID) }

func (c *Control) version() int { return c.V }

// check checks the fields every control message has: its kind, id, site
// and location.
func (c *Control) check(want string) error {
	switch {
	case c.Kind != want:
		return fmt.Errorf("%w: kind %q", ErrInvalid, c.Kind)
	case c.ID == "":
		return fmt.Errorf("%w: empty id", ErrInvalid)
	case c.Site == 0:
		return fmt.Errorf("%w: site 0", ErrInvalid)
	case c.LocationKind != "line" && c.LocationKind != "machine":
		return fmt.Errorf("%w: location_kind %q", ErrInvalid, c.LocationKind)
	case c.ExternalID == "":
		return fmt.Errorf("%w: empty external_id", ErrInvalid)
	}
	return nil
}
