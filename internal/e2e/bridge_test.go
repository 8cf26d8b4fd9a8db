package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	"github.com/eclipse/paho.golang/paho/session/state"

	"github.com/takt/takt/internal/demo"
	"github.com/takt/takt/internal/testenv"
)

// mosquitto is a Mosquitto broker run by a test, on a free loopback port,
// with a password file and a configuration of its own.
type mosquitto struct {
	addr, user, password string
}

// startMosquitto starts Debian's mosquitto and stops it when the test
// ends. Under CI=true a missing mosquitto fails the test (CI installs it).
func startMosquitto(t *testing.T) mosquitto {
	t.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		bin = "/usr/sbin/mosquitto"
	}
	passwd, perr := exec.LookPath("mosquitto_passwd")
	if _, err := os.Stat(bin); err != nil || perr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mosquitto and mosquitto_passwd (Debian's mosquitto package) are needed: %v %v", err, perr)
		}
		t.Skipf("the bridge test needs Debian's mosquitto package (apt-get install mosquitto): %v %v", err, perr)
	}
	dir := t.TempDir()
	m := mosquitto{addr: freeAddr(t), user: "takt-bridge", password: "bridge-secret"}
	pwFile := filepath.Join(dir, "passwd")
	if out, err := exec.Command(passwd, "-b", "-c", pwFile, m.user, m.password).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd: %v: %s", err, out)
	}
	host, port, _ := net.SplitHostPort(m.addr)
	// Sessions live in memory while the broker runs; queued messages of a
	// disconnected session are not capped (the default drops past 1,000).
	conf := fmt.Sprintf(`listener %s %s
allow_anonymous false
password_file %s
persistence false
max_queued_messages 0
user root
log_dest stderr
log_type error
log_type warning
`, port, host, pwFile)
	confFile := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", confFile)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start mosquitto: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	waitFor(t, 10*time.Second, "mosquitto listening", func() bool {
		select {
		case <-exited:
			t.Fatal("mosquitto exited at start")
		default:
		}
		c, err := net.DialTimeout("tcp", m.addr, 200*time.Millisecond)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
	return m
}

// TestMQTTBridgeKillsLoseNothing: parts published with QoS 1 to a plant's
// broker (Mosquitto) reach ClickHouse through the ingestor's bridge
// (persistent session, shared subscription, acknowledged upstream after
// Kafka) exactly once, while the ingestor is killed (SIGKILL) and later
// stopped (SIGTERM) mid-stream and started again: what it had not
// acknowledged, the broker sends again.
func TestMQTTBridgeKillsLoseNothing(t *testing.T) {
	e := testenv.Stack(t)
	mq := startMosquitto(t)
	store, chCfg := testenv.ClickHouse(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	seeded, err := demo.Seed(ctx, store, "", "")
	if err != nil {
		t.Fatal(err)
	}
	topic, dlq := testenv.Topic(t, 3), testenv.Topic(t, 1)
	_, prefix := testenv.Redis(t)
	ingestAddr, procAddr := freeAddr(t), freeAddr(t)
	common := []string{
		"TAKT_KAFKA_BROKERS=" + testenv.Join(e.Brokers), "TAKT_PARTS_TOPIC=" + topic, "TAKT_DLQ_TOPIC=" + dlq,
		"TAKT_CLICKHOUSE_ADDR=" + testenv.Join(chCfg.Addr), "TAKT_CLICKHOUSE_DB=" + chCfg.Database,
		"TAKT_REDIS_ADDR=" + e.Redis, "TAKT_REDIS_PREFIX=" + prefix, "TAKT_LOG_LEVEL=warn",
	}
	ing := &service{t: t, name: "ingestor", bin: testenv.Binary(t, "github.com/takt/takt/ingestor/cmd/ingestor"),
		env: append([]string{"TAKT_INGEST_ADDR=" + ingestAddr, "TAKT_ADMIN_ADDR=" + freeAddr(t), "TAKT_RATE_DISABLED=true",
			"TAKT_MQTT_BRIDGE_URL=mqtt://" + mq.addr, "TAKT_MQTT_BRIDGE_USERNAME=" + mq.user,
			"TAKT_MQTT_BRIDGE_PASSWORD=" + mq.password, "TAKT_MQTT_BRIDGE_KEY=" + seeded.APIKey,
			"TAKT_MQTT_BRIDGE_CLIENT_ID=" + testenv.Name("takt-bridge-"), "TAKT_MQTT_BRIDGE_INFLIGHT=64",
		}, common...)}
	proc := &service{t: t, name: "processor", bin: testenv.Binary(t, "github.com/takt/takt/processor/cmd/processor"),
		env: append([]string{"TAKT_PROCESSOR_ADDR=" + procAddr, "TAKT_CONSUMER_GROUP=" + testenv.Name("takt-bridge-"),
			"TAKT_CONSUMER_SESSION_TIMEOUT=6s", "TAKT_BATCH_INTERVAL=100ms"}, common...)}
	ing.start()
	proc.start()
	t.Cleanup(func() { ing.kill(); proc.kill() })
	waitFor(t, 60*time.Second, "ingestor ready", func() bool { return ready("http://" + ingestAddr) })

	// The plant's device: QoS 1 to Mosquitto, which acknowledges on its
	// own; single parts on takt/parts/line_1, every tenth message a batch
	// of three on takt/parts.
	u, _ := url.Parse("mqtt://" + mq.addr)
	dev, err := autopaho.NewConnection(ctx, autopaho.ClientConfig{
		ServerUrls: []*url.URL{u}, KeepAlive: 10, ConnectUsername: mq.user, ConnectPassword: []byte(mq.password),
		ReconnectBackoff: func(int) time.Duration { return 200 * time.Millisecond },
		ConnectTimeout:   5 * time.Second,
		ClientConfig:     paho.ClientConfig{ClientID: "plant-press", Session: state.NewInMemory(), PacketTimeout: time.Minute},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dev.Disconnect(context.Background()) })
	if err := dev.AwaitConnection(ctx); err != nil {
		t.Fatal(err)
	}
	const messages = 1500
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	stamp := func(i int) string {
		return base.Add(time.Duration(i) * time.Millisecond).UTC().Format("2006-01-02T15:04:05.000Z")
	}
	var published atomic.Int64
	want := uint64(0)
	pubDone := make(chan error, 1)
	go func() {
		n := 0
		for i := range messages {
			topic, payload := "takt/parts/line_1", fmt.Sprintf(`{"part":{"quantity":1,"recorded_at":%q}}`, stamp(n))
			k := 1
			if i%10 == 9 {
				k = 3
				var items []string
				for j := range k {
					items = append(items, fmt.Sprintf(`{"external_id":"line_1","quantity":1,"recorded_at":%q}`, stamp(n+j)))
				}
				topic, payload = "takt/parts", `{"parts":[`+strings.Join(items, ",")+`]}`
			}
			n += k
			if _, err := dev.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(payload)}); err != nil {
				pubDone <- fmt.Errorf("publish %d: %w", i, err)
				return
			}
			published.Add(1)
			time.Sleep(2 * time.Millisecond)
		}
		pubDone <- nil
	}()
	for i := range messages {
		want++
		if i%10 == 9 {
			want += 2
		}
	}
	count := func() uint64 {
		n, _ := store.QueryUint64(ctx, "SELECT count() FROM parts")
		return n
	}

	// SIGKILL with messages in hand, then SIGTERM (the ordered stop).
	waitFor(t, 60*time.Second, "a quarter stored", func() bool { return count() >= want/4 })
	ing.kill()
	time.Sleep(500 * time.Millisecond)
	ing.start()
	waitFor(t, 60*time.Second, "half stored", func() bool { return count() >= want/2 })
	t.Logf("after the SIGKILL, resends recognised: %s", metric(t, "http://"+ingestAddr, "takt_ingestor_mqtt_resends_total"))
	_ = ing.cmd.Process.Signal(syscall.SIGTERM)
	_ = ing.cmd.Wait()
	ing.cmd = nil
	ing.start()
	if err := <-pubDone; err != nil {
		t.Fatal(err)
	}

	var rows, distinct uint64
	waitFor(t, 90*time.Second, "every part in ClickHouse", func() bool { rows = count(); return rows >= want })
	time.Sleep(2 * time.Second) // a double would arrive with the rest
	rows = count()
	distinct, _ = store.QueryUint64(ctx, "SELECT uniqExact(recorded_ms) FROM parts")
	if rows != want || distinct != want {
		t.Fatalf("parts table: %d rows, %d distinct parts; want %d of each (0 lost, 0 doubled)", rows, distinct, want)
	}
}

// metric returns the lines of a Prometheus metric the service at base
// exposes.
func metric(t *testing.T, base, name string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, name) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "; ")
}
