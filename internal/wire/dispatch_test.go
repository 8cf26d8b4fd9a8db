package wire

import (
	"errors"
	"reflect"
	"testing"
)

func sampleDispatch() Dispatch {
	return Dispatch{Control: Control{ID: "0190f2a4-5b6c-7d8e-9f00-112233445588", Site: 1, LocationKind: "machine", LocationID: 9,
		ExternalID: "machine_1"},
		Dispatch: 1201, DispatchType: 1107, StartMs: 1698765432000, EndMs: 1698767472000, SentAtMs: 1698767480000,
		By: "alice"}
}

// TestDispatchGolden pins the encoding of a dispatch message
// (testdata/dispatch_v1.json; -update rewrites it).
func TestDispatchGolden(t *testing.T) {
	d := sampleDispatch()
	got, err := EncodeDispatch(&d)
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "dispatch_v1.json", d, got, DecodeDispatch)
}

func TestDispatchSchemaMatchesStruct(t *testing.T) {
	d := sampleDispatch()
	enc, err := EncodeDispatch(&d)
	if err != nil {
		t.Fatal(err)
	}
	checkSchema(t, "dispatch.v1.schema.json", enc, reflect.TypeFor[Dispatch](),
		map[string]string{"v": "1", "kind": `"` + KindDispatch + `"`})
}

func TestDispatchInvalid(t *testing.T) {
	for name, mut := range map[string]func(*Dispatch){
		"no id":          func(d *Dispatch) { d.ID = "" },
		"site 0":         func(d *Dispatch) { d.Site = 0 },
		"bad kind":       func(d *Dispatch) { d.LocationKind = "cell" },
		"location 0":     func(d *Dispatch) { d.LocationID = 0 },
		"no external id": func(d *Dispatch) { d.ExternalID = "" },
		"dispatch 0":     func(d *Dispatch) { d.Dispatch = 0 },
		"type 0":         func(d *Dispatch) { d.DispatchType = 0 },
		"no start":       func(d *Dispatch) { d.StartMs = 0 },
		"end at start":   func(d *Dispatch) { d.EndMs = d.StartMs },
		"end before":     func(d *Dispatch) { d.EndMs = d.StartMs - 1000 },
		"negative end":   func(d *Dispatch) { d.EndMs = -1 },
	} {
		d := sampleDispatch()
		mut(&d)
		if _, err := EncodeDispatch(&d); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", name, err)
		}
	}
	open := sampleDispatch()
	open.EndMs = 0
	if _, err := EncodeDispatch(&open); err != nil {
		t.Errorf("an open window: %v", err)
	}
	if _, err := DecodeDispatch([]byte(`{"v":2,"kind":"dispatch"}`)); !errors.Is(err, ErrVersion) {
		t.Errorf("version 2: %v", err)
	}
	a := sampleAssignment()
	ab, _ := EncodeAssignment(&a)
	if _, err := DecodeDispatch(ab); err == nil {
		t.Error("an assignment decoded as a dispatch")
	}
}

func FuzzDecodeDispatch(f *testing.F) {
	d := sampleDispatch()
	enc, _ := EncodeDispatch(&d)
	f.Add(enc)
	f.Add([]byte(`{"v":1,"kind":"dispatch"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := DecodeDispatch(b)
		if err != nil {
			return
		}
		if err := got.Validate(); err != nil {
			t.Fatalf("DecodeDispatch returned an invalid message: %v", err)
		}
		again, err := EncodeDispatch(&got)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		back, err := DecodeDispatch(again)
		if err != nil || back != got {
			t.Fatalf("round trip: %+v %v", back, err)
		}
	})
}
