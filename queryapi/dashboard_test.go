package queryapi

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/takt/takt/internal/httpx"
)

func dashboardEngine(t *testing.T) http.Handler {
	t.Helper()
	d, err := newDashboard()
	if err != nil {
		t.Fatal(err)
	}
	r := httpx.NewEngine(slog.New(slog.NewTextHandler(io.Discard, nil)))
	d.routes(r)
	return r
}

func TestDashboardServesEmbeddedFiles(t *testing.T) {
	r := dashboardEngine(t)
	tests := []struct {
		method, path string
		code         int
		ctype        string
		body         string
	}{
		{"GET", "/dashboard/", 200, "text/html; charset=utf-8", `<script type="module" src="assets/app.js">`},
		{"HEAD", "/dashboard/", 200, "text/html; charset=utf-8", ""},
		{"GET", "/dashboard/assets/app.js", 200, "text/javascript; charset=utf-8", "import {API, AuthError, poll, changes}"},
		{"GET", "/dashboard/assets/dashboard.css", 200, "text/css; charset=utf-8", "--running"},
		{"GET", "/dashboard/assets/favicon.svg", 200, "image/svg+xml", "<svg"},
		{"GET", "/dashboard/assets/nothing.js", 404, "text/plain; charset=utf-8", "Not found"},
	}
	for _, tt := range tests {
		w := httptest.NewRecorder()
		r.ServeHTTP(w, httptest.NewRequest(tt.method, tt.path, nil))
		if w.Code != tt.code || w.Header().Get("Content-Type") != tt.ctype || !strings.Contains(w.Body.String(), tt.body) {
			t.Errorf("%s %s: %d %q %.80q; want %d %q with %q", tt.method, tt.path, w.Code, w.Header().Get("Content-Type"),
				w.Body.String(), tt.code, tt.ctype, tt.body)
		}
		if tt.method == "HEAD" && w.Body.Len() != 0 {
			t.Errorf("HEAD %s has a body", tt.path)
		}
		// Every answer, a 404 too, carries the policy.
		h := w.Header()
		if h.Get("Content-Security-Policy") != dashboardCSP || h.Get("X-Content-Type-Options") != "nosniff" ||
			h.Get("Referrer-Policy") != "no-referrer" || h.Get("X-Frame-Options") != "DENY" {
			t.Errorf("%s %s: security headers %v", tt.method, tt.path, h)
		}
	}

	// The policy allows this origin's scripts and styles only: nothing
	// inline, nothing evaluated, no other origin.
	for _, want := range []string{"default-src 'none'", "script-src 'self';", "style-src 'self';", "connect-src 'self';",
		"frame-ancestors 'none'", "base-uri 'none'"} {
		if !strings.Contains(dashboardCSP, want) {
			t.Errorf("CSP lacks %q", want)
		}
	}
	for _, bad := range []string{"unsafe-inline", "unsafe-eval", "http:", "https:", "*"} {
		if strings.Contains(dashboardCSP, bad) {
			t.Errorf("CSP allows %q", bad)
		}
	}

	// /dashboard redirects, keeping the query (a key given as ?auth=).
	w := httptest.NewRecorder()
	r.ServeHTTP(w, httptest.NewRequest("GET", "/dashboard?auth=k", nil))
	if w.Code != http.StatusMovedPermanently || w.Header().Get("Location") != "dashboard/?auth=k" {
		t.Errorf("/dashboard: %d %q", w.Code, w.Header().Get("Location"))
	}

	// Only the embedded files are served.
	for _, p := range []string{"/dashboard/assets/..%2findex.html", "/dashboard/assets/../../go.mod", "/dashboard/index.html", "/dashboard/web/index.html"} {
		w := httptest.NewRecorder()
		r.ServeHTTP(w, httptest.NewRequest("GET", p, nil))
		if w.Code != http.StatusNotFound && w.Code != http.StatusMovedPermanently || strings.Contains(w.Body.String(), "<html") || strings.Contains(w.Body.String(), "module ") {
			t.Errorf("GET %s: %d %.80q", p, w.Code, w.Body.String())
		}
	}

	// Unchanged files are answered 304.
	w = httptest.NewRecorder()
	r.ServeHTTP(w, httptest.NewRequest("GET", "/dashboard/assets/app.js", nil))
	req := httptest.NewRequest("GET", "/dashboard/assets/app.js", nil)
	req.Header.Set("If-None-Match", w.Header().Get("ETag"))
	w = httptest.NewRecorder()
	r.ServeHTTP(w, req)
	if w.Code != http.StatusNotModified || w.Body.Len() != 0 {
		t.Errorf("revalidation: %d %d bytes", w.Code, w.Body.Len())
	}
}

// TestDashboardAssetsBuildNoMarkup: the page's scripts never turn strings
// into markup or code, and its HTML has no inline script, style or event
// handler (the CSP would refuse them; this says so at build time).
func TestDashboardAssetsBuildNoMarkup(t *testing.T) {
	d, err := newDashboard()
	if err != nil {
		t.Fatal(err)
	}
	sinks := regexp.MustCompile(`\.innerHTML|\.outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|setTimeout\(['"]|setInterval\(['"]|createContextualFragment|DOMParser`)
	for name, a := range d.assets {
		body := string(a.body)
		switch {
		case strings.HasSuffix(name, ".js"):
			if m := sinks.FindString(body); m != "" {
				t.Errorf("%s uses %s", name, m)
			}
		case strings.HasSuffix(name, ".html"):
			for _, re := range []string{`\son[a-z]+\s*=`, `\sstyle\s*=`, `<style`, `javascript:`, `<script[^>]*>[^<]`} {
				if regexp.MustCompile(`(?i)` + re).MatchString(body) {
					t.Errorf("%s matches %s", name, re)
				}
			}
			for _, m := range regexp.MustCompile(`<script[^>]*>`).FindAllString(body, -1) {
				if !strings.Contains(m, ` src="`) {
					t.Errorf("%s: inline script %s", name, m)
				}
			}
		}
	}
}
