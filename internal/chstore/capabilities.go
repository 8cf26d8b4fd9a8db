package chstore

// What Open asks a server once, so that every statement can be the same
// SQL on every release Takt runs on (18.16 to current): settings that
// later releases have and Takt must set. A server that does not know a
// setting refuses it, so each is sent only where system.settings lists it.

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// sessionSettings are the settings Open sends with every statement to the
// servers that have them.
var sessionSettings = []struct {
	name  string
	value int
}{
	// ClickHouse 26.5 (checked: 26.5.1.1) answers ORDER BY ... LIMIT on a
	// MergeTree table with rows missing ("ORDER BY site DESC, id LIMIT 7"
	// over parts left out the first rows) or fails with BAD_GET ("has
	// Null, requested UInt64" in __topKFilter) when this optimisation
	// skips granules. Record-area pages are such reads. Releases without
	// the setting do not have the optimisation.
	{"use_top_k_dynamic_filtering", 0},
}

// SessionSettingsQuery lists which of the session settings a server
// knows: its answer is what SessionSettings takes.
func SessionSettingsQuery() string {
	names := make([]string, len(sessionSettings))
	for i, s := range sessionSettings {
		names[i] = quote(s.name)
	}
	return "SELECT name FROM system.settings WHERE name IN (" + strings.Join(names, ", ") + ") ORDER BY name"
}

// SessionSettings returns the settings to send to a server that knows the
// named settings.
func SessionSettings(known []string) map[string]any {
	out := map[string]any{}
	for _, s := range sessionSettings {
		if slices.Contains(known, s.name) {
			out[s.name] = s.value
		}
	}
	return out
}

// knownSettings returns the session settings the server knows.
func knownSettings(ctx context.Context, conn driver.Conn) ([]string, error) {
	rows, err := conn.Query(ctx, SessionSettingsQuery())
	if err != nil {
		return nil, fmt.Errorf("read the server's settings: %w", err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, fmt.Errorf("read the server's settings: %w", err)
		}
		names = append(names, n)
	}
	return names, rows.Err()
}
