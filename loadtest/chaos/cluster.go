package chaos

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/takt/takt/internal/auth"
	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/demo"
)

// Names of the deployment's database and topics.
const (
	database     = "takt"
	topic        = "takt.parts"
	dlqTopic     = "takt.parts.dlq"
	changesTopic = "takt.period-changes"
)

// limitedKeyID is the id of the API key without a rate limit of its own:
// the ingestor's default limit (limitedRate, limitedBurst) applies to it,
// so the harness can check that limits still hold after Redis lost them.
const (
	limitedKeyID = 2
	limitedRate  = 1
	limitedBurst = 2
)

// Cluster is the harness's own Takt deployment: every process is started
// here, on free loopback ports, with its data under dir.
type Cluster struct {
	dir, bin, root string
	logger         *slog.Logger
	partitions     int

	chTCP, chHTTP, redisPort, brokerPort int
	ingestAddr, queryAddr                string
	procAddr, proc2Addr                  string

	clickhouse, redisProc, broker *proc
	ingestor, processor, queryapi *proc
	processor2                    *proc
	// proxy stands between the services and ClickHouse (the slow-answer
	// fault); the harness itself talks to ClickHouse directly.
	proxy *Proxy

	apiKey, limitedKey string
	httpc              *http.Client
}

// startCluster builds the binaries and starts the deployment under dir
// (which it creates); root is the repository (for compose/local's
// ClickHouse configuration and the Go packages).
func startCluster(ctx context.Context, root, dir string, partitions int, logger *slog.Logger) (_ *Cluster, err error) {
	c := &Cluster{dir: dir, bin: filepath.Join(dir, "bin"), root: root, logger: logger, partitions: partitions,
		httpc: &http.Client{Timeout: 10 * time.Second}}
	for _, d := range []string{"bin", "logs", "redis", "kafka", "clickhouse/log", "clickhouse/data", "clickhouse/tmp",
		"clickhouse/user_files", "clickhouse/format_schemas"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	if err := c.build(ctx); err != nil {
		return nil, err
	}
	ports, err := freePorts(10)
	if err != nil {
		return nil, err
	}
	c.chTCP, c.chHTTP, c.redisPort, c.brokerPort = ports[0], ports[1], ports[2], ports[3]
	c.ingestAddr = "127.0.0.1:" + strconv.Itoa(ports[4])
	c.queryAddr = "127.0.0.1:" + strconv.Itoa(ports[5])
	c.procAddr = "127.0.0.1:" + strconv.Itoa(ports[6])
	c.proc2Addr = "127.0.0.1:" + strconv.Itoa(ports[7])
	ingestAdmin, queryAdmin := "127.0.0.1:"+strconv.Itoa(ports[8]), "127.0.0.1:"+strconv.Itoa(ports[9])
	interserver, err := freePorts(1)
	if err != nil {
		return nil, err
	}
	if err := c.clickhouseConfig(interserver[0]); err != nil {
		return nil, err
	}

	logs := filepath.Join(dir, "logs")
	base := baseEnv()
	c.clickhouse = &proc{name: "clickhouse", log: filepath.Join(logs, "clickhouse.log"), env: base,
		args: []string{clickhouseServer(), "--config-file=" + filepath.Join(dir, "clickhouse", "config.xml")}}
	c.redisProc = &proc{name: "redis", log: filepath.Join(logs, "redis.log"), env: base,
		args: []string{"redis-server", "--bind", "127.0.0.1", "--port", strconv.Itoa(c.redisPort),
			"--dir", filepath.Join(dir, "redis"), "--save", "", "--appendonly", "no", "--protected-mode", "yes", "--daemonize", "no"}}
	c.broker = &proc{name: "broker", log: filepath.Join(logs, "broker.log"), args: []string{filepath.Join(c.bin, "broker")},
		env: withEnv(base, map[string]string{
			"TAKT_BROKER_ADDR":       "127.0.0.1:" + strconv.Itoa(c.brokerPort),
			"TAKT_BROKER_DATA_DIR":   filepath.Join(dir, "kafka"),
			"TAKT_BROKER_TOPICS":     topic + "," + dlqTopic + "," + changesTopic,
			"TAKT_BROKER_PARTITIONS": strconv.Itoa(partitions),
		})}
	for _, step := range []func(context.Context) error{c.startClickHouse, c.startRedis, c.startBroker} {
		if err := step(ctx); err != nil {
			return nil, err
		}
	}
	if c.proxy, err = NewProxy("127.0.0.1:" + strconv.Itoa(c.chTCP)); err != nil {
		return nil, err
	}
	if err := c.seed(ctx); err != nil {
		return nil, err
	}

	svc := withEnv(base, map[string]string{
		"TAKT_CLICKHOUSE_ADDR":      c.proxy.Addr(),
		"TAKT_CLICKHOUSE_DB":        database,
		"TAKT_REDIS_ADDR":           "127.0.0.1:" + strconv.Itoa(c.redisPort),
		"TAKT_KAFKA_BROKERS":        "127.0.0.1:" + strconv.Itoa(c.brokerPort),
		"TAKT_PARTS_TOPIC":          topic,
		"TAKT_DLQ_TOPIC":            dlqTopic,
		"TAKT_PERIOD_CHANGES_TOPIC": changesTopic,
		"TAKT_LOG_FORMAT":           "text",
		// Short in-process cache lives: look-ups go to Redis (and
		// meet its faults) within seconds, not after half a minute.
		"TAKT_AUTH_LOCAL_TTL":     "5s",
		"TAKT_LOCATION_LOCAL_TTL": "5s",
	})
	c.ingestor = &proc{name: "ingestor", log: filepath.Join(logs, "ingestor.log"), args: []string{filepath.Join(c.bin, "ingestor")},
		env: withEnv(svc, map[string]string{
			"TAKT_INGEST_ADDR": c.ingestAddr,
			"TAKT_ADMIN_ADDR":  ingestAdmin,
			"TAKT_RATE_LIMIT":  strconv.Itoa(limitedRate),
			"TAKT_RATE_BURST":  strconv.Itoa(limitedBurst),
		})}
	// Static membership: a restarted processor takes its partitions back
	// at once. The second processor is a dynamic member, so it leaves
	// the group when it stops.
	procEnv := map[string]string{"TAKT_PROCESSOR_ADDR": c.procAddr, "TAKT_CONSUMER_INSTANCE_ID": "chaos-1",
		"TAKT_CONSUMER_SESSION_TIMEOUT": "10s"}
	c.processor = &proc{name: "processor", log: filepath.Join(logs, "processor.log"), args: []string{filepath.Join(c.bin, "processor")},
		env: withEnv(svc, procEnv)}
	c.processor2 = &proc{name: "processor2", log: filepath.Join(logs, "processor2.log"), args: []string{filepath.Join(c.bin, "processor")},
		env: withEnv(svc, map[string]string{"TAKT_PROCESSOR_ADDR": c.proc2Addr, "TAKT_CONSUMER_SESSION_TIMEOUT": "10s"})}
	c.queryapi = &proc{name: "queryapi", log: filepath.Join(logs, "queryapi.log"), args: []string{filepath.Join(c.bin, "queryapi")},
		env: withEnv(svc, map[string]string{"TAKT_QUERY_ADDR": c.queryAddr, "TAKT_ADMIN_ADDR": queryAdmin})}
	for _, p := range []*proc{c.ingestor, c.processor, c.queryapi} {
		if err := c.startService(ctx, p); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Close stops every process the cluster started (services first, then
// the broker, Redis and ClickHouse) and the proxy.
func (c *Cluster) Close() {
	for _, p := range []*proc{c.ingestor, c.queryapi, c.processor2, c.processor, c.broker, c.redisProc, c.clickhouse} {
		if p != nil {
			if err := p.stop(30 * time.Second); err != nil {
				c.logger.Warn("stop", "process", p.name, "err", err)
			}
		}
	}
	if c.proxy != nil {
		c.proxy.Close()
	}
}

// build compiles the broker and the services into c.bin; the processor
// with the takt_failpoints tag (the between-insert-and-commit crash; the
// failpoints are inert unless their variables are set).
func (c *Cluster) build(ctx context.Context) error {
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = "/usr/local/go/bin/go"
	}
	bctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	for _, args := range [][]string{
		{"build", "-o", c.bin + "/", "./cmd/broker", "./ingestor/cmd/ingestor", "./queryapi/cmd/queryapi"},
		{"build", "-tags", "takt_failpoints", "-o", filepath.Join(c.bin, "processor"), "./processor/cmd/processor"},
	} {
		cmd := exec.CommandContext(bctx, gobin, args...)
		cmd.Dir = c.root
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

// clickhouseConfig writes the local stack's ClickHouse configuration with
// the cluster's directory and ports.
func (c *Cluster) clickhouseConfig(interserver int) error {
	src, err := os.ReadFile(filepath.Join(c.root, "compose", "local", "clickhouse-config.xml"))
	if err != nil {
		return fmt.Errorf("clickhouse config: %w", err)
	}
	conf := strings.NewReplacer("__RUN__", c.dir, "__HTTP_PORT__", strconv.Itoa(c.chHTTP),
		"__TCP_PORT__", strconv.Itoa(c.chTCP), "__INTERSERVER_PORT__", strconv.Itoa(interserver)).Replace(string(src))
	if err := os.WriteFile(filepath.Join(c.dir, "clickhouse", "config.xml"), []byte(conf), 0o644); err != nil {
		return err
	}
	users, err := os.ReadFile(filepath.Join(c.root, "compose", "local", "clickhouse-users.xml"))
	if err != nil {
		return fmt.Errorf("clickhouse users: %w", err)
	}
	return os.WriteFile(filepath.Join(c.dir, "clickhouse", "users.xml"), users, 0o644)
}

func clickhouseServer() string {
	if p, err := exec.LookPath("clickhouse-server"); err == nil {
		return p
	}
	return "/usr/sbin/clickhouse-server"
}

// startClickHouse starts ClickHouse (again) and waits until it answers
// queries.
func (c *Cluster) startClickHouse(ctx context.Context) error {
	if err := c.clickhouse.start(); err != nil {
		return err
	}
	return c.clickhouse.waitReady(ctx, 120*time.Second, func(ctx context.Context) error {
		_, err := c.chQuery(ctx, "SELECT 1")
		return err
	})
}

// chQuery runs a query over ClickHouse's HTTP interface and returns its
// answer (TabSeparated). It is for the harness's small probes.
func (c *Cluster) chQuery(ctx context.Context, q string) (string, error) {
	u := "http://127.0.0.1:" + strconv.Itoa(c.chHTTP) + "/?" + url.Values{"query": {q}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.httpc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("clickhouse HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return strings.TrimSpace(string(b)), nil
}

func (c *Cluster) startRedis(ctx context.Context) error {
	if err := c.redisProc.start(); err != nil {
		return err
	}
	return c.redisProc.waitReady(ctx, 30*time.Second, func(ctx context.Context) error {
		rdb := c.redis()
		defer rdb.Close()
		return rdb.Ping(ctx).Err()
	})
}

// redis returns a new client of the cluster's Redis (the caller closes it).
func (c *Cluster) redis() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(c.redisPort),
		DialTimeout: time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second, MaxRetries: -1})
}

func (c *Cluster) startBroker(ctx context.Context) error {
	if err := c.broker.start(); err != nil {
		return err
	}
	return c.broker.waitReady(ctx, 60*time.Second, func(ctx context.Context) error {
		cl, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:" + strconv.Itoa(c.brokerPort)))
		if err != nil {
			return err
		}
		defer cl.Close()
		topics, err := kadm.NewClient(cl).ListTopics(ctx, topic)
		if err != nil {
			return err
		}
		if d, ok := topics[topic]; !ok || d.Err != nil || len(d.Partitions) != c.partitions {
			return fmt.Errorf("topic %s not there yet", topic)
		}
		return nil
	})
}

// store opens a store on ClickHouse itself (not through the proxy); the
// caller closes it.
func (c *Cluster) store(ctx context.Context) (*chstore.Store, error) {
	return chstore.Open(ctx, chstore.Config{Addr: []string{"127.0.0.1:" + strconv.Itoa(c.chTCP)}, Database: database,
		User: "default", DialTimeout: 5 * time.Second, ReadTimeout: 120 * time.Second, MaxOpenConns: 4}, c.logger)
}

// seed migrates the database, writes the demo records and the limited key.
func (c *Cluster) seed(ctx context.Context) error {
	s, err := c.store(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.Migrate(ctx); err != nil {
		return err
	}
	out, err := demo.Seed(ctx, s, "", "")
	if err != nil {
		return err
	}
	c.apiKey = out.APIKey
	key, prefix, hash := auth.NewKey()
	if err := s.PutAPIKey(ctx, chstore.APIKey{ID: limitedKeyID, User: 1, Prefix: prefix, Hash: hash,
		Scopes: []string{"ingest"}, Active: true,
		Audit: chstore.Audit{CreatedBy: "chaos", LastUpdatedBy: "chaos"}}); err != nil {
		return fmt.Errorf("limited key: %w", err)
	}
	c.limitedKey = key
	return nil
}

// startService starts a Takt service and waits for its /readyz.
func (c *Cluster) startService(ctx context.Context, p *proc) error {
	if err := p.start(); err != nil {
		return err
	}
	return c.waitService(ctx, p)
}

func (c *Cluster) waitService(ctx context.Context, p *proc) error {
	addr := map[*proc]string{c.ingestor: c.ingestAddr, c.queryapi: c.queryAddr, c.processor: c.procAddr, c.processor2: c.proc2Addr}[p]
	return p.waitReady(ctx, 90*time.Second, func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/readyz", nil)
		if err != nil {
			return err
		}
		resp, err := c.httpc.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz: HTTP %d", resp.StatusCode)
		}
		return nil
	})
}

// metric scrapes one unlabelled series from a process's /metrics (0 when
// absent).
func (c *Cluster) metric(ctx context.Context, addr, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.httpc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, sc.Err()
}

// baseEnv is this process's environment without TAKT_ variables.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TAKT_") {
			env = append(env, kv)
		}
	}
	return env
}

func withEnv(env []string, vars map[string]string) []string {
	out := append([]string(nil), env...)
	for k, v := range vars {
		out = append(out, k+"="+v)
	}
	return out
}

// freePorts returns n loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// repoRoot finds the module root (the directory with go.mod) from dir up.
func repoRoot(dir string) (string, error) {
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", errors.New("no go.mod above " + dir)
		}
	}
}
