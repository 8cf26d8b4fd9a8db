package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/demo"
	"github.com/takt/takt/internal/feed"
	"github.com/takt/takt/internal/wire"
)

// sse is one Server-Sent Event (a heartbeat has no event name).
type sse struct {
	id, event, data string
}

// openStream opens the change feed with args (the key is added) and
// Last-Event-ID last, and sends its events to the returned channel until
// the test ends, close is called or the stream ends.
func (p *pipeline) openStream(t *testing.T, args url.Values, last string) (events <-chan sse, stop func()) {
	t.Helper()
	args.Set("auth", p.apiKey)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.query+"/api/1.0/productionperiods/stream/?"+args.Encode(), nil)
	if last != "" {
		req.Header.Set("Last-Event-ID", last)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || !strings.HasPrefix(ct, "text/event-stream") {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		t.Fatalf("stream: %d %s %s", resp.StatusCode, ct, b)
	}
	ch := make(chan sse, 1024)
	done := make(chan struct{})
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	go func() {
		defer close(done)
		defer close(ch)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		var ev sse
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				ch <- ev
				ev = sse{}
			case strings.HasPrefix(line, "id: "):
				ev.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				ev.event = line[7:]
			case strings.HasPrefix(line, "data: "):
				ev.data = line[6:]
			}
		}
	}()
	return ch, stop
}

// next returns the stream's next event named name (skipping heartbeats).
func next(t *testing.T, ch <-chan sse, name string, limit time.Duration) sse {
	t.Helper()
	deadline := time.After(limit)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("the stream ended while waiting for %q", name)
			}
			if ev.event == name {
				return ev
			}
			if ev.event != "" {
				t.Fatalf("got event %q (%s) while waiting for %q", ev.event, ev.data, name)
			}
		case <-deadline:
			t.Fatalf("no %q event within %s", name, limit)
		}
	}
}

func decodeChange(t *testing.T, ev sse) wire.PeriodChange {
	t.Helper()
	c, err := wire.DecodePeriodChange([]byte(ev.data))
	if err != nil {
		t.Fatalf("event %s: %v: %s", ev.id, err, ev.data)
	}
	return c
}

// TestPeriodChangeFeed: a line's periods reach the live feed as the
// processor decides them: a run opens, the line goes down on the
// processor's clock alone (no part, no poll), a reason relabels the stop,
// the next part closes it. Reconnecting with any event's id resumes with
// exactly the events after it, and a stream filtered to another location
// gets none of them.
func TestPeriodChangeFeed(t *testing.T) {
	const reasonID = 77
	p := startWith(t, options{catalogRefresh: time.Hour, setup: func(ctx context.Context, s *chstore.Store) {
		if err := s.PutReason(ctx, chstore.Reason{ID: reasonID, Site: demo.SiteID, Code: "JAM", Description: "Jam",
			Kind: "downtime", Audit: chstore.Audit{CreatedBy: "test", LastUpdatedBy: "test"}}); err != nil {
			t.Fatal(err)
		}
	}})
	line := strconv.Itoa(demo.LineID)
	live, _ := p.openStream(t, url.Values{"line": {line}}, "")
	ready := next(t, live, "ready", 10*time.Second)
	other, _ := p.openStream(t, url.Values{"externalid": {"no_such_location"}}, "")
	next(t, other, "ready", 10*time.Second)

	put := url.Values{"auth": {p.apiKey}, "stop_threshold": {"2"}}
	req, _ := http.NewRequest(http.MethodPut, fmt.Sprintf("%s/api/1.0/lines/%d/", p.query, demo.LineID), strings.NewReader(put.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `"stop_threshold":2`) {
		t.Fatalf("set stop_threshold: %d %s", resp.StatusCode, b)
	}
	part := `{"part":{"external_id":"` + demo.LineExternalID + `","quantity":1,"quality":"good","product":"` + demo.ProductCode +
		`","cycle_time":0.5}}`
	if code, body := p.post(t, part); code != http.StatusOK {
		t.Fatalf("post: %d %s", code, body)
	}
	var got []sse
	var changes []wire.PeriodChange
	delays := []time.Duration{}
	// until reads events until one matches.
	until := func(what string, ok func(c wire.PeriodChange) bool) wire.PeriodChange {
		t.Helper()
		for {
			ev := next(t, live, "period", 30*time.Second)
			c := decodeChange(t, ev)
			delays = append(delays, time.Since(time.UnixMilli(c.DecidedAtMs)))
			got, changes = append(got, ev), append(changes, c)
			if c.Line != demo.LineID || c.LocationKind != "line" || c.ExternalID != demo.LineExternalID {
				t.Fatalf("the line filter let through %s", ev.data)
			}
			if ok(c) {
				return c
			}
		}
	}
	until("the run opened", func(c wire.PeriodChange) bool {
		return c.State == "running" && c.Open && c.Change == wire.ChangeOpened
	})
	down := until("the line down (a tick, no part)", func(c wire.PeriodChange) bool {
		return c.State == "down" && c.Open && c.Change == wire.ChangeOpened
	})
	form := url.Values{"auth": {p.apiKey}, "reason": {strconv.Itoa(reasonID)}}
	req, _ = http.NewRequest(http.MethodPut, fmt.Sprintf("%s/api/1.0/productionperiods/%d/", p.query, down.Period), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"success":true`) {
		t.Fatalf("assign a reason: %d %s", resp.StatusCode, b)
	}
	until("the stop relabelled", func(c wire.PeriodChange) bool {
		return c.Period == down.Period && c.Change == wire.ChangeRelabelled && c.Reason == reasonID
	})
	if code, body := p.post(t, part); code != http.StatusOK {
		t.Fatalf("post: %d %s", code, body)
	}
	until("the stop closed", func(c wire.PeriodChange) bool {
		return c.Period == down.Period && c.Change == wire.ChangeClosed && !c.Open && c.Reason == reasonID
	})
	t.Logf("from the processor's decision to the client: %v", delays)
	seen := map[string]bool{}
	for _, c := range changes {
		if seen[c.ID] {
			t.Fatalf("period version %s twice on the stream", c.ID)
		}
		seen[c.ID] = true
	}

	// Resuming at the ready event or after any period event gives exactly
	// the events after it (the last one: nothing until a heartbeat moves
	// past the end).
	lastCursor, err := feed.ParseCursor(got[len(got)-1].id)
	if err != nil {
		t.Fatal(err)
	}
	for i, from := range append([]string{ready.id}, got[0].id, got[len(got)/2].id) {
		skip := map[int]int{0: 0, 1: 1, 2: len(got)/2 + 1}[i]
		ch, closeStream := p.openStream(t, url.Values{"line": {line}}, from)
		if ev := next(t, ch, "ready", 10*time.Second); ev.id != from {
			t.Fatalf("resumed at %s, ready says %s", from, ev.id)
		}
		for _, want := range got[skip:] {
			if ev := next(t, ch, "period", 10*time.Second); ev.id != want.id || ev.data != want.data {
				t.Fatalf("resumed at %s: got %s %s, want %s %s", from, ev.id, ev.data, want.id, want.data)
			}
		}
		closeStream()
	}
	// The other location's stream saw nothing of it: its heartbeats move
	// its id past the line's last event without a period event.
	deadline := time.After(10 * time.Second)
	for {
		select {
		case ev := <-other:
			if ev.event != "" {
				t.Fatalf("a stream filtered to another location got %q: %s", ev.event, ev.data)
			}
			if c, err := feed.ParseCursor(ev.id); err == nil && covers(c, lastCursor) {
				return
			}
		case <-deadline:
			t.Fatal("the filtered stream's heartbeats never moved past the line's events")
		}
	}
}

// covers reports whether cursor a is at or after b in every partition.
func covers(a, b feed.Cursor) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] < b[i] {
			return false
		}
	}
	return true
}
