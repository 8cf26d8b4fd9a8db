package processor

import (
	"reflect"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/takt/takt/internal/chstore"
)

// lagSeries reads the lag gauge's series: partition label -> value.
func lagSeries(t *testing.T, reg prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() == "takt_processor_consumer_lag_records" {
			for _, m := range mf.GetMetric() {
				got[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
			}
		}
	}
	return got
}

func TestLagByPartition(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := &consumer{m: newMetrics(reg)}
	steps := []struct {
		owned []partitionLag
		want  map[string]float64
	}{
		{[]partitionLag{{0, 5}, {1, 0}, {2, 7}}, map[string]float64{"0": 5, "1": 0, "2": 7}},
		// Partition 2 was revoked: its series goes, so the group's sum
		// over members does not count it twice once another member owns it.
		{[]partitionLag{{0, 1}, {1, 3}}, map[string]float64{"0": 1, "1": 3}},
		{[]partitionLag{{2, 4}}, map[string]float64{"2": 4}},
		{nil, map[string]float64{}},
	}
	for i, s := range steps {
		c.lags = s.owned
		c.showLags()
		if got := lagSeries(t, reg); !reflect.DeepEqual(got, s.want) {
			t.Errorf("step %d: lag series %v, want %v", i, got, s.want)
		}
	}
}

func TestObserveInserted(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newMetrics(reg)
	var b chstore.PartsBlock
	m.observeInserted(&b, 10_000) // an empty block is no insert
	for _, receivedMs := range []int64{9_950, 9_000, 10_200} {
		if err := b.Append(&chstore.PartRow{LocationKind: "line", ProductResolution: "none", Quality: "good", ReceivedMs: receivedMs}); err != nil {
			t.Fatal(err)
		}
	}
	m.observeInserted(&b, 10_000)

	var fresh dto.Metric
	if err := m.freshness.Write(&fresh); err != nil {
		t.Fatal(err)
	}
	// 50 ms, 1 s, and a receipt after the insert (clocks apart) as 0.
	if h := fresh.GetHistogram(); h.GetSampleCount() != 3 || h.GetSampleSum() != 1.05 {
		t.Errorf("freshness: %d samples summing to %v s; want 3 summing to 1.05", h.GetSampleCount(), h.GetSampleSum())
	}
}
