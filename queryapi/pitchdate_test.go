package queryapi

import (
	"context"
	"encoding/xml"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/takt/takt/internal/auth"
	"github.com/takt/takt/internal/chstore"
)

// TestPitchShiftStartDate checks the shift_start_date of pitches: the local
// date on which the pitch's shift started, by the line's own shifts or else
// the site's, in the site's zone; the pitch's own local date between shifts
// and at a site without shifts.
func TestPitchShiftStartDate(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs ClickHouse, Redis and the broker")
	}
	f := newFixture(t)
	store := f.store
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	audit := chstore.Audit{CreatedBy: "test", LastUpdatedBy: "test"}
	key, pref, hash := auth.NewKey()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// Site 2 (America/Chicago, the fixture's) works a night shift 22:00–06:00
	// every day; line 22 has its own day shift 06:00–14:00 instead, and
	// machine 61 is on line 22. Site 5 (Asia/Tokyo) has no shifts.
	must(store.PutSite(ctx, chstore.Site{ID: 5, Description: "Tokyo", Timezone: "Asia/Tokyo", Audit: audit}))
	must(store.PutUser(ctx, chstore.User{ID: 7, Username: "planner", Sites: []uint64{2, 5}, Active: true, Audit: audit}))
	must(store.PutAPIKey(ctx, chstore.APIKey{ID: 7, User: 7, Prefix: pref, Hash: hash, Scopes: []string{"read"}, Active: true, Audit: audit}))
	must(store.PutLine(ctx, chstore.Line{ID: 21, Site: 2, Area: 2, Code: "L21", ExternalID: "ext_21", Audit: audit}))
	must(store.PutLine(ctx, chstore.Line{ID: 22, Site: 2, Area: 2, Code: "L22", ExternalID: "ext_22", Audit: audit}))
	must(store.PutMachine(ctx, chstore.Machine{ID: 61, Site: 2, Line: 22, Code: "M61", ExternalID: "ext_m61", Audit: audit}))
	must(store.PutLine(ctx, chstore.Line{ID: 51, Site: 5, Area: 5, Code: "L51", ExternalID: "ext_51", Audit: audit}))
	must(store.WriteRow(ctx, "shifts", 201, chstore.Row{"site": uint64(2), "line": uint64(0), "code": "NIGHT",
		"description": "", "start_time": "22:00", "end_time": "06:00", "days": ""}, audit))
	must(store.WriteRow(ctx, "shifts", 202, chstore.Row{"site": uint64(2), "line": uint64(22), "code": "DAY",
		"description": "", "start_time": "06:00", "end_time": "14:00", "days": ""}, audit))

	// One part at the start of each pitch (UTC hour); Chicago is UTC-5 in
	// June, Tokyo UTC+9.
	type pitch struct {
		site     uint64
		kind     string
		loc      uint64
		utc      string // the pitch's start
		wantDate string
		why      string
	}
	pitches := []pitch{
		{2, "line", 21, "2024-06-06T02:00:00Z", "2024-06-05", "21:00 local: before the night shift, its own date"},
		{2, "line", 21, "2024-06-06T04:00:00Z", "2024-06-05", "23:00 local: night shift, before midnight"},
		{2, "line", 21, "2024-06-06T07:00:00Z", "2024-06-05", "02:00 local: the same night shift, after midnight"},
		{2, "line", 21, "2024-06-06T11:00:00Z", "2024-06-06", "06:00 local: the night shift has ended"},
		{2, "line", 22, "2024-06-06T04:00:00Z", "2024-06-05", "23:00 local: the line's own shifts leave it unscheduled"},
		{2, "line", 22, "2024-06-06T07:00:00Z", "2024-06-06", "02:00 local: unscheduled by the line's shifts"},
		{2, "line", 22, "2024-06-06T12:00:00Z", "2024-06-06", "07:00 local: the line's day shift"},
		{2, "machine", 61, "2024-06-06T07:00:00Z", "2024-06-06", "02:00 local on a machine: its line's shifts"},
		{5, "line", 51, "2024-06-05T20:00:00Z", "2024-06-06", "05:00 local at a site without shifts: the local date"},
	}
	var b chstore.PartsBlock
	for i, p := range pitches {
		at, err := time.Parse(time.RFC3339, p.utc)
		must(err)
		ext := fmt.Sprintf("ext_%d", p.loc)
		if p.kind == "machine" {
			ext = fmt.Sprintf("ext_m%d", p.loc)
		}
		r := chstore.PartRow{ID: chstore.PartID(0, int64(10_000+i)), EventID: uuid.Must(uuid.NewV7()), Site: p.site,
			LocationKind: p.kind, LocationID: p.loc, ExternalID: ext, ProductResolution: "none", Quantity: 1, Quality: "good",
			RecordedMs: at.Add(time.Minute).UnixMilli(), ReceivedMs: at.Add(time.Minute).UnixMilli(), Topic: "t", Offset: int64(10_000 + i)}
		must(b.Append(&r))
	}
	must(store.InsertParts(ctx, &b))

	type got struct{ start, date string }
	byKey := func(rows []map[string]any) map[string]got {
		out := map[string]got{}
		for _, r := range rows {
			kind, _ := r["location_kind"].(string)
			out[fmt.Sprintf("%s %v %v", kind, r["location"], r["pitch_start"])] = got{fmt.Sprint(r["pitch_start_local"]), fmt.Sprint(r["shift_start_date"])}
		}
		return out
	}
	keyOf := func(p pitch) string {
		at, _ := time.Parse(time.RFC3339, p.utc)
		return fmt.Sprintf("%s %d %s", p.kind, p.loc, at.Format("2006-01-02 15:04:05.000"))
	}
	const window = "pitch_start__gte=2024-06-05T00:00:00Z&pitch_start__lt=2024-06-07T00:00:00Z"
	rows := records(t, f.getJSON(t, "/api/1.0/pitches/?"+window+"&limit=100", key, http.StatusOK))
	all := byKey(rows)
	if len(rows) != len(pitches) {
		t.Errorf("%d pitches, want %d: %v", len(rows), len(pitches), all)
	}
	for _, p := range pitches {
		g, ok := all[keyOf(p)]
		if !ok {
			t.Errorf("no pitch %s", keyOf(p))
			continue
		}
		if g.date != p.wantDate {
			t.Errorf("%s (local %s): shift_start_date %s, want %s: %s", keyOf(p), g.start, g.date, p.wantDate, p.why)
		}
	}

	t.Run("fields and one record", func(t *testing.T) {
		rows := records(t, f.getJSON(t, "/api/1.0/pitches/?"+window+"&line=21&machine__isnull=True&order_by=-pitch_start&fields=shift_start_date,id", key, http.StatusOK))
		want := []string{"2024-06-06", "2024-06-05", "2024-06-05", "2024-06-05"}
		if len(rows) != len(want) {
			t.Fatalf("%d pitches of line 21, want %d: %v", len(rows), len(want), rows)
		}
		for i, w := range want {
			if len(rows[i]) != 2 || rows[i]["shift_start_date"] != w {
				t.Errorf("pitch %d of line 21: %v, want only id and shift_start_date %s", i, rows[i], w)
			}
		}
		// The night pitch after midnight, read by its id.
		env := f.getJSON(t, fmt.Sprintf("/api/1.0/pitches/%v/", rows[1]["id"]), key, http.StatusOK)
		if !env.Success || !strings.Contains(string(env.Data), `"shift_start_date":"2024-06-05"`) {
			t.Errorf("pitch %v by id: %s %s", rows[1]["id"], env.Data, env.Error)
		}
	})

	t.Run("xml", func(t *testing.T) {
		status, _, body := f.get(t, "/api/1.0/pitches/?"+window+"&line=21&machine__isnull=True&order_by=pitch_start&fields=pitch_start_local,shift_start_date&format=xml", key)
		var doc struct {
			XMLName xml.Name `xml:"response"`
			Success string   `xml:"success"`
			Data    struct {
				Resources []struct {
					Start string `xml:"pitch_start_local"`
					Date  string `xml:"shift_start_date"`
				} `xml:"resource"`
			} `xml:"data"`
		}
		if err := xml.Unmarshal(body, &doc); err != nil || status != http.StatusOK || doc.Success != "True" {
			t.Fatalf("pitches as xml: %d %v %s", status, err, body)
		}
		want := [][2]string{
			{"2024-06-05T21:00:00.000-05:00", "2024-06-05"},
			{"2024-06-05T23:00:00.000-05:00", "2024-06-05"},
			{"2024-06-06T02:00:00.000-05:00", "2024-06-05"},
			{"2024-06-06T06:00:00.000-05:00", "2024-06-06"},
		}
		if len(doc.Data.Resources) != len(want) {
			t.Fatalf("%d pitches as xml, want %d: %s", len(doc.Data.Resources), len(want), body)
		}
		for i, w := range want {
			if r := doc.Data.Resources[i]; r.Start != w[0] || r.Date != w[1] {
				t.Errorf("pitch %d as xml: %+v, want %v", i, r, w)
			}
		}
	})

	t.Run("not filterable or orderable", func(t *testing.T) {
		for _, q := range []string{"shift_start_date=2024-06-05", "shift_start_date__gte=2024-06-05", "order_by=shift_start_date"} {
			env := f.getJSON(t, "/api/1.0/pitches/?"+q, key, http.StatusOK)
			if env.Success || !strings.Contains(env.Error, "shift_start_date of pitches is computed after the read") {
				t.Errorf("%s: success=%v error=%q, want a refusal naming shift_start_date", q, env.Success, env.Error)
			}
		}
	})

	t.Run("a shift change shows at once", func(t *testing.T) {
		// The night shift retired (deleted): line 21's 02:00 pitch is then
		// in no shift and has its own local date.
		gone := chstore.Audit{CreatedBy: "test", LastUpdatedBy: "test", Deleted: true, Version: uint64(time.Now().UnixNano())}
		must(store.WriteRow(ctx, "shifts", 201, chstore.Row{"site": uint64(2), "line": uint64(0), "code": "NIGHT",
			"description": "", "start_time": "22:00", "end_time": "06:00", "days": ""}, gone))
		rows := records(t, f.getJSON(t, "/api/1.0/pitches/?line=21&pitch_start=2024-06-06T07:00:00Z&machine__isnull=True", key, http.StatusOK))
		if len(rows) != 1 || rows[0]["shift_start_date"] != "2024-06-06" {
			t.Errorf("after the night shift's deletion: %v, want shift_start_date 2024-06-06", rows)
		}
	})
}
