// Package feed reads the period-changes topic (wire.PeriodChange messages,
// written by the processor) for the query API's live change feed.
//
// A position in the topic is a Cursor: for every partition, the offset of
// the next record to read. Records of one partition are delivered in
// order, so the cursor after a delivered record names exactly what was
// delivered before it in every partition; a reader opened at that cursor
// delivers every later record once, whatever the interleaving of the
// partitions was. That is what makes a cursor a resumable event id.
//
// The topic, not this process, holds the events: a reader is only a
// position and a Kafka client, and any query API replica resumes any
// cursor.
package feed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/takt/takt/internal/kafkax"
	"github.com/takt/takt/internal/wire"
)

// Cursor is a position in the topic: element p is the offset of the next
// record of partition p.
type Cursor []int64

// cursorPrefix versions the text form of a cursor.
const cursorPrefix = "1:"

// MaxPartitions bounds the partitions a cursor may name.
const MaxPartitions = 1024

// ErrCursor means a cursor's text form does not parse, or names a
// position the topic does not have.
var ErrCursor = errors.New("invalid feed position")

// String is the text form of c: "1:" and the offsets, comma-separated.
func (c Cursor) String() string {
	b := make([]byte, 0, len(cursorPrefix)+8*len(c))
	b = append(b, cursorPrefix...)
	for i, o := range c {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, o, 10)
	}
	return string(b)
}

// ParseCursor parses the text form of a cursor.
func ParseCursor(s string) (Cursor, error) {
	rest, ok := strings.CutPrefix(s, cursorPrefix)
	if !ok || rest == "" {
		return nil, fmt.Errorf("%w: %q is not an event id of this feed", ErrCursor, truncate(s))
	}
	if strings.Count(rest, ",") >= MaxPartitions {
		return nil, fmt.Errorf("%w: more than %d partitions", ErrCursor, MaxPartitions)
	}
	parts := strings.Split(rest, ",")
	c := make(Cursor, len(parts))
	for i, p := range parts {
		// Digits only, without leading zeros: one text per cursor ("-0"
		// and "+1" would parse).
		o, err := strconv.ParseInt(p, 10, 64)
		if err != nil || p[0] < '0' || p[0] > '9' || (len(p) > 1 && p[0] == '0') {
			return nil, fmt.Errorf("%w: offset %q of partition %d", ErrCursor, truncate(p), i)
		}
		c[i] = o
	}
	return c, nil
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// Reader opens streams on one topic.
type Reader struct {
	kafka  kafkax.Config
	topic  string
	logger *slog.Logger
	opts   []kgo.Opt
}

// NewReader returns a reader of topic. opts are added to every stream's
// Kafka client.
func NewReader(cfg kafkax.Config, topic string, logger *slog.Logger, opts ...kgo.Opt) *Reader {
	return &Reader{kafka: cfg, topic: topic, logger: logger, opts: opts}
}

// Stream reads the topic from a position on.
type Stream struct {
	cl    *kgo.Client
	topic string
	pos   Cursor
	hwm   []int64
	// Gap is set when the position was before what the topic still holds
	// (retention removed records): the stream starts at the oldest kept.
	Gap bool
}

// Event is one record of the topic with the position after it.
type Event struct {
	Change wire.PeriodChange
	// Data is the message as on the topic (JSON).
	Data []byte
	// ID is the text form of the cursor after this record.
	ID string
}

// Open starts a stream at from; nil from means the topic's end (only what
// is produced from now on). A partition from does not name (the topic has
// more partitions than when the cursor was made) is read from its start.
func (r *Reader) Open(ctx context.Context, from Cursor) (*Stream, error) {
	cl, err := kafkax.NewClient(r.kafka, r.logger, r.opts...)
	if err != nil {
		return nil, err
	}
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, r.topic)
	if err == nil {
		err = ends.Error()
	}
	var starts kadm.ListedOffsets
	if err == nil {
		starts, err = adm.ListStartOffsets(ctx, r.topic)
		if err == nil {
			err = starts.Error()
		}
	}
	if err != nil {
		cl.Close()
		return nil, fmt.Errorf("feed: offsets of %s: %w", r.topic, err)
	}
	n := 0
	ends.Each(func(o kadm.ListedOffset) { n = max(n, int(o.Partition)+1) })
	if n == 0 {
		cl.Close()
		return nil, fmt.Errorf("feed: topic %s has no partitions", r.topic)
	}
	if len(from) > n {
		cl.Close()
		return nil, fmt.Errorf("%w: it names %d partitions, the topic has %d", ErrCursor, len(from), n)
	}
	s := &Stream{topic: r.topic, pos: make(Cursor, n), hwm: make([]int64, n)}
	assign := map[int32]kgo.Offset{}
	for p := range n {
		end, _ := ends.Lookup(r.topic, int32(p))
		start, _ := starts.Lookup(r.topic, int32(p))
		o := end.Offset
		switch {
		case from == nil:
		case p < len(from):
			o = from[p]
		default:
			o = start.Offset
		}
		if o > end.Offset {
			cl.Close()
			return nil, fmt.Errorf("%w: partition %d: offset %d is past the end (%d)", ErrCursor, p, o, end.Offset)
		}
		if o < start.Offset {
			s.Gap = true
			o = start.Offset
		}
		s.pos[p], s.hwm[p] = o, end.Offset
		assign[int32(p)] = kgo.NewOffset().At(o)
	}
	cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{r.topic: assign})
	s.cl = cl
	return s, nil
}

// Close ends the stream.
func (s *Stream) Close() { s.cl.Close() }

// Position is the cursor after the last record Next returned.
func (s *Stream) Position() Cursor { return s.pos }

// Lag is how many records the stream is behind the partitions' ends, as
// of its last fetch.
func (s *Stream) Lag() int64 {
	var n int64
	for p, o := range s.pos {
		n += max(s.hwm[p]-o, 0)
	}
	return n
}

// Next waits until records arrive or ctx ends, and returns them in order
// (per partition), each with the cursor after it. A record that is not a
// valid period change is skipped (its position still advances). Next
// returns ctx's error only when it ends before anything arrived.
func (s *Stream) Next(ctx context.Context, out []Event) ([]Event, error) {
	fs := s.cl.PollFetches(ctx)
	var ferr error
	fs.EachError(func(_ string, _ int32, err error) {
		if ferr == nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			ferr = err
		}
	})
	if ferr != nil {
		return out, fmt.Errorf("feed: fetch: %w", ferr)
	}
	fs.EachPartition(func(fp kgo.FetchTopicPartition) {
		p := int(fp.Partition)
		if p < 0 || p >= len(s.pos) || fp.Topic != s.topic {
			return
		}
		s.hwm[p] = max(s.hwm[p], fp.HighWatermark)
		for _, r := range fp.Records {
			if r.Offset < s.pos[p] {
				continue
			}
			s.pos[p] = r.Offset + 1
			c, err := wire.DecodePeriodChange(r.Value)
			if err != nil {
				continue
			}
			out = append(out, Event{Change: c, Data: r.Value, ID: s.pos.String()})
		}
	})
	if len(out) == 0 && ctx.Err() != nil {
		return out, ctx.Err()
	}
	return out, nil
}
