package queryapi

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/testenv"
)

// statements collects what a Store sent (chstore.Recorder).
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

// TestReadsAreBounded: a read asks for bounded work or is refused with
// success=false: at most 20 filters, times ClickHouse's DateTime holds,
// and every query the query API sends carries ClickHouse's own limits.
func TestReadsAreBounded(t *testing.T) {
	store, rdb, cfg, seeded := seededDB(t)
	rec := &statements{}
	rcfg := cfg.ClickHouse
	rcfg.Recorder = rec
	ctx := context.Background()
	recording, err := chstore.Open(ctx, rcfg, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { recording.Close() })
	_ = store
	f := &fixture{srv: serve(t, recording, rdb, nil, cfg), keyA: seeded.APIKey}

	t.Run("filters", func(t *testing.T) {
		for _, n := range []int{21, 60} {
			args := url.Values{}
			for i := range n {
				args.Set(fmt.Sprintf("custom__p%d", i), "v")
			}
			env := f.getJSON(t, "/api/1.0/machines/?"+args.Encode(), f.keyA, http.StatusOK)
			if env.Success || !strings.Contains(env.Error, "at most 20 filters") {
				t.Errorf("%d filters: %+v", n, env)
			}
		}
		args := url.Values{"site": {"1"}}
		for i := range 19 {
			args.Set(fmt.Sprintf("custom__p%d", i), "v")
		}
		if env := f.getJSON(t, "/api/1.0/machines/?"+args.Encode(), f.keyA, http.StatusOK); !env.Success {
			t.Errorf("20 filters: %+v", env)
		}
	})

	t.Run("windows outside DateTime", func(t *testing.T) {
		for _, path := range []string{
			"/api/1.0/parts/?recorded_at__gte=1960-01-01",
			"/api/1.0/parts/?recorded_at__lt=2106-03-01",
			"/api/1.0/pitches/?pitch_start__gte=1969-12-31T23:00:00Z",
			"/api/1.0/productionperiods/?start__lt=2200-01-01",
			"/api/1.0/oee/?site=1&start=1969-12-31T00:00:00Z&end=1970-01-02T00:00:00Z",
			"/api/1.0/oee/?site=1&start=2106-01-01T00:00:00Z&end=2106-01-02T00:00:00Z",
			"/api/1.0/oee/?site=1&start=2105-12-31T00:00:00Z&end=2106-01-02T00:00:00Z",
		} {
			env := f.getJSON(t, path, f.keyA, http.StatusOK)
			if env.Success || !strings.Contains(env.Error, "outside") {
				t.Errorf("%s: %+v, want success=false naming the range", path, env)
			}
		}
		env := f.getJSON(t, "/api/1.0/oee/?site=1&start=1970-01-01T00:00:00Z&end=1970-01-02T00:00:00Z", f.keyA, http.StatusOK)
		if !env.Success {
			t.Errorf("OEE of 1970-01-01: %+v", env)
		}
	})

	t.Run("every query carries limits", func(t *testing.T) {
		rec.take()
		for _, path := range []string{
			"/api/1.0/parts/?limit=10",
			"/api/1.0/parts/?limit=10&order_by=cycle_time",
			"/api/1.0/parts/1/",
			"/api/1.0/machines/?site=1",
			"/api/1.0/lines/?limit=3",
			"/api/1.0/pitches/?limit=5",
			"/api/1.0/apikeys/",
			"/api/1.0/oee/?site=1&start=2024-01-01T00:00:00Z&end=2024-01-02T00:00:00Z",
		} {
			f.get(t, path, f.keyA)
		}
		f.send(t, "PUT", "/api/1.0/lines/1/", f.keyA, url.Values{"description": {"bounded"}}, false)
		reads := 0
		for _, st := range rec.take() {
			if st.Kind != chstore.StatementQuery {
				continue
			}
			reads++
			if st.Settings["max_execution_time"] == nil || st.Settings["max_memory_usage"] == nil {
				t.Errorf("query without limits %v: %.200s", st.Settings, st.Query)
			}
			if strings.Contains(st.Query, "AS _site") && st.Settings["max_result_rows"] == nil {
				t.Errorf("record read without max_result_rows %v: %.200s", st.Settings, st.Query)
			}
		}
		if reads < 8 {
			t.Errorf("%d queries recorded", reads)
		}
	})

	t.Run("past the time budget", func(t *testing.T) {
		// A budget nothing fits in: every read runs out of time.
		short := cfg
		short.QueryTimeout = time.Nanosecond
		g := &fixture{srv: serve(t, recording, rdb, nil, short), keyA: seeded.APIKey}
		for _, path := range []string{"/api/1.0/parts/?order_by=cycle_time", "/api/1.0/pitches/",
			"/api/1.0/oee/?site=1&start=2024-01-01T00:00:00Z&end=2024-01-02T00:00:00Z"} {
			status, _, body := g.get(t, path, g.keyA)
			if status == http.StatusInternalServerError || !strings.Contains(string(body), `"success":false`) ||
				!strings.Contains(string(body), "time") {
				t.Errorf("%s: %d %s", path, status, body)
			}
		}
	})
}
