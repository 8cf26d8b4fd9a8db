package loadtest

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/takt/takt/internal/chstore"
)

// The harness's master data lives in a dedicated id range, far above what
// people create, on the demo site: lines 9_000_001.. (one per machine,
// external ids lt_m0001..), products 9_000_001.. (LT-P01..) and the scrap
// reason 9_000_001 (LT-SCRAP). Records already there are reused, so
// repeated runs add nothing.
//
// They are written straight into ClickHouse with chstore's Put* because
// the record API has no writes yet; once POST /api/1.0/lines/ and
// /products/ exist, provisioning goes through them (with the same ids),
// which also exercises the caches' invalidation.
const (
	idBase = 9_000_000
	// Site is the site of the harness's locations: the demo site, which
	// the demo key can see.
	Site = 1
)

// provision creates the locations, products and reason the fleet of n
// machines uses, reusing those already present.
func provision(ctx context.Context, store *chstore.Store, n int, logger *slog.Logger) error {
	created := 0
	locs, err := store.Locations(ctx)
	if err != nil {
		return fmt.Errorf("provision locations: %w", err)
	}
	byExt := make(map[string]chstore.Location, len(locs))
	for _, l := range locs {
		byExt[l.ExternalID] = l
	}
	for i := range n {
		ext := externalID(i)
		id := uint64(idBase + i + 1)
		if loc, ok := byExt[ext]; ok {
			if loc.Kind == "line" && loc.ID == id && loc.Site == Site {
				continue
			}
			return fmt.Errorf("provision: external id %s is taken by %s %d of site %d, not the harness's line %d",
				ext, loc.Kind, loc.ID, loc.Site, id)
		}
		if err := store.PutLine(ctx, chstore.Line{
			ID: id, Site: Site, Code: strings.ToUpper(ext),
			Description: "loadtest machine", ExternalID: ext,
			Audit: chstore.Audit{CreatedBy: "loadtest", LastUpdatedBy: "loadtest"},
		}); err != nil {
			return fmt.Errorf("provision %s: %w", ext, err)
		}
		created++
	}

	products, err := store.Products(ctx)
	if err != nil {
		return fmt.Errorf("provision products: %w", err)
	}
	have := map[uint64]bool{}
	for _, p := range products {
		have[p.ID] = true
	}
	for j, p := range fleetProducts {
		id := uint64(idBase + j + 1)
		if have[id] {
			continue
		}
		if err := store.PutProduct(ctx, chstore.Product{
			ID: id, Site: Site, Code: p.Code, Description: "loadtest product", IdealCycleTime: p.IdealCycleTime,
			Audit: chstore.Audit{CreatedBy: "loadtest", LastUpdatedBy: "loadtest"},
		}); err != nil {
			return fmt.Errorf("provision product %s: %w", p.Code, err)
		}
		created++
	}

	reasons, err := store.Reasons(ctx)
	if err != nil {
		return fmt.Errorf("provision reasons: %w", err)
	}
	found := false
	for _, r := range reasons {
		found = found || r.ID == idBase+1
	}
	if !found {
		if err := store.PutReason(ctx, chstore.Reason{
			ID: idBase + 1, Site: Site, Code: scrapReason, Description: "loadtest scrap", Kind: "scrap",
			Audit: chstore.Audit{CreatedBy: "loadtest", LastUpdatedBy: "loadtest"},
		}); err != nil {
			return fmt.Errorf("provision reason: %w", err)
		}
		created++
	}
	logger.Info("provisioned", "machines", n, "created", created, "site", Site)
	return nil
}
