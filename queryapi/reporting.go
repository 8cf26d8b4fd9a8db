package queryapi

// GET /api/1.0/reporting/production/daily_summary_data_by_line/: a line's
// production per local day of its site, in Leading2Lean's terms, from the
// OEE figures (oee.go): actual (good parts), scrap, rework, the planned,
// running, down and ideal minutes, and availability, performance, quality
// and OEE; with show_products, the quantities of each product of the day.
// Arguments are those of an action (actions.go): site (the call's site),
// start and end in the site's local time, linecode, show_products; others
// are ignored.

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/takt/takt/internal/auth"
	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/l2l"
	"github.com/takt/takt/internal/oee"
	"github.com/takt/takt/internal/record"
)

// dailySummaryPath is where the daily summary is served.
const dailySummaryPath = Prefix + "reporting/production/daily_summary_data_by_line"

// dailySummaryCall is how the daily summary's arguments are read.
var dailySummaryCall = &record.Action{Name: "daily_summary_data_by_line", Methods: []string{http.MethodGet},
	Scope: auth.ScopeRead, Doc: "A line's production per local day.",
	Args: []record.Arg{
		{Name: "start", Type: record.ArgTime, Required: true},
		{Name: "end", Type: record.ArgTime, Required: true},
		{Name: "linecode", Type: record.ArgText, Required: true},
		{Name: "show_products", Type: record.ArgBool},
	}}

// lineFinder finds lines by code (*chstore.Store).
type lineFinder interface {
	FindRows(ctx context.Context, area string, match chstore.Row, limit int) ([]chstore.FoundRow, error)
}

// reportingRoutes adds the reporting calls to r.
func (o *oeeServer) reportingRoutes(r *gin.Engine, lines lineFinder) {
	serve := func(c *gin.Context) { o.dailySummary(c, lines) }
	r.GET(dailySummaryPath, serve)
	r.GET(dailySummaryPath+"/", serve)
}

// dailySummary serves the daily summary of a line.
func (o *oeeServer) dailySummary(c *gin.Context, lines lineFinder) {
	h := o.h
	args := c.Request.URL.Query()
	r := &request{c: c, start: time.Now(), label: "reporting/daily_summary", format: l2l.FormatOf(args)}
	cl, ok := h.authorize(r, args, auth.ScopeRead)
	if !ok {
		return
	}
	if v := args.Get("l2lfmt_microseconds"); v != "" {
		r.query.Microseconds, _ = parseFlag(v)
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), h.timeout)
	defer cancel()
	invalid := func(problems ...string) {
		h.finish(r, http.StatusOK, "invalid", l2l.Invalid(&l2l.QueryError{Problems: problems}))
	}
	call := &actionCall{method: http.MethodGet, def: dailySummaryCall, sites: cl.sites, now: o.now().UTC().Truncate(time.Second),
		vals: map[string]any{}}
	site, problems := callSite(args, cl.sites)
	if len(problems) > 0 {
		invalid(problems...)
		return
	}
	call.site, call.loc = site, h.zones.forSites(ctx, []uint64{site})[site]
	if problems := parseActionArgs(dailySummaryCall, args, call); len(problems) > 0 {
		invalid(problems...)
		return
	}
	start, _ := call.time("start")
	end, _ := call.time("end")
	if !end.After(start) {
		invalid(fmt.Sprintf("end: %s is not after start (%s)", end.Format(time.DateTime), start.Format(time.DateTime)))
		return
	}
	code := call.text("linecode")
	found, err := lines.FindRows(ctx, "lines", chstore.Row{"site": site, "code": code}, 1)
	if err != nil {
		h.readFailed(r, err)
		return
	}
	if len(found) == 0 {
		invalid(fmt.Sprintf("linecode: no line %q in site %d", code, site))
		return
	}
	line := found[0].ID
	a := oeeArgs{site: site, line: line, bucket: oee.Day,
		window: oee.Window{Start: start.UnixMilli(), End: end.UnixMilli()}}
	var also []grouping
	if call.flag("show_products") {
		also = append(also, grouping{product: true})
	}
	days, problems, err := o.figures(ctx, a, also...)
	for _, more := range days.more {
		days.rows = append(days.rows, more...)
	}
	switch {
	case err != nil:
		h.readFailed(r, err)
		return
	case len(problems) > 0 && strings.HasPrefix(problems[0], "line: no location"):
		// A line that reports no parts (nor its machines) has no figures.
		days = oeeFigures{loc: call.loc}
	case len(problems) > 0:
		invalid(problems...)
		return
	}
	fields, values := renderDailySummary(days, line, code, call.flag("show_products"))
	h.m.records.WithLabelValues(r.label).Add(float64(len(values)))
	h.finish(r, http.StatusOK, "ok", l2l.List(fields, values, len(values), 0))
}

// renderDailySummary turns the day rows (and the product rows of each day)
// into the answer's records.
func renderDailySummary(fig oeeFigures, line uint64, code string, products bool) ([]l2l.Field, [][]any) {
	f := func(name string, t l2l.Type) l2l.Field { return l2l.Field{Name: name, Type: t} }
	fields := []l2l.Field{f("date", l2l.Date), f("line", l2l.Int), f("linecode", l2l.String), f("start", l2l.DateTime),
		f("end", l2l.DateTime), f("start_local", l2l.LocalDateTime), f("actual", l2l.Int), f("scrap", l2l.Int), f("rework", l2l.Int),
		f("produced", l2l.Int), f("planned_production_minutes", l2l.Float), f("running_minutes", l2l.Float),
		f("down_minutes", l2l.Float), f("planned_down_minutes", l2l.Float), f("ideal_minutes", l2l.Float),
		f("down_events", l2l.Int), f("availability", l2l.Float), f("performance", l2l.Float), f("quality", l2l.Float),
		f("oee", l2l.Float)}
	pfields := []l2l.Field{f("product", l2l.Int), f("productcode", l2l.String), f("actual", l2l.Int), f("scrap", l2l.Int),
		f("rework", l2l.Int), f("produced", l2l.Int), f("ideal_minutes", l2l.Float), f("quality", l2l.Float)}
	if products {
		fields = append(fields, f("products", l2l.Records))
	}
	codes := map[uint64]string{}
	for _, p := range fig.m.Products {
		codes[p.ID] = p.Code
	}
	perDay := map[int64]*l2l.Nested{}
	var out [][]any
	for _, r := range fig.rows {
		e := r.e
		if r.product != 0 {
			n := perDay[r.start]
			if n == nil {
				n = &l2l.Nested{Fields: pfields}
				perDay[r.start] = n
			}
			n.Rows = append(n.Rows, []any{r.product, codes[r.product], e.GoodQuantity, e.ScrapQuantity, e.ReworkQuantity,
				e.ProducedQuantity, e.IdealProductionTime / 60, e.Ratios().Quality})
			continue
		}
		ra := e.Ratios()
		start := time.UnixMilli(r.start).UTC()
		local := start.In(fig.loc)
		date := time.Date(local.Year(), local.Month(), local.Day(), 0, 0, 0, 0, time.UTC)
		out = append(out, []any{date, line, code, start, time.UnixMilli(r.end).UTC(), local, e.GoodQuantity, e.ScrapQuantity,
			e.ReworkQuantity, e.ProducedQuantity, e.PlannedBusyTime / 60, e.ActualProductionTime / 60, e.UnplannedDownTime / 60,
			e.PlannedDownTime / 60, e.IdealProductionTime / 60, e.DownEvents, ra.Availability, ra.Performance, ra.Quality, ra.OEE})
	}
	if products {
		for i := range out {
			start := out[i][3].(time.Time).UnixMilli()
			n := perDay[start]
			if n == nil {
				n = &l2l.Nested{Fields: pfields}
			}
			out[i] = append(out[i], *n)
		}
	}
	return fields, out
}
