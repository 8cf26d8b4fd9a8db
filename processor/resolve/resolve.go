// Package resolve decides which product and which scrap reason a part event
// refers to. It is pure and clock-free: a Catalog is built from a snapshot of
// the master data and answers lookups without I/O, so every rule is covered
// by table tests and the processor can swap catalogs atomically on refresh.
//
// Product rules, in order, all within the part's site:
//  1. by code: the reported code equals a product's code exactly
//     (case-sensitive);
//  2. by cycle time: among the site's products with an ideal cycle time
//     (> 0) that are not the fallback product, the one whose ideal cycle
//     time is nearest to the reported cycle time, provided the distance is
//     within tolerance × ideal cycle time; equal distances go to the lower
//     product id;
//  3. the site's fallback product;
//  4. none (product id 0).
//
// The fallback product is left out of rule 2 on purpose: it stands for "we
// could not tell", so a real product within tolerance must win over it, and
// a part it would match by cycle time ends up on it through rule 3 anyway.
package resolve

import (
	"math"
	"sort"
)

// Resolution says which rule resolved a product. The string values are the
// Enum8 names of parts.product_resolution.
type Resolution string

// The resolutions, in the order the rules are tried.
const (
	ByCode      Resolution = "code"
	ByCycleTime Resolution = "cycle_time"
	ByFallback  Resolution = "fallback"
	None        Resolution = "none"
)

// Product is the part of a product record that resolution needs.
type Product struct {
	ID   uint64
	Site uint64
	Code string
	// IdealCycleTime is in seconds; 0 means none is configured.
	IdealCycleTime float64
	Fallback       bool
}

// Reason is the part of a reason record that resolution needs. Kind is
// "scrap" or "downtime"; only scrap reasons explain a scrapped part.
type Reason struct {
	ID   uint64
	Site uint64
	Code string
	Kind string
}

// Result is a resolved product: ID and Code are zero when Resolution is None.
type Result struct {
	ID   uint64
	Code string
	// IdealCycleTime is the product's, in seconds (0: none).
	IdealCycleTime float64
	Resolution     Resolution
}

type siteCode struct {
	site uint64
	code string
}

// Catalog answers product and reason lookups for a snapshot of master data.
// It is immutable after NewCatalog and safe for concurrent use.
type Catalog struct {
	byCode map[siteCode]Product
	// timed lists, per site, the products rule 2 may pick, sorted by id so
	// that the first of equally near products is the lowest id.
	timed     map[uint64][]Product
	fallback  map[uint64]Product
	reasons   map[siteCode]uint64
	tolerance float64
}

// NewCatalog indexes products and reasons. tolerance is the relative
// tolerance of rule 2 (0.1 = ±10% of a product's ideal cycle time); a
// negative or NaN tolerance is treated as 0. When a site has several
// fallback products (the master data should prevent that), the lowest id
// wins; when a code appears twice in a site, the lowest id wins.
func NewCatalog(products []Product, reasons []Reason, tolerance float64) *Catalog {
	if !(tolerance > 0) {
		tolerance = 0
	}
	sorted := make([]Product, len(products))
	copy(sorted, products)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].ID < sorted[j].ID })

	c := &Catalog{
		byCode:    make(map[siteCode]Product, len(sorted)),
		timed:     make(map[uint64][]Product),
		fallback:  make(map[uint64]Product),
		reasons:   make(map[siteCode]uint64, len(reasons)),
		tolerance: tolerance,
	}
	for _, p := range sorted {
		k := siteCode{p.Site, p.Code}
		if _, dup := c.byCode[k]; !dup && p.Code != "" {
			c.byCode[k] = p
		}
		if p.Fallback {
			if _, ok := c.fallback[p.Site]; !ok {
				c.fallback[p.Site] = p
			}
			continue
		}
		if p.IdealCycleTime > 0 && !math.IsInf(p.IdealCycleTime, 0) {
			c.timed[p.Site] = append(c.timed[p.Site], p)
		}
	}
	sortedReasons := make([]Reason, len(reasons))
	copy(sortedReasons, reasons)
	sort.SliceStable(sortedReasons, func(i, j int) bool { return sortedReasons[i].ID < sortedReasons[j].ID })
	for _, r := range sortedReasons {
		if r.Kind != "scrap" {
			continue
		}
		k := siteCode{r.Site, r.Code}
		if _, dup := c.reasons[k]; !dup {
			c.reasons[k] = r.ID
		}
	}
	return c
}

// Tolerance returns the relative cycle-time tolerance of c.
func (c *Catalog) Tolerance() float64 { return c.tolerance }

// HasCode reports whether site has a product with exactly this code.
func (c *Catalog) HasCode(site uint64, code string) bool {
	_, ok := c.byCode[siteCode{site, code}]
	return ok
}

// Product resolves the product of a part reported at site with the given
// product code (empty when none was reported) and cycle time (considered
// only when hasCycleTime).
func (c *Catalog) Product(site uint64, code string, cycleTime float64, hasCycleTime bool) Result {
	if code != "" {
		if p, ok := c.byCode[siteCode{site, code}]; ok {
			return Result{ID: p.ID, Code: p.Code, IdealCycleTime: p.IdealCycleTime, Resolution: ByCode}
		}
	}
	if hasCycleTime && !math.IsNaN(cycleTime) && !math.IsInf(cycleTime, 0) {
		if p, ok := c.nearest(site, cycleTime); ok {
			return Result{ID: p.ID, Code: p.Code, IdealCycleTime: p.IdealCycleTime, Resolution: ByCycleTime}
		}
	}
	if p, ok := c.fallback[site]; ok {
		return Result{ID: p.ID, Code: p.Code, IdealCycleTime: p.IdealCycleTime, Resolution: ByFallback}
	}
	return Result{Resolution: None}
}

// nearest implements rule 2. Candidates are scanned in id order and only a
// strictly nearer one replaces the best, so ties keep the lower id.
func (c *Catalog) nearest(site uint64, cycleTime float64) (Product, bool) {
	var best Product
	bestDist := math.Inf(1)
	for _, p := range c.timed[site] {
		d := math.Abs(cycleTime - p.IdealCycleTime)
		if d > c.tolerance*p.IdealCycleTime {
			continue
		}
		if d < bestDist {
			best, bestDist = p, d
		}
	}
	return best, !math.IsInf(bestDist, 1)
}

// Reason returns the id of the scrap reason with this code at site, or 0
// when the code is empty or unknown there.
func (c *Catalog) Reason(site uint64, code string) uint64 {
	if code == "" {
		return 0
	}
	return c.reasons[siteCode{site, code}]
}
