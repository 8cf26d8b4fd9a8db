package e2e

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/takt/takt/internal/auth"
	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/demo"
)

// postAs sends one part for externalID with key to the ingestor.
func (p *pipeline) postAs(t *testing.T, key, externalID string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, p.ingest+"/api/external/production/process_part",
		bytes.NewBufferString(`{"part":{"external_id":"`+externalID+`"}}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("API-KEY", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("post: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// write sends a form write to the query API with the demo admin key.
func (p *pipeline) write(t *testing.T, method, path string, args url.Values) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, p.query+path, strings.NewReader(args.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("L2LAUTH", p.apiKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("write: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestClosedSiteStopsIngest: deleting a site, or deactivating it, stops
// ingest for its locations through the real ingestor within the cache
// invalidation time, and the keys of its users (whose only site it was)
// stop authenticating; the other site carries on.
func TestClosedSiteStopsIngest(t *testing.T) {
	keyB, prefB, hashB := auth.NewKey()
	keyC, prefC, hashC := auth.NewKey()
	p := startWith(t, options{setup: func(ctx context.Context, s *chstore.Store) {
		audit := chstore.Audit{CreatedBy: "test", LastUpdatedBy: "test"}
		for _, err := range []error{
			// The demo admin sees sites 1 to 3.
			s.PutUser(ctx, chstore.User{ID: 1, Username: demo.Username, Admin: true, Sites: []uint64{1, 2, 3}, Active: true, Audit: audit}),
			s.PutSite(ctx, chstore.Site{ID: 2, Description: "Plant B", Timezone: "America/Chicago", Audit: audit}),
			s.PutArea(ctx, chstore.Area{ID: 2, Site: 2, Code: "AB", Audit: audit}),
			s.PutLine(ctx, chstore.Line{ID: 2, Site: 2, Area: 2, Code: "LB", ExternalID: "line_b", Audit: audit}),
			s.PutUser(ctx, chstore.User{ID: 5, Username: "plant-b", Sites: []uint64{2}, Active: true, Audit: audit}),
			s.PutAPIKey(ctx, chstore.APIKey{ID: 5, User: 5, Prefix: prefB, Hash: hashB, Scopes: []string{"ingest"}, Active: true, Audit: audit}),
			s.PutSite(ctx, chstore.Site{ID: 3, Description: "Plant C", Timezone: "Asia/Tokyo", Audit: audit}),
			s.PutArea(ctx, chstore.Area{ID: 3, Site: 3, Code: "AC", Audit: audit}),
			s.PutLine(ctx, chstore.Line{ID: 3, Site: 3, Area: 3, Code: "LC", ExternalID: "line_c", Audit: audit}),
			s.PutUser(ctx, chstore.User{ID: 6, Username: "plant-c", Sites: []uint64{3}, Active: true, Audit: audit}),
			s.PutAPIKey(ctx, chstore.APIKey{ID: 6, User: 6, Prefix: prefC, Hash: hashC, Scopes: []string{"ingest"}, Active: true, Audit: audit}),
		} {
			if err != nil {
				t.Fatal(err)
			}
		}
	}})

	for _, tt := range []struct {
		name, site, externalID, key string
		method                      string
		args                        url.Values
	}{
		{"deleted", "2", "line_b", keyB, http.MethodDelete, nil},
		{"deactivated", "3", "line_c", keyC, http.MethodPut, url.Values{"active": {"False"}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// Both keys ingest, and the caches hold the location and keys.
			for _, key := range []string{p.apiKey, tt.key} {
				if status, body := p.postAs(t, key, tt.externalID); status != http.StatusOK {
					t.Fatalf("before: %d %s", status, body)
				}
			}
			if status, body := p.write(t, tt.method, "/api/1.0/sites/"+tt.site+"/", tt.args); status != http.StatusOK || !strings.Contains(body, `"success":true`) {
				t.Fatalf("%s site %s: %d %s", tt.method, tt.site, status, body)
			}
			closed := time.Now()
			const within = 2 * time.Second
			var location, key int
			for time.Since(closed) < within+time.Second {
				location, _ = p.postAs(t, p.apiKey, tt.externalID)
				key, _ = p.postAs(t, tt.key, tt.externalID)
				if location == http.StatusUnprocessableEntity && key == http.StatusUnauthorized {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			took := time.Since(closed)
			t.Logf("closed after %s", took)
			if location != http.StatusUnprocessableEntity || key != http.StatusUnauthorized || took > within {
				t.Errorf("after %s: location of the closed site %d (want 422), key of its user %d (want 401)", took, location, key)
			}
			if status, body := p.postAs(t, p.apiKey, demo.LineExternalID); status != http.StatusOK {
				t.Errorf("site 1 after closing site %s: %d %s", tt.site, status, body)
			}
		})
	}

	// A deactivated site stays visible to its admin, who can open it
	// again: then it takes parts again.
	if status, body := p.write(t, http.MethodPut, "/api/1.0/sites/3/", url.Values{"active": {"True"}}); status != http.StatusOK ||
		!strings.Contains(body, `"success":true`) {
		t.Fatalf("reopen site 3: %d %s", status, body)
	}
	waitFor(t, 3*time.Second, "site 3 taking parts again", func() bool {
		a, _ := p.postAs(t, p.apiKey, "line_c")
		c, _ := p.postAs(t, keyC, "line_c")
		return a == http.StatusOK && c == http.StatusOK
	})
}
