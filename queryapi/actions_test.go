package queryapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/demo"
	"github.com/takt/takt/internal/redisx"
	"github.com/takt/takt/internal/wire"
)

// topicRecords reads the first n records of the fixture's topic (at most
// 20 s) and returns those pick takes, in the order of their partitions:
// the order of one location's records.
func (f *fixture) topicRecords(t *testing.T, n int, pick func(*kgo.Record) bool) []*kgo.Record {
	t.Helper()
	var out []*kgo.Record
	for _, r := range consumeRecords(t, f.topic, n) {
		if pick(r) {
			out = append(out, r)
		}
	}
	return out
}

// partsOf picks the part events (no kind header) of location ext.
func partsOf(ext string) func(*kgo.Record) bool {
	return func(r *kgo.Record) bool {
		for _, h := range r.Headers {
			if h.Key == wire.KindHeader {
				return false
			}
		}
		return string(r.Key) == ext
	}
}

// ofKind picks the records whose kind header is kind.
func ofKind(kind string) func(*kgo.Record) bool {
	return func(r *kgo.Record) bool {
		for _, h := range r.Headers {
			if h.Key == wire.KindHeader {
				return string(h.Value) == kind
			}
		}
		return false
	}
}

// action posts args (with site=1) to an action path and returns the HTTP
// status and the envelope.
func (f *fixture) action(t *testing.T, method, path string, args url.Values) (int, map[string]any) {
	t.Helper()
	if args == nil {
		args = url.Values{}
	}
	if args.Get("site") == "" {
		args.Set("site", "1")
	}
	if method == http.MethodGet {
		status, _, body := f.get(t, path+"?"+args.Encode(), f.keyA)
		var env map[string]any
		if err := json.Unmarshal(body, &env); err != nil {
			t.Fatalf("GET %s: %v: %s", path, err, body)
		}
		return status, env
	}
	status, _, env := f.send(t, method, path, f.keyA, args, false)
	return status, env
}

// listOne is the one record of an action answer whose data is a list of
// one (as Leading2Lean's Go client reads it).
func listOne(t *testing.T, env map[string]any) map[string]any {
	t.Helper()
	list, ok := env["data"].([]any)
	if env["success"] != true || !ok || len(list) != 1 {
		t.Fatalf("want a list of one record: %v", env)
	}
	return list[0].(map[string]any)
}

// invalidWith checks a validation failure: HTTP 200, success false, an
// error that contains want.
func invalidWith(t *testing.T, status int, env map[string]any, want string) {
	t.Helper()
	if status != http.StatusOK || env["success"] != false || !strings.Contains(fmt.Sprint(env["error"]), want) {
		t.Errorf("want a validation failure with %q, got %d %v", want, status, env)
	}
}

// berlin is the demo site's zone.
func berlin(t *testing.T) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(demo.SiteTimezone)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// TestActions: the action calls' answers, what they store, and the records
// they put on the parts topic for the processor.
func TestActions(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	loc := berlin(t)
	produced := 0 // records on the topic so far

	t.Run("every action passes the common checks", func(t *testing.T) {
		status, env := f.action(t, "GET", "/api/1.0/dispatches/open/", nil)
		if status != http.StatusMethodNotAllowed || env["success"] != false {
			t.Errorf("GET dispatches/open: %d %v", status, env)
		}
		status, env = f.action(t, "POST", "/api/1.0/dispatches/open/", url.Values{"site": {"2"}, "machine": {"1"}, "dispatchtype": {"1"}})
		invalidWith(t, status, env, "site: 2 is not one of your sites")
		status, env = f.action(t, "POST", "/api/1.0/dispatches/open/", url.Values{"machine": {"x"}})
		invalidWith(t, status, env, `machine: "x" is not a whole number`)
		invalidWith(t, status, env, "dispatchtype: required")
		status, env = f.action(t, "POST", "/api/1.0/users/clock_in/", url.Values{"linecode": {demo.LineCode}})
		if status != http.StatusNotFound || !strings.Contains(env["error"].(string), "give the username in the path") {
			t.Errorf("clock_in without a username: %d %v", status, env)
		}
		status, env = f.action(t, "POST", "/api/1.0/machines/nothing/", nil)
		if status != http.StatusNotFound {
			t.Errorf("an unknown record of machines: %d %v", status, env)
		}
		// A key without the write scope.
		status, _, _ = f.send(t, "POST", "/api/1.0/machines/set_cycle_count/", f.keyB, url.Values{"code": {"X"}, "cyclecount": {"1"}}, false)
		if status != http.StatusForbidden {
			t.Errorf("set_cycle_count with a read key: %d", status)
		}
		// Arguments the action does not take are ignored, as the vendor's
		// sample clients need (they send leftovers of earlier calls).
		status, env = f.action(t, "POST", "/api/1.0/machines/set_cycle_count/", url.Values{"code": {demo.MachineCode},
			"cyclecount": {"0"}, "start": {"2024-01-01 00:00"}, "end": {"whatever"}, "active": {"true"}})
		if listOne(t, env)["cyclecount"] != 0.0 || status != http.StatusOK {
			t.Errorf("set_cycle_count with leftovers: %d %v", status, env)
		}
		status, env = f.action(t, "POST", "/api/1.0/users/clock_in/admin/", url.Values{"linecode": {demo.LineCode},
			"start": {"2024-13-01 00:00"}})
		invalidWith(t, status, env, `start: "2024-13-01 00:00" is not a time`)
		status, env = f.action(t, "POST", "/api/1.0/users/clock_in/admin/", url.Values{"linecode": {demo.LineCode},
			"start": {"1999-12-31 00:00"}})
		invalidWith(t, status, env, "before 2000")
	})

	t.Run("clock in and out", func(t *testing.T) {
		_, env := f.action(t, "POST", "/api/1.0/users/clock_in/admin/", url.Values{"linecode": {demo.LineCode}})
		in := listOne(t, env)
		if in["open"] != true || in["end"] != nil || in["username"] != "admin" || in["linecode"] != demo.LineCode {
			t.Errorf("clocked in: %v", in)
		}
		_, env = f.action(t, "POST", "/api/1.0/users/clock_in/admin/", url.Values{"linecode": {demo.LineCode}})
		if again := listOne(t, env); again["id"] != in["id"] {
			t.Errorf("clocking in twice opened a second session: %v, %v", in, again)
		}
		_, env = f.action(t, "POST", "/api/1.0/users/clock_out/admin/", url.Values{"linecode": {demo.LineCode}})
		if out := listOne(t, env); out["id"] != in["id"] || out["open"] != false || out["end"] == nil {
			t.Errorf("clocked out: %v", out)
		}
		status, env := f.action(t, "POST", "/api/1.0/users/clock_out/admin/", url.Values{"linecode": {demo.LineCode}})
		invalidWith(t, status, env, "admin is not clocked in on line LINE1")
		status, env = f.action(t, "POST", "/api/1.0/users/clock_in/nobody/", url.Values{"linecode": {demo.LineCode}})
		invalidWith(t, status, env, `no active user "nobody" in site 1`)
		status, env = f.action(t, "POST", "/api/1.0/users/clock_in/b/", url.Values{"linecode": {demo.LineCode}})
		invalidWith(t, status, env, `no active user "b" in site 1`)
		status, env = f.action(t, "POST", "/api/1.0/users/clock_in/admin/", url.Values{"linecode": {"LINE9"}})
		invalidWith(t, status, env, `linecode: no line "LINE9" in site 1`)

		// A past session, in the site's local time (as the samples send it).
		start := time.Date(2024, 7, 1, 6, 0, 0, 0, loc)
		_, env = f.action(t, "POST", "/api/1.0/users/clock_in/admin/", url.Values{"linecode": {demo.LineCode},
			"start": {start.Format("2006-01-02 15:04")}, "end": {start.Add(8 * time.Hour).Format("2006-01-02 15:04:05")}})
		past := listOne(t, env)
		if past["start"] != "2024-07-01 04:00:00.000" || past["end"] != "2024-07-01 12:00:00.000" || past["hours"] != 8.0 {
			t.Errorf("past session: %v", past)
		}
		status, env = f.action(t, "POST", "/api/1.0/users/clock_in/admin/", url.Values{"linecode": {demo.LineCode},
			"start": {"2024-07-01 06:00"}, "end": {"2024-07-01 05:00"}})
		invalidWith(t, status, env, "end: 2024-07-01 03:00:00 is before start")
		sessions := records(t, f.getJSON(t, "/api/1.0/clocksessions/?username=admin&line_id=1&order_by=start", f.keyA, http.StatusOK))
		if len(sessions) != 2 || sessions[0]["start"] != "2024-07-01 04:00:00.000" {
			t.Errorf("sessions: %v", sessions)
		}
	})

	t.Run("cycle counts", func(t *testing.T) {
		_, env := f.action(t, "POST", "/api/1.0/machines/set_cycle_count/", url.Values{"code": {demo.MachineCode}, "cyclecount": {"832"}})
		set := listOne(t, env)
		if set["cyclecount"] != 832.0 || set["cyclecount_lastupdated"] == nil {
			t.Fatalf("set: %v", set)
		}
		// Concurrent increments lose nothing, and each records its parts.
		const calls, each = 12, 5
		var wg sync.WaitGroup
		for range calls {
			wg.Add(1)
			go func() {
				defer wg.Done()
				status, env := f.action(t, "POST", "/api/1.0/machines/increment_cycle_count/",
					url.Values{"code": {demo.MachineCode}, "cyclecount": {strconv.Itoa(each)}, "skip_lastupdated": {"1"}})
				if status != http.StatusOK || env["success"] != true {
					t.Errorf("increment: %d %v", status, env)
				}
			}()
		}
		wg.Wait()
		m := records(t, f.getJSON(t, "/api/1.0/machines/?code="+demo.MachineCode, f.keyA, http.StatusOK))[0]
		if fmt.Sprint(m["cyclecount"]) != strconv.Itoa(832+calls*each) || m["cyclecount_lastupdated"] != set["cyclecount_lastupdated"] {
			t.Errorf("after %d increments of %d: %v (set at %v)", calls, each, m, set["cyclecount_lastupdated"])
		}
		recs := f.topicRecords(t, produced+calls, partsOf(demo.MachineExternalID))
		ids := map[string]bool{}
		for _, r := range recs {
			p, err := wire.Decode(r.Value)
			if err != nil || string(r.Key) != demo.MachineExternalID || p.LocationKind != "machine" || p.LocationID != demo.MachineID ||
				p.Quantity != each || p.Quality != wire.QualityGood || len(r.Headers) != 0 {
				t.Errorf("part of an increment: %s %+v %v", r.Key, p, err)
			}
			ids[p.EventID] = true
		}
		produced += calls
		if len(ids) != calls {
			t.Errorf("%d distinct event ids for %d increments", len(ids), calls)
		}
		// Redis loses the counter: it is loaded again from ClickHouse.
		if err := f.rdb.Del(ctx, redisx.NewKeys(f.cfg.RedisPrefix).CycleCount(demo.MachineID)).Err(); err != nil {
			t.Fatal(err)
		}
		_, env = f.action(t, "POST", "/api/1.0/machines/increment_cycle_count/", url.Values{"code": {demo.MachineCode}, "cyclecount": {"1"}})
		if inc := listOne(t, env); fmt.Sprint(inc["cyclecount"]) != strconv.Itoa(832+calls*each+1) || inc["cyclecount_lastupdated"] == nil {
			t.Errorf("after Redis lost the counter: %v", inc)
		}
		produced++
		// A machine that is no location has no parts to record.
		_, _, env = f.send(t, "POST", "/api/1.0/machines/", f.keyA, url.Values{"site": {"1"}, "line": {"1"}, "code": {"PRESS"}}, false)
		if m := data(t, env); m["code"] != "PRESS" {
			t.Errorf("machine without externalid: %v", m)
		}
		status, env := f.action(t, "POST", "/api/1.0/machines/increment_cycle_count/", url.Values{"code": {"PRESS"}, "cyclecount": {"3"}})
		invalidWith(t, status, env, `machine "PRESS" has no externalid`)
		status, env = f.action(t, "POST", "/api/1.0/machines/increment_cycle_count/", url.Values{"code": {demo.MachineCode}, "cyclecount": {"100001"}})
		invalidWith(t, status, env, "cyclecount: 100001 is above 100000")
		status, env = f.action(t, "POST", "/api/1.0/machines/set_cycle_count/", url.Values{"code": {"NOPE"}, "cyclecount": {"3"}})
		invalidWith(t, status, env, `code: no machine "NOPE" in site 1`)
	})

	var openID string
	t.Run("dispatches", func(t *testing.T) {
		reported := time.Now().In(loc).Add(-10 * time.Minute).Truncate(time.Second)
		_, env := f.action(t, "POST", "/api/1.0/dispatches/open/", url.Values{"dispatchtype": {"1"}, "machine": {"1"},
			"description": {"jammed"}, "reported": {reported.Format("2006-01-02 15:04:05")}})
		d := data(t, env)
		openID = idText(t, d)
		if d["status"] != "open" || d["open"] != true || d["downtime"] != true || d["machinecode"] != demo.MachineCode ||
			d["dispatchtypecode"] != demo.DispatchTypeCode || d["reported"] != reported.UTC().Format("2006-01-02 15:04:05.000") ||
			d["dispatchnumber"] != d["id"] || d["line"] != 1.0 {
			t.Errorf("opened: %v", d)
		}
		_, env = f.action(t, "POST", "/api/1.0/dispatches/close/"+openID+"/", nil)
		closed := data(t, env)
		if closed["status"] != "closed" || closed["open"] != false || closed["completed"] == nil {
			t.Errorf("closed: %v", closed)
		}
		_, env = f.action(t, "POST", "/api/1.0/dispatches/close/"+openID+"/", nil)
		if again := data(t, env); again["completed"] != closed["completed"] {
			t.Errorf("closed again: %v, was %v", again, closed)
		}
		status, env := f.action(t, "POST", "/api/1.0/dispatches/close/424242/", nil)
		if status != http.StatusNotFound || env["success"] != false {
			t.Errorf("close of nothing: %d %v", status, env)
		}
		// A dispatch that already happened, by codes, in local time.
		rep := time.Date(2024, 1, 15, 9, 0, 0, 0, loc)
		_, env = f.action(t, "POST", "/api/1.0/dispatches/add/", url.Values{"dispatchtypecode": {demo.DispatchTypeCode},
			"machinecode": {demo.MachineCode}, "reported": {rep.Format("2006-01-02 15:04")},
			"completed": {rep.Add(34 * time.Minute).Format("2006-01-02 15:04")}, "description": {"already closed"}})
		added := data(t, env)
		if added["reported"] != "2024-01-15 08:00:00.000" || added["completed"] != "2024-01-15 08:34:00.000" || added["status"] != "closed" {
			t.Errorf("added: %v", added)
		}
		status, env = f.action(t, "POST", "/api/1.0/dispatches/add/", url.Values{"dispatchtypecode": {demo.DispatchTypeCode},
			"machinecode": {demo.MachineCode}, "reported": {"2024-01-15 09:00"}, "completed": {"2024-01-15 08:00"}})
		invalidWith(t, status, env, "completed: 2024-01-15 07:00:00 is before reported")
		status, env = f.action(t, "POST", "/api/1.0/dispatches/add/", url.Values{"dispatchtypecode": {"NOPE"},
			"machinecode": {demo.MachineCode}, "reported": {"2024-01-15 09:00"}})
		invalidWith(t, status, env, `dispatchtypecode: no dispatchtype "NOPE" in site 1`)
		// A type that is no downtime sends no window.
		_, _, env = f.send(t, "POST", "/api/1.0/dispatchtypes/", f.keyA, url.Values{"site": {"1"}, "code": {"CALL"}}, false)
		call := idText(t, data(t, env))
		_, env = f.action(t, "POST", "/api/1.0/dispatches/open/", url.Values{"dispatchtype": {call}, "machine": {"1"}})
		if d := data(t, env); d["downtime"] != false {
			t.Errorf("dispatch of a type that is no downtime: %v", d)
		}

		// On the topic: the open window, its close, the added window.
		recs := f.topicRecords(t, produced+3, ofKind(wire.KindDispatch))
		var got []wire.Dispatch
		for _, r := range recs {
			d, err := wire.DecodeDispatch(r.Value)
			if err != nil || string(r.Key) != demo.MachineExternalID || len(r.Headers) != 1 ||
				r.Headers[0].Key != wire.KindHeader || string(r.Headers[0].Value) != wire.KindDispatch {
				t.Fatalf("dispatch record %s %v: %v", r.Key, r.Headers, err)
			}
			got = append(got, d)
		}
		produced += 3
		id, _ := strconv.ParseUint(openID, 10, 64)
		start := reported.UnixMilli()
		if got[0].Dispatch != id || got[0].DispatchType != demo.DispatchTypeID || got[0].StartMs != start || got[0].EndMs != 0 ||
			got[0].Removed || got[0].By != demo.Username || got[0].LocationID != demo.MachineID {
			t.Errorf("open window: %+v", got[0])
		}
		if got[1].Dispatch != id || got[1].StartMs != start || got[1].EndMs <= start || got[1].Removed {
			t.Errorf("closed window: %+v", got[1])
		}
		if got[2].StartMs != rep.UnixMilli() || got[2].EndMs != rep.Add(34*time.Minute).UnixMilli() {
			t.Errorf("added window: %+v", got[2])
		}
		list := records(t, f.getJSON(t, "/api/1.0/dispatches/?machinecode="+demo.MachineCode+"&open=T&order_by=-reported&limit=1",
			f.keyA, http.StatusOK))
		if len(list) != 1 || list[0]["dispatchtypecode"] != "CALL" {
			t.Errorf("the open dispatches of the machine: %v", list)
		}
	})

	t.Run("record details", func(t *testing.T) {
		code := "testproduct-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		args := url.Values{"linecode": {demo.LineCode}, "productcode": {code}, "actual": {"42"}, "scrap": {"7"},
			"operator_count": {"3"}, "start": {"2024-01-15 10:00"}, "end": {"2024-01-15 10:05"}}
		_, env := f.action(t, "POST", "/api/1.0/pitchdetails/record_details/", args)
		d := data(t, env)
		if d["actual"] != 42.0 || d["scrap"] != 7.0 || d["operator_count"] != 3.0 || d["productcode"] != code ||
			d["start"] != "2024-01-15 09:00:00.000" || d["end"] != "2024-01-15 09:05:00.000" || d["recorded"] != true ||
			d["pitch_start"] != "2024-01-15 09:00:00.000" {
			t.Errorf("recorded: %v", d)
		}
		products := records(t, f.getJSON(t, "/api/1.0/products/?code="+code, f.keyA, http.StatusOK))
		if len(products) != 1 || fmt.Sprint(products[0]["id"]) != fmt.Sprint(d["product"]) {
			t.Fatalf("the product was not created: %v", products)
		}
		// The same call again: nothing new.
		_, env = f.action(t, "POST", "/api/1.0/pitchdetails/record_details/", args)
		if again := data(t, env); again["id"] != d["id"] {
			t.Errorf("a repeat made another detail: %v", again)
		}
		// Other counts for the same range are refused.
		other := url.Values{}
		for k, v := range args {
			other[k] = v
		}
		other.Set("actual", "43")
		status, env := f.action(t, "POST", "/api/1.0/pitchdetails/record_details/", other)
		invalidWith(t, status, env, "is already recorded")
		status, env = f.action(t, "POST", "/api/1.0/pitchdetails/record_details/", url.Values{"linecode": {demo.LineCode}})
		invalidWith(t, status, env, "productcode: required")

		// Exactly two part events, at end, with ids that follow from the detail.
		recs := f.topicRecords(t, produced+2, partsOf(demo.LineExternalID))
		if len(recs) != 2 {
			t.Fatalf("%d part events of the line, want 2", len(recs))
		}
		id := idText(t, d)
		for i, r := range recs {
			p, err := wire.Decode(r.Value)
			quality, qty := wire.QualityGood, uint32(42)
			if i == 1 {
				quality, qty = wire.QualityScrap, 7
			}
			wantID := uuid.NewSHA1(pitchDetailEvents, []byte(id+"/"+quality)).String()
			end := time.Date(2024, 1, 15, 10, 5, 0, 0, loc)
			if err != nil || p.Quality != quality || p.Quantity != qty || p.Product != code || p.EventID != wantID ||
				p.RecordedAtMs != end.UnixMilli() || p.CycleTime != 300 || !p.HasCycleTime || string(r.Key) != demo.LineExternalID {
				t.Errorf("event %d: %+v %v", i, p, err)
			}
			if len(r.Headers) != 1 || r.Headers[0].Key != wire.ProductHeader || string(r.Headers[0].Value) != fmt.Sprint(d["product"]) {
				t.Errorf("event %d: headers %v, want the product %v", i, r.Headers, d["product"])
			}
		}
		produced += 2
		if extra := f.countRecords(t, ctx); extra != produced {
			t.Errorf("%d records on the topic, want %d", extra, produced)
		}

		_, env = f.action(t, "GET", "/api/1.0/pitchdetails/record_details/", url.Values{"linecode": {demo.LineCode},
			"start": {"2024-01-15 00:00:00"}, "end": {"2024-01-16 00:00:00"}, "show_products": {"True"}})
		sum := data(t, env)
		if sum["actual"] != 42.0 || sum["scrap"] != 7.0 || sum["detail_count"] != 1.0 || sum["linecode"] != demo.LineCode {
			t.Errorf("details of the day: %v", sum)
		}
		if ps, _ := sum["products"].([]any); len(ps) != 1 || ps[0].(map[string]any)["productcode"] != code {
			t.Errorf("products of the day: %v", sum["products"])
		}
		_, env = f.action(t, "GET", "/api/1.0/pitchdetails/record_details/", url.Values{"linecode": {demo.LineCode},
			"start": {"2024-01-16 00:00"}, "end": {"2024-01-17 00:00"}})
		if empty := data(t, env); empty["actual"] != 0.0 || len(empty["details"].([]any)) != 0 || empty["products"] != nil {
			t.Errorf("a day without details: %v", empty)
		}
	})

	t.Run("Kafka refuses", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		dead := ln.Addr().String()
		ln.Close()
		cl, err := kgo.NewClient(kgo.SeedBrokers(dead), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(0))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		cfg := f.cfg
		cfg.QueryTimeout = 2 * time.Second
		g := &fixture{srv: serve(t, f.store, f.rdb, cl, cfg), keyA: f.keyA}
		before := records(t, f.getJSON(t, "/api/1.0/machines/?code="+demo.MachineCode, f.keyA, http.StatusOK))[0]["cyclecount"]
		status, env := g.action(t, "POST", "/api/1.0/machines/increment_cycle_count/", url.Values{"code": {demo.MachineCode}, "cyclecount": {"9"}})
		if status != http.StatusServiceUnavailable || !strings.Contains(env["error"].(string), "Nothing was changed") {
			t.Errorf("increment without Kafka: %d %v", status, env)
		}
		after := records(t, f.getJSON(t, "/api/1.0/machines/?code="+demo.MachineCode, f.keyA, http.StatusOK))[0]["cyclecount"]
		if fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("the counter moved from %v to %v without its parts", before, after)
		}
		n := len(records(t, f.getJSON(t, "/api/1.0/dispatches/?limit=100", f.keyA, http.StatusOK)))
		status, _ = g.action(t, "POST", "/api/1.0/dispatches/open/", url.Values{"dispatchtype": {"1"}, "machine": {"1"}})
		if status != http.StatusServiceUnavailable {
			t.Errorf("open without Kafka: %d", status)
		}
		if m := len(records(t, f.getJSON(t, "/api/1.0/dispatches/?limit=100", f.keyA, http.StatusOK))); m != n {
			t.Errorf("a dispatch whose window Kafka refused was kept: %d dispatches, were %d", m, n)
		}
		status, _ = g.action(t, "POST", "/api/1.0/dispatches/close/"+openID+"/", nil)
		if status != http.StatusOK {
			t.Errorf("close of a closed dispatch needs no Kafka: %d", status)
		}
	})

	// The stored rows: what the calls wrote, nothing else.
	found, err := f.store.FindRows(ctx, "pitchdetails", chstore.Row{"linecode": demo.LineCode}, 10)
	if err != nil || len(found) != 1 {
		t.Errorf("pitch details stored: %d %v", len(found), err)
	}
}

// countRecords counts the records on the fixture's topic.
func (f *fixture) countRecords(t *testing.T, ctx context.Context) int {
	t.Helper()
	cl := newKafkaClient(t, kgo.ConsumeTopics(f.topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	n := 0
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		fs := cl.PollFetches(pctx)
		cancel()
		got := 0
		fs.EachRecord(func(*kgo.Record) { got++ })
		if got == 0 {
			return n
		}
		n += got
	}
}
