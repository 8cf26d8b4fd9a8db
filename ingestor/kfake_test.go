package ingestor

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/takt/takt/internal/kafkax"
	"github.com/takt/takt/internal/wire"
)

// The tests in this file put the handler in front of the Kafka client the
// ingestor runs with (kafkax.NewClient) on an in-process kfake cluster: no
// servers, so they run with -short. TestRun covers the same on the stack.

// newKfakeProducer returns a cluster with the "parts" topic and a client
// for it configured as the ingestor configures its own.
func newKfakeProducer(t *testing.T) (*kfake.Cluster, *kgo.Client) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "parts"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	cl, err := kafkax.NewClient(kafkax.Config{Brokers: c.ListenAddrs(), ProduceTopic: "parts",
		Linger: time.Millisecond, DeliveryTimeout: 2 * time.Second}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return c, cl
}

// TestIngestOnKfake: a 200 means the part is on the topic, keyed by its
// location, as the message the processor decodes.
func TestIngestOnKfake(t *testing.T) {
	_, cl := newKfakeProducer(t)
	r := newFakeHandlerTimeout(t, cl, nil, 5*time.Second)
	for _, body := range []string{
		`{"part":{"external_id":"line_1","quantity":3,"product":"PROD001"}}`,
		`{"part":{"external_id":"m_7","quality":"scrap","reason":"R1"}}`,
	} {
		if w := post(r, keyIngest, body); w.Code != 200 {
			t.Fatalf("%s: %d %s", body, w.Code, w.Body)
		}
	}
	consumer, err := kgo.NewClient(kgo.SeedBrokers(cl.OptValue(kgo.SeedBrokers).([]string)...),
		kgo.ConsumeTopics("parts"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := map[string]wire.Part{}
	for len(got) < 2 && ctx.Err() == nil {
		consumer.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			p, err := wire.Decode(r.Value)
			if err != nil {
				t.Errorf("record at %d/%d: %v", r.Partition, r.Offset, err)
				return
			}
			if string(r.Key) != p.ExternalID {
				t.Errorf("record key %q for location %q", r.Key, p.ExternalID)
			}
			got[p.ExternalID] = p
		})
	}
	if l, m := got["line_1"], got["m_7"]; l.Quantity != 3 || l.Product != "PROD001" || l.LocationKind != "line" ||
		m.Quality != wire.QualityScrap || m.Reason != "R1" || m.LocationKind != "machine" || m.LocationID != 7 {
		t.Errorf("on the topic: %+v", got)
	}
}

// TestIngestOnKfakeRefused: when the broker refuses the
// record, the answer is 500, never 200.
func TestIngestOnKfakeRefused(t *testing.T) {
	c, cl := newKfakeProducer(t)
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		pr := req.(*kmsg.ProduceRequest)
		resp := pr.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range pr.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	r := newFakeHandler(t, cl, nil)
	w := post(r, keyIngest, `{"part":{"external_id":"line_1"}}`)
	if w.Code != 500 || w.Body.String() != `{"error":"Internal server error"}` {
		t.Fatalf("got %d %s, want 500", w.Code, w.Body)
	}
}
