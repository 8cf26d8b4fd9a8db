package ingestor

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/takt/takt/internal/kafkax"
	"github.com/takt/takt/internal/redisx"
	"github.com/takt/takt/internal/testenv"
)

// TestResendRecordsWrite: the records of a client's messages (pending
// markers, then digests) land in its hash in the order written, and the
// hash outlives every write by at least the session expiry, although its
// expiry is set at most once per refresh.
func TestResendRecordsWrite(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	m, err := newMQTTMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	const ttl = 10 * time.Second
	r := newResends(rdb, prefix, ttl, "", time.Minute, kafkax.Config{}, nil, testenv.Logger(t), m)
	r.refresh = 100 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	key := redisx.NewKeys(prefix).MQTTPublished("dev-x")
	t.Cleanup(func() { rdb.Del(context.Background(), key) })

	// Writes 40 ms apart span many refreshes and more than the margin
	// of a write's own delay: after each, the hash expires no sooner than
	// the session expiry after the write began.
	for i := range 40 {
		pid := uint16(i + 1)
		start := time.Now()
		var marks pendingMarks
		marks.add(pid, fmt.Sprint(i))
		marks.add(pid+100, fmt.Sprint(i))
		w := r.receivedAll(ctx, "dev-x", &marks)
		r.storedAll(ctx, "dev-x", []storedRecord{{pid: pid, digest: fmt.Sprintf("d%d", i)}})
		select {
		case <-w.done:
		case <-time.After(5 * time.Second):
			t.Fatal("markers not written")
		}
		if w.err != nil {
			t.Fatal(w.err)
		}
		got, err := rdb.HMGet(ctx, key, redisx.MQTTPacketField(pid), redisx.MQTTPacketField(pid+100)).Result()
		if err != nil {
			t.Fatal(err)
		}
		if want := []any{fmt.Sprintf("d%d", i), pendingPrefix + fmt.Sprint(i)}; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("write %d: fields %v, want %v (the digest after the marker)", i, got, want)
		}
		left, err := rdb.PTTL(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		if least := ttl - time.Since(start); left < least {
			t.Errorf("write %d: the hash expires in %s, sooner than the session expiry after the write (%s)", i, left, least)
		}
		time.Sleep(40 * time.Millisecond)
	}
}
