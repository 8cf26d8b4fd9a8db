package chcompat_test

import (
	"context"
	"testing"
	"time"

	"github.com/takt/takt/internal/chcompat"
	"github.com/takt/takt/internal/testenv"
)

// TestWorkloadOnReference checks the check itself: the reference server
// against a second database of its own, filled only by the recorded
// statements written as text. Every read must agree, so the recording
// misses nothing the data depends on, and the text (literals, VALUES)
// means what clickhouse-go's binding means.
func TestWorkloadOnReference(t *testing.T) {
	cfg := testenv.ClickHouseConfig(t)
	e := testenv.Stack(t)
	ctx := context.Background()
	server := &chcompat.HTTP{URL: e.ClickHouseHTTP}
	mirror := testenv.Name("takt_test_")
	if err := server.Exec(ctx, "CREATE DATABASE `"+mirror+"`", nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := server.Exec(ctx, "DROP DATABASE IF EXISTS `"+mirror+"`", nil); err != nil {
			t.Logf("drop %s: %v", mirror, err)
		}
	})
	ref := &chcompat.HTTP{URL: e.ClickHouseHTTP, Database: cfg.Database}
	cur := &chcompat.HTTP{URL: e.ClickHouseHTTP, Database: mirror}
	c := runWorkload(t, cur, mirror, cfg, ref, false)
	t.Log(summary(c))
}
