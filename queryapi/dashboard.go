package queryapi

// GET /dashboard/: the OEE dashboard, a page a production manager leaves
// open on a wall. It is static: HTML, CSS and plain JavaScript embedded in
// the binary (no CDN, no build step), drawing SVG. Everything it shows it
// reads from the public API with the key the user entered (sent as
// L2LAUTH), so it sees exactly the key's sites and nothing the API would
// not give that key; the server adds no endpoint for it.
//
// Security: the page builds its DOM with textContent and attributes only
// (values come from users: descriptions, codes, reasons), and every answer
// carries a Content-Security-Policy that allows scripts, styles and
// fetches from this origin only, no inline script or style, no framing.
// The key lives in the browser (localStorage); a key given as ?auth= is
// moved there and removed from the address bar, and Referrer-Policy
// no-referrer keeps it out of other sites' logs. The server logs no
// dashboard request.

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"
)

// DashboardPath is where the dashboard is served.
const DashboardPath = "/dashboard/"

//go:embed web
var webFiles embed.FS

// dashboardCSP is the Content-Security-Policy of every dashboard answer.
const dashboardCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// asset is one embedded file, ready to serve.
type asset struct {
	body  []byte
	ctype string
	etag  string
}

// dashboard serves the embedded page and its assets.
type dashboard struct {
	assets map[string]asset // by path under web/, e.g. "index.html", "assets/app.js"
}

func newDashboard() (*dashboard, error) {
	d := &dashboard{assets: map[string]asset{}}
	err := fs.WalkDir(webFiles, "web", func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := webFiles.ReadFile(p)
		if err != nil {
			return err
		}
		ctype := mime.TypeByExtension(path.Ext(p))
		switch path.Ext(p) { // not left to the host's MIME tables
		case ".js":
			ctype = "text/javascript; charset=utf-8"
		case ".css":
			ctype = "text/css; charset=utf-8"
		case ".html":
			ctype = "text/html; charset=utf-8"
		case ".svg":
			ctype = "image/svg+xml"
		}
		if ctype == "" {
			return fmt.Errorf("dashboard asset %s: unknown type", p)
		}
		sum := sha256.Sum256(b)
		d.assets[strings.TrimPrefix(p, "web/")] = asset{body: b, ctype: ctype, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dashboard assets: %w", err)
	}
	if _, ok := d.assets["index.html"]; !ok {
		return nil, fmt.Errorf("dashboard assets: no index.html")
	}
	return d, nil
}

// routes adds GET /dashboard (a redirect), and GET and HEAD of /dashboard/
// and /dashboard/assets/<file> to r.
func (d *dashboard) routes(r *gin.Engine) {
	r.GET(strings.TrimSuffix(DashboardPath, "/"), func(c *gin.Context) {
		d.headers(c)
		// Relative, so a proxy's path prefix is kept; the query (a key
		// given as ?auth=) goes along.
		loc := "dashboard/"
		if c.Request.URL.RawQuery != "" {
			loc += "?" + c.Request.URL.RawQuery
		}
		c.Header("Location", loc) // not c.Redirect: that makes it absolute
		c.Status(http.StatusMovedPermanently)
	})
	for _, m := range []string{http.MethodGet, http.MethodHead} {
		r.Handle(m, DashboardPath, func(c *gin.Context) { d.serve(c, "index.html") })
		r.Handle(m, DashboardPath+"assets/:file", func(c *gin.Context) { d.serve(c, "assets/"+c.Param("file")) })
	}
}

func (d *dashboard) headers(c *gin.Context) {
	h := c.Writer.Header()
	h.Set("Content-Security-Policy", dashboardCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
}

func (d *dashboard) serve(c *gin.Context, name string) {
	d.headers(c)
	a, ok := d.assets[name]
	if !ok {
		c.Writer.Header().Set("Content-Type", "text/plain; charset=utf-8")
		c.String(http.StatusNotFound, "Not found")
		return
	}
	h := c.Writer.Header()
	// Revalidated on every load (an upgrade shows at once), answered 304
	// while unchanged.
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", a.etag)
	if inm := c.GetHeader("If-None-Match"); inm != "" && etagMatch(inm, a.etag) {
		c.Status(http.StatusNotModified)
		return
	}
	h.Set("Content-Type", a.ctype)
	h.Set("Content-Length", strconv.Itoa(len(a.body)))
	c.Status(http.StatusOK)
	if c.Request.Method != http.MethodHead {
		_, _ = c.Writer.Write(a.body)
	}
}

// etagMatch reports whether an If-None-Match list names etag (weak
// comparison, as RFC 9110 asks for If-None-Match).
func etagMatch(list, etag string) bool {
	for _, t := range strings.Split(list, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == etag || t == "*" {
			return true
		}
	}
	return false
}
