package queryapi

import (
	"context"
	"encoding/xml"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/demo"
	"github.com/takt/takt/internal/record"
)

// TestLeading2LeanConventions: the conventions of Leading2Lean's data model
// that its clients rely on, on every area: active, site on every call,
// booleans as Python sends them, Django-style reference names, XML of
// every area, and writes of the areas that only actions write refused.
func TestLeading2LeanConventions(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	shift := record.Takt.Must("shifts").ZeroRow()
	for k, v := range map[string]any{"site": uint64(1), "code": "DAY", "start_time": "06:00", "end_time": "14:00",
		"days": "mon,tue,wed,thu,fri", "active": true} {
		shift[k] = v
	}
	if err := f.store.WriteRow(ctx, "shifts", 60, shift, chstore.Audit{CreatedBy: "test", LastUpdatedBy: "test"}); err != nil {
		t.Fatal(err)
	}
	count := func(t *testing.T, path string) int {
		t.Helper()
		return len(records(t, f.getJSON(t, path, f.keyA, http.StatusOK)))
	}

	t.Run("the sample's site check", func(t *testing.T) {
		for _, q := range []string{"test_site=True&site=1&active=True", "test_site=true&site=1&active=true",
			"test_site=1&site=1&active=1", "test_site=T&site=1"} {
			recs := records(t, f.getJSON(t, "/api/1.0/sites/?"+q, f.keyA, http.StatusOK))
			if len(recs) != 1 || recs[0]["description"] != "Demo Plant" || recs[0]["test_site"] != true || recs[0]["active"] != true {
				t.Errorf("%s: %v", q, recs)
			}
		}
		if n := count(t, "/api/1.0/sites/?test_site=False"); n != 0 {
			t.Errorf("test_site=False: %d sites", n)
		}
		env := f.getJSON(t, "/api/1.0/sites/?test_site=yes", f.keyA, http.StatusOK)
		if env.Success || !strings.Contains(env.Error, "test_site") {
			t.Errorf("test_site=yes: %+v", env)
		}
	})

	t.Run("every area has site and active", func(t *testing.T) {
		for _, a := range record.Takt.Areas() {
			env := f.getJSON(t, "/api/1.0/"+a.Name+"/?site=1&active=True&limit=5", f.keyA, http.StatusOK)
			if !env.Success {
				t.Errorf("%s: %s", a.Name, env.Error)
			}
			for _, rec := range records(t, env) {
				if rec["active"] != true || fmt.Sprint(rec["site"]) != "1" {
					t.Errorf("%s: %v", a.Name, rec)
				}
			}
			if n := count(t, "/api/1.0/"+a.Name+"/?site=1&active=False"); n != 0 {
				t.Errorf("%s: %d inactive records", a.Name, n)
			}
		}
	})

	t.Run("Django-style names of references", func(t *testing.T) {
		tests := []struct {
			path string
			want int
		}{
			{"/api/1.0/lines/?area_id=1&active=True&enable_production=True", 1},
			{"/api/1.0/lines/?area_id=2", 0},
			{"/api/1.0/machines/?line_id=1&active=True", 1},
			{"/api/1.0/machines/?line_id__gte=2", 0},
			{"/api/1.0/parts/?site_id=1&product_id=1&limit=2000", partsOfA},
			{"/api/1.0/machines/?order_by=-line_id", 1},
		}
		for _, tt := range tests {
			if n := count(t, tt.path); n != tt.want {
				t.Errorf("%s: %d records, want %d", tt.path, n, tt.want)
			}
		}
		env := f.getJSON(t, "/api/1.0/machines/?line_idx=1", f.keyA, http.StatusOK)
		if env.Success || !strings.Contains(env.Error, `unknown field "line_idx"`) {
			t.Errorf("a misspelt alias: %+v", env)
		}
	})

	t.Run("site on writes", func(t *testing.T) {
		// A record with a site field: site is the field.
		_, _, env := f.send(t, "POST", "/api/1.0/areas/", f.keyA, url.Values{"site": {"1"}, "code": {"PAINT"}}, false)
		if d := data(t, env); d["site"] != float64(1) || d["active"] != true {
			t.Errorf("area: %v", d)
		}
		// A site: site names the call's site and changes nothing.
		_, _, env = f.send(t, "POST", "/api/1.0/sites/1/", f.keyA, url.Values{"site": {"1"}, "description": {"Demo Plant"}}, false)
		if d := data(t, env); d["id"] != float64(1) {
			t.Errorf("site with site=1: %v", d)
		}
		_, _, env = f.send(t, "POST", "/api/1.0/sites/1/", f.keyA, url.Values{"site": {"2"}}, false)
		if env["success"] != false || !strings.Contains(env["error"].(string), "site: 2 is not one of your sites") {
			t.Errorf("a site with another site's id: %v", env)
		}
		// A user: site is the site the user gets when sites is not given,
		// and is signed in the place of sites.
		args := url.Values{"username": {"operator2"}, "active": {"True"}, "sites": {"1"}}
		args = f.signCall(time.Now().Add(10*time.Minute), "POST", "users", "", args)
		args.Del("sites")
		args.Set("site", "1")
		status, _, env := f.send(t, "POST", "/api/1.0/users/", f.keyA, args, false)
		if d := data(t, env); status != http.StatusOK || d["sites"] != "1" || d["site"] != float64(1) {
			t.Errorf("user created with site: %d %v", status, d)
		}
		args = url.Values{"username": {"operator3"}, "active": {"True"}, "sites": {"2"}}
		args = f.signCall(time.Now().Add(11*time.Minute), "POST", "users", "", args)
		args.Del("sites")
		args.Set("site", "2")
		if _, _, env = f.send(t, "POST", "/api/1.0/users/", f.keyA, args, false); env["success"] != false ||
			!strings.Contains(env["error"].(string), "site: 2 is not one of your sites") {
			t.Errorf("user of another site: %v", env)
		}
	})

	t.Run("areas written by actions refuse writes", func(t *testing.T) {
		for _, a := range []string{"dispatches", "clocksessions", "pitchdetails"} {
			status, _, env := f.send(t, "POST", "/api/1.0/"+a+"/", f.keyA, url.Values{"site": {"1"}}, false)
			if status != http.StatusMethodNotAllowed || !strings.Contains(env["error"].(string), "actions") {
				t.Errorf("POST %s: %d %v", a, status, env)
			}
		}
		status, _, env := f.send(t, "DELETE", "/api/1.0/clocksessions/5/", f.keyA, url.Values{}, false)
		if status != http.StatusMethodNotAllowed || !strings.Contains(env["error"].(string), "users/clock_in") {
			t.Errorf("DELETE clocksessions: %d %v", status, env)
		}
	})

	t.Run("master data of the new areas", func(t *testing.T) {
		_, _, env := f.send(t, "POST", "/api/1.0/scrapcategory/", f.keyA, url.Values{"site": {"1"}, "code": {"WELD"},
			"description": {"Welding defects"}}, false)
		cat := idText(t, data(t, env))
		_, _, env = f.send(t, "POST", "/api/1.0/reasons/1/", f.keyA, url.Values{"scrapcategory": {cat}}, false)
		if d := data(t, env); d["scrapcategory"] != mustFloat(t, cat) {
			t.Errorf("reason's category: %v", d)
		}
		_, _, env = f.send(t, "POST", "/api/1.0/reasons/", f.keyA, url.Values{"site": {"1"}, "code": {"JAM"}, "kind": {"downtime"},
			"scrapcategory": {cat}}, false)
		if env["success"] != false || !strings.Contains(env["error"].(string), "only scrap reasons have a category") {
			t.Errorf("a downtime reason with a scrap category: %v", env)
		}
		_, _, env = f.send(t, "POST", "/api/1.0/productcomponents/", f.keyA, url.Values{"site": {"1"}, "product": {"1"},
			"code": {"SCREW-M4"}, "quantity": {"4"}}, false)
		if d := data(t, env); d["quantity"] != 4.0 || d["product"] != 1.0 {
			t.Errorf("component: %v", d)
		}
		_, _, env = f.send(t, "POST", "/api/1.0/dispatchtypes/", f.keyA, url.Values{"site": {"1"}, "code": {"SETUP"},
			"active": {"False"}}, false)
		if d := data(t, env); d["downtime"] != false || d["active"] != false {
			t.Errorf("dispatch type: %v", d)
		}
		if n := count(t, "/api/1.0/dispatchtypes/?active=True"); n != 1 {
			t.Errorf("active dispatch types: %d", n)
		}
		// The scrap events of parts, with their reason's category.
		scraps := records(t, f.getJSON(t, "/api/1.0/scrapdetail/?site=1&limit=100", f.keyA, http.StatusOK))
		if len(scraps) == 0 {
			t.Fatal("no scrap details")
		}
		for _, s := range scraps {
			if s["reason"] != demo.ReasonCode || fmt.Sprint(s["scrapcategory"]) != cat || fmt.Sprint(s["line"]) != "1" {
				t.Errorf("scrap detail %v", s)
			}
		}
		// The site's shift plans the line and its machine.
		rs := records(t, f.getJSON(t, "/api/1.0/resourceshifts/?site=1&order_by=resource_kind", f.keyA, http.StatusOK))
		if len(rs) != 2 || rs[0]["resource_kind"] != "line" || fmt.Sprint(rs[1]["machine"]) != fmt.Sprint(demo.MachineID) ||
			rs[0]["shiftcode"] != "DAY" || rs[0]["site_shift"] != true {
			t.Errorf("resource shifts: %v", rs)
		}
	})

	t.Run("a retired shift plans no time", func(t *testing.T) {
		_, _, env := f.send(t, "POST", "/api/1.0/shifts/", f.keyA, url.Values{"site": {"1"}, "code": {"NIGHT"},
			"start_time": {"22:00"}, "end_time": {"06:00"}, "active": {"False"}}, false)
		if d := data(t, env); d["active"] != false {
			t.Fatalf("shift: %v", d)
		}
		m, err := f.store.OEEMaster(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		pm, err := f.store.PeriodMaster(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, sh := range m.Shifts {
			if sh.Code == "NIGHT" {
				t.Errorf("the OEE reads a retired shift: %+v", sh)
			}
		}
		for _, sh := range pm.Shifts {
			if sh.Code == "NIGHT" {
				t.Errorf("the processor reads a retired shift: %+v", sh)
			}
		}
		if n := count(t, "/api/1.0/resourceshifts/?shiftcode=NIGHT"); n != 0 {
			t.Errorf("resource shifts of a retired shift: %d", n)
		}
	})

	t.Run("xml of every area", func(t *testing.T) {
		for _, a := range record.Takt.Areas() {
			status, _, body := f.get(t, "/api/1.0/"+a.Name+"/?format=xml&limit=3", f.keyA)
			var doc struct {
				XMLName xml.Name `xml:"response"`
				Success string   `xml:"success"`
				Data    struct {
					Resources []struct {
						Active string `xml:"active"`
					} `xml:"resource"`
				} `xml:"data"`
			}
			if err := xml.Unmarshal(body, &doc); err != nil || status != http.StatusOK || doc.Success != "True" {
				t.Errorf("%s as xml: %d %v %s", a.Name, status, err, body)
			}
			for _, r := range doc.Data.Resources {
				if r.Active != "True" && r.Active != "False" {
					t.Errorf("%s as xml: active %q", a.Name, r.Active)
				}
			}
		}
	})

	t.Run("keys of other sites see nothing", func(t *testing.T) {
		for _, a := range []string{"dispatchtypes", "machines", "scrapdetail", "resourceshifts", "productcomponents"} {
			if n := len(records(t, f.getJSON(t, "/api/1.0/"+a+"/?site=1", f.keyB, http.StatusOK))); n != 0 {
				t.Errorf("%s: key of site 2 sees %d records of site 1", a, n)
			}
		}
	})
}

func mustFloat(t *testing.T, id string) float64 {
	t.Helper()
	var v float64
	for _, c := range id {
		v = v*10 + float64(c-'0')
	}
	return v
}
