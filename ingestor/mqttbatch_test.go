package ingestor

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.golang/packets"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/takt/takt/internal/redisx"
	"github.com/takt/takt/internal/testenv"
)

// writeConn is a net.Conn that keeps each Write.
type writeConn struct {
	net.Conn
	mu     sync.Mutex
	writes [][]byte
	closed bool
}

func (w *writeConn) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, net.ErrClosed
	}
	w.writes = append(w.writes, bytes.Clone(b))
	return len(b), nil
}

func (w *writeConn) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	return nil
}

func (w *writeConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }

func (w *writeConn) SetDeadline(time.Time) error { return nil }

func (w *writeConn) got() [][]byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([][]byte(nil), w.writes...)
}

// ackerFixture is a connection of protocol proto with its acker running.
func ackerFixture(t *testing.T, proto byte) (*mqttBroker, *mqttConn, *writeConn) {
	t.Helper()
	srv := mqtt.New(&mqtt.Options{Logger: testenv.Logger(t)})
	wc := &writeConn{}
	cl := srv.NewClient(wc, "t", "dev-1", false)
	cl.Properties.ProtocolVersion = proto
	mb := &mqttBroker{srv: srv, mqttIngest: &mqttIngest{logger: testenv.Logger(t)}}
	c := &mqttConn{cl: cl, id: cl.ID, proto: proto, acks: make(chan *pendingAck, 64), ackerDone: make(chan struct{})}
	return mb, c, wc
}

func readyAck(pid uint16, code packets.Code, reason string) *pendingAck {
	a := &pendingAck{pid: pid, ready: make(chan struct{}), code: code, reason: reason}
	close(a.ready)
	return a
}

// decodeAcks reads the PUBACKs of one write, in order.
func decodeAcks(t *testing.T, proto byte, b []byte) []packets.Packet {
	t.Helper()
	var out []packets.Packet
	for len(b) > 0 {
		var fh packets.FixedHeader
		if err := fh.Decode(b[0]); err != nil {
			t.Fatal(err)
		}
		n, used := 0, 1
		for mult := 1; ; mult *= 128 {
			n += int(b[used]&127) * mult
			used++
			if b[used-1] < 128 {
				break
			}
		}
		fh.Remaining = n
		pk := packets.Packet{FixedHeader: fh, ProtocolVersion: proto}
		if fh.Type != packets.Puback {
			t.Fatalf("packet type %d, want PUBACK", fh.Type)
		}
		if err := pk.PubackDecode(b[used : used+n]); err != nil {
			t.Fatal(err)
		}
		out = append(out, pk)
		b = b[used+n:]
	}
	return out
}

// TestAckerCoalesces: PUBACKs ready one after the other leave in one write,
// in PUBLISH order with their reason codes; one not ready yet ends the
// write (the ones before it are not held back for it), and its PUBACK
// follows when it is ready.
func TestAckerCoalesces(t *testing.T) {
	for _, proto := range []byte{4, 5} {
		mb, c, wc := ackerFixture(t, proto)
		c.acks <- readyAck(1, packets.CodeSuccess, "")
		c.acks <- readyAck(2, packets.ErrPayloadFormatInvalid, "Location not found for external_id: x")
		c.acks <- readyAck(3, packets.CodeSuccess, "")
		late := &pendingAck{pid: 4, ready: make(chan struct{})}
		c.acks <- late
		go mb.acker(c)
		deadline := time.Now().Add(5 * time.Second)
		for len(wc.got()) == 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		got := wc.got()
		if len(got) != 1 {
			t.Fatalf("protocol %d: %d writes before the 4th PUBACK is ready, want 1", proto, len(got))
		}
		first := decodeAcks(t, proto, got[0])
		wantCodes := []byte{0, 0x99, 0}
		if proto < 5 {
			wantCodes = []byte{0, 0, 0} // 3.1.1 has no reason code in a PUBACK
		}
		if len(first) != 3 {
			t.Fatalf("protocol %d: first write holds %d PUBACKs, want 3", proto, len(first))
		}
		for i, pk := range first {
			if pk.PacketID != uint16(i+1) || pk.ReasonCode != wantCodes[i] {
				t.Errorf("protocol %d: PUBACK %d is packet %d code %#x, want packet %d code %#x", proto, i, pk.PacketID, pk.ReasonCode, i+1, wantCodes[i])
			}
		}
		if proto == 5 && first[1].Properties.ReasonString != "Location not found for external_id: x" {
			t.Errorf("reason string %q", first[1].Properties.ReasonString)
		}
		close(late.ready)
		close(c.acks)
		<-c.ackerDone
		got = wc.got()
		if len(got) != 2 {
			t.Fatalf("protocol %d: %d writes, want 2", proto, len(got))
		}
		if second := decodeAcks(t, proto, got[1]); len(second) != 1 || second[0].PacketID != 4 {
			t.Errorf("protocol %d: second write %+v, want the PUBACK of 4", proto, second)
		}
	}
}

// TestAckerDropsAfterRefusal: the PUBACKs before a message that was not
// stored are written, then the connection is closed, and no PUBACK after
// it leaves (the device sends those messages again).
func TestAckerDropsAfterRefusal(t *testing.T) {
	mb, c, wc := ackerFixture(t, 5)
	c.acks <- readyAck(1, packets.CodeSuccess, "")
	drop := readyAck(2, packets.CodeSuccess, "")
	drop.drop = true
	c.acks <- drop
	c.acks <- readyAck(3, packets.CodeSuccess, "")
	close(c.acks)
	mb.acker(c)
	if !c.cl.Closed() {
		t.Error("connection open after a message not stored")
	}
	var pids []uint16
	for _, w := range wc.got() {
		if w[0]>>4 != packets.Puback {
			continue // the DISCONNECT
		}
		for _, pk := range decodeAcks(t, 5, w) {
			pids = append(pids, pk.PacketID)
		}
	}
	if len(pids) != 1 || pids[0] != 1 {
		t.Errorf("PUBACKs written for %v, want [1]", pids)
	}
}

// TestEncodeAckAsMochi: the PUBACKs the acker encodes are byte for byte
// those of mochi's WritePacket, for both protocols, with and without a
// reason, and a reason string that the client's maximum packet size does
// not allow is left out.
func TestEncodeAckAsMochi(t *testing.T) {
	for _, proto := range []byte{4, 5} {
		for _, a := range []*pendingAck{
			{pid: 1},
			{pid: 0x1234, code: packets.ErrPayloadFormatInvalid, reason: "Invalid message format: x"},
			{pid: 65535, code: packets.ErrQuotaExceeded, reason: "Rate limit exceeded"},
		} {
			mb, c, wc := ackerFixture(t, proto)
			var buf bytes.Buffer
			mb.encodeAck(c, &buf, a)
			pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: a.pid, ReasonCode: a.code.Code}
			pk.Properties.ReasonString = a.reason
			if err := c.cl.WritePacket(pk); err != nil {
				t.Fatal(err)
			}
			if got := wc.got(); len(got) != 1 || !bytes.Equal(got[0], buf.Bytes()) {
				t.Errorf("protocol %d, packet %d: encoded % x, mochi % x", proto, a.pid, buf.Bytes(), got)
			}
		}
	}
	mb, c, _ := ackerFixture(t, 5)
	c.cl.Properties.Props.MaximumPacketSize = 8
	var buf bytes.Buffer
	mb.encodeAck(c, &buf, &pendingAck{pid: 9, code: packets.ErrPayloadFormatInvalid, reason: "a reason longer than the client takes"})
	pks := decodeAcks(t, 5, buf.Bytes())
	if len(pks) != 1 || pks[0].PacketID != 9 || pks[0].ReasonCode != 0x99 || pks[0].Properties.ReasonString != "" || buf.Len() > 8 {
		t.Errorf("over the maximum packet size: % x", buf.Bytes())
	}
}

// TestMQTTInFlightBurst: a device with many QoS 1 messages in flight at
// once (written back to back, so the connection's worker takes them in
// batches) gets every PUBACK, in PUBLISH order, with each message's own
// reason code: the common ones stored once each with their resend record
// written, an invalid one and one of an unknown location refused (0x99),
// a batch and a part with an idempotency key stored on the way of their
// own. A resend of one of them after the burst is not stored again.
func TestMQTTInFlightBurst(t *testing.T) {
	s := newStack(t)
	cfg, _ := mqttRun(t, s)
	c := rawConnect(t, cfg.MQTTAddr, "dev-burst", s.key)

	type msg struct {
		topic, payload string
		code           byte
		parts          int
	}
	var msgs []msg
	for i := range 40 {
		m := msg{"takt/parts/line_1", fmt.Sprintf(`{"part":{"quantity":%d}}`, i+1), 0, 1}
		switch i {
		case 4:
			m = msg{"takt/parts/line_1", `{"part":{"quality":"perfect"}}`, 0x99, 0}
		case 9:
			m = msg{"takt/parts/nowhere", `{"part":{}}`, 0x99, 0}
		case 13:
			m = msg{"takt/parts", `{"parts":[{"external_id":"line_1"},{"external_id":"line_1"}]}`, 0, 2}
		case 17:
			m = msg{"takt/parts/line_1", `{"part":{"idempotency_key":"burst-1"}}`, 0, 1}
		}
		msgs = append(msgs, m)
	}
	var out bytes.Buffer
	want := 0
	for i, m := range msgs {
		cp := paho.NewControlPacket(paho.PUBLISH)
		cp.Content = &paho.Publish{PacketID: uint16(i + 1), QoS: 1, Topic: m.topic, Payload: []byte(m.payload)}
		if _, err := cp.WriteTo(&out); err != nil {
			t.Fatal(err)
		}
		want += m.parts
	}
	if _, err := c.conn.Write(out.Bytes()); err != nil {
		t.Fatal(err)
	}
	for i, m := range msgs {
		ack := c.read()
		pa, ok := ack.Content.(*paho.Puback)
		if !ok || pa.PacketID != uint16(i+1) || pa.ReasonCode != m.code {
			t.Fatalf("answer %d: %v, want the PUBACK of %d with %#x", i, ack, i+1, m.code)
		}
	}

	recs := recordsOf(t, s, s.topic, want)
	if len(recs) != want {
		t.Fatalf("%d records, want %d", len(recs), want)
	}
	ids := map[string]bool{}
	for _, r := range recs {
		id := string(r.Headers[0].Value)
		if ids[id] {
			t.Errorf("record %s twice", id)
		}
		ids[id] = true
	}
	// The resend records of the common messages: their digests.
	got, err := s.rdb.HGetAll(context.Background(), redisx.NewKeys(s.prefix).MQTTPublished("dev-burst")).Result()
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range msgs {
		if m.code != 0 {
			continue
		}
		mm := mqttMessage{topic: m.topic, payload: []byte(m.payload)}
		if v := got[redisx.MQTTPacketField(uint16(i+1))]; v != mm.digest() {
			t.Errorf("resend record of %d: %q, want its digest", i+1, v)
		}
	}

	// The PUBACK of packet 3 was "lost": its resend is answered, and not
	// stored again.
	c.conn.Close()
	c = rawConnect(t, cfg.MQTTAddr, "dev-burst", s.key)
	if code := c.publish(3, true, msgs[2].topic, msgs[2].payload); code != 0 {
		t.Fatalf("resend: PUBACK %#x", code)
	}
	if n := len(recordsOf(t, s, s.topic, want)); n != want {
		t.Fatalf("%d records after the resend, want %d", n, want)
	}
}
