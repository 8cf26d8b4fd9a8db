// Package demo writes the demo master data of the local stack: one site with
// a time zone, location line_1, product PROD001, a fallback product, scrap
// reason REASON01, an admin user with an API key allowed to ingest and read,
// and a secret key with its server name for signed calls.
//
// Seeding is idempotent: records have fixed ids, and an API key or secret
// already given (from a previous run's .run/env) is kept when ClickHouse
// still knows it.
package demo

import (
	"context"
	"errors"
	"fmt"

	"github.com/takt/takt/internal/auth"
	"github.com/takt/takt/internal/bootstrap"
	"github.com/takt/takt/internal/chstore"
)

// Fixed ids and names of the demo records.
const (
	SiteID         = bootstrap.SiteID
	SiteTimezone   = "Europe/Berlin"
	LineID         = 1
	LineExternalID = "line_1"
	ProductCode    = "PROD001"
	// ProductIdealCycleTime is PROD001's ideal cycle time in seconds.
	ProductIdealCycleTime = 45.0
	FallbackCode          = "FALLBACK"
	ReasonCode            = "REASON01"
	Username              = "admin"
	SecretServer          = "takt-demo"
	// The line's code, and its machine and the demo dispatch type.
	LineCode          = "LINE1"
	MachineID         = 1
	MachineCode       = "MACHINE1"
	MachineExternalID = "machine_1"
	DispatchTypeID    = 1
	DispatchTypeCode  = "BREAKDOWN"
)

// Seed writes the demo records. apiKey and secret are kept when non-empty
// and still known; otherwise new ones are made.
func Seed(ctx context.Context, s *chstore.Store, apiKey, secret string) (bootstrap.Credentials, error) {
	const by = "seed"
	audit := chstore.Audit{CreatedBy: by, LastUpdatedBy: by}
	steps := []func() error{
		func() error {
			return put(ctx, s, "sites", SiteID, chstore.Row{"description": "Demo Plant", "timezone": SiteTimezone, "test_site": true}, audit)
		},
		func() error {
			return s.PutArea(ctx, chstore.Area{ID: 1, Site: SiteID, Code: "ASSEMBLY", Description: "Assembly", Audit: audit})
		},
		func() error {
			return s.PutLine(ctx, chstore.Line{ID: LineID, Site: SiteID, Area: 1, Code: LineCode, Description: "Line 1", ExternalID: LineExternalID, Audit: audit})
		},
		func() error {
			return s.PutMachine(ctx, chstore.Machine{ID: MachineID, Site: SiteID, Line: LineID, Code: MachineCode,
				Description: "Machine 1 of line 1", ExternalID: MachineExternalID, Audit: audit})
		},
		func() error {
			return put(ctx, s, "dispatchtypes", DispatchTypeID, chstore.Row{"site": uint64(SiteID), "code": DispatchTypeCode,
				"description": "Machine breakdown", "downtime": true}, audit)
		},
		func() error {
			return s.PutProduct(ctx, chstore.Product{ID: 1, Site: SiteID, Code: ProductCode, Description: "Demo product", IdealCycleTime: ProductIdealCycleTime, Audit: audit})
		},
		func() error {
			return s.PutProduct(ctx, chstore.Product{ID: 2, Site: SiteID, Code: FallbackCode, Description: "Unidentified product", IdealCycleTime: 60, Fallback: true, Audit: audit})
		},
		func() error {
			return s.PutReason(ctx, chstore.Reason{ID: 1, Site: SiteID, Code: ReasonCode, Description: "Demo scrap reason", Kind: "scrap", Audit: audit})
		},
		func() error {
			return s.PutUser(ctx, chstore.User{ID: 1, Username: Username, Admin: true, Sites: []uint64{SiteID}, Active: true, Audit: audit})
		},
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return bootstrap.Credentials{}, fmt.Errorf("seed demo data: %w", err)
		}
	}

	out := bootstrap.Credentials{SecretServer: SecretServer}
	if apiKey != "" {
		if _, err := s.KeyByHash(ctx, auth.HashKey(apiKey)); err == nil {
			out.APIKey = apiKey
		} else if !errors.Is(err, chstore.ErrNotFound) {
			return bootstrap.Credentials{}, err
		}
	}
	if out.APIKey == "" {
		key, prefix, hash := auth.NewKey()
		err := s.PutAPIKey(ctx, chstore.APIKey{ID: 1, User: 1, Prefix: prefix, Hash: hash,
			Scopes: []string{"ingest", "read", "write", "admin"}, Active: true, Audit: audit})
		if err != nil {
			return bootstrap.Credentials{}, fmt.Errorf("seed api key: %w", err)
		}
		out.APIKey = key
	}
	if err := setKeyLimit(ctx, s, 1, DemoKeyRate, DemoKeyBurst); err != nil {
		return bootstrap.Credentials{}, err
	}

	if secret != "" {
		if k, err := s.SecretByServer(ctx, SecretServer); err == nil && k.Secret == secret {
			out.SecretKey = secret
		} else if err != nil && !errors.Is(err, chstore.ErrNotFound) {
			return bootstrap.Credentials{}, err
		}
	}
	if out.SecretKey == "" {
		sk, err := bootstrap.NewSecret()
		if err != nil {
			return bootstrap.Credentials{}, err
		}
		out.SecretKey = sk
		err = s.PutSecretKey(ctx, chstore.SecretKey{ID: 1, User: 1, Server: SecretServer, Secret: out.SecretKey, Active: true, Audit: audit})
		if err != nil {
			return bootstrap.Credentials{}, fmt.Errorf("seed secret key: %w", err)
		}
	}
	return out, nil
}

// put writes record id of area with values, every other stored field at
// its default.
func put(ctx context.Context, s *chstore.Store, area string, id uint64, values chstore.Row, audit chstore.Audit) error {
	a := s.Areas().Must(area)
	row := a.ZeroRow()
	for _, f := range a.Fields {
		if f.Stored() && f.Default != nil {
			row[f.Name] = f.Default
		}
	}
	for k, v := range values {
		row[k] = v
	}
	if err := s.WriteRow(ctx, area, id, row, audit); err != nil {
		return fmt.Errorf("%s %d: %w", area, id, err)
	}
	return nil
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
