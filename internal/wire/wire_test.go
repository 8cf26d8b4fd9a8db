package wire

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

func sample() Part {
	return Part{
		EventID:      "0190f2a4-5b6c-7d8e-9f00-112233445566",
		Site:         1,
		LocationKind: "line",
		LocationID:   7,
		ExternalID:   "line_1",
		Quantity:     5,
		Quality:      QualityScrap,
		Product:      "PROD001",
		CycleTime:    45.5,
		HasCycleTime: true,
		Reason:       "REASON01",
		RecordedAtMs: 1698765432000,
		ReceivedAtMs: 1698765433123,
	}
}

// TestGolden pins the bytes on the topic: other consumers (kcat users,
// ClickHouse's Kafka engine) depend on the field names and types.
func TestGolden(t *testing.T) {
	p := sample()
	got, err := Encode(&p)
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "part_v1.json")
	if *update {
		if err := os.WriteFile(golden, append(got, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, bytes.TrimSpace(want)) {
		t.Fatalf("encoding changed:\n got %s\nwant %s\n(run go test -update if the change is intended and versioned)", got, want)
	}
	back, err := Decode(want)
	if err != nil {
		t.Fatal(err)
	}
	p.V = Version
	if back != p {
		t.Fatalf("round trip: got %+v want %+v", back, p)
	}
}

func TestDecodeErrors(t *testing.T) {
	valid := sample()
	enc, _ := Encode(&valid)
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"not json", `{`, nil},
		{"wrong type", `{"v":1,"quantity":"x"}`, nil},
		{"future version", `{"v":2}`, ErrVersion},
		{"no version", `{}`, ErrVersion},
		{"no event id", string(bytes.Replace(enc, []byte(`"event_id":"0190f2a4-5b6c-7d8e-9f00-112233445566"`), []byte(`"event_id":""`), 1)), ErrInvalid},
		{"zero quantity", string(bytes.Replace(enc, []byte(`"quantity":5`), []byte(`"quantity":0`), 1)), ErrInvalid},
		{"bad quality", string(bytes.Replace(enc, []byte(`"quality":"scrap"`), []byte(`"quality":"meh"`), 1)), ErrInvalid},
		{"negative cycle", string(bytes.Replace(enc, []byte(`"cycle_time":45.5`), []byte(`"cycle_time":-1`), 1)), ErrInvalid},
		{"bad kind", string(bytes.Replace(enc, []byte(`"location_kind":"line"`), []byte(`"location_kind":"cell"`), 1)), ErrInvalid},
		{"no site", string(bytes.Replace(enc, []byte(`"site":1`), []byte(`"site":0`), 1)), ErrInvalid},
		{"bad idempotency id", string(bytes.Replace(enc, []byte(`}`), []byte(`,"idempotency_id":"k-1"}`), 1)), ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode([]byte(tc.in))
			if err == nil {
				t.Fatal("want an error")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

// TestGoldenIdempotent pins a part with an idempotency id: the field is
// added only when set, so parts without one keep their bytes.
func TestGoldenIdempotent(t *testing.T) {
	p := sample()
	p.IdempotencyID = "5f0c0b8e-2a4d-4c1e-9b7a-0e1d2c3b4a59"
	got, err := Encode(&p)
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "part_v1_idempotent.json")
	if *update {
		if err := os.WriteFile(golden, append(got, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, bytes.TrimSpace(want)) {
		t.Fatalf("encoding changed:\n got %s\nwant %s", got, want)
	}
	back, err := Decode(want)
	if err != nil {
		t.Fatal(err)
	}
	if back.IdempotencyID != p.IdempotencyID {
		t.Fatalf("idempotency id %q, want %q", back.IdempotencyID, p.IdempotencyID)
	}
}

func TestEncodeRejectsInvalid(t *testing.T) {
	p := sample()
	p.Quantity = 0
	if _, err := Encode(&p); !errors.Is(err, ErrInvalid) {
		t.Fatalf("got %v, want ErrInvalid", err)
	}
}

// FuzzDecode: whatever is on the topic, Decode returns a valid part or an
// error, never panics, and a decoded part encodes back to an equal part.
func FuzzDecode(f *testing.F) {
	p := sample()
	enc, _ := Encode(&p)
	f.Add(enc)
	f.Add([]byte(`{"v":1}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := Decode(b)
		if err != nil {
			return
		}
		if err := got.Validate(); err != nil {
			t.Fatalf("Decode returned an invalid part: %v", err)
		}
		again, err := Encode(&got)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		back, err := Decode(again)
		if err != nil || back != got {
			t.Fatalf("round trip: %+v %v", back, err)
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	p := sample()
	enc, _ := Encode(&p)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(enc); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	p := sample()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Encode(&p); err != nil {
			b.Fatal(err)
		}
	}
}

// TestSchemaMatchesStruct keeps schemas/kafka/part.v1.schema.json and Part in
// step (checkSchema).
func TestSchemaMatchesStruct(t *testing.T) {
	p := sample()
	p.IdempotencyID = "5f0c0b8e-2a4d-4c1e-9b7a-0e1d2c3b4a59"
	enc, err := Encode(&p)
	if err != nil {
		t.Fatal(err)
	}
	checkSchema(t, "part.v1.schema.json", enc, reflect.TypeFor[Part](), map[string]string{"v": "1"})
}
