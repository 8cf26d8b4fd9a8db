package testenv

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestChooseStack(t *testing.T) {
	up := func() error { return nil }
	down := func() error { return errors.New("no engine") }
	tests := []struct {
		mode       string
		docker     func() error
		require    bool
		containers bool
		err        string
	}{
		{mode: "local", docker: up, containers: false},
		{mode: "local", docker: down, require: true, containers: false},
		{mode: "containers", docker: down, containers: true},
		{mode: "auto", docker: up, containers: true},
		{mode: "auto", docker: down, containers: false},
		{mode: "auto", docker: down, require: true, err: "no engine"},
		{mode: "docker", docker: up, err: "want local, containers or auto"},
	}
	for _, tt := range tests {
		got, err := chooseStack(tt.mode, tt.docker, tt.require)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s require=%v: error %v, want %q", tt.mode, tt.require, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.containers {
			t.Errorf("%s require=%v: containers %v (%v), want %v", tt.mode, tt.require, got, err, tt.containers)
		}
	}
}

// outcomeTB records how a test would end.
type outcomeTB struct {
	testing.TB
	fatal, skip string
}

func (o *outcomeTB) Helper()             {}
func (o *outcomeTB) Logf(string, ...any) {}
func (o *outcomeTB) Fatalf(f string, args ...any) {
	o.fatal = fmt.Sprintf(f, args...)
	runtime.Goexit()
}
func (o *outcomeTB) Skipf(f string, args ...any) { o.skip = fmt.Sprintf(f, args...); runtime.Goexit() }

func endWithoutDocker() *outcomeTB {
	o := &outcomeTB{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		noDocker(o, errors.New("no engine"))
	}()
	<-done
	return o
}

// TestNoDocker: the container stack without an engine skips a test,
// saying why, and fails it under TAKT_REQUIRE_DOCKER=1.
func TestNoDocker(t *testing.T) {
	t.Setenv("TAKT_REQUIRE_DOCKER", "")
	if o := endWithoutDocker(); o.fatal != "" || !strings.Contains(o.skip, "no Docker engine answers (testcontainers: no engine)") {
		t.Errorf("without TAKT_REQUIRE_DOCKER: fatal %q, skip %q", o.fatal, o.skip)
	}
	t.Setenv("TAKT_REQUIRE_DOCKER", "1")
	if o := endWithoutDocker(); o.skip != "" || !strings.Contains(o.fatal, "TAKT_REQUIRE_DOCKER=1") {
		t.Errorf("with TAKT_REQUIRE_DOCKER=1: fatal %q, skip %q", o.fatal, o.skip)
	}
}

func TestComposeImages(t *testing.T) {
	images, err := ComposeImages()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"clickhouse", "redis"} {
		if name, tag, ok := strings.Cut(images[s], ":"); !ok || name == "" || tag == "" || tag == "latest" {
			t.Errorf("compose's %s image %q is not pinned", s, images[s])
		}
	}
}

// TestStackAnswers: every service of the stack the tests run on (see
// Stack) answers its protocol: ClickHouse over the native protocol (a
// migrated scratch database) and HTTP, Redis, and the broker (a topic).
func TestStackAnswers(t *testing.T) {
	e := Stack(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, _ := ClickHouse(t)
	if n, err := s.QueryUint64(ctx, "SELECT count() FROM schema_migrations"); err != nil || n == 0 {
		t.Errorf("clickhouse: %d migrations (%v)", n, err)
	}
	resp, err := http.Get(e.ClickHouseHTTP + "/ping")
	if err != nil {
		t.Fatalf("clickhouse http: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("clickhouse http /ping: %s", resp.Status)
	}
	rdb, prefix := Redis(t)
	if err := rdb.Set(ctx, prefix+"k", "v", time.Minute).Err(); err != nil {
		t.Errorf("redis: %v", err)
	}
	if v, err := rdb.Get(ctx, prefix+"k").Result(); err != nil || v != "v" {
		t.Errorf("redis: %q %v", v, err)
	}
	topic := Topic(t, 2)
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	td, err := kadm.NewClient(cl).ListTopics(ctx, topic)
	if err != nil || len(td[topic].Partitions) != 2 {
		t.Errorf("broker: topic %s: %+v %v", topic, td[topic], err)
	}
}
