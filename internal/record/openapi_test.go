package record

import (
	"flag"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
)

var update = flag.Bool("update", false, "rewrite the generated part of schemas/openapi/records.yaml")

const openAPIFile = "../../schemas/openapi/records.yaml"

// TestOpenAPI: the area schemas of the record API's OpenAPI description
// are the ones the registry generates, and the file is valid YAML in which
// every area has its schema with every field a read shows.
func TestOpenAPI(t *testing.T) {
	b, err := os.ReadFile(openAPIFile)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	at := strings.Index(text, OpenAPIMarker+"\n")
	if at < 0 && *update {
		at = len(text)
	}
	if at < 0 {
		t.Fatalf("%s has no line %q", openAPIFile, OpenAPIMarker)
	}
	want := OpenAPI(Takt)
	if *update {
		if err := os.WriteFile(openAPIFile, []byte(text[:at]+want), 0o644); err != nil {
			t.Fatal(err)
		}
		text = text[:at] + want
	} else if got := text[at:]; got != want {
		t.Fatalf("%s differs from the area definitions; run go test ./internal/record -run TestOpenAPI -update\n%s",
			openAPIFile, firstDifference(got, want))
	}

	var doc struct {
		Components struct {
			Schemas map[string]struct {
				Properties map[string]any `yaml:"properties"`
				Enum       []string       `yaml:"enum"`
			} `yaml:"schemas"`
		} `yaml:"components"`
	}
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		t.Fatalf("%s: %v", openAPIFile, err)
	}
	schemas := doc.Components.Schemas
	if got := strings.Join(schemas["AreaName"].Enum, ","); got != strings.Join(namesOf(Takt), ",") {
		t.Errorf("AreaName enum %s", got)
	}
	for _, a := range Takt.Areas() {
		s, ok := schemas[a.Record]
		if !ok {
			t.Errorf("no schema %s for area %s", a.Record, a.Name)
			continue
		}
		for _, f := range a.Fields {
			if _, ok := s.Properties[f.Name]; ok != (f.Has(Read) || f.Has(Once)) {
				t.Errorf("%s.%s: in the schema %v, read or shown %v", a.Record, f.Name, ok, !ok)
			}
		}
	}
}

func namesOf(r *Registry) []string {
	var out []string
	for _, a := range r.Areas() {
		out = append(out, a.Name)
	}
	return out
}

func firstDifference(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := range max(len(g), len(w)) {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return "line " + strconv.Itoa(i+1) + " of the generated part:\n file: " + gl + "\n want: " + wl
		}
	}
	return ""
}
