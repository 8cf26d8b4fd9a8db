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
