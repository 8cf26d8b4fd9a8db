package loadtest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	"github.com/eclipse/paho.golang/paho/session/state"
)

// mqttPool is the -transport mqtt sender: Conns MQTT 5 connections with
// persistent sessions, used round-robin; a part is acknowledged when its
// QoS 1 PUBACK says success (the ingestor sends it after Kafka's ack).
type mqttPool struct {
	conns []*autopaho.ConnectionManager
	next  atomic.Uint64
}

func newMQTTPool(ctx context.Context, cfg Config) (*mqttPool, error) {
	u, err := url.Parse("mqtt://" + cfg.MQTTAddr)
	if err != nil {
		return nil, err
	}
	p := &mqttPool{}
	run := time.Now().UnixNano()
	for i := range cfg.MQTTConns {
		w := &connectWatch{refused: make(chan error, 1)}
		cm, err := autopaho.NewConnection(ctx, autopaho.ClientConfig{
			ServerUrls: []*url.URL{u}, KeepAlive: 30, SessionExpiryInterval: mqttSessionExpiry,
			ConnectUsername: "loadtest", ConnectPassword: []byte(cfg.Key),
			ReconnectBackoff: autopaho.NewConstantBackoff(200 * time.Millisecond),
			ConnectTimeout:   5 * time.Second,
			OnConnectError:   w.failed,
			ClientConfig: paho.ClientConfig{ClientID: fmt.Sprintf("loadtest-%d-%d", run, i),
				Session: state.NewInMemory(), PacketTimeout: cfg.Timeout},
		})
		if err != nil {
			p.close()
			return nil, err
		}
		p.conns = append(p.conns, cm)
		if err := w.await(ctx, cm); err != nil {
			p.close()
			return nil, fmt.Errorf("mqtt %s: %w", cfg.MQTTAddr, err)
		}
	}
	return p, nil
}

// mqttSessionExpiry (seconds) keeps a connection's session, and the QoS 1
// messages it has in flight, across a reconnect during a run, and lets the
// ingestor forget it soon after the run.
const mqttSessionExpiry = 120

// connectWatch keeps what went wrong with a connection's attempts:
// autopaho retries by itself, and without this a refused dial or CONNACK
// would surface as a bare timeout.
type connectWatch struct {
	last    atomic.Pointer[error]
	refused chan error // the first CONNACK refusal
}

func (w *connectWatch) failed(err error) {
	w.last.Store(&err)
	if ce := (*autopaho.ConnackError)(nil); errors.As(err, &ce) {
		select {
		case w.refused <- err:
		default:
		}
	}
}

// await waits up to 10 s for cm's first connection. A CONNACK that
// refuses (a wrong key) ends the wait at once: retrying cannot help.
func (w *connectWatch) await(ctx context.Context, cm *autopaho.ConnectionManager) error {
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- cm.AwaitConnection(actx) }()
	select {
	case err := <-done:
		if e := w.last.Load(); err != nil && e != nil {
			return fmt.Errorf("no connection in 10 s; last attempt: %w", *e)
		}
		return err
	case err := <-w.refused:
		return fmt.Errorf("connection refused: %w", err)
	}
}

func (p *mqttPool) close() {
	for _, c := range p.conns {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = c.Disconnect(ctx)
		cancel()
	}
}

// publish sends one message and returns the PUBACK's reason code, or an
// error when none came.
func (p *mqttPool) publish(ctx context.Context, topic string, payload []byte) (byte, string, error) {
	cm := p.conns[p.next.Add(1)%uint64(len(p.conns))]
	r, err := cm.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: payload})
	if r == nil {
		return 0, "", err
	}
	return r.ReasonCode, r.Properties.ReasonString, nil
}

// sendMQTT is send over MQTT: one message of parts, on takt/parts/<id> for
// one part and takt/parts for a batch.
func (r *runner) sendMQTT(ctx context.Context, parts []simPart, payload []byte, due time.Time) {
	topic := "takt/parts"
	if r.cfg.Batch <= 1 {
		topic = "takt/parts/" + parts[0].m.ExternalID
	}
	code, reason, err := r.mqtt.publish(ctx, topic, payload)
	done := r.clock.Now()
	r.lat.record(done.Sub(due))
	switch {
	case err != nil:
		r.fail(parts, "transport", err, true)
	case code == 0:
		r.count("puback_0x00", 1)
		for i := range parts {
			r.ack(&parts[i], done)
			r.outcome(&parts[i], 200)
		}
	default:
		r.fail(parts, fmt.Sprintf("puback_%#02x", code), fmt.Errorf("PUBACK %#02x: %s", code, reason), false)
	}
}
