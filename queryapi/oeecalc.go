package queryapi

// The computation behind GET /api/1.0/oee/, pure: a plan (segments and
// buckets) made from the arguments and master data before anything is read,
// then rows of figures from the parts sums and periods read for that plan.
//
// A segment is a stretch of the window between two consecutive cut points:
// bucket boundaries and, when rows are split by shift, shift boundaries of
// every calendar involved. Parts are summed per location, product and
// segment in ClickHouse; periods are clipped to segments by internal/oee;
// segments are added into rows. Every figure is a sum of elements, and
// ratios are taken of the sums (oee.Elements.Ratios).

import (
	"cmp"
	"slices"
	"sort"
	"time"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/oee"
	"github.com/takt/takt/internal/period"
)

// grouping says which dimensions split the rows of an OEE answer.
type grouping struct {
	location, line, product, shift bool
}

// locKey names a location.
type locKey struct {
	kind string
	id   uint64
}

// oeeLocation is a location in the scope of a request with its calendar.
type oeeLocation struct {
	key        locKey
	line       uint64
	externalID string
	cal        *period.Calendar
}

// oeePlan is what a request asks for, resolved against master data.
type oeePlan struct {
	window oee.Window
	now    int64
	loc    *time.Location
	bucket oee.Bucket
	by     grouping
	// cuts are the segment boundaries, window start and end included.
	cuts      []int64
	buckets   []oee.Window // bucket != shift
	locations []*oeeLocation
	byKey     map[locKey]*oeeLocation
	siteCal   *period.Calendar
	products  map[uint64]chstore.OEEProduct
	// pieces are each calendar's shift pieces over the window.
	pieces map[*period.Calendar][]period.Piece
	// shiftBuckets are each calendar's shift occurrences (bucket=shift).
	shiftBuckets map[*period.Calendar][]oee.Window
	// currentIdeal: ideal times from today's master data, not from the
	// ideal cycle time stored with each part.
	currentIdeal bool
}

// calendars builds the site calendar (site-wide shifts) and one per line
// that has shifts of its own: a line's own shifts replace the site's (the
// processor's state machines use the same rule, period.Calendars).
func calendars(loc *time.Location, shifts []chstore.OEEShift) (*period.Calendar, map[uint64]*period.Calendar, error) {
	ls := make([]period.LineShift, len(shifts))
	for i, s := range shifts {
		ls[i] = period.LineShift{Line: s.Line, Code: s.Code, Start: s.Start, End: s.End, Days: s.Day}
	}
	return period.Calendars(loc, ls)
}

// newOEEPlan resolves the request's scope and cuts the window into
// segments. It fails only on shifts it cannot parse.
func newOEEPlan(w oee.Window, now int64, loc *time.Location, b oee.Bucket, by grouping,
	m chstore.OEEMaster, scope []chstore.OEELocation) (*oeePlan, error) {
	siteCal, lineCals, err := calendars(loc, m.Shifts)
	if err != nil {
		return nil, err
	}
	p := &oeePlan{window: w, now: now, loc: loc, bucket: b, by: by, siteCal: siteCal,
		byKey: map[locKey]*oeeLocation{}, products: map[uint64]chstore.OEEProduct{},
		pieces: map[*period.Calendar][]period.Piece{}, shiftBuckets: map[*period.Calendar][]oee.Window{}}
	for _, pr := range m.Products {
		p.products[pr.ID] = pr
	}
	for _, l := range scope {
		p.addLocation(l, lineCals)
	}
	cuts := []int64{w.Start, w.End}
	if w.Start < now && now < w.End {
		// Parts recorded after now do not count yet: the segment from
		// now on takes none.
		cuts = append(cuts, now)
	}
	if b != oee.Shift {
		p.buckets = oee.Buckets(b, w, loc, nil)
		for _, bw := range p.buckets {
			cuts = append(cuts, bw.Start, bw.End)
		}
	}
	cals := append([]*period.Calendar{siteCal}, mapValues(lineCals)...)
	for _, c := range cals {
		pcs := c.Scheduled(w.Start, w.End)
		p.pieces[c] = pcs
		if by.shift {
			for _, pc := range pcs {
				cuts = append(cuts, pc.Start, pc.End)
			}
		}
		if b == oee.Shift {
			sb := oee.Buckets(oee.Shift, w, loc, c)
			p.shiftBuckets[c] = sb
			for _, bw := range sb {
				cuts = append(cuts, bw.Start, bw.End)
			}
		}
	}
	slices.Sort(cuts)
	p.cuts = slices.Compact(cuts)
	return p, nil
}

func mapValues[K comparable, V any](m map[K]V) []V {
	out := make([]V, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// addLocation adds a location of the scope; lineCals (nil after planning)
// gives lines their own calendars.
func (p *oeePlan) addLocation(l chstore.OEELocation, lineCals map[uint64]*period.Calendar) *oeeLocation {
	k := locKey{l.Kind, l.ID}
	if ol, ok := p.byKey[k]; ok {
		return ol
	}
	cal := p.siteCal
	if c, ok := lineCals[l.Line]; ok && l.Line != 0 {
		cal = c
	}
	ol := &oeeLocation{key: k, line: l.Line, externalID: l.ExternalID, cal: cal}
	p.byKey[k] = ol
	p.locations = append(p.locations, ol)
	return ol
}

// segments is the number of segments.
func (p *oeePlan) segments() int { return len(p.cuts) - 1 }

// groupCount estimates how many groups a request produces, to bound the
// answer before reading parts.
func (p *oeePlan) groupCount(products int) int {
	n := 1
	if p.by.location {
		n *= max(1, len(p.locations))
	} else if p.by.line {
		lines := map[uint64]bool{}
		for _, l := range p.locations {
			lines[l.line] = true
		}
		n *= max(1, len(lines))
	}
	if p.by.product {
		n *= max(1, products)
	}
	if p.by.shift {
		names := map[string]bool{"": true}
		for _, pcs := range p.pieces {
			for _, pc := range pcs {
				names[pc.Shift] = true
			}
		}
		n *= len(names)
	}
	return n
}

// bucketCount is the number of buckets of the answer (for bucket=shift,
// the most any calendar has).
func (p *oeePlan) bucketCount() int {
	if p.bucket != oee.Shift {
		return len(p.buckets)
	}
	n := 1
	for _, sb := range p.shiftBuckets {
		n = max(n, len(sb))
	}
	return n
}

// oeeKey identifies one row: its bucket and its group.
type oeeKey struct {
	start, end int64
	kind       string
	loc        uint64
	line       uint64
	product    uint64
	shift      string
	inShift    bool
}

// oeeRow is one row of figures.
type oeeRow struct {
	oeeKey
	externalID string
	e          oee.Elements
	// unrecorded is planned busy time no production period accounts for.
	unrecorded float64
	// locs maps the row's locations to their unrecorded time.
	locs map[locKey]float64
}

// unrecordedLocs counts the row's locations with unrecorded time.
func (r *oeeRow) unrecordedLocs() int {
	n := 0
	for _, u := range r.locs {
		if u > 0 {
			n++
		}
	}
	return n
}

// compute adds the parts sums and periods into rows, ordered by bucket
// start, then group.
func (p *oeePlan) compute(parts []chstore.OEEPartsRow, periods []chstore.OEEPeriod) []*oeeRow {
	nseg := p.segments()
	type locSeg struct {
		l   locKey
		seg int
	}
	partsAt := map[locSeg][]chstore.OEEPartsRow{}
	for _, r := range parts {
		if r.Segment < 0 || r.Segment >= nseg || p.cuts[r.Segment] >= p.now {
			continue // outside the window, or recorded after now
		}
		k := locKey{r.Kind, r.Location}
		if _, ok := p.byKey[k]; !ok {
			p.addLocation(chstore.OEELocation{Kind: r.Kind, ID: r.Location}, nil)
		}
		partsAt[locSeg{k, r.Segment}] = append(partsAt[locSeg{k, r.Segment}], r)
	}
	periodsOf := map[locKey][]oee.Period{}
	for _, pr := range periods {
		k := locKey{pr.Kind, pr.Location}
		if _, ok := p.byKey[k]; !ok {
			continue // outside the scope (a deleted location)
		}
		periodsOf[k] = append(periodsOf[k], oee.Period{Location: pr.Location, State: period.State(pr.State),
			Start: pr.Start, End: pr.End, Open: pr.Open, FirstOfStop: pr.FirstOfStop})
	}
	rows := map[oeeKey]*oeeRow{}
	for _, l := range p.locations {
		ps := periodsOf[l.key]
		sort.Slice(ps, func(i, j int) bool { return ps[i].Start < ps[j].Start })
		pieces := p.pieces[l.cal]
		if pieces == nil {
			pieces = p.pieces[p.siteCal]
		}
		shiftBuckets := p.shiftBuckets[l.cal]
		if p.bucket == oee.Shift && shiftBuckets == nil {
			shiftBuckets = p.shiftBuckets[p.siteCal]
		}
		for s := range nseg {
			sw := oee.Window{Start: p.cuts[s], End: p.cuts[s+1]}
			var bw oee.Window
			var ok bool
			if p.bucket == oee.Shift {
				bw, ok = containing(shiftBuckets, sw.Start)
			} else {
				bw, ok = containing(p.buckets, sw.Start)
			}
			if !ok {
				continue
			}
			key := oeeKey{start: bw.Start, end: bw.End}
			if p.by.location {
				key.kind, key.loc = l.key.kind, l.key.id
			}
			if p.by.location || p.by.line {
				key.line = l.line
			}
			if p.by.shift {
				if pc, ok := pieceAt(pieces, sw.Start); ok && pc.Scheduled && pc.Shift != "" {
					key.shift, key.inShift = pc.Shift, true
				}
			}
			if !p.by.product {
				r := rowOf(rows, key, l)
				sub := overlapping(ps, sw.Start, sw.End, p.now)
				e := oee.Compute(sw, p.now, sub, nil)
				un := uncovered(pieces, sub, sw.Start, min(sw.End, p.now), p.now)
				e.PlannedBusyTime += un
				r.e.Add(e)
				r.unrecorded += un
				r.locs[l.key] += un
			}
			for _, q := range partsAt[locSeg{l.key, s}] {
				k := key
				if p.by.product {
					k.product = q.Product
				}
				r := rowOf(rows, k, l)
				r.e.ProducedQuantity += q.Produced
				r.e.GoodQuantity += q.Good
				r.e.ScrapQuantity += q.Scrap
				r.e.ReworkQuantity += q.Rework
				r.e.UnscheduledQuantity += q.Unscheduled
				r.e.LateQuantity += q.Late
				r.e.IdealProductionTime += p.idealTime(q)
			}
		}
	}
	out := make([]*oeeRow, 0, len(rows))
	for _, r := range rows {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b *oeeRow) int {
		return cmp.Or(cmp.Compare(a.start, b.start), cmp.Compare(a.end, b.end), cmp.Compare(a.line, b.line),
			cmp.Compare(a.kind, b.kind), cmp.Compare(a.loc, b.loc), cmp.Compare(a.product, b.product),
			cmp.Compare(a.shift, b.shift))
	})
	return out
}

// idealTime is the ideal production time of the counted parts of q: the
// ideal cycle time stored with each part, for parts stored without one
// their product's backfill ideal; or, with currentIdeal, today's ideal
// cycle time of the product (none for a deleted one).
func (p *oeePlan) idealTime(q chstore.OEEPartsRow) float64 {
	pr := p.products[q.Product]
	if p.currentIdeal {
		if pr.Deleted {
			return 0
		}
		return pr.IdealCycleTime * float64(q.Produced)
	}
	return q.IdealTime + pr.BackfillIdeal*float64(q.UnknownIdeal)
}

func rowOf(rows map[oeeKey]*oeeRow, k oeeKey, l *oeeLocation) *oeeRow {
	r := rows[k]
	if r == nil {
		r = &oeeRow{oeeKey: k, locs: map[locKey]float64{}}
		if k.loc != 0 {
			r.externalID = l.externalID
		}
		rows[k] = r
	}
	if _, ok := r.locs[l.key]; !ok {
		r.locs[l.key] = 0
	}
	return r
}

// containing returns the window of ws (sorted, disjoint) holding t.
func containing(ws []oee.Window, t int64) (oee.Window, bool) {
	i := sort.Search(len(ws), func(i int) bool { return ws[i].End > t })
	if i < len(ws) && ws[i].Start <= t {
		return ws[i], true
	}
	return oee.Window{}, false
}

// pieceAt returns the piece holding t.
func pieceAt(pcs []period.Piece, t int64) (period.Piece, bool) {
	i := sort.Search(len(pcs), func(i int) bool { return pcs[i].End > t })
	if i < len(pcs) && pcs[i].Start <= t {
		return pcs[i], true
	}
	return period.Piece{}, false
}

func periodEnd(p oee.Period, now int64) int64 {
	if p.Open {
		return max(now, p.Start)
	}
	return p.End
}

// overlapping returns the periods of ps (one location's, sorted by start,
// disjoint) that overlap [from, to), with the one before them, which tells
// oee.Compute whether a stop continues across from.
func overlapping(ps []oee.Period, from, to, now int64) []oee.Period {
	i := sort.Search(len(ps), func(i int) bool { return periodEnd(ps[i], now) > from })
	j := sort.Search(len(ps), func(j int) bool { return ps[j].Start >= to })
	if i > 0 {
		i--
	}
	if j < i {
		j = i
	}
	return ps[i:j]
}

// uncovered is the scheduled time within [from, to) that no period covers,
// in seconds: until the processor has written a location's periods, its
// scheduled time is planned busy time of which nothing is known.
func uncovered(pieces []period.Piece, ps []oee.Period, from, to, now int64) float64 {
	if to <= from {
		return 0
	}
	var total int64
	i := sort.Search(len(pieces), func(i int) bool { return pieces[i].End > from })
	for ; i < len(pieces) && pieces[i].Start < to; i++ {
		pc := pieces[i]
		if !pc.Scheduled {
			continue
		}
		s, e := max(pc.Start, from), min(pc.End, to)
		if e <= s {
			continue
		}
		gap := e - s
		for _, p := range ps {
			a, b := max(p.Start, s), min(periodEnd(p, now), e)
			if b > a {
				gap -= b - a
			}
		}
		total += max(gap, 0)
	}
	return float64(total) / 1000
}
