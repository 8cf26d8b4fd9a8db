package processor

// The processor's side of the parts watermark (internal/watermark; the
// README's "Read your writes" explains it). Every observeEvery the
// consumer lists the parts topic's end offsets; a flush that stored a
// partition up to an offset at or past a listed end publishes that
// listing's time as the partition's watermark, in parts_watermarks, after
// the parts are in ClickHouse. Partitions that have nothing pending are
// published with every flush, and at most every publishEvery when nothing
// is flushed, so an idle partition does not hold the watermark back. Each
// flush places its rows in insertion order above the partition's last
// published watermark (PartsBlock.StampOrder), so no row is ever stored
// at or below a watermark a reader may have seen.

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/takt/takt/internal/watermark"
)

const (
	// observeEvery is how often the end offsets are listed: a part is
	// covered by the first listing after its acknowledgement.
	observeEvery = 50 * time.Millisecond
	// publishEvery is how often a member with nothing to flush publishes
	// the watermarks of its partitions (one small INSERT).
	publishEvery = 200 * time.Millisecond
	// watermarkTimeout bounds one listing and one publishing INSERT.
	watermarkTimeout = 5 * time.Second
)

// watermarkStore is what the consumer needs from ClickHouse for the
// watermark (a *chstore.Store).
type watermarkStore interface {
	InsertPartsWatermarks(ctx context.Context, topic string, ws []watermark.Partition) error
	PartsWatermarks(ctx context.Context, topic string) ([]watermark.Partition, error)
}

// observations are the consumer's recent listings of end offsets; the
// listing goroutine adds, flushes read.
type observations struct {
	mu  sync.Mutex
	log watermark.Log
}

func (o *observations) add(ob watermark.Observation) {
	o.mu.Lock()
	o.log.Add(ob)
	o.mu.Unlock()
}

func (o *observations) latest() (watermark.Observation, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.log.Latest()
}

// mark is a partition a flush publishes a watermark for: every record
// before stored is in ClickHouse (or dead-lettered) once the flush
// succeeds; floor is the watermark last published for it.
type mark struct {
	partition int32
	stored    int64
	floor     int64
}

// observe lists the topic's end offsets every observeEvery until ctx
// ends. The clock is read before the request is sent: a part the broker
// acknowledged before then lies below the end it answers.
func (c *consumer) observe(ctx context.Context) {
	adm := kadm.NewClient(c.cl)
	t := time.NewTicker(observeEvery)
	defer t.Stop()
	failing := false
	for {
		at := time.Now().UnixMilli()
		lctx, cancel := context.WithTimeout(ctx, watermarkTimeout)
		ends, err := adm.ListEndOffsets(lctx, c.cfg.Topic)
		cancel()
		if err == nil {
			ob := watermark.Observation{At: at, Ends: map[int32]int64{}}
			ends.Each(func(lo kadm.ListedOffset) {
				if lo.Topic != c.cfg.Topic {
					return
				}
				ob.Partitions++
				if lo.Err == nil {
					ob.Ends[lo.Partition] = lo.Offset
				}
			})
			if len(ob.Ends) > 0 {
				c.obs.add(ob)
			}
			failing = false
		} else if !failing && ctx.Err() == nil {
			failing = true
			c.logger.Warn("listing the parts topic's end offsets failed; the watermark waits", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// idleMarks returns the partitions this member owns that have nothing
// pending and no flush in flight (busy), with their positions.
func (c *consumer) idleMarks(busy map[int32]bool, pending map[int32]bool) []mark {
	c.mu.Lock()
	defer c.mu.Unlock()
	var marks []mark
	for p, st := range c.parts {
		// validGen < 0: a dropped flush may still land; the partition
		// is checked again by its next flush first.
		if busy[p] || pending[p] || st.records > 0 || st.validGen < 0 {
			continue
		}
		// Without a position (nothing committed, nothing stored, nothing
		// read yet) only "every record below offset 0" is known stored:
		// that covers an empty partition, and no other.
		var stored int64
		if st.positioned {
			stored = st.next.Offset
		}
		marks = append(marks, mark{partition: p, stored: stored, floor: st.floor})
	}
	return marks
}

// watermarkDue reports whether an idle member should publish now: the
// last publishing is publishEvery old and a listing came since.
func (c *consumer) watermarkDue(now time.Time) bool {
	if now.Sub(c.lastPublish) < publishEvery {
		return false
	}
	ob, ok := c.obs.latest()
	return ok && ob.At > c.lastPublish.UnixMilli()
}

// publishWatermarks publishes, after a flush stored its batches, the
// watermark each of its partitions reached. The watermarks are recorded in
// job.published before the INSERT: the partitions' next rows are placed
// above them even when the INSERT failed (it may have landed).
func (c *consumer) publishWatermarks(ctx context.Context, job *flushJob) {
	marks := job.marks
	for _, b := range job.batches {
		if !b.overtaken && !b.dropped {
			marks = append(marks, mark{partition: b.partition, stored: b.next.Offset, floor: b.floor})
		}
	}
	if len(marks) == 0 {
		return
	}
	var ws []watermark.Partition
	c.obs.mu.Lock()
	latest, _ := c.obs.log.Latest()
	for _, m := range marks {
		if w, ok := c.obs.log.Covered(m.partition, m.stored); ok && w > m.floor {
			ws = append(ws, watermark.Partition{Partition: m.partition, Partitions: latest.Partitions, Ms: w, Stored: m.stored})
		}
	}
	c.obs.mu.Unlock()
	if len(ws) == 0 {
		return
	}
	job.published = make(map[int32]int64, len(ws))
	oldest := ws[0].Ms
	for _, w := range ws {
		job.published[w.Partition] = w.Ms
		oldest = min(oldest, w.Ms)
	}
	ictx, cancel := context.WithTimeout(ctx, watermarkTimeout)
	defer cancel()
	if err := c.store.InsertPartsWatermarks(ictx, c.cfg.Topic, ws); err != nil {
		c.m.wm.errors.Inc()
		c.logger.Warn("publishing the parts watermark failed; the next flush publishes it", "err", err)
		return
	}
	c.m.wm.published.Add(float64(len(ws)))
	c.m.wm.behind.Set(float64(time.Now().UnixMilli()-oldest) / 1000)
}

// loadFloors reads the watermarks published for the partitions: a new
// owner places its rows above them.
func (c *consumer) loadFloors(ctx context.Context) (map[int32]int64, error) {
	for attempt := 1; ; attempt++ {
		ws, err := c.store.PartsWatermarks(ctx, c.cfg.Topic)
		if err == nil {
			floors := make(map[int32]int64, len(ws))
			for _, w := range ws {
				floors[w.Partition] = w.Ms
			}
			return floors, nil
		}
		c.logger.Warn("reading the published parts watermarks failed; retrying", "attempt", attempt, "err", err)
		if !sleep(ctx, backoff(attempt, retryMin, retryMax)) {
			return nil, err
		}
	}
}

// watermarkMetrics are the series of the processor's watermark.
type watermarkMetrics struct {
	published prometheus.Counter
	errors    prometheus.Counter
	behind    prometheus.Gauge
}

func newWatermarkMetrics(reg prometheus.Registerer) *watermarkMetrics {
	m := &watermarkMetrics{
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "takt_processor_watermarks_published_total",
			Help: "Partition watermarks published to parts_watermarks.",
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "takt_processor_watermark_errors_total",
			Help: "Failed INSERTs of partition watermarks (the next flush publishes again).",
		}),
		behind: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "takt_processor_watermark_behind_seconds",
			Help: "How far the oldest watermark this member last published was behind its clock.",
		}),
	}
	reg.MustRegister(m.published, m.errors, m.behind)
	return m
}
