package queryapi

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/takt/takt/internal/record"
)

// withField returns record.Takt with field f added to the area called
// area: the one edit a new field is.
func withField(t *testing.T, area string, f record.Field) *record.Registry {
	t.Helper()
	var areas []*record.Area
	for _, a := range record.Takt.Areas() {
		if a.Name == area {
			c := *a
			c.Fields = append(slices.Clone(a.Fields), f)
			a = &c
		}
		areas = append(areas, a)
	}
	r, err := record.NewRegistry(areas...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestOneEditAddsAField: a field added to an area's definition, and
// nowhere else, is readable, filterable, orderable, writable with its
// rules (required on create), shown in XML, and described in the OpenAPI
// schemas. Its column is added the way its migration would add it.
func TestOneEditAddsAField(t *testing.T) {
	store, rdb, cfg, seeded := seededDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	if err := store.Exec(ctx, "ALTER TABLE products ADD COLUMN colour String DEFAULT ''"); err != nil {
		t.Fatal(err)
	}
	colour := record.Field{Name: "colour", Kind: record.String, Flags: record.Read | record.Write | record.Required,
		Doc: "The colour it is painted in."}
	areas := withField(t, "products", colour)

	start := func(areas *record.Registry) *fixture {
		return &fixture{srv: serve(t, store.WithAreas(areas), rdb, nil, cfg), keyA: seeded.APIKey}
	}

	// Without the edit, the field does not exist.
	before := start(record.Takt)
	_, _, env1 := before.send(t, "POST", "/api/1.0/products/", before.keyA, url.Values{"site": {"1"}, "code": {"RED1"},
		"ideal_cycle_time": {"3"}, "colour": {"red"}}, false)
	if env1["success"] != false || !strings.Contains(env1["error"].(string), "colour: unknown field") {
		t.Fatalf("colour before the edit: %v", env1)
	}

	f := start(areas)
	_, _, env1 = f.send(t, "POST", "/api/1.0/products/", f.keyA, url.Values{"site": {"1"}, "code": {"RED1"}, "ideal_cycle_time": {"3"}}, false)
	if env1["success"] != false || !strings.Contains(env1["error"].(string), "colour: required") {
		t.Fatalf("create without the required colour: %v", env1)
	}
	_, _, env1 = f.send(t, "POST", "/api/1.0/products/", f.keyA, url.Values{"site": {"1"}, "code": {"RED1"},
		"ideal_cycle_time": {"3"}, "colour": {"red"}}, true)
	created := data(t, env1)
	id := idText(t, created)
	if created["colour"] != "red" {
		t.Fatalf("created product %v", created)
	}
	_, _, env1 = f.send(t, "PUT", "/api/1.0/products/"+id+"/", f.keyA, url.Values{"colour": {"blue"}}, false)
	if d := data(t, env1); d["colour"] != "blue" || d["code"] != "RED1" {
		t.Fatalf("updated product %v", d)
	}
	list := records(t, f.getJSON(t, "/api/1.0/products/?colour=blue&fields=id,colour", f.keyA, http.StatusOK))
	if len(list) != 1 || list[0]["colour"] != "blue" || len(list[0]) != 2 {
		t.Fatalf("filtered on colour: %v", list)
	}
	if n := len(records(t, f.getJSON(t, "/api/1.0/products/?colour__gt=red", f.keyA, http.StatusOK))); n != 0 {
		t.Errorf("colour__gt=red: %d records", n)
	}
	list = records(t, f.getJSON(t, "/api/1.0/products/?order_by=-colour&limit=1", f.keyA, http.StatusOK))
	if len(list) != 1 || list[0]["colour"] != "blue" {
		t.Errorf("ordered by colour: %v", list)
	}
	status, _, body := f.get(t, "/api/1.0/products/"+id+"/?format=xml", f.keyA)
	if status != http.StatusOK || !strings.Contains(string(body), "<colour>blue</colour>") {
		t.Errorf("XML: %d %s", status, body)
	}

	doc := record.OpenAPI(areas)
	product := doc[strings.Index(doc, "\n    Product:\n"):]
	product = product[:1+strings.Index(product[1:], "\n    Reason:\n")]
	if !strings.Contains(product, "        colour:\n          type: string\n          description: 'The colour it is painted in. Required on create.'") {
		t.Errorf("OpenAPI Product schema without colour:\n%s", product)
	}
	if strings.Contains(record.OpenAPI(record.Takt), "colour") {
		t.Error("the edit leaked into record.Takt")
	}
}
