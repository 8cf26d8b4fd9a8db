package wire

import (
	"errors"
	"testing"
)

func sampleAssignment() Assignment {
	return Assignment{Control: Control{ID: "0190f2a4-5b6c-7d8e-9f00-112233445577", Site: 1, LocationKind: "line", LocationID: 7,
		ExternalID: "line_1"},
		Period: 42, StartMs: 1698765432000, EndMs: 1698765492000, State: "down", FirstOfStop: 1, Version: 6,
		Reason: 9, Planned: true, AssignedAtMs: 1698765500000, By: "alice"}
}

func TestAssignmentRoundTrip(t *testing.T) {
	a := sampleAssignment()
	b, err := EncodeAssignment(&a)
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeAssignment(b)
	if err != nil {
		t.Fatal(err)
	}
	if back != a || back.Kind != KindAssignment || back.V != Version {
		t.Fatalf("round trip: got %+v want %+v", back, a)
	}
	// A part message is not an assignment.
	p := sample()
	pb, _ := Encode(&p)
	if _, err := DecodeAssignment(pb); err == nil {
		t.Fatalf("part decoded as assignment: %v", err)
	}
}

func TestAssignmentInvalid(t *testing.T) {
	for name, mut := range map[string]func(*Assignment){
		"no id":              func(a *Assignment) { a.ID = "" },
		"site 0":             func(a *Assignment) { a.Site = 0 },
		"bad kind":           func(a *Assignment) { a.LocationKind = "cell" },
		"no external id":     func(a *Assignment) { a.ExternalID = "" },
		"period 0":           func(a *Assignment) { a.Period = 0 },
		"running period":     func(a *Assignment) { a.State = "running" },
		"end before start":   func(a *Assignment) { a.EndMs = a.StartMs - 1 },
		"planned, no reason": func(a *Assignment) { a.Reason = 0 },
		"bad first mark":     func(a *Assignment) { a.FirstOfStop = 2 },
	} {
		a := sampleAssignment()
		mut(&a)
		if _, err := EncodeAssignment(&a); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", name, err)
		}
	}
	if _, err := DecodeAssignment([]byte(`{"v":2,"kind":"assignment"}`)); !errors.Is(err, ErrVersion) {
		t.Errorf("version 2: %v", err)
	}
}
