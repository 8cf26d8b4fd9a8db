package queryapi

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/takt/takt/internal/auth"
	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/demo"
	"github.com/takt/takt/internal/wire"
)

// signRecompute signs a recompute call with the fixture's secret; n makes
// the expiration, and with it the signature, the call's own.
func (f *fixture) signRecompute(args url.Values, n int) url.Values {
	args.Set(auth.ArgServer, demo.SecretServer)
	args.Set(auth.ArgExpiration, time.Now().Add(5*time.Minute+time.Duration(n)*time.Second).UTC().Format(auth.ExpirationLayout))
	vals := auth.Call{Method: auth.MethodCreate, Area: "productionperiods/recompute", Fields: recomputeSigned}.Values(args)
	args.Set(auth.ArgSignature, auth.Sign(f.secret, vals...))
	return args
}

// TestRecomputeCall: a signed call produces one request per location (a
// line and its machine) to the parts topic, keyed like the location's
// parts; bad windows and targets are answered as invalid, calls without a
// good signature refused.
func TestRecomputeCall(t *testing.T) {
	f := newFixture(t)
	const path = "/api/1.0/productionperiods/recompute/"
	start, end := time.Date(2024, 3, 4, 6, 0, 0, 0, time.UTC), time.Date(2024, 3, 5, 6, 0, 0, 0, time.UTC)
	n := 0
	call := func(mut func(url.Values), sign bool) (int, map[string]any) {
		t.Helper()
		n++
		args := url.Values{"site": {"1"}, "line": {strconv.Itoa(int(demo.LineID))}, "start": {start.Format(time.RFC3339)},
			"end": {end.Format(time.RFC3339)}, "wait": {"0"}}
		if mut != nil && sign {
			mut(args)
		}
		if sign {
			f.signRecompute(args, n)
		}
		if mut != nil && !sign {
			mut(args)
		}
		status, _, env := f.send(t, http.MethodPost, path, f.keyA, args, false)
		return status, env
	}

	status, env := call(nil, true)
	if status != http.StatusOK || env["success"] != true {
		t.Fatalf("recompute: %d %v", status, env)
	}
	rows, _ := env["data"].([]any)
	var ids []string
	for _, r := range rows {
		rec := r.(map[string]any)
		if rec["status"] != "pending" {
			t.Errorf("no processor runs here, yet %v", rec)
		}
		ids = append(ids, rec["id"].(string))
	}
	// The line and its machine, each keyed by its external id.
	cl := newKafkaClient(t, kgo.ConsumeTopics(f.topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var keys []string
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for len(keys) < 2 && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			rc, err := wire.DecodeRecompute(r.Value)
			if err != nil {
				t.Errorf("record %s: %v", r.Value, err)
				return
			}
			if string(r.Key) != rc.ExternalID || rc.StartMs != start.UnixMilli() || rc.EndMs != end.UnixMilli() ||
				!slices.Contains(ids, rc.ID) || string(r.Headers[0].Value) != wire.KindRecompute {
				t.Errorf("record %s %s", r.Key, r.Value)
			}
			keys = append(keys, string(r.Key))
		})
	}
	slices.Sort(keys)
	if !slices.Equal(keys, []string{demo.LineExternalID, demo.MachineExternalID}) || len(ids) != 2 {
		t.Fatalf("records for %v, ids %v", keys, ids)
	}

	for name, mut := range map[string]func(url.Values){
		"end before start": func(a url.Values) { a.Set("end", start.Add(-time.Hour).Format(time.RFC3339)) },
		"too long":         func(a url.Values) { a.Set("end", start.Add(wire.MaxRecomputeWindow+time.Hour).Format(time.RFC3339)) },
		"in the future":    func(a url.Values) { a.Set("end", time.Now().Add(time.Hour).UTC().Format(time.RFC3339)) },
		"two locations":    func(a url.Values) { a.Set("externalid", demo.MachineExternalID) },
		"no location":      func(a url.Values) { a.Del("line") },
		"unknown location": func(a url.Values) { a.Del("line"); a.Set("externalid", "nope") },
		"other site's":     func(a url.Values) { a.Set("line", "2") },
		"wait too long":    func(a url.Values) { a.Set("wait", "60") },
		"no start":         func(a url.Values) { a.Del("start") },
	} {
		status, env := call(mut, true)
		if status != http.StatusOK || env["success"] != false {
			t.Errorf("%s: %d %v, want a validation failure", name, status, env)
		}
	}
	for name, mut := range map[string]func(url.Values){
		"unsigned":          func(a url.Values) { a.Del(auth.ArgSignature) },
		"window changed":    func(a url.Values) { a.Set("start", start.Add(-time.Hour).Format(time.RFC3339)) },
		"location changed":  func(a url.Values) { a.Set("line", "99") },
		"argument repeated": func(a url.Values) { a.Add("start", start.Add(-time.Hour).Format(time.RFC3339)) },
		"wrong secret":      func(a url.Values) { a.Set(auth.ArgSignature, auth.Sign("not the secret", "x")) },
		"signature expired": func(a url.Values) {
			a.Set(auth.ArgExpiration, time.Now().Add(-time.Minute).UTC().Format(auth.ExpirationLayout))
		},
	} {
		status, env := call(mut, false)
		if status != http.StatusForbidden || env["success"] != false {
			t.Errorf("%s: %d %v, want 403", name, status, env)
		}
	}
	// A signature is spent once.
	args := f.signRecompute(url.Values{"site": {"1"}, "externalid": {demo.LineExternalID}, "start": {start.Format(time.RFC3339)},
		"end": {end.Format(time.RFC3339)}, "wait": {"0"}}, 1000)
	if status, _, env := f.send(t, http.MethodPost, path, f.keyA, args, false); status != http.StatusOK || env["success"] != true {
		t.Fatalf("recompute by external id: %d %v", status, env)
	}
	if status, _, env := f.send(t, http.MethodPost, path, f.keyA, args, false); status != http.StatusForbidden {
		t.Errorf("the same signature again: %d %v, want 403", status, env)
	}
	// A key without the write scope may not.
	if status, _, env := f.send(t, http.MethodPost, path, f.keyB, f.signRecompute(url.Values{"site": {"2"}, "line": {"2"},
		"start": {start.Format(time.RFC3339)}, "end": {end.Format(time.RFC3339)}}, 2000), false); status != http.StatusForbidden {
		t.Errorf("a read key: %d %v, want 403", status, env)
	}
	// A result is found by its id once the processor ran it.
	if status, _, env := f.send(t, http.MethodGet, "/api/1.0/productionperiods/recompute_result/"+ids[0]+"/", f.keyA, nil, false); status != http.StatusNotFound {
		t.Errorf("the result of a request no processor ran: %d %v", status, env)
	}
	// A request the processor refused reads as failed, with its reason.
	why := "the window holds more than 5000000 parts, more than one recompute may read; recompute shorter windows"
	if err := f.store.InsertRecompute(context.Background(), chstore.Recompute{ID: ids[0], Site: 1, LocationKind: "line",
		Location: demo.LineID, ExternalID: demo.LineExternalID, StartMs: start.UnixMilli(), EndMs: end.UnixMilli(),
		FromMs: start.UnixMilli(), ToMs: start.UnixMilli(), ReasonsLost: "[]", DoneAt: time.Now(), Error: why}); err != nil {
		t.Fatal(err)
	}
	status, _, env = f.send(t, http.MethodGet, "/api/1.0/productionperiods/recompute_result/"+ids[0]+"/", f.keyA, nil, false)
	if data, _ := env["data"].(map[string]any); status != http.StatusOK || data["status"] != "failed" || data["error"] != why || data["parts"] != nil {
		t.Errorf("the result of a refused request: %d %v; want status failed, its error, no figures", status, env)
	}
}

// TestPeriodsIncludeHistory: include_history picks what a list of
// productionperiods reads; it is no filter.
func TestPeriodsIncludeHistory(t *testing.T) {
	f := newFixture(t)
	env := f.getJSON(t, "/api/1.0/productionperiods/?include_history=true&fields=id,recompute,replaced_at,version", f.keyA, http.StatusOK)
	if !env.Success {
		t.Fatalf("include_history=true: %s", env.Error)
	}
	env = f.getJSON(t, "/api/1.0/productionperiods/?include_history=perhaps", f.keyA, http.StatusOK)
	if env.Success || !strings.Contains(env.Error, "include_history") {
		t.Errorf("include_history=perhaps: %+v", env)
	}
	env = f.getJSON(t, "/api/1.0/productionperiods/?fields=recompute", f.keyA, http.StatusOK)
	if env.Success {
		t.Error("recompute is a field of the history only")
	}
}
