// Package bootstrap prepares an empty production database for the record
// API: the first site, the first admin user, an API key with every scope,
// and a secret key for signed calls (taktctl bootstrap). Everything after
// that is managed through the record API.
package bootstrap

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/takt/takt/internal/auth"
	"github.com/takt/takt/internal/chstore"
)

// Credentials are the secrets a bootstrap or a demo seed hands out. They are
// shown once: only the API key's hash is stored.
type Credentials struct {
	APIKey       string
	SecretKey    string
	SecretServer string
}

// SiteID is the id of the site an empty database gets.
const SiteID = 1

// ErrNotEmpty means FirstAdmin found users already: it only starts empty
// databases.
var ErrNotEmpty = errors.New("database already has users")

// FirstAdmin writes what an empty database needs before the record API can
// be used: site 1 (when there is no site) with time zone tz, an admin user
// over every site, an API key with every scope, and a secret key under
// server for signed calls (users and API keys are then managed through the
// record API). It refuses with ErrNotEmpty when a user exists. The key and
// the secret are returned once; only the key's hash is stored.
func FirstAdmin(ctx context.Context, s *chstore.Store, username, tz, server string) (Credentials, error) {
	n, err := s.QueryUint64(ctx, "SELECT count() FROM (SELECT * FROM users FINAL) WHERE deleted = 0")
	if err != nil {
		return Credentials{}, fmt.Errorf("bootstrap: %w", err)
	}
	if n > 0 {
		return Credentials{}, fmt.Errorf("bootstrap: %w", ErrNotEmpty)
	}
	audit := chstore.Audit{CreatedBy: "bootstrap", LastUpdatedBy: "bootstrap"}
	zones, err := s.SiteTimezones(ctx)
	if err != nil {
		return Credentials{}, fmt.Errorf("bootstrap: %w", err)
	}
	if len(zones) == 0 {
		if err := s.PutSite(ctx, chstore.Site{ID: SiteID, Description: "Site 1", Timezone: tz, Audit: audit}); err != nil {
			return Credentials{}, fmt.Errorf("bootstrap site: %w", err)
		}
		zones = map[uint64]string{SiteID: tz}
	}
	sites := make([]uint64, 0, len(zones))
	for id := range zones {
		sites = append(sites, id)
	}
	if err := s.PutUser(ctx, chstore.User{ID: 1, Username: username, Admin: true, Sites: sites, Active: true, Audit: audit}); err != nil {
		return Credentials{}, fmt.Errorf("bootstrap user: %w", err)
	}
	key, prefix, hash := auth.NewKey()
	if err := s.PutAPIKey(ctx, chstore.APIKey{ID: 1, User: 1, Prefix: prefix, Hash: hash,
		Scopes: []string{auth.ScopeIngest, auth.ScopeRead, auth.ScopeWrite, auth.ScopeAdmin}, Active: true, Audit: audit}); err != nil {
		return Credentials{}, fmt.Errorf("bootstrap api key: %w", err)
	}
	secret, err := NewSecret()
	if err != nil {
		return Credentials{}, fmt.Errorf("bootstrap: %w", err)
	}
	if err := s.PutSecretKey(ctx, chstore.SecretKey{ID: 1, User: 1, Server: server, Secret: secret, Active: true, Audit: audit}); err != nil {
		return Credentials{}, fmt.Errorf("bootstrap secret key: %w", err)
	}
	return Credentials{APIKey: key, SecretKey: secret, SecretServer: server}, nil
}

// NewSecret returns a new secret key for signed calls: 32 random bytes,
// hex-encoded.
func NewSecret() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("make secret: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
