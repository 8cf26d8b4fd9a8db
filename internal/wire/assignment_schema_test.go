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
// schemas/kafka/assignment.v1.schema.json and Assignment in step: the
// schema lists exactly the fields the encoder writes (and the struct
// declares), requires all of them, and pins the version and kind.
func TestAssignmentSchemaMatchesStruct(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "schemas", "kafka", "assignment.v1.schema.json"))
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
	a := sampleAssignment()
	enc, err := EncodeAssignment(&a)
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(enc, &fields); err != nil {
		t.Fatal(err)
	}
	for name := range fields {
		if _, ok := schema.Properties[name]; !ok {
			t.Errorf("encoded field %q is not in the schema", name)
		}
		if !slices.Contains(schema.Required, name) {
			t.Errorf("encoded field %q is not required by the schema", name)
		}
	}
	for name := range schema.Properties {
		if _, ok := fields[name]; !ok {
			t.Errorf("schema property %q is not encoded", name)
		}
	}
	if len(schema.Required) != len(fields) {
		t.Errorf("schema requires %d fields, encoder writes %d", len(schema.Required), len(fields))
	}
	// Every field of the struct, also one the sample might leave out.
	st := reflect.TypeFor[Assignment]()
	for i := range st.NumField() {
		name, _, _ := strings.Cut(st.Field(i).Tag.Get("json"), ",")
		if _, ok := schema.Properties[name]; !ok {
			t.Errorf("struct field %s (json %q) is not in the schema", st.Field(i).Name, name)
		}
	}
	if schema.AdditionalProperties == nil || *schema.AdditionalProperties {
		t.Error("schema allows additional properties")
	}
	var consts struct {
		Const json.RawMessage `json:"const"`
	}
	for name, want := range map[string]string{"v": "1", "kind": `"` + KindAssignment + `"`} {
		consts.Const = nil
		if err := json.Unmarshal(schema.Properties[name], &consts); err != nil || string(consts.Const) != want || string(fields[name]) != want {
			t.Errorf("%s: schema const %s, encoded %s, want %s", name, consts.Const, fields[name], want)
		}
	}
	if Version != 1 {
		t.Errorf("Version is %d: write assignment.v%d.schema.json", Version, Version)
	}
}
