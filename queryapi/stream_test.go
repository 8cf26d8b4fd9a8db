package queryapi

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/redis/go-redis/v9"
	"github.com/takt/takt/internal/auth"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/testenv"
	"github.com/takt/takt/internal/wire"
)

// feedFixture is a query API whose change feed reads a scratch topic of
// one partition, which the test writes period changes to.
type feedFixture struct {
	srv   *httptest.Server
	store *chstore.Store
	rdb   *redis.Client
	cfg   Config
	prefB string
	hashB string
	keyA  string // site 1
	keyB  string // site 2 only
	prod  *kgo.Client
}

func newFeedFixture(t *testing.T, tune func(*Config)) *feedFixture {
	t.Helper()
	store, rdb, cfg, seeded := seededDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	audit := chstore.Audit{CreatedBy: "test", LastUpdatedBy: "test"}
	keyB, prefB, hashB := auth.NewKey()
	for _, err := range []error{
		store.PutSite(ctx, chstore.Site{ID: 2, Description: "Plant B", Timezone: "America/Chicago", Audit: audit}),
		store.PutUser(ctx, chstore.User{ID: 2, Username: "b", Sites: []uint64{2}, Active: true, Audit: audit}),
		store.PutAPIKey(ctx, chstore.APIKey{ID: 2, User: 2, Prefix: prefB, Hash: hashB, Scopes: []string{"read"}, Active: true, Audit: audit}),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	brokers := testenv.Stack(t).Brokers
	cfg.KafkaBrokers, cfg.PeriodChangesTopic = brokers, testenv.Topic(t, 1)
	cfg.FeedHeartbeat = 200 * time.Millisecond
	if tune != nil {
		tune(&cfg)
	}
	prod, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(cfg.PeriodChangesTopic), kgo.ProducerLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	return &feedFixture{srv: serve(t, store, rdb, nil, cfg), store: store, rdb: rdb, cfg: cfg, prefB: prefB, hashB: hashB,
		keyA: seeded.APIKey, keyB: keyB, prod: prod}
}

// send writes changes of period ids from..to-1 of site's line to the topic.
func (f *feedFixture) send(t *testing.T, site uint64, from, to int) {
	t.Helper()
	recs := make([]*kgo.Record, 0, to-from)
	for i := from; i < to; i++ {
		c := wire.PeriodChange{Change: wire.ChangeOpened, Site: site, LocationKind: "line", LocationID: site, Line: site,
			ExternalID: fmt.Sprintf("line_%d", site), Period: uint64(i + 1), State: "running", StartMs: 1_700_000_000_000,
			Open: true, Version: 2, Shift: strings.Repeat("s", 300)}
		v, err := wire.EncodePeriodChange(&c)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Key: c.Key(), Value: v})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := f.prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// stream is an open feed stream as a client reads it.
type stream struct {
	resp *http.Response
	r    *bufio.Reader
}

type event struct{ id, name, data string }

// open requests the stream; a non-stream answer is returned as status and
// body.
func (f *feedFixture) open(t *testing.T, client *http.Client, query, key, last string) (*stream, int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, f.srv.URL+"/api/1.0/productionperiods/stream/"+query, nil)
	if key != "" {
		req.Header.Set(keyHeader, key)
	}
	if last != "" {
		req.Header.Set("Last-Event-ID", last)
	}
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return nil, resp.StatusCode, string(b)
	}
	s := &stream{resp: resp, r: bufio.NewReader(resp.Body)}
	t.Cleanup(s.close)
	return s, resp.StatusCode, ""
}

func (s *stream) close() { s.resp.Body.Close() }

// next returns the next event with a name (heartbeats are skipped); io.EOF
// when the stream ended.
func (s *stream) next() (event, error) {
	var ev event
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			return ev, err
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "" && ev.name != "":
			return ev, nil
		case line == "":
			ev = event{}
		case strings.HasPrefix(line, "id: "):
			ev.id = line[4:]
		case strings.HasPrefix(line, "event: "):
			ev.name = line[7:]
		case strings.HasPrefix(line, "data: "):
			ev.data = line[6:]
		}
	}
}

func (s *stream) mustNext(t *testing.T, name string) event {
	t.Helper()
	ev, err := s.next()
	if err != nil || ev.name != name {
		t.Fatalf("want a %q event, got %+v, %v", name, ev, err)
	}
	return ev
}

func periodOf(t *testing.T, ev event) uint64 {
	t.Helper()
	c, err := wire.DecodePeriodChange([]byte(ev.data))
	if err != nil {
		t.Fatalf("%s: %v", ev.data, err)
	}
	return c.Period
}

// TestStreamRefusals: the feed authenticates like the record API, refuses
// arguments it does not know, malformed ids and foreign event ids, and
// caps the streams a key holds open.
func TestStreamRefusals(t *testing.T) {
	f := newFeedFixture(t, func(c *Config) { c.FeedMaxStreamsPerKey = 2 })
	for _, tc := range []struct {
		name, query, key, last string
		status                 int
		body                   string
	}{
		{"no key", "", "", "", http.StatusUnauthorized, msgMissingKey},
		{"bad key", "", "nope", "", http.StatusUnauthorized, msgInvalidKey},
		{"bad key argument", "?auth=nope", "", "", http.StatusUnauthorized, msgInvalidKey},
		{"unknown argument", "?lines=1", f.keyA, "", http.StatusOK, `unknown argument \"lines\"`},
		{"bad id", "?line=x", f.keyA, "", http.StatusOK, `line=\"x\"`},
		{"twice", "?site=1&site=2", f.keyA, "", http.StatusOK, "given 2 times"},
		{"foreign event id", "", f.keyA, "42", http.StatusOK, "not an event id of this feed"},
		{"event id past the end", "", f.keyA, "1:5", http.StatusOK, "past the end"},
		{"event id of more partitions", "?last_event_id=1:0,0", f.keyA, "", http.StatusOK, "names 2 partitions"},
	} {
		s, status, body := f.open(t, nil, tc.query, tc.key, tc.last)
		if s != nil {
			t.Errorf("%s: a stream opened", tc.name)
			continue
		}
		if status != tc.status || !strings.Contains(body, tc.body) || !strings.Contains(body, `"success":false`) {
			t.Errorf("%s: %d %s; want %d with %q", tc.name, status, body, tc.status, tc.body)
		}
	}
	a, _, _ := f.open(t, nil, "", f.keyA, "")
	f.open(t, nil, "?site=1", f.keyA, "")
	if s, status, body := f.open(t, nil, "", f.keyA, ""); s != nil || status != http.StatusTooManyRequests {
		t.Fatalf("a third stream of the key: %d %s", status, body)
	}
	if s, _, body := f.open(t, nil, "", f.keyB, ""); s == nil {
		t.Fatalf("another key's stream was refused: %s", body)
	}
	a.mustNext(t, "ready")
	a.close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, status, _ := f.open(t, nil, "", f.keyA, "")
		if s != nil {
			break
		}
		if status != http.StatusTooManyRequests || time.Now().After(deadline) {
			t.Fatalf("after closing a stream: %d", status)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestStreamSlotsAcrossInstances: a key's bound on open streams holds
// across query API instances that share Redis, and a closed stream's slot
// is free on any of them.
func TestStreamSlotsAcrossInstances(t *testing.T) {
	f := newFeedFixture(t, func(c *Config) { c.FeedMaxStreamsPerKey = 2 })
	other := &feedFixture{srv: serve(t, f.store, f.rdb, nil, f.cfg)}
	a, _, body := f.open(t, nil, "", f.keyA, "")
	if a == nil {
		t.Fatalf("first stream: %s", body)
	}
	a.mustNext(t, "ready")
	if s, _, body := other.open(t, nil, "", f.keyA, ""); s == nil {
		t.Fatalf("second stream, on the other instance: %s", body)
	}
	for name, fx := range map[string]*feedFixture{"first": f, "other": other} {
		if s, status, body := fx.open(t, nil, "", f.keyA, ""); s != nil || status != http.StatusTooManyRequests {
			t.Errorf("a third stream of the key on the %s instance: %d %s", name, status, body)
		}
	}
	if s, _, body := other.open(t, nil, "", f.keyB, ""); s == nil {
		t.Fatalf("another key's stream was refused: %s", body)
	}
	a.close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, status, _ := other.open(t, nil, "", f.keyA, "")
		if s != nil {
			break
		}
		if status != http.StatusTooManyRequests || time.Now().After(deadline) {
			t.Fatalf("after closing a stream on the first instance, the other: %d", status)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestStreamSlotLeases: a slot held without renewal is free once its
// lease ends (an instance that died); one that is renewed stays held.
func TestStreamSlotLeases(t *testing.T) {
	_, rdb, cfg, _ := seededDB(t)
	slots := &streamSlots{rdb: rdb, prefix: cfg.RedisPrefix + "feedstreams:", lease: 400 * time.Millisecond}
	ctx := context.Background()
	take := func(key uint64) (*slot, bool) {
		t.Helper()
		sl, ok, err := slots.take(ctx, key, 1)
		if err != nil {
			t.Fatal(err)
		}
		return sl, ok
	}
	if _, ok := take(7); !ok {
		t.Fatal("first slot refused")
	}
	if _, ok := take(7); ok {
		t.Fatal("a second slot of a key limited to 1 was taken")
	}
	time.Sleep(600 * time.Millisecond)
	held, ok := take(7)
	if !ok {
		t.Fatal("the slot of a lease that ran out is still held")
	}
	for range 8 {
		time.Sleep(100 * time.Millisecond)
		if err := held.renew(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := take(7); ok {
		t.Fatal("a renewed slot was taken over")
	}
	held.release()
	if _, ok := take(7); !ok {
		t.Fatal("a released slot is still held")
	}
}

// TestStreamSitesAndResume: a key sees only its sites' changes; a stream
// resumed at any event's id continues with exactly the events after it.
func TestStreamSitesAndResume(t *testing.T) {
	// A closed stream's slot is given back once the server notices.
	f := newFeedFixture(t, func(c *Config) { c.FeedMaxStreamsPerKey = 10 })
	a, _, _ := f.open(t, nil, "", f.keyA, "")
	b, _, _ := f.open(t, nil, "", f.keyB, "")
	ready := a.mustNext(t, "ready")
	b.mustNext(t, "ready")
	f.send(t, 1, 0, 3)
	f.send(t, 2, 3, 4)
	f.send(t, 1, 4, 6)
	var ids []string
	for _, want := range []uint64{1, 2, 3, 5, 6} {
		ev := a.mustNext(t, "period")
		if got := periodOf(t, ev); got != want {
			t.Fatalf("site 1's stream: period %d, want %d", got, want)
		}
		ids = append(ids, ev.id)
	}
	if got := periodOf(t, b.mustNext(t, "period")); got != 4 {
		t.Fatalf("site 2's stream: period %d, want 4", got)
	}
	for i, from := range append([]string{ready.id}, ids...) {
		s, _, body := f.open(t, nil, "?site=1", f.keyA, from)
		if s == nil {
			t.Fatal(body)
		}
		if ev := s.mustNext(t, "ready"); ev.id != from {
			t.Fatalf("ready at %s, resumed at %s", ev.id, from)
		}
		for _, want := range ids[i:] {
			if ev := s.mustNext(t, "period"); ev.id != want {
				t.Fatalf("resumed at %s: event %s, want %s", from, ev.id, want)
			}
		}
		s.close()
	}
}

// TestStreamDropsSlowClient: a client that reads slower than the changes
// come is dropped with a final "dropped" event whose id resumes the
// stream right after the last change it got; nothing is buffered for it
// beyond its socket.
func TestStreamDropsSlowClient(t *testing.T) {
	f := newFeedFixture(t, func(c *Config) {
		c.FeedMaxLag, c.FeedSlowAfter, c.FeedWriteTimeout = 20, 300*time.Millisecond, 10*time.Second
	})
	const n = 20000 // ~10 MB: more than the sockets hold
	f.send(t, 1, 0, n)
	// A small receive buffer, and a client that reads 4 KiB every 2 ms.
	dialer := &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 8192) })
		if err != nil {
			return err
		}
		return serr
	}}
	client := &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext}}
	s, _, body := f.open(t, client, "", f.keyA, "1:0")
	if s == nil {
		t.Fatal(body)
	}
	s.r = bufio.NewReaderSize(slowReader{s.resp.Body}, 4096)
	s.mustNext(t, "ready")
	var last event
	got := 0
	for {
		ev, err := s.next()
		if err != nil {
			t.Fatalf("the stream ended without a final event after %d changes: %v", got, err)
		}
		if ev.name == "dropped" {
			var d struct{ Reason, Message string }
			if err := json.Unmarshal([]byte(ev.data), &d); err != nil || d.Reason != "slow_client" || !strings.Contains(d.Message, "Reconnect") {
				t.Fatalf("final event %s", ev.data)
			}
			if ev.id != last.id {
				t.Fatalf("final event's id %s, last change's %s", ev.id, last.id)
			}
			break
		}
		if ev.name != "period" || periodOf(t, ev) != uint64(got+1) {
			t.Fatalf("event %d: %s %s", got, ev.name, ev.data)
		}
		last = ev
		got++
	}
	if _, err := s.next(); err != io.EOF {
		t.Fatalf("after the final event: %v, want the end of the stream", err)
	}
	if got == 0 || got >= n {
		t.Fatalf("dropped after %d of %d changes", got, n)
	}
	// Resuming at the final event's id continues with the next change.
	r, _, body := f.open(t, nil, "", f.keyA, last.id)
	if r == nil {
		t.Fatal(body)
	}
	r.mustNext(t, "ready")
	if p := periodOf(t, r.mustNext(t, "period")); p != uint64(got+1) {
		t.Fatalf("resumed with period %d, want %d", p, got+1)
	}
}

// slowReader reads at most 4 KiB per 2 ms.
type slowReader struct{ r io.Reader }

func (s slowReader) Read(p []byte) (int, error) {
	time.Sleep(2 * time.Millisecond)
	return s.r.Read(p[:min(len(p), 4096)])
}

// TestStreamEndsWhenKeyRevoked: a stream whose key is revoked ends with a
// final "unauthorized" event; nothing after it reaches the client.
func TestStreamEndsWhenKeyRevoked(t *testing.T) {
	var store *chstore.Store
	f := newFeedFixture(t, func(c *Config) {
		c.AuthLocalTTL, c.AuthRedisTTL = 100*time.Millisecond, 100*time.Millisecond
	})
	store = f.store
	s, _, body := f.open(t, nil, "", f.keyB, "")
	if s == nil {
		t.Fatal(body)
	}
	s.mustNext(t, "ready")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	audit := chstore.Audit{CreatedBy: "test", LastUpdatedBy: "test"}
	if err := store.PutAPIKey(ctx, chstore.APIKey{ID: 2, User: 2, Prefix: f.prefB, Hash: f.hashB, Scopes: []string{"read"},
		Active: false, Audit: audit}); err != nil {
		t.Fatal(err)
	}
	done := make(chan event, 1)
	go func() {
		ev, _ := s.next()
		done <- ev
	}()
	select {
	case ev := <-done:
		if ev.name != "unauthorized" {
			t.Fatalf("after revoking the key: %+v", ev)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the stream of a revoked key goes on")
	}
	if _, err := s.next(); err != io.EOF {
		t.Fatalf("after the final event: %v", err)
	}
}
