package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The references AppendEncode and Decode must agree with: encoding/json
// with the checks of Encode and Decode around it.

func encodeReference(p *Part) ([]byte, error) {
	p.V = Version
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(p)
}

func decodeReference(b []byte) (Part, error) {
	var p Part
	if err := json.Unmarshal(b, &p); err != nil {
		return Part{}, fmt.Errorf("decode part message: %w", err)
	}
	if err := p.check(); err != nil {
		return Part{}, err
	}
	return p, nil
}

// samePart reports whether a and b are equal, their cycle times bit for
// bit (-0 is not 0).
func samePart(a, b Part) bool {
	return a == b && math.Float64bits(a.CycleTime) == math.Float64bits(b.CycleTime)
}

// sameError reports whether a and b are the same outcome: both nil, or
// the same text and the same class.
func sameError(a, b error) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Error() == b.Error() &&
		errors.Is(a, ErrVersion) == errors.Is(b, ErrVersion) && errors.Is(a, ErrInvalid) == errors.Is(b, ErrInvalid)
}

// checkEncode compares AppendEncode (after a prefix, which it must keep)
// and Encode with the reference on p, and then Decode with the reference
// on what they wrote.
func checkEncode(t *testing.T, p Part) {
	t.Helper()
	ref := p
	want, wantErr := encodeReference(&ref)
	prefix := []byte("prefix")
	enc := p
	got, err := AppendEncode(prefix, &enc)
	if !sameError(err, wantErr) {
		t.Fatalf("AppendEncode(%+v): error %v, json.Marshal %v", p, err, wantErr)
	}
	if !bytes.HasPrefix(got, []byte("prefix")) {
		t.Fatalf("AppendEncode lost its prefix: %q", got)
	}
	if got = got[len(prefix):]; !bytes.Equal(got, want) {
		t.Fatalf("AppendEncode(%+v):\n got %s\nwant %s", p, got, want)
	}
	enc = p
	if got, err := Encode(&enc); !sameError(err, wantErr) || !bytes.Equal(got, want) {
		t.Fatalf("Encode(%+v) = %s, %v; json.Marshal %s, %v", p, got, err, want, wantErr)
	}
	if enc != ref && !(math.IsNaN(enc.CycleTime) && math.IsNaN(ref.CycleTime)) {
		t.Fatalf("Encode left %+v, the reference %+v", enc, ref)
	}
	if wantErr == nil {
		checkDecode(t, want)
	}
}

// checkDecode compares Decode with the reference on b.
func checkDecode(t *testing.T, b []byte) {
	t.Helper()
	want, wantErr := decodeReference(b)
	got, err := Decode(b)
	if !sameError(err, wantErr) || !samePart(got, want) {
		t.Fatalf("Decode(%q) = %+v, %v; json.Unmarshal %+v, %v", b, got, err, want, wantErr)
	}
	// What the fast way takes, json.Unmarshal reads into the same Part.
	var fast, ref Part
	if decodeFast(b, &fast) {
		if err := json.Unmarshal(b, &ref); err != nil || !samePart(fast, ref) {
			t.Fatalf("decodeFast took %q as %+v; json.Unmarshal %+v, %v", b, fast, ref, err)
		}
	}
}

func TestEncodeMatchesJSON(t *testing.T) {
	base := sample()
	parts := map[string]func(p *Part){
		"sample":              func(*Part) {},
		"idempotent":          func(p *Part) { p.IdempotencyID = "5F0C0B8E-2A4D-4C1E-9B7A-0E1D2C3B4A59" },
		"empty strings":       func(p *Part) { p.Product, p.Reason, p.Quality = "", "", QualityGood },
		"machine, rework":     func(p *Part) { p.LocationKind, p.Quality = "machine", QualityRework },
		"no cycle time":       func(p *Part) { p.CycleTime, p.HasCycleTime = 0, false },
		"negative zero":       func(p *Part) { p.CycleTime = math.Copysign(0, -1) },
		"tiny":                func(p *Part) { p.CycleTime = 1e-7 },
		"smallest":            func(p *Part) { p.CycleTime = 5e-324 },
		"just above 1e-6":     func(p *Part) { p.CycleTime = 1e-6 },
		"huge":                func(p *Part) { p.CycleTime = 1e21 },
		"below 1e21":          func(p *Part) { p.CycleTime = 999999999999999900000 },
		"largest":             func(p *Part) { p.CycleTime = math.MaxFloat64 },
		"inexact":             func(p *Part) { p.CycleTime = 0.1 + 0.2 },
		"exponent 100":        func(p *Part) { p.CycleTime = 1.5e-100 },
		"max integers":        func(p *Part) { p.Site, p.LocationID, p.Quantity = math.MaxUint64, math.MaxUint64, math.MaxUint32 },
		"max times":           func(p *Part) { p.RecordedAtMs, p.ReceivedAtMs = math.MaxInt64, math.MaxInt64 },
		"less than":           func(p *Part) { p.ExternalID = "line<1" },
		"greater than":        func(p *Part) { p.ExternalID = "line>1" },
		"ampersand":           func(p *Part) { p.Product = "P&1" },
		"backslash":           func(p *Part) { p.Reason = `R\1` },
		"delete":              func(p *Part) { p.Reason = "R\x7f" },
		"line separator":      func(p *Part) { p.ExternalID = "a\u2028b" },
		"paragraph separator": func(p *Part) { p.ExternalID = "a\u2029b" },
		"quote":               func(p *Part) { p.Product = `P"1\2` },
		"control characters":  func(p *Part) { p.Reason = "a\x00\b\f\n\r\t\x1f\x7fz" },
		"non-ASCII":           func(p *Part) { p.ExternalID = "Linie-Ä-東京-🙂" },
		"line separators":     func(p *Part) { p.ExternalID = "a\u2028b\u2029c" },
		"invalid UTF-8":       func(p *Part) { p.Product = "a\xffb\xc3" },
		"replacement char":    func(p *Part) { p.Product = "a\ufffdb" },
		"invalid quantity":    func(p *Part) { p.Quantity = 0 },
		"invalid cycle time":  func(p *Part) { p.CycleTime = math.NaN() },
		"infinite":            func(p *Part) { p.CycleTime = math.Inf(1) },
		"bad kind":            func(p *Part) { p.LocationKind = "cell" },
		"bad idempotency id":  func(p *Part) { p.IdempotencyID = "k-1" },
	}
	for name, mut := range parts {
		t.Run(name, func(t *testing.T) {
			p := base
			mut(&p)
			checkEncode(t, p)
		})
	}
}

// goldenParts returns the part messages of testdata.
func goldenParts(t testing.TB) [][]byte {
	t.Helper()
	var out [][]byte
	for _, f := range []string{"part_v1.json", "part_v1_idempotent.json"} {
		b, err := os.ReadFile(filepath.Join("testdata", f))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, bytes.TrimSuffix(b, []byte("\n")))
	}
	return out
}

// TestDecodeFastTakesTaktsMessages: what Takt writes takes the fast way
// (else Decode is correct but as slow as before).
func TestDecodeFastTakesTaktsMessages(t *testing.T) {
	msgs := goldenParts(t)
	for _, mut := range []func(p *Part){
		func(p *Part) { p.ExternalID = "Linie-Ä-東京" },
		func(p *Part) { p.Product, p.Reason, p.CycleTime, p.HasCycleTime = "", "", 0, false },
		func(p *Part) { p.CycleTime = 1.25e-9 },
		func(p *Part) { p.LocationKind, p.Quality = "machine", QualityGood },
		func(p *Part) { p.Site, p.LocationID = math.MaxUint64, math.MaxUint64 },
	} {
		p := sample()
		mut(&p)
		b, err := Encode(&p)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, b)
	}
	for _, b := range msgs {
		var p Part
		if !decodeFast(b, &p) {
			t.Errorf("%s does not take the fast way", b)
		}
		checkDecode(t, b)
	}
}

func TestDecodeMatchesJSON(t *testing.T) {
	golden := goldenParts(t)
	g := string(golden[0])
	rep := func(old, new string) string {
		if !strings.Contains(g, old) {
			t.Fatalf("%q is not in the golden message", old)
		}
		return strings.Replace(g, old, new, 1)
	}
	inputs := []string{
		"", "{", "null", "{}", "[]", `{"v":1}`, `{"v":2}`, g + "\n", " " + g, g + " ", g + "x", g + "}", g[:len(g)-1],
		string(golden[1]),
		rep(`{"v":1,`, `{"V":1,`),
		rep(`"site":1`, `"Site":1`),
		rep(`"v":1`, `"v":2`),
		rep(`"v":1`, `"v":1.0`),
		rep(`"v":1`, `"v":01`),
		rep(`"site":1`, `"site":01`),
		rep(`"site":1`, `"site":-1`),
		rep(`"site":1`, `"site":1e0`),
		rep(`"site":1`, `"site":1.0`),
		rep(`"site":1`, `"site":18446744073709551615`),
		rep(`"site":1`, `"site":18446744073709551616`),
		rep(`"site":1`, `"site":null`),
		rep(`"site":1`, `"site":"1"`),
		rep(`"quantity":5`, `"quantity":4294967295`),
		rep(`"quantity":5`, `"quantity":4294967296`),
		rep(`"quantity":5`, `"quantity":0`),
		rep(`"recorded_at_ms":1698765432000`, `"recorded_at_ms":9223372036854775807`),
		rep(`"recorded_at_ms":1698765432000`, `"recorded_at_ms":9223372036854775808`),
		rep(`"recorded_at_ms":1698765432000`, `"recorded_at_ms":-1`),
		rep(`"recorded_at_ms":1698765432000`, `"recorded_at_ms":-0`),
		rep(`"recorded_at_ms":1698765432000`, `"recorded_at_ms":0`),
		rep(`"cycle_time":45.5`, `"cycle_time":-0`),
		rep(`"cycle_time":45.5`, `"cycle_time":-0.0`),
		rep(`"cycle_time":45.5`, `"cycle_time":-1`),
		rep(`"cycle_time":45.5`, `"cycle_time":1e400`),
		rep(`"cycle_time":45.5`, `"cycle_time":1e-400`),
		rep(`"cycle_time":45.5`, `"cycle_time":1E+2`),
		rep(`"cycle_time":45.5`, `"cycle_time":1.`),
		rep(`"cycle_time":45.5`, `"cycle_time":.5`),
		rep(`"cycle_time":45.5`, `"cycle_time":045.5`),
		rep(`"cycle_time":45.5`, `"cycle_time":0x1p4`),
		rep(`"cycle_time":45.5`, `"cycle_time":Infinity`),
		rep(`"cycle_time":45.5`, `"cycle_time":NaN`),
		rep(`"cycle_time":45.5`, `"cycle_time":1e`),
		rep(`"cycle_time":45.5`, `"cycle_time":45.5e-2`),
		rep(`"has_cycle_time":true`, `"has_cycle_time":1`),
		rep(`"has_cycle_time":true`, `"has_cycle_time":tru`),
		rep(`"has_cycle_time":true`, `"has_cycle_time":null`),
		rep(`"external_id":"line_1"`, `"external_id":"line\u005f1"`),
		rep(`"external_id":"line_1"`, `"external_id":"line\"1"`),
		rep(`"external_id":"line_1"`, `"external_id":"line`+"\x01"+`1"`),
		rep(`"external_id":"line_1"`, `"external_id":"line`+"\xff"+`1"`),
		rep(`"external_id":"line_1"`, `"external_id":"Linie-Ä"`),
		rep(`"external_id":"line_1"`, `"external_id":"<&>`+"\u2028"+`"`),
		rep(`"external_id":"line_1"`, `"external_id":""`),
		rep(`"external_id":"line_1"`, `"external_id":"line_1`),
		rep(`"location_kind":"line"`, `"location_kind":"cell"`),
		rep(`"location_kind":"line"`, `"location_kind":""`),
		rep(`"location_kind":"line"`, `"location_kind":"LINE"`),
		rep(`"quality":"scrap"`, `"quality":"meh"`),
		rep(`"quality":"scrap"`, `"quality":"good"`),
		rep(`"event_id":"0190f2a4-5b6c-7d8e-9f00-112233445566"`, `"event_id":""`),
		rep(`"event_id":"0190f2a4-5b6c-7d8e-9f00-112233445566"`, `"event_id":"not a uuid"`),
		rep(`,"reason":"REASON01"`, ``),
		rep(`,"reason":"REASON01"`, `,"reason":"REASON01","reason":"R2"`),
		rep(`,"reason":"REASON01"`, `,"extra":{"a":[1,2]},"reason":"REASON01"`),
		rep(`"site":1,`, `"site": 1,`),
		rep(`}`, `,"idempotency_id":""}`),
		rep(`}`, `,"idempotency_id":"k-1"}`),
		rep(`}`, `,"idempotency_id":"5f0c0b8e-2a4d-4c1e-9b7a-0e1d2c3b4a59","x":1}`),
		rep(`}`, `,"idempotency_id":"5f0c0b8e-2a4d-4c1e-9b7a-0e1d2c3b4a59"`),
		rep(`}`, `,"idempotency_id":null}`),
		rep(`}`, `,"idempotency_id":"5f0c0b8e-2a4d-4c1e-9b7a-0e1d2c3b4a59"}`),
	}
	for _, in := range inputs {
		checkDecode(t, []byte(in))
	}
	// Every prefix of a valid message is refused as json.Unmarshal does.
	for _, b := range golden {
		for i := range len(b) {
			checkDecode(t, b[:i])
		}
	}
}

// partArgs are the fuzzed values a Part is made of.
type partArgs struct {
	eventID, kind, extID, quality, product, reason, idem string
	site, location                                       uint64
	quantity                                             uint32
	cycleTime                                            float64
	hasCycleTime, defaulted                              bool
	recorded, received                                   int64
}

func (a partArgs) part() Part {
	return Part{EventID: a.eventID, Site: a.site, LocationKind: a.kind, LocationID: a.location, ExternalID: a.extID,
		Quantity: a.quantity, Quality: a.quality, Product: a.product, CycleTime: a.cycleTime,
		HasCycleTime: a.hasCycleTime, Reason: a.reason, RecordedAtMs: a.recorded, RecordedDefaulted: a.defaulted,
		ReceivedAtMs: a.received, IdempotencyID: a.idem}
}

func argsOf(p Part) partArgs {
	return partArgs{p.EventID, p.LocationKind, p.ExternalID, p.Quality, p.Product, p.Reason, p.IdempotencyID,
		p.Site, p.LocationID, p.Quantity, p.CycleTime, p.HasCycleTime, p.RecordedDefaulted, p.RecordedAtMs, p.ReceivedAtMs}
}

// FuzzEncodeMatchesJSON: for any Part, AppendEncode and Encode write the
// bytes json.Marshal writes (or fail as Encode did), and Decode reads
// them back as json.Unmarshal does.
func FuzzEncodeMatchesJSON(f *testing.F) {
	for _, b := range goldenParts(f) {
		var p Part
		if err := json.Unmarshal(b, &p); err != nil {
			f.Fatal(err)
		}
		a := argsOf(p)
		f.Add(a.eventID, a.kind, a.extID, a.quality, a.product, a.reason, a.idem, a.site, a.location, a.quantity,
			a.cycleTime, a.hasCycleTime, a.defaulted, a.recorded, a.received)
	}
	f.Add("e<1>", "machine", "Linie-Ä\u2028", "rework", "a\"\\\x00", "\xff", "", uint64(math.MaxUint64), uint64(0),
		uint32(math.MaxUint32), 1e-7, false, true, int64(1), int64(math.MaxInt64))
	f.Add("e", "line", "x", "good", "", "", "", uint64(1), uint64(1), uint32(1), math.Copysign(0, -1), true, false,
		int64(1), int64(1))
	f.Fuzz(func(t *testing.T, eventID, kind, extID, quality, product, reason, idem string, site, location uint64,
		quantity uint32, cycleTime float64, hasCycleTime, defaulted bool, recorded, received int64) {
		checkEncode(t, partArgs{eventID, kind, extID, quality, product, reason, idem, site, location, quantity,
			cycleTime, hasCycleTime, defaulted, recorded, received}.part())
	})
}

// FuzzDecodeMatchesJSON: for any bytes, Decode returns what
// json.Unmarshal and the checks return: the same part, or an error with
// the same text and class.
func FuzzDecodeMatchesJSON(f *testing.F) {
	for _, b := range goldenParts(f) {
		f.Add(b)
		f.Add(bytes.Replace(b, []byte(`"site":1`), []byte(`"site":01`), 1))
		f.Add(bytes.Replace(b, []byte(`"line_1"`), []byte(`"Linie-\u00c4"`), 1))
	}
	f.Add([]byte(`{"v":1}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDecode(t, b)
	})
}

func BenchmarkAppendEncode(b *testing.B) {
	p := sample()
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = AppendEncode(buf[:0], &p); err != nil {
			b.Fatal(err)
		}
	}
}

// TestEncodedSizeHint: the hint holds the message and wastes at most the
// float's bound.
func TestEncodedSizeHint(t *testing.T) {
	for _, mut := range []func(p *Part){
		func(*Part) {},
		func(p *Part) { p.IdempotencyID = "5f0c0b8e-2a4d-4c1e-9b7a-0e1d2c3b4a59" },
		func(p *Part) { p.CycleTime = 2.2250738585072014e-308 },
		func(p *Part) { p.CycleTime = 0.0000012345678901234567 },
		func(p *Part) { p.CycleTime = 123456789012345678901 },
		func(p *Part) { p.RecordedDefaulted, p.HasCycleTime = true, false },
		func(p *Part) { p.Site, p.LocationID, p.Quantity = math.MaxUint64, 0, math.MaxUint32 },
		func(p *Part) { p.RecordedAtMs, p.ReceivedAtMs = math.MaxInt64, 1 },
	} {
		p := sample()
		mut(&p)
		b, err := Encode(&p)
		if err != nil {
			t.Fatal(err)
		}
		if hint := EncodedSizeHint(&p); hint < len(b) || hint > len(b)+25 {
			t.Errorf("hint %d for %d bytes: %s", hint, len(b), b)
		}
	}
}
