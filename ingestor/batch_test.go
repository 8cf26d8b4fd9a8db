package ingestor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/takt/takt/internal/httpx"
	"github.com/takt/takt/internal/ratelimit"
	"github.com/takt/takt/internal/testenv"
	"github.com/takt/takt/internal/wire"
)

func newFakeBatchHandler(t testing.TB, prod producer) *gin.Engine {
	t.Helper()
	r := newFakeHandler(t, prod, nil)
	// newFakeHandler registered the single call; build the batch handler
	// on an equivalent single handler.
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	h := newHandler(fakeKeysForTest(), fakeLocsForTest(), prod, "parts", 1024, 100*time.Millisecond, logger, m)
	h.now = func() time.Time { return testNow }
	bm, err := newBatchMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	b := newBatchHandler(h, 4096, bm)
	b.maxParts = 5
	r.POST(BatchPath, b.serve)
	return r
}

func fakeKeysForTest() fakeKeys {
	return fakeKeys{
		keyIngest: {KeyID: 1, Sites: []uint64{1}, Scopes: []string{"ingest"}},
		keyRead:   {KeyID: 2, Sites: []uint64{1}, Scopes: []string{"read"}},
	}
}

func fakeLocsForTest() fakeLocs {
	return fakeLocs{
		"line_1":  {Kind: "line", ID: 1, Site: 1, ExternalID: "line_1", Timezone: "Europe/Berlin"},
		"foreign": {Kind: "line", ID: 9, Site: 2, ExternalID: "foreign", Timezone: "UTC"},
		"no_tz":   {Kind: "line", ID: 3, Site: 1, ExternalID: "no_tz", Timezone: ""},
	}
}

func postBatch(r http.Handler, key, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest("POST", BatchPath, strings.NewReader(body))
	if key != "" {
		req.Header.Set("API-KEY", key)
	}
	w := httptest.NewRecorder()
	r.ServeHTTP(w, req)
	return w
}

// TestBatchItemsAnswerLikeSingleCalls sends each item both alone to the
// single call and inside a batch: the item's status and error must be the
// single call's.
func TestBatchItemsAnswerLikeSingleCalls(t *testing.T) {
	items := []string{
		`{"external_id":"line_1","quantity":2,"quality":"scrap","reason":"R1","cycle_time":4.5,"recorded_at":1698765432}`,
		`{"external_id":"line_2"}`,
		`{"external_id":"foreign"}`,
		`{"external_id":"line_1","quality":"perfect"}`,
		`{"external_id":"line_1","quantity":1.5}`,
		`{"quantity":1}`,
		`{"external_id":"line_1","x":{"deep":[1,2,{"a":null}]}}`,
		`{"external_id":"broken"}`,
		`{"external_id":"no_tz","recorded_at":"2024-01-01T10:00:00"}`,
		`{"external_id":"line_1","recorded_at":1698765432000}`,
		`null`,
		`"line_1"`,
		`{}`,
	}
	prod := &fakeProducer{}
	r := newFakeBatchHandler(t, prod)
	var single []int
	var singleBodies []string
	for _, it := range items {
		w := post(r, keyIngest, `{"part":`+it+`}`)
		single = append(single, w.Code)
		singleBodies = append(singleBodies, w.Body.String())
	}
	// The batch handler's limit is 5 items: send them in chunks.
	for lo := 0; lo < len(items); lo += 5 {
		chunk := items[lo:min(lo+5, len(items))]
		w := postBatch(r, keyIngest, `{"parts":[`+strings.Join(chunk, ",")+`]}`)
		var ans batchAnswer
		if err := json.Unmarshal(w.Body.Bytes(), &ans); err != nil {
			t.Fatalf("batch answer %q: %v", w.Body.String(), err)
		}
		if len(ans.Results) != len(chunk) {
			t.Fatalf("%d results for %d items: %s", len(ans.Results), len(chunk), w.Body.String())
		}
		wantStatus := http.StatusOK
		for k, res := range ans.Results {
			i := lo + k
			if res.Index != k {
				t.Errorf("item %d: index %d", i, res.Index)
			}
			if res.Status != single[i] {
				t.Errorf("item %d %s: status %d, single call %d", i, items[i], res.Status, single[i])
			}
			if single[i] >= 500 {
				wantStatus = http.StatusInternalServerError
			}
			var sb struct{ Error string }
			_ = json.Unmarshal([]byte(singleBodies[i]), &sb)
			if res.Error != sb.Error {
				t.Errorf("item %d %s: error %q, single call %q", i, items[i], res.Error, sb.Error)
			}
		}
		if w.Code != wantStatus {
			t.Errorf("chunk at %d: HTTP %d, want %d", lo, w.Code, wantStatus)
		}
	}
}

type batchAnswer struct {
	Accepted, Rejected, Failed int
	Results                    []struct {
		Index  int
		Status int
		Error  string
	}
	Error string
}

func TestBatchRequestErrors(t *testing.T) {
	r := newFakeBatchHandler(t, &fakeProducer{})
	ok := `{"parts":[{"external_id":"line_1"}]}`
	for _, c := range []struct {
		name, key, body string
		code            int
		err             string
	}{
		{"no key", "", ok, 401, "Invalid API key"},
		{"read key", keyRead, ok, 401, "Invalid API key"},
		{"store down", "takt_broken_store_0000000000000000000000000", ok, 500, "Internal server error"},
		{"empty", keyIngest, ``, 422, "Invalid message format: empty body"},
		{"array body", keyIngest, `[]`, 422, "Invalid message format: body must be a JSON object"},
		{"no parts", keyIngest, `{}`, 422, "Invalid message format: missing parts"},
		{"null parts", keyIngest, `{"parts":null}`, 422, "Invalid message format: missing parts"},
		{"empty parts", keyIngest, `{"parts":[]}`, 422, "Invalid message format: parts is empty"},
		{"object parts", keyIngest, `{"parts":{}}`, 422, "Invalid message format: parts must be a JSON array"},
		{"single shape", keyIngest, `{"part":{"external_id":"line_1"}}`, 422,
			`Invalid message format: unknown field "part" (a batch carries an array "parts"; single parts go to ` + Path + `)`},
		{"duplicate", keyIngest, `{"parts":[{"external_id":"line_1"}],"parts":[]}`, 422, `Invalid message format: duplicate field "parts"`},
		{"too many", keyIngest, `{"parts":[{},{},{},{},{},{}]}`, 422, "Invalid message format: more than 5 parts in one batch"},
		{"syntax in item", keyIngest, `{"parts":[{"external_id":"line_1"},{"external_id":"x",}]}`, 422,
			"Invalid message format: malformed JSON at byte 54: expected a field name"},
		{"unclosed", keyIngest, `{"parts":[{"external_id":"line_1"}`, 422, "Invalid message format: malformed JSON at byte 34: expected ',' or ']'"},
		{"trailing", keyIngest, ok + `x`, 422, "Invalid message format: malformed JSON at byte 36: unexpected data after the JSON object"},
		{"deep", keyIngest, `{"parts":[{"external_id":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}]}`, 422,
			"Invalid message format: malformed JSON at byte 57: nested too deep"},
		{"too large", keyIngest, `{"parts":[{"external_id":"` + strings.Repeat("x", 5000) + `"}]}`, 413,
			"Request body too large: limit is 4096 bytes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := postBatch(r, c.key, c.body)
			var ans batchAnswer
			if err := json.Unmarshal(w.Body.Bytes(), &ans); err != nil {
				t.Fatalf("answer %q: %v", w.Body.String(), err)
			}
			if w.Code != c.code || ans.Error != c.err || ans.Results != nil {
				t.Errorf("got %d %s, want %d error %q", w.Code, w.Body.String(), c.code, c.err)
			}
		})
	}
}

func TestBatchAnswerShape(t *testing.T) {
	r := newFakeBatchHandler(t, &fakeProducer{})
	w := postBatch(r, keyIngest, `{"parts":[{"external_id":"line_1"},{"external_id":"nope"}]}`)
	want := `{"accepted":1,"rejected":1,"failed":0,"results":[{"index":0,"status":200},` +
		`{"index":1,"status":422,"error":"Location not found for external_id: nope"}]}`
	if w.Code != 200 || w.Body.String() != want {
		t.Errorf("got %d %s\nwant 200 %s", w.Code, w.Body.String(), want)
	}
}

func TestBatchProduceFailureIsNever200(t *testing.T) {
	for _, prod := range []*fakeProducer{{err: errors.New("broker gone")}, {hang: true}} {
		r := newFakeBatchHandler(t, prod)
		w := postBatch(r, keyIngest, `{"parts":[{"external_id":"line_1"},{"external_id":"nope"},{"external_id":"line_1"}]}`)
		want := `{"accepted":0,"rejected":1,"failed":2,"results":[{"index":0,"status":500,"error":"Internal server error"},` +
			`{"index":1,"status":422,"error":"Location not found for external_id: nope"},{"index":2,"status":500,"error":"Internal server error"}]}`
		if w.Code != 500 || w.Body.String() != want {
			t.Errorf("hang=%v: got %d %s", prod.hang, w.Code, w.Body.String())
		}
	}
}

// partialProducer fails every second record.
type partialProducer struct{ n int }

func (p *partialProducer) Produce(_ context.Context, r *kgo.Record, promise func(*kgo.Record, error)) {
	p.n++
	var err error
	if p.n%2 == 0 {
		err = errors.New("not leader")
	}
	promise(r, err)
}

func TestBatchPartialFailureSaysWhich(t *testing.T) {
	r := newFakeBatchHandler(t, &partialProducer{})
	w := postBatch(r, keyIngest, `{"parts":[{"external_id":"line_1"},{"external_id":"line_1"},{"external_id":"line_1"}]}`)
	want := `{"accepted":2,"rejected":0,"failed":1,"results":[{"index":0,"status":200},` +
		`{"index":1,"status":500,"error":"Internal server error"},{"index":2,"status":200}]}`
	if w.Code != 500 || w.Body.String() != want {
		t.Errorf("got %d %s", w.Code, w.Body.String())
	}
}

func TestBatchRecords(t *testing.T) {
	prod := &fakeProducer{}
	r := newFakeBatchHandler(t, prod)
	w := postBatch(r, keyIngest, `{"parts":[{"external_id":"line_1","quantity":3},{"external_id":"line_1","quality":"rework","recorded_at":"2024-01-01T10:00:00"}]}`)
	if w.Code != 200 {
		t.Fatalf("%d %s", w.Code, w.Body.String())
	}
	if len(prod.recs) != 2 {
		t.Fatalf("%d records", len(prod.recs))
	}
	ids := map[string]bool{}
	for i, want := range []wire.Part{
		{Quantity: 3, Quality: "good", RecordedAtMs: testNow.UnixMilli(), RecordedDefaulted: true},
		{Quantity: 1, Quality: "rework", RecordedAtMs: 1704099600000},
	} {
		p, err := wire.Decode(prod.recs[i].Value)
		if err != nil {
			t.Fatal(err)
		}
		ids[p.EventID] = true
		want.V, want.EventID, want.Site, want.LocationKind, want.LocationID, want.ExternalID = 1, p.EventID, 1, "line", 1, "line_1"
		want.ReceivedAtMs = testNow.UnixMilli()
		if p != want {
			t.Errorf("record %d:\n got %+v\nwant %+v", i, p, want)
		}
	}
	if len(ids) != 2 {
		t.Errorf("event ids not unique: %v", ids)
	}
}

func FuzzParseParts(f *testing.F) {
	f.Add(`{"parts":[{"external_id":"a"},null,{"x":[1,{"y":"z"}]}]}`)
	f.Add(`{"parts":[{"external_id":"a","recorded_at":"2024-01-01T10:00:00Z"}]}`)
	f.Fuzz(func(t *testing.T, body string) {
		items, err := parseParts([]byte(body), testNow, MaxBatchParts)
		if err != nil {
			if !isFormatError(err) {
				t.Fatalf("not a format error: %v", err)
			}
			return
		}
		if len(items) == 0 || len(items) > MaxBatchParts {
			t.Fatalf("%d items", len(items))
		}
		for _, it := range items {
			if it.err == nil && it.in.ExternalID == "" {
				t.Fatal("accepted item without external_id")
			}
			if it.err != nil && !isFormatError(it.err) {
				t.Fatalf("item error not a format error: %v", it.err)
			}
		}
	})
}

func BenchmarkParseParts(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`{"parts":[`)
	for i := range 100 {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"external_id":"lt_m%03d","quantity":1,"quality":"good","product":"LT-P1","cycle_time":12.5,"recorded_at":%d.%03d}`, i, 1700000000+i, i)
	}
	sb.WriteString(`]}`)
	body := []byte(sb.String())
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseParts(body, testNow, MaxBatchParts); err != nil {
			b.Fatal(err)
		}
	}
}

// TestRunBatch runs the service as main does and sends batches: every
// accepted item is one record on the topic, in order.
func TestRunBatch(t *testing.T) {
	s := newStack(t)
	cfg := s.config(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, testenv.Logger(t)) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	base := "http://" + cfg.Addr
	waitReady(t, base, done)

	var sb strings.Builder
	sb.WriteString(`{"parts":[`)
	const n = 300
	for i := range n {
		if i > 0 {
			sb.WriteByte(',')
		}
		switch i {
		case 7:
			sb.WriteString(`{"external_id":"other_site_line"}`)
		case 8:
			sb.WriteString(`{"external_id":"line_1","quality":"perfect"}`)
		default:
			fmt.Fprintf(&sb, `{"external_id":"line_1","quantity":%d,"recorded_at":%d}`, i+1, 1700000000+i)
		}
	}
	sb.WriteString(`]}`)
	req, _ := http.NewRequest("POST", base+BatchPath, strings.NewReader(sb.String()))
	req.Header.Set("API-KEY", s.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var ans batchAnswer
	err = json.NewDecoder(resp.Body).Decode(&ans)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || ans.Accepted != n-2 || ans.Rejected != 2 || ans.Failed != 0 {
		t.Fatalf("HTTP %d %+v (%v)", resp.StatusCode, ans, err)
	}
	if ans.Results[7].Error != "Location not found for external_id: other_site_line" ||
		ans.Results[8].Error != `Invalid message format: quality must be good, scrap or rework, got "perfect"` {
		t.Errorf("rejections: %+v %+v", ans.Results[7], ans.Results[8])
	}
	recs := s.records(t, n-2)
	if len(recs) != n-2 {
		t.Fatalf("%d records, want %d", len(recs), n-2)
	}
	k := 0
	for i := range n {
		if i == 7 || i == 8 {
			continue
		}
		p, err := wire.Decode(recs[k].Value)
		if err != nil {
			t.Fatal(err)
		}
		if p.Quantity != uint32(i+1) || p.RecordedAtMs != int64(1700000000+i)*1000 {
			t.Fatalf("record %d is %+v, want item %d", k, p, i)
		}
		k++
	}

	big := `{"parts":[{"external_id":"line_1","product":"` + strings.Repeat("x", 1<<20) + `"}]}`
	send413 := func() int {
		req, _ := http.NewRequest("POST", base+BatchPath, strings.NewReader(big))
		req.Header.Set("API-KEY", s.key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := send413(); code != 413 {
		t.Errorf("1 MiB item: HTTP %d, want 413", code)
	}
}

// costLimiter allows requests of at most max parts.
type costLimiter struct {
	max   int
	costs []int
}

func (l *costLimiter) Allow(_ context.Context, _ uint64, cost int) ratelimit.Decision {
	l.costs = append(l.costs, cost)
	if cost > l.max {
		return ratelimit.Decision{RetryAfter: 3 * time.Second}
	}
	return ratelimit.Decision{Allowed: true}
}

// TestBatchRateLimitCountsParts: a batch costs one token per item, and is
// refused whole (429, Retry-After) when the bucket cannot pay.
func TestBatchRateLimitCountsParts(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	m, _ := newMetrics(prometheus.NewRegistry())
	prod := &fakeProducer{}
	h := newHandler(fakeKeysForTest(), fakeLocsForTest(), prod, "parts", 1024, 100*time.Millisecond, logger, m)
	lim := &costLimiter{max: 2}
	h.limiter = lim
	bm, _ := newBatchMetrics(prometheus.NewRegistry())
	r := httpx.NewEngine(logger)
	r.POST(BatchPath, newBatchHandler(h, 4096, bm).serve)

	w := postBatch(r, keyIngest, `{"parts":[{"external_id":"line_1"},{"external_id":"nope"}]}`)
	if w.Code != 200 {
		t.Errorf("2 parts: %d %s", w.Code, w.Body.String())
	}
	w = postBatch(r, keyIngest, `{"parts":[{"external_id":"line_1"},{"external_id":"line_1"},{"external_id":"line_1"}]}`)
	if w.Code != 429 || w.Header().Get("Retry-After") == "" || len(prod.recs) != 1 {
		t.Errorf("3 parts: %d %q %s, %d records", w.Code, w.Header().Get("Retry-After"), w.Body.String(), len(prod.recs))
	}
	if len(lim.costs) != 2 || lim.costs[0] != 2 || lim.costs[1] != 3 {
		t.Errorf("costs %v, want [2 3]", lim.costs)
	}
}
