package ingestor

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/takt/takt/internal/wire"
)

// Limits of a part event. Values outside them are device bugs (a counter
// sent as the quantity, milliseconds sent as seconds) that would poison
// every aggregate they touch, so they are rejected, not clamped.
const (
	maxQuantity  = 100_000
	maxCycleTime = 86_400.0 // one day, in seconds
	maxFuture    = 24 * time.Hour
	// minRecordedMs is 2000-01-01T00:00:00Z.
	minRecordedMs = 946_684_800_000
	// maxOffset is the widest UTC offset in use (+14:00), used to bound a
	// time without offset before its location's zone is known.
	maxOffset = 14 * time.Hour
	// maxIDBytes bounds external_id, product and reason (UTF-8 bytes):
	// codes, not documents. It also bounds what an answer quotes back.
	maxIDBytes = 255
)

// formatError is a problem with the message; the handler answers it with
// 422 "Invalid message format: <msg>".
type formatError struct{ msg string }

func (e *formatError) Error() string { return e.msg }

func formatErr(format string, args ...any) error {
	return &formatError{msg: fmt.Sprintf(format, args...)}
}

// isFormatError reports whether err is a problem with the message.
func isFormatError(err error) bool {
	var fe *formatError
	return errors.As(err, &fe)
}

// partInput is a parsed and validated part message, before the location is
// known.
type partInput struct {
	ExternalID   string
	Quantity     uint32
	Quality      string
	Product      string
	CycleTime    float64
	HasCycleTime bool
	Reason       string // only kept for scrap
	// RecordedAtMs is set unless RecordedDefaulted (receipt time used) or
	// Local (a wall-clock time without UTC offset).
	RecordedAtMs      int64
	RecordedDefaulted bool
	// Local is set when recorded_at had no UTC offset: it is then a time
	// on the location's wall clock, resolved by resolveLocal.
	Local     bool
	LocalWall wallClock
	// IdempotencyKey is the client's key for this part (the
	// idempotency_key field, or process_part's Idempotency-Key header);
	// empty when none was sent.
	IdempotencyKey string
}

// wallClock is a date and time without a zone.
type wallClock struct {
	year, month, day, hour, min, sec, nsec int
}

func (w wallClock) in(loc *time.Location) time.Time {
	return time.Date(w.year, time.Month(w.month), w.day, w.hour, w.min, w.sec, w.nsec, loc)
}

// Field bits, for duplicate detection.
const (
	fExternalID = 1 << iota
	fQuantity
	fQuality
	fProduct
	fCycleTime
	fRecordedAt
	fReason
	fIdempotencyKey
)

// parsePart parses and validates the body of a process_part request. now is
// the receipt time: the default of recorded_at and the reference of its
// limits. Every error it returns is a *formatError.
//
// The parser is hand-written for the one shape it accepts (an object whose
// only field "part" is an object of scalar fields): it rejects unknown and
// duplicate field names exactly (encoding/json matches names without regard
// to case), says which field is wrong and why, and allocates only the
// strings it keeps.
func parsePart(body []byte, now time.Time) (partInput, error) {
	s := scanner{b: body}
	var in partInput
	err := s.envelope("part", '{', "part must be a JSON object", "missing part", unknownInSingle,
		func() error { return s.part(&in, now) })
	if err != nil {
		return in, err
	}
	return in, in.finish(now)
}

// parseTopicPart parses the payload of an MQTT message on
// takt/parts/<topicID>: the body of process_part, whose external_id may be
// left out (the topic names it) but must agree with the topic when given.
func parseTopicPart(body []byte, topicID string, now time.Time) (partInput, error) {
	switch {
	case topicID == "":
		return partInput{}, formatErr("the topic names no external_id (takt/parts/<external_id>)")
	case !utf8.ValidString(topicID):
		return partInput{}, formatErr("the topic's external_id is not UTF-8")
	}
	if err := identifier("external_id", []byte(topicID)); err != nil {
		return partInput{}, err
	}
	s := scanner{b: body}
	var in partInput
	err := s.envelope("part", '{', "part must be a JSON object", "missing part", unknownInSingle,
		func() error { return s.part(&in, now) })
	if err != nil {
		return in, err
	}
	switch {
	case in.ExternalID == "":
		in.ExternalID = topicID
	case in.ExternalID != topicID:
		return in, formatErr("external_id %s differs from the topic's %s", quote([]byte(in.ExternalID)), quote([]byte(topicID)))
	}
	return in, in.finish(now)
}

// unknownInSingle is the error for a top-level field other than "part": a
// part field sent without the envelope says where it belongs.
func unknownInSingle(key []byte) error {
	if fieldBit(key) != 0 {
		return formatErr("unknown field %s (the part's fields go inside \"part\")", quote(key))
	}
	return formatErr("unknown field %s", quote(key))
}

// envelope reads a body that must be a JSON object whose only field is
// name, shared by the single and the batch call. When the field's value
// starts with open ('{' or '['), read parses it from there; null counts as
// absent; any other value fails with wrongType. unknown gives the error
// for any other field name; missing is the error when the field is absent.
// Trailing data after the object is a syntax error.
func (s *scanner) envelope(name string, open byte, wrongType, missing string, unknown func(key []byte) error, read func() error) error {
	s.skipWS()
	if s.i == len(s.b) {
		return formatErr("empty body")
	}
	if s.b[s.i] != '{' {
		return formatErr("body must be a JSON object")
	}
	s.i++
	saw := false
	for first := true; ; first = false {
		s.skipWS()
		if first && s.peek() == '}' {
			s.i++
			break
		}
		key, err := s.key()
		if err != nil {
			return err
		}
		if string(key) != name {
			return unknown(key)
		}
		if saw {
			return formatErr("duplicate field %s", strconv.Quote(name))
		}
		saw = true
		switch s.peek() {
		case open:
			if err := read(); err != nil {
				return err
			}
		case 'n':
			if err := s.literal("null"); err != nil {
				return err
			}
			saw = false // null: as if absent
		default:
			if _, err := s.value(); err != nil {
				return err
			}
			return &formatError{msg: wrongType}
		}
		if done, err := s.next(); err != nil {
			return err
		} else if done {
			break
		}
	}
	s.skipWS()
	if s.i != len(s.b) {
		return s.syntax("unexpected data after the JSON object")
	}
	if !saw {
		return &formatError{msg: missing}
	}
	return nil
}

// part parses the part object into in.
func (s *scanner) part(in *partInput, now time.Time) error {
	s.i++ // '{'
	var seen int
	for first := true; ; first = false {
		s.skipWS()
		if first && s.peek() == '}' {
			s.i++
			return nil
		}
		key, err := s.key()
		if err != nil {
			return err
		}
		bit := fieldBit(key)
		if bit == 0 {
			return formatErr("unknown field %s in part", quote(key))
		}
		if seen&bit != 0 {
			return formatErr("duplicate field %s in part", quote(key))
		}
		seen |= bit
		v, err := s.value()
		if err != nil {
			return err
		}
		if v.kind != kindNull {
			if err := in.set(bit, v, now); err != nil {
				return err
			}
		}
		if done, err := s.next(); err != nil {
			return err
		} else if done {
			return nil
		}
	}
}

func fieldBit(key []byte) int {
	switch string(key) {
	case "external_id":
		return fExternalID
	case "quantity":
		return fQuantity
	case "quality":
		return fQuality
	case "product":
		return fProduct
	case "cycle_time":
		return fCycleTime
	case "recorded_at":
		return fRecordedAt
	case "reason":
		return fReason
	case "idempotency_key":
		return fIdempotencyKey
	}
	return 0
}

// set stores one non-null field value.
func (in *partInput) set(bit int, v jsonValue, now time.Time) error {
	switch bit {
	case fExternalID:
		if v.kind != kindString {
			return formatErr("external_id must be a string, got %s", v.kind)
		}
		if len(v.raw) == 0 {
			return formatErr("external_id is empty")
		}
		if err := identifier("external_id", v.raw); err != nil {
			return err
		}
		in.ExternalID = string(v.raw)
	case fQuantity:
		q, err := parseQuantity(v)
		if err != nil {
			return err
		}
		in.Quantity = q
	case fQuality:
		if v.kind != kindString {
			return formatErr("quality must be a string, got %s", v.kind)
		}
		switch string(v.raw) {
		case wire.QualityGood:
			in.Quality = wire.QualityGood
		case wire.QualityScrap:
			in.Quality = wire.QualityScrap
		case wire.QualityRework:
			in.Quality = wire.QualityRework
		default:
			return formatErr("quality must be good, scrap or rework, got %s", quote(v.raw))
		}
	case fProduct:
		if v.kind != kindString {
			return formatErr("product must be a string, got %s", v.kind)
		}
		if err := identifier("product", v.raw); err != nil {
			return err
		}
		in.Product = string(v.raw)
	case fReason:
		if v.kind != kindString {
			return formatErr("reason must be a string, got %s", v.kind)
		}
		if err := identifier("reason", v.raw); err != nil {
			return err
		}
		in.Reason = string(v.raw)
	case fCycleTime:
		if v.kind != kindNumber {
			return formatErr("cycle_time must be a number of seconds, got %s", v.kind)
		}
		f, err := parseFloat(v.raw)
		switch {
		case err != nil || math.IsInf(f, 0) || math.IsNaN(f):
			return formatErr("cycle_time %s is not a finite number", cut(v.raw))
		case f < 0:
			return formatErr("cycle_time %s is negative", cut(v.raw))
		case f > maxCycleTime:
			return formatErr("cycle_time %s is more than a day (max %d seconds)", cut(v.raw), int(maxCycleTime))
		}
		in.CycleTime, in.HasCycleTime = f, true
	case fRecordedAt:
		return in.setRecordedAt(v, now)
	case fIdempotencyKey:
		if v.kind != kindString {
			return formatErr("idempotency_key must be a string, got %s", v.kind)
		}
		if err := checkIdempotencyKey("idempotency_key", v.raw); err != nil {
			return err
		}
		in.IdempotencyKey = string(v.raw)
	}
	return nil
}

// parseQuantity reads quantity exactly: 5, 5.0 and 5e0 are 5, but
// 1.0000000000000000001 is not an integer, though float64 rounds it to 1.
func parseQuantity(v jsonValue) (uint32, error) {
	if v.kind != kindNumber {
		return 0, formatErr("quantity must be an integer, got %s", v.kind)
	}
	raw := v.raw
	n, neg, integral, big := decimalInt(raw, maxQuantity)
	switch {
	case !integral:
		return 0, formatErr("quantity must be an integer, got %s", cut(raw))
	case neg || n == 0 && !big:
		return 0, formatErr("quantity must be at least 1, got %s", cut(raw))
	case big:
		return 0, formatErr("quantity %s is absurdly large (max %d)", cut(raw), maxQuantity)
	}
	return uint32(n), nil
}

// decimalInt reads the JSON number raw as the exact decimal it is: whether
// it is an integer (no nonzero digit after the decimal point once the
// exponent is applied), its sign, and its magnitude when that is at most
// limit (big otherwise). Its work is linear in len(raw), whatever the
// exponent.
func decimalInt(raw []byte, limit uint64) (n uint64, neg, integral, big bool) {
	i := 0
	if i < len(raw) && raw[i] == '-' {
		neg = true
		i++
	}
	start := i
	i = digits(raw, i)
	whole := raw[start:i]
	var frac []byte
	if i < len(raw) && raw[i] == '.' {
		j := digits(raw, i+1)
		frac, i = raw[i+1:j], j
	}
	exp := 0
	if i < len(raw) && (raw[i] == 'e' || raw[i] == 'E') {
		i++
		negExp := i < len(raw) && raw[i] == '-'
		if i < len(raw) && (raw[i] == '-' || raw[i] == '+') {
			i++
		}
		for ; i < len(raw); i++ {
			if exp < 1_000_000 { // beyond this, only the sign matters
				exp = exp*10 + int(raw[i]-'0')
			}
		}
		if negExp {
			exp = -exp
		}
	}
	// The number is the digits whole‖frac with the decimal point after
	// point of them.
	total, point := len(whole)+len(frac), len(whole)+exp
	digit := func(k int) uint64 {
		if k < len(whole) {
			return uint64(whole[k] - '0')
		}
		return uint64(frac[k-len(whole)] - '0')
	}
	integral = true
	for k := max(point, 0); k < total; k++ {
		if digit(k) != 0 {
			integral = false
			break
		}
	}
	for k := 0; k < min(point, total); k++ {
		if n = n*10 + digit(k); n > limit {
			return 0, neg, integral, true
		}
	}
	for k := total; n > 0 && k < point; k++ {
		if n *= 10; n > limit {
			return 0, neg, integral, true
		}
	}
	return n, neg, integral, false
}

// digits returns the index after the decimal digits of b from i on.
func digits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

// identifier checks the value of external_id, product or reason: at most
// maxIDBytes, and no control characters (they have no place in a code, and
// would let a client forge lines in logs and exports).
func identifier(field string, b []byte) error {
	if len(b) > maxIDBytes {
		return formatErr("%s is longer than %d bytes", field, maxIDBytes)
	}
	for i := 0; i < len(b); {
		r, size := rune(b[i]), 1
		if r >= utf8.RuneSelf {
			r, size = utf8.DecodeRune(b[i:])
		}
		if unicode.IsControl(r) {
			return formatErr("%s contains a control character (U+%04X)", field, r)
		}
		i += size
	}
	return nil
}

// cut returns a number's text for an error message, cut to 64 bytes: an
// answer never echoes much of the client's input.
func cut(raw []byte) string {
	const max = 64
	if len(raw) > max {
		return string(raw[:max]) + "…"
	}
	return string(raw)
}

// setRecordedAt accepts Unix seconds (a number or a numeric string) or an
// ISO 8601 date-time string.
func (in *partInput) setRecordedAt(v jsonValue, now time.Time) error {
	switch v.kind {
	case kindNumber:
		return in.setUnix(v.raw, false, now)
	case kindString:
		if isNumeric(v.raw) {
			return in.setUnix(v.raw, true, now)
		}
		w, off, hasOff, ok := parseISO(v.raw)
		if !ok {
			return formatErr("recorded_at %s is neither Unix seconds nor an ISO 8601 date-time (e.g. 2024-01-01T10:00:00Z)", quote(v.raw))
		}
		if !hasOff {
			// Bound it as if it were UTC, widened by the widest offset;
			// the exact check follows once the zone is known.
			ms := w.in(time.UTC).UnixMilli()
			if ms < minRecordedMs-maxOffset.Milliseconds() || ms > now.Add(maxFuture+maxOffset).UnixMilli() {
				return rangeErr(ms, quote(v.raw), now)
			}
			in.Local, in.LocalWall = true, w
			return nil
		}
		ms := w.in(time.UTC).Add(-time.Duration(off) * time.Second).UnixMilli()
		if err := checkRecorded(ms, quote(v.raw), now); err != nil {
			return err
		}
		in.RecordedAtMs = ms
		return nil
	}
	return formatErr("recorded_at must be Unix seconds or an ISO 8601 string, got %s", v.kind)
}

// setUnix takes Unix seconds, sent as a number or (quoted) as a string.
func (in *partInput) setUnix(raw []byte, quoted bool, now time.Time) error {
	// shown is how the value appears in errors; only errors pay for it.
	shown := func() string {
		if quoted {
			return quote(raw)
		}
		return cut(raw)
	}
	var secs float64
	if n, ok := parseUint(raw); ok {
		secs = float64(n)
	} else {
		f, err := parseFloat(raw)
		if err != nil && !errors.Is(err, strconv.ErrRange) || math.IsNaN(f) {
			return formatErr("recorded_at %s is not a number", shown())
		}
		secs = f // ±Inf for huge values: caught by the range check
	}
	maxMs := now.Add(maxFuture).UnixMilli()
	switch {
	case secs*1000 < minRecordedMs:
		return formatErr("recorded_at %s is before 2000-01-01", shown())
	case secs*1000 > float64(maxMs):
		// The value read as milliseconds would be a plausible time.
		if secs >= minRecordedMs && secs <= float64(maxMs) {
			return formatErr("recorded_at %s looks like Unix milliseconds; send seconds (%s)", shown(),
				strconv.FormatFloat(secs/1000, 'f', -1, 64))
		}
		return formatErr("recorded_at %s is more than 24 h in the future", shown())
	}
	in.RecordedAtMs = int64(math.Round(secs * 1000))
	return nil
}

func checkRecorded(ms int64, shown string, now time.Time) error {
	if ms < minRecordedMs || ms > now.Add(maxFuture).UnixMilli() {
		return rangeErr(ms, shown, now)
	}
	return nil
}

func rangeErr(ms int64, shown string, now time.Time) error {
	if ms < minRecordedMs {
		return formatErr("recorded_at %s is before 2000-01-01", shown)
	}
	return formatErr("recorded_at %s is more than 24 h in the future", shown)
}

// finish checks what needs every field and fills the defaults.
func (in *partInput) finish(now time.Time) error {
	if in.ExternalID == "" {
		return formatErr("missing external_id")
	}
	if in.Quantity == 0 {
		in.Quantity = 1
	}
	if in.Quality == "" {
		in.Quality = wire.QualityGood
	}
	if in.Quality != wire.QualityScrap {
		in.Reason = ""
	}
	if in.RecordedAtMs == 0 && !in.Local {
		in.RecordedAtMs, in.RecordedDefaulted = now.UnixMilli(), true
	}
	return nil
}

// resolveLocal turns a recorded_at without UTC offset into a time, reading
// it on the wall clock of tz (the location's site). tz is nil when the
// site's zone is unknown.
func (in *partInput) resolveLocal(tz *time.Location, tzName string, now time.Time) error {
	if !in.Local {
		return nil
	}
	if tz == nil {
		return formatErr("recorded_at has no UTC offset and the location's time zone %q is unknown; add Z or an offset", tzName)
	}
	t := in.LocalWall.in(tz)
	if err := checkRecorded(t.UnixMilli(), t.Format(time.RFC3339), now); err != nil {
		return err
	}
	in.RecordedAtMs, in.Local = t.UnixMilli(), false
	return nil
}

// isNumeric reports whether a string holds a JSON-style number.
func isNumeric(b []byte) bool {
	s := scanner{b: b}
	if _, err := s.number(); err != nil {
		return false
	}
	return s.i == len(b)
}

// parseISO parses YYYY-MM-DD(T| )hh:mm[:ss[.frac]][Z|±hh[:mm]|±hhmm]. off is
// the UTC offset in seconds; hasOff says whether one was given.
func parseISO(b []byte) (w wallClock, off int, hasOff bool, ok bool) {
	p := 0
	num := func(n int) (int, bool) {
		if p+n > len(b) {
			return 0, false
		}
		v := 0
		for _, c := range b[p : p+n] {
			if c < '0' || c > '9' {
				return 0, false
			}
			v = v*10 + int(c-'0')
		}
		p += n
		return v, true
	}
	lit := func(cs ...byte) bool {
		if p < len(b) {
			for _, c := range cs {
				if b[p] == c {
					p++
					return true
				}
			}
		}
		return false
	}
	var okY, okM, okD, okh, okm bool
	w.year, okY = num(4)
	if !okY || !lit('-') {
		return w, 0, false, false
	}
	w.month, okM = num(2)
	if !okM || !lit('-') {
		return w, 0, false, false
	}
	w.day, okD = num(2)
	if !okD || !lit('T', 't', ' ') {
		return w, 0, false, false
	}
	w.hour, okh = num(2)
	if !okh || !lit(':') {
		return w, 0, false, false
	}
	w.min, okm = num(2)
	if !okm {
		return w, 0, false, false
	}
	if lit(':') {
		var oks bool
		if w.sec, oks = num(2); !oks {
			return w, 0, false, false
		}
		if lit('.', ',') {
			digits, scale := 0, 100_000_000
			for p < len(b) && b[p] >= '0' && b[p] <= '9' {
				w.nsec += int(b[p]-'0') * scale
				scale /= 10
				digits++
				p++
			}
			if digits == 0 {
				return w, 0, false, false
			}
		}
	}
	if w.month < 1 || w.month > 12 || w.day < 1 || w.day > daysIn(w.year, w.month) ||
		w.hour > 23 || w.min > 59 || w.sec > 59 {
		return w, 0, false, false
	}
	if p == len(b) {
		return w, 0, false, true
	}
	if lit('Z', 'z') {
		return w, 0, true, p == len(b)
	}
	sign := 1
	switch {
	case lit('+'):
	case lit('-'):
		sign = -1
	default:
		return w, 0, false, false
	}
	hh, okh := num(2)
	if !okh {
		return w, 0, false, false
	}
	mm := 0
	if p < len(b) {
		lit(':')
		var okmm bool
		if mm, okmm = num(2); !okmm {
			return w, 0, false, false
		}
	}
	if p != len(b) || hh > 18 || mm > 59 {
		return w, 0, false, false
	}
	return w, sign * (hh*3600 + mm*60), true, true
}

func daysIn(year, month int) int {
	return time.Date(year, time.Month(month)+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// parseUint parses a plain non-negative JSON integer of at most 15 digits
// (exact in a float64) without allocating.
func parseUint(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 15 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, true
}

func parseFloat(b []byte) (float64, error) { return strconv.ParseFloat(string(b), 64) }

// quote returns b as a Go/JSON-style quoted string, cut to 64 bytes, for
// error messages.
func quote(b []byte) string {
	const max = 64
	if len(b) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(b[cut]) {
			cut--
		}
		return strconv.Quote(string(b[:cut])) + "…"
	}
	return strconv.Quote(string(b))
}

// The scanner reads the subset of JSON the message uses. Values are read
// as scalars; an object or array where a scalar belongs is reported as a
// wrong type without being read.

type valueKind uint8

const (
	kindString valueKind = iota + 1
	kindNumber
	kindBool
	kindNull
	kindObject
	kindArray
)

func (k valueKind) String() string {
	switch k {
	case kindString:
		return "a string"
	case kindNumber:
		return "a number"
	case kindBool:
		return "a boolean"
	case kindNull:
		return "null"
	case kindObject:
		return "an object"
	case kindArray:
		return "an array"
	}
	return "nothing"
}

type jsonValue struct {
	kind valueKind
	raw  []byte // string: decoded content; number: its text
}

type scanner struct {
	b []byte
	i int
}

func (s *scanner) syntax(what string) error {
	return formatErr("malformed JSON at byte %d: %s", s.i, what)
}

func (s *scanner) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *scanner) skipWS() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// key reads `"name" :` and leaves s before the value.
func (s *scanner) key() ([]byte, error) {
	if s.peek() != '"' {
		return nil, s.syntax("expected a field name")
	}
	k, err := s.str()
	if err != nil {
		return nil, err
	}
	s.skipWS()
	if s.peek() != ':' {
		return nil, s.syntax("expected ':' after a field name")
	}
	s.i++
	s.skipWS()
	return k, nil
}

// next reads the ',' or '}' after a field; done is true after '}'.
func (s *scanner) next() (done bool, err error) {
	s.skipWS()
	switch s.peek() {
	case ',':
		s.i++
		s.skipWS()
		return false, nil
	case '}':
		s.i++
		return true, nil
	}
	return false, s.syntax("expected ',' or '}'")
}

// value reads a scalar, or identifies an object or array without reading
// it (the caller rejects those).
func (s *scanner) value() (jsonValue, error) {
	switch c := s.peek(); {
	case c == '"':
		b, err := s.str()
		return jsonValue{kindString, b}, err
	case c == '-' || c >= '0' && c <= '9':
		b, err := s.number()
		return jsonValue{kindNumber, b}, err
	case c == 't':
		return jsonValue{kind: kindBool}, s.literal("true")
	case c == 'f':
		return jsonValue{kind: kindBool}, s.literal("false")
	case c == 'n':
		return jsonValue{kind: kindNull}, s.literal("null")
	case c == '{':
		return jsonValue{kind: kindObject}, nil
	case c == '[':
		return jsonValue{kind: kindArray}, nil
	}
	return jsonValue{}, s.syntax("expected a value")
}

func (s *scanner) literal(lit string) error {
	if len(s.b)-s.i < len(lit) || string(s.b[s.i:s.i+len(lit)]) != lit {
		return s.syntax("invalid literal")
	}
	s.i += len(lit)
	return nil
}

// number reads a JSON number and returns its text.
func (s *scanner) number() ([]byte, error) {
	start := s.i
	if s.peek() == '-' {
		s.i++
	}
	switch c := s.peek(); {
	case c == '0':
		s.i++
	case c >= '1' && c <= '9':
		s.digits()
	default:
		return nil, s.syntax("invalid number")
	}
	if s.peek() == '.' {
		s.i++
		if s.digits() == 0 {
			return nil, s.syntax("invalid number")
		}
	}
	if c := s.peek(); c == 'e' || c == 'E' {
		s.i++
		if c := s.peek(); c == '+' || c == '-' {
			s.i++
		}
		if s.digits() == 0 {
			return nil, s.syntax("invalid number")
		}
	}
	return s.b[start:s.i], nil
}

func (s *scanner) digits() int {
	n := 0
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
		n++
	}
	return n
}

// str reads a JSON string and returns its content. Without escapes the
// result aliases the input; with escapes it is a new slice. Invalid UTF-8
// is rejected (it could not travel on in a JSON message unchanged); a lone
// UTF-16 surrogate in an escape becomes U+FFFD, as encoding/json does.
func (s *scanner) str() ([]byte, error) {
	s.i++ // opening quote
	start := s.i
	ascii := true
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			out := s.b[start:s.i]
			s.i++
			if !ascii && !utf8.Valid(out) {
				return nil, s.syntax("invalid UTF-8 in a string")
			}
			return out, nil
		case c == '\\':
			return s.strEscaped(start)
		case c < 0x20:
			return nil, s.syntax("control character in a string")
		case c >= utf8.RuneSelf:
			ascii = false
		}
		s.i++
	}
	return nil, s.syntax("unterminated string")
}

// strEscaped continues str from the first backslash.
func (s *scanner) strEscaped(start int) ([]byte, error) {
	out := make([]byte, 0, s.i-start+16)
	out = append(out, s.b[start:s.i]...)
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			if !utf8.Valid(out) {
				return nil, s.syntax("invalid UTF-8 in a string")
			}
			return out, nil
		case c < 0x20:
			return nil, s.syntax("control character in a string")
		case c != '\\':
			out = append(out, c)
			s.i++
			continue
		}
		s.i++ // backslash
		if s.i >= len(s.b) {
			break
		}
		e := s.b[s.i]
		s.i++
		switch e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := hex4(s.b[s.i:])
			if !ok {
				return nil, s.syntax("invalid \\u escape")
			}
			s.i += 4
			if utf16.IsSurrogate(r) {
				if len(s.b)-s.i >= 6 && s.b[s.i] == '\\' && s.b[s.i+1] == 'u' {
					if r2, ok := hex4(s.b[s.i+2:]); ok {
						if d := utf16.DecodeRune(r, r2); d != unicode.ReplacementChar {
							s.i += 6
							out = utf8.AppendRune(out, d)
							continue
						}
					}
				}
				r = unicode.ReplacementChar
			}
			out = utf8.AppendRune(out, r)
		default:
			return nil, s.syntax("invalid escape")
		}
	}
	return nil, s.syntax("unterminated string")
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}
