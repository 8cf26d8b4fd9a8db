package ingestor

// MQTT: the second way in, for devices that stream (PLCs, IoT gateways).
// An embedded broker (mochi-mqtt, MQTT 3.1.1 and 5) accepts connections on
// its own port; a device authenticates with its API key as the password,
// and publishes part messages that go through the same parser, location
// look-up, rate limit and producer as process_part. The broker forwards
// nothing to subscribers: Takt only takes parts in, and sends each device
// its own errors.
//
// A QoS 1 PUBLISH is acknowledged (PUBACK) only after Kafka acknowledged
// its records, as the HTTP 200 is. PUBACKs of one connection leave in the
// order their PUBLISHes came (the protocol asks it), while the messages
// behind them are parsed and produced concurrently; at most MaxInFlight
// wait per connection, and then the connection is not read (TCP pushes
// back on the device). The messages of a connection are taken in batches
// of what came meanwhile, and the PUBACKs ready at once leave in one
// write: see mqttbatch.go.
//
// Outcomes of a QoS 1 message:
//   - stored: PUBACK success.
//   - invalid (format, unknown location): the message goes to the
//     dead-letter topic with the reason, the device gets the reason on
//     takt/errors/<client id>, and PUBACK (MQTT 5: reason code 0x99,
//     payload format invalid, and the reason string; 3.1.1 has no way to
//     say it in the PUBACK).
//   - over the key's rate limit: MQTT 5 PUBACK 0x97 (quota exceeded);
//     3.1.1 the connection is closed without PUBACK, so the device sends
//     the message again when it reconnects (its back-off is the wait).
//   - Takt could not store it (Kafka did not acknowledge in time): the
//     connection is closed without PUBACK; the device resends on reconnect.
//
// Resends (DUP) after a lost PUBACK are recognised: see resend.go.

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/takt/takt/internal/auth"
	"github.com/takt/takt/internal/wire"
)

// MQTT topics.
const (
	// TopicParts takes a batch: {"parts":[{...}, ...]} as process_parts.
	TopicParts = "takt/parts"
	// TopicPartPrefix + <external_id> takes one part: {"part":{...}} as
	// process_part; external_id may be left out of the payload.
	TopicPartPrefix = "takt/parts/"
	// TopicErrorsPrefix + <client id> carries the errors of that client's
	// messages, as {"topic":..., "packet_id":..., "error":...}.
	TopicErrorsPrefix = "takt/errors/"
)

// Record headers of a part that came in over MQTT.
const (
	// HeaderMQTTMessage identifies the message and the item in it:
	// <client id>/<packet id>/<digest>/<item index>[/<receipt>], the
	// receipt being that of the message's copy without DUP (see
	// resend.go, which looks for it).
	HeaderMQTTMessage = "takt-mqtt-message"
	// HeaderMQTTClient and HeaderMQTTTopic are on dead letters.
	HeaderMQTTClient = "takt-mqtt-client"
	HeaderMQTTTopic  = "takt-mqtt-topic"
)

// mqttBroker is the MQTT side of the ingestor. It is a mochi hook: mochi
// calls it on connect, subscribe, publish and disconnect.
type mqttBroker struct {
	mqtt.HookBase
	*mqttIngest
	srv      *mqtt.Server
	maxIn    int
	sessions *sessionStore

	mu    sync.Mutex
	conns map[*mqtt.Client]*mqttConn
	work  sync.WaitGroup // messages being handled
}

// mqttIngest turns MQTT messages into parts on Kafka, or into dead
// letters: the work the embedded broker and the bridge share.
type mqttIngest struct {
	h        *handler
	b        *batchHandler
	dlqTopic string
	resends  *resends
	logger   *slog.Logger
	m        *mqttMetrics
}

// mqttConn is one connection's state. For the bridge, cl is nil: the
// connection is the bridge's own to the plant's broker.
type mqttConn struct {
	cl        *mqtt.Client
	id        string // client id: with the packet id, a message's identity
	proto     byte   // MQTT protocol version
	p         auth.Principal
	prefix    string
	since     time.Time
	acks      chan *pendingAck // FIFO of QoS 1 messages awaiting their PUBACK
	ackerDone chan struct{}
	inbox     chan inbound // messages received, for the connection's worker
}

// pendingAck is one QoS 1 message's answer, ready when its handling ends.
type pendingAck struct {
	pid    uint16
	ready  chan struct{}
	code   packets.Code // PUBACK reason (MQTT 5)
	reason string       // reason string (MQTT 5)
	drop   bool         // close the connection instead of acknowledging
}

// mqttConfig is the part of Config the broker needs.
type mqttConfig struct {
	Addr, TLSAddr string
	TLS           *tls.Config
	MaxInFlight   int
	SessionExpiry time.Duration
	MaxPacket     int
	DLQTopic      string
}

// newMQTTBroker builds the broker and adds its listeners; serve starts
// them.
func newMQTTBroker(cfg mqttConfig, sessions *sessionStore, in *mqttIngest) (*mqttBroker, error) {
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumQos = 1
	caps.RetainAvailable = 0
	caps.WildcardSubAvailable = 0
	caps.SharedSubAvailable = 0
	caps.ReceiveMaximum = uint16(cfg.MaxInFlight)
	caps.MaximumSessionExpiryInterval = uint32(cfg.SessionExpiry / time.Second)
	caps.MaximumPacketSize = uint32(cfg.MaxPacket)
	caps.Compatibilities.NoInheritedPropertiesOnAck = true
	srv := mqtt.New(&mqtt.Options{
		Capabilities: caps,
		// A device with many messages in flight sends them back to back:
		// read them with fewer system calls than mochi's 2 KiB allow.
		ClientNetReadBufferSize: 16 << 10,
		InlineClient:            true, // error messages to devices
		Logger:                  in.logger.With("component", "mqtt"),
	})
	mb := &mqttBroker{srv: srv, maxIn: cfg.MaxInFlight, sessions: sessions, conns: map[*mqtt.Client]*mqttConn{},
		mqttIngest: in}
	if err := srv.AddHook(mb, nil); err != nil {
		return nil, fmt.Errorf("mqtt hook: %w", err)
	}
	for _, l := range []struct {
		id, addr string
		tls      *tls.Config
	}{{"mqtt", cfg.Addr, nil}, {"mqtts", cfg.TLSAddr, cfg.TLS}} {
		if l.addr == "" {
			continue
		}
		if l.id == "mqtts" && l.tls == nil {
			return nil, errors.New("mqtt: a TLS address without a certificate")
		}
		if err := srv.AddListener(listeners.NewTCP(listeners.Config{ID: l.id, Address: l.addr, TLSConfig: l.tls})); err != nil {
			srv.Close()
			return nil, fmt.Errorf("mqtt listener %s on %s: %w", l.id, l.addr, err)
		}
	}
	return mb, nil
}

// serve runs the broker until ctx ends, then stops it: the listeners and
// connections close, and the messages in hand finish (their records
// acknowledged, their resend records written). Their PUBACKs are not
// sent, so the devices send them again, and the resends are recognised.
func (mb *mqttBroker) serve(ctx context.Context) error {
	if err := mb.srv.Serve(); err != nil {
		return fmt.Errorf("mqtt: %w", err)
	}
	for _, l := range []string{"mqtt", "mqtts"} {
		if ln, ok := mb.srv.Listeners.Get(l); ok {
			mb.logger.Info("mqtt listening", "addr", ln.Address(), "tls", l == "mqtts")
		}
	}
	<-ctx.Done()
	err := mb.srv.Close()
	done := make(chan struct{})
	go func() { mb.work.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(mb.h.produceTimeout + 3*time.Second):
		mb.logger.Warn("mqtt: messages still in hand at shutdown")
	}
	return err
}

// ID names the hook.
func (mb *mqttBroker) ID() string { return "takt" }

// Provides lists the events the hook handles.
func (mb *mqttBroker) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnSessionEstablish,
		mqtt.OnSessionEstablished, mqtt.OnPublish, mqtt.OnDisconnect, mqtt.OnSubscribed, mqtt.OnUnsubscribed:
		return true
	}
	return false
}

// OnConnect authenticates the API key in the password field. It answers
// the refusals itself: a wrong key, a key without the ingest scope
// (bad user name or password) and a client address past its failed
// authentication budget (quota exceeded; 3.1.1: server unavailable).
func (mb *mqttBroker) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	key := string(pk.Connect.Password)
	prefix := ""
	if auth.WellFormed(key) {
		prefix = auth.Prefix(key)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p, err := mb.h.keys.AuthenticateFrom(ctx, cl.Net.Remote, key)
	_, limited := auth.RetryAfter(err)
	var code packets.Code
	switch {
	case auth.IsInvalid(err), err == nil && !p.HasScope(auth.ScopeIngest):
		code = packets.ErrBadUsernameOrPassword
	case limited:
		code = packets.ErrQuotaExceeded
		if cl.Properties.ProtocolVersion < 5 {
			code = packets.ErrServerUnavailable
		}
	case err != nil:
		code = packets.ErrServerUnavailable
	}
	if code != (packets.Code{}) {
		mb.m.connects.WithLabelValues("refused").Inc()
		mb.logger.Info("mqtt connection refused", "client_id", cl.ID, "username", string(cl.Properties.Username),
			"key_prefix", prefix, "remote", cl.Net.Remote, "reason", code.Reason, "err", err)
		_ = mb.srv.SendConnack(cl, code, false, nil)
		return code
	}
	c := &mqttConn{cl: cl, id: cl.ID, proto: cl.Properties.ProtocolVersion, p: p, prefix: prefix, since: time.Now(),
		acks: make(chan *pendingAck, mb.maxIn), ackerDone: make(chan struct{}), inbox: make(chan inbound, mb.maxIn)}
	mb.mu.Lock()
	mb.conns[cl] = c
	mb.mu.Unlock()
	go mb.acker(c)
	go mb.worker(c)
	mb.m.connects.WithLabelValues("accepted").Inc()
	mb.logger.Info("mqtt client connected", "client_id", cl.ID, "username", string(cl.Properties.Username),
		"key_prefix", prefix, "remote", cl.Net.Remote, "protocol", cl.Properties.ProtocolVersion,
		"clean", pk.Connect.Clean)
	return nil
}

// OnConnectAuthenticate lets through what OnConnect accepted.
func (mb *mqttBroker) OnConnectAuthenticate(cl *mqtt.Client, _ packets.Packet) bool {
	return mb.conn(cl) != nil
}

// OnACLCheck: a client publishes parts only, and subscribes to its own
// errors only.
func (mb *mqttBroker) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if write {
		return topic == TopicParts || strings.HasPrefix(topic, TopicPartPrefix)
	}
	return topic == TopicErrorsPrefix+cl.ID
}

// OnSessionEstablish brings back the client's persistent session when this
// process does not hold it (after a restart, or made on another
// ingestor), so the CONNACK says "session present" and the device resends
// what it has not seen acknowledged (MQTT 5 devices drop it otherwise).
func (mb *mqttBroker) OnSessionEstablish(cl *mqtt.Client, pk packets.Packet) {
	if pk.Connect.Clean {
		return
	}
	if _, ok := mb.srv.Clients.Get(cl.ID); ok {
		return
	}
	mb.sessions.restore(mb.srv, cl.ID)
}

// OnSessionEstablished stores a persistent session.
func (mb *mqttBroker) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	mb.sessions.save(cl)
}

// OnSubscribed and OnUnsubscribed keep the stored session's subscriptions.
func (mb *mqttBroker) OnSubscribed(cl *mqtt.Client, _ packets.Packet, _ []byte) { mb.sessions.save(cl) }

// OnUnsubscribed: see OnSubscribed.
func (mb *mqttBroker) OnUnsubscribed(cl *mqtt.Client, _ packets.Packet) { mb.sessions.save(cl) }

// OnDisconnect forgets the connection; a session that ends with it is
// removed from the store, a persistent one kept for its expiry.
func (mb *mqttBroker) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	mb.mu.Lock()
	c := mb.conns[cl]
	delete(mb.conns, cl)
	mb.mu.Unlock()
	if c != nil {
		// The worker ends once it took the messages received, the acker
		// once they are answered.
		close(c.inbox)
		close(c.acks)
	}
	if expire && !cl.IsTakenOver() {
		mb.sessions.remove(cl.ID)
	} else {
		mb.sessions.save(cl)
	}
	mb.logger.Debug("mqtt client disconnected", "client_id", cl.ID, "err", err)
}

func (mb *mqttBroker) conn(cl *mqtt.Client) *mqttConn {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	return mb.conns[cl]
}

// OnPublish takes a device's message and hands it to the connection's
// worker. It returns ErrRejectPacket so mochi neither acknowledges nor
// forwards it: the acker answers QoS 1 messages when their records are
// acknowledged.
func (mb *mqttBroker) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil // Takt's own error messages, to their subscriber
	}
	c := mb.conn(cl)
	if c == nil {
		return pk, packets.ErrRejectPacket
	}
	// The payload is not copied: mochi decodes each packet from bytes of
	// its own, and keeps nothing of one refused with ErrRejectPacket.
	msg := &mqttMessage{
		topic:    pk.TopicName,
		payload:  pk.Payload,
		pid:      pk.PacketID,
		qos:      pk.FixedHeader.Qos,
		dup:      pk.FixedHeader.Dup,
		received: time.Now(),
	}
	var ack *pendingAck
	if msg.qos > 0 {
		if !msg.dup {
			// In hand from now, before it waits for the worker: a resend
			// of it on a new connection waits for this copy.
			msg.sum = msg.digest()
			msg.end = mb.resends.begin(c.id, msg.pid, msg.sum)
		}
		ack = &pendingAck{pid: pk.PacketID, ready: make(chan struct{})}
		// Blocks when MaxInFlight messages wait: the connection is not
		// read until one is answered.
		c.acks <- ack
	}
	mb.work.Add(1)
	c.inbox <- inbound{msg: msg, ack: ack}
	return pk, packets.ErrRejectPacket
}

// mqttMessage is one PUBLISH.
type mqttMessage struct {
	topic    string
	payload  []byte
	pid      uint16
	qos      byte
	dup      bool
	received time.Time
	// mark is the receipt of the message's copy without DUP when it is
	// known: set on receiving that copy, or found as the pending marker
	// by a resend's lookup. Its records' headers end with it.
	mark string
	// sum is digest() once taken, and end ends the message's being in
	// hand (resends.begin) when that began on receipt.
	sum string
	end func()
}

// digest identifies a message's content: topic and payload.
func (m *mqttMessage) digest() string {
	h := sha256.New()
	h.Write([]byte(m.topic))
	h.Write([]byte{0})
	h.Write(m.payload)
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// handle does the work of one message and sets its answer.
func (mb *mqttBroker) handle(c *mqttConn, msg *mqttMessage, ack *pendingAck) {
	mb.answer(c, msg, ack, mb.process(c, msg))
	if ack != nil {
		close(ack.ready)
	}
}

// answer counts the outcome of a message, tells the device its error, and
// sets the PUBACK (not yet released: the caller closes ack.ready).
func (mb *mqttBroker) answer(c *mqttConn, msg *mqttMessage, ack *pendingAck, out outcome) {
	mb.m.message(out.label).Inc()
	if out.errMsg != "" {
		mb.signal(c, msg, out.errMsg)
	}
	if ack == nil {
		return
	}
	switch {
	case out.drop:
		ack.drop = true
	case out.code.Code >= 0x80 && c.proto < 5:
		// 3.1.1 cannot refuse in a PUBACK: the error went to the errors
		// topic (and the dead letters); acknowledge so the device moves
		// on, except over the rate limit, where it must send again.
		ack.drop = out.code == packets.ErrQuotaExceeded
	default:
		ack.code = out.code
		if out.code.Code >= 0x80 {
			// mochi leaves it out when the client asked for no problem
			// information.
			ack.reason = truncate(out.errMsg, 512)
		}
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// outcome is what became of a message.
type outcome struct {
	label  string       // metric label
	code   packets.Code // PUBACK reason
	errMsg string       // told to the device on its errors topic
	drop   bool         // not stored: close the connection, no PUBACK
}

var (
	outStored    = outcome{label: "stored", code: packets.CodeSuccess}
	outDuplicate = outcome{label: "resend_stored_before", code: packets.CodeSuccess}
	outFailed    = outcome{label: "failed", drop: true}
)

// process validates, resolves and produces one message.
func (mi *mqttIngest) process(c *mqttConn, msg *mqttMessage) (out outcome) {
	ctx, cancel := context.WithTimeout(context.Background(), mi.h.produceTimeout+2*time.Second)
	defer cancel()

	var already map[int]bool // items a resend finds on Kafka
	var marker *recordWrite  // the pending marker of a message without DUP
	digest := ""
	if msg.qos > 0 {
		if msg.sum == "" {
			msg.sum = msg.digest()
		}
		digest = msg.sum
		if msg.dup {
			done, items, err := mi.resends.lookup(ctx, c, msg, digest)
			switch {
			case err != nil:
				mi.logger.Warn("mqtt: resend not checked", "client_id", c.id, "packet_id", msg.pid, "err", err)
				return outFailed
			case done:
				return outDuplicate
			}
			already = items
		} else {
			// New by the protocol: an earlier message under this packet
			// id no longer answers for a resend of this one.
			if msg.mark == "" {
				msg.mark = receiptMark(msg.received)
			}
			marker = mi.resends.received(ctx, c.id, msg.pid, msg.mark)
		}
		end := msg.end
		if end == nil {
			end = mi.resends.begin(c.id, msg.pid, digest)
		}
		defer func() {
			// A resend waiting for this copy reads Redis next: the
			// marker first.
			if !msg.dup {
				mi.resends.settle(marker, c.id, msg.pid, out)
			}
			end()
		}()
	}

	batch := msg.topic == TopicParts
	extID := strings.TrimPrefix(msg.topic, TopicPartPrefix)
	var items []batchItem
	if batch {
		if len(msg.payload) > mi.b.maxBody {
			return mi.invalid(ctx, c, msg, fmt.Sprintf("Request body too large: limit is %d bytes", mi.b.maxBody))
		}
		var err error
		items, err = parseParts(msg.payload, msg.received, mi.b.maxParts)
		if err != nil {
			return mi.invalid(ctx, c, msg, "Invalid message format: "+err.Error())
		}
	} else {
		if len(msg.payload) > mi.h.maxBody {
			return mi.invalid(ctx, c, msg, fmt.Sprintf("Request body too large: limit is %d bytes", mi.h.maxBody))
		}
		in, err := parseTopicPart(msg.payload, extID, msg.received)
		if err != nil {
			return mi.invalid(ctx, c, msg, "Invalid message format: "+err.Error())
		}
		items = []batchItem{{in: in}}
		if in.IdempotencyKey != "" {
			items[0].fp = sha256.Sum256(msg.payload)
		}
	}

	// One token per part, as on HTTP; a resend costs nothing more.
	if mi.h.limiter != nil && already == nil {
		if d := mi.h.limiter.Allow(ctx, c.p.KeyID, len(items)); !d.Allowed {
			return outcome{label: "rate_limited", code: packets.ErrQuotaExceeded,
				errMsg: fmt.Sprintf("Rate limit exceeded: retry after %s", d.RetryAfter.Round(time.Millisecond))}
		}
	}

	results := make([]result, len(items))
	// A part whose idempotency key was answered before is not sent again:
	// a stored one counts as stored, a refused one as refused.
	claims := mi.h.claimItems(ctx, c.p, items, results)
	if claims != nil {
		defer mi.h.finishClaims(ctx, claims, func(i int) (int, []byte) { return results[i].status, results[i].body })
	}
	var toSend []int
	var rejected []string
	for i := range items {
		it, ir := &items[i], &results[i]
		if ir.status == 409 {
			// The first message with this key is still at work: no
			// PUBACK, so the device sends again.
			return outFailed
		}
		if ir.status == 200 {
			continue
		}
		if ir.status != 0 {
			// Refused by its key, like any rejected part.
			rejected = append(rejected, itemError(batch, i, ir.body))
			continue
		}
		if it.err != nil {
			ir.status, ir.body = 422, errorBody("Invalid message format: "+it.err.Error())
		} else if !mi.h.build(ctx, c.p, &it.in, msg.received, ir) {
			if ir.status >= 500 {
				mi.logger.Error("mqtt: location look-up failed", "client_id", c.id, "err", ir.err)
				return outFailed
			}
		} else if already[i] {
			ir.status = 200
			continue
		} else {
			toSend = append(toSend, i)
			continue
		}
		rejected = append(rejected, itemError(batch, i, ir.body))
	}
	headers := func(i int) []kgo.RecordHeader {
		if digest == "" {
			return nil
		}
		return []kgo.RecordHeader{{Key: HeaderMQTTMessage, Value: appendMessageID(nil, c.id, msg.pid, digest, i, msg.mark)}}
	}
	errs := mi.b.produceAll(ctx, results, toSend, headers)
	for k, err := range errs {
		if err != nil {
			mi.logger.Error("mqtt: produce failed", "client_id", c.id, "packet_id", msg.pid, "item", toSend[k], "err", err)
			return outFailed
		}
	}
	for _, i := range toSend {
		results[i].status, results[i].body = 200, bodyOK // the answer a repeat of its key gets
	}
	if digest != "" {
		mi.resends.stored(ctx, c.id, msg.pid, digest)
	}
	if len(rejected) == 0 {
		return outStored
	}
	reason := strings.Join(rejected, "; ")
	if err := mi.deadLetter(ctx, c, msg, "invalid", reason); err != nil {
		mi.logger.Error("mqtt: dead letter failed", "client_id", c.id, "err", err)
		return outFailed
	}
	return outcome{label: "invalid", code: packets.ErrPayloadFormatInvalid, errMsg: reason}
}

// itemError is the error of a rejected item, as the HTTP answer's "error".
func itemError(batch bool, i int, body []byte) string {
	msg := strings.TrimSuffix(strings.TrimPrefix(string(body), `{"error":`), "}")
	if batch {
		return fmt.Sprintf("part %d: %s", i, msg)
	}
	return msg
}

// invalid sends a message that cannot be read at all to the dead letters.
func (mi *mqttIngest) invalid(ctx context.Context, c *mqttConn, msg *mqttMessage, reason string) outcome {
	if err := mi.deadLetter(ctx, c, msg, "invalid", reason); err != nil {
		mi.logger.Error("mqtt: dead letter failed", "client_id", c.id, "err", err)
		return outFailed
	}
	return outcome{label: "invalid", code: packets.ErrPayloadFormatInvalid, errMsg: reason}
}

// deadLetter produces the message, with why, to the dead-letter topic and
// waits for the acknowledgement.
func (mi *mqttIngest) deadLetter(ctx context.Context, c *mqttConn, msg *mqttMessage, class, reason string) error {
	rec := &kgo.Record{Topic: mi.dlqTopic, Value: msg.payload, Headers: []kgo.RecordHeader{
		{Key: wire.HeaderDLQReason, Value: []byte(reason)},
		{Key: wire.HeaderDLQClass, Value: []byte("mqtt_" + class)},
		{Key: HeaderMQTTClient, Value: []byte(c.id)},
		{Key: HeaderMQTTTopic, Value: []byte(msg.topic)},
	}}
	if extID, ok := strings.CutPrefix(msg.topic, TopicPartPrefix); ok {
		rec.Key = []byte(extID)
	}
	ctx, cancel := context.WithTimeout(ctx, mi.h.produceTimeout)
	defer cancel()
	done := make(chan error, 1)
	mi.h.prod.Produce(ctx, rec, func(_ *kgo.Record, err error) { done <- err })
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// signal tells the device on takt/errors/<client id> (QoS 1 to a
// subscriber with QoS 1, so a persistent session keeps it).
func (mb *mqttBroker) signal(c *mqttConn, msg *mqttMessage, errMsg string) {
	body := fmt.Appendf(nil, `{"topic":%q,"packet_id":%d,"error":%q}`, msg.topic, msg.pid, errMsg)
	if err := mb.srv.Publish(TopicErrorsPrefix+c.id, body, false, 1); err != nil {
		mb.logger.Warn("mqtt: error message not published", "client_id", c.id, "err", err)
	}
}

// appendMessageID appends the HeaderMQTTMessage value of item i of a
// message, and of the receipt mark when known, to b.
func appendMessageID(b []byte, clientID string, pid uint16, digest string, item int, mark string) []byte {
	b = append(b, clientID...)
	b = append(b, '/')
	b = strconv.AppendUint(b, uint64(pid), 10)
	b = append(b, '/')
	b = append(b, digest...)
	b = append(b, '/')
	b = strconv.AppendInt(b, int64(item), 10)
	if mark != "" {
		b = append(b, '/')
		b = append(b, mark...)
	}
	return b
}

// mqttMetrics are the MQTT side's own metrics.
type mqttMetrics struct {
	connects *prometheus.CounterVec
	messages *prometheus.CounterVec
	resends  *prometheus.CounterVec
	batch    prometheus.Histogram
	outcomes map[string]prometheus.Counter // messages' children, by outcome
}

// message returns the counter of messages with outcome label.
func (m *mqttMetrics) message(label string) prometheus.Counter {
	if c, ok := m.outcomes[label]; ok {
		return c
	}
	return m.messages.WithLabelValues(label)
}

func newMQTTMetrics(reg prometheus.Registerer) (*mqttMetrics, error) {
	m := &mqttMetrics{
		connects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "takt_ingestor_mqtt_connects_total",
			Help: "MQTT connection attempts, by outcome (accepted, refused).",
		}, []string{"outcome"}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "takt_ingestor_mqtt_messages_total",
			Help: "MQTT messages taken, by outcome (stored, resend_stored_before, invalid, rate_limited, failed).",
		}, []string{"outcome"}),
		resends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "takt_ingestor_mqtt_resends_total",
			Help: "QoS 1 resends (DUP), by how they were recognised (record, kafka, in_flight) or not (new).",
		}, []string{"found"}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "takt_ingestor_mqtt_batch_messages",
			Help:    "Messages a connection's worker took at once (those that share a produce, and the others).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 9),
		}),
	}
	m.outcomes = map[string]prometheus.Counter{}
	for _, o := range []outcome{outStored, outDuplicate, outFailed} {
		m.outcomes[o.label] = m.messages.WithLabelValues(o.label)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.connects, m.messages, m.resends, m.batch} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register mqtt metrics: %w", err)
			}
		}
	}
	return m, nil
}
