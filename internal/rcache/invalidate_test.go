package rcache

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/takt/takt/internal/testenv"
)

// TestForgetReachesOtherProcesses: Forget on one instance drops the other
// instance's in-process copy through Redis pub/sub, long before LocalTTL.
func TestForgetReachesOtherProcesses(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	src := &source{}
	ctx := context.Background()
	c1, _, _ := newTest(t, src, rdb, prefix, nil)
	c2, _, _ := newTest(t, src, rdb, prefix, nil)
	deadline := time.Now().Add(5 * time.Second)
	for rdb.PubSubNumSub(ctx, c1.channel()).Val()[c1.channel()] < 2 {
		if time.Now().After(deadline) {
			t.Fatal("listeners did not subscribe")
		}
		time.Sleep(5 * time.Millisecond)
	}
	c1.Get(ctx, "good")
	c2.Get(ctx, "good")
	if c1.local.len() != 1 {
		t.Fatalf("c1 holds %d entries", c1.local.len())
	}
	if err := c2.Forget(ctx, "good"); err != nil {
		t.Fatal(err)
	}
	for c1.local.len() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("c1 kept its copy after c2's Forget")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := testutil.ToFloat64(c1.invalidations.WithLabelValues("message")); n < 1 {
		t.Errorf("invalidation messages counted: %v", n)
	}
}
