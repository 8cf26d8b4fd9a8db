package redisx_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/takt/takt/internal/redisx"
	"github.com/takt/takt/internal/testenv"
)

// TestKeys pins the key layout: processes of two versions share Redis
// during a rolling deploy, so a renamed key splits their caches, counters
// and rate limits.
func TestKeys(t *testing.T) {
	k := redisx.NewKeys("p:")
	for _, tc := range []struct{ got, want string }{
		{k.APIKeys(), "p:apikey:"},
		{redisx.Invalidations(k.APIKeys()), "p:apikey:invalidate"},
		{k.Locations(), "p:location:"},
		{redisx.Invalidations(k.Locations()), "p:location:invalidate"},
		{k.RateLimitBucket(42), "p:ratelimit:42"},
		{k.RateLimitUsed(), "p:ratelimit:used"},
		{k.RateLimitCopyLock(), "p:ratelimit:usedcopy"},
		{k.RecordIDs(), "p:ids"},
		{k.Cursors(), "p:cursor:"},
		{k.MasterDataChanges(), "p:invalidate"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

// TestListen: the listener hears its subscription and the messages of its
// channel only, and Listen returns when ctx ends.
func TestListen(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	channel := redisx.NewKeys(prefix).MasterDataChanges()
	var (
		mu         sync.Mutex
		subscribed []bool
		msgs       []string
	)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		redisx.Listen(ctx, rdb, channel, redisx.Listener{
			Subscribed: func(resumed bool) { mu.Lock(); subscribed = append(subscribed, resumed); mu.Unlock() },
			Message:    func(p string) { mu.Lock(); msgs = append(msgs, p); mu.Unlock() },
		})
	}()
	waitFor(t, func() bool { return rdb.PubSubNumSub(ctx, channel).Val()[channel] == 1 })
	rdb.Publish(ctx, channel+"-other", "elsewhere")
	rdb.Publish(ctx, channel, "products")
	rdb.Publish(ctx, channel, "reasons")
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(msgs) == 2 })
	mu.Lock()
	if msgs[0] != "products" || msgs[1] != "reasons" || len(subscribed) != 1 || subscribed[0] {
		t.Errorf("messages %q, subscriptions %v", msgs, subscribed)
	}
	mu.Unlock()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Listen did not return after ctx ended")
	}
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestListenResumes: when Redis drops the subscription's connection, the
// listener is told once that it is down, subscribes again, and hears that
// it resumed (messages may have been lost meanwhile).
func TestListenResumes(t *testing.T) {
	_, prefix := testenv.Redis(t)
	name := strings.TrimSuffix(strings.ReplaceAll(prefix, ":", ""), "-") // CLIENT SETNAME allows no spaces
	rdb := redis.NewClient(&redis.Options{Addr: testenv.Stack(t).Redis, ClientName: name})
	defer rdb.Close()
	channel := redisx.NewKeys(prefix).MasterDataChanges()
	var (
		mu         sync.Mutex
		subscribed []bool
		downs      int
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go redisx.Listen(ctx, rdb, channel, redisx.Listener{
		Subscribed: func(resumed bool) { mu.Lock(); subscribed = append(subscribed, resumed); mu.Unlock() },
		Down:       func(error) { mu.Lock(); downs++; mu.Unlock() },
	})
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(subscribed) == 1 })
	// Kill this test's connections only (by name), not the shared stack's.
	list, err := rdb.ClientList(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	killed := 0
	for _, line := range strings.Split(list, "\n") {
		if strings.Contains(line, " name="+name+" ") && strings.Contains(line, "cmd=subscribe") {
			id := strings.TrimPrefix(strings.Fields(line)[0], "id=")
			if err := rdb.Do(ctx, "CLIENT", "KILL", "ID", id).Err(); err != nil {
				t.Fatal(err)
			}
			killed++
		}
	}
	if killed != 1 {
		t.Fatalf("found %d subscribed connections named %s in:\n%s", killed, name, list)
	}
	resumed := func() int {
		n := 0
		for _, r := range subscribed {
			if r {
				n++
			}
		}
		return n
	}
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return resumed() > 0 })
	// go-redis subscribes again on its own as well: a second confirmation,
	// not resumed, may follow.
	time.Sleep(100 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if subscribed[0] || resumed() != 1 || downs != 1 {
		t.Errorf("subscriptions (resumed) %v, downs %d", subscribed, downs)
	}
}
