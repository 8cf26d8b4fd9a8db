package chstore_test

import (
	"context"
	"io"
	"math"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/google/uuid"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/l2l"
	"github.com/takt/takt/internal/testenv"
)

// statements is a chstore.Recorder that keeps what it is told.
type statements struct {
	mu  sync.Mutex
	all []chstore.Statement
}

func (s *statements) Record(_ context.Context, st chstore.Statement) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.all = append(s.all, st)
}

func (s *statements) take() []chstore.Statement {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.all
	s.all = nil
	return out
}

// recordingStore opens a migrated scratch database whose statements rec
// records, and returns the server's time zone (what SQL needs).
func recordingStore(t *testing.T, rec chstore.Recorder) (*chstore.Store, string) {
	t.Helper()
	cfg := testenv.ClickHouseConfig(t)
	cfg.Recorder = rec
	ctx := context.Background()
	s, err := chstore.Open(ctx, cfg, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(testenv.Stack(t).ClickHouseHTTP + "/?query=" + url.QueryEscape("SELECT timezone()"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	tz, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("server time zone: %s %v", tz, err)
	}
	return s, strings.TrimSpace(string(tz))
}

// TestRecorderSeesEveryStatement: DDL, reads with their settings, row and
// column batches with their values and types, and failures are recorded;
// a recorded batch written as INSERT ... VALUES stores the same rows.
func TestRecorderSeesEveryStatement(t *testing.T) {
	rec := &statements{}
	s, tz := recordingStore(t, rec)
	ctx := context.Background()
	var kinds = map[chstore.StatementKind]int{}
	for _, st := range rec.take() {
		kinds[st.Kind]++
		if st.Err != nil {
			t.Errorf("migration statement failed: %v", st.Err)
		}
	}
	ms, _ := chstore.Migrations()
	// At least: Go steps insert too (their lock's beats, their records).
	if kinds[chstore.StatementExec] < len(ms) || kinds[chstore.StatementInsert] < len(ms) || kinds[chstore.StatementQuery] == 0 {
		t.Fatalf("migrating recorded %v, want an exec per statement and an insert per migration", kinds)
	}

	if err := s.PutSite(ctx, chstore.Site{ID: 7, Description: "it's", Timezone: "Europe/Berlin"}); err != nil {
		t.Fatal(err)
	}
	got := rec.take()
	if len(got) != 1 || got[0].Kind != chstore.StatementInsert || len(got[0].Rows) != 1 || got[0].Rows[0][1] != "it's" {
		t.Fatalf("PutSite recorded %+v", got)
	}

	rows := []chstore.PartRow{samplePartRow(2, 5), samplePartRow(2, 6)}
	rows[0].HasCycleTime, rows[0].CycleTime = true, 1.5
	rows[1].LocationKind, rows[1].Quality, rows[1].Reason, rows[1].RecordedDefaulted = "machine", "scrap", "x'y", true
	var b chstore.PartsBlock
	for i := range rows {
		if err := b.Append(&rows[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.InsertParts(ctx, &b); err != nil {
		t.Fatal(err)
	}
	got = rec.take()
	if len(got) != 1 {
		t.Fatalf("InsertParts recorded %+v", got)
	}
	_, list, _ := strings.Cut(got[0].Query, "(")
	cols := strings.Count(list, ",") + 1
	if len(got[0].Rows) != 2 || len(got[0].Rows[0]) != cols || len(got[0].Types) != cols || !strings.HasPrefix(got[0].Types[3], "Enum8(") {
		t.Fatalf("InsertParts of %d columns recorded %+v", cols, got[0])
	}
	insert, err := got[0].SQL(tz)
	if err != nil {
		t.Fatal(err)
	}
	want, err := s.PartsOfTopic(ctx, "t")
	if err != nil || len(want) != 2 {
		t.Fatalf("parts: %v %v", want, err)
	}
	if err := s.Exec(ctx, "TRUNCATE TABLE parts"); err != nil {
		t.Fatal(err)
	}
	// Over HTTP: an INSERT ... VALUES sent as a plain query hangs on
	// 18.16's native protocol.
	resp, err := http.Post(testenv.Stack(t).ClickHouseHTTP+"/?database="+s.Database(), "text/plain", strings.NewReader(insert))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("recorded insert as text: %s\n%s", body, insert)
	}
	again, err := s.PartsOfTopic(ctx, "t")
	if err != nil || len(again) != 2 || again[0] != want[0] || again[1] != want[1] {
		t.Fatalf("rows inserted as text\n got %+v\nwant %+v (%v)", again, want, err)
	}
	rec.take()

	pitches, _ := chstore.RecordAreaByName("pitches")
	q, err := l2l.Parse(url.Values{"site": {"1"}}, pitches.Schema())
	if err != nil {
		t.Fatal(err)
	}
	qctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	page, err := s.Records(qctx, pitches, q, []uint64{1})
	if err != nil {
		t.Fatal(err)
	}
	got = rec.take()
	// A page with rows also reads its sites' zones and shifts (for
	// shift_start_date).
	wantReads := 1
	if len(page.Rows) > 0 {
		wantReads = 3
	}
	if len(got) != wantReads || got[0].Kind != chstore.StatementQuery || got[0].Settings["enable_optimize_predicate_expression"] != 1 ||
		got[0].Settings["max_execution_time"] == nil || len(got[0].Args) == 0 {
		t.Fatalf("pitches read recorded %+v", got)
	}

	if err := s.Exec(ctx, "SELECT no_such_function()"); err == nil {
		t.Fatal("a bad statement succeeded")
	}
	if got = rec.take(); len(got) != 1 || got[0].Err == nil {
		t.Fatalf("failed statement recorded %+v", got)
	}
}

// TestStatementLiterals: each kind of value the Store binds, written as a
// literal by Statement.SQL, has the type and value ClickHouse gives the
// same value bound by clickhouse-go.
func TestStatementLiterals(t *testing.T) {
	s, tz := recordingStore(t, &statements{})
	ctx := context.Background()
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	f := 2.5
	values := []any{
		"plain", "it's \\ \x00 ?", "", int(-3), int8(-8), int32(1 << 30), int64(math.MinInt64), uint8(255), uint32(1 << 31),
		uint64(math.MaxUint64), true, false, 1.0, 0.1, -1e-300, &f, (*float64)(nil),
		time.Unix(1_700_000_000, 0), time.Unix(0, 0), time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC),
		time.Date(2024, 3, 31, 2, 30, 0, 0, berlin), uuid.MustParse("6f1c0e2a-3d4b-4c5d-8e9f-0a1b2c3d4e5f"),
		[]uint64{1, 2}, []string{"a", "b'c"}, []string{}, []int64{-1},
	}
	for _, v := range values {
		lit, err := chstore.Statement{Kind: chstore.StatementQuery, Query: "?", Args: []any{v}}.SQL(tz)
		if err != nil {
			t.Errorf("%#v: %v", v, err)
			continue
		}
		n, err := s.QueryUint64(ctx, "SELECT toUInt64((toTypeName(?), toString(?)) = (toTypeName("+lit+"), toString("+lit+")))", v, v)
		if err != nil || n != 1 {
			t.Errorf("%#v written %s: equal %d (%v)", v, lit, n, err)
		}
	}
	set := clickhouse.GroupSet{Value: []any{uint64(3), int32(4)}}
	lit, err := chstore.Statement{Kind: chstore.StatementQuery, Query: "SELECT toUInt64(4 IN ? AND 5 NOT IN ?)", Args: []any{set, set}}.SQL(tz)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := s.QueryUint64(ctx, lit); err != nil || n != 1 {
		t.Errorf("group set written %s: %d %v", lit, n, err)
	}
}
