package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	"github.com/eclipse/paho.golang/paho/session"
	"github.com/eclipse/paho.golang/paho/session/state"

	"github.com/takt/takt/internal/demo"
	"github.com/takt/takt/internal/testenv"
)

// service is a Takt binary run as a process of the test's own.
type service struct {
	t    *testing.T
	bin  string
	env  []string
	name string
	cmd  *exec.Cmd
}

func (s *service) start() {
	s.t.Helper()
	cmd := exec.Command(s.bin)
	cmd.Env = append(os.Environ(), s.env...)
	if testing.Verbose() {
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	}
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start %s: %v", s.name, err)
	}
	s.cmd = cmd
}

// kill ends the process with SIGKILL: nothing is flushed.
func (s *service) kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	_ = s.cmd.Wait()
	s.cmd = nil
}

// TestMQTTKillsLoseNothing: devices publish QoS 1 over MQTT 5 with
// persistent sessions while the ingestor and then the processor are
// killed (SIGKILL) and started again; every part is in ClickHouse exactly
// once.
func TestMQTTKillsLoseNothing(t *testing.T) {
	e := testenv.Stack(t)
	store, chCfg := testenv.ClickHouse(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	seeded, err := demo.Seed(ctx, store, "", "")
	if err != nil {
		t.Fatal(err)
	}
	topic, dlq := testenv.Topic(t, 3), testenv.Topic(t, 1)
	_, prefix := testenv.Redis(t)
	mqttAddr, ingestAddr, procAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	common := []string{
		"TAKT_KAFKA_BROKERS=" + testenv.Join(e.Brokers), "TAKT_PARTS_TOPIC=" + topic, "TAKT_DLQ_TOPIC=" + dlq,
		"TAKT_CLICKHOUSE_ADDR=" + testenv.Join(chCfg.Addr), "TAKT_CLICKHOUSE_DB=" + chCfg.Database,
		"TAKT_REDIS_ADDR=" + e.Redis, "TAKT_REDIS_PREFIX=" + prefix, "TAKT_LOG_LEVEL=warn",
	}
	ing := &service{t: t, name: "ingestor", bin: testenv.Binary(t, "github.com/takt/takt/ingestor/cmd/ingestor"),
		env: append([]string{"TAKT_INGEST_ADDR=" + ingestAddr, "TAKT_ADMIN_ADDR=" + freeAddr(t), "TAKT_MQTT_ADDR=" + mqttAddr,
			"TAKT_RATE_DISABLED=true"}, common...)}
	proc := &service{t: t, name: "processor", bin: testenv.Binary(t, "github.com/takt/takt/processor/cmd/processor"),
		env: append([]string{"TAKT_PROCESSOR_ADDR=" + procAddr, "TAKT_CONSUMER_GROUP=" + testenv.Name("takt-mqtt-"),
			"TAKT_CONSUMER_SESSION_TIMEOUT=6s", "TAKT_BATCH_INTERVAL=100ms"}, common...)}
	ing.start()
	proc.start()
	t.Cleanup(func() { ing.kill(); proc.kill() })
	waitFor(t, 60*time.Second, "ingestor ready", func() bool { return ready("http://" + ingestAddr) })

	const devices, perDevice = 4, 400
	u, _ := url.Parse("mqtt://" + mqttAddr)
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	var acked, failed atomic.Int64
	var wg sync.WaitGroup
	for d := range devices {
		cm, err := autopaho.NewConnection(ctx, autopaho.ClientConfig{
			ServerUrls: []*url.URL{u}, KeepAlive: 10, SessionExpiryInterval: 3600,
			ConnectUsername: "press", ConnectPassword: []byte(seeded.APIKey),
			ReconnectBackoff: func(int) time.Duration { return 200 * time.Millisecond },
			ConnectTimeout:   5 * time.Second,
			ClientConfig: paho.ClientConfig{ClientID: fmt.Sprintf("press-%d", d), Session: state.NewInMemory(),
				PacketTimeout: 2 * time.Minute},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cm.Disconnect(context.Background()) })
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A few publishes in flight at a time, as a device streams.
			sem := make(chan struct{}, 8)
			var dw sync.WaitGroup
			for i := range perDevice {
				// Each part has its own recorded_at, so it can be told apart.
				at := base.Add(time.Duration(d*perDevice+i) * time.Millisecond).UTC().Format("2006-01-02T15:04:05.000Z")
				payload := fmt.Sprintf(`{"part":{"quantity":1,"recorded_at":%q}}`, at)
				sem <- struct{}{}
				dw.Add(1)
				go func() {
					defer func() { <-sem; dw.Done() }()
					for {
						if err := cm.AwaitConnection(ctx); err != nil {
							failed.Add(1)
							return
						}
						r, err := cm.Publish(ctx, &paho.Publish{Topic: "takt/parts/line_1", QoS: 1, Payload: []byte(payload)})
						// Never sent, so send it: the connection was down, or
						// went down between AwaitConnection and the session
						// taking the packet.
						if errors.Is(err, autopaho.ConnectionDownError) || errors.Is(err, session.ErrNoConnection) {
							continue
						}
						if err != nil || r.ReasonCode != 0 {
							failed.Add(1)
							t.Errorf("publish: %v", err)
							return
						}
						acked.Add(1)
						return
					}
				}()
				time.Sleep(2 * time.Millisecond)
			}
			dw.Wait()
		}()
	}

	// Kill the ingestor mid-stream, start it again; then the processor.
	waitFor(t, 60*time.Second, "a quarter acknowledged", func() bool { return acked.Load() >= devices*perDevice/4 })
	ing.kill()
	time.Sleep(300 * time.Millisecond)
	ing.start()
	waitFor(t, 60*time.Second, "half acknowledged", func() bool { return acked.Load() >= devices*perDevice/2 })
	proc.kill()
	time.Sleep(300 * time.Millisecond)
	proc.start()
	wg.Wait()
	if f := failed.Load(); f > 0 || acked.Load() != devices*perDevice {
		t.Fatalf("%d acknowledged, %d failed of %d", acked.Load(), f, devices*perDevice)
	}

	want := uint64(devices * perDevice)
	var rows, distinct uint64
	waitFor(t, 90*time.Second, "every part in ClickHouse", func() bool {
		rows, _ = store.QueryUint64(ctx, "SELECT count() FROM parts")
		return rows >= want
	})
	time.Sleep(time.Second) // a double would arrive with the rest
	rows, _ = store.QueryUint64(ctx, "SELECT count() FROM parts")
	distinct, _ = store.QueryUint64(ctx, "SELECT uniqExact(recorded_ms) FROM parts")
	if rows != want || distinct != want {
		t.Fatalf("parts table: %d rows, %d distinct parts; want %d of each (0 lost, 0 doubled)", rows, distinct, want)
	}
}

func ready(base string) bool {
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == 200
}
