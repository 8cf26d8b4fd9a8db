package queryapi

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/takt/takt/internal/auth"
	"github.com/takt/takt/internal/demo"
)

// send makes a write request: form-encoded unless asJSON, key in L2LAUTH.
func (f *fixture) send(t *testing.T, method, path, key string, args url.Values, asJSON bool) (int, http.Header, map[string]any) {
	t.Helper()
	var body io.Reader
	ct := "application/x-www-form-urlencoded"
	if asJSON {
		m := map[string]any{}
		for k, v := range args {
			m[k] = v[0]
		}
		b, _ := json.Marshal(m)
		body, ct = strings.NewReader(string(b)), "application/json"
	} else {
		body = strings.NewReader(args.Encode())
	}
	req, err := http.NewRequest(method, f.srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ct)
	status, hdr, raw := f.do(t, req, key)
	var env map[string]any
	if err := json.Unmarshal(raw, &env); err != nil {
		t.Fatalf("%s %s: %v: %s", method, path, err, raw)
	}
	return status, hdr, env
}

func data(t *testing.T, env map[string]any) map[string]any {
	t.Helper()
	if env["success"] != true {
		t.Fatalf("success=false: %v", env)
	}
	d, ok := env["data"].(map[string]any)
	if !ok {
		t.Fatalf("data is not a record: %v", env)
	}
	return d
}

func idText(t *testing.T, rec map[string]any) string {
	t.Helper()
	n, ok := rec["id"].(float64)
	if !ok || n <= 0 || n >= 1<<53 {
		t.Fatalf("record id %v", rec["id"])
	}
	return strconv.FormatUint(uint64(n), 10)
}

func TestWrites(t *testing.T) {
	f := newFixture(t)

	t.Run("master data create update delete", func(t *testing.T) {
		_, _, env := f.send(t, "POST", "/api/1.0/areas/", f.keyA, url.Values{"site": {"1"}, "code": {"PAINT"}, "description": {"Paint shop"}}, false)
		area := data(t, env)
		if area["createdby"] != demo.Username || area["code"] != "PAINT" {
			t.Fatalf("created area %v", area)
		}
		aid := idText(t, area)
		_, _, env = f.send(t, "POST", "/api/1.0/lines/", f.keyA, url.Values{"site": {"1"}, "area": {aid}, "code": {"L9"}, "externalid": {"line_9"},
			"stop_threshold": {"90.5"}}, true)
		line := data(t, env)
		lid := idText(t, line)
		if line["stop_threshold"] != 90.5 {
			t.Errorf("line stop_threshold %v, want 90.5", line["stop_threshold"])
		}
		_, _, env = f.send(t, "POST", "/api/1.0/machines/", f.keyA, url.Values{"site": {"1"}, "line": {lid}, "code": {"WLD1"},
			"externalid": {"weld_1"}, "custom__vendor": {"acme"}, "custom__power_kw": {"12"}}, false)
		m := data(t, env)
		mid := idText(t, m)
		if m["stop_threshold"] != 0.0 {
			t.Errorf("machine stop_threshold %v, want the default 0", m["stop_threshold"])
		}
		list := records(t, f.getJSON(t, "/api/1.0/machines/?site=1&code=WLD1", f.keyA, http.StatusOK))
		if len(list) != 1 || list[0]["custom__vendor"] != "acme" || list[0]["custom__power_kw"] != "12" {
			t.Fatalf("machines with custom properties: %v", list)
		}
		if n := len(records(t, f.getJSON(t, "/api/1.0/machines/?custom__vendor=other", f.keyA, http.StatusOK))); n != 0 {
			t.Errorf("custom filter: %d records", n)
		}
		if n := len(records(t, f.getJSON(t, "/api/1.0/machines/?custom__vendor__isnull=False&custom__power_kw__gte=1", f.keyA, http.StatusOK))); n != 1 {
			t.Errorf("custom filters: %d records", n)
		}
		// Update with POST + id in the body, then PUT with id in the path.
		_, _, env = f.send(t, "POST", "/api/1.0/machines/", f.keyA, url.Values{"id": {mid}, "description": {"Welder"}, "custom__vendor": {""}}, false)
		if d := data(t, env); d["description"] != "Welder" || d["code"] != "WLD1" {
			t.Errorf("updated machine %v", d)
		}
		_, _, env = f.send(t, "PUT", "/api/1.0/machines/"+mid+"/", f.keyA, url.Values{"code": {"WLD2"}, "stop_threshold": {"86400"}}, true)
		if d := data(t, env); d["code"] != "WLD2" || d["description"] != "Welder" || d["createdby"] != demo.Username || d["stop_threshold"] != 86400.0 {
			t.Errorf("put machine %v", d)
		}
		// An update that does not name stop_threshold keeps it.
		_, _, env = f.send(t, "PUT", "/api/1.0/lines/"+lid+"/", f.keyA, url.Values{"description": {"Line nine"}}, false)
		if d := data(t, env); d["stop_threshold"] != 90.5 || d["description"] != "Line nine" {
			t.Errorf("put line %v", d)
		}
		if n := len(records(t, f.getJSON(t, "/api/1.0/lines/?stop_threshold__gt=90", f.keyA, http.StatusOK))); n != 1 {
			t.Errorf("lines with stop_threshold > 90: %d", n)
		}
		if _, ok := records(t, f.getJSON(t, "/api/1.0/machines/?site=1", f.keyA, http.StatusOK))[0]["custom__vendor"]; ok {
			t.Errorf("custom property not removed")
		}
		// Delete with _action=delete, then DELETE.
		_, _, env = f.send(t, "POST", "/api/1.0/machines/?_action=delete", f.keyA, url.Values{"id": {mid}}, false)
		data(t, env)
		f.getJSON(t, "/api/1.0/machines/"+mid+"/", f.keyA, http.StatusNotFound)
		status, _, _ := f.send(t, "DELETE", "/api/1.0/lines/"+lid+"/", f.keyA, nil, false)
		if status != http.StatusOK {
			t.Errorf("DELETE line: %d", status)
		}
		f.getJSON(t, "/api/1.0/lines/"+lid+"/", f.keyA, http.StatusNotFound)
	})

	t.Run("validation", func(t *testing.T) {
		for _, tt := range []struct {
			path string
			args url.Values
			want []string
		}{
			{"/api/1.0/products/", url.Values{"site": {"1"}, "created": {"x"}, "colour": {"red"}, "ideal_cycle_time": {"-1"}},
				[]string{"created: set by the server", "colour: unknown field", "ideal_cycle_time", "code: required"}},
			{"/api/1.0/reasons/", url.Values{"site": {"1"}, "code": {"R"}, "kind": {"scrap"}, "planned": {"True"}}, []string{"only downtime"}},
			{"/api/1.0/reasons/", url.Values{"site": {"1"}, "code": {"R"}, "kind": {"oops"}}, []string{"kind"}},
			{"/api/1.0/products/", url.Values{"site": {"1"}, "code": {demo.ProductCode}, "ideal_cycle_time": {"3"}}, []string{"already used"}},
			{"/api/1.0/products/", url.Values{"site": {"2"}, "code": {"X"}, "ideal_cycle_time": {"3"}}, []string{"not one of your sites"}},
			{"/api/1.0/lines/", url.Values{"site": {"1"}, "area": {"1"}, "code": {"LX"}, "externalid": {demo.LineExternalID}}, []string{"externalid"}},
			{"/api/1.0/shifts/", url.Values{"site": {"1"}, "code": {"S1"}, "start_time": {"25:00"}, "end_time": {"14:00"}, "days": {"mon,xyz"}}, []string{"start_time", "days"}},
			{"/api/1.0/sites/", url.Values{"timezone": {"Mars/Base"}}, []string{"timezone"}},
			{"/api/1.0/lines/", url.Values{"id": {"1"}, "site": {"2"}}, []string{"cannot be changed"}},
			{"/api/1.0/lines/", url.Values{"id": {"1"}, "stop_threshold": {"-1"}}, []string{`stop_threshold: "-1" is not a number >= 0`}},
			{"/api/1.0/lines/", url.Values{"id": {"1"}, "stop_threshold": {"86400.5"}}, []string{`stop_threshold: "86400.5" is above the maximum 86400`}},
			{"/api/1.0/lines/", url.Values{"site": {"1"}, "area": {"1"}, "code": {"LY"}, "stop_threshold": {"1e9"}}, []string{"stop_threshold", "above the maximum"}},
			{"/api/1.0/machines/", url.Values{"site": {"1"}, "line": {"1"}, "code": {"MY"}, "stop_threshold": {"soon"}}, []string{`stop_threshold: "soon" is not a number`}},
			{"/api/1.0/machines/", url.Values{"site": {"1"}, "line": {"1"}, "code": {"MZ"}, "stop_threshold": {"NaN"}}, []string{`stop_threshold: "NaN" is not a number`}},
		} {
			status, _, env := f.send(t, "POST", tt.path, f.keyA, tt.args, false)
			if status != http.StatusOK || env["success"] != false {
				t.Errorf("%s %v: %d %v", tt.path, tt.args, status, env)
				continue
			}
			var problems []string
			for _, p := range env["errors"].([]any) {
				problems = append(problems, p.(string))
			}
			b := strings.Join(problems, "\n")
			for _, w := range tt.want {
				if !strings.Contains(b, w) {
					t.Errorf("%s %v: errors %s lack %q", tt.path, tt.args, b, w)
				}
			}
		}
		status, _, env := f.send(t, "POST", "/api/1.0/parts/", f.keyA, url.Values{"quantity": {"1"}}, false)
		if status != http.StatusMethodNotAllowed || env["success"] != false {
			t.Errorf("write to parts: %d %v", status, env)
		}
		status, _, _ = f.send(t, "POST", "/api/1.0/products/", f.keyB, url.Values{"site": {"2"}, "code": {"X"}}, false)
		if status != http.StatusForbidden {
			t.Errorf("read-only key wrote: %d", status)
		}
	})

	t.Run("other sites answer like missing records", func(t *testing.T) {
		// Product 3 is site 2's.
		s1, _, e1 := f.send(t, "PUT", "/api/1.0/products/3/", f.keyA, url.Values{"description": {"x"}}, false)
		s2, _, e2 := f.send(t, "PUT", "/api/1.0/products/999999/", f.keyA, url.Values{"description": {"x"}}, false)
		if s1 != http.StatusNotFound || s2 != s1 || strings.ReplaceAll(e2["error"].(string), "999999", "3") != e1["error"] {
			t.Errorf("hidden: %d %v; missing: %d %v", s1, e1, s2, e2)
		}
	})

	t.Run("signed users and keys", func(t *testing.T) {
		exp := time.Now().Add(15 * time.Minute)
		args := url.Values{"username": {"jo"}, "active": {"True"}, "sites": {"1"}}
		status, _, env := f.send(t, "POST", "/api/1.0/users/", f.keyA, url.Values{"username": {"jo"}, "active": {"True"}, "sites": {"1"}}, false)
		if status != http.StatusForbidden || env["success"] != false {
			t.Fatalf("unsigned user create: %d %v", status, env)
		}
		tampered := f.signCall(exp, "POST", "users", "", url.Values{"username": {"jo"}, "active": {"True"}, "sites": {"1"}})
		tampered.Set("username", "eve")
		if status, _, _ := f.send(t, "POST", "/api/1.0/users/", f.keyA, tampered, false); status != http.StatusForbidden {
			t.Errorf("tampered: %d", status)
		}
		expired := f.signCall(time.Now().Add(-time.Minute), "POST", "users", "", url.Values{"username": {"jo"}, "active": {"True"}, "sites": {"1"}})
		if status, _, _ := f.send(t, "POST", "/api/1.0/users/", f.keyA, expired, false); status != http.StatusForbidden {
			t.Errorf("expired: %d", status)
		}
		_, _, env = f.send(t, "POST", "/api/1.0/users/", f.keyA, f.signCall(exp, "POST", "users", "", args), false)
		user := data(t, env)
		uid := idText(t, user)
		if user["sites"] != "1" || user["active"] != true {
			t.Errorf("user %v", user)
		}
		kargs := f.signCall(exp, "POST", "apikeys", "", url.Values{"user": {uid}, "scopes": {"read,write"}})
		_, _, env = f.send(t, "POST", "/api/1.0/apikeys/", f.keyA, kargs, true)
		key := data(t, env)
		newKey, _ := key["key"].(string)
		if !auth.WellFormed(newKey) || key["prefix"] != auth.Prefix(newKey) || key["scopes"] != "read,write" {
			t.Fatalf("created key %v", key)
		}
		kid := idText(t, key)
		got := f.getJSON(t, "/api/1.0/apikeys/"+kid+"/", f.keyA, http.StatusOK)
		if strings.Contains(string(got.Data), newKey[5:]) || strings.Contains(string(got.Data), auth.HashKey(newKey)) || strings.Contains(string(got.Data), `"key"`) {
			t.Errorf("key or hash shown after creation: %s", got.Data)
		}
		// The new key works, and its writes are attributed to its user.
		_, _, env = f.send(t, "POST", "/api/1.0/reasons/", newKey, url.Values{"site": {"1"}, "code": {"DT1"}, "kind": {"downtime"}, "planned": {"True"}}, false)
		if r := data(t, env); r["createdby"] != "jo" || r["planned"] != true {
			t.Errorf("reason by jo: %v", r)
		}
		// realuser: the admin acts for jo.
		_, _, env = f.send(t, "POST", "/api/1.0/reasons/?realuser=jo", f.keyA, url.Values{"site": {"1"}, "code": {"DT2"}, "kind": {"downtime"}}, false)
		if r := data(t, env); r["createdby"] != "jo" || r["lastupdatedby"] != "jo" {
			t.Errorf("realuser attribution: %v", r)
		}
		// jo is no admin: it may not act for admin.
		if status, _, _ := f.send(t, "POST", "/api/1.0/reasons/?realuser=admin", newKey, url.Values{"site": {"1"}, "code": {"DT3"}, "kind": {"downtime"}}, false); status != http.StatusForbidden {
			t.Errorf("realuser by a non-admin: %d", status)
		}
		// Site-2 user b is not within admin's sites.
		if status, _, _ := f.send(t, "POST", "/api/1.0/reasons/?realuser=b", f.keyA, url.Values{"site": {"1"}, "code": {"DT4"}, "kind": {"downtime"}}, false); status != http.StatusForbidden {
			t.Errorf("realuser outside the sites: %d", status)
		}
		// Deactivating the key (signed) makes it invalid at once.
		del := f.signCall(exp, "DELETE", "apikeys", kid, url.Values{"id": {kid}, "_action": {"delete"}})
		if _, _, env := f.send(t, "POST", "/api/1.0/apikeys/", f.keyA, del, false); env["success"] != true {
			t.Fatalf("delete key: %v", env)
		}
		if status, _, _ := f.get(t, "/api/1.0/sites/", newKey); status != http.StatusUnauthorized {
			t.Errorf("deleted key still works: %d", status)
		}
	})
}
