package queryapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/demo"
	"github.com/takt/takt/internal/testenv"
	"github.com/takt/takt/internal/wire"
)

// fakePeriods serves periods and reasons from maps.
type fakePeriods struct {
	periods map[uint64]chstore.PeriodRow
	reasons map[uint64]chstore.Row
	err     error
}

func (f *fakePeriods) PeriodByID(_ context.Context, id uint64) (chstore.PeriodRow, error) {
	if f.err != nil {
		return chstore.PeriodRow{}, f.err
	}
	p, ok := f.periods[id]
	if !ok {
		return chstore.PeriodRow{}, chstore.ErrNotFound
	}
	return p, nil
}

func (f *fakePeriods) ReadRow(_ context.Context, table string, id uint64) (chstore.Row, chstore.Audit, error) {
	r, ok := f.reasons[id]
	if table != "reasons" || !ok {
		return nil, chstore.Audit{}, chstore.ErrNotFound
	}
	return r, chstore.Audit{}, nil
}

// fakeProducer records what is produced and answers each record with err,
// or, with hold, not at all (a request in flight that never returns), or,
// with failOnCancel, with the context's error once it ends (a record the
// client could safely fail).
type fakeProducer struct {
	mu           sync.Mutex
	recs         []*kgo.Record
	err          error
	hold         bool
	failOnCancel bool
}

func (p *fakeProducer) Produce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error)) {
	p.mu.Lock()
	p.recs = append(p.recs, r)
	p.mu.Unlock()
	switch {
	case p.hold:
	case p.failOnCancel:
		go func() {
			<-ctx.Done()
			promise(r, ctx.Err())
		}()
	default:
		promise(r, p.err)
	}
}

func (p *fakeProducer) Ping(context.Context) error { return nil }

func (p *fakeProducer) records() []*kgo.Record {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*kgo.Record(nil), p.recs...)
}

var assignNow = time.Date(2024, 1, 15, 12, 0, 0, 0, time.UTC)

func testPeriods() *fakePeriods {
	down := chstore.PeriodRow{ID: 10, Site: 1, Location: 7, LocationKind: "line", ExternalID: "line_7", State: "down",
		Start: 1705305600000, End: 1705305900000, FirstOfStop: 1, Version: 3}
	open := down
	open.ID, open.End, open.Open = 11, 0, true
	planned := down
	planned.ID, planned.State, planned.Reason = 12, "planned_down", 21
	running := down
	running.ID, running.State = 13, "running"
	unscheduled := down
	unscheduled.ID, unscheduled.State = 14, "unscheduled"
	other := down
	other.ID, other.Site = 15, 2
	machine := down
	machine.ID, machine.LocationKind, machine.Location, machine.ExternalID = 16, "machine", 8, "weld_1"
	dispatched := machine
	dispatched.ID, dispatched.Dispatch, dispatched.DispatchType = 17, 700, 70
	reason := func(site uint64, kind string, planned bool) chstore.Row {
		return chstore.Row{"site": site, "code": "R", "description": "", "kind": kind, "planned": planned}
	}
	return &fakePeriods{
		periods: map[uint64]chstore.PeriodRow{10: down, 11: open, 12: planned, 13: running, 14: unscheduled, 15: other, 16: machine,
			17: dispatched},
		reasons: map[uint64]chstore.Row{
			20: reason(1, "downtime", false), 21: reason(1, "downtime", true),
			22: reason(1, "scrap", false), 23: reason(2, "downtime", false),
		},
	}
}

// TestAssignPrepare: every rule of a reason assignment, and the message it
// becomes.
func TestAssignPrepare(t *testing.T) {
	a := &assigner{store: testPeriods(), now: func() time.Time { return assignNow }}
	tests := []struct {
		name     string
		id       uint64
		args     url.Values
		sites    []uint64
		notFound bool
		problems []string // substrings, one per problem
		want     wire.Assignment
	}{
		{name: "unplanned reason", id: 10, args: url.Values{"reason": {"20"}},
			want: wire.Assignment{Period: 10, State: "down", Reason: 20, EndMs: 1705305900000}},
		{name: "planned reason", id: 10, args: url.Values{"reason": {" 21 "}},
			want: wire.Assignment{Period: 10, State: "down", Reason: 21, Planned: true, EndMs: 1705305900000}},
		{name: "open period", id: 11, args: url.Values{"reason": {"20"}},
			want: wire.Assignment{Period: 11, State: "down", Reason: 20}},
		{name: "remove with empty", id: 12, args: url.Values{"reason": {""}},
			want: wire.Assignment{Period: 12, State: "planned_down", EndMs: 1705305900000}},
		{name: "remove with 0", id: 12, args: url.Values{"reason": {"0"}},
			want: wire.Assignment{Period: 12, State: "planned_down", EndMs: 1705305900000}},
		{name: "machine", id: 16, args: url.Values{"reason": {"20"}},
			want: wire.Assignment{Control: wire.Control{LocationKind: "machine", LocationID: 8, ExternalID: "weld_1"},
				Period: 16, State: "down", Reason: 20, EndMs: 1705305900000}},
		{name: "control arguments are not fields", id: 10,
			args: url.Values{"reason": {"20"}, "auth": {"k"}, "id": {"10"}, "format": {"json"}, "realuser": {"jo"}},
			want: wire.Assignment{Period: 10, State: "down", Reason: 20, EndMs: 1705305900000}},
		{name: "last value wins", id: 10, args: url.Values{"reason": {"x", "20"}},
			want: wire.Assignment{Period: 10, State: "down", Reason: 20, EndMs: 1705305900000}},

		{name: "missing period", id: 99, args: url.Values{"reason": {"20"}}, notFound: true},
		{name: "period of another site", id: 15, args: url.Values{"reason": {"23"}}, notFound: true},
		{name: "caller without sites", id: 10, args: url.Values{"reason": {"20"}}, sites: []uint64{}, notFound: true},

		{name: "running", id: 13, args: url.Values{"reason": {"20"}}, problems: []string{"state: period 13 is running"}},
		{name: "a dispatch's down time", id: 17, args: url.Values{"reason": {"20"}},
			problems: []string{"period 17 is the down time of dispatch 700: its dispatch type 70 is its reason"}},
		{name: "unscheduled", id: 14, args: url.Values{"reason": {"20"}}, problems: []string{"state: period 14 is unscheduled"}},
		{name: "removal from a running period", id: 13, args: url.Values{"reason": {""}}, problems: []string{"only a down or planned_down"}},
		{name: "no reason", id: 10, args: url.Values{}, problems: []string{"reason: required"}},
		{name: "not a number", id: 10, args: url.Values{"reason": {"R1"}}, problems: []string{`reason: "R1" is not a whole number`}},
		{name: "negative", id: 10, args: url.Values{"reason": {"-3"}}, problems: []string{`reason: "-3" is not a whole number`}},
		{name: "unknown reason", id: 10, args: url.Values{"reason": {"99"}}, problems: []string{"reason: no reason 99 in site 1"}},
		{name: "reason of another site", id: 10, args: url.Values{"reason": {"23"}}, problems: []string{"reason: no reason 23 in site 1"}},
		{name: "scrap reason", id: 10, args: url.Values{"reason": {"22"}}, problems: []string{"reason: 22 is a scrap reason"}},
		{name: "other fields", id: 10, args: url.Values{"reason": {"20"}, "state": {"down"}, "end": {""}, "custom__x": {"1"}},
			problems: []string{"custom__x: cannot be written", "end: cannot be written", "state: cannot be written"}},
		{name: "every problem at once", id: 13, args: url.Values{"reason": {"22"}, "duration": {"5"}},
			problems: []string{"duration: cannot be written", "state: period 13", "reason: 22 is a scrap reason"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sites := tt.sites
			if sites == nil {
				sites = []uint64{1}
			}
			as, problems, err := a.prepare(context.Background(), tt.id, sites, "alice", tt.args)
			if tt.notFound {
				if !errors.Is(err, errNotFound) {
					t.Fatalf("got %v %v %v, want errNotFound", as, problems, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(problems) != len(tt.problems) {
				t.Fatalf("problems %q, want %d like %q", problems, len(tt.problems), tt.problems)
			}
			for i, want := range tt.problems {
				if !strings.Contains(problems[i], want) {
					t.Errorf("problem %d %q lacks %q", i, problems[i], want)
				}
			}
			if len(tt.problems) > 0 {
				if as != nil {
					t.Errorf("assignment %+v despite problems", as)
				}
				return
			}
			want := tt.want
			want.Site, want.StartMs, want.AssignedAtMs, want.By = 1, 1705305600000, assignNow.UnixMilli(), "alice"
			// The period as read: the processor needs its mark and version.
			want.FirstOfStop, want.Version = 1, 3
			if want.LocationKind == "" {
				want.LocationKind, want.LocationID, want.ExternalID = "line", 7, "line_7"
			}
			id, err := uuid.Parse(as.ID)
			if err != nil || id.Version() != 7 {
				t.Errorf("id %q: %v, version %d", as.ID, err, id.Version())
			}
			want.ID = as.ID
			if *as != want {
				t.Errorf("assignment\n got %+v\nwant %+v", *as, want)
			}
			if _, err := wire.EncodeAssignment(as); err != nil {
				t.Errorf("encode: %v", err)
			}
		})
	}

	failing := &assigner{store: &fakePeriods{err: errors.New("clickhouse down")}, now: time.Now}
	if _, _, err := failing.prepare(context.Background(), 10, []uint64{1}, "alice", url.Values{"reason": {"20"}}); err == nil || errors.Is(err, errNotFound) {
		t.Errorf("store failure: %v", err)
	}
}

// TestAssignSend: the record on the topic, and the three outcomes of
// waiting for Kafka.
func TestAssignSend(t *testing.T) {
	sample := func() *wire.Assignment {
		return &wire.Assignment{Control: wire.Control{ID: "0190f2a4-5b6c-7d8e-9f00-112233445577", Site: 1, LocationKind: "line", LocationID: 7,
			ExternalID: "line_7"},
			Period: 10, StartMs: 1705305600000, EndMs: 1705305900000, State: "down", Reason: 21, Planned: true,
			AssignedAtMs: assignNow.UnixMilli(), By: "alice"}
	}

	t.Run("acknowledged", func(t *testing.T) {
		p := &fakeProducer{}
		a := &assigner{prod: p, topic: "parts"}
		if err := a.send(context.Background(), sample()); err != nil {
			t.Fatal(err)
		}
		recs := p.records()
		if len(recs) != 1 {
			t.Fatalf("%d records", len(recs))
		}
		checkAssignmentRecord(t, recs[0], "parts", *sample())
	})

	t.Run("refused", func(t *testing.T) {
		a := &assigner{prod: &fakeProducer{err: errors.New("NOT_ENOUGH_REPLICAS")}, topic: "parts"}
		if err := a.send(context.Background(), sample()); !errors.Is(err, errNotProduced) {
			t.Errorf("got %v, want errNotProduced", err)
		}
	})

	t.Run("failed when time is up", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), assignGrace+50*time.Millisecond)
		defer cancel()
		a := &assigner{prod: &fakeProducer{failOnCancel: true}, topic: "parts"}
		if err := a.send(ctx, sample()); !errors.Is(err, errNotProduced) {
			t.Errorf("got %v, want errNotProduced", err)
		}
	})

	t.Run("in flight when time is up", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		a := &assigner{prod: &fakeProducer{hold: true}, topic: "parts"}
		if err := a.send(ctx, sample()); !errors.Is(err, errUnconfirmed) {
			t.Errorf("got %v, want errUnconfirmed", err)
		}
	})

	t.Run("invalid message is not produced", func(t *testing.T) {
		p := &fakeProducer{}
		as := sample()
		as.State = "running"
		if err := (&assigner{prod: p, topic: "parts"}).send(context.Background(), as); !errors.Is(err, wire.ErrInvalid) {
			t.Errorf("got %v, want wire.ErrInvalid", err)
		}
		if n := len(p.records()); n != 0 {
			t.Errorf("%d records produced", n)
		}
	})
}

// checkAssignmentRecord checks key, header and body of an assignment
// record.
func checkAssignmentRecord(t *testing.T, r *kgo.Record, topic string, want wire.Assignment) {
	t.Helper()
	if r.Topic != topic || string(r.Key) != want.ExternalID {
		t.Errorf("record to %q with key %q, want %q, %q", r.Topic, r.Key, topic, want.ExternalID)
	}
	if len(r.Headers) != 1 || r.Headers[0].Key != wire.KindHeader || string(r.Headers[0].Value) != wire.KindAssignment {
		t.Errorf("headers %v, want %s: %s", r.Headers, wire.KindHeader, wire.KindAssignment)
	}
	got, err := wire.DecodeAssignment(r.Value)
	if err != nil {
		t.Fatalf("value %s: %v", r.Value, err)
	}
	want.V, want.Kind = wire.Version, wire.KindAssignment
	if got != want {
		t.Errorf("assignment\n got %+v\nwant %+v", got, want)
	}
}

// TestReasonAssignment assigns reasons over HTTP on the real stack: the
// answers, the records on the (scratch) parts topic, the refusals, and
// that the API itself never writes a period.
func TestReasonAssignment(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	audit := chstore.Audit{CreatedBy: "test", LastUpdatedBy: "test"}
	for _, err := range []error{
		f.store.PutReason(ctx, chstore.Reason{ID: 50, Site: 1, Code: "BREAK", Kind: "downtime", Audit: audit}),
		f.store.PutReason(ctx, chstore.Reason{ID: 51, Site: 1, Code: "PAUSE", Kind: "downtime", Planned: true, Audit: audit}),
		f.store.PutReason(ctx, chstore.Reason{ID: 52, Site: 2, Code: "BREAKB", Kind: "downtime", Audit: audit}),
		f.store.PutUser(ctx, chstore.User{ID: 60, Username: "ops", Sites: []uint64{1}, Active: true, Audit: audit}),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	base := time.Date(2024, 1, 15, 10, 0, 0, 0, time.UTC).UnixMilli()
	period := func(id uint64, state string, start, end int64) chstore.PeriodRow {
		return chstore.PeriodRow{ID: id, Site: 1, Location: 1, LocationKind: "line", ExternalID: demo.LineExternalID,
			State: state, Start: base + start*1000, End: base + end*1000, Version: 1}
	}
	open := period(1004, "down", 900, 0)
	open.Open, open.End = true, 0
	planned := period(1003, "planned_down", 600, 840)
	planned.Reason = 51
	other := period(1005, "down", 0, 300)
	other.Site, other.Location, other.ExternalID = 2, 2, "line_b"
	gone := period(1007, "down", 1000, 1100)
	goneV2 := gone
	goneV2.Version, goneV2.Deleted = 2, true
	// Period ids are 63-bit hashes (period.PeriodID): above 2^53.
	const bigID = 5802607024114366527
	big := period(bigID, "down", 1500, 1560)
	older := period(1006, "running", 1200, 1300)
	newer := period(1006, "down", 1200, 1320)
	newer.Version = 2
	if err := f.store.InsertPeriods(ctx, []chstore.PeriodRow{
		period(1001, "down", 0, 300), period(1002, "running", 300, 600), planned, open, other, gone, goneV2, older, newer,
		period(1008, "unscheduled", 1320, 1400), big,
	}); err != nil {
		t.Fatal(err)
	}
	put := func(id string, args url.Values) (int, map[string]any) {
		t.Helper()
		status, _, env := f.send(t, "PUT", "/api/1.0/productionperiods/"+id+"/", f.keyA, args, false)
		return status, env
	}
	var want []wire.Assignment // in the order produced

	t.Run("assign", func(t *testing.T) {
		status, env := put("1001", url.Values{"reason": {"50"}})
		d := data(t, env)
		exp := map[string]any{"id": 1001.0, "site": 1.0, "location": 1.0, "location_kind": "line", "externalid": demo.LineExternalID,
			"state": "down", "start": "2024-01-15 10:00:00.000", "start_local": "2024-01-15T11:00:00.000+01:00",
			"end": "2024-01-15 10:05:00.000", "end_local": "2024-01-15T11:05:00.000+01:00", "duration": 300.0, "reason": 50.0,
			"active": true, "dispatch": nil, "dispatchtype": nil, "rule_version": 0.0}
		if status != http.StatusOK || len(d) != len(exp) {
			t.Errorf("status %d, record %v", status, d)
		}
		for k, v := range exp {
			if d[k] != v {
				t.Errorf("%s = %#v, want %#v", k, d[k], v)
			}
		}
		want = append(want,
			wire.Assignment{Control: wire.Control{Site: 1, LocationKind: "line", LocationID: 1,
				ExternalID: demo.LineExternalID},
				Period: 1001, StartMs: base, EndMs: base + 300e3, State: "down", Reason: 50, By: demo.Username})

		// POST with the id in a JSON body; a planned reason on an open period.
		_, _, env = f.send(t, "POST", "/api/1.0/productionperiods/", f.keyA, url.Values{"id": {"1004"}, "reason": {"51"}}, true)
		if d := data(t, env); d["state"] != "planned_down" || d["reason"] != 51.0 || d["end"] != nil || d["id"] != 1004.0 {
			t.Errorf("planned reason on the open period: %v", d)
		}
		want = append(want,
			wire.Assignment{Control: wire.Control{Site: 1, LocationKind: "line", LocationID: 1,
				ExternalID: demo.LineExternalID},
				Period: 1004, StartMs: base + 900e3, State: "down", Reason: 51, Planned: true, By: demo.Username})

		// POST to the record, for a real user: the reason removed.
		_, _, env = f.send(t, "POST", "/api/1.0/productionperiods/1003/?realuser=ops", f.keyA, url.Values{"reason": {""}}, false)
		if d := data(t, env); d["state"] != "down" || d["reason"] != nil {
			t.Errorf("reason removed: %v", d)
		}
		want = append(want,
			wire.Assignment{Control: wire.Control{Site: 1, LocationKind: "line", LocationID: 1,
				ExternalID: demo.LineExternalID},
				Period: 1003, StartMs: base + 600e3, EndMs: base + 840e3, State: "planned_down", By: "ops"})

		// The newest version counts: 1006 was running, is down.
		if _, env := put("1006", url.Values{"reason": {"50"}}); env["success"] != true {
			t.Errorf("newest version of 1006: %v", env)
		}
		want = append(want,
			wire.Assignment{Control: wire.Control{Site: 1, LocationKind: "line", LocationID: 1,
				ExternalID: demo.LineExternalID},
				Period: 1006, StartMs: base + 1200e3, EndMs: base + 1320e3, State: "down", Reason: 50, By: demo.Username})

		// An id above 2^53 keeps every digit, in the answer and the message.
		req, _ := http.NewRequest(http.MethodPut, f.srv.URL+"/api/1.0/productionperiods/"+strconv.FormatUint(bigID, 10)+"/",
			strings.NewReader("reason=50"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("L2LAUTH", f.keyA)
		resp, err := f.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var env2 envelope
		if err := json.NewDecoder(resp.Body).Decode(&env2); err != nil || !env2.Success {
			t.Fatalf("big id: %v %+v", err, env2)
		}
		if idOf(t, recordOf(t, env2)) != bigID {
			t.Errorf("big id answered as %s", env2.Data)
		}
		want = append(want,
			wire.Assignment{Control: wire.Control{Site: 1, LocationKind: "line", LocationID: 1,
				ExternalID: demo.LineExternalID},
				Period: bigID, StartMs: base + 1500e3, EndMs: base + 1560e3, State: "down", Reason: 50, By: demo.Username})
	})

	t.Run("refused", func(t *testing.T) {
		for _, tt := range []struct {
			id   string
			args url.Values
			want []string
		}{
			{"1002", url.Values{"reason": {"50"}}, []string{"state: period 1002 is running"}},
			{"1008", url.Values{"reason": {"50"}}, []string{"state: period 1008 is unscheduled"}},
			{"1001", url.Values{"reason": {"1"}}, []string{"reason: 1 is a scrap reason"}},
			{"1001", url.Values{"reason": {"52"}}, []string{"reason: no reason 52 in site 1"}},
			{"1001", url.Values{"reason": {"777"}}, []string{"reason: no reason 777 in site 1"}},
			{"1001", url.Values{"reason": {"BREAK"}}, []string{`reason: "BREAK" is not a whole number`}},
			{"1001", url.Values{"reason": {"50"}, "state": {"planned_down"}, "lastupdatedby": {"x"}},
				[]string{"lastupdatedby: cannot be written", "state: cannot be written"}},
			{"1001", url.Values{"description": {"x"}}, []string{"description: cannot be written", "reason: required"}},
		} {
			status, env := put(tt.id, tt.args)
			problems, _ := env["errors"].([]any)
			if status != http.StatusOK || env["success"] != false || len(problems) != len(tt.want) {
				t.Errorf("%s %v: %d %v", tt.id, tt.args, status, env)
				continue
			}
			for i, w := range tt.want {
				if p, _ := problems[i].(string); !strings.Contains(p, w) {
					t.Errorf("%s %v: error %q lacks %q", tt.id, tt.args, p, w)
				}
			}
		}
		// A period of another site, a deleted one and a missing one are
		// answered alike.
		s1, e1 := put("1005", url.Values{"reason": {"52"}})
		s2, e2 := put("999999", url.Values{"reason": {"50"}})
		s3, e3 := put("1007", url.Values{"reason": {"50"}})
		if s1 != http.StatusNotFound || s2 != s1 || s3 != s1 ||
			strings.ReplaceAll(e2["error"].(string), "999999", "1005") != e1["error"] ||
			strings.ReplaceAll(e3["error"].(string), "1007", "1005") != e1["error"] {
			t.Errorf("other site %d %v; missing %d %v; deleted %d %v", s1, e1, s2, e2, s3, e3)
		}
		// Periods are the pipeline's: no create, no delete.
		for _, req := range []struct {
			method, path string
			args         url.Values
		}{
			{"POST", "/api/1.0/productionperiods/", url.Values{"reason": {"50"}}},
			{"DELETE", "/api/1.0/productionperiods/1001/", nil},
			{"POST", "/api/1.0/productionperiods/1001/?_action=delete", nil},
			{"POST", "/api/1.0/productionperiods/", url.Values{"id": {"1001"}, "_action": {"delete"}}},
		} {
			status, _, env := f.send(t, req.method, req.path, f.keyA, req.args, false)
			if status != http.StatusMethodNotAllowed || env["success"] != false || !strings.Contains(env["error"].(string), "cannot be created or deleted") {
				t.Errorf("%s %s: %d %v", req.method, req.path, status, env)
			}
		}
		status, _, env := f.send(t, "PUT", "/api/1.0/productionperiods/", f.keyA, url.Values{"reason": {"50"}}, false)
		if status != http.StatusOK || env["success"] != false || !strings.Contains(env["error"].(string), "id: required") {
			t.Errorf("PUT without id: %d %v", status, env)
		}
		// The write scope is needed (key B reads only).
		status, _, _ = f.send(t, "PUT", "/api/1.0/productionperiods/1005/", f.keyB, url.Values{"reason": {"52"}}, false)
		if status != http.StatusForbidden {
			t.Errorf("read-only key: %d", status)
		}
	})

	t.Run("on the topic", func(t *testing.T) {
		recs := consumeRecords(t, f.topic, len(want))
		for i, r := range recs {
			got, err := wire.DecodeAssignment(r.Value)
			if err != nil {
				t.Fatalf("record %d: %v", i, err)
			}
			w := want[i]
			w.ID, w.AssignedAtMs = got.ID, got.AssignedAtMs
			// The period's mark and version as stored (and read).
			p, err := f.store.PeriodByID(ctx, w.Period)
			if err != nil {
				t.Fatal(err)
			}
			w.FirstOfStop, w.Version = p.FirstOfStop, p.Version
			if id, err := uuid.Parse(got.ID); err != nil || id.Version() != 7 || got.AssignedAtMs < base {
				t.Errorf("record %d: id %q, assigned at %d", i, got.ID, got.AssignedAtMs)
			}
			checkAssignmentRecord(t, r, f.topic, w)
		}
		// Nothing else was produced: no refused request left a record.
		adm := kadm.NewClient(newKafkaClient(t))
		ends, err := adm.ListEndOffsets(ctx, f.topic)
		if err != nil {
			t.Fatal(err)
		}
		total := int64(0)
		ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
		if total != int64(len(want)) {
			t.Errorf("%d records on the topic, want %d", total, len(want))
		}
	})

	t.Run("the API does not write periods", func(t *testing.T) {
		for _, id := range []uint64{1001, 1003, 1004} {
			p, err := f.store.PeriodByID(ctx, id)
			if err != nil || p.Version != 1 {
				t.Errorf("period %d: version %d, %v; want the inserted version 1", id, p.Version, err)
			}
		}
		rec := records(t, f.getJSON(t, "/api/1.0/productionperiods/?id=1001", f.keyA, http.StatusOK))
		if len(rec) != 1 || rec[0]["reason"] != nil {
			t.Errorf("period 1001 as read: %v", rec)
		}
	})

	// withKafka is the fixture's API with another Kafka client and a
	// request time limit of 1 s.
	withKafka := func(t *testing.T, kc kafkaClient) *fixture {
		cfg := f.cfg
		cfg.QueryTimeout = time.Second
		return &fixture{srv: serve(t, f.store, f.rdb, kc, cfg)}
	}

	t.Run("kafka does not confirm", func(t *testing.T) {
		g := withKafka(t, &fakeProducer{hold: true})
		status, _, env := g.send(t, "PUT", "/api/1.0/productionperiods/1001/", f.keyA, url.Values{"reason": {"51"}}, false)
		if status != http.StatusGatewayTimeout || env["success"] != false || !strings.Contains(env["error"].(string), "may still be applied") {
			t.Errorf("unconfirmed assignment: %d %v", status, env)
		}
	})

	t.Run("kafka unreachable", func(t *testing.T) {
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
		g := withKafka(t, cl)
		status, _, env := g.send(t, "PUT", "/api/1.0/productionperiods/1001/", f.keyA, url.Values{"reason": {"51"}}, false)
		if status != http.StatusServiceUnavailable || env["success"] != false || !strings.Contains(env["error"].(string), "Kafka") {
			t.Errorf("assignment without Kafka: %d %v", status, env)
		}
		if p, err := f.store.PeriodByID(ctx, 1001); err != nil || p.Version != 1 || p.Reason != 0 {
			t.Errorf("period 1001 after the failure: %+v %v", p, err)
		}
		if status, _, body := g.get(t, "/readyz", ""); status == http.StatusOK {
			t.Errorf("/readyz without Kafka: %d %s", status, body)
		}
	})
}

// recordOf decodes the record of a single-record answer, numbers as
// json.Number.
func recordOf(t *testing.T, env envelope) map[string]any {
	t.Helper()
	var rec map[string]any
	dec := json.NewDecoder(bytes.NewReader(env.Data))
	dec.UseNumber()
	if err := dec.Decode(&rec); err != nil {
		t.Fatalf("data is not a record: %v: %s", err, env.Data)
	}
	return rec
}

// newKafkaClient is a client of the stack's broker, closed when the test
// ends.
func newKafkaClient(t *testing.T, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(testenv.Stack(t).Brokers...)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// consumeRecords reads the first n records of topic (in order within a
// partition), failing the test when they do not come within 20 s.
func consumeRecords(t *testing.T, topic string, n int) []*kgo.Record {
	t.Helper()
	cl := newKafkaClient(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records of %s", len(out), n, topic)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	return out
}
