package wire

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// TestAssignmentSchemaMatchesStruct keeps
// schemas/kafka/assignment.v1.schema.json and Assignment in step.
func TestAssignmentSchemaMatchesStruct(t *testing.T) {
	a := sampleAssignment()
	enc, err := EncodeAssignment(&a)
	if err != nil {
		t.Fatal(err)
	}
	checkSchema(t, "assignment.v1.schema.json", enc, reflect.TypeFor[Assignment](),
		map[string]string{"v": "1", "kind": `"` + KindAssignment + `"`})
}

// checkSchema checks a JSON Schema of schemas/kafka against an encoded
// message and its struct: the schema lists exactly the fields the encoder
// writes and the struct declares, requires all of them, allows nothing
// else, and pins the consts (field → JSON value) the message carries.
func checkSchema(t *testing.T, file string, enc []byte, st reflect.Type, consts map[string]string) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "schemas", "kafka", file))
	if err != nil {
		t.Fatal(err)
	}
	var schema struct {
		AdditionalProperties *bool                      `json:"additionalProperties"`
		Required             []string                   `json:"required"`
		Properties           map[string]json.RawMessage `json:"properties"`
	}
	if err := json.Unmarshal(raw, &schema); err != nil {
		t.Fatal(err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(enc, &fields); err != nil {
		t.Fatal(err)
	}
	// A field the encoder may leave out (omitempty) is optional in the
	// schema; every other field is required. enc must hold them all.
	optional := map[string]bool{}
	for _, f := range jsonFields(st) {
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if strings.Contains(opts, "omitempty") {
			optional[name] = true
		}
	}
	for name := range fields {
		if _, ok := schema.Properties[name]; !ok {
			t.Errorf("%s: encoded field %q is not in the schema", file, name)
		}
		if required := slices.Contains(schema.Required, name); required == optional[name] {
			t.Errorf("%s: encoded field %q: required by the schema %v, left out when empty %v", file, name, required, optional[name])
		}
	}
	for name := range schema.Properties {
		if _, ok := fields[name]; !ok {
			t.Errorf("%s: schema property %q is not encoded", file, name)
		}
	}
	if len(schema.Required)+len(optional) != len(fields) {
		t.Errorf("%s: schema requires %d fields and allows %d more, encoder writes %d", file, len(schema.Required), len(optional), len(fields))
	}
	// Every field of the struct, also one the sample might leave out.
	for _, f := range jsonFields(st) {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if _, ok := schema.Properties[name]; !ok {
			t.Errorf("%s: struct field %s (json %q) is not in the schema", file, f.Name, name)
		}
	}
	if schema.AdditionalProperties == nil || *schema.AdditionalProperties {
		t.Errorf("%s: schema allows additional properties", file)
	}
	var c struct {
		Const json.RawMessage `json:"const"`
	}
	for name, want := range consts {
		c.Const = nil
		if err := json.Unmarshal(schema.Properties[name], &c); err != nil || string(c.Const) != want || string(fields[name]) != want {
			t.Errorf("%s: %s: schema const %s, encoded %s, want %s", file, name, c.Const, fields[name], want)
		}
	}
	if Version != 1 {
		t.Errorf("Version is %d: write the v%d schemas", Version, Version)
	}
}

// jsonFields returns the fields of st that are JSON fields of their own:
// those of an embedded struct (the Control every control message starts
// with) in its place, not the embedded struct itself.
func jsonFields(st reflect.Type) []reflect.StructField {
	var out []reflect.StructField
	for _, f := range reflect.VisibleFields(st) {
		if !f.Anonymous && f.IsExported() {
			out = append(out, f)
		}
	}
	return out
}

// checkGolden pins the encoding enc of msg to testdata/<file> (-update
// rewrites it) and checks that the file decodes back to msg.
func checkGolden[T comparable](t *testing.T, file string, msg T, enc []byte, decode func([]byte) (T, error)) {
	t.Helper()
	golden := filepath.Join("testdata", file)
	if *update {
		if err := os.WriteFile(golden, append(enc, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if string(want) != string(enc)+"\n" {
		t.Fatalf("encoding changed:\n got %s\nwant %s\n(run go test -update if the change is intended and versioned)", enc, want)
	}
	back, err := decode(want)
	if err != nil || back != msg {
		t.Fatalf("golden decodes to %+v, %v; want %+v", back, err, msg)
	}
}
