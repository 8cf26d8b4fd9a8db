package period

import (
	"encoding/json"
	"runtime"
	"testing"
	"time"
)

// BenchmarkMachineMemory reports what one location's state machine costs
// in memory and as a saved snapshot: 10,000 machines, each fed an hour of
// parts every 30 s with a 10-minute stop and a tick, on the calendar of
// one shift.
//
//	go test -run '^$' -bench MachineMemory -benchtime 1x ./internal/period/
func BenchmarkMachineMemory(b *testing.B) {
	const locations = 10_000
	cal := &Calendar{Loc: time.UTC, Shifts: []Shift{mustShift("A", "06:00", "14:00", "")}}
	start := time.Date(2024, 3, 4, 6, 0, 0, 0, time.UTC).UnixMilli()
	for range b.N {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		ms := make([]*Machine, locations)
		for i := range ms {
			ms[i] = New(Key{Kind: "line", ID: uint64(i + 1)}, Config{Calendar: cal})
			for t := int64(0); t < 3600_000; t += 30_000 {
				if t >= 1200_000 && t < 1800_000 {
					continue // a stop from 06:20 to 06:30
				}
				ms[i].Part(Part{RecordedMs: start + t, CycleTime: 30, HasCycleTime: true, IdealCycleTime: 25})
			}
			ms[i].Tick(start + 3600_000 + 10_000)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		var snap int
		for _, m := range ms {
			j, err := json.Marshal(m.Snapshot())
			if err != nil {
				b.Fatal(err)
			}
			snap += len(j)
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/locations, "heap-B/location")
		b.ReportMetric(float64(snap)/locations, "snapshot-B/location")
		runtime.KeepAlive(ms)
	}
}
