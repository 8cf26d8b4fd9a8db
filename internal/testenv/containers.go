package testenv

// The container stack: ClickHouse and Redis on the official images that
// compose/docker-compose.yml pins, and Apache Kafka in KRaft mode, started
// through testcontainers-go once per test process and shared by its tests
// (each still works in scratch resources of its own). testcontainers'
// reaper (Ryuk) removes the containers when the process ends.

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/go-units"
	"github.com/goccy/go-yaml"
	"github.com/moby/moby/api/types/container"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/modules/kafka"
	tcredis "github.com/testcontainers/testcontainers-go/modules/redis"
	"github.com/testcontainers/testcontainers-go/wait"
	"golang.org/x/sync/errgroup"

	"github.com/takt/takt/internal/config"
)

// KafkaImage is the broker of the container stack: Apache Kafka in KRaft
// mode as Confluent packages it, the image testcontainers' Kafka module
// runs (compose's apache/kafka needs its advertised port before it starts,
// which a container with a random host port cannot know).
const KafkaImage = "confluentinc/confluent-local:7.5.0"

var containers struct {
	once sync.Once
	e    Endpoints
	err  error
}

// containerStack returns the container stack's endpoints, starting it the
// first time. Without a Docker engine it skips the test, or fails it under
// TAKT_REQUIRE_DOCKER=1.
func containerStack(tb testing.TB) Endpoints {
	tb.Helper()
	if err := dockerHealth(); err != nil {
		noDocker(tb, err)
	}
	containers.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		containers.e, containers.err = startContainers(ctx)
	})
	if containers.err != nil {
		tb.Fatalf("container stack: %v", containers.err)
	}
	return containers.e
}

// noDocker ends a test that needs the container stack where no Docker
// engine answers: a skip, or a failure when TAKT_REQUIRE_DOCKER=1 says a
// run without the containers must not pass.
func noDocker(tb testing.TB, err error) {
	tb.Helper()
	if requireDocker() {
		tb.Fatalf("TAKT_REQUIRE_DOCKER=1, and no Docker engine answers for the container stack: %v", err)
	}
	if t, ok := tb.(*testing.T); ok {
		t.Logf("container stack (TAKT_TEST_STACK): no Docker engine answers (testcontainers: %v); TAKT_REQUIRE_DOCKER=1 would fail the test", err)
		testcontainers.SkipIfProviderIsNotHealthy(t)
	}
	tb.Skipf("container stack (TAKT_TEST_STACK): no Docker engine answers (testcontainers: %v); TAKT_REQUIRE_DOCKER=1 would fail the test", err)
}

// requireDocker reports TAKT_REQUIRE_DOCKER: a run on a machine that
// must test on containers.
func requireDocker() bool {
	var env config.Env
	return env.Bool("REQUIRE_DOCKER", false)
}

var docker struct {
	once sync.Once
	err  error
}

// dockerHealth reports whether a Docker engine answers (nil) or why not;
// it asks once per process.
func dockerHealth() error {
	docker.once.Do(func() {
		defer func() {
			// testcontainers panics on some set-ups without an engine.
			if r := recover(); r != nil {
				docker.err = fmt.Errorf("%v", r)
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		p, err := testcontainers.ProviderDocker.GetProvider()
		if err != nil {
			docker.err = err
			return
		}
		defer p.Close()
		docker.err = p.Health(ctx)
	})
	return docker.err
}

// startContainers starts the three containers at once and points this
// process's TAKT_* addresses at them, so that service configs a test reads
// from the environment find them too.
func startContainers(ctx context.Context) (Endpoints, error) {
	images, err := ComposeImages()
	if err != nil {
		return Endpoints{}, err
	}
	var e Endpoints
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		c, err := testcontainers.GenericContainer(gctx, testcontainers.GenericContainerRequest{
			ContainerRequest: testcontainers.ContainerRequest{
				Image:        images["clickhouse"],
				ExposedPorts: []string{"9000/tcp", "8123/tcp"},
				// As compose runs it: the default user without a
				// password, reachable from outside the container.
				Env: map[string]string{"CLICKHOUSE_SKIP_USER_SETUP": "1"},
				HostConfigModifier: func(hc *container.HostConfig) {
					hc.Ulimits = []*units.Ulimit{{Name: "nofile", Soft: 262144, Hard: 262144}}
				},
				WaitingFor: wait.ForHTTP("/ping").WithPort("8123/tcp").WithStartupTimeout(3 * time.Minute),
			},
			Started: true,
		})
		if err != nil {
			return fmt.Errorf("clickhouse %s: %w", images["clickhouse"], err)
		}
		native, err := c.PortEndpoint(gctx, "9000/tcp", "")
		if err != nil {
			return fmt.Errorf("clickhouse: %w", err)
		}
		httpURL, err := c.PortEndpoint(gctx, "8123/tcp", "http")
		if err != nil {
			return fmt.Errorf("clickhouse: %w", err)
		}
		e.ClickHouse, e.ClickHouseHTTP = []string{native}, httpURL
		return nil
	})
	g.Go(func() error {
		c, err := tcredis.Run(gctx, images["redis"])
		if err != nil {
			return fmt.Errorf("redis %s: %w", images["redis"], err)
		}
		s, err := c.ConnectionString(gctx)
		if err != nil {
			return fmt.Errorf("redis: %w", err)
		}
		u, err := url.Parse(s)
		if err != nil {
			return fmt.Errorf("redis address %q: %w", s, err)
		}
		e.Redis = u.Host
		return nil
	})
	g.Go(func() error {
		c, err := kafka.Run(gctx, KafkaImage, kafka.WithClusterID("takt-test"))
		if err != nil {
			return fmt.Errorf("kafka %s: %w", KafkaImage, err)
		}
		brokers, err := c.Brokers(gctx)
		if err != nil {
			return fmt.Errorf("kafka: %w", err)
		}
		e.Brokers = brokers
		return nil
	})
	if err := g.Wait(); err != nil {
		// Started containers are the reaper's to remove.
		return Endpoints{}, err
	}
	for k, v := range map[string]string{
		"TAKT_CLICKHOUSE_ADDR": Join(e.ClickHouse), "TAKT_CLICKHOUSE_HTTP": e.ClickHouseHTTP,
		"TAKT_REDIS_ADDR": e.Redis, "TAKT_KAFKA_BROKERS": Join(e.Brokers),
	} {
		if err := os.Setenv(k, v); err != nil {
			return Endpoints{}, err
		}
	}
	return e, nil
}

// ComposeImages returns the image of each service of
// compose/docker-compose.yml: the container stack runs what compose pins.
func ComposeImages() (map[string]string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return nil, errors.New("compose file: no source path")
	}
	path := filepath.Join(filepath.Dir(file), "..", "..", "compose", "docker-compose.yml")
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("compose file: %w", err)
	}
	var doc struct {
		Services map[string]struct {
			Image string `yaml:"image"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("compose file %s: %w", path, err)
	}
	images := map[string]string{}
	for name, s := range doc.Services {
		if s.Image != "" {
			images[name] = s.Image
		}
	}
	for _, need := range []string{"clickhouse", "redis"} {
		if !strings.Contains(images[need], ":") {
			return nil, fmt.Errorf("compose file %s: service %s has no pinned image (%q)", path, need, images[need])
		}
	}
	return images, nil
}
