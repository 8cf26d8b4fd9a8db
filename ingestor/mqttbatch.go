package ingestor

// The per-connection path of MQTT messages. Each connection has a worker
// and an acker. The worker takes what came in while it was busy as one
// batch: the messages that need nothing but the usual (one part on
// takt/parts/<external_id>, not a resend, no idempotency key, valid, a
// known location, within the rate limit) share one produce of their
// records, one wait for Kafka's acknowledgements and one pipeline of their
// resend records; any other message is handled alone, as before, by
// process. The acker writes the PUBACKs in PUBLISH order, each as soon as
// it is ready, and the ones ready together in one write.
//
// The guarantees are those of process: a PUBACK only after Kafka
// acknowledged the message's record and its resend record was written
// (or a second passed), the pending marker of a new message queued before
// its record is produced, and the message marked in hand (resends.begin)
// from its receipt (OnPublish) until after its resend record, so a resend
// on another connection waits for it even while it waits for the worker.

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/twmb/franz-go/pkg/kgo"
)

// maxWorkerBatch bounds the messages one batch of a connection's worker
// takes.
const maxWorkerBatch = 256

// ackFlushBytes is the most PUBACK bytes held before they are written.
const ackFlushBytes = 32 << 10

// inbound is a message received on a connection, with its answer (nil for
// QoS 0).
type inbound struct {
	msg *mqttMessage
	ack *pendingAck
}

// worker handles the messages of c in batches of what came meanwhile,
// until the connection's inbox closes and is drained.
func (mb *mqttBroker) worker(c *mqttConn) {
	batch := make([]inbound, 0, maxWorkerBatch)
	for in := range c.inbox {
		batch = append(batch[:0], in)
	more:
		for len(batch) < cap(batch) {
			select {
			case in, ok := <-c.inbox:
				if !ok {
					break more
				}
				batch = append(batch, in)
			default:
				break more
			}
		}
		mb.m.batch.Observe(float64(len(batch)))
		mb.handleBatch(c, batch)
		clear(batch) // the messages' payloads are not kept until the next batch
	}
}

// fastBatch is the part of a worker's batch that goes through the common
// path together.
type fastBatch struct {
	msgs    []*mqttMessage
	acks    []*pendingAck
	results []result // the parts, for startProduce
	digests []string
	marker  *recordWrite // the pending markers of the QoS 1 messages
	ends    []func()
}

// handleBatch starts the work of a batch of c's messages: the common ones
// are produced together (finishBatch waits for them and answers), the
// others each handled alone.
func (mb *mqttBroker) handleBatch(c *mqttConn, batch []inbound) {
	ctx, cancel := context.WithTimeout(context.Background(), mb.h.produceTimeout+2*time.Second)
	fb := &fastBatch{}
	for _, in := range batch {
		var res result
		if !mb.common(ctx, c, in.msg, &res) {
			go func() {
				defer mb.work.Done()
				mb.handle(c, in.msg, in.ack)
			}()
			continue
		}
		fb.msgs = append(fb.msgs, in.msg)
		fb.acks = append(fb.acks, in.ack)
		fb.results = append(fb.results, res)
	}
	n := len(fb.msgs)
	if n == 0 {
		cancel()
		return
	}
	fb.digests, fb.ends = make([]string, n), make([]func(), n)
	idx := make([]int, n)
	hs := make([]kgo.RecordHeader, n)
	var ids []byte // the header values, one after the other
	var marks pendingMarks
	for k, msg := range fb.msgs {
		idx[k] = k
		if msg.qos == 0 {
			continue
		}
		// New by the protocol (not DUP): as in process, its pending
		// marker goes before its record, and it is in hand from now.
		msg.mark = receiptMark(msg.received)
		if msg.sum == "" {
			msg.sum = msg.digest()
		}
		fb.digests[k] = msg.sum
		marks.add(msg.pid, msg.mark)
		fb.ends[k] = msg.end
		if fb.ends[k] == nil {
			fb.ends[k] = mb.resends.begin(c.id, msg.pid, msg.sum)
		}
		start := len(ids)
		ids = appendMessageID(ids, c.id, msg.pid, msg.sum, 0, msg.mark)
		hs[k] = kgo.RecordHeader{Key: HeaderMQTTMessage, Value: ids[start:len(ids):len(ids)]}
	}
	if marks.fields != nil {
		// One write for the batch's markers, queued before any of its
		// records is produced.
		fb.marker = mb.resends.receivedAll(ctx, c.id, &marks)
	}
	headers := func(k int) []kgo.RecordHeader {
		if fb.digests[k] == "" {
			return nil
		}
		return hs[k : k+1 : k+1]
	}
	pw := mb.b.startProduce(ctx, fb.results, idx, headers)
	go mb.finishBatch(ctx, cancel, c, fb, pw)
}

// common reports whether msg takes the common path, and then sets its part
// in res: QoS 0 or a QoS 1 message without DUP, one valid part on
// takt/parts/<external_id> without an idempotency key, of a location the
// key may write to, within the key's rate limit (its token taken). Any
// other message is left untouched to process, which tells why.
func (mi *mqttIngest) common(ctx context.Context, c *mqttConn, msg *mqttMessage, res *result) bool {
	if msg.dup || msg.qos > 1 || len(msg.payload) > mi.h.maxBody {
		return false
	}
	extID, ok := strings.CutPrefix(msg.topic, TopicPartPrefix)
	if !ok {
		return false
	}
	in, err := parseTopicPart(msg.payload, extID, msg.received)
	if err != nil || in.IdempotencyKey != "" {
		return false
	}
	if !mi.h.build(ctx, c.p, &in, msg.received, res) {
		return false
	}
	// Last, so a message process takes over has not spent a token here.
	if mi.h.limiter != nil && !mi.h.limiter.Allow(ctx, c.p.KeyID, 1).Allowed {
		return false
	}
	return true
}

// finishBatch waits for Kafka's acknowledgement of a batch's records,
// writes the resend records of those stored, and answers each message.
func (mb *mqttBroker) finishBatch(ctx context.Context, cancel context.CancelFunc, c *mqttConn, fb *fastBatch, pw *produceWait) {
	defer cancel()
	errs := pw.wait()
	outs := make([]outcome, len(fb.msgs))
	var recs []storedRecord
	for k, msg := range fb.msgs {
		if err := errs[k]; err != nil {
			mb.logger.Error("mqtt: produce failed", "client_id", c.id, "packet_id", msg.pid, "item", 0, "err", err)
			outs[k] = outFailed
			continue
		}
		outs[k] = outStored
		if fb.digests[k] != "" {
			recs = append(recs, storedRecord{pid: msg.pid, digest: fb.digests[k]})
		}
	}
	mb.resends.storedAll(ctx, c.id, recs)
	for k, msg := range fb.msgs {
		if fb.ends[k] != nil {
			mb.resends.settle(fb.marker, c.id, msg.pid, outs[k])
			fb.ends[k]()
		}
		mb.answer(c, msg, fb.acks[k], outs[k])
	}
	// Released together, so the acker writes them together.
	for _, a := range fb.acks {
		if a != nil {
			close(a.ready)
		}
	}
	for range fb.msgs {
		mb.work.Done()
	}
}

// acker writes the PUBACKs of c in PUBLISH order as they become ready:
// those ready one after the other go out in one write, made when the next
// is not ready or none is queued.
func (mb *mqttBroker) acker(c *mqttConn) {
	defer close(c.ackerDone)
	var buf bytes.Buffer
	for {
		var a *pendingAck
		var ok bool
		select {
		case a, ok = <-c.acks:
		default:
			mb.flushAcks(c, &buf)
			a, ok = <-c.acks
		}
		if !ok {
			mb.flushAcks(c, &buf)
			return
		}
		if !isDone(a.ready) {
			mb.flushAcks(c, &buf)
			<-a.ready
		}
		if a.drop {
			mb.flushAcks(c, &buf)
			_ = mb.srv.DisconnectClient(c.cl, packets.ErrUnspecifiedError)
			c.cl.Stop(errors.New("message not stored"))
			continue
		}
		if c.cl.Closed() {
			buf.Reset()
			continue
		}
		mb.encodeAck(c, &buf, a)
		if buf.Len() >= ackFlushBytes {
			mb.flushAcks(c, &buf)
		}
	}
}

// encodeAck appends a's PUBACK to buf as mochi's WritePacket would encode
// it for c's client (protocol version, problem information, the client's
// maximum packet size: a reason string that does not fit is left out).
func (mb *mqttBroker) encodeAck(c *mqttConn, buf *bytes.Buffer, a *pendingAck) {
	if a.code.Code == 0 && a.reason == "" {
		// The usual one, as mochi encodes it (MQTT 5 too: a success
		// without properties leaves out the reason code).
		buf.Write([]byte{packets.Puback << 4, 2, byte(a.pid >> 8), byte(a.pid)})
		return
	}
	props := &c.cl.Properties.Props
	pk := packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Puback},
		PacketID:        a.pid,
		ReasonCode:      a.code.Code,
		ProtocolVersion: c.proto,
	}
	pk.Properties.ReasonString = a.reason
	pk.Mods.MaxSize = props.MaximumPacketSize
	pk.Mods.DisallowProblemInfo = props.RequestProblemInfoFlag && props.RequestProblemInfo == 0
	pk.Mods.AllowResponseInfo = true
	start := buf.Len()
	_ = pk.PubackEncode(buf) // writes to a bytes.Buffer: no error
	if pk.Mods.MaxSize > 0 && uint32(buf.Len()-start) > pk.Mods.MaxSize && pk.Properties.ReasonString != "" {
		buf.Truncate(start)
		pk.Properties.ReasonString = ""
		_ = pk.PubackEncode(buf)
	}
}

// flushAcks writes the PUBACKs in buf to c's connection, under the client's
// lock as mochi's own writes are, and empties buf.
func (mb *mqttBroker) flushAcks(c *mqttConn, buf *bytes.Buffer) {
	if buf.Len() == 0 {
		return
	}
	cl := c.cl
	cl.Lock()
	var err error
	if cl.Net.Conn != nil {
		_, err = cl.Net.Conn.Write(buf.Bytes())
	}
	cl.Unlock()
	if err != nil {
		mb.logger.Debug("mqtt: PUBACKs not written", "client_id", c.id, "bytes", buf.Len(), "err", err)
	}
	buf.Reset()
}
