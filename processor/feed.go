package processor

// Period changes: every period row version a flush writes to ClickHouse
// is also produced, as a wire.PeriodChange, to the period-changes topic
// (TAKT_PERIOD_CHANGES_TOPIC), which the query API's live feed serves.
// Partition p of that topic holds the changes of the locations whose parts
// are in partition p of the parts topic, so the member that owns a parts
// partition is the one writer of its changes partition, and the changes of
// a location are in order.
//
// Exactly once. The changes are produced after their rows and the states
// that returned them are in ClickHouse (the outbox, periods.go), and each
// saved state records where the changes partition ended when its flush
// began (savedFeed.Offset, the flush's feed offset). The producer is
// idempotent (no duplicates from its own retries) and a partition's
// flushes run one after the other, the next one starting only after the
// previous one's changes are acknowledged. So the only changes that can
// be missing from the topic are those of the partition's last flush with
// states: the saved states with the largest feed offset A. A member that
// takes a partition over (or retries after a failed produce) recovers:
// it reads the changes partition from A to its end, and produces those
// changes of the last flush whose id (location, period, version) is not
// there. A crash before the states were written loses the changes with
// the rows; the replayed records return the same rows, which the next
// flush writes and produces. A crash after the changes were produced finds
// them all on the topic and produces nothing.
//
// What is read at recovery is bounded by one flush's changes: the topic
// is never scanned.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/takt/takt/internal/kafkax"
	"github.com/takt/takt/internal/period"
	"github.com/takt/takt/internal/wire"
)

// feedTimeout bounds one produce or recovery attempt.
const feedTimeout = 10 * time.Second

// changeMeta is what a period row's change event needs beyond the row:
// what changed ("" means: derived from the row) and when it was decided.
type changeMeta struct {
	Change string `json:"c,omitempty"`
	AtMs   int64  `json:"t"`
}

// savedFeed is the change feed's part of a saved state: the feed offset of
// the flush that wrote it, and the meta of each outbox row.
type savedFeed struct {
	Offset  int64        `json:"offset"`
	Changes []changeMeta `json:"changes,omitempty"`
}

// feedGroup is one location's outbox, ready to become change events.
type feedGroup struct {
	key   period.Key
	site  uint64
	extID string
	rows  []period.Row
	meta  []changeMeta
}

// changeFeed produces the period changes of the partitions this member
// owns.
type changeFeed struct {
	cl      *kgo.Client
	cfg     kafkax.Config
	topic   string
	logger  *slog.Logger
	line    func(period.Key) uint64
	sent    prometheus.Counter
	errs    prometheus.Counter
	resends prometheus.Counter

	mu sync.Mutex
	// next is, per partition, where this member's next change lands
	// (the partition's end as far as it knows); absent means unknown:
	// recover before the partition's next flush.
	next map[int32]int64
}

func newChangeFeed(cfg Config, reg prometheus.Registerer, line func(period.Key) uint64, logger *slog.Logger) (*changeFeed, error) {
	kcfg := kafkax.Config{Brokers: cfg.Brokers, Security: cfg.Kafka}
	cl, err := kafkax.NewClient(kcfg, logger, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		return nil, err
	}
	f := &changeFeed{cl: cl, cfg: kcfg, topic: cfg.PeriodChangesTopic, logger: logger, line: line, next: map[int32]int64{},
		sent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "takt_processor_period_changes_produced_total",
			Help: "Period changes produced to the period-changes topic (recovered ones included).",
		}),
		errs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "takt_processor_period_change_errors_total",
			Help: "Failed produce or recovery attempts of period changes (retried).",
		}),
		resends: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "takt_processor_period_changes_recovered_total",
			Help: "Period changes of a previous flush that recovery found missing from the topic and produced.",
		}),
	}
	reg.MustRegister(f.sent, f.errs, f.resends)
	return f, nil
}

func (f *changeFeed) close() { f.cl.Close() }

// checkTopic makes sure the period-changes topic has a partition for
// every partition of the parts topic, creating it when it does not exist
// (with the parts topic's partition count; a stack started before the
// feed existed lacks it). A parts topic that does not exist yet is
// checked against when the changes are produced.
func (f *changeFeed) checkTopic(ctx context.Context, partsTopic string) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	adm := kadm.NewClient(f.cl)
	topics, err := adm.ListTopics(ctx, f.topic, partsTopic)
	if err != nil {
		return fmt.Errorf("kafka: list topics: %w", err)
	}
	parts := topics[partsTopic]
	if !topics.Has(f.topic) {
		n := int32(len(parts.Partitions))
		if n == 0 {
			return fmt.Errorf("period-changes topic %q does not exist (TAKT_PERIOD_CHANGES_TOPIC); create it with as many partitions as %s", f.topic, partsTopic)
		}
		f.logger.Warn("period-changes topic does not exist; creating it", "topic", f.topic, "partitions", n)
		if _, err := adm.CreateTopic(ctx, n, -1, nil, f.topic); err != nil {
			return fmt.Errorf("create period-changes topic %q: %w", f.topic, err)
		}
		return nil
	}
	if have, want := len(topics[f.topic].Partitions), len(parts.Partitions); have < want {
		return fmt.Errorf("period-changes topic %q has %d partitions, the parts topic %d: it needs as many", f.topic, have, want)
	}
	return nil
}

// position returns where partition p's next change lands, if known.
func (f *changeFeed) position(p int32) (int64, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	o, ok := f.next[p]
	return o, ok
}

func (f *changeFeed) setPosition(p int32, o int64) {
	f.mu.Lock()
	f.next[p] = o
	f.mu.Unlock()
}

// forget makes the partitions' positions unknown.
func (f *changeFeed) forget(parts []int32) {
	f.mu.Lock()
	for _, p := range parts {
		delete(f.next, p)
	}
	f.mu.Unlock()
}

// records turns outboxes into change records for partition p, in a
// canonical order (by location, then outbox order).
func (f *changeFeed) records(p int32, groups []feedGroup) []*kgo.Record {
	groups = slices.Clone(groups)
	slices.SortFunc(groups, func(a, b feedGroup) int {
		if a.key.Kind != b.key.Kind {
			if a.key.Kind < b.key.Kind {
				return -1
			}
			return 1
		}
		switch {
		case a.key.ID < b.key.ID:
			return -1
		case a.key.ID > b.key.ID:
			return 1
		}
		return 0
	})
	var out []*kgo.Record
	for _, g := range groups {
		for i, r := range g.rows {
			var meta changeMeta
			if i < len(g.meta) {
				meta = g.meta[i]
			}
			c := changeOf(g, r, meta, f.line)
			v, err := wire.EncodePeriodChange(&c)
			if err != nil {
				// A row the machine returned breaks the message's
				// invariants: a bug, not a reason to stop the partition.
				f.errs.Inc()
				f.logger.Error("period change not produced: it does not encode", "location_kind", g.key.Kind,
					"location", g.key.ID, "period", r.ID, "version", r.Version, "err", err)
				continue
			}
			out = append(out, &kgo.Record{Topic: f.topic, Partition: p, Key: c.Key(), Value: v,
				Headers: []kgo.RecordHeader{{Key: wire.KindHeader, Value: []byte(wire.KindPeriodChange)}}})
		}
	}
	return out
}

// changeOf is the change event of one outbox row.
func changeOf(g feedGroup, r period.Row, meta changeMeta, line func(period.Key) uint64) wire.PeriodChange {
	c := wire.PeriodChange{Change: meta.Change, Site: g.site, LocationKind: g.key.Kind, LocationID: g.key.ID,
		ExternalID: g.extID, Period: r.ID, State: string(r.State), StartMs: r.Start, EndMs: r.End, Open: r.Open,
		Shift: r.Shift, Reason: r.Reason, FirstOfStop: r.FirstOfStop, Dispatch: r.Dispatch,
		DispatchType: r.DispatchType, Version: r.Version, Deleted: r.Deleted, DecidedAtMs: meta.AtMs}
	if r.Open {
		c.EndMs = 0
	}
	switch {
	case r.Deleted:
		c.Change = wire.ChangeRemoved
	case c.Change != "":
	case r.Open:
		c.Change = wire.ChangeOpened
	default:
		c.Change = wire.ChangeClosed
	}
	if g.key.Kind == "machine" {
		c.Machine = g.key.ID
		c.Line = line(g.key)
	} else {
		c.Line = g.key.ID
	}
	return c
}

// produce sends records to partition p, which must end at from, and
// awaits them. On failure p's position becomes unknown (the next attempt
// recovers).
func (f *changeFeed) produce(ctx context.Context, p int32, recs []*kgo.Record) error {
	if len(recs) == 0 {
		return nil
	}
	pctx, cancel := context.WithTimeout(ctx, feedTimeout)
	defer cancel()
	res := f.cl.ProduceSync(pctx, recs...)
	if err := res.FirstErr(); err != nil {
		f.forget([]int32{p})
		f.errs.Inc()
		return fmt.Errorf("produce period changes to %s/%d: %w", f.topic, p, err)
	}
	last := int64(-1)
	for _, r := range res {
		last = max(last, r.Record.Offset)
	}
	f.setPosition(p, last+1)
	f.sent.Add(float64(len(recs)))
	return nil
}

// recover makes sure every change of partition p's last flush with saved
// states is on the topic, given the partition's saved states (with their
// feed offsets), and learns where p's next change lands.
func (f *changeFeed) recover(ctx context.Context, p int32, saved []feedState) error {
	rctx, cancel := context.WithTimeout(ctx, feedTimeout)
	defer cancel()
	ends, err := kadm.NewClient(f.cl).ListEndOffsets(rctx, f.topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		f.errs.Inc()
		return fmt.Errorf("period changes: end offsets of %s: %w", f.topic, err)
	}
	eo, ok := ends.Lookup(f.topic, p)
	if !ok {
		f.errs.Inc()
		return fmt.Errorf("period changes: %s has no partition %d (it needs as many as the parts topic)", f.topic, p)
	}
	end := eo.Offset
	last := int64(-1)
	for _, s := range saved {
		last = max(last, s.offset)
	}
	var group []feedGroup
	for _, s := range saved {
		if s.offset == last && last >= 0 {
			group = append(group, s.group)
		}
	}
	recs := f.records(p, group)
	if len(recs) == 0 {
		f.setPosition(p, end)
		return nil
	}
	if end < last {
		f.logger.Error("the period-changes partition ends before the last flush's changes began: the topic lost records; producing that flush's changes again",
			"partition", p, "end", end, "flush_feed_offset", last)
	}
	have := map[string]bool{}
	if end > last {
		if have, err = f.ids(rctx, p, last, end); err != nil {
			f.errs.Inc()
			return err
		}
	}
	missing := recs[:0]
	for _, r := range recs {
		if !have[idOf(r)] {
			missing = append(missing, r)
		}
	}
	if len(missing) == 0 {
		f.setPosition(p, end)
		return nil
	}
	f.logger.Info("producing the period changes a previous flush did not", "partition", p, "changes", len(missing),
		"flush_feed_offset", last, "end", end)
	f.setPosition(p, end)
	if err := f.produce(ctx, p, missing); err != nil {
		return err
	}
	f.resends.Add(float64(len(missing)))
	return nil
}

// ids reads partition p from from up to end and returns the ids of the
// changes there.
func (f *changeFeed) ids(ctx context.Context, p int32, from, end int64) (map[string]bool, error) {
	cl, err := kafkax.NewClient(f.cfg, f.logger, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{
		f.topic: {p: kgo.NewOffset().At(max(from, 0))}}))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	have := map[string]bool{}
	for next := max(from, 0); next < end; {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			return nil, fmt.Errorf("period changes: read %s/%d from %d: %w", f.topic, p, from, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			next = max(next, r.Offset+1)
			if c, err := wire.DecodePeriodChange(r.Value); err == nil {
				have[c.ID] = true
			}
		})
	}
	return have, nil
}

// idOf is the id of a change record this feed encoded.
func idOf(r *kgo.Record) string {
	c, err := wire.DecodePeriodChange(r.Value)
	if err != nil {
		return ""
	}
	return c.ID
}

// feedState is one saved state as recovery needs it.
type feedState struct {
	offset int64 // the flush's feed offset; -1: saved without one
	group  feedGroup
}

// feedOffset returns where partition p's next change lands, recovering
// first when that is unknown.
func (c *consumer) feedOffset(ctx context.Context, p int32) (int64, error) {
	if o, ok := c.feed.position(p); ok {
		return o, nil
	}
	if err := c.recoverFeed(ctx, p); err != nil {
		return 0, err
	}
	o, ok := c.feed.position(p)
	if !ok {
		return 0, fmt.Errorf("period changes: partition %d: position unknown after recovery", p)
	}
	return o, nil
}

// recoverFeed recovers partition p from the states saved in ClickHouse.
func (c *consumer) recoverFeed(ctx context.Context, p int32) error {
	lctx, cancel := context.WithTimeout(ctx, insertTimeout)
	defer cancel()
	saved, err := c.store.PeriodStates(lctx, c.cfg.Topic, []int32{p})
	if err != nil {
		return fmt.Errorf("period changes: %w", err)
	}
	states := make([]feedState, 0, len(saved))
	for _, s := range saved {
		var snap struct {
			Feed *savedFeed `json:"feed"`
		}
		if err := json.Unmarshal(s.State, &snap); err != nil {
			return fmt.Errorf("period state of %s %d: %w", s.LocationKind, s.Location, err)
		}
		if snap.Feed == nil {
			continue
		}
		var rows []period.Row
		if len(s.Outbox) > 0 {
			if err := json.Unmarshal(s.Outbox, &rows); err != nil {
				return fmt.Errorf("period outbox of %s %d: %w", s.LocationKind, s.Location, err)
			}
		}
		states = append(states, feedState{offset: snap.Feed.Offset, group: feedGroup{
			key: period.Key{Kind: s.LocationKind, ID: s.Location}, site: s.Site, extID: s.ExternalID,
			rows: rows, meta: snap.Feed.Changes}})
	}
	return c.feed.recover(ctx, p, states)
}

// produceChanges puts the changes of the batches whose states are in
// ClickHouse on the topic. A partition whose position is not the one its
// states were encoded with (an earlier attempt failed) recovers instead,
// which produces what is missing of exactly those states.
func (c *consumer) produceChanges(ctx context.Context, batches []*batch) error {
	if c.feed == nil {
		return nil
	}
	var errs []error
	for _, b := range batches {
		if !b.periodsDone || b.feedDone || b.overtaken || b.feedOffset < 0 {
			continue
		}
		var err error
		if o, ok := c.feed.position(b.partition); ok && o == b.feedOffset {
			groups := make([]feedGroup, 0, len(b.states))
			for _, s := range b.states {
				if len(s.outbox) > 0 {
					groups = append(groups, feedGroup{key: s.key, site: s.site, extID: s.extID, rows: s.outbox, meta: s.meta})
				}
			}
			err = c.feed.produce(ctx, b.partition, c.feed.records(b.partition, groups))
		} else {
			err = c.recoverFeed(ctx, b.partition)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		b.feedDone = true
	}
	return errors.Join(errs...)
}
