package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/takt/takt/internal/demo"
)

// wmAnswer is a read's envelope and its X-Takt-Watermark.
type wmAnswer struct {
	status    int
	watermark int64
	header    bool
	env       envelope
}

func (p *pipeline) readWM(t *testing.T, path string, args url.Values) wmAnswer {
	t.Helper()
	args.Set("auth", p.apiKey)
	resp, err := http.Get(p.query + path + "?" + args.Encode())
	if err != nil {
		t.Fatalf("get %s: %v", path, err)
	}
	defer resp.Body.Close()
	a := wmAnswer{status: resp.StatusCode}
	if h := resp.Header.Get("X-Takt-Watermark"); h != "" {
		a.header = true
		if a.watermark, err = strconv.ParseInt(h, 10, 64); err != nil {
			t.Fatalf("%s: X-Takt-Watermark %q: %v", path, h, err)
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&a.env); err != nil {
		t.Fatalf("decode %s: %v", path, err)
	}
	return a
}

// postAt sends one part of line 1 recorded at rec and returns when its
// 200 came (Unix ms).
func (p *pipeline) postAt(t *testing.T, rec time.Time) int64 {
	t.Helper()
	status, body := p.post(t, fmt.Sprintf(`{"part":{"external_id":%q,"recorded_at":%q}}`,
		demo.LineExternalID, rec.UTC().Format(time.RFC3339Nano)))
	if status != http.StatusOK {
		t.Fatalf("post: %d %s", status, body)
	}
	return time.Now().UnixMilli()
}

// TestReadYourWrites: every read of parts, productionperiods, pitches and
// oee carries the watermark; a read with min_watermark set to a part's
// 200 waits until the part is in it, in the parts area's default order;
// one that cannot be met fails after 5 s; a malformed one is refused.
func TestReadYourWrites(t *testing.T) {
	p := start(t, "")
	base := time.Now().Add(-time.Hour).Truncate(time.Second)

	for i := range 5 {
		rec := base.Add(time.Duration(i) * time.Second)
		acked := p.postAt(t, rec)
		a := p.readWM(t, "/api/1.0/parts/", url.Values{"externalid": {demo.LineExternalID},
			"recorded_at": {rec.UTC().Format("2006-01-02T15:04:05.000Z")}, "min_watermark": {strconv.FormatInt(acked, 10)}})
		if a.status != http.StatusOK || !a.env.Success {
			t.Fatalf("part %d: read with min_watermark: %d %s", i, a.status, a.env.Error)
		}
		if !a.header || a.watermark < acked {
			t.Errorf("part %d: watermark %d (header %v), want at least its 200 at %d", i, a.watermark, a.header, acked)
		}
		if len(a.env.Data) != 1 {
			t.Errorf("part %d acknowledged at %d: the default order at watermark %d holds %d of it", i, acked, a.watermark, len(a.env.Data))
		}
	}

	// Every area the parts feed carries the watermark, as does OEE.
	day := time.Now().UTC().Truncate(24 * time.Hour)
	for _, c := range []struct{ path, args string }{
		{"/api/1.0/productionperiods/", "limit=5"},
		{"/api/1.0/pitches/", "limit=5"},
		{"/api/1.0/oee/", fmt.Sprintf("site=%d&start=%s&end=%s", demo.SiteID, day.Add(-24*time.Hour).Format(time.RFC3339), day.Add(24*time.Hour).Format(time.RFC3339))},
		{"/api/1.0/parts/", "order_by=-id&limit=5"},
	} {
		args, _ := url.ParseQuery(c.args)
		args.Set("min_watermark", base.UTC().Format(time.RFC3339))
		a := p.readWM(t, c.path, args)
		if a.status != http.StatusOK || !a.env.Success || !a.header || a.watermark < base.UnixMilli() {
			t.Errorf("%s?%s: %d success=%v %q, watermark %d (header %v)", c.path, c.args, a.status, a.env.Success, a.env.Error, a.watermark, a.header)
		}
	}
	// Areas the parts do not feed have none.
	if a := p.readWM(t, "/api/1.0/sites/", url.Values{}); a.header {
		t.Errorf("sites carry a watermark: %d", a.watermark)
	}

	// Malformed: 400, whatever the area.
	for _, bad := range []string{"yesterday", "-1", "12:00", ""} {
		a := p.readWM(t, "/api/1.0/parts/", url.Values{"min_watermark": {bad}})
		if a.status != http.StatusBadRequest || a.env.Success || a.env.Error == "" {
			t.Errorf("min_watermark=%q: %d success=%v %q, want 400", bad, a.status, a.env.Success, a.env.Error)
		}
	}

	// A watermark an hour ahead is not reached: success=false after the
	// wait, with the watermark reached.
	ahead := time.Now().Add(time.Hour).UnixMilli()
	began := time.Now()
	a := p.readWM(t, "/api/1.0/parts/", url.Values{"min_watermark": {strconv.FormatInt(ahead, 10)}})
	if a.env.Success || a.env.Error == "" || !a.header || a.watermark >= ahead {
		t.Errorf("unreachable min_watermark: %d success=%v %q, watermark %d", a.status, a.env.Success, a.env.Error, a.watermark)
	}
	if waited := time.Since(began); waited < 4*time.Second || waited > 15*time.Second {
		t.Errorf("unreachable min_watermark answered after %s, want after its 5 s wait", waited)
	}
}

// TestWatermarkHoldsUnderIngest sends parts one after the other while
// reading the parts area in its default order: each answer holds every
// part whose 200 came at or before the answer's watermark.
func TestWatermarkHoldsUnderIngest(t *testing.T) {
	p := start(t, "")
	base := time.Now().Add(-2 * time.Hour).Truncate(time.Second)
	const n = 50
	var mu sync.Mutex
	acks := map[string]int64{} // recorded_at as the area shows it → 200 at
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			rec := base.Add(time.Duration(i) * time.Second)
			status, body := p.post(t, fmt.Sprintf(`{"part":{"external_id":%q,"recorded_at":%q}}`,
				demo.MachineExternalID, rec.UTC().Format(time.RFC3339)))
			at := time.Now().UnixMilli()
			if status != http.StatusOK {
				t.Errorf("post %d: %d %s", i, status, body)
				return
			}
			mu.Lock()
			acks[rec.UTC().Format("2006-01-02 15:04:05.000")] = at
			mu.Unlock()
			time.Sleep(10 * time.Millisecond)
		}
	}()
	reads, checked := 0, 0
	var last int64 // the watermark of the last read
	deadline := time.Now().Add(60 * time.Second)
	for finished := false; ; {
		select {
		case <-done:
			finished = true
		case <-time.After(30 * time.Millisecond):
		}
		if finished {
			mu.Lock()
			complete := len(acks) == n
			for _, at := range acks {
				complete = complete && at <= last
			}
			mu.Unlock()
			if complete || time.Now().After(deadline) {
				break
			}
		}
		a := p.readWM(t, "/api/1.0/parts/", url.Values{"externalid": {demo.MachineExternalID}, "fields": {"recorded_at"}, "limit": {"2000"}})
		if !a.env.Success || !a.header {
			t.Fatalf("read: success=%v %q, header %v", a.env.Success, a.env.Error, a.header)
		}
		reads++
		last = a.watermark
		shown := map[string]bool{}
		for _, r := range a.env.Data {
			shown[r["recorded_at"].(string)] = true
		}
		mu.Lock()
		for rec, at := range acks {
			if at <= a.watermark {
				checked++
				if !shown[rec] {
					t.Errorf("part recorded %s, acknowledged at %d, missing from an answer with watermark %d", rec, at, a.watermark)
				}
			}
		}
		mu.Unlock()
	}
	if last < time.Now().Add(-time.Minute).UnixMilli() || checked < n {
		t.Fatalf("%d reads, %d part-in-answer checks, the last at watermark %d: the watermark did not pass every part", reads, checked, last)
	}
	t.Logf("%d reads, %d part-in-answer checks", reads, checked)
}
