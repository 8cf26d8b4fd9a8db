package ingestor

// The bridge: for plants that already run an MQTT broker, the ingestor
// subscribes to it instead of (or next to) listening itself. It connects
// with a persistent session (clean start off, a session expiry), subscribes
// with QoS 1, by default to a shared subscription ($share/<group>/...) so
// that several ingestors split the messages, and acknowledges each message
// upstream only after Kafka acknowledged its parts: a message in hand when
// an ingestor dies stays with its session on the broker, which sends it
// again when the session is resumed.
//
// The messages go through the same steps as on the listener (parser,
// location look-up, rate limit, producer, dead letters), under one API key
// (BridgeConfig.Key): the broker's own authentication says who may publish,
// and the key says which sites the bridged parts may go to and at what
// rate. What differs:
//   - Acknowledgements: paho sends PUBACKs in the order the PUBLISHes came,
//     whatever order the messages finish in.
//   - Invalid messages go to the dead letters and are acknowledged; the
//     publisher is not told (the bridge does not know who it was).
//   - Over the rate limit, or when Kafka did not acknowledge, the message
//     is not acknowledged and is tried again after a pause, as a resend
//     (so parts of a batch that did reach Kafka are not produced twice).
//   - The broker sends the unacknowledged messages of a resumed session
//     again with DUP set, and the packet ids are those of the bridge's
//     session: resends are recognised as on the listener (resend.go), with
//     the bridge's client id.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/takt/takt/internal/auth"
)

// bridgeRetry is the pause before a message that could not be taken (rate
// limit, Kafka) is tried again.
const bridgeRetry = 500 * time.Millisecond

// keyAuthenticator checks the bridge's API key (*auth.Authenticator).
type keyAuthenticator interface {
	Authenticate(ctx context.Context, key string) (auth.Principal, error)
}

// bridge is the subscriber to a plant's broker.
type bridge struct {
	*mqttIngest
	keys   keyAuthenticator
	cfg    BridgeConfig
	tls    *tls.Config
	expiry time.Duration

	conn     atomic.Pointer[mqttConn] // the current connection's state
	stopping atomic.Bool              // no new messages are taken
	work     sync.WaitGroup           // messages in hand
	stop     chan struct{}            // closed when stopping: ends retry pauses
	keyLog   atomic.Int64             // unix nanos of the last "key not accepted" log
}

func newBridge(cfg BridgeConfig, expiry time.Duration, in *mqttIngest, keys keyAuthenticator) (*bridge, error) {
	b := &bridge{mqttIngest: in, keys: keys, cfg: cfg, expiry: expiry, stop: make(chan struct{})}
	if cfg.TLS.Enabled {
		tc, err := cfg.TLS.Config()
		if err != nil {
			return nil, fmt.Errorf("mqtt bridge: %w", err)
		}
		b.tls = tc
	}
	return b, nil
}

// run connects, subscribes and takes messages until ctx ends. Then it
// stops taking new ones, finishes those in hand (their acknowledgements
// go out), and disconnects; the session stays on the broker with whatever
// came later.
func (b *bridge) run(ctx context.Context) error {
	u, err := url.Parse(b.cfg.URL)
	if err != nil {
		return fmt.Errorf("mqtt bridge: %w", err)
	}
	inFlight := uint16(b.cfg.InFlight)
	filters := b.cfg.filters()
	// The connection outlives ctx: it is closed once the messages in hand
	// are acknowledged.
	cctx, closeConn := context.WithCancel(context.WithoutCancel(ctx))
	defer closeConn()
	cm, err := autopaho.NewConnection(cctx, autopaho.ClientConfig{
		ServerUrls: []*url.URL{u}, TlsCfg: b.tls, KeepAlive: 30,
		SessionExpiryInterval: uint32(b.expiry / time.Second),
		ConnectUsername:       b.cfg.Username, ConnectPassword: []byte(b.cfg.Password),
		ReconnectBackoff: autopaho.NewExponentialBackoff(500*time.Millisecond, 30*time.Second, 2*time.Second, 2),
		ConnectTimeout:   10 * time.Second,
		ConnectPacketBuilder: func(cp *paho.Connect, _ *url.URL) (*paho.Connect, error) {
			if cp.Properties == nil {
				cp.Properties = &paho.ConnectProperties{}
			}
			cp.Properties.ReceiveMaximum = &inFlight
			return cp, nil
		},
		OnConnectionUp: func(cm *autopaho.ConnectionManager, ack *paho.Connack) {
			b.conn.Store(&mqttConn{id: b.cfg.ClientID, proto: 5, since: time.Now()})
			b.m.connects.WithLabelValues("bridge_up").Inc()
			b.logger.Info("mqtt bridge connected", "url", u.Redacted(), "client_id", b.cfg.ClientID,
				"session_present", ack.SessionPresent, "filters", filters)
			// Subscribing again on a resumed session is harmless, and
			// covers a broker that lost it.
			go b.subscribe(cctx, cm, filters)
		},
		OnConnectError: func(err error) {
			b.m.connects.WithLabelValues("bridge_failed").Inc()
			b.logger.Warn("mqtt bridge: connection failed", "url", u.Redacted(), "err", err)
		},
		ClientConfig: paho.ClientConfig{
			ClientID:                   b.cfg.ClientID,
			EnableManualAcknowledgment: true,
			OnPublishReceived:          []func(paho.PublishReceived) (bool, error){b.received},
			OnClientError: func(err error) {
				b.logger.Warn("mqtt bridge: connection error", "err", err)
			},
			OnServerDisconnect: func(d *paho.Disconnect) {
				b.logger.Warn("mqtt bridge: the broker disconnected", "reason_code", d.ReasonCode)
			},
		},
	})
	if err != nil {
		return fmt.Errorf("mqtt bridge: %w", err)
	}
	<-ctx.Done()
	b.stopping.Store(true)
	close(b.stop)
	done := make(chan struct{})
	go func() { b.work.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(b.h.produceTimeout + 3*time.Second):
		b.logger.Warn("mqtt bridge: messages still in hand at shutdown; the broker sends them again")
	}
	dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = cm.Disconnect(dctx)
	return nil
}

func (b *bridge) subscribe(ctx context.Context, cm *autopaho.ConnectionManager, filters []string) {
	sub := &paho.Subscribe{}
	for _, f := range filters {
		sub.Subscriptions = append(sub.Subscriptions, paho.SubscribeOptions{Topic: f, QoS: 1})
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ack, err := cm.Subscribe(sctx, sub)
	if err == nil {
		for i, rc := range ack.Reasons {
			if rc > 1 {
				err = errors.Join(err, fmt.Errorf("%s: reason code %#02x", filters[i], rc))
			}
		}
	}
	if err != nil {
		// Nothing arrives without the subscription: make it loud, and
		// let a reconnect try again.
		b.logger.Error("mqtt bridge: subscription refused", "filters", filters, "err", err)
		return
	}
	b.logger.Info("mqtt bridge subscribed", "filters", filters)
}

// received takes one PUBLISH. paho calls it for one message at a time, so
// the work goes to a goroutine of its own; the broker bounds how many are
// in hand (the receive maximum).
func (b *bridge) received(pr paho.PublishReceived) (bool, error) {
	pb, c := pr.Packet, b.conn.Load()
	if b.stopping.Load() || c == nil {
		return true, nil // not acknowledged: the broker sends it again to the session
	}
	msg := mqttMessage{topic: pb.Topic, payload: pb.Payload, pid: pb.PacketID, qos: pb.QoS,
		dup: pb.Duplicate(), received: time.Now()}
	b.work.Add(1)
	go func() {
		defer b.work.Done()
		if !b.handle(c, &msg) {
			return
		}
		if err := pr.Client.Ack(pb); err != nil {
			// The broker sends it again; the resend is recognised.
			b.logger.Warn("mqtt bridge: acknowledgement not sent", "packet_id", pb.PacketID, "err", err)
		}
	}()
	return true, nil
}

// handle takes a message until it is stored, a known resend or a dead
// letter (true: acknowledge it), or the bridge stops (false).
func (b *bridge) handle(c *mqttConn, msg *mqttMessage) bool {
	for {
		out, retry := b.try(c, msg)
		b.m.messages.WithLabelValues("bridge_" + out.label).Inc()
		if !retry {
			return true
		}
		select {
		case <-b.stop:
			return false
		case <-time.After(bridgeRetry):
		}
		if out.drop {
			// What reached Kafka before the failure must not go again:
			// the next attempt is checked as a resend.
			msg.dup = true
		}
	}
}

// try is one attempt at a message: its outcome, and whether to try again.
func (b *bridge) try(c *mqttConn, msg *mqttMessage) (outcome, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	p, err := b.keys.Authenticate(ctx, b.cfg.Key)
	cancel()
	if err == nil && !p.HasScope(auth.ScopeIngest) {
		err = errors.New("the key has no ingest scope")
	}
	if err != nil {
		// The data may be fine; the key is not (revoked, or ClickHouse
		// unreachable): keep the message on the broker.
		// Every message in hand retries; say it once every 10 s.
		now, last := time.Now().UnixNano(), b.keyLog.Load()
		if now-last > int64(10*time.Second) && b.keyLog.CompareAndSwap(last, now) {
			b.logger.Error("mqtt bridge: TAKT_MQTT_BRIDGE_KEY not accepted; messages wait on the broker",
				"key_prefix", auth.Prefix(b.cfg.Key), "err", err)
		}
		return outcome{label: "key_refused"}, true
	}
	cc := *c
	cc.p, cc.prefix = p, auth.Prefix(b.cfg.Key)
	out := b.process(&cc, msg)
	switch {
	case out.drop:
		return out, true
	case out.label == "rate_limited":
		return out, true
	case out.errMsg != "":
		b.logger.Info("mqtt bridge: message to the dead letters", "topic", msg.topic, "packet_id", msg.pid, "reason", out.errMsg)
	}
	return out, false
}

// logBridge says at start that the bridge is on, and where to.
func logBridge(logger *slog.Logger, cfg BridgeConfig) {
	u, _ := url.Parse(cfg.URL)
	logger.Info("mqtt bridge on", "url", u.Redacted(), "client_id", cfg.ClientID, "group", cfg.Group,
		"topics", cfg.Topics, "key_prefix", auth.Prefix(cfg.Key))
}
