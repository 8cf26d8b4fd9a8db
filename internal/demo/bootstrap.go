package demo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/takt/takt/internal/auth"
	"github.com/takt/takt/internal/chstore"
)

// ErrNotEmpty means Bootstrap found users already: it only starts empty
// databases.
var ErrNotEmpty = errors.New("database already has users")

// Bootstrap writes what an empty database needs before the record API can
// be used: site 1 (when there is no site) with time zone tz, an admin user
// over every site, an API key with every scope, and a secret key under
// server for signed calls (users and API keys are then managed through the
// record API). It refuses with ErrNotEmpty when a user exists. The key and
// the secret are returned once; only the key's hash is stored.
func Bootstrap(ctx context.Context, s *chstore.Store, username, tz, server string) (Seeded, error) {
	n, err := s.QueryUint64(ctx, "SELECT count() FROM (SELECT * FROM users FINAL) WHERE deleted = 0")
	if err != nil {
		return Seeded{}, fmt.Errorf("bootstrap: %w", err)
	}
	if n > 0 {
		return Seeded{}, fmt.Errorf("bootstrap: %w", ErrNotEmpty)
	}
	audit := chstore.Audit{CreatedBy: "bootstrap", LastUpdatedBy: "bootstrap"}
	zones, err := s.SiteTimezones(ctx)
	if err != nil {
		return Seeded{}, fmt.Errorf("bootstrap: %w", err)
	}
	if len(zones) == 0 {
		if err := s.PutSite(ctx, chstore.Site{ID: SiteID, Description: "Site 1", Timezone: tz, Audit: audit}); err != nil {
			return Seeded{}, fmt.Errorf("bootstrap site: %w", err)
		}
		zones = map[uint64]string{SiteID: tz}
	}
	sites := make([]uint64, 0, len(zones))
	for id := range zones {
		sites = append(sites, id)
	}
	if err := s.PutUser(ctx, chstore.User{ID: 1, Username: username, Admin: true, Sites: sites, Active: true, Audit: audit}); err != nil {
		return Seeded{}, fmt.Errorf("bootstrap user: %w", err)
	}
	key, prefix, hash := auth.NewKey()
	if err := s.PutAPIKey(ctx, chstore.APIKey{ID: 1, User: 1, Prefix: prefix, Hash: hash,
		Scopes: []string{auth.ScopeIngest, auth.ScopeRead, auth.ScopeWrite, auth.ScopeAdmin}, Active: true, Audit: audit}); err != nil {
		return Seeded{}, fmt.Errorf("bootstrap api key: %w", err)
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return Seeded{}, fmt.Errorf("bootstrap secret: %w", err)
	}
	secret := hex.EncodeToString(b[:])
	if err := s.PutSecretKey(ctx, chstore.SecretKey{ID: 1, User: 1, Server: server, Secret: secret, Active: true, Audit: audit}); err != nil {
		return Seeded{}, fmt.Errorf("bootstrap secret key: %w", err)
	}
	return Seeded{APIKey: key, SecretKey: secret, SecretServer: server}, nil
}

// DemoKeyRate and DemoKeyBurst are the demo key's own rate limit (parts
// per second): far above what one machine can ingest, so the limiter never
// bounds a benchmark run with the demo key.
const (
	DemoKeyRate  = 1_000_000
	DemoKeyBurst = 2_000_000
)

// setKeyLimit gives API key id its own rate limit.
func setKeyLimit(ctx context.Context, s *chstore.Store, id uint64, rate, burst float64) error {
	row, a, err := s.ReadRow(ctx, "apikeys", id)
	if err != nil {
		return fmt.Errorf("key %d rate limit: %w", id, err)
	}
	if row["rate_limit"] == rate && row["rate_burst"] == burst {
		return nil
	}
	row["rate_limit"], row["rate_burst"] = rate, burst
	a.Version++
	if err := s.WriteRow(ctx, "apikeys", id, row, a); err != nil {
		return fmt.Errorf("key %d rate limit: %w", id, err)
	}
	return nil
}
