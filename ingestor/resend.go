package ingestor

// Resends. A device that did not see the PUBACK of a QoS 1 message sends
// it again when it reconnects, with the DUP flag and the same packet id.
// If Kafka had acknowledged the first copy, storing the second would count
// the parts twice: the processor writes each record at its Kafka
// coordinates, so two records of one part are two rows, whatever their
// content. So the ingestor recognises a resend before producing it:
//
//  1. In this process: a copy still being handled (the old connection's)
//     is waited for.
//  2. Redis: after Kafka acknowledged every record of a message, and before
//     its PUBACK, the ingestor sets field <packet id> of the client's hash
//     <p>mqtt:pubs:<client id> to the message's digest (topic and payload);
//     the hash expires the session expiry after its last write. A resend
//     whose digest is there was stored: PUBACK, nothing produced. The
//     records of a pipeline are one HSET per client, and the expiry is
//     set at most once a second per hash (to the session expiry and that
//     second), so the hash outlives each write by the session expiry.
//  3. Kafka: without that record (the ingestor died between Kafka's ack and
//     the Redis write, or Redis lost it), the records themselves are
//     searched. Every record of an MQTT message carries the header
//     takt-mqtt-message = <client id>/<packet id>/<digest>/<item>[/<receipt>],
//     and the partition of a part follows from its key (the location), so
//     the ingestor reads that partition from TAKT_MQTT_RESEND_WINDOW ago to
//     its end and produces only the items it does not find. One read per
//     partition serves every resend of the reconnected devices.
//
// A packet id is free again once acknowledged, so a message without DUP is
// new by the protocol, however like an earlier one it is (a part without
// recorded_at sent again has the same digest). Its receipt makes the
// earlier message's record unusable before anything is produced: the same
// field is set to "pending:<receipt>" (the receive time in Unix nanoseconds,
// which also ends each of its records' header), in the same pipeline and so
// before its own digest. A resend that finds a pending marker takes only
// records of that receipt on Kafka as its first copy; records of an earlier
// message with the same digest are not. The marker is waited for before a
// message that was not stored is refused (the connection closed), so a
// resend cannot overtake it; when it cannot be written (Redis down) the
// message is still produced, since refusing it would not help (its resend
// would find the earlier record all the same), and if it is then not
// stored either, that is logged as an error: its resend may be taken for
// the earlier message. The bridge tries a message again in this process,
// so it knows the receipt and searches Kafka for it without Redis.
//
// What remains: a resend that comes later than the window after its first
// copy, with the Redis record gone, is stored again; and a resend whose
// first copy never reached this point (lost on the way, or the ingestor
// killed before the marker was written) of a message like the previous one
// under its packet id is taken for that one.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/takt/takt/internal/kafkax"
	"github.com/takt/takt/internal/redisx"
)

// maxScanRecords bounds one partition read of the resend check.
const maxScanRecords = 5_000_000

// resends recognises QoS 1 resends. It is safe for concurrent use.
type resends struct {
	rdb    *redis.Client
	keys   redisx.Keys
	ttl    time.Duration
	topic  string
	window time.Duration
	kafka  kafkax.Config // for the partition reads
	adm    *kadm.Client
	logger *slog.Logger
	m      *mqttMetrics

	writes chan *recordWrite
	// refresh is how often the writer sets a hash's expiry while it
	// writes to it (expiryRefresh), and expirySet when it last did, for
	// each hash (the writer's own).
	refresh   time.Duration
	expirySet map[string]time.Time
	lastPrune time.Time

	mu       sync.Mutex
	inflight map[inflightKey]chan struct{} // closed when handled
	scans    map[int32]*partitionScan
}

// expiryRefresh is how often the writer sets a hash's expiry while it
// writes to it; the expiry it sets is the session expiry, this and
// recordWriteTimeout (a pipeline may reach Redis that late).
const expiryRefresh = time.Second

// recordWriteTimeout bounds one pipeline of records.
const recordWriteTimeout = time.Second

// inflightKey identifies a message in hand.
type inflightKey struct {
	client string
	pid    uint16
	digest string
}

// recordWrite is Redis records of one client to write, in order, as fields
// of its hash key: the digests of messages stored, or the pending markers
// of messages just received. fields holds field, value, field, value...
// err is set when done closes.
type recordWrite struct {
	key    string
	fields []any
	done   chan struct{}
	err    error
}

// pendingPrefix starts the record of a message received and not yet stored.
const pendingPrefix = "pending:"

// receiptMark is what identifies one receipt of a message: the pending
// marker's value and the end of its records' header.
func receiptMark(received time.Time) string {
	return strconv.FormatInt(received.UnixNano(), 10)
}

// partitionScan is one read of a partition: the message ids it found.
type partitionScan struct {
	started time.Time
	done    chan struct{}
	ids     map[string]bool
	err     error
}

func newResends(rdb *redis.Client, prefix string, ttl time.Duration, topic string, window time.Duration,
	kafka kafkax.Config, adm *kadm.Client, logger *slog.Logger, m *mqttMetrics) *resends {
	return &resends{
		rdb: rdb, keys: redisx.NewKeys(prefix), ttl: ttl, topic: topic, window: window,
		kafka: kafka, adm: adm, logger: logger, m: m,
		writes:    make(chan *recordWrite, 4096),
		refresh:   expiryRefresh,
		expirySet: map[string]time.Time{},
		inflight:  map[inflightKey]chan struct{}{},
		scans:     map[int32]*partitionScan{},
	}
}

// run writes the Redis records in pipelines until ctx ends.
func (r *resends) run(ctx context.Context) error {
	batch := make([]*recordWrite, 0, 256)
	for {
		select {
		case <-ctx.Done():
			return nil
		case w := <-r.writes:
			batch = append(batch[:0], w)
		}
	more:
		for len(batch) < cap(batch) {
			select {
			case w := <-r.writes:
				batch = append(batch, w)
			default:
				break more
			}
		}
		err := r.write(ctx, batch)
		if err != nil {
			// The Kafka search still recognises the resends of stored
			// messages; received warns of markers not written.
			r.logger.Warn("mqtt: resend records not written", "n", len(batch), "err", err)
		}
		for _, w := range batch {
			w.err = err
			close(w.done)
		}
	}
}

// write writes a batch of records in one pipeline: per hash, one HSET of
// its fields in the order queued (a later value of a field wins, as it
// would one command after the other), and its expiry when the writer has
// not set it in the last r.refresh. The expiry is then the session expiry,
// r.refresh and recordWriteTimeout, so every write is followed by at least
// the session expiry.
func (r *resends) write(ctx context.Context, batch []*recordWrite) error {
	var cmds [][]any // "hset", key, fields...
	at := map[string]int{}
	for _, w := range batch {
		i, ok := at[w.key]
		if !ok {
			i = len(cmds)
			at[w.key] = i
			cmds = append(cmds, append(make([]any, 0, 2+len(w.fields)), "hset", w.key))
		}
		cmds[i] = append(cmds[i], w.fields...)
	}
	now := time.Now()
	if now.Sub(r.lastPrune) >= r.refresh {
		for k, t := range r.expirySet {
			if now.Sub(t) >= r.refresh {
				delete(r.expirySet, k)
			}
		}
		r.lastPrune = now
	}
	wctx, cancel := context.WithTimeout(ctx, recordWriteTimeout)
	defer cancel()
	_, err := r.rdb.Pipelined(wctx, func(p redis.Pipeliner) error {
		for _, args := range cmds {
			p.Do(wctx, args...)
			k := args[1].(string)
			if t, ok := r.expirySet[k]; !ok || now.Sub(t) >= r.refresh {
				p.PExpire(wctx, k, r.ttl+r.refresh+recordWriteTimeout)
				r.expirySet[k] = now
			}
		}
		return nil
	})
	if err != nil {
		// Some expiries may not have been set: set them next time.
		clear(r.expirySet)
	}
	return err
}

// begin marks a message as being handled in this process; the returned
// function ends that.
func (r *resends) begin(clientID string, pid uint16, digest string) func() {
	k := inflightKey{clientID, pid, digest}
	ch := make(chan struct{})
	r.mu.Lock()
	r.inflight[k] = ch
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		if r.inflight[k] == ch {
			delete(r.inflight, k)
		}
		r.mu.Unlock()
		close(ch)
	}
}

// received writes the pending marker of a message without DUP (new by the
// protocol) before it is produced: from then on the record of an earlier
// message under the same packet id no longer answers for a resend. The
// write goes through the pipeline, in order before the message's own
// record; settle waits for it.
func (r *resends) received(ctx context.Context, clientID string, pid uint16, mark string) *recordWrite {
	var m pendingMarks
	m.add(pid, mark)
	return r.receivedAll(ctx, clientID, &m)
}

// pendingMarks are the pending markers of messages of one client, as
// fields of its hash.
type pendingMarks struct{ fields []any }

func (m *pendingMarks) add(pid uint16, mark string) {
	m.fields = append(m.fields, redisx.MQTTPacketField(pid), pendingPrefix+mark)
}

// receivedAll writes the pending markers m of messages of one client, as
// received does, in one write.
func (r *resends) receivedAll(ctx context.Context, clientID string, m *pendingMarks) *recordWrite {
	w := &recordWrite{key: r.keys.MQTTPublished(clientID), fields: m.fields, done: make(chan struct{})}
	select {
	case r.writes <- w:
		return w
	case <-ctx.Done():
		return nil
	}
}

// settle waits (at most a second) for the pending marker w of a message
// whose handling ended with out, so a resend of a message not stored finds
// it; if it was not written, the resend may be taken for the earlier
// message under that packet id: say so.
func (r *resends) settle(w *recordWrite, clientID string, pid uint16, out outcome) {
	var err error
	switch {
	case w == nil:
		err = errors.New("not queued")
	case isDone(w.done): // the usual case: the message's record followed it
		err = w.err
	default:
		t := time.NewTimer(time.Second)
		select {
		case <-w.done:
			err = w.err
		case <-t.C:
			err = errors.New("not written within a second")
		}
		t.Stop()
	}
	if err != nil && (out.drop || out.code == packets.ErrQuotaExceeded) {
		r.logger.Error("mqtt: message not stored and its pending marker not written: a resend of it may be taken for the earlier message under its packet id",
			"client_id", clientID, "packet_id", pid, "err", err)
	}
}

// stored writes the record of a message whose parts Kafka acknowledged,
// and waits for it (at most a second: the Kafka search covers a miss).
func (r *resends) stored(ctx context.Context, clientID string, pid uint16, digest string) {
	r.storedAll(ctx, clientID, []storedRecord{{pid: pid, digest: digest}})
}

// storedRecord is the resend record of a message whose parts Kafka
// acknowledged: its packet id and digest.
type storedRecord struct {
	pid    uint16
	digest string
}

// storedAll writes the records of messages of one client whose parts
// Kafka acknowledged, and waits for them (at most a second).
func (r *resends) storedAll(ctx context.Context, clientID string, recs []storedRecord) {
	if len(recs) == 0 {
		return
	}
	w := &recordWrite{key: r.keys.MQTTPublished(clientID), fields: make([]any, 0, 2*len(recs)), done: make(chan struct{})}
	for _, rec := range recs {
		w.fields = append(w.fields, redisx.MQTTPacketField(rec.pid), rec.digest)
	}
	select {
	case r.writes <- w:
	case <-ctx.Done():
		return
	}
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case <-w.done:
	case <-ctx.Done():
	case <-t.C:
	}
}

// lookup checks whether the resend msg of connection c was stored before:
// done when all of it was; otherwise items holds the items found on Kafka
// (nil when none). When the receipt of the message's first copy is known
// (msg.mark: tried again in this process; or the pending marker in Redis,
// then set in msg.mark), only records of that receipt count.
func (r *resends) lookup(ctx context.Context, c *mqttConn, msg *mqttMessage, digest string) (bool, map[int]bool, error) {
	r.mu.Lock()
	ch := r.inflight[inflightKey{c.id, msg.pid, digest}]
	r.mu.Unlock()
	if ch != nil {
		select {
		case <-ch:
		case <-ctx.Done():
			return false, nil, ctx.Err()
		}
	}
	if msg.mark == "" {
		got, err := r.rdb.HGet(ctx, r.keys.MQTTPublished(c.id), redisx.MQTTPacketField(msg.pid)).Result()
		switch {
		case err == nil && got == digest:
			r.m.resends.WithLabelValues("record").Inc()
			return true, nil, nil
		case err == nil && strings.HasPrefix(got, pendingPrefix):
			// Received and not stored since: an earlier message under
			// this packet id is not this one.
			msg.mark = strings.TrimPrefix(got, pendingPrefix)
		case err != nil && !errors.Is(err, redis.Nil):
			r.logger.Warn("mqtt: resend record not read; searching Kafka", "client_id", c.id, "err", err)
		}
	}

	// Search the partitions the message's parts went to.
	var keys [][]byte
	if ext, ok := strings.CutPrefix(msg.topic, TopicPartPrefix); ok {
		keys = [][]byte{[]byte(ext)}
	}
	parts, err := r.partitions(ctx, keys)
	if err != nil {
		return false, nil, err
	}
	prefix := c.id + "/" + strconv.Itoa(int(msg.pid)) + "/" + digest + "/"
	var found map[int]bool
	for _, p := range parts {
		ids, err := r.scan(ctx, p, c.since)
		if err != nil {
			return false, nil, err
		}
		for mid := range ids {
			rest, ok := strings.CutPrefix(mid, prefix)
			if !ok {
				continue
			}
			item, mark, _ := strings.Cut(rest, "/")
			i, err := strconv.Atoi(item)
			if err != nil || (msg.mark != "" && mark != msg.mark) {
				continue
			}
			if found == nil {
				found = map[int]bool{}
			}
			found[i] = true
		}
	}
	if found == nil {
		r.m.resends.WithLabelValues("new").Inc()
		return false, nil, nil
	}
	r.m.resends.WithLabelValues("kafka").Inc()
	// A single part found is the whole message; a batch may be partial.
	if len(keys) == 1 && found[0] {
		return true, nil, nil
	}
	return false, found, nil
}

// partitions returns the partitions of the records with the given keys,
// or every partition when keys is nil.
func (r *resends) partitions(ctx context.Context, keys [][]byte) ([]int32, error) {
	tds, err := r.adm.ListTopics(ctx, r.topic)
	if err != nil {
		return nil, fmt.Errorf("resend check: topic %s: %w", r.topic, err)
	}
	td, ok := tds[r.topic]
	if !ok || td.Err != nil || len(td.Partitions) == 0 {
		return nil, fmt.Errorf("resend check: topic %s: %v", r.topic, td.Err)
	}
	n := len(td.Partitions)
	if keys == nil {
		all := make([]int32, n)
		for i := range all {
			all[i] = int32(i)
		}
		return all, nil
	}
	// The producer's partitioner for keyed records: murmur2 of the key,
	// as Kafka's own clients do.
	tp := kgo.StickyKeyPartitioner(nil).ForTopic(r.topic)
	var out []int32
	seen := map[int32]bool{}
	for _, k := range keys {
		p := int32(tp.Partition(&kgo.Record{Key: k}, n))
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out, nil
}

// scan returns the message ids on partition p in the window, from a read
// that started after since (so it covers every record acknowledged before
// the device reconnected); concurrent callers share one read.
func (r *resends) scan(ctx context.Context, p int32, since time.Time) (map[string]bool, error) {
	r.mu.Lock()
	s := r.scans[p]
	if s == nil || s.started.Before(since) || (s.err != nil && isDone(s.done)) {
		s = &partitionScan{started: time.Now(), done: make(chan struct{})}
		r.scans[p] = s
		go func() {
			defer close(s.done)
			sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			s.ids, s.err = r.read(sctx, p, s.started.Add(-r.window))
		}()
	}
	r.mu.Unlock()
	select {
	case <-s.done:
		return s.ids, s.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func isDone(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// read collects the message ids of partition p's records from the first
// one at or after from to the partition's current end.
func (r *resends) read(ctx context.Context, p int32, from time.Time) (map[string]bool, error) {
	ends, err := r.adm.ListEndOffsets(ctx, r.topic)
	if err != nil {
		return nil, fmt.Errorf("resend check: end offsets: %w", err)
	}
	end, ok := ends.Lookup(r.topic, p)
	if !ok || end.Err != nil {
		return nil, fmt.Errorf("resend check: end offset of %s/%d: %v", r.topic, p, end.Err)
	}
	starts, err := r.adm.ListOffsetsAfterMilli(ctx, from.UnixMilli(), r.topic)
	if err != nil {
		return nil, fmt.Errorf("resend check: offsets after %s: %w", from, err)
	}
	start, ok := starts.Lookup(r.topic, p)
	if !ok || start.Err != nil {
		return nil, fmt.Errorf("resend check: start offset of %s/%d: %v", r.topic, p, start.Err)
	}
	ids := map[string]bool{}
	if start.Offset >= end.Offset || end.Offset-start.Offset > maxScanRecords {
		if end.Offset-start.Offset > maxScanRecords {
			return nil, fmt.Errorf("resend check: %d records in the window of %s/%d, more than %d", end.Offset-start.Offset, r.topic, p, maxScanRecords)
		}
		return ids, nil
	}
	cl, err := kafkax.NewClient(kafkax.Config{Brokers: r.kafka.Brokers, Security: r.kafka.Security}, r.logger,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{r.topic: {p: kgo.NewOffset().At(start.Offset)}}))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	for {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("resend check: read %s/%d: %w", r.topic, p, err)
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return nil, fmt.Errorf("resend check: read %s/%d: %w", r.topic, p, ferr)
		}
		last := int64(-1)
		fs.EachRecord(func(rec *kgo.Record) {
			last = rec.Offset
			for _, h := range rec.Headers {
				if h.Key == HeaderMQTTMessage {
					ids[string(h.Value)] = true
				}
			}
		})
		if last >= end.Offset-1 {
			return ids, nil
		}
	}
}
