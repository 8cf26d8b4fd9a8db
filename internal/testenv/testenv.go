// Package testenv gives integration tests real services (ClickHouse,
// Redis, a Kafka-protocol broker) and scratch resources inside them: a
// migrated database, a topic and a Redis key prefix of the test's own,
// removed when the test ends.
//
// TAKT_TEST_STACK chooses the services (see Stack): the local stack
// (`make up`; addresses from the TAKT_* variables, as in .run/env, with its
// defaults), or the container stack (official images through
// testcontainers-go, containers.go). A local service that does not answer
// fails the test; the container stack skips where no Docker engine answers
// unless TAKT_REQUIRE_DOCKER=1; `go test -short` skips integration tests,
// and says so.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/config"
)

// Endpoints are the addresses of the stack's services.
type Endpoints struct {
	ClickHouse []string
	// ClickHouseHTTP is the URL of ClickHouse's HTTP interface.
	ClickHouseHTTP string
	// ClickHouseCluster is the cluster the ClickHouse addresses form
	// (TAKT_CLICKHOUSE_CLUSTER, as make up-cluster sets it), or "" for a
	// single server: scratch databases are then replicated.
	ClickHouseCluster string
	Redis             string
	Brokers           []string
}

// Stack returns the addresses of the stack the tests run on, chosen by
// TAKT_TEST_STACK: local (the default) is the local stack, whose addresses
// it checks accept connections; containers the container stack, started
// once per test process; auto the container stack when a Docker engine
// answers, else the local one. Under -short it skips the test.
func Stack(t testing.TB) Endpoints {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs the local stack (run without -short, after make up)")
	}
	var env config.Env
	containers, err := chooseStack(env.String("TEST_STACK", "local"), dockerHealth, requireDocker())
	if err != nil {
		t.Fatal(err)
	}
	if containers {
		return containerStack(t)
	}
	return localStack(t)
}

// chooseStack tells whether TAKT_TEST_STACK=mode means the container
// stack; docker says whether an engine answers (asked only for auto).
// With TAKT_REQUIRE_DOCKER=1 (require), auto does not fall back to the
// local stack.
func chooseStack(mode string, docker func() error, require bool) (bool, error) {
	switch mode {
	case "local":
		return false, nil
	case "containers":
		return true, nil
	case "auto":
		err := docker()
		if err != nil && require {
			return false, fmt.Errorf("TAKT_TEST_STACK=auto with TAKT_REQUIRE_DOCKER=1, and no Docker engine answers: %w", err)
		}
		return err == nil, nil
	}
	return false, fmt.Errorf("TAKT_TEST_STACK=%q: want local, containers or auto", mode)
}

// localStack returns the local stack's addresses after checking each one
// accepts connections.
func localStack(t testing.TB) Endpoints {
	t.Helper()
	var env config.Env
	e := Endpoints{
		ClickHouse:        env.List("CLICKHOUSE_ADDR", []string{"127.0.0.1:19000"}),
		ClickHouseHTTP:    env.String("CLICKHOUSE_HTTP", "http://127.0.0.1:18123"),
		ClickHouseCluster: env.String("CLICKHOUSE_CLUSTER", ""),
		Redis:             env.String("REDIS_ADDR", "127.0.0.1:16379"),
		Brokers:           env.List("KAFKA_BROKERS", []string{"127.0.0.1:19092"}),
	}
	for _, a := range append(append([]string{e.Redis}, e.ClickHouse...), e.Brokers...) {
		c, err := net.DialTimeout("tcp", a, 2*time.Second)
		if err != nil {
			t.Fatalf("local stack not reachable at %s (start it with `make up`): %v", a, err)
		}
		c.Close()
	}
	return e
}

// Name returns a short random name with the given prefix, safe for
// ClickHouse databases, topics and Redis prefixes.
func Name(prefix string) string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// Logger returns a logger that writes to the test log when -v is given.
func Logger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// ClickHouseConfig returns a store config for a new scratch database; the
// database is dropped when the test ends.
func ClickHouseConfig(t testing.TB) chstore.Config {
	t.Helper()
	e := Stack(t)
	cfg := chstore.Config{
		Addr: e.ClickHouse, Database: Name("takt_test_"), User: "default",
		DialTimeout: 5 * time.Second, ReadTimeout: 60 * time.Second, MaxOpenConns: 8,
		Cluster: e.ClickHouseCluster,
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s, err := chstore.Open(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Logf("drop scratch database %s: %v", cfg.Database, err)
			return
		}
		defer s.Close()
		drop := "DROP DATABASE IF EXISTS `" + cfg.Database + "`"
		if cfg.Cluster != "" {
			drop += " ON CLUSTER `" + cfg.Cluster + "`"
		}
		if err := s.Exec(ctx, drop); err != nil {
			t.Logf("drop scratch database %s: %v", cfg.Database, err)
		}
	})
	return cfg
}

// ClickHouse opens a migrated scratch database.
func ClickHouse(t testing.TB) (*chstore.Store, chstore.Config) {
	t.Helper()
	cfg := ClickHouseConfig(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := chstore.Open(ctx, cfg, Logger(t))
	if err != nil {
		t.Fatalf("open clickhouse: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return s, cfg
}

// Topic creates a topic with the given partition count and deletes it when
// the test ends.
func Topic(t testing.TB, partitions int32) string {
	t.Helper()
	e := Stack(t)
	name := Name("takt-test-")
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.Brokers...))
	if err != nil {
		t.Fatalf("kafka client: %v", err)
	}
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := adm.CreateTopic(ctx, partitions, 1, nil, name)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		cl.Close()
		t.Fatalf("create topic %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := adm.DeleteTopics(ctx, name); err != nil {
			t.Logf("delete topic %s: %v", name, err)
		}
		cl.Close()
	})
	return name
}

// Redis returns a client and a key prefix of the test's own; keys under the
// prefix are deleted when the test ends.
func Redis(t testing.TB) (*redis.Client, string) {
	t.Helper()
	e := Stack(t)
	rdb := redis.NewClient(&redis.Options{Addr: e.Redis})
	prefix := Name("takt-test-") + ":"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if len(keys) > 0 {
			rdb.Del(ctx, keys...)
		}
		rdb.Close()
	})
	return rdb, prefix
}

// Join is strings.Join for addresses, handy for building env-style configs.
func Join(addrs []string) string { return strings.Join(addrs, ",") }

// binaries are the programs Binary built, by package and tags.
var binaries = struct {
	sync.Mutex
	dir   string
	built map[string]string
}{built: map[string]string{}}

// Binary builds the Go package pkg (an import path) with the given build
// tags, once per test process, and returns the program's path. Tests
// that run a service as a process of their own (to SIGKILL it) use it;
// RemoveBinaries, called from TestMain, deletes what it built. It skips
// under -short like Stack.
func Binary(tb testing.TB, pkg string, tags ...string) string {
	tb.Helper()
	Stack(tb) // skip under -short before paying for the build
	binaries.Lock()
	defer binaries.Unlock()
	key := pkg + " " + strings.Join(tags, ",")
	if bin, ok := binaries.built[key]; ok {
		return bin
	}
	if binaries.dir == "" {
		dir, err := os.MkdirTemp("", "takt-test-bin-")
		if err != nil {
			tb.Fatal(err)
		}
		binaries.dir = dir
	}
	bin := filepath.Join(binaries.dir, fmt.Sprintf("bin%d", len(binaries.built)))
	args := []string{"build", "-o", bin}
	if len(tags) > 0 {
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	out, err := exec.Command("go", append(args, pkg)...).CombinedOutput()
	if err != nil {
		tb.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	binaries.built[key] = bin
	return bin
}

// RemoveBinaries deletes the programs Binary built.
func RemoveBinaries() {
	binaries.Lock()
	defer binaries.Unlock()
	if binaries.dir != "" {
		os.RemoveAll(binaries.dir)
		binaries.dir, binaries.built = "", map[string]string{}
	}
}

// Environ is this process's environment without its TAKT_ variables, plus
// vars: the environment of a Takt service a test starts as a process.
func Environ(vars map[string]string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TAKT_") {
			env = append(env, kv)
		}
	}
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	return env
}
