// Package schemas holds Takt's contracts that are not Go: the ClickHouse
// migrations (clickhouse/NNNN_name.sql, applied in order by chstore.Migrate),
// the JSON Schema of the Kafka part message and the OpenAPI description of
// the two HTTP APIs. The SQL files are embedded so every binary carries the
// migrations it expects.
package schemas

import "embed"

// ClickHouse holds the migration files under clickhouse/.
//
//go:embed clickhouse/*.sql
var ClickHouse embed.FS
