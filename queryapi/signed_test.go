package queryapi

import (
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/takt/takt/internal/auth"
	"github.com/takt/takt/internal/demo"
	"github.com/takt/takt/internal/record"
	"github.com/takt/takt/internal/redisx"
)

// signCall signs a write of area as the server expects it: method is the
// call's operation (POST create, PUT update, DELETE delete, however it is
// sent), id the record's id ("" for a create). It sets _server,
// _expiration and _signature in args and returns args.
func (f *fixture) signCall(exp time.Time, method, area, id string, args url.Values) url.Values {
	args.Set(auth.ArgServer, demo.SecretServer)
	args.Set(auth.ArgExpiration, exp.UTC().Format(auth.ExpirationLayout))
	vals := []string{args.Get(auth.ArgServer), args.Get(auth.ArgExpiration), method, area}
	if id != "" {
		vals = append(vals, id)
	}
	if method != http.MethodDelete {
		for _, name := range record.Takt.Must(area).SignedFields() {
			vals = append(vals, args.Get(name))
		}
	}
	args.Set(auth.ArgSignature, auth.Sign(f.secret, vals...))
	return args
}

// sendRaw sends body as it is, with content type ct.
func (f *fixture) sendRaw(t *testing.T, method, path, key, ct, body string) (int, envelope) {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ct)
	status, _, raw := f.do(t, req, key)
	var env envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		t.Fatalf("%s %s: %v: %s", method, path, err, raw)
	}
	return status, env
}

// keyScopes returns the scopes of API key id, as its record shows them.
func (f *fixture) keyScopes(t *testing.T, id string) string {
	t.Helper()
	var rec map[string]any
	env := f.getJSON(t, "/api/1.0/apikeys/"+id+"/", f.keyA, http.StatusOK)
	if err := json.Unmarshal(env.Data, &rec); err != nil {
		t.Fatal(err)
	}
	s, _ := rec["scopes"].(string)
	return s
}

// TestSignedCalls: a signed call applies exactly what it signed, once, for
// the one call it was made for.
func TestSignedCalls(t *testing.T) {
	f := newFixture(t)
	// Each call its own expiration: two calls signing the same values in
	// the same second are one signed call, which is accepted once.
	n := 0
	exp := func() time.Time { n++; return time.Now().Add(10*time.Minute + time.Duration(n)*time.Second) }
	// A key of user 3 (device) to change, and another one.
	newKey := func(t *testing.T, scopes string) string {
		t.Helper()
		args := f.signCall(exp(), "POST", "apikeys", "", url.Values{"user": {"3"}, "scopes": {scopes}})
		_, _, env := f.send(t, "POST", "/api/1.0/apikeys/", f.keyA, args, false)
		return idText(t, data(t, env))
	}

	t.Run("repeated arguments are refused", func(t *testing.T) {
		before := len(records(t, f.getJSON(t, "/api/1.0/apikeys/?user=3&limit=2000", f.keyA, http.StatusOK)))
		signed := f.signCall(exp(), "POST", "apikeys", "", url.Values{"user": {"3"}, "scopes": {"read"}})
		for name, send := range map[string]func() (int, envelope){
			"twice in the body": func() (int, envelope) {
				return f.sendRaw(t, "POST", "/api/1.0/apikeys/", f.keyA, "application/x-www-form-urlencoded",
					signed.Encode()+"&scopes=read,write,ingest,admin")
			},
			"query and body": func() (int, envelope) {
				return f.sendRaw(t, "POST", "/api/1.0/apikeys/?scopes=admin", f.keyA, "application/x-www-form-urlencoded", signed.Encode())
			},
			"twice in a JSON object": func() (int, envelope) {
				return f.sendRaw(t, "POST", "/api/1.0/apikeys/", f.keyA, "application/json",
					`{"user":"3","scopes":"read","_server":"`+signed.Get(auth.ArgServer)+`","_expiration":"`+signed.Get(auth.ArgExpiration)+
						`","_signature":"`+signed.Get(auth.ArgSignature)+`","scopes":"admin"}`)
			},
			"an unsigned argument twice": func() (int, envelope) {
				return f.sendRaw(t, "POST", "/api/1.0/apikeys/?format=json", f.keyA, "application/x-www-form-urlencoded",
					signed.Encode()+"&format=json")
			},
		} {
			status, env := send()
			if status != http.StatusForbidden || env.Success || !strings.Contains(env.Error, "given 2 times") {
				t.Errorf("%s: %d %+v, want 403 naming the repeated argument", name, status, env)
			}
		}
		if after := len(records(t, f.getJSON(t, "/api/1.0/apikeys/?user=3&limit=2000", f.keyA, http.StatusOK))); after != before {
			t.Errorf("keys of user 3: %d before, %d after", before, after)
		}
	})

	t.Run("unsigned writes refuse repeated arguments too", func(t *testing.T) {
		status, env := f.sendRaw(t, "POST", "/api/1.0/areas/?code=A1", f.keyA, "application/x-www-form-urlencoded", "site=1&code=A2")
		if status != http.StatusOK || env.Success || !strings.Contains(strings.Join(env.Errors, ";"), `"code" is given 2 times`) {
			t.Errorf("repeated code: %d %+v", status, env)
		}
	})

	t.Run("a signature is bound to the method, area and record", func(t *testing.T) {
		k1, k2 := newKey(t, "ingest"), newKey(t, "ingest")
		// A create's signature sent as an update of k1.
		create := f.signCall(exp(), "POST", "apikeys", "", url.Values{"user": {"3"}, "scopes": {"read,write"}})
		if status, _, env := f.send(t, "PUT", "/api/1.0/apikeys/"+k1+"/", f.keyA, create, false); status != http.StatusForbidden {
			t.Errorf("create signature used for an update: %d %v", status, env)
		}
		if s := f.keyScopes(t, k1); s != "ingest" {
			t.Errorf("k1 scopes %q", s)
		}
		// An update's signature for k1 sent for k2.
		upd := f.signCall(exp(), "PUT", "apikeys", k1, url.Values{"scopes": {"read"}})
		if status, _, env := f.send(t, "PUT", "/api/1.0/apikeys/"+k2+"/", f.keyA, upd, false); status != http.StatusForbidden {
			t.Errorf("update signature of %s used for %s: %d %v", k1, k2, status, env)
		}
		// A delete signed for k1, sent to delete k2 (path) naming k1 in
		// the arguments.
		del := f.signCall(exp(), "DELETE", "apikeys", k1, url.Values{"id": {k1}})
		status, _, env := f.send(t, "DELETE", "/api/1.0/apikeys/"+k2+"/", f.keyA, del, false)
		if status == http.StatusOK && env["success"] == true {
			t.Errorf("delete signed for %s deleted %s", k1, k2)
		}
		f.getJSON(t, "/api/1.0/apikeys/"+k2+"/", f.keyA, http.StatusOK)
		// An update's signature used to delete.
		upd = f.signCall(exp(), "PUT", "apikeys", k2, url.Values{})
		upd.Set("_action", "delete")
		if status, _, env := f.send(t, "POST", "/api/1.0/apikeys/"+k2+"/", f.keyA, upd, false); status != http.StatusForbidden {
			t.Errorf("update signature used for a delete: %d %v", status, env)
		}
		f.getJSON(t, "/api/1.0/apikeys/"+k2+"/", f.keyA, http.StatusOK)
		// A users delete signature is not an apikeys one.
		del = f.signCall(exp(), "DELETE", "users", k2, url.Values{})
		if status, _, env := f.send(t, "DELETE", "/api/1.0/apikeys/"+k2+"/", f.keyA, del, false); status != http.StatusForbidden {
			t.Errorf("users signature used on apikeys: %d %v", status, env)
		}
		// The right signatures work.
		_, _, env = f.send(t, "PUT", "/api/1.0/apikeys/"+k1+"/", f.keyA, f.signCall(exp(), "PUT", "apikeys", k1, url.Values{"scopes": {"read"}}), false)
		if d := data(t, env); d["scopes"] != "read" {
			t.Errorf("signed update: %v", d)
		}
		_, _, env = f.send(t, "POST", "/api/1.0/apikeys/", f.keyA,
			f.signCall(exp(), "DELETE", "apikeys", k2, url.Values{"id": {k2}, "_action": {"delete"}}), false)
		data(t, env)
		f.getJSON(t, "/api/1.0/apikeys/"+k2+"/", f.keyA, http.StatusNotFound)
	})

	t.Run("security-sensitive fields are signed", func(t *testing.T) {
		k := newKey(t, "ingest")
		for _, tt := range []struct {
			path, area, id string
			signed         url.Values
			add            string
			value          string
		}{
			{"/api/1.0/apikeys/" + k + "/", "apikeys", k, url.Values{"scopes": {"ingest"}}, "rate_limit", "1000000"},
			{"/api/1.0/apikeys/" + k + "/", "apikeys", k, url.Values{"scopes": {"ingest"}}, "rate_burst", "1000000"},
			{"/api/1.0/apikeys/" + k + "/", "apikeys", k, url.Values{"scopes": {"ingest"}}, "active", "False"},
			{"/api/1.0/users/3/", "users", "3", url.Values{"username": {"device"}}, "admin", "True"},
			{"/api/1.0/users/3/", "users", "3", url.Values{"username": {"device"}}, "sites", "1,2"},
			{"/api/1.0/users/3/", "users", "3", url.Values{"username": {"device"}}, "active", "False"},
		} {
			args := f.signCall(exp(), "PUT", tt.area, tt.id, tt.signed)
			args.Set(tt.add, tt.value)
			if status, _, env := f.send(t, "PUT", tt.path, f.keyA, args, false); status != http.StatusForbidden {
				t.Errorf("%s with %s=%s added after signing: %d %v", tt.path, tt.add, tt.value, status, env)
			}
		}
		var rec map[string]any
		if err := json.Unmarshal(f.getJSON(t, "/api/1.0/users/3/", f.keyA, http.StatusOK).Data, &rec); err != nil {
			t.Fatal(err)
		}
		if rec["admin"] != false || rec["active"] != true || rec["sites"] != "1" {
			t.Errorf("user 3 changed by unsigned fields: %v", rec)
		}
	})

	t.Run("a signature is used once", func(t *testing.T) {
		k := newKey(t, "ingest")
		args := f.signCall(exp(), "PUT", "apikeys", k, url.Values{"scopes": {"ingest,read"}})
		_, _, env := f.send(t, "PUT", "/api/1.0/apikeys/"+k+"/", f.keyA, args, false)
		data(t, env)
		status, _, env := f.send(t, "PUT", "/api/1.0/apikeys/"+k+"/", f.keyA, args, false)
		if status != http.StatusForbidden || env["success"] != false || !strings.Contains(env["error"].(string), "used") {
			t.Errorf("the same signed call again: %d %v", status, env)
		}
		// Another spelling of the same signature bytes (base64 ignores the
		// unused low bits of the last character) is the same signature.
		sig := args.Get(auth.ArgSignature)
		alt := []byte(sig)
		i := strings.IndexByte(sig, '=') - 1
		alt[i] ^= 1
		args.Set(auth.ArgSignature, string(alt))
		if status, _, _ := f.send(t, "PUT", "/api/1.0/apikeys/"+k+"/", f.keyA, args, false); status != http.StatusForbidden {
			t.Errorf("the same signature spelt differently: %d", status)
		}
	})

	t.Run("without Redis signed calls fail closed, reads work", func(t *testing.T) {
		k := newKey(t, "ingest")
		cfg := f.cfg
		cfg.RedisAddr = deadAddress(t)
		rdb := redisx.NewClient(cfg.RedisAddr, "")
		t.Cleanup(func() { rdb.Close() })
		srv := serve(t, f.store, rdb, nil, cfg)
		g := &fixture{srv: srv, keyA: f.keyA, secret: f.secret, store: f.store}
		args := g.signCall(exp(), "PUT", "apikeys", k, url.Values{"scopes": {"ingest,read"}})
		if status, _, env := g.send(t, "PUT", "/api/1.0/apikeys/"+k+"/", g.keyA, args, false); status != http.StatusServiceUnavailable {
			t.Errorf("signed call without Redis: %d %v", status, env)
		}
		if s := f.keyScopes(t, k); s != "ingest" {
			t.Errorf("scopes %q after a refused call", s)
		}
		if n := len(records(t, g.getJSON(t, "/api/1.0/sites/", g.keyA, http.StatusOK))); n != 1 {
			t.Errorf("read without Redis: %d sites", n)
		}
	})
}

// deadAddress returns a loopback address nothing listens on.
func deadAddress(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestSignedCallVectors: the signed fields of the call vectors computed
// outside Go (internal/auth/testdata, which the README's worked example
// comes from) are the registry's.
func TestSignedCallVectors(t *testing.T) {
	b, err := os.ReadFile("../internal/auth/testdata/calls.json")
	if err != nil {
		t.Fatal(err)
	}
	var vecs []struct {
		Name   string      `json:"name"`
		Method string      `json:"method"`
		Area   string      `json:"area"`
		Fields [][]*string `json:"fields"`
	}
	if err := json.Unmarshal(b, &vecs); err != nil || len(vecs) == 0 {
		t.Fatalf("vectors: %v", err)
	}
	for _, v := range vecs {
		var names []string
		for _, f := range v.Fields {
			names = append(names, *f[0])
		}
		want := record.Takt.Must(v.Area).SignedFields()
		if v.Method == http.MethodDelete {
			want = nil
		}
		if !slices.Equal(names, want) {
			t.Errorf("%s: signs %v, the registry %v", v.Name, names, want)
		}
	}
}
