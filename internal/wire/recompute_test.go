package wire

import (
	"errors"
	"reflect"
	"testing"
)

func sampleRecompute() Recompute {
	return Recompute{Control: Control{ID: "0190f2a4-5b6c-7d8e-9f00-112233445599", Site: 1, LocationKind: "line", LocationID: 4,
		ExternalID: "line_1"},
		StartMs: 1698710400000, EndMs: 1698796800000, RequestedAtMs: 1698800000000, By: "alice"}
}

// TestRecomputeGolden pins the encoding of a recompute message
// (testdata/recompute_v1.json; -update rewrites it).
func TestRecomputeGolden(t *testing.T) {
	r := sampleRecompute()
	got, err := EncodeRecompute(&r)
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "recompute_v1.json", r, got, DecodeRecompute)
}

func TestRecomputeSchemaMatchesStruct(t *testing.T) {
	r := sampleRecompute()
	enc, err := EncodeRecompute(&r)
	if err != nil {
		t.Fatal(err)
	}
	checkSchema(t, "recompute.v1.schema.json", enc, reflect.TypeFor[Recompute](),
		map[string]string{"v": "1", "kind": `"` + KindRecompute + `"`})
}

func TestRecomputeInvalid(t *testing.T) {
	for name, mut := range map[string]func(*Recompute){
		"no id":          func(r *Recompute) { r.ID = "" },
		"site 0":         func(r *Recompute) { r.Site = 0 },
		"bad kind":       func(r *Recompute) { r.LocationKind = "cell" },
		"location 0":     func(r *Recompute) { r.LocationID = 0 },
		"no external id": func(r *Recompute) { r.ExternalID = "" },
		"no start":       func(r *Recompute) { r.StartMs = 0 },
		"end at start":   func(r *Recompute) { r.EndMs = r.StartMs },
		"too long":       func(r *Recompute) { r.EndMs = r.StartMs + MaxRecomputeWindow.Milliseconds() + 1 },
	} {
		r := sampleRecompute()
		mut(&r)
		if _, err := EncodeRecompute(&r); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", name, err)
		}
	}
	if _, err := DecodeRecompute([]byte(`{"v":2,"kind":"recompute"}`)); !errors.Is(err, ErrVersion) {
		t.Errorf("version 2: %v", err)
	}
	d := sampleDispatch()
	db, _ := EncodeDispatch(&d)
	if _, err := DecodeRecompute(db); err == nil {
		t.Error("a dispatch decoded as a recompute")
	}
}

func FuzzDecodeRecompute(f *testing.F) {
	r := sampleRecompute()
	enc, _ := EncodeRecompute(&r)
	f.Add(enc)
	f.Add([]byte(`{"v":1,"kind":"recompute"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := DecodeRecompute(b)
		if err != nil {
			return
		}
		if err := got.Validate(); err != nil {
			t.Fatalf("DecodeRecompute returned an invalid message: %v", err)
		}
		again, err := EncodeRecompute(&got)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		back, err := DecodeRecompute(again)
		if err != nil || back != got {
			t.Fatalf("round trip: %+v %v", back, err)
		}
	})
}
