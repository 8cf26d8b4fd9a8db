package ingestor

import (
	"encoding/json"
	"fmt"
	mbig "math/big"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

var testNow = time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC)

func ms(s string) int64 {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UnixMilli()
}

func TestParsePartValid(t *testing.T) {
	def := func(p partInput) partInput {
		if p.Quantity == 0 {
			p.Quantity = 1
		}
		if p.Quality == "" {
			p.Quality = "good"
		}
		return p
	}
	now := testNow.UnixMilli()
	tests := []struct {
		name string
		body string
		want partInput
	}{
		{"basic", `{"part":{"external_id":"line_1","quantity":1}}`,
			def(partInput{ExternalID: "line_1", RecordedAtMs: now, RecordedDefaulted: true})},
		{"only external id", `{"part":{"external_id":"line_1"}}`,
			def(partInput{ExternalID: "line_1", RecordedAtMs: now, RecordedDefaulted: true})},
		{"comprehensive good",
			`{"part":{"external_id":"line_1","quantity":5,"quality":"good","product":"PROD001","cycle_time":45.5,"recorded_at":1698765432}}`,
			partInput{ExternalID: "line_1", Quantity: 5, Quality: "good", Product: "PROD001",
				CycleTime: 45.5, HasCycleTime: true, RecordedAtMs: 1698765432000}},
		{"scrap keeps reason",
			`{"part":{"external_id":"line_1","quantity":1,"quality":"scrap","product":"PROD001","cycle_time":45.5,"recorded_at":1698765432,"reason":"REASON01"}}`,
			partInput{ExternalID: "line_1", Quantity: 1, Quality: "scrap", Product: "PROD001",
				CycleTime: 45.5, HasCycleTime: true, RecordedAtMs: 1698765432000, Reason: "REASON01"}},
		{"reason dropped unless scrap", `{"part":{"external_id":"l","quality":"rework","reason":"R"}}`,
			def(partInput{ExternalID: "l", Quality: "rework", RecordedAtMs: now, RecordedDefaulted: true})},
		{"reason dropped for default quality", `{"part":{"external_id":"l","reason":"R"}}`,
			def(partInput{ExternalID: "l", RecordedAtMs: now, RecordedDefaulted: true})},
		{"unix example", `{"part":{"external_id":"line_1","recorded_at":1702900800}}`,
			def(partInput{ExternalID: "line_1", RecordedAtMs: 1702900800000})},
		{"iso example", `{"part":{"external_id":"line_1","recorded_at":"2024-01-01T10:00:00Z"}}`,
			def(partInput{ExternalID: "line_1", RecordedAtMs: ms("2024-01-01T10:00:00Z")})},
		{"iso offset", `{"part":{"external_id":"x","recorded_at":"2024-01-01T10:00:00+02:00"}}`,
			def(partInput{ExternalID: "x", RecordedAtMs: ms("2024-01-01T08:00:00Z")})},
		{"iso negative offset no colon", `{"part":{"external_id":"x","recorded_at":"2024-01-01T10:00:00-0530"}}`,
			def(partInput{ExternalID: "x", RecordedAtMs: ms("2024-01-01T15:30:00Z")})},
		{"iso hour offset", `{"part":{"external_id":"x","recorded_at":"2024-01-01T10:00:00+01"}}`,
			def(partInput{ExternalID: "x", RecordedAtMs: ms("2024-01-01T09:00:00Z")})},
		{"iso fraction", `{"part":{"external_id":"x","recorded_at":"2024-01-01T10:00:00.123456Z"}}`,
			def(partInput{ExternalID: "x", RecordedAtMs: ms("2024-01-01T10:00:00.123Z")})},
		{"iso space no seconds", `{"part":{"external_id":"x","recorded_at":"2024-01-01 10:00z"}}`,
			def(partInput{ExternalID: "x", RecordedAtMs: ms("2024-01-01T10:00:00Z")})},
		{"iso without offset is local", `{"part":{"external_id":"x","recorded_at":"2024-01-01T10:00:00"}}`,
			def(partInput{ExternalID: "x", Local: true, LocalWall: wallClock{2024, 1, 1, 10, 0, 0, 0}})},
		{"unix float", `{"part":{"external_id":"x","recorded_at":1698765432.25}}`,
			def(partInput{ExternalID: "x", RecordedAtMs: 1698765432250})},
		{"unix numeric string", `{"part":{"external_id":"x","recorded_at":"1698765432"}}`,
			def(partInput{ExternalID: "x", RecordedAtMs: 1698765432000})},
		{"unix numeric string float", `{"part":{"external_id":"x","recorded_at":"1698765432.5"}}`,
			def(partInput{ExternalID: "x", RecordedAtMs: 1698765432500})},
		{"unix exponent", `{"part":{"external_id":"x","recorded_at":1.698765432e9}}`,
			def(partInput{ExternalID: "x", RecordedAtMs: 1698765432000})},
		{"up to 24h ahead", `{"part":{"external_id":"x","recorded_at":"2024-06-02T11:59:59Z"}}`,
			def(partInput{ExternalID: "x", RecordedAtMs: ms("2024-06-02T11:59:59Z")})},
		{"quantity max", `{"part":{"external_id":"x","quantity":100000}}`,
			def(partInput{ExternalID: "x", Quantity: 100000, RecordedAtMs: now, RecordedDefaulted: true})},
		{"quantity integral float", `{"part":{"external_id":"x","quantity":5.0}}`,
			def(partInput{ExternalID: "x", Quantity: 5, RecordedAtMs: now, RecordedDefaulted: true})},
		{"quantity exponent", `{"part":{"external_id":"x","quantity":1e2}}`,
			def(partInput{ExternalID: "x", Quantity: 100, RecordedAtMs: now, RecordedDefaulted: true})},
		{"cycle time zero", `{"part":{"external_id":"x","cycle_time":0}}`,
			def(partInput{ExternalID: "x", HasCycleTime: true, RecordedAtMs: now, RecordedDefaulted: true})},
		{"cycle time one day", `{"part":{"external_id":"x","cycle_time":86400}}`,
			def(partInput{ExternalID: "x", CycleTime: 86400, HasCycleTime: true, RecordedAtMs: now, RecordedDefaulted: true})},
		{"nulls are defaults", `{"part":{"external_id":"x","quantity":null,"quality":null,"product":null,"cycle_time":null,"recorded_at":null,"reason":null}}`,
			def(partInput{ExternalID: "x", RecordedAtMs: now, RecordedDefaulted: true})},
		{"empty product is none", `{"part":{"external_id":"x","product":""}}`,
			def(partInput{ExternalID: "x", RecordedAtMs: now, RecordedDefaulted: true})},
		{"whitespace everywhere", " \n{ \"part\" :\t{ \"external_id\" : \"x\" , \"quantity\" : 2 } }\r\n",
			def(partInput{ExternalID: "x", Quantity: 2, RecordedAtMs: now, RecordedDefaulted: true})},
		{"escapes", `{"part":{"external_id":"l\u00e4ne\u0020\"1\"\/\ud83d\ude00","product":"\u0041"}}`,
			def(partInput{ExternalID: "läne \"1\"/😀", Product: "A", RecordedAtMs: now, RecordedDefaulted: true})},
		{"lone surrogate becomes U+FFFD", `{"part":{"external_id":"a\ud800b"}}`,
			def(partInput{ExternalID: "a\uFFFDb", RecordedAtMs: now, RecordedDefaulted: true})},
		{"utf8 kept", `{"part":{"external_id":"Linie_ä"}}`,
			def(partInput{ExternalID: "Linie_ä", RecordedAtMs: now, RecordedDefaulted: true})},
		{"case kept", `{"part":{"external_id":"LINE_1"}}`,
			def(partInput{ExternalID: "LINE_1", RecordedAtMs: now, RecordedDefaulted: true})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parsePart([]byte(tt.body), testNow)
			if err != nil {
				t.Fatalf("parsePart: %v", err)
			}
			if got != tt.want {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParsePartInvalid(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"empty", ``, "empty body"},
		{"blank", "  \n", "empty body"},
		{"not an object", `[1]`, "body must be a JSON object"},
		{"string", `"part"`, "body must be a JSON object"},
		{"missing part", `{}`, "missing part"},
		{"null part", `{"part":null}`, "missing part"},
		{"part not object", `{"part":"x"}`, "part must be a JSON object"},
		{"part array", `{"part":[]}`, "part must be a JSON object"},
		{"unknown top-level", `{"part":{"external_id":"x"},"extra":1}`, `unknown field "extra"`},
		{"flat message", `{"external_id":"x"}`, `unknown field "external_id" (the part's fields go inside "part")`},
		{"unknown part field", `{"part":{"external_id":"x","speed":3}}`, `unknown field "speed" in part`},
		{"field names are exact", `{"part":{"External_ID":"x"}}`, `unknown field "External_ID" in part`},
		{"duplicate part", `{"part":{"external_id":"x"},"part":{"external_id":"y"}}`, `duplicate field "part"`},
		{"duplicate field", `{"part":{"external_id":"x","external_id":"y"}}`, `duplicate field "external_id" in part`},
		{"missing external id", `{"part":{"quantity":1}}`, "missing external_id"},
		{"empty part", `{"part":{}}`, "missing external_id"},
		{"null external id", `{"part":{"external_id":null}}`, "missing external_id"},
		{"empty external id", `{"part":{"external_id":""}}`, "external_id is empty"},
		{"numeric external id", `{"part":{"external_id":1}}`, "external_id must be a string, got a number"},
		{"quantity zero", `{"part":{"external_id":"x","quantity":0}}`, "quantity must be at least 1, got 0"},
		{"quantity negative", `{"part":{"external_id":"x","quantity":-3}}`, "quantity must be at least 1, got -3"},
		{"quantity fraction", `{"part":{"external_id":"x","quantity":1.5}}`, "quantity must be an integer, got 1.5"},
		{"quantity huge", `{"part":{"external_id":"x","quantity":100001}}`, "quantity 100001 is absurdly large (max 100000)"},
		{"quantity enormous", `{"part":{"external_id":"x","quantity":99999999999999999999999}}`, "absurdly large"},
		{"quantity overflow", `{"part":{"external_id":"x","quantity":1e999}}`, "absurdly large"},
		{"quantity negative overflow", `{"part":{"external_id":"x","quantity":-1e999}}`, "at least 1"},
		{"quantity string", `{"part":{"external_id":"x","quantity":"5"}}`, "quantity must be an integer, got a string"},
		{"quantity bool", `{"part":{"external_id":"x","quantity":true}}`, "quantity must be an integer, got a boolean"},
		{"quality unknown", `{"part":{"external_id":"x","quality":"bad"}}`, `quality must be good, scrap or rework, got "bad"`},
		{"quality case", `{"part":{"external_id":"x","quality":"GOOD"}}`, `got "GOOD"`},
		{"quality empty", `{"part":{"external_id":"x","quality":""}}`, `got ""`},
		{"quality number", `{"part":{"external_id":"x","quality":1}}`, "quality must be a string"},
		{"product number", `{"part":{"external_id":"x","product":1}}`, "product must be a string, got a number"},
		{"reason object", `{"part":{"external_id":"x","reason":{}}}`, "reason must be a string, got an object"},
		{"cycle time negative", `{"part":{"external_id":"x","cycle_time":-1}}`, "cycle_time -1 is negative"},
		{"cycle time too long", `{"part":{"external_id":"x","cycle_time":86400.5}}`, "more than a day"},
		{"cycle time overflow", `{"part":{"external_id":"x","cycle_time":1e400}}`, "not a finite number"},
		{"cycle time string", `{"part":{"external_id":"x","cycle_time":"45"}}`, "cycle_time must be a number of seconds, got a string"},
		{"recorded_at before 2000", `{"part":{"external_id":"x","recorded_at":946684799}}`, "before 2000-01-01"},
		{"recorded_at negative", `{"part":{"external_id":"x","recorded_at":-5}}`, "before 2000-01-01"},
		{"recorded_at future", `{"part":{"external_id":"x","recorded_at":1717329601}}`, "more than 24 h in the future"},
		{"recorded_at millis", `{"part":{"external_id":"x","recorded_at":1698765432000}}`, "looks like Unix milliseconds; send seconds (1698765432)"},
		{"recorded_at millis string", `{"part":{"external_id":"x","recorded_at":"1698765432000"}}`, `recorded_at "1698765432000" looks like Unix milliseconds`},
		{"recorded_at micros", `{"part":{"external_id":"x","recorded_at":1698765432000000}}`, "more than 24 h in the future"},
		{"recorded_at overflow", `{"part":{"external_id":"x","recorded_at":1e999}}`, "more than 24 h in the future"},
		{"recorded_at iso future", `{"part":{"external_id":"x","recorded_at":"2024-06-02T12:00:01Z"}}`, "more than 24 h in the future"},
		{"recorded_at iso old", `{"part":{"external_id":"x","recorded_at":"1999-12-31T23:59:59Z"}}`, "before 2000-01-01"},
		{"recorded_at iso local far future", `{"part":{"external_id":"x","recorded_at":"2030-01-01T00:00:00"}}`, "more than 24 h in the future"},
		{"recorded_at garbage", `{"part":{"external_id":"x","recorded_at":"yesterday"}}`, `recorded_at "yesterday" is neither Unix seconds nor an ISO 8601`},
		{"recorded_at empty", `{"part":{"external_id":"x","recorded_at":""}}`, "is neither"},
		{"recorded_at date only", `{"part":{"external_id":"x","recorded_at":"2024-01-01"}}`, "is neither"},
		{"recorded_at bad month", `{"part":{"external_id":"x","recorded_at":"2024-13-01T00:00:00Z"}}`, "is neither"},
		{"recorded_at bad day", `{"part":{"external_id":"x","recorded_at":"2023-02-29T00:00:00Z"}}`, "is neither"},
		{"recorded_at bad hour", `{"part":{"external_id":"x","recorded_at":"2024-01-01T24:00:00Z"}}`, "is neither"},
		{"recorded_at bad offset", `{"part":{"external_id":"x","recorded_at":"2024-01-01T10:00:00+2"}}`, "is neither"},
		{"recorded_at trailing", `{"part":{"external_id":"x","recorded_at":"2024-01-01T10:00:00Zjunk"}}`, "is neither"},
		{"recorded_at bool", `{"part":{"external_id":"x","recorded_at":false}}`, "recorded_at must be Unix seconds or an ISO 8601 string, got a boolean"},
		{"truncated", `{"part":{"external_id":"x"`, "malformed JSON"},
		{"trailing comma", `{"part":{"external_id":"x",}}`, "malformed JSON"},
		{"trailing data", `{"part":{"external_id":"x"}} {}`, "unexpected data after the JSON object"},
		{"single quotes", `{'part':{}}`, "malformed JSON"},
		{"bad number", `{"part":{"external_id":"x","cycle_time":01}}`, "malformed JSON"},
		{"bare minus", `{"part":{"external_id":"x","quantity":-}}`, "malformed JSON"},
		{"bad fraction", `{"part":{"external_id":"x","quantity":1.}}`, "malformed JSON"},
		{"bad literal", `{"part":{"external_id":"x","quantity":nul}}`, "malformed JSON"},
		{"bad escape", `{"part":{"external_id":"\x"}}`, "malformed JSON"},
		{"control char", "{\"part\":{\"external_id\":\"a\nb\"}}", "malformed JSON"},
		{"invalid utf8", "{\"part\":{\"external_id\":\"a\xffb\"}}", "invalid UTF-8"},
		{"unterminated string", `{"part":{"external_id":"x`, "unterminated string"},
		{"missing colon", `{"part" {"external_id":"x"}}`, "expected ':'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parsePart([]byte(tt.body), testNow)
			if err == nil {
				t.Fatalf("parsePart accepted it: %+v", got)
			}
			if !isFormatError(err) {
				t.Fatalf("error %v is not a format error", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestParsePartLongNamesAreCut(t *testing.T) {
	long := strings.Repeat("ä", 100)
	_, err := parsePart([]byte(`{"part":{"`+long+`":1}}`), testNow)
	if err == nil || len(err.Error()) > 120 || !utf8.ValidString(err.Error()) {
		t.Fatalf("error %q: want a short valid message", err)
	}
}

func TestResolveLocal(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		wall    string
		tz      *time.Location
		wantMs  int64
		wantErr string
	}{
		{"winter", "2024-01-01T10:00:00", berlin, ms("2024-01-01T09:00:00Z"), ""},
		{"summer", "2024-05-01T10:00:00", berlin, ms("2024-05-01T08:00:00Z"), ""},
		{"utc", "2024-01-01T10:00:00", time.UTC, ms("2024-01-01T10:00:00Z"), ""},
		{"unknown zone", "2024-01-01T10:00:00", nil, 0, "time zone \"Mars/Base\" is unknown"},
		{"future in zone", "2024-06-02T13:30:00", time.FixedZone("", -3600), 0, "more than 24 h in the future"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, err := parsePart([]byte(`{"part":{"external_id":"x","recorded_at":"`+tt.wall+`"}}`), testNow)
			if err != nil {
				t.Fatal(err)
			}
			err = in.resolveLocal(tt.tz, "Mars/Base", testNow)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || in.RecordedAtMs != tt.wantMs || in.Local {
				t.Fatalf("got %d (local %v, err %v), want %d", in.RecordedAtMs, in.Local, err, tt.wantMs)
			}
		})
	}
}

// FuzzParsePart checks the parser of outside input against encoding/json:
// whatever parsePart accepts is valid JSON, and the values it keeps are the
// ones encoding/json reads from the same bytes.
func FuzzParsePart(f *testing.F) {
	for _, s := range []string{
		`{"part":{"external_id":"line_1","quantity":1}}`,
		`{"part":{"external_id":"line_1","quantity":5,"quality":"good","product":"PROD001","cycle_time":45.5,"recorded_at":1698765432}}`,
		`{"part":{"external_id":"line_1","quantity":1,"quality":"scrap","product":"PROD001","cycle_time":45.5,"recorded_at":1698765432,"reason":"REASON01"}}`,
		`{"part":{"external_id":"line_1","recorded_at":"2024-01-01T10:00:00+02:00"}}`,
		`{"part":{"external_id":"l\u00e4\ud83d\ude00","recorded_at":"1698765432.5"}}`,
		`{"part":{"external_id":"x","quantity":1e2,"cycle_time":0.0}}`,
		`{"part":null}`, `[]`, `{"part":{"external_id":"x","recorded_at":"2024-01-01 10:00"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		in, err := parsePart(body, testNow)
		if err != nil {
			if !isFormatError(err) {
				t.Fatalf("non-format error %v", err)
			}
			return
		}
		if !json.Valid(body) {
			t.Fatalf("accepted invalid JSON %q", body)
		}
		var ref struct {
			Part struct {
				ExternalID *string  `json:"external_id"`
				Quantity   *float64 `json:"quantity"`
				Quality    *string  `json:"quality"`
				Product    *string  `json:"product"`
				CycleTime  *float64 `json:"cycle_time"`
				Reason     *string  `json:"reason"`
			} `json:"part"`
		}
		if err := json.Unmarshal(body, &ref); err != nil {
			t.Fatalf("accepted %q, encoding/json says %v", body, err)
		}
		p := ref.Part
		if p.ExternalID == nil || *p.ExternalID != in.ExternalID {
			t.Fatalf("external_id %q, encoding/json %v", in.ExternalID, p.ExternalID)
		}
		if q := float64(in.Quantity); (p.Quantity == nil && q != 1) || (p.Quantity != nil && *p.Quantity != q) {
			t.Fatalf("quantity %d, encoding/json %v", in.Quantity, p.Quantity)
		}
		if in.Quantity < 1 || in.Quantity > maxQuantity {
			t.Fatalf("quantity %d out of range", in.Quantity)
		}
		for _, id := range []string{in.ExternalID, in.Product, in.Reason} {
			if len(id) > maxIDBytes || strings.ContainsFunc(id, unicode.IsControl) {
				t.Fatalf("identifier %q accepted", id)
			}
		}
		if (p.Quality == nil && in.Quality != "good") || (p.Quality != nil && *p.Quality != in.Quality) {
			t.Fatalf("quality %q, encoding/json %v", in.Quality, p.Quality)
		}
		if (p.Product == nil && in.Product != "") || (p.Product != nil && *p.Product != in.Product) {
			t.Fatalf("product %q, encoding/json %v", in.Product, p.Product)
		}
		if in.HasCycleTime != (p.CycleTime != nil) || (p.CycleTime != nil && *p.CycleTime != in.CycleTime) {
			t.Fatalf("cycle_time %v/%v, encoding/json %v", in.CycleTime, in.HasCycleTime, p.CycleTime)
		}
		if in.CycleTime < 0 || in.CycleTime > maxCycleTime {
			t.Fatalf("cycle_time %v out of range", in.CycleTime)
		}
		if in.Quality == "scrap" && p.Reason != nil && *p.Reason != in.Reason || in.Quality != "scrap" && in.Reason != "" {
			t.Fatalf("reason %q (quality %s), encoding/json %v", in.Reason, in.Quality, p.Reason)
		}
		if !in.Local && (in.RecordedAtMs < minRecordedMs || in.RecordedAtMs > testNow.Add(maxFuture).UnixMilli()) {
			t.Fatalf("recorded_at %d out of range", in.RecordedAtMs)
		}
	})
}

func BenchmarkParsePart(b *testing.B) {
	body := []byte(`{"part":{"external_id":"line_1","quantity":5,"quality":"good","product":"PROD001","cycle_time":45.5,"recorded_at":1698765432}}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := parsePart(body, testNow); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzDecimalInt checks the exact reading of quantities against math/big.
func FuzzDecimalInt(f *testing.F) {
	f.Fuzz(func(t *testing.T, raw string) {
		if !isNumeric([]byte(raw)) {
			return
		}
		const limit = maxQuantity
		n, neg, integral, big := decimalInt([]byte(raw), limit)
		if e := strings.IndexAny(raw, "eE"); e >= 0 && len(strings.TrimLeft(raw[e+1:], "+-0")) > 4 {
			return // math/big would build a number with that many digits
		}
		var r mbig.Rat
		if _, ok := r.SetString(raw); !ok {
			t.Fatalf("math/big cannot read %q", raw)
		}
		if integral != r.IsInt() {
			t.Fatalf("%q: integral %v, math/big %v", raw, integral, r.IsInt())
		}
		if neg != strings.HasPrefix(raw, "-") {
			t.Fatalf("%q: neg %v", raw, neg)
		}
		if !integral {
			return
		}
		abs := new(mbig.Int).Abs(r.Num())
		if fits := abs.IsUint64() && abs.Uint64() <= limit; fits == big || fits && abs.Uint64() != n {
			t.Fatalf("%q: n %d big %v, math/big %s", raw, n, big, abs)
		}
	})
}

// FuzzBatchItemLikeSingle: an item of a batch is answered like the same
// object sent alone, and a body the single call finds malformed fails a
// batch as a whole.
func FuzzBatchItemLikeSingle(f *testing.F) {
	f.Fuzz(func(t *testing.T, item string) {
		if !json.Valid([]byte(item)) {
			return // FuzzParseParts covers malformed bodies
		}
		items, berr := parseParts([]byte(`{"parts":[`+item+`]}`), testNow, MaxBatchParts)
		in, err := parsePart([]byte(`{"part":`+item+`}`), testNow)
		if err != nil && strings.HasPrefix(err.Error(), "malformed JSON") {
			if berr == nil {
				t.Fatalf("%q: single call %v, batch accepted %+v", item, err, items)
			}
			return
		}
		if berr != nil {
			// A batch also checks the depth of what it skips, and the
			// UTF-8 of strings the single call never read because it
			// refused the object before them (json.Valid lets invalid
			// UTF-8 through; JSON text must be UTF-8).
			if !strings.Contains(berr.Error(), "nested too deep") &&
				!(err != nil && strings.Contains(berr.Error(), "invalid UTF-8")) {
				t.Fatalf("%q: batch failed whole (%v), single call %+v, %v", item, berr, in, err)
			}
			return
		}
		if len(items) != 1 {
			t.Fatalf("%q: %d items", item, len(items))
		}
		got := items[0]
		if fmt.Sprint(got.err) != fmt.Sprint(err) || err == nil && got.in != in {
			t.Fatalf("%q: batch item %+v, %v; single call %+v, %v", item, got.in, got.err, in, err)
		}
	})
}
