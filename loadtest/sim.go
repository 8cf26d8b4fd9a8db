package loadtest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"time"
)

// Product is a product the simulated fleet makes.
type Product struct {
	Code           string
	IdealCycleTime float64 // seconds
}

// fleetProducts are the harness's products: short to long cycles.
var fleetProducts = []Product{
	{"LT-P01", 8}, {"LT-P02", 12}, {"LT-P03", 30}, {"LT-P04", 45}, {"LT-P05", 90},
}

// scrapReason is the scrap reason the harness reports.
const scrapReason = "LT-SCRAP"

// machine is one simulated machine. Its parts are time-stamped with the
// wall clock, strictly increasing by at least one millisecond, so that a
// part is identified by (external id, recorded_at) in the query API.
type machine struct {
	ExternalID string
	product    Product
	cavities   uint32 // parts per cycle (quantity)
	sendsCode  bool   // false: the product is found by cycle time
	lastMs     int64
	stopUntil  time.Time
	runUntil   time.Time
}

// sim is the fleet: it decides which machine makes the next part and what
// that part looks like. It is used by one goroutine (the scheduler) only.
type sim struct {
	cfg      Config
	rng      *rand.Rand
	machines []*machine
	next     int
}

func externalID(i int) string { return fmt.Sprintf("lt_m%04d", i+1) }

func newSim(cfg Config, start time.Time) *sim {
	s := &sim{cfg: cfg, rng: rand.New(rand.NewPCG(uint64(cfg.Seed), 0x74616b74))}
	for i := range cfg.Machines {
		m := &machine{
			ExternalID: externalID(i),
			product:    fleetProducts[i%len(fleetProducts)],
			cavities:   []uint32{1, 1, 1, 2, 4}[s.rng.IntN(5)],
			sendsCode:  i%5 != 4,
		}
		m.runUntil = start.Add(s.exp(cfg.StopEvery))
		s.machines = append(s.machines, m)
	}
	return s
}

// exp draws an exponentially distributed duration of the given mean (0:
// forever).
func (s *sim) exp(mean time.Duration) time.Duration {
	if mean <= 0 {
		return 1 << 62
	}
	return time.Duration(s.rng.ExpFloat64() * float64(mean))
}

// pick returns the next machine to make a part at now: round robin over
// the running machines. A machine that reached its stop time stops for a
// while; its share of the load goes to the others, so the fleet keeps the
// target rate (stops show as gaps in that location's parts). When every
// machine is stopped, the first one due back runs.
func (s *sim) pick(now time.Time) *machine {
	for range s.machines {
		m := s.machines[s.next]
		s.next = (s.next + 1) % len(s.machines)
		if now.Before(m.stopUntil) {
			continue
		}
		if !now.Before(m.runUntil) {
			m.stopUntil = now.Add(s.exp(s.cfg.StopFor))
			m.runUntil = m.stopUntil.Add(s.exp(s.cfg.StopEvery))
			continue
		}
		return m
	}
	m := s.machines[s.next]
	s.next = (s.next + 1) % len(s.machines)
	m.stopUntil = time.Time{}
	return m
}

// simPart is one part event as the harness sends and tracks it.
type simPart struct {
	m          *machine
	quantity   uint32
	quality    string
	cycleTime  float64
	recordedMs int64
	// key is the part's idempotency key when its request is sent twice
	// (-retry-rate): the Idempotency-Key header of a single call, the
	// part's idempotency_key in a batch.
	key string
}

// part makes m's next part at now.
func (s *sim) part(m *machine, now time.Time) simPart {
	ms := max(now.UnixMilli(), m.lastMs+1)
	m.lastMs = ms
	p := simPart{m: m, quantity: m.cavities, quality: "good", recordedMs: ms}
	switch r := s.rng.Float64(); {
	case r < s.cfg.Scrap:
		p.quality = "scrap"
	case r < s.cfg.Scrap+s.cfg.Rework:
		p.quality = "rework"
	}
	// Cycle times: mostly a few percent over the ideal, sometimes a slow
	// cycle (a micro-stop) of up to twice the ideal.
	f := 1 + math.Abs(s.rng.NormFloat64())*0.03
	if s.rng.Float64() < 0.05 {
		f = 1.2 + s.rng.Float64()*0.8
	}
	p.cycleTime = math.Round(m.product.IdealCycleTime*f*100) / 100
	return p
}

// appendJSON writes p as the "part" object of the ingest API; keyed adds
// its idempotency key.
func (p *simPart) appendJSON(b []byte, keyed bool) []byte {
	b = append(b, `{"external_id":"`...)
	b = append(b, p.m.ExternalID...)
	b = append(b, `","quantity":`...)
	b = strconv.AppendUint(b, uint64(p.quantity), 10)
	b = append(b, `,"quality":"`...)
	b = append(b, p.quality...)
	b = append(b, '"')
	if p.m.sendsCode {
		b = append(b, `,"product":"`...)
		b = append(b, p.m.product.Code...)
		b = append(b, '"')
	}
	if p.quality == "scrap" {
		b = append(b, `,"reason":"`+scrapReason+`"`...)
	}
	b = append(b, `,"cycle_time":`...)
	b = strconv.AppendFloat(b, p.cycleTime, 'f', -1, 64)
	b = append(b, `,"recorded_at":`...)
	b = strconv.AppendInt(b, p.recordedMs/1000, 10)
	b = append(b, '.')
	frac := p.recordedMs % 1000
	b = append(b, byte('0'+frac/100), byte('0'+frac/10%10), byte('0'+frac%10))
	if keyed && p.key != "" {
		b = append(b, `,"idempotency_key":"`...)
		b = append(b, p.key...)
		b = append(b, '"')
	}
	return append(b, '}')
}

// body returns the request body of parts: {"part":...} for one part on
// the single endpoint, {"parts":[...]} for the batch endpoint.
func body(b []byte, parts []simPart, batch bool) []byte {
	if !batch {
		b = append(b, `{"part":`...)
		b = parts[0].appendJSON(b, false)
		return append(b, '}')
	}
	b = append(b, `{"parts":[`...)
	for i := range parts {
		if i > 0 {
			b = append(b, ',')
		}
		b = parts[i].appendJSON(b, true)
	}
	return append(b, "]}"...)
}
