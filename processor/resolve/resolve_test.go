package resolve

import (
	"math"
	"testing"
)

// Site 1 resembles the demo seed plus a few neighbours for cycle-time
// matching; site 2 has the same codes with other ids; site 3 has no
// fallback product.
var testProducts = []Product{
	{ID: 1, Site: 1, Code: "PROD001", IdealCycleTime: 45},
	{ID: 2, Site: 1, Code: "FALLBACK", IdealCycleTime: 60, Fallback: true},
	{ID: 3, Site: 1, Code: "PROD003", IdealCycleTime: 10},
	{ID: 4, Site: 1, Code: "PROD004", IdealCycleTime: 12},
	{ID: 5, Site: 1, Code: "NOCT", IdealCycleTime: 0},
	{ID: 11, Site: 2, Code: "PROD001", IdealCycleTime: 100},
	{ID: 12, Site: 2, Code: "FALLBACK", Fallback: true},
	{ID: 21, Site: 3, Code: "ONLY", IdealCycleTime: 20},
	// Ties: ids 32 and 31 are equally near 15 (16 and 14, listed out
	// of id order on purpose).
	{ID: 32, Site: 4, Code: "HI", IdealCycleTime: 16},
	{ID: 31, Site: 4, Code: "LO", IdealCycleTime: 14},
}

var testReasons = []Reason{
	{ID: 1, Site: 1, Code: "REASON01", Kind: "scrap"},
	{ID: 2, Site: 1, Code: "DOWN01", Kind: "downtime"},
	{ID: 7, Site: 2, Code: "REASON01", Kind: "scrap"},
}

// res is the expected result for product id of testProducts, with its
// ideal cycle time.
func res(id uint64, code string, r Resolution) Result {
	for _, p := range testProducts {
		if p.ID == id {
			return Result{ID: id, Code: code, IdealCycleTime: p.IdealCycleTime, Resolution: r}
		}
	}
	panic("no test product")
}

func TestProduct(t *testing.T) {
	c := NewCatalog(testProducts, testReasons, 0.1)
	tests := []struct {
		name  string
		site  uint64
		code  string
		ct    float64
		hasCT bool
		want  Result
	}{
		{"code exact", 1, "PROD001", 0, false, res(1, "PROD001", ByCode)},
		{"code wins over cycle time", 1, "PROD001", 10, true, res(1, "PROD001", ByCode)},
		{"code of fallback product is a code match", 1, "FALLBACK", 0, false, res(2, "FALLBACK", ByCode)},
		{"code is case-sensitive", 1, "prod001", 0, false, res(2, "FALLBACK", ByFallback)},
		{"code with space is not trimmed", 1, "PROD001 ", 0, false, res(2, "FALLBACK", ByFallback)},
		{"code of another site is not used", 3, "PROD001", 0, false, Result{Resolution: None}},
		{"same code resolves per site", 2, "PROD001", 0, false, res(11, "PROD001", ByCode)},
		{"unknown code falls to cycle time", 1, "NOPE", 45.5, true, res(1, "PROD001", ByCycleTime)},
		{"no code, cycle time exact", 1, "", 45, true, res(1, "PROD001", ByCycleTime)},
		{"cycle time at upper edge (+10%)", 1, "", 49.5, true, res(1, "PROD001", ByCycleTime)},
		{"cycle time at lower edge (-10%)", 1, "", 40.5, true, res(1, "PROD001", ByCycleTime)},
		{"cycle time just above the edge", 1, "", 49.51, true, res(2, "FALLBACK", ByFallback)},
		{"cycle time just below the edge", 1, "", 40.49, true, res(2, "FALLBACK", ByFallback)},
		{"nearest of two candidates", 1, "", 11.1, true, res(4, "PROD004", ByCycleTime)},
		{"nearest of two candidates, other side", 1, "", 10.9, true, res(3, "PROD003", ByCycleTime)},
		{"equal distance goes to lower id", 4, "", 15, true, res(31, "LO", ByCycleTime)},
		{"fallback product is not matched by cycle time", 1, "", 60, true, res(2, "FALLBACK", ByFallback)},
		{"product without ideal cycle time never matches", 1, "", 0, true, res(2, "FALLBACK", ByFallback)},
		{"cycle time not reported is ignored", 1, "", 45, false, res(2, "FALLBACK", ByFallback)},
		{"NaN cycle time is ignored", 1, "", math.NaN(), true, res(2, "FALLBACK", ByFallback)},
		{"cycle time of another site's product is not used", 2, "", 45, true, res(12, "FALLBACK", ByFallback)},
		{"site 2 matches its own ideal", 2, "", 95, true, res(11, "PROD001", ByCycleTime)},
		{"no fallback: none", 3, "X", 50, true, Result{Resolution: None}},
		{"no fallback but cycle time matches", 3, "", 21, true, res(21, "ONLY", ByCycleTime)},
		{"unknown site: none", 99, "PROD001", 45, true, Result{Resolution: None}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := c.Product(tc.site, tc.code, tc.ct, tc.hasCT)
			if got != tc.want {
				t.Errorf("Product(%d, %q, %v, %v) = %+v, want %+v", tc.site, tc.code, tc.ct, tc.hasCT, got, tc.want)
			}
		})
	}
}

func TestProductTolerance(t *testing.T) {
	products := []Product{{ID: 1, Site: 1, Code: "A", IdealCycleTime: 100}}
	tests := []struct {
		tolerance float64
		ct        float64
		want      Resolution
	}{
		{0, 100, ByCycleTime},
		{0, 100.001, None},
		{0.25, 125, ByCycleTime},
		{0.25, 75, ByCycleTime},
		{0.25, 125.01, None},
		{-1, 100, ByCycleTime}, // negative tolerance acts as 0
		{-1, 101, None},
		{math.NaN(), 100, ByCycleTime},
		{math.NaN(), 101, None},
	}
	for _, tc := range tests {
		c := NewCatalog(products, nil, tc.tolerance)
		if got := c.Product(1, "", tc.ct, true).Resolution; got != tc.want {
			t.Errorf("tolerance %v, cycle time %v: got %s, want %s", tc.tolerance, tc.ct, got, tc.want)
		}
	}
}

func TestDuplicatesPreferLowerID(t *testing.T) {
	c := NewCatalog([]Product{
		{ID: 9, Site: 1, Code: "DUP", Fallback: true},
		{ID: 8, Site: 1, Code: "DUP", Fallback: true},
	}, []Reason{
		{ID: 6, Site: 1, Code: "R", Kind: "scrap"},
		{ID: 5, Site: 1, Code: "R", Kind: "scrap"},
	}, 0.1)
	if got := c.Product(1, "DUP", 0, false); got.ID != 8 || got.Resolution != ByCode {
		t.Errorf("duplicate code: got %+v, want id 8 by code", got)
	}
	if got := c.Product(1, "", 0, false); got.ID != 8 || got.Resolution != ByFallback {
		t.Errorf("duplicate fallback: got %+v, want id 8 by fallback", got)
	}
	if got := c.Reason(1, "R"); got != 5 {
		t.Errorf("duplicate reason: got %d, want 5", got)
	}
}

func TestReason(t *testing.T) {
	c := NewCatalog(testProducts, testReasons, 0.1)
	tests := []struct {
		name string
		site uint64
		code string
		want uint64
	}{
		{"known scrap reason", 1, "REASON01", 1},
		{"same code other site", 2, "REASON01", 7},
		{"downtime reason does not explain scrap", 1, "DOWN01", 0},
		{"unknown code", 1, "NOPE", 0},
		{"case-sensitive", 1, "reason01", 0},
		{"empty code", 1, "", 0},
		{"site without reasons", 3, "REASON01", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := c.Reason(tc.site, tc.code); got != tc.want {
				t.Errorf("Reason(%d, %q) = %d, want %d", tc.site, tc.code, got, tc.want)
			}
		})
	}
}

func TestHasCode(t *testing.T) {
	c := NewCatalog(testProducts, nil, 0.1)
	if !c.HasCode(1, "PROD001") || c.HasCode(3, "PROD001") || c.HasCode(1, "") {
		t.Error("HasCode disagrees with the catalog")
	}
}

func TestEmptyCatalog(t *testing.T) {
	c := NewCatalog(nil, nil, 0.1)
	if got := c.Product(1, "X", 1, true); got != (Result{Resolution: None}) {
		t.Errorf("empty catalog: got %+v", got)
	}
	if c.Reason(1, "R") != 0 {
		t.Error("empty catalog has a reason")
	}
}

func BenchmarkProduct(b *testing.B) {
	c := NewCatalog(testProducts, testReasons, 0.1)
	b.ReportAllocs()
	for b.Loop() {
		_ = c.Product(1, "", 11.1, true)
		_ = c.Product(1, "PROD001", 45, true)
	}
}
