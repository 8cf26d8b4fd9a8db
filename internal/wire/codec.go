package wire

import (
	"encoding/json"
	"math"
	"strconv"
	"unicode/utf8"
)

// The part message is written and read for every part, by the ingestor
// and the processor, and encoding/json's reflection was a good share of
// the CPU of both. The functions here write and read it directly, for the
// messages Takt writes; anything else goes through encoding/json, so that
// json.Marshal and json.Unmarshal stay the definition of the message:
//
//   - AppendEncode writes the bytes json.Marshal writes. A string that
//     json.Marshal would escape or repair (a quote, a backslash, a control
//     character, <, > or &, U+2028, U+2029, invalid UTF-8) sends the part
//     to json.Marshal.
//   - Decode reads the fields in the order and form AppendEncode writes
//     them: no whitespace, no escapes, integers as plain digits, valid
//     UTF-8. Any other input, whatever it is (other field order, extra or
//     missing fields, null, another version, an error of any kind), goes
//     to json.Unmarshal, so what is accepted and what is refused, and with
//     which error, is json.Unmarshal's. The fast path accepts only input
//     json.Unmarshal would accept into the same Part, and makes one pass
//     over it.
//
// FuzzEncodeMatchesJSON and FuzzDecodeMatchesJSON compare both with
// encoding/json.

// encodeFixed is the length of a part message without its strings, its
// numbers and an idempotency id.
const encodeFixed = len(`{"v":1,"event_id":"","site":,"location_kind":"","location_id":,"external_id":"","quantity":,` +
	`"quality":"","product":"","cycle_time":,"has_cycle_time":false,"reason":"","recorded_at_ms":,` +
	`"recorded_defaulted":false,"received_at_ms":}`)

// EncodedSizeHint returns a capacity that holds p's message, at most 25
// bytes more than it needs unless a string needs escapes; AppendEncode
// grows the buffer when it does not suffice.
func EncodedSizeHint(p *Part) int {
	n := encodeFixed + len(p.EventID) + len(p.LocationKind) + len(p.ExternalID) + len(p.Quality) +
		len(p.Product) + len(p.Reason) +
		digits(p.Site) + digits(p.LocationID) + digits(uint64(p.Quantity)) +
		digits(uint64(p.RecordedAtMs)) + digits(uint64(p.ReceivedAtMs)) +
		25 // the longest float64
	if p.IdempotencyID != "" {
		n += len(`,"idempotency_id":""`) + len(p.IdempotencyID)
	}
	return n
}

// digits returns the number of decimal digits of v (20 for a negative
// int64 read as uint64: a bound of its sign and digits).
func digits(v uint64) int {
	n := 1
	for ; v >= 10; v /= 10 {
		n++
	}
	return n
}

// AppendEncode appends the JSON form of p, with the current version set,
// to dst and returns the extended buffer; on an error (p is invalid) dst
// is returned unchanged. The bytes are those Encode returns.
func AppendEncode(dst []byte, p *Part) ([]byte, error) {
	p.V = Version
	if err := p.Validate(); err != nil {
		return dst, err
	}
	if !plain(p.EventID) || !plain(p.LocationKind) || !plain(p.ExternalID) || !plain(p.Quality) ||
		!plain(p.Product) || !plain(p.Reason) || !plain(p.IdempotencyID) {
		b, err := json.Marshal(p)
		if err != nil {
			return dst, err
		}
		return append(dst, b...), nil
	}
	dst = append(dst, `{"v":`...)
	dst = strconv.AppendInt(dst, int64(p.V), 10)
	dst = append(dst, `,"event_id":"`...)
	dst = append(dst, p.EventID...)
	dst = append(dst, `","site":`...)
	dst = strconv.AppendUint(dst, p.Site, 10)
	dst = append(dst, `,"location_kind":"`...)
	dst = append(dst, p.LocationKind...)
	dst = append(dst, `","location_id":`...)
	dst = strconv.AppendUint(dst, p.LocationID, 10)
	dst = append(dst, `,"external_id":"`...)
	dst = append(dst, p.ExternalID...)
	dst = append(dst, `","quantity":`...)
	dst = strconv.AppendUint(dst, uint64(p.Quantity), 10)
	dst = append(dst, `,"quality":"`...)
	dst = append(dst, p.Quality...)
	dst = append(dst, `","product":"`...)
	dst = append(dst, p.Product...)
	dst = append(dst, `","cycle_time":`...)
	dst = appendFloat(dst, p.CycleTime)
	dst = append(dst, `,"has_cycle_time":`...)
	dst = strconv.AppendBool(dst, p.HasCycleTime)
	dst = append(dst, `,"reason":"`...)
	dst = append(dst, p.Reason...)
	dst = append(dst, `","recorded_at_ms":`...)
	dst = strconv.AppendInt(dst, p.RecordedAtMs, 10)
	dst = append(dst, `,"recorded_defaulted":`...)
	dst = strconv.AppendBool(dst, p.RecordedDefaulted)
	dst = append(dst, `,"received_at_ms":`...)
	dst = strconv.AppendInt(dst, p.ReceivedAtMs, 10)
	if p.IdempotencyID != "" {
		dst = append(dst, `,"idempotency_id":"`...)
		dst = append(dst, p.IdempotencyID...)
		dst = append(dst, '"')
	}
	return append(dst, '}'), nil
}

// plainASCII[c] is set for the ASCII bytes json.Marshal copies as they
// are: printable, but not '"', '\\', '<', '>' or '&'.
var plainASCII = func() (t [utf8.RuneSelf]bool) {
	for c := ' '; c < utf8.RuneSelf-1; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	t[utf8.RuneSelf-1] = true // DEL
	return t
}()

// plain reports whether json.Marshal writes s between its quotes as it is.
func plain(s string) bool {
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if !plainASCII[c] {
				return false
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 || r == '\u2028' || r == '\u2029' {
			return false
		}
		i += n
	}
	return true
}

// appendFloat writes f as encoding/json writes a float64: the shortest
// decimal that reads back as f, in exponent form below 1e-6 and from
// 1e21 on, with a one-digit negative exponent written without its zero.
func appendFloat(dst []byte, f float64) []byte {
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' {
		if n := len(dst); n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst
}

// decodeFast reads b into p when b is a part message in the form
// AppendEncode writes: the fields in its order, no whitespace, strings
// without escapes in valid UTF-8, integers as plain digits within their
// type's range, the version 1. It reports false for anything else, with p
// in any state. What it accepts json.Unmarshal reads into the same Part.
func decodeFast(b []byte, p *Part) bool {
	s := scanner{b: b}
	var eventID, kind, extID, quality, product, reason, idem span
	var ok bool
	p.V = 1 // the literal below; a new Version needs a new fast path
	if !s.lit(`{"v":1,"event_id":"`) || !s.str(&eventID) ||
		!s.lit(`,"site":`) || !s.uint(&p.Site, math.MaxUint64) ||
		!s.lit(`,"location_kind":"`) || !s.str(&kind) ||
		!s.lit(`,"location_id":`) || !s.uint(&p.LocationID, math.MaxUint64) ||
		!s.lit(`,"external_id":"`) || !s.str(&extID) ||
		!s.lit(`,"quantity":`) {
		return false
	}
	var qty uint64
	if !s.uint(&qty, math.MaxUint32) {
		return false
	}
	p.Quantity = uint32(qty)
	var recorded, received uint64
	if !s.lit(`,"quality":"`) || !s.str(&quality) ||
		!s.lit(`,"product":"`) || !s.str(&product) ||
		!s.lit(`,"cycle_time":`) {
		return false
	}
	if p.CycleTime, ok = s.float(); !ok ||
		!s.lit(`,"has_cycle_time":`) || !s.bool(&p.HasCycleTime) ||
		!s.lit(`,"reason":"`) || !s.str(&reason) ||
		!s.lit(`,"recorded_at_ms":`) || !s.uint(&recorded, math.MaxInt64) ||
		!s.lit(`,"recorded_defaulted":`) || !s.bool(&p.RecordedDefaulted) ||
		!s.lit(`,"received_at_ms":`) || !s.uint(&received, math.MaxInt64) {
		return false
	}
	p.RecordedAtMs, p.ReceivedAtMs = int64(recorded), int64(received)
	if s.lit(`,"idempotency_id":"`) && !s.str(&idem) {
		return false
	}
	if !s.lit(`}`) || s.i != len(b) {
		return false
	}

	// The strings share one allocation; the usual location kinds and
	// qualities need none.
	p.LocationKind = known(b, kind, "line", "machine")
	p.Quality = known(b, quality, QualityGood, QualityScrap, QualityRework)
	spans := [...]span{eventID, extID, product, reason, idem, kind, quality}
	if p.LocationKind != "" {
		spans[5] = span{}
	}
	if p.Quality != "" {
		spans[6] = span{}
	}
	buf := make([]byte, 0, 128)
	var ends [len(spans)]int
	for k, sp := range spans {
		buf = append(buf, b[sp.lo:sp.hi]...)
		ends[k] = len(buf)
	}
	all := string(buf)
	p.EventID = all[:ends[0]]
	p.ExternalID = all[ends[0]:ends[1]]
	p.Product = all[ends[1]:ends[2]]
	p.Reason = all[ends[2]:ends[3]]
	p.IdempotencyID = all[ends[3]:ends[4]]
	if p.LocationKind == "" {
		p.LocationKind = all[ends[4]:ends[5]]
	}
	if p.Quality == "" {
		p.Quality = all[ends[5]:ends[6]]
	}
	return true
}

// known returns the one of values that the string at sp is, "" when none.
func known(b []byte, sp span, values ...string) string {
	for _, v := range values {
		if string(b[sp.lo:sp.hi]) == v {
			return v
		}
	}
	return ""
}

// span is a string's bytes in the message, between its quotes.
type span struct{ lo, hi int }

// scanner reads a message from its start; each method consumes what it
// reads, or reports false when the input is not that (the scan is then
// given up).
type scanner struct {
	b []byte
	i int
}

// lit consumes s.
func (s *scanner) lit(lit string) bool {
	if len(s.b)-s.i < len(lit) || string(s.b[s.i:s.i+len(lit)]) != lit {
		return false
	}
	s.i += len(lit)
	return true
}

// str consumes the rest of a string whose opening quote lit consumed, up
// to and with its closing quote: no escape, no control character, valid
// UTF-8.
func (s *scanner) str(sp *span) bool {
	lo, ascii := s.i, true
	for i := lo; i < len(s.b); i++ {
		switch c := s.b[i]; {
		case c == '"':
			if !ascii && !utf8.Valid(s.b[lo:i]) {
				return false
			}
			*sp, s.i = span{lo, i}, i+1
			return true
		case c == '\\' || c < ' ':
			return false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return false
}

// uint consumes an unsigned integer in JSON's form (no sign, no leading
// zero, no fraction or exponent) of at most limit.
func (s *scanner) uint(v *uint64, limit uint64) bool {
	i, n := s.i, uint64(0)
	for ; i < len(s.b) && '0' <= s.b[i] && s.b[i] <= '9'; i++ {
		d := uint64(s.b[i] - '0')
		if n > (limit-d)/10 {
			return false
		}
		n = n*10 + d
	}
	switch {
	case i == s.i, s.b[s.i] == '0' && i-s.i > 1:
		return false
	case i < len(s.b) && (s.b[i] == '.' || s.b[i] == 'e' || s.b[i] == 'E'):
		return false
	}
	*v, s.i = n, i
	return true
}

// float consumes a number in JSON's grammar that strconv.ParseFloat reads
// without an error.
func (s *scanner) float() (float64, bool) {
	b, i := s.b, s.i
	digits := func() bool {
		j := i
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
		return i > j
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case !digits():
		return 0, false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if !digits() {
			return 0, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if !digits() {
			return 0, false
		}
	}
	f, err := strconv.ParseFloat(string(b[s.i:i]), 64)
	if err != nil {
		return 0, false
	}
	s.i = i
	return f, true
}

// bool consumes true or false.
func (s *scanner) bool(v *bool) bool {
	switch {
	case s.lit("true"):
		*v = true
	case s.lit("false"):
		*v = false
	default:
		return false
	}
	return true
}
