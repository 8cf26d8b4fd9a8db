package ingestor

// Hostile input: the sizes and shapes an attacker (or a broken device)
// would send, and what the ingestor answers.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/takt/takt/internal/auth"
	"github.com/takt/takt/internal/httpx"
)

// partBody returns {"part":{...}} with the given members, in order of the
// map's keys (encoding/json sorts them).
func partBody(t testing.TB, fields map[string]any) string {
	t.Helper()
	b, err := json.Marshal(map[string]any{"part": fields})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// batchOf wraps the part object of a single body into a batch of one.
func batchOf(single string) string {
	return `{"parts":[` + strings.TrimSuffix(strings.TrimPrefix(single, `{"part":`), "}") + `]}`
}

// parseBoth parses body as a single call and, as one item, as a batch; the
// batch item must answer like the single call.
func parseBoth(t *testing.T, body string) (partInput, error) {
	t.Helper()
	in, err := parsePart([]byte(body), testNow)
	items, berr := parseParts([]byte(batchOf(body)), testNow, MaxBatchParts)
	switch {
	case berr != nil:
		t.Fatalf("batch of %.80q failed as a whole: %v", body, berr)
	case len(items) != 1:
		t.Fatalf("batch of %.80q: %d items", body, len(items))
	case fmt.Sprint(items[0].err) != fmt.Sprint(err) || err == nil && items[0].in != in:
		t.Fatalf("batch item of %.80q: %+v, %v; single call: %+v, %v", body, items[0].in, items[0].err, in, err)
	}
	return in, err
}

// TestIdentifierLengths: external_id, product and reason hold at most 255
// bytes (UTF-8), in the single call and in a batch.
func TestIdentifierLengths(t *testing.T) {
	for _, field := range []string{"external_id", "product", "reason"} {
		for _, tt := range []struct {
			value string
			ok    bool
		}{
			{strings.Repeat("a", 255), true},
			{strings.Repeat("ä", 127) + "a", true}, // 255 bytes
			{strings.Repeat("a", 256), false},
			{strings.Repeat("ä", 128), false}, // 128 characters, 256 bytes
			{strings.Repeat("x", 30_000), false},
		} {
			fields := map[string]any{"external_id": "line_1", "quality": "scrap", field: tt.value}
			in, err := parseBoth(t, partBody(t, fields))
			if tt.ok {
				if err != nil {
					t.Errorf("%s of %d bytes: %v", field, len(tt.value), err)
				}
				continue
			}
			want := field + " is longer than 255 bytes"
			if err == nil || !isFormatError(err) || err.Error() != want {
				t.Errorf("%s of %d bytes: got %+v, %v; want error %q", field, len(tt.value), in, err, want)
			}
		}
	}
}

// TestQuantityIsExact: quantity must be an exact integer; a decimal that
// only rounds to one in float64 is refused.
func TestQuantityIsExact(t *testing.T) {
	for _, tt := range []struct {
		q    string
		want uint32 // 0: refused
	}{
		{"5", 5}, {"5.0", 5}, {"5.000000000000000000000000", 5}, {"1e2", 100}, {"1E+2", 100},
		{"1.5e1", 15}, {"100e-2", 1}, {"0.5e1", 5}, {"10E-1", 1}, {"0.00001e5", 1}, {"100000.0", 100000},
		{"1" + strings.Repeat("0", 5) + "e-0", 100000}, {"0.0000000000000000000000000000001e31", 1},
		{"1.0000000000000000001", 0}, {"3.0000000000000001", 0}, {"99999.99999999999999999", 0},
		{"100000.00000000000001", 0}, {"2.5e-1", 0}, {"1e-400", 0}, {"1.5", 0}, {"-0", 0}, {"0e999999999", 0},
		{"1e999999999999999999", 0}, {"1" + strings.Repeat("0", 400), 0}, {"0." + strings.Repeat("0", 400) + "1", 0},
	} {
		in, err := parseBoth(t, `{"part":{"external_id":"line_1","quantity":`+tt.q+`}}`)
		if tt.want == 0 {
			if err == nil {
				t.Errorf("quantity %.40s accepted as %d", tt.q, in.Quantity)
			}
			continue
		}
		if err != nil || in.Quantity != tt.want {
			t.Errorf("quantity %.40s: %d, %v; want %d", tt.q, in.Quantity, err, tt.want)
		}
	}
	_, err := parsePart([]byte(`{"part":{"external_id":"x","quantity":1.0000000000000000001}}`), testNow)
	if err == nil || err.Error() != "quantity must be an integer, got 1.0000000000000000001" {
		t.Errorf("error %v", err)
	}
}

// TestIdentifiersRefuseControlCharacters: a control character in an
// identifier is a broken device or an attempt to forge log lines.
func TestIdentifiersRefuseControlCharacters(t *testing.T) {
	for _, field := range []string{"external_id", "product", "reason"} {
		for _, v := range []string{"line\x00", "a\nb", "\x1b[31mred", "tab\t", "del\x7f", "c1\u0085"} {
			_, err := parseBoth(t, partBody(t, map[string]any{"external_id": "line_1", "quality": "scrap", field: v}))
			if want := field + " contains a control character"; err == nil || !strings.HasPrefix(err.Error(), want) {
				t.Errorf("%s %q: %v; want %q", field, v, err, want)
			}
		}
	}
	if _, err := parseBoth(t, partBody(t, map[string]any{"external_id": "Linie 1 – Süd/ß", "product": "P 1"})); err != nil {
		t.Errorf("printable identifier refused: %v", err)
	}
}

// longestRun returns the length of the longest run of c in s.
func longestRun(s string, c byte) int {
	best, n := 0, 0
	for i := range len(s) {
		if s[i] == c {
			n++
			best = max(best, n)
		} else {
			n = 0
		}
	}
	return best
}

// hostileBodies puts 60 kB of filler (x for strings, 7 for numbers) in
// every place of a part message that could be echoed.
func hostileBodies() []string {
	xs, sevens := strings.Repeat("x", 60_000), strings.Repeat("7", 60_000)
	p := func(members string) string { return `{"part":{` + members + `}}` }
	return []string{
		p(`"external_id":"` + xs + `"`),
		p(`"external_id":"line_1","product":"` + xs + `"`),
		p(`"external_id":"line_1","quality":"scrap","reason":"` + xs + `"`),
		p(`"external_id":"line_1","quality":"` + xs + `"`),
		p(`"external_id":"line_1","recorded_at":"` + xs + `"`),
		p(`"external_id":"line_1","recorded_at":"` + sevens + `"`),
		p(`"external_id":"line_1","recorded_at":` + sevens),
		p(`"external_id":"line_1","recorded_at":0.` + sevens),
		p(`"external_id":"line_1","quantity":` + sevens),
		p(`"external_id":"line_1","quantity":-` + sevens),
		p(`"external_id":"line_1","quantity":7.` + sevens),
		p(`"external_id":"line_1","cycle_time":` + sevens),
		p(`"external_id":"line_1","cycle_time":-` + sevens),
		p(`"external_id":"line_1","` + xs + `":1`),
		`{"` + xs + `":1}`,
		`{"part":{"external_id":"line_1"},"` + xs + `":1}`,
		p(`"external_id":"line_1","quantity":` + sevens + `x`),
		p(`"external_id":"` + xs + `\q"`),
	}
}

// TestRejectionsEchoLittle: whatever the client sent, a rejection quotes
// at most 255 bytes of it (it used to echo a 60 kB id or number whole).
func TestRejectionsEchoLittle(t *testing.T) {
	for _, body := range hostileBodies() {
		for _, b := range []string{body, batchOf(body)} {
			var msg string
			if strings.HasPrefix(b, `{"parts"`) {
				items, err := parseParts([]byte(b), testNow, MaxBatchParts)
				switch {
				case err != nil:
					msg = err.Error()
				case items[0].err != nil:
					msg = items[0].err.Error()
				}
			} else if _, err := parsePart([]byte(b), testNow); err != nil {
				msg = err.Error()
			}
			if msg == "" {
				t.Errorf("%.100s…: accepted", b)
				continue
			}
			if n := max(longestRun(msg, 'x'), longestRun(msg, '7')); n > 255 {
				t.Errorf("%.100s…: the error echoes %d bytes of it: %.200s…", b, n, msg)
			}
		}
	}
}

// TestUnknownLocationEchoesLittle: the 422 for an unknown location quotes
// the id, which is at most 255 bytes; a longer one is refused before the
// look-up.
func TestUnknownLocationEchoesLittle(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	h := newHandler(fakeKeysForTest(), fakeLocsForTest(), &fakeProducer{}, "parts", 64<<10, 100*time.Millisecond, logger, m)
	h.now = func() time.Time { return testNow }
	bm, err := newBatchMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	r := httpx.NewEngine(logger)
	r.POST(Path, h.serve)
	r.POST(BatchPath, newBatchHandler(h, 1<<20, bm).serve)
	for _, body := range hostileBodies() {
		for path, b := range map[string]string{Path: body, BatchPath: batchOf(body)} {
			req := httptest.NewRequest("POST", path, strings.NewReader(b))
			req.Header.Set("API-KEY", keyIngest)
			w := httptest.NewRecorder()
			r.ServeHTTP(w, req)
			got := w.Body.String()
			if n := max(longestRun(got, 'x'), longestRun(got, '7')); n > 255 || len(got) > 1024 {
				t.Errorf("%s %.100s…: %d, %d bytes, echoing %d: %.200s…", path, b, w.Code, len(got), n, got)
			}
			if path == Path && w.Code != 422 {
				t.Errorf("%s %.100s…: %d, want 422", path, b, w.Code)
			}
		}
	}
}

// TestTwoKeyHeadersAreRefused: a request with two API-KEY headers is
// ambiguous (a proxy may check one, the ingestor use the other): 401.
func TestTwoKeyHeadersAreRefused(t *testing.T) {
	r := newFakeHandler(t, &fakeProducer{}, nil)
	for _, keys := range [][]string{
		{keyIngest, "takt_3333333333333333333333333333333333333333"},
		{"takt_3333333333333333333333333333333333333333", keyIngest},
		{keyIngest, keyIngest},
	} {
		w := post(r, "", `{"part":{"external_id":"line_1"}}`, func(req *http.Request) { req.Header["Api-Key"] = keys })
		if w.Code != 401 || w.Body.String() != `{"error":"Invalid API key"}` {
			t.Errorf("keys %q: %d %s, want 401", keys, w.Code, w.Body)
		}
	}
}

// TestDebugLogIsBounded: ?debug=true logs on the server, also for bad
// keys (to help with a device's set-up), so it must not let anyone write
// the server's disk full: at most maxDebugLines lines a second.
func TestDebugLogIsBounded(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(p)
	}), nil))
	r := newFakeHandler(t, &fakeProducer{}, logger)
	for range 1000 {
		post(r, "takt_3333333333333333333333333333333333333333", `{}`, func(req *http.Request) { req.URL.RawQuery = "debug=true" })
	}
	if n := strings.Count(buf.String(), "process part (debug)"); n == 0 || n > 100 {
		t.Fatalf("1000 debug requests in one second logged %d lines, want 1 to 100", n)
	}
}

// TestBadKeyFloodIsRefused runs the service as main does: a flood of
// random well-formed keys from one address costs at most the burst of
// ClickHouse look-ups; the rest is answered 429 with Retry-After, and
// the valid key still works from that address.
func TestBadKeyFloodIsRefused(t *testing.T) {
	s := newStack(t)
	cfg := s.config(t)
	base := run(t, cfg)
	if code, _, body := postPart(t, base, s.key); code != 200 {
		t.Fatalf("good key: %d %s", code, body)
	}
	codes := map[int]int{}
	var retry string
	start := time.Now()
	for range 60 {
		k, _, _ := auth.NewKey()
		code, ra, _ := postPart(t, base, k)
		codes[code]++
		if code == 429 {
			retry = ra
		}
	}
	// The budget refills at 0.2 a second: a slow machine may have earned
	// one more look-up, and the wait it announces is what is left of the
	// next token's 5 s.
	refilled := int(time.Since(start).Seconds() * 0.2)
	if codes[401] < 10 || codes[401] > 10+refilled || codes[401]+codes[429] != 60 || !retryWithin(retry, 5) {
		t.Errorf("60 random keys: %v, Retry-After %q; want 10 (+%d refilled) × 401, the rest 429, Retry-After 1 to 5", codes, retry, refilled)
	}
	if code, _, body := postPart(t, base, s.key); code != 200 {
		t.Errorf("good key after the flood: %d %s", code, body)
	}
	metrics := scrape(t, cfg)
	if want := `takt_ingestor_auth_store_lookups_total{result="not_found"} 10`; !strings.Contains(string(metrics), want) {
		t.Errorf("metrics lack %q:\n%s", want, grepLines(string(metrics), "auth_store_lookups"))
	}
}

// retryWithin reports whether a Retry-After header is a whole number of
// seconds from 1 to max.
func retryWithin(h string, max int) bool {
	n, err := strconv.Atoi(h)
	return err == nil && n >= 1 && n <= max
}
