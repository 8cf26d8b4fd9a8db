package ingestor

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/takt/takt/internal/wire"
)

// answer is what a client got.
type answer struct {
	status   int
	body     string
	replayed string // the Idempotent-Replayed header
}

// idemPost sends body to base+path with the API key and, when idemKey is not
// empty, an Idempotency-Key header.
func idemPost(t *testing.T, base, path, apiKey, idemKey, body string) answer {
	t.Helper()
	req, err := http.NewRequest("POST", base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("API-KEY", apiKey)
	if idemKey != "" {
		req.Header.Set(idemKeyHeader, idemKey)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, string(b), resp.Header.Get(idemReplayedHeader)}
}

// sentinelQuantity marks the part partsUntilSentinel stops at.
const sentinelQuantity = 77

// partsUntilSentinel sends a part without a key through base and returns
// the parts the topic holds before it: every request answered before was
// acknowledged by Kafka before the sentinel was sent, so this is all they
// produced.
func (s *stack) partsUntilSentinel(t *testing.T, base string) []wire.Part {
	t.Helper()
	if a := idemPost(t, base, Path, s.key, "", fmt.Sprintf(`{"part":{"external_id":"line_1","quantity":%d}}`, sentinelQuantity)); a.status != 200 {
		t.Fatalf("sentinel: %+v", a)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.e.Brokers...), kgo.ConsumeTopics(s.topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out []wire.Part
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("no sentinel on %s after %d parts", s.topic, len(out))
		}
		for _, r := range fs.Records() {
			p, err := wire.Decode(r.Value)
			if err != nil {
				t.Fatal(err)
			}
			if p.Quantity == sentinelQuantity && p.IdempotencyID == "" {
				return out
			}
			out = append(out, p)
		}
	}
}

// TestIdempotentReplayAcrossReplicas: two ingestors share Redis. The first
// request with a key is processed; its repeat on the other replica gets
// the same answer marked replayed and produces nothing; the same key with
// another body is refused; a 422 is replayed too; a request whose produce
// failed (500) frees its key for the retry.
func TestIdempotentReplayAcrossReplicas(t *testing.T) {
	s := newStack(t)
	a := s.server(t, s.store, s.rdb, s.producer(t, s.e.Brokers...), 5*time.Second)
	b := s.server(t, s.store, s.rdb, s.producer(t, s.e.Brokers...), 5*time.Second)
	down := s.server(t, s.store, s.rdb, s.producer(t, closedAddr(t)), 300*time.Millisecond)

	body := `{"part":{"external_id":"line_1","quantity":3}}`
	steps := []struct {
		base, key, body string
		want            answer
	}{
		{a, "retry-1", body, answer{200, okBody, ""}},
		{b, "retry-1", body, answer{200, okBody, "true"}},
		{a, "retry-1", body, answer{200, okBody, "true"}},
		{b, "retry-1", `{"part":{"external_id":"line_1","quantity":4}}`, answer{422, string(bodyIdemMismatch), ""}},
		{a, "retry-2", `{"part":{"external_id":"nowhere"}}`, answer{422, `{"error":"Location not found for external_id: nowhere"}`, ""}},
		{b, "retry-2", `{"part":{"external_id":"nowhere"}}`, answer{422, `{"error":"Location not found for external_id: nowhere"}`, "true"}},
		{down, "retry-3", body, answer{500, internalBody, ""}},
		{b, "retry-3", body, answer{200, okBody, ""}},
		{a, "retry-3", body, answer{200, okBody, "true"}},
		// The key in the part's field is the same key.
		{b, "", `{"part":{"external_id":"line_1","quantity":3,"idempotency_key":"retry-4"}}`, answer{200, okBody, ""}},
		{a, "retry-4", `{"part":{"external_id":"line_1","quantity":3,"idempotency_key":"retry-4"}}`, answer{200, okBody, "true"}},
		{a, "retry-5", `{"part":{"external_id":"line_1","idempotency_key":"retry-4"}}`,
			answer{400, `{"error":"Idempotency-Key differs from the part's idempotency_key"}`, ""}},
		{a, "has space", body, answer{400, `{"error":"Invalid Idempotency-Key may hold only letters, digits and -_.:~+/= (found ' ')"}`, ""}},
		{a, strings.Repeat("k", 129), body, answer{400, `{"error":"Invalid Idempotency-Key is longer than 128 bytes"}`, ""}},
		{a, "", `{"part":{"external_id":"line_1","idempotency_key":""}}`, answer{422, `{"error":"Invalid message format: idempotency_key is empty"}`, ""}},
	}
	for i, st := range steps {
		if got := idemPost(t, st.base, Path, s.key, st.key, st.body); got != st.want {
			t.Errorf("step %d (%s %.50s): %+v\n  want %+v", i, st.key, st.body, got, st.want)
		}
	}

	parts := s.partsUntilSentinel(t, a)
	ids := map[string]int{}
	for _, p := range parts {
		ids[p.IdempotencyID]++
	}
	// retry-1 and retry-4 once each; retry-3 once from b (the failed
	// attempt never reached the broker).
	if len(parts) != 3 || len(ids) != 3 || ids[""] != 0 {
		t.Fatalf("topic holds %d parts with ids %v; want 3 with distinct ids", len(parts), ids)
	}
	if want := idempotencyID("u1", "retry-1"); parts[0].IdempotencyID != want {
		t.Errorf("idempotency id %q, want %q (scope u1, key retry-1)", parts[0].IdempotencyID, want)
	}
}

// slowProducer holds every ack back for delay, so that a retry races the
// first request.
type slowProducer struct {
	producer
	delay time.Duration
}

func (p slowProducer) Produce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error)) {
	p.producer.Produce(ctx, r, func(r *kgo.Record, err error) {
		time.AfterFunc(p.delay, func() { promise(r, err) })
	})
}

// TestIdempotentRacingRetries: repeats of a request sent while the first
// still waits for Kafka, to two replicas, wait for its answer: one part on
// the topic, every client answered 200, all but one replayed.
func TestIdempotentRacingRetries(t *testing.T) {
	s := newStack(t)
	var bases []string
	for range 2 {
		bases = append(bases, s.server(t, s.store, s.rdb, slowProducer{s.producer(t, s.e.Brokers...), 300 * time.Millisecond}, 5*time.Second))
	}
	const n = 8
	answers := make([]answer, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			answers[i] = idemPost(t, bases[i%2], Path, s.key, "race-1", `{"part":{"external_id":"line_1"}}`)
		})
	}
	wg.Wait()
	first := 0
	for i, a := range answers {
		switch {
		case a.status != 200 || a.body != okBody:
			t.Errorf("client %d: %+v", i, a)
		case a.replayed == "":
			first++
		}
	}
	if first != 1 {
		t.Errorf("%d answers were not replays, want 1", first)
	}
	if parts := s.partsUntilSentinel(t, bases[0]); len(parts) != 1 {
		t.Fatalf("topic holds %d parts, want 1", len(parts))
	}
}

// TestIdempotentBatch: process_parts keys each item by its
// idempotency_key; a repeated batch is answered from the records item by
// item; a key twice in one batch and the header on a batch are refused.
func TestIdempotentBatch(t *testing.T) {
	s := newStack(t)
	a := s.server(t, s.store, s.rdb, s.producer(t, s.e.Brokers...), 5*time.Second)
	b := s.server(t, s.store, s.rdb, s.producer(t, s.e.Brokers...), 5*time.Second)

	batch := `{"parts":[{"external_id":"line_1","idempotency_key":"b-1"},{"external_id":"line_1","idempotency_key":"b-2","quantity":2},{"external_id":"nowhere","idempotency_key":"b-3"}]}`
	notFound := `"error":"Location not found for external_id: nowhere"`
	want := `{"accepted":2,"rejected":1,"failed":0,"results":[{"index":0,"status":200},{"index":1,"status":200},{"index":2,"status":422,` + notFound + `}]}`
	if got := idemPost(t, a, BatchPath, s.key, "", batch); got != (answer{200, want, ""}) {
		t.Errorf("first batch: %+v\n  want %s", got, want)
	}
	want = `{"accepted":2,"rejected":1,"failed":0,"results":[{"index":0,"status":200,"replayed":true},{"index":1,"status":200,"replayed":true},{"index":2,"status":422,"replayed":true,` + notFound + `}]}`
	if got := idemPost(t, b, BatchPath, s.key, "", batch); got != (answer{200, want, "true"}) {
		t.Errorf("repeated batch: %+v\n  want %s", got, want)
	}
	// A new item next to a repeated one: only the new one is produced;
	// the single call's key space is the batch's.
	mixed := `{"parts":[{"external_id":"line_1","idempotency_key":"b-1"},{"external_id":"line_1","idempotency_key":"b-4"},{"external_id":"line_1","idempotency_key":"b-4"},{"external_id":"line_1","quantity":5,"idempotency_key":"b-2"}]}`
	want = `{"accepted":2,"rejected":2,"failed":0,"results":[{"index":0,"status":200,"replayed":true},{"index":1,"status":200},` +
		`{"index":2,"status":422,"error":"Invalid message format: idempotency_key repeats that of part 1"},{"index":3,"status":422,"error":"Idempotency-Key was already used with a different request body"}]}`
	if got := idemPost(t, a, BatchPath, s.key, "", mixed); got != (answer{200, want, ""}) {
		t.Errorf("mixed batch: %+v\n  want %s", got, want)
	}
	if got := idemPost(t, b, Path, s.key, "b-4", `{"part":{"external_id":"line_1","idempotency_key":"b-4"}}`); got.status != 422 {
		t.Errorf("single call with a batch item's key and another body: %+v", got)
	}
	if got := idemPost(t, a, BatchPath, s.key, "h-1", batch); got.status != 400 {
		t.Errorf("Idempotency-Key on a batch: %+v", got)
	}
	if parts := s.partsUntilSentinel(t, a); len(parts) != 3 {
		t.Fatalf("topic holds %d parts, want 3 (b-1, b-2, b-4)", len(parts))
	}
}

// TestIdempotentRedisDown: without Redis a keyed request is processed (the
// record carries its idempotency id, so the processor keeps one copy) and
// a repeat is produced again rather than refused.
func TestIdempotentRedisDown(t *testing.T) {
	s := newStack(t)
	rdb := redis.NewClient(&redis.Options{Addr: closedAddr(t), MaxRetries: -1, DialTimeout: 200 * time.Millisecond, DialerRetries: 1})
	t.Cleanup(func() { rdb.Close() })
	base := s.server(t, s.store, rdb, s.producer(t, s.e.Brokers...), 5*time.Second)
	for range 2 {
		if got := idemPost(t, base, Path, s.key, "down-1", `{"part":{"external_id":"line_1"}}`); got != (answer{200, okBody, ""}) {
			t.Errorf("with Redis down: %+v", got)
		}
	}
	parts := s.partsUntilSentinel(t, base)
	if len(parts) != 2 || parts[0].IdempotencyID == "" || parts[0].IdempotencyID != parts[1].IdempotencyID {
		t.Fatalf("topic holds %+v; want two copies with one idempotency id", parts)
	}
}

func TestCheckIdempotencyKey(t *testing.T) {
	for _, tc := range []struct {
		key string
		ok  bool
	}{
		{"a", true},
		{"0190f2a4-5b6c-7d8e-9f00-112233445566", true},
		{"press7:000123_x.y~z+/=", true},
		{strings.Repeat("k", 128), true},
		{"", false},
		{strings.Repeat("k", 129), false},
		{"a b", false},
		{"a\nb", false},
		{"a\"b", false},
		{"a\\b", false},
		{"a*b", false},
		{"ä", false},
	} {
		if err := checkIdempotencyKey("key", []byte(tc.key)); (err == nil) != tc.ok {
			t.Errorf("%q: %v, want ok %v", tc.key, err, tc.ok)
		}
	}
}

// TestIdempotencyIDScoped: the wire id depends on scope and key only, and
// two scopes never share one.
func TestIdempotencyIDScoped(t *testing.T) {
	a, b, c := idempotencyID("u1", "k"), idempotencyID("u1", "k"), idempotencyID("u2", "k")
	if a != b || a == c || idempotencyID("u1", "k2") == a || idempotencyID("u", "1\x00k") == a {
		t.Fatalf("ids %s %s %s", a, b, c)
	}
	p := wire.Part{EventID: a, Site: 1, LocationKind: "line", LocationID: 1, ExternalID: "x", Quantity: 1,
		Quality: wire.QualityGood, RecordedAtMs: 1, ReceivedAtMs: 1, IdempotencyID: a}
	if err := p.Validate(); err != nil {
		t.Fatalf("the id is not a wire UUID: %v", err)
	}
}
