package wire

import (
	"errors"
	"reflect"
	"testing"
)

func samplePeriodChange() PeriodChange {
	return PeriodChange{Change: ChangeClosed, Site: 1, LocationKind: "machine", LocationID: 9, ExternalID: "machine_1",
		Line: 3, Machine: 9, Period: 5764607523034234881, State: "down", StartMs: 1698765432000, EndMs: 1698767472000,
		Shift: "2023-10-31/A", Reason: 14, FirstOfStop: 1, Version: 12, DecidedAtMs: 1698767473120}
}

// TestPeriodChangeGolden pins the encoding of a period-change message
// (testdata/period_change_v1.json; -update rewrites it).
func TestPeriodChangeGolden(t *testing.T) {
	c := samplePeriodChange()
	got, err := EncodePeriodChange(&c)
	if err != nil {
		t.Fatal(err)
	}
	if c.ID != "machine-9-5764607523034234881-12" {
		t.Errorf("id %q", c.ID)
	}
	checkGolden(t, "period_change_v1.json", c, got, DecodePeriodChange)
}

func TestPeriodChangeSchemaMatchesStruct(t *testing.T) {
	c := samplePeriodChange()
	enc, err := EncodePeriodChange(&c)
	if err != nil {
		t.Fatal(err)
	}
	checkSchema(t, "period_change.v1.schema.json", enc, reflect.TypeFor[PeriodChange](),
		map[string]string{"v": "1", "kind": `"` + KindPeriodChange + `"`})
}

func TestPeriodChangeInvalid(t *testing.T) {
	for name, mut := range map[string]func(*PeriodChange){
		"site 0":          func(c *PeriodChange) { c.Site = 0 },
		"bad kind":        func(c *PeriodChange) { c.LocationKind = "cell" },
		"location 0":      func(c *PeriodChange) { c.LocationID, c.Machine = 0, 0 },
		"no external id":  func(c *PeriodChange) { c.ExternalID = "" },
		"period 0":        func(c *PeriodChange) { c.Period = 0 },
		"bad change":      func(c *PeriodChange) { c.Change = "moved" },
		"bad state":       func(c *PeriodChange) { c.State = "idle" },
		"no start":        func(c *PeriodChange) { c.StartMs = 0 },
		"end before":      func(c *PeriodChange) { c.EndMs = c.StartMs - 1000 },
		"open with end":   func(c *PeriodChange) { c.Open = true },
		"deleted closed":  func(c *PeriodChange) { c.Deleted = true },
		"removed live":    func(c *PeriodChange) { c.Change = ChangeRemoved },
		"machine id":      func(c *PeriodChange) { c.Machine = 8 },
		"line with mach.": func(c *PeriodChange) { c.LocationKind, c.LocationID, c.Line = "line", 3, 3 },
		"first of stop":   func(c *PeriodChange) { c.FirstOfStop = 2 },
	} {
		c := samplePeriodChange()
		mut(&c)
		if _, err := EncodePeriodChange(&c); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", name, err)
		}
	}
	c := samplePeriodChange()
	enc, _ := EncodePeriodChange(&c)
	c.ID = "machine-9-1-1"
	if err := c.Validate(); !errors.Is(err, ErrInvalid) {
		t.Errorf("an id that names another version: %v", err)
	}
	if _, err := DecodePeriodChange([]byte(`{"v":2,"kind":"period_change"}`)); !errors.Is(err, ErrVersion) {
		t.Errorf("version 2: %v", err)
	}
	d := sampleDispatch()
	db, _ := EncodeDispatch(&d)
	if _, err := DecodePeriodChange(db); err == nil {
		t.Error("a dispatch decoded as a period change")
	}
	if _, err := DecodePeriodChange(enc); err != nil {
		t.Errorf("a valid message: %v", err)
	}
}

func FuzzDecodePeriodChange(f *testing.F) {
	c := samplePeriodChange()
	enc, _ := EncodePeriodChange(&c)
	f.Add(enc)
	f.Add([]byte(`{"v":1,"kind":"period_change"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := DecodePeriodChange(b)
		if err != nil {
			return
		}
		if err := got.Validate(); err != nil {
			t.Fatalf("DecodePeriodChange returned an invalid message: %v", err)
		}
		again, err := EncodePeriodChange(&got)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		back, err := DecodePeriodChange(again)
		if err != nil || back != got {
			t.Fatalf("round trip: %+v %v", back, err)
		}
	})
}
