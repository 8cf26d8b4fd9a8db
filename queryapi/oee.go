package queryapi

// GET /api/1.0/oee/: ISO 22400 figures of a site over a window, split into
// buckets and groups. parseOEEArgs lists the arguments; oeecalc.go puts
// the figures together.
//
// Semantics worth knowing:
//   - Time elements come from production periods (productionperiods,
//     newest version, not deleted). Scheduled time (the location's shifts;
//     a line's own shifts replace the site's; no shifts: all time) that no
//     period covers is still planned busy time, but neither production nor
//     downtime: it is reported as unrecorded_time, and it lowers
//     availability. A location with no periods at all (the processor has
//     not written any yet) thus shows planned_busy_time = its scheduled
//     time, actual_production_time 0, and availability, performance and oee
//     0: Takt does not guess running time from the parts (a line that made
//     parts at 06:00 and 14:00 was not necessarily running in between).
//     Quantities, quality and ideal_production_time are exact regardless.
//   - A product (product= or group_by=product) gets its quantities,
//     ideal_production_time and quality, never time: a period belongs to a
//     location, not to a product (a stop between two products is neither's,
//     and splitting run time by each product's share of ideal time would
//     give every product of a run that run's performance by construction).
//     So the time elements and every ratio built on them are null there;
//     never a product's ideal time over the whole location's run time.
//   - Quantities are the parts the processor placed in scheduled time
//     (parts.oee_class 'counted'); parts made outside the shifts and parts
//     too late to change any period are in no time element, so they are
//     reported apart (unscheduled_quantity, late_quantity). Parts recorded
//     after now are not counted yet. ideal_production_time uses the ideal
//     cycle time each part was processed with (ideal=current: today's).
//   - A line that reports parts itself stands for its machines in every
//     sum (line=, group_by=line, the site): its machines' parts are
//     usually the line's parts again. They are answered on their own with
//     machine=, externalid= or group_by=location.
//   - locations, locations_unrecorded and coverage (the share of planned
//     busy time that periods account for) say how much of a row's time is
//     known: at site scope, a location that never reported lowers
//     availability with unrecorded time, and these say so.
//   - Scheduled time is counted up to now: the future is not planned busy
//     time yet.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/sync/errgroup"

	"github.com/takt/takt/internal/auth"
	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/l2l"
	"github.com/takt/takt/internal/oee"
)

// Bounds of one OEE request.
const (
	// oeeMaxWindow is the longest window a request may ask for.
	oeeMaxWindow = 366 * 24 * time.Hour
	// oeeMaxRows bounds buckets × groups of one answer.
	oeeMaxRows = 20_000
	// oeeMaxSegments bounds the segments the window is cut into.
	oeeMaxSegments = 50_000
)

// oeeReader reads what the figures need (*chstore.Store).
type oeeReader interface {
	OEEMaster(ctx context.Context, site uint64) (chstore.OEEMaster, error)
	OEEParts(ctx context.Context, sc chstore.OEEScope, cuts []int64, raw bool) ([]chstore.OEEPartsRow, error)
	OEEPeriods(ctx context.Context, sc chstore.OEEScope, from, to int64) ([]chstore.OEEPeriod, error)
}

// oeeServer serves GET /api/1.0/oee/ with the record areas' authentication,
// envelope and metrics.
type oeeServer struct {
	h     *handler
	store oeeReader
	now   func() time.Time
	// raw reads parts from the raw table only (benchmarks).
	raw bool
}

func newOEE(h *handler, store oeeReader) *oeeServer {
	return &oeeServer{h: h, store: store, now: time.Now}
}

// routes adds GET /api/1.0/oee[/]; static paths win over the record
// areas' /api/1.0/:area.
func (o *oeeServer) routes(r *gin.Engine) {
	r.GET(Prefix+"oee", o.serve)
	r.GET(Prefix+"oee/", o.serve)
}

// oeeArgs are the parsed arguments of a request.
type oeeArgs struct {
	site       uint64
	line       uint64
	machine    uint64
	externalID string
	product    string
	window     oee.Window
	bucket     oee.Bucket
	by         grouping
	micro      bool
	// currentIdeal: ideal_production_time from today's master data
	// (ideal=current) instead of the ideal cycle time stored with each
	// part.
	currentIdeal bool
}

// oeeArgNames are the arguments the endpoint knows besides authentication
// and signing ones.
var oeeArgNames = map[string]bool{
	"site": true, "line": true, "machine": true, "externalid": true, "product": true,
	"start": true, "end": true, "bucket": true, "group_by": true, "ideal": true, "format": true, "l2lfmt_microseconds": true,
	"auth": true, "realuser": true, "_server": true, "_expiration": true, "_signature": true,
	minWatermarkArg: true,
}

// parseOEEArgs checks every argument and reports every problem, each
// naming its argument.
func parseOEEArgs(args url.Values) (oeeArgs, []string) {
	var a oeeArgs
	var problems []string
	bad := func(format string, v ...any) { problems = append(problems, fmt.Sprintf(format, v...)) }
	keys := make([]string, 0, len(args))
	for k := range args {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		switch {
		case !oeeArgNames[k]:
			bad("%s: unknown argument", k)
		case len(args[k]) > 1:
			bad("%s: given %d times; give it once", k, len(args[k]))
		}
	}
	id := func(name string, required bool) uint64 {
		v := args.Get(name)
		if v == "" {
			if required {
				bad("%s: required", name)
			}
			return 0
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n == 0 {
			bad("%s: %q is not an id", name, v)
		}
		return n
	}
	a.site = id("site", true)
	a.line = id("line", false)
	a.machine = id("machine", false)
	a.externalID = args.Get("externalid")
	a.product = args.Get("product")
	n := 0
	for _, set := range []bool{a.line != 0, a.machine != 0, a.externalID != ""} {
		if set {
			n++
		}
	}
	if n > 1 {
		bad("line, machine, externalid: give at most one of them")
	}
	instant := func(name string) int64 {
		v := args.Get(name)
		if v == "" {
			bad("%s: required (UTC ISO 8601, e.g. 2024-03-04T06:00:00Z)", name)
			return 0
		}
		t, err := l2l.ParseValue(l2l.DateTime, v)
		switch {
		case errors.Is(err, l2l.ErrOutOfRange):
			bad("%s: %v", name, err)
			return 0
		case err != nil:
			bad("%s: %q is not an ISO 8601 date-time", name, v)
			return 0
		}
		return t.(time.Time).UnixMilli()
	}
	a.window.Start, a.window.End = instant("start"), instant("end")
	if a.window.Start != 0 && a.window.End != 0 {
		switch d := time.Duration(a.window.End-a.window.Start) * time.Millisecond; {
		case d <= 0:
			bad("end: must be after start")
		case d > oeeMaxWindow:
			bad("end: the window is %s long; at most %d days", d, oeeMaxWindow/(24*time.Hour))
		}
	}
	b, err := oee.ParseBucket(args.Get("bucket"))
	if err != nil {
		bad("bucket: %q: want none, hour, shift, day, week or month", args.Get("bucket"))
	}
	a.bucket = b
	if g := args.Get("group_by"); g != "" {
		for _, d := range strings.Split(g, ",") {
			switch strings.TrimSpace(d) {
			case "location":
				a.by.location = true
			case "line":
				a.by.line = true
			case "product":
				a.by.product = true
			case "shift":
				a.by.shift = true
			default:
				bad("group_by: %q: want location, line, product or shift (or a comma-separated list)", d)
			}
		}
	}
	switch v := args.Get("ideal"); v {
	case "", "stored":
	case "current":
		a.currentIdeal = true
	default:
		bad("ideal: %q: want stored (the ideal cycle time each part was processed with) or current (today's)", v)
	}
	switch v := args.Get("l2lfmt_microseconds"); v {
	case "", "false", "False", "0":
	case "true", "True", "1":
		a.micro = true
	default:
		bad("l2lfmt_microseconds: %q: want true or false", v)
	}
	return a, problems
}

// serve answers one request.
func (o *oeeServer) serve(c *gin.Context) {
	h := o.h
	args := c.Request.URL.Query()
	r := &request{c: c, start: time.Now(), label: "oee", format: l2l.FormatOf(args)}
	cl, ok := h.authorize(r, args, auth.ScopeRead)
	if !ok {
		return
	}
	sites := cl.sites
	a, problems := parseOEEArgs(args)
	r.query.Microseconds = a.micro
	invalid := func(problems ...string) {
		h.finish(r, http.StatusOK, "invalid", l2l.Response{Error: strings.Join(problems, "; "), Errors: problems})
	}
	if len(problems) > 0 {
		invalid(problems...)
		return
	}
	// A site the caller may not see is answered like one that does not
	// exist.
	unknownSite := fmt.Sprintf("site: no site %d", a.site)
	if !slices.Contains(sites, a.site) {
		invalid(unknownSite)
		return
	}
	if _, ok := h.readWatermark(r, true); !ok {
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), h.timeout)
	defer cancel()
	fig, problems, err := o.figures(ctx, a)
	switch {
	case err != nil:
		h.readFailed(r, err)
		return
	case len(problems) > 0:
		invalid(problems...)
		return
	}
	m, loc, rows := fig.m, fig.loc, fig.rows
	fields, values := renderOEE(a, m, loc, rows)
	h.m.records.WithLabelValues(r.label).Add(float64(len(values)))
	h.finish(r, http.StatusOK, "ok", l2l.List(fields, values, len(values), 0))
}

// oeeFigures are the rows of an OEE request with the site's master data
// and time zone; more holds the rows of other groupings of the same reads.
type oeeFigures struct {
	m    chstore.OEEMaster
	loc  *time.Location
	rows []*oeeRow
	more [][]*oeeRow
}

// figures computes the rows a (checked arguments) asks for, or the
// problems of arguments that do not fit the site (its site must be one of
// the caller's). The rows of each of also (a's other groupings of the same
// window and buckets) are computed from the same reads, so the answers
// agree.
func (o *oeeServer) figures(ctx context.Context, a oeeArgs, also ...grouping) (oeeFigures, []string, error) {
	unknownSite := fmt.Sprintf("site: no site %d", a.site)
	m, err := o.store.OEEMaster(ctx, a.site)
	if err != nil {
		return oeeFigures{}, nil, err
	}
	if !m.Found {
		return oeeFigures{}, []string{unknownSite}, nil
	}
	loc, err := time.LoadLocation(m.Timezone)
	if err != nil || m.Timezone == "" {
		loc = time.UTC
	}
	sc, scope, problem := resolveScope(a, m)
	if problem != "" {
		return oeeFigures{}, []string{problem}, nil
	}
	plan, err := newOEEPlan(a.window, o.now().UnixMilli(), loc, a.bucket, a.by, m, scope)
	if err != nil {
		return oeeFigures{}, nil, fmt.Errorf("shifts of site %d: %w", a.site, err)
	}
	plan.currentIdeal = a.currentIdeal
	if n := plan.bucketCount() * plan.groupCount(len(m.Products)); n > oeeMaxRows || plan.segments() > oeeMaxSegments {
		return oeeFigures{}, []string{fmt.Sprintf("bucket, group_by: the answer would have up to %d rows (%d buckets), more than %d: "+
			"shorten the window (start, end) or choose coarser buckets", n, plan.bucketCount(), oeeMaxRows)}, nil
	}
	var parts []chstore.OEEPartsRow
	var periods []chstore.OEEPeriod
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		var err error
		parts, err = o.store.OEEParts(gctx, sc, plan.cuts, o.raw)
		return err
	})
	g.Go(func() error {
		var err error
		periods, err = o.store.OEEPeriods(gctx, sc, a.window.Start, a.window.End)
		return err
	})
	if err := g.Wait(); err != nil {
		return oeeFigures{}, nil, err
	}
	fig := oeeFigures{m: m, loc: loc, rows: plan.compute(parts, periods)}
	for _, by := range also {
		other, err := newOEEPlan(a.window, plan.now, loc, a.bucket, by, m, scope)
		if err != nil {
			return oeeFigures{}, nil, fmt.Errorf("shifts of site %d: %w", a.site, err)
		}
		if !slices.Equal(other.cuts, plan.cuts) {
			return oeeFigures{}, nil, fmt.Errorf("oee: groupings of one window cut it differently")
		}
		other.currentIdeal = a.currentIdeal
		fig.more = append(fig.more, other.compute(parts, periods))
	}
	return fig, nil, nil
}

// resolveScope turns line, machine, externalid and product into the
// locations and product to read, or a problem naming the argument.
func resolveScope(a oeeArgs, m chstore.OEEMaster) (chstore.OEEScope, []chstore.OEELocation, string) {
	sc := chstore.OEEScope{Site: a.site}
	var scope []chstore.OEELocation
	// A line that reports parts itself stands for its machines in sums.
	reporting := map[uint64]bool{}
	for _, l := range m.Locations {
		if l.Kind == "line" {
			reporting[l.ID] = true
		}
	}
	standsFor := func(l chstore.OEELocation) bool { return l.Kind == "machine" && reporting[l.Line] }
	switch {
	case a.line != 0:
		for _, l := range m.Locations {
			if l.Line == a.line && !standsFor(l) {
				scope = append(scope, l)
			}
		}
		if len(scope) == 0 {
			return sc, nil, fmt.Sprintf("line: no location on line %d of site %d", a.line, a.site)
		}
	case a.machine != 0:
		for _, l := range m.Locations {
			if l.Kind == "machine" && l.ID == a.machine {
				scope = append(scope, l)
			}
		}
		if len(scope) == 0 {
			return sc, nil, fmt.Sprintf("machine: no machine %d with an external id at site %d", a.machine, a.site)
		}
	case a.externalID != "":
		for _, l := range m.Locations {
			if l.ExternalID == a.externalID {
				scope = append(scope, l)
			}
		}
		if len(scope) == 0 {
			return sc, nil, fmt.Sprintf("externalid: no location %q at site %d", a.externalID, a.site)
		}
	case a.by.location:
		sc.All = true
		scope = m.Locations
	default:
		for _, l := range m.Locations {
			if !standsFor(l) {
				scope = append(scope, l)
			}
		}
		sc.All = len(scope) == len(m.Locations)
	}
	if !sc.All {
		for _, l := range scope {
			if l.Kind == "line" {
				sc.Lines = append(sc.Lines, l.ID)
			} else {
				sc.Machines = append(sc.Machines, l.ID)
			}
		}
	}
	if a.product != "" {
		n, err := strconv.ParseUint(a.product, 10, 64)
		for _, p := range m.Products {
			if !p.Deleted && (err == nil && p.ID == n || err != nil && p.Code == a.product) {
				sc.Product = p.ID
			}
		}
		if sc.Product == 0 {
			return sc, nil, fmt.Sprintf("product: no product %q at site %d (give its id or code)", a.product, a.site)
		}
	}
	return sc, scope, ""
}

// renderOEE turns rows into the fields and values of an L2L list answer.
func renderOEE(a oeeArgs, m chstore.OEEMaster, loc *time.Location, rows []*oeeRow) ([]l2l.Field, [][]any) {
	f := func(name string, t l2l.Type, nullable bool) l2l.Field {
		return l2l.Field{Name: name, Type: t, Nullable: nullable}
	}
	fields := []l2l.Field{
		f("site", l2l.Int, false),
		f("start", l2l.DateTime, false), f("end", l2l.DateTime, false),
		f("start_local", l2l.LocalDateTime, false), f("end_local", l2l.LocalDateTime, false),
	}
	if a.by.location {
		fields = append(fields, f("location", l2l.Int, false), f("location_kind", l2l.String, false),
			f("externalid", l2l.String, false))
	}
	if a.by.location || a.by.line {
		fields = append(fields, f("line", l2l.Int, true))
	}
	if a.by.product {
		fields = append(fields, f("product", l2l.Int, false), f("product_code", l2l.String, true))
	}
	if a.by.shift {
		fields = append(fields, f("shift", l2l.String, true))
	}
	timed := !a.by.product && a.product == "" // time elements exist
	for _, n := range []string{"planned_busy_time", "actual_production_time", "unplanned_down_time", "planned_down_time"} {
		fields = append(fields, f(n, l2l.Float, true))
	}
	for _, n := range []string{"produced_quantity", "good_quantity", "scrap_quantity", "rework_quantity"} {
		fields = append(fields, f(n, l2l.Int, false))
	}
	fields = append(fields, f("ideal_production_time", l2l.Float, false),
		f("unscheduled_quantity", l2l.Int, false), f("late_quantity", l2l.Int, false))
	for _, n := range []string{"availability", "performance", "quality", "oee", "teep", "mtbf", "mttr"} {
		fields = append(fields, f(n, l2l.Float, n != "quality"))
	}
	fields = append(fields, f("performance_over_ideal", l2l.Bool, true), f("down_events", l2l.Int, true))
	for _, n := range []string{"availability_loss", "performance_loss", "quality_loss", "calendar_time", "unrecorded_time"} {
		fields = append(fields, f(n, l2l.Float, n != "quality_loss"))
	}
	fields = append(fields, f("locations", l2l.Int, true), f("locations_unrecorded", l2l.Int, true),
		f("coverage", l2l.Float, true))
	codes := map[uint64]string{}
	for _, p := range m.Products {
		codes[p.ID] = p.Code
	}
	opt := func(v any) any {
		if !timed {
			return nil
		}
		return v
	}
	out := make([][]any, 0, len(rows))
	for _, r := range rows {
		start, end := time.UnixMilli(r.start).UTC(), time.UnixMilli(r.end).UTC()
		v := []any{a.site, start, end, start.In(loc), end.In(loc)}
		if a.by.location {
			v = append(v, r.loc, r.kind, r.externalID)
		}
		if a.by.location || a.by.line {
			if r.line == 0 {
				v = append(v, nil)
			} else {
				v = append(v, r.line)
			}
		}
		if a.by.product {
			var code any
			if c, ok := codes[r.product]; ok {
				code = c
			}
			v = append(v, r.product, code)
		}
		if a.by.shift {
			if r.inShift {
				v = append(v, r.shift)
			} else {
				v = append(v, nil)
			}
		}
		e := r.e
		ra := e.Ratios()
		var coverage any
		if e.PlannedBusyTime > 0 {
			coverage = opt(1 - r.unrecorded/e.PlannedBusyTime)
		}
		v = append(v, opt(e.PlannedBusyTime), opt(e.ActualProductionTime), opt(e.UnplannedDownTime), opt(e.PlannedDownTime),
			e.ProducedQuantity, e.GoodQuantity, e.ScrapQuantity, e.ReworkQuantity, e.IdealProductionTime,
			e.UnscheduledQuantity, e.LateQuantity,
			opt(ra.Availability), opt(ra.Performance), ra.Quality, opt(ra.OEE), opt(ra.TEEP), opt(ra.MTBF), opt(ra.MTTR),
			opt(ra.PerformanceOverIdeal), opt(e.DownEvents), opt(ra.AvailabilityLoss), opt(ra.PerformanceLoss), ra.QualityLoss,
			opt(e.CalendarTime), opt(r.unrecorded), opt(len(r.locs)), opt(r.unrecordedLocs()), coverage)
		out = append(out, v)
	}
	return fields, out
}
