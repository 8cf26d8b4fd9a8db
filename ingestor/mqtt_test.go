package ingestor

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	mpackets "github.com/mochi-mqtt/server/v2/packets"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/takt/takt/internal/redisx"
	"github.com/takt/takt/internal/testenv"
	"github.com/takt/takt/internal/tlsx"
	"github.com/takt/takt/internal/wire"
)

// mqttRun runs the ingestor with MQTT (plain and TLS) and HTTPS next to
// plain HTTP, and returns its config and the local CA.
func mqttRun(t *testing.T, s *stack) (Config, tlsx.LocalFiles) {
	t.Helper()
	files, _, err := tlsx.LocalCA(t.TempDir(), []string{"127.0.0.1", "localhost"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.config(t)
	cfg.TLSAddr, cfg.MQTTAddr, cfg.MQTTTLSAddr = freeAddr(t), freeAddr(t), freeAddr(t)
	cfg.TLS = tlsx.Server{CertFile: files.Cert, KeyFile: files.Key, CheckEvery: time.Second}
	cfg.DLQTopic = testenv.Topic(t, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, testenv.Logger(t)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	waitReady(t, "http://"+cfg.Addr, done)
	return cfg, files
}

// mqttClient connects a paho (MQTT 5) client; on a refused connection it
// returns the CONNACK's reason code in the error.
func mqttClient(t *testing.T, conn net.Conn, id, key string, received chan<- *paho.Publish) (*paho.Client, error) {
	t.Helper()
	c := paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn), OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(pr paho.PublishReceived) (bool, error) {
			if received != nil {
				received <- pr.Packet
			}
			return true, nil
		}}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, &paho.Connect{ClientID: id, KeepAlive: 30, CleanStart: true,
		Username: "press-7", UsernameFlag: true, Password: []byte(key), PasswordFlag: true})
	if err != nil {
		code := -1
		if ca != nil {
			code = int(ca.ReasonCode)
		}
		return nil, fmt.Errorf("connack %#x: %w", code, err)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c, nil
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

// recordsOf reads every record of topic up to its current end.
func recordsOf(t *testing.T, s *stack, topic string, atLeast int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.e.Brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		fs := cl.PollFetches(ctx)
		cancel()
		out = append(out, fs.Records()...)
		if (len(out) >= atLeast && ctx.Err() != nil) || time.Now().After(deadline) {
			return out
		}
	}
}

// TestMQTT: QoS 1 messages reach Kafka before their PUBACK, invalid ones go
// to the dead letters and the device hears why, a wrong key is refused,
// and the TLS listeners shake hands with the local CA.
func TestMQTT(t *testing.T) {
	s := newStack(t)
	cfg, files := mqttRun(t, s)

	// A wrong key, and a key without the ingest scope: CONNACK refused.
	for _, key := range []string{"takt_0000000000000000000000000000000000000000", s.readKey, "x"} {
		if _, err := mqttClient(t, dial(t, cfg.MQTTAddr), "bad", key, nil); err == nil || !strings.Contains(err.Error(), "0x86") {
			t.Errorf("key %.10q: %v, want CONNACK 0x86 (bad user name or password)", key, err)
		}
	}

	errs := make(chan *paho.Publish, 10)
	c, err := mqttClient(t, dial(t, cfg.MQTTAddr), "dev-1", s.key, errs)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "takt/errors/dev-1", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	if sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "takt/errors/dev-2", QoS: 1}}}); err == nil && sa.Reasons[0] < 0x80 {
		t.Error("subscribed to another client's errors")
	}

	pub := func(topic, payload string) *paho.PublishResponse {
		t.Helper()
		r, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(payload)})
		if r == nil {
			t.Fatalf("publish %s: %v", payload, err)
		}
		return r
	}
	for _, p := range []struct{ topic, payload string }{
		{"takt/parts/line_1", `{"part":{"quantity":2,"product":"PROD001"}}`},
		{"takt/parts/line_1", `{"part":{"external_id":"line_1","quality":"scrap","reason":"REASON01"}}`},
		{"takt/parts", `{"parts":[{"external_id":"line_1","quantity":3},{"external_id":"line_1"}]}`},
	} {
		if r := pub(p.topic, p.payload); r.ReasonCode != 0 {
			t.Errorf("%s: PUBACK %#x (%s)", p.payload, r.ReasonCode, r.Properties.ReasonString)
		}
	}
	recs := recordsOf(t, s, s.topic, 4)
	if len(recs) != 4 {
		t.Fatalf("%d records, want 4", len(recs))
	}
	var qty uint32
	for _, r := range recs {
		p, err := wire.Decode(r.Value)
		if err != nil || p.ExternalID != "line_1" || string(r.Key) != "line_1" {
			t.Fatalf("record %s: %v", r.Value, err)
		}
		qty += p.Quantity
		if len(r.Headers) != 1 || r.Headers[0].Key != HeaderMQTTMessage || !strings.HasPrefix(string(r.Headers[0].Value), "dev-1/") {
			t.Errorf("headers %v", r.Headers)
		}
	}
	if qty != 7 {
		t.Errorf("quantity %d, want 7", qty)
	}

	// Invalid: PUBACK 0x99 with the reason, a dead letter, a message on
	// the device's errors topic.
	bad := []struct{ topic, payload, want string }{
		{"takt/parts/line_1", `{"part":{"quantity":1.5}}`, "quantity must be an integer"},
		{"takt/parts/line_1", `{"part":{"external_id":"line_2"}}`, `external_id "line_2" differs from the topic's "line_1"`},
		{"takt/parts/nowhere", `{"part":{}}`, "Location not found for external_id: nowhere"},
		{"takt/parts", `{"parts":[{"external_id":"line_1"},{"external_id":"line_1","quality":"perfect"}]}`, "part 1:"},
	}
	for _, b := range bad {
		r := pub(b.topic, b.payload)
		if r.ReasonCode != 0x99 || !strings.Contains(r.Properties.ReasonString, b.want) {
			t.Errorf("%s: PUBACK %#x %q, want 0x99 saying %q", b.payload, r.ReasonCode, r.Properties.ReasonString, b.want)
		}
		select {
		case m := <-errs:
			if m.Topic != "takt/errors/dev-1" || !strings.Contains(string(m.Payload), b.topic) {
				t.Errorf("error message %s on %s", m.Payload, m.Topic)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("%s: no message on takt/errors/dev-1", b.payload)
		}
	}
	dl := recordsOf(t, s, cfg.DLQTopic, len(bad))
	if len(dl) != len(bad) {
		t.Fatalf("%d dead letters, want %d", len(dl), len(bad))
	}
	for i, r := range dl {
		h := map[string]string{}
		for _, x := range r.Headers {
			h[x.Key] = string(x.Value)
		}
		if string(r.Value) != bad[i].payload || !strings.Contains(h[wire.HeaderDLQReason], bad[i].want) ||
			h[HeaderMQTTClient] != "dev-1" || h[wire.HeaderDLQClass] != "mqtt_invalid" {
			t.Errorf("dead letter %s: %v", r.Value, h)
		}
	}
	// The batch's valid item was stored.
	if n := len(recordsOf(t, s, s.topic, 5)); n != 5 {
		t.Errorf("%d records after the half-valid batch, want 5", n)
	}

	// MQTT over TLS with the local CA.
	tc, err := tlsx.Client{Enabled: true, CAFile: files.CA}.Config()
	if err != nil {
		t.Fatal(err)
	}
	tconn, err := tls.Dial("tcp", cfg.MQTTTLSAddr, tc)
	if err != nil {
		t.Fatalf("MQTT TLS handshake: %v", err)
	}
	ct, err := mqttClient(t, tconn, "dev-tls", s.key, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := ct.Publish(ctx, &paho.Publish{Topic: "takt/parts/line_1", QoS: 1, Payload: []byte(`{"part":{}}`)}); err != nil || r.ReasonCode != 0 {
		t.Errorf("publish over TLS: %v", err)
	}
	if _, err := tls.Dial("tcp", cfg.MQTTTLSAddr, &tls.Config{}); err == nil {
		t.Error("TLS handshake without the CA succeeded")
	}
	// The HTTPS ingest listener too (the three listeners: HTTPS, MQTTS,
	// and the query API's in queryapi's tests).
	if conn, err := tls.Dial("tcp", cfg.TLSAddr, tc); err != nil {
		t.Errorf("HTTPS handshake: %v", err)
	} else {
		conn.Close()
	}
}

// rawConn is an MQTT 5 connection driven packet by packet, to send what a
// library does not let one choose (the DUP flag).
type rawConn struct {
	t    *testing.T
	conn net.Conn
}

func rawConnect(t *testing.T, addr, id, key string) *rawConn {
	t.Helper()
	r := &rawConn{t: t, conn: dial(t, addr)}
	t.Cleanup(func() { r.conn.Close() })
	cp := packets.NewControlPacket(packets.CONNECT)
	cp.Content = &packets.Connect{ProtocolName: "MQTT", ProtocolVersion: 5, ClientID: id, KeepAlive: 30,
		CleanStart: true, PasswordFlag: true, Password: []byte(key), UsernameFlag: true, Username: "raw"}
	if _, err := cp.WriteTo(r.conn); err != nil {
		t.Fatal(err)
	}
	if ack := r.read(); ack.Type != packets.CONNACK || ack.Content.(*packets.Connack).ReasonCode != 0 {
		t.Fatalf("connect: %v", ack)
	}
	return r
}

func (r *rawConn) read() *packets.ControlPacket {
	r.t.Helper()
	_ = r.conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	p, err := packets.ReadPacket(r.conn)
	if err != nil {
		r.t.Fatal(err)
	}
	return p
}

// publish sends a QoS 1 PUBLISH and returns its PUBACK's reason code.
func (r *rawConn) publish(pid uint16, dup bool, topic, payload string) byte {
	r.t.Helper()
	cp := packets.NewControlPacket(packets.PUBLISH)
	cp.Content = &packets.Publish{PacketID: pid, QoS: 1, Duplicate: dup, Topic: topic, Payload: []byte(payload)}
	if _, err := cp.WriteTo(r.conn); err != nil {
		r.t.Fatal(err)
	}
	ack := r.read()
	pa, ok := ack.Content.(*packets.Puback)
	if !ok || pa.PacketID != pid {
		r.t.Fatalf("want the PUBACK of %d, got %v", pid, ack)
	}
	return pa.ReasonCode
}

// TestMQTTResendStoredOnce: a resend (DUP, same packet id and payload) of
// a message Kafka acknowledged is acknowledged and not stored again,
// whether the Redis record says so or only the records on Kafka do; a new
// message under a reused packet id is stored.
func TestMQTTResendStoredOnce(t *testing.T) {
	s := newStack(t)
	cfg, _ := mqttRun(t, s)
	const topic, body = "takt/parts/line_1", `{"part":{"quantity":1}}`

	c := rawConnect(t, cfg.MQTTAddr, "dev-r", s.key)
	if code := c.publish(7, false, topic, body); code != 0 {
		t.Fatalf("PUBACK %#x", code)
	}
	// The PUBACK was "lost": the device resends on a new connection.
	c.conn.Close()
	c = rawConnect(t, cfg.MQTTAddr, "dev-r", s.key)
	if code := c.publish(7, true, topic, body); code != 0 {
		t.Fatalf("resend: PUBACK %#x", code)
	}
	if n := len(recordsOf(t, s, s.topic, 1)); n != 1 {
		t.Fatalf("%d records after a resend, want 1", n)
	}

	// The Redis record lost (the ingestor died before writing it): the
	// records on Kafka still tell.
	ctx := context.Background()
	if err := s.rdb.HDel(ctx, redisx.NewKeys(s.prefix).MQTTPublished("dev-r"), redisx.MQTTPacketField(7)).Err(); err != nil {
		t.Fatal(err)
	}
	c.conn.Close()
	c = rawConnect(t, cfg.MQTTAddr, "dev-r", s.key)
	if code := c.publish(7, true, topic, body); code != 0 {
		t.Fatalf("resend without record: PUBACK %#x", code)
	}
	if n := len(recordsOf(t, s, s.topic, 1)); n != 1 {
		t.Fatalf("%d records after a resend found on Kafka, want 1", n)
	}

	// Packet id 7 reused for a new message (no DUP), even with the same
	// payload: stored. A DUP with another payload is another message.
	if code := c.publish(7, false, topic, body); code != 0 {
		t.Fatal(code)
	}
	if code := c.publish(8, true, topic, `{"part":{"quantity":2}}`); code != 0 {
		t.Fatal(code)
	}
	if n := len(recordsOf(t, s, s.topic, 3)); n != 3 {
		t.Fatalf("%d records, want 3", n)
	}
}

// TestMQTT311ErrorTopic: an MQTT 3.1.1 device hears about an invalid
// message on takt/errors/<client id>, and a wrong key is refused (with
// mosquitto's client, as a device's).
func TestMQTT311ErrorTopic(t *testing.T) {
	s := newStack(t)
	cfg, _ := mqttRun(t, s)
	conn := dial(t, cfg.MQTTAddr)
	defer conn.Close()
	write := func(pk mpackets.Packet, enc func(*mpackets.Packet, *bytes.Buffer) error) {
		t.Helper()
		pk.ProtocolVersion = 4
		var b bytes.Buffer
		if err := enc(&pk, &b); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Write(b.Bytes()); err != nil {
			t.Fatal(err)
		}
	}
	read := func() mpackets.Packet {
		t.Helper()
		_ = conn.SetReadDeadline(time.Now().Add(15 * time.Second))
		var hdr [1]byte
		if _, err := io.ReadFull(conn, hdr[:]); err != nil {
			t.Fatal(err)
		}
		n, mult := 0, 1
		for {
			var b [1]byte
			if _, err := io.ReadFull(conn, b[:]); err != nil {
				t.Fatal(err)
			}
			n += int(b[0]&127) * mult
			mult *= 128
			if b[0] < 128 {
				break
			}
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(conn, body); err != nil {
			t.Fatal(err)
		}
		pk := mpackets.Packet{ProtocolVersion: 4}
		if err := pk.FixedHeader.Decode(hdr[0]); err != nil {
			t.Fatal(err)
		}
		pk.FixedHeader.Remaining = n
		var err error
		switch pk.FixedHeader.Type {
		case mpackets.Connack:
			err = pk.ConnackDecode(body)
		case mpackets.Suback:
			err = pk.SubackDecode(body)
		case mpackets.Puback:
			err = pk.PubackDecode(body)
		case mpackets.Publish:
			err = pk.PublishDecode(body)
		}
		if err != nil {
			t.Fatal(err)
		}
		return pk
	}
	write(mpackets.Packet{FixedHeader: mpackets.FixedHeader{Type: mpackets.Connect}, Connect: mpackets.ConnectParams{
		ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 30, ClientIdentifier: "plc-311",
		UsernameFlag: true, Username: []byte("plc"), PasswordFlag: true, Password: []byte(s.key)}}, (*mpackets.Packet).ConnectEncode)
	if ack := read(); ack.FixedHeader.Type != mpackets.Connack || ack.ReasonCode != 0 {
		t.Fatalf("CONNACK %+v", ack)
	}
	write(mpackets.Packet{FixedHeader: mpackets.FixedHeader{Type: mpackets.Subscribe, Qos: 1}, PacketID: 1,
		Filters: mpackets.Subscriptions{{Filter: "takt/errors/plc-311", Qos: 1}}}, (*mpackets.Packet).SubscribeEncode)
	if ack := read(); ack.FixedHeader.Type != mpackets.Suback || len(ack.ReasonCodes) != 1 || ack.ReasonCodes[0] != 1 {
		t.Fatalf("SUBACK %+v", ack)
	}
	write(mpackets.Packet{FixedHeader: mpackets.FixedHeader{Type: mpackets.Publish, Qos: 1}, PacketID: 2,
		TopicName: "takt/parts/line_1", Payload: []byte(`{"part":{"quality":"perfect"}}`)}, (*mpackets.Packet).PublishEncode)
	var gotAck, gotErr bool
	for !gotAck || !gotErr {
		pk := read()
		switch {
		case pk.FixedHeader.Type == mpackets.Puback && pk.PacketID == 2:
			gotAck = true
		case pk.FixedHeader.Type == mpackets.Publish && pk.TopicName == "takt/errors/plc-311":
			if !strings.Contains(string(pk.Payload), "quality must be good, scrap or rework") {
				t.Errorf("error message %s", pk.Payload)
			}
			gotErr = true
		default:
			t.Fatalf("unexpected %+v", pk)
		}
	}
	if n := len(recordsOf(t, s, cfg.DLQTopic, 1)); n != 1 {
		t.Errorf("%d dead letters, want 1", n)
	}

	if _, err := exec.LookPath("mosquitto_pub"); err != nil {
		t.Fatal("mosquitto_pub not found (Debian package mosquitto-clients; compose/local/stack.sh install adds it)")
	}
	host, port, _ := net.SplitHostPort(cfg.MQTTAddr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "mosquitto_pub", "-V", "mqttv311", "-h", host, "-p", port, "-i", "x",
		"-u", "plc", "-P", "wrong", "-q", "1", "-t", "takt/parts/line_1", "-m", "{}").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "authoris") && !strings.Contains(string(out), "refused") {
		t.Errorf("wrong key: %v: %s", err, out)
	}
	out, err = exec.CommandContext(ctx, "mosquitto_pub", "-V", "mqttv311", "-h", host, "-p", port, "-i", "good-311",
		"-u", "plc", "-P", s.key, "-q", "1", "-t", "takt/parts/line_1", "-m", `{"part":{"quantity":4}}`).CombinedOutput()
	if err != nil {
		t.Errorf("mosquitto_pub: %v: %s", err, out)
	}
}

// TestMQTTResendOfReusedPacketID: a packet id is free again once
// acknowledged, so a device sends a new message under it, here with the
// same payload as the one before (a part without recorded_at). When that
// new message is not stored (Kafka refuses it: no PUBACK, the connection
// closed), its resend (DUP) is not taken for the earlier message: neither
// the earlier message's Redis record nor its record on Kafka answers for
// it. And when a message reached Kafka but its Redis record was not
// written (only its pending marker), the resend is found on Kafka by its
// receipt and not stored again.
func TestMQTTResendOfReusedPacketID(t *testing.T) {
	s := newStack(t)
	// A Kafka of the test's own, to refuse a produce.
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, s.topic), kfake.SeedTopics(1, "dlq"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close)
	var refuse atomic.Bool
	kc.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		kc.KeepControl()
		if !refuse.Load() {
			return nil, nil, false
		}
		pr := req.(*kmsg.ProduceRequest)
		resp := pr.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range pr.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.InvalidRecord.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	cfg := s.config(t)
	cfg.Brokers, cfg.DLQTopic, cfg.MQTTAddr = kc.ListenAddrs(), "dlq", freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, testenv.Logger(t)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	waitReady(t, "http://"+cfg.Addr, done)
	stored := func(want int) []*kgo.Record {
		t.Helper()
		cl, err := kgo.NewClient(kgo.SeedBrokers(kc.ListenAddrs()...), kgo.ConsumeTopics(s.topic),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		// Up to want records, then until a poll finds nothing more.
		var out []*kgo.Record
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) {
			pctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			fs := cl.PollFetches(pctx)
			cancel()
			if len(fs.Records()) == 0 && len(out) >= want {
				break
			}
			out = append(out, fs.Records()...)
		}
		if len(out) != want {
			t.Fatalf("%d records on Kafka, want %d", len(out), want)
		}
		return out
	}

	const topic, body = "takt/parts/line_1", `{"part":{"quantity":1}}`
	c := rawConnect(t, cfg.MQTTAddr, "dev-reuse", s.key)
	if code := c.publish(7, false, topic, body); code != 0 {
		t.Fatalf("first message: PUBACK %#x", code)
	}
	// The second message under packet id 7, like the first: Kafka refuses
	// it, so no PUBACK, and the connection is closed.
	refuse.Store(true)
	cp := packets.NewControlPacket(packets.PUBLISH)
	cp.Content = &packets.Publish{PacketID: 7, QoS: 1, Topic: topic, Payload: []byte(body)}
	if _, err := cp.WriteTo(c.conn); err != nil {
		t.Fatal(err)
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	if p, err := packets.ReadPacket(c.conn); err == nil && p.Type != packets.DISCONNECT {
		t.Fatalf("a message Kafka refused was answered: %v", p)
	}
	refuse.Store(false)
	// Its resend is stored: one record per message.
	c = rawConnect(t, cfg.MQTTAddr, "dev-reuse", s.key)
	if code := c.publish(7, true, topic, body); code != 0 {
		t.Fatalf("resend: PUBACK %#x", code)
	}
	recs := stored(2)
	if a, b := string(recs[0].Headers[0].Value), string(recs[1].Headers[0].Value); a == b {
		t.Errorf("both messages carry %q", a)
	}
	// And a second resend of it was stored before.
	c.conn.Close()
	c = rawConnect(t, cfg.MQTTAddr, "dev-reuse", s.key)
	if code := c.publish(7, true, topic, body); code != 0 {
		t.Fatalf("second resend: PUBACK %#x", code)
	}
	stored(2)

	// A third message under packet id 7 reaches Kafka, and the ingestor
	// "dies" before writing its Redis record: Redis holds its pending
	// marker. Its resend is found on Kafka, under its receipt.
	if code := c.publish(7, false, topic, body); code != 0 {
		t.Fatalf("third message: PUBACK %#x", code)
	}
	recs = stored(3)
	id := string(recs[2].Headers[0].Value)
	mark := id[strings.LastIndexByte(id, '/')+1:]
	key := redisx.NewKeys(s.prefix).MQTTPublished("dev-reuse")
	if err := s.rdb.HSet(context.Background(), key, redisx.MQTTPacketField(7), "pending:"+mark).Err(); err != nil {
		t.Fatal(err)
	}
	c.conn.Close()
	c = rawConnect(t, cfg.MQTTAddr, "dev-reuse", s.key)
	if code := c.publish(7, true, topic, body); code != 0 {
		t.Fatalf("third message's resend: PUBACK %#x", code)
	}
	stored(3)
}

// TestMQTTIdempotencyKey: a part's idempotency_key holds over MQTT as over
// HTTP, in one key space: a new message (not a resend) with a stored key
// is acknowledged and not stored again, the key with another part is
// invalid, and a key twice in one batch rejects the second part.
func TestMQTTIdempotencyKey(t *testing.T) {
	s := newStack(t)
	cfg, _ := mqttRun(t, s)
	base := "http://" + cfg.Addr
	c := rawConnect(t, cfg.MQTTAddr, "dev-i", s.key)
	const topic, body = "takt/parts/line_1", `{"part":{"idempotency_key":"m-1"}}`
	for i, st := range []struct {
		topic, payload string
		code           byte
	}{
		{topic, body, 0},
		{topic, body, 0},
		{topic, `{"part":{"quantity":2,"idempotency_key":"m-1"}}`, 0x99},
		{"takt/parts", `{"parts":[{"external_id":"line_1","idempotency_key":"m-2"},{"external_id":"line_1","idempotency_key":"m-2"}]}`, 0x99},
	} {
		if code := c.publish(uint16(i+1), false, st.topic, st.payload); code != st.code {
			t.Errorf("message %d: PUBACK %#x, want %#x", i+1, code, st.code)
		}
	}
	if a := idemPost(t, base, Path, s.key, "m-1", `{"part":{"external_id":"line_1"}}`); a.status != 422 {
		t.Errorf("the MQTT key over HTTP with another body: %+v", a)
	}
	if a := idemPost(t, base, Path, s.key, "m-3", `{"part":{"external_id":"line_1"}}`); a.status != 200 {
		t.Fatalf("HTTP: %+v", a)
	}
	if code := c.publish(9, false, topic, `{"part":{"idempotency_key":"m-3"}}`); code != 0x99 {
		t.Errorf("an HTTP key over MQTT with another body: PUBACK %#x", code)
	}
	parts := s.partsUntilSentinel(t, base)
	ids := map[string]bool{}
	for _, p := range parts {
		ids[p.IdempotencyID] = true
	}
	if len(parts) != 3 || len(ids) != 3 {
		t.Fatalf("topic holds %d parts with %d ids, want 3 (m-1, m-2, m-3)", len(parts), len(ids))
	}
}
