// Package wire defines the Kafka message that carries one part event from the
// ingestor to the processor.
//
// The message is JSON with flat, typed fields so that other consumers (kcat,
// ClickHouse's Kafka table engine with JSONEachRow) can read it without Takt's
// code. Every message carries its schema version in "v"; a decoder accepts
// every version it knows and rejects the rest with ErrVersion, so a newer
// producer never silently feeds an older processor.
//
// The record key is the location's external id: all events of one location go
// to one partition and so have exactly one owner in the consumer group.
package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
)

// Version is the schema version this package writes.
const Version = 1

// ProductHeader, on a part event's record, carries the id (decimal) of the
// product its sender resolved the part's product code to: the record API,
// whose actions may have created the product a moment before. The
// processor takes that product instead of looking the code up in its
// catalog, which may not know it yet. Parts from the ingestor carry no such
// header; the message itself is unchanged.
const ProductHeader = "takt-product-id"

// Quality values a part event may carry.
const (
	QualityGood   = "good"
	QualityScrap  = "scrap"
	QualityRework = "rework"
)

// Sentinel errors returned (wrapped) by Decode.
var (
	// ErrVersion means the message has a schema version this build does not know.
	ErrVersion = errors.New("unknown message version")
	// ErrInvalid means the message decoded but breaks an invariant of Part.
	ErrInvalid = errors.New("invalid part message")
)

// Headers of a dead-letter record (on the dead-letter topic, beside the
// original value): why it is there and its class, a short word.
const (
	HeaderDLQReason = "takt-dlq-reason"
	HeaderDLQClass  = "takt-dlq-class"
)

// Part is one part event: Quantity parts of one quality, made at one time at
// one location. Times are Unix milliseconds (UTC).
type Part struct {
	V int `json:"v"`
	// EventID is the unique id the ingestor assigned (UUIDv7, text form).
	EventID string `json:"event_id"`
	// Site is the id of the site that owns the location.
	Site uint64 `json:"site"`
	// LocationKind is "line" or "machine"; LocationID is its record id.
	LocationKind string `json:"location_kind"`
	LocationID   uint64 `json:"location_id"`
	// ExternalID is the location's external id as reported (case-sensitive).
	ExternalID string `json:"external_id"`
	Quantity   uint32 `json:"quantity"`
	Quality    string `json:"quality"`
	// Product is the product code as reported; empty when none was sent.
	Product string `json:"product"`
	// CycleTime is the reported cycle time in seconds; HasCycleTime says
	// whether one was sent (0 is a valid report).
	CycleTime    float64 `json:"cycle_time"`
	HasCycleTime bool    `json:"has_cycle_time"`
	// Reason is the scrap reason code; only set when Quality is scrap.
	Reason string `json:"reason"`
	// RecordedAtMs is when the part was made; RecordedDefaulted says the
	// device sent no time and the receipt time was used.
	RecordedAtMs      int64 `json:"recorded_at_ms"`
	RecordedDefaulted bool  `json:"recorded_defaulted"`
	// ReceivedAtMs is when the ingestor received the request.
	ReceivedAtMs int64 `json:"received_at_ms"`
	// IdempotencyID is set when the client sent an idempotency key: a
	// UUID-shaped digest of the client (its user), the key and the part
	// as sent. Two records with the same IdempotencyID are one part sent
	// twice (a retry that reached Kafka again); the processor stores the
	// first only. Empty when the client sent no key.
	IdempotencyID string `json:"idempotency_id,omitempty"`
}

// Key returns the Kafka record key of p: its location's external id.
func (p *Part) Key() []byte { return []byte(p.ExternalID) }

// Encode returns the JSON form of p with the current version set: the
// bytes json.Marshal writes for p (see AppendEncode).
func Encode(p *Part) ([]byte, error) {
	b, err := AppendEncode(make([]byte, 0, EncodedSizeHint(p)), p)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// Decode parses a message and checks its invariants. What it accepts and
// refuses, and its errors, are those of json.Unmarshal into a Part
// followed by these checks; the messages Takt writes take a faster way
// (see decodeFast).
func Decode(b []byte) (Part, error) {
	var p Part
	if !decodeFast(b, &p) {
		return decodeJSON(b)
	}
	if err := p.check(); err != nil {
		return Part{}, err
	}
	return p, nil
}

// decodeJSON is Decode by json.Unmarshal (its own Part, which escapes).
func decodeJSON(b []byte) (Part, error) {
	var p Part
	if err := json.Unmarshal(b, &p); err != nil {
		return Part{}, fmt.Errorf("decode part message: %w", err)
	}
	if err := p.check(); err != nil {
		return Part{}, err
	}
	return p, nil
}

// check checks the version and the invariants of a decoded message.
func (p *Part) check() error {
	if p.V != Version {
		return fmt.Errorf("decode part message: %w: %d", ErrVersion, p.V)
	}
	return p.Validate()
}

// Validate checks the invariants every message must hold.
func (p *Part) Validate() error {
	switch {
	case p.EventID == "":
		return fmt.Errorf("%w: empty event_id", ErrInvalid)
	case p.ExternalID == "":
		return fmt.Errorf("%w: empty external_id", ErrInvalid)
	case p.Site == 0:
		return fmt.Errorf("%w: site 0", ErrInvalid)
	case p.LocationKind != "line" && p.LocationKind != "machine":
		return fmt.Errorf("%w: location_kind %q", ErrInvalid, p.LocationKind)
	case p.Quantity == 0:
		return fmt.Errorf("%w: quantity 0", ErrInvalid)
	case p.Quality != QualityGood && p.Quality != QualityScrap && p.Quality != QualityRework:
		return fmt.Errorf("%w: quality %q", ErrInvalid, p.Quality)
	case math.IsNaN(p.CycleTime) || math.IsInf(p.CycleTime, 0) || p.CycleTime < 0:
		return fmt.Errorf("%w: cycle_time %v", ErrInvalid, p.CycleTime)
	case p.RecordedAtMs <= 0 || p.ReceivedAtMs <= 0:
		return fmt.Errorf("%w: times must be positive", ErrInvalid)
	case p.IdempotencyID != "" && !uuidShaped(p.IdempotencyID):
		return fmt.Errorf("%w: idempotency_id %q is not a UUID", ErrInvalid, p.IdempotencyID)
	}
	return nil
}

// uuidShaped reports whether s is a UUID in its canonical text form
// (8-4-4-4-12 lowercase or uppercase hex digits).
func uuidShaped(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}
