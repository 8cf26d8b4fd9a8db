package processor

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/takt/takt/internal/chstore"
)

// metrics are the processor's Prometheus series. Labels are small fixed
// sets (reasons, resolutions) or the topic's partitions, never ids.
type metrics struct {
	consumed        prometheus.Counter
	inserted        prometheus.Counter
	batches         *prometheus.CounterVec // by flush reason
	blocks          prometheus.Counter
	insertSeconds   prometheus.Histogram
	insertRows      prometheus.Histogram
	freshness       prometheus.Histogram
	insertErrors    prometheus.Counter
	commitErrors    prometheus.Counter
	fenced          prometheus.Counter
	dlq             *prometheus.CounterVec // by dead-letter class
	dlqErrors       prometheus.Counter
	resolutions     *prometheus.CounterVec // by product resolution
	lag             *prometheus.GaugeVec   // by partition
	pendingRows     prometheus.Gauge
	catalogRefresh  prometheus.Counter
	catalogErrors   prometheus.Counter
	catalogProducts prometheus.Gauge
	machines        prometheus.Gauge
	tooLate         prometheus.Counter
	assignments     *prometheus.CounterVec // applied or refused
	dispatches      *prometheus.CounterVec // applied, unchanged or too_late
	recomputes      *prometheus.CounterVec // done, repeated, failed
	periodRows      prometheus.Counter
	periodStates    prometheus.Counter
	replayed        prometheus.Counter
	duplicates      prometheus.Counter
	rollupRepairs   prometheus.Counter
	wm              *watermarkMetrics
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		consumed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "takt_processor_parts_consumed_total",
			Help: "Records taken from the parts topic (decodable or not).",
		}),
		inserted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "takt_processor_parts_inserted_total",
			Help: "Part rows ClickHouse accepted.",
		}),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "takt_processor_batches_total",
			Help: "Flushes of pending work (inserts and commits), by what triggered them.",
		}, []string{"reason"}),
		blocks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "takt_processor_insert_blocks_total",
			Help: "INSERT blocks of part rows ClickHouse accepted (a flush writes its partitions' rows in one block, or in blocks of at least 10,000 rows).",
		}),
		insertSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "takt_processor_insert_duration_seconds",
			Help:    "Time to write one flush's blocks to ClickHouse, retries included.",
			Buckets: prometheus.ExponentialBuckets(0.002, 2, 14),
		}),
		insertRows: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "takt_processor_insert_rows",
			Help:    "Part rows per INSERT block ClickHouse accepted.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 10), // 1 .. 262144
		}),
		freshness: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "takt_processor_freshness_seconds",
			Help:    "Per part row: from the ingestor receiving it to ClickHouse accepting its insert, when queries see it.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 14), // 10 ms .. ~82 s
		}),
		insertErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "takt_processor_insert_errors_total",
			Help: "Failed INSERT attempts (each is retried).",
		}),
		commitErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "takt_processor_commit_errors_total",
			Help: "Failed offset commits.",
		}),
		fenced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "takt_processor_fenced_total",
			Help: "Flushes dropped because the group no longer recognised this member.",
		}),
		dlq: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "takt_processor_dlq_records_total",
			Help: "Records sent to the dead-letter topic, by class of problem.",
		}, []string{"class"}),
		dlqErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "takt_processor_dlq_errors_total",
			Help: "Failed attempts to produce to the dead-letter topic (each is retried).",
		}),
		resolutions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "takt_processor_product_resolutions_total",
			Help: "Part rows inserted, by how their product was resolved.",
		}, []string{"resolution"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "takt_processor_consumer_lag_records",
			Help: "Records behind the high watermark, by owned partition (as of the last fetch); a partition leaves when it is revoked.",
		}, []string{"partition"}),
		pendingRows: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "takt_processor_pending_rows",
			Help: "Rows consumed and waiting for the next insert.",
		}),
		catalogRefresh: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "takt_processor_catalog_refreshes_total",
			Help: "Reloads of the product and reason catalog, counted as each ends (success or not).",
		}),
		catalogErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "takt_processor_catalog_refresh_errors_total",
			Help: "Failed reloads of the product and reason catalog.",
		}),
		catalogProducts: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "takt_processor_catalog_products",
			Help: "Products in the cached catalog.",
		}),
		machines: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "takt_processor_period_machines",
			Help: "Locations whose production-period state machine this processor holds.",
		}),
		tooLate: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "takt_processor_parts_too_late_total",
			Help: "Parts older than the allowed lateness: stored, but they change no production period.",
		}),
		dispatches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "takt_processor_dispatch_windows_total",
			Help: "Dispatch down windows from the record API, by result (applied, unchanged, too_late).",
		}, []string{"result"}),
		recomputes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "takt_processor_period_recomputes_total",
			Help: "Requests to derive periods again, by result (done; repeated: read again after it ran, nothing done; failed: refused, its window held more parts than one may read or their read kept running out of time).",
		}, []string{"result"}),
		assignments: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "takt_processor_reason_assignments_total",
			Help: "Reason assignments from the record API, by result (applied, refused).",
		}, []string{"result"}),
		periodRows: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "takt_processor_period_rows_written_total",
			Help: "Production-period row versions written to ClickHouse.",
		}),
		periodStates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "takt_processor_period_states_written_total",
			Help: "Saved state-machine states written to ClickHouse.",
		}),
		replayed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "takt_processor_records_replayed_total",
			Help: "Records read again after an assignment and fed to the period state machines only.",
		}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "takt_processor_duplicates_dropped_total",
			Help: "Part records dropped because an earlier record holds their idempotency id (a retry that reached Kafka twice).",
		}),
		rollupRepairs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "takt_processor_rollup_repairs_total",
			Help: "Hourly rollup keys completed after an insert was cut short between parts and its views.",
		}),
	}
	reg.MustRegister(m.consumed, m.inserted, m.batches, m.blocks, m.insertSeconds, m.insertRows, m.freshness, m.insertErrors,
		m.commitErrors, m.fenced, m.dlq, m.dlqErrors, m.resolutions, m.lag, m.pendingRows,
		m.catalogRefresh, m.catalogErrors, m.catalogProducts, m.machines, m.tooLate, m.assignments, m.dispatches, m.recomputes,
		m.periodRows, m.periodStates, m.replayed, m.rollupRepairs, m.duplicates)
	m.wm = newWatermarkMetrics(reg)
	return m
}

// observeInserted records a batch's rows ClickHouse accepted at visibleMs
// (Unix milliseconds): each row's time from receipt to then. A
// row read again after a crash or rebalance counts with its first
// receipt, so freshness shows what the replay cost.
func (m *metrics) observeInserted(b *chstore.PartsBlock, visibleMs int64) {
	if b.Len() == 0 {
		return
	}
	for _, ms := range b.ReceivedMs() {
		m.freshness.Observe(float64(max(visibleMs-ms, 0)) / 1000)
	}
}
