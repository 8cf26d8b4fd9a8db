package loadtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/kafkax"
	"github.com/takt/takt/internal/wire"
	"github.com/takt/takt/processor"
)

// ProcessorFigure compares Takt's processor with ClickHouse's own Kafka
// table engine draining the same pre-filled topic into a MergeTree table.
type ProcessorFigure struct {
	Parts int `json:"parts"`
	// ProcessorS and EngineS are the times from start to the last row
	// stored; the rates are Parts over them.
	ProcessorS           float64 `json:"processor_s"`
	ProcessorPartsPerS   float64 `json:"processor_parts_per_s"`
	EngineS              float64 `json:"kafka_engine_s"`
	EnginePartsPerS      float64 `json:"kafka_engine_parts_per_s"`
	Ratio                float64 `json:"ratio"`
	ProcessorFirst99PerS float64 `json:"processor_first_99pct_parts_per_s"`
	EngineFirst99PerS    float64 `json:"kafka_engine_first_99pct_parts_per_s"`
	PrefillS             float64 `json:"prefill_s"`
	// ProcessorCPU and EngineCPU are the CPU each drain cost, per part:
	// "processor" is this process (Takt's processor runs in it; idle but
	// for polling the row count during the engine's drain), the others
	// the stack's processes given to ProcessorBench (ClickHouse does the
	// engine's work). Unlike the rates, they hardly depend on what else
	// the machine runs.
	ProcessorCPU *CPUUse `json:"processor_cpu,omitempty"`
	EngineCPU    *CPUUse `json:"kafka_engine_cpu,omitempty"`
}

// ProcessorBench fills a scratch topic (6 partitions) with n part messages,
// then drains it twice, one after the other, into a scratch database: with
// Takt's processor (in this process, default batch settings), and with
// ClickHouse's Kafka table engine (JSONEachRow into typed columns of a
// MergeTree through a materialized view). Both start from offset 0: the
// engine's group is given committed offsets of 0 before its table exists,
// since on 18.16 a new group starts at the latest offset. The topic and
// database are removed afterwards. The CPU of this process and of stack
// (the broker, ClickHouse, ...) is metered over each drain.
func ProcessorBench(ctx context.Context, brokers []string, ch chstore.Config, n int, stack []Proc, logger *slog.Logger) (ProcessorFigure, error) {
	fig := ProcessorFigure{Parts: n}
	procs := append([]Proc{{Name: "processor", PID: os.Getpid()}}, stack...)
	meter := func() func() *CPUUse {
		m, err := StartCPU(procs)
		if err != nil {
			logger.Warn("processor figure: no CPU figures", "err", err)
			return func() *CPUUse { return nil }
		}
		return func() *CPUUse { u := m.Stop(int64(n)); return &u }
	}
	suffix := strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	topic := "takt-bench-" + suffix
	ch.Database = "takt_bench_" + suffix
	cl, err := kafkax.NewClient(kafkax.Config{Brokers: brokers, Linger: 5 * time.Millisecond}, logger,
		kgo.MaxBufferedRecords(100_000))
	if err != nil {
		return fig, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	for _, t := range []struct {
		name       string
		partitions int32
	}{{topic, 6}, {topic + "-dlq", 1}} {
		resp, err := adm.CreateTopic(ctx, t.partitions, 1, nil, t.name)
		if err == nil {
			err = resp.Err
		}
		if err != nil {
			return fig, fmt.Errorf("create topic %s: %w", t.name, err)
		}
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = adm.DeleteTopics(dctx, topic, topic+"-dlq")
	}()
	store, err := chstore.Open(ctx, ch, logger)
	if err != nil {
		return fig, err
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		_ = store.Exec(dctx, "DROP DATABASE IF EXISTS `"+ch.Database+"`")
		store.Close()
	}()
	if err := store.Migrate(ctx); err != nil {
		return fig, err
	}

	t0 := time.Now()
	if err := prefill(ctx, cl, topic, n); err != nil {
		return fig, err
	}
	fig.PrefillS = time.Since(t0).Seconds()

	// Takt's processor.
	reg := prometheus.NewRegistry()
	pctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	stopCPU := meter()
	start := time.Now()
	go func() {
		done <- processor.Run(pctx, processor.Config{
			Brokers: brokers, Topic: topic, DLQTopic: topic + "-dlq", Group: "takt-bench-" + suffix,
			SessionTimeout: 10 * time.Second, BatchRows: processor.DefaultBatchRows, BatchInterval: processor.DefaultBatchInterval,
			CycleTimeTolerance: processor.DefaultCycleTimeTolerance, CatalogRefresh: processor.DefaultCatalogRefresh,
			Addr: "127.0.0.1:0", ClickHouse: ch, Registry: reg,
		}, logger)
	}()
	total, at99, err := waitRows(ctx, start, n, func() (float64, error) { return gatherCounter(reg, "takt_processor_parts_inserted_total") }, done)
	fig.ProcessorCPU = stopCPU()
	stop()
	if !errors.Is(err, errStopped) {
		if perr := <-done; err == nil && perr != nil {
			err = perr
		}
	}
	if err != nil {
		return fig, fmt.Errorf("processor: %w", err)
	}
	fig.ProcessorS = total.Seconds()
	fig.ProcessorPartsPerS = float64(n) / total.Seconds()
	fig.ProcessorFirst99PerS = 0.99 * float64(n) / at99.Seconds()

	// ClickHouse's Kafka engine, from offset 0 of every partition.
	group := "takt-bench-ch-" + suffix
	offsets := kadm.Offsets{}
	for p := range int32(6) {
		offsets.Add(kadm.Offset{Topic: topic, Partition: p, At: 0, LeaderEpoch: -1})
	}
	if _, err := adm.CommitOffsets(ctx, group, offsets); err != nil {
		return fig, fmt.Errorf("pre-commit offsets of %s: %w", group, err)
	}
	for _, stmt := range engineDDL(strings.Join(brokers, ","), topic, group) {
		if err := store.Exec(ctx, stmt); err != nil {
			return fig, fmt.Errorf("kafka engine: %s: %w", firstLine(stmt), err)
		}
	}
	stopCPU = meter()
	start = time.Now()
	if err := store.Exec(ctx, engineMV); err != nil {
		return fig, fmt.Errorf("kafka engine view: %w", err)
	}
	total, at99, err = waitRows(ctx, start, n, func() (float64, error) {
		v, err := store.QueryUint64(ctx, "SELECT count() FROM engine_parts")
		return float64(v), err
	}, nil)
	fig.EngineCPU = stopCPU()
	_ = store.Exec(context.Background(), "DROP TABLE IF EXISTS engine_mv")
	_ = store.Exec(context.Background(), "DROP TABLE IF EXISTS engine_queue")
	if err != nil {
		return fig, fmt.Errorf("kafka engine: %w", err)
	}
	fig.EngineS = total.Seconds()
	fig.EnginePartsPerS = float64(n) / total.Seconds()
	fig.EngineFirst99PerS = 0.99 * float64(n) / at99.Seconds()
	fig.Ratio = fig.ProcessorPartsPerS / fig.EnginePartsPerS
	return fig, nil
}

// engineDDL is the Kafka engine's side: a queue table reading the wire
// format (every field, JSONEachRow, one message per row) and the typed
// MergeTree it is drained into. The view (engineMV) starts the draining.
func engineDDL(brokers, topic, group string) []string {
	return []string{
		`CREATE TABLE engine_queue (
    v UInt8, event_id String, site UInt64, location_kind String, location_id UInt64, external_id String,
    quantity UInt32, quality String, product String, cycle_time Float64, has_cycle_time UInt8, reason String,
    recorded_at_ms Int64, recorded_defaulted UInt8, received_at_ms Int64
) ENGINE = Kafka SETTINGS kafka_broker_list = '` + brokers + `', kafka_topic_list = '` + topic + `',
    kafka_group_name = '` + group + `', kafka_format = 'JSONEachRow', kafka_row_delimiter = '\n', kafka_num_consumers = 1`,
		`CREATE TABLE engine_parts (
    event_id UUID, site UInt64, location_kind Enum8('line' = 1, 'machine' = 2), location_id UInt64,
    externalid String, quantity UInt32, quality Enum8('good' = 1, 'scrap' = 2, 'rework' = 3),
    product_reported String, reason String, cycle_time Nullable(Float64), recorded_at DateTime,
    recorded_ms Int64, recorded_defaulted UInt8, received_ms Int64
) ENGINE = MergeTree() ORDER BY (externalid, recorded_ms)`,
	}
}

// engineMV selects every column of engine_parts: on 18.16 a view from a
// Kafka table does not fill defaults.
const engineMV = `CREATE MATERIALIZED VIEW engine_mv TO engine_parts AS SELECT
    toUUID(event_id) AS event_id, site, CAST(location_kind AS Enum8('line' = 1, 'machine' = 2)) AS location_kind,
    location_id, external_id AS externalid, quantity, CAST(quality AS Enum8('good' = 1, 'scrap' = 2, 'rework' = 3)) AS quality,
    product AS product_reported, reason, if(has_cycle_time = 1, toNullable(cycle_time), CAST(NULL AS Nullable(Float64))) AS cycle_time,
    toDateTime(intDiv(recorded_at_ms, 1000)) AS recorded_at, recorded_at_ms AS recorded_ms, recorded_defaulted,
    received_at_ms AS received_ms
FROM engine_queue`

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// prefill produces n realistic part messages over 100 locations.
func prefill(ctx context.Context, cl *kgo.Client, topic string, n int) error {
	cfg := DefaultConfig()
	cfg.Machines = 100
	now := time.Now()
	s := newSim(cfg, now)
	const chunk = 50_000
	rs := make([]*kgo.Record, 0, chunk)
	for lo := 0; lo < n; lo += chunk {
		rs = rs[:0]
		for i := lo; i < min(lo+chunk, n); i++ {
			m := s.machines[i%len(s.machines)]
			sp := s.part(m, now)
			p := wire.Part{
				EventID: uuid.Must(uuid.NewV7()).String(), Site: Site, LocationKind: "line",
				LocationID: uint64(idBase + i%len(s.machines) + 1), ExternalID: m.ExternalID,
				Quantity: sp.quantity, Quality: sp.quality, CycleTime: sp.cycleTime, HasCycleTime: true,
				RecordedAtMs: sp.recordedMs, ReceivedAtMs: now.UnixMilli(),
			}
			if m.sendsCode {
				p.Product = m.product.Code
			}
			if p.Quality == wire.QualityScrap {
				p.Reason = scrapReason
			}
			v, err := wire.Encode(&p)
			if err != nil {
				return err
			}
			rs = append(rs, &kgo.Record{Topic: topic, Key: p.Key(), Value: v})
		}
		if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
			return fmt.Errorf("prefill: %w", err)
		}
	}
	return nil
}

// errStopped means the consumer measured stopped before it was done.
var errStopped = errors.New("stopped early")

// waitRows polls count until it reaches n (at most 5 minutes) and returns
// the time to all rows and to 99% of them.
func waitRows(ctx context.Context, start time.Time, n int, count func() (float64, error), died <-chan error) (total, at99 time.Duration, err error) {
	deadline := start.Add(5 * time.Minute)
	for {
		v, err := count()
		if err != nil {
			return 0, 0, err
		}
		if at99 == 0 && v >= 0.99*float64(n) {
			at99 = time.Since(start)
		}
		if v >= float64(n) {
			return time.Since(start), at99, nil
		}
		if time.Now().After(deadline) {
			return 0, 0, fmt.Errorf("%.0f of %d rows after %s", v, n, time.Since(start).Round(time.Second))
		}
		select {
		case err := <-died:
			return 0, 0, fmt.Errorf("%w: %w", errStopped, err)
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// gatherCounter reads a counter's value from a registry.
func gatherCounter(reg *prometheus.Registry, name string) (float64, error) {
	mfs, err := reg.Gather()
	if err != nil {
		return 0, err
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			var sum float64
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
			return sum, nil
		}
	}
	return 0, nil
}
