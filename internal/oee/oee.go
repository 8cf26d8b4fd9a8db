// Package oee computes ISO 22400-2 production figures from production
// periods and part events: the time and quantity elements, the ratios built
// from them, and their bucketing by hour, day, week, month or shift in a
// site's time zone. It is pure: callers load periods and parts (from
// ClickHouse, or from a scenario file in tests) and get numbers back.
//
// Elements are sums and ratios are computed from summed elements, never
// averaged: to combine locations, buckets or products, Add the Elements and
// take Ratios of the sum.
//
// # Definitions
//
// Times are in seconds, clipped to the window (an open period ends at now):
//   - planned_busy_time (PBT): running + down (unplanned) time, i.e. the
//     scheduled time minus planned downtime. Unscheduled time is outside
//     every element.
//   - actual_production_time (APT): running time.
//   - unplanned_down_time: down time; planned_down_time: planned_down time.
//
// Quantities count the parts recorded in the window (and before now) that
// the state machine placed in scheduled time (period.Counted): the parts
// whose time is in APT. Parts made outside the shifts and parts too late to
// change any period count in no time, so they are reported apart
// (unscheduled_quantity, late_quantity) and not in these:
//   - produced_quantity (PQ) = good + scrap + rework quantities;
//     good_quantity (GQ) counts good parts only.
//   - ideal_production_time: Σ ideal cycle time × quantity over those
//     parts, with the ideal cycle time each part was processed with.
//
// Ratios (0 when the denominator is 0):
//   - availability = APT / PBT; performance = ideal_production_time / APT;
//     quality = GQ / PQ; oee = availability × performance × quality.
//   - performance_over_ideal is set when the ideal production time exceeds
//     the actual production time (performance above 1, or parts counted in
//     a row without running time, where performance reads 0): the parts
//     came faster than their ideal cycle time, or a window or bucket edge
//     cuts a part's production (a part counts, whole, where it was
//     recorded).
//   - teep = oee × PBT / calendar time (the window up to now).
//   - down_events counts stops whose first scheduled piece
//     (period.Row.FirstOfStop) is unplanned down and starts in the window:
//     a stop cut by shift boundaries, an unscheduled night or a planned
//     piece is one event. mtbf = APT / down_events, mttr =
//     unplanned_down_time / down_events.
//   - availability_loss = PBT − APT; performance_loss = APT −
//     ideal_production_time; quality_loss = ideal_production_time × (1 −
//     quality). The three add up to PBT × (1 − oee).
package oee

import (
	"sort"

	"github.com/takt/takt/internal/period"
)

// Window is [Start, End) in Unix milliseconds.
type Window struct {
	Start int64 `json:"start"`
	End   int64 `json:"end"`
}

// Period is a production period as the figures need it.
type Period struct {
	Location uint64
	State    period.State
	// Start and End are Unix milliseconds; End is ignored when Open.
	Start, End int64
	Open       bool
	// FirstOfStop is period.FirstPiece on the first scheduled piece of a
	// stop, 0 on other pieces, period.FirstUnknown on rows stored before
	// the mark existed (a down period then starts an event unless a down
	// period ends where it starts).
	FirstOfStop int8
}

// Part is a part event as the figures need it.
type Part struct {
	Location   uint64
	Product    uint64
	RecordedMs int64
	Quantity   uint32
	// Quality is "good", "scrap" or "rework".
	Quality string
	// IdealCycleTime of the product when the part was processed,
	// seconds (0: none).
	IdealCycleTime float64
	// Class says whether the part counts (period.Counted, or "") or is
	// reported apart.
	Class period.Class
}

// Elements are the summable ISO 22400 elements of one row of figures.
type Elements struct {
	PlannedBusyTime      float64 `json:"planned_busy_time"`
	ActualProductionTime float64 `json:"actual_production_time"`
	UnplannedDownTime    float64 `json:"unplanned_down_time"`
	PlannedDownTime      float64 `json:"planned_down_time"`
	ProducedQuantity     uint64  `json:"produced_quantity"`
	GoodQuantity         uint64  `json:"good_quantity"`
	ScrapQuantity        uint64  `json:"scrap_quantity"`
	ReworkQuantity       uint64  `json:"rework_quantity"`
	IdealProductionTime  float64 `json:"ideal_production_time"`
	// UnscheduledQuantity and LateQuantity are the parts made outside the
	// shifts and too late to be placed; they are in no other element.
	UnscheduledQuantity uint64 `json:"unscheduled_quantity"`
	LateQuantity        uint64 `json:"late_quantity"`
	DownEvents          uint64 `json:"down_events"`
	// CalendarTime is the length of the window up to now (seconds), the
	// denominator of TEEP.
	CalendarTime float64 `json:"calendar_time"`
}

// Add adds o to e.
func (e *Elements) Add(o Elements) {
	e.PlannedBusyTime += o.PlannedBusyTime
	e.ActualProductionTime += o.ActualProductionTime
	e.UnplannedDownTime += o.UnplannedDownTime
	e.PlannedDownTime += o.PlannedDownTime
	e.ProducedQuantity += o.ProducedQuantity
	e.GoodQuantity += o.GoodQuantity
	e.ScrapQuantity += o.ScrapQuantity
	e.ReworkQuantity += o.ReworkQuantity
	e.IdealProductionTime += o.IdealProductionTime
	e.UnscheduledQuantity += o.UnscheduledQuantity
	e.LateQuantity += o.LateQuantity
	e.DownEvents += o.DownEvents
	e.CalendarTime += o.CalendarTime
}

// Ratios are derived from Elements.
type Ratios struct {
	Availability float64 `json:"availability"`
	Performance  float64 `json:"performance"`
	// PerformanceOverIdeal says the ideal production time exceeds the
	// actual production time.
	PerformanceOverIdeal bool    `json:"performance_over_ideal"`
	Quality              float64 `json:"quality"`
	OEE                  float64 `json:"oee"`
	TEEP                 float64 `json:"teep"`
	MTBF                 float64 `json:"mtbf"`
	MTTR                 float64 `json:"mttr"`
	AvailabilityLoss     float64 `json:"availability_loss"`
	PerformanceLoss      float64 `json:"performance_loss"`
	QualityLoss          float64 `json:"quality_loss"`
}

func div(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// Ratios computes the ratios of e.
func (e Elements) Ratios() Ratios {
	r := Ratios{
		Availability: div(e.ActualProductionTime, e.PlannedBusyTime),
		Performance:  div(e.IdealProductionTime, e.ActualProductionTime),
		Quality:      div(float64(e.GoodQuantity), float64(e.ProducedQuantity)),
		MTBF:         div(e.ActualProductionTime, float64(e.DownEvents)),
		MTTR:         div(e.UnplannedDownTime, float64(e.DownEvents)),
	}
	r.PerformanceOverIdeal = e.IdealProductionTime > e.ActualProductionTime
	r.OEE = r.Availability * r.Performance * r.Quality
	r.TEEP = r.OEE * div(e.PlannedBusyTime, e.CalendarTime)
	r.AvailabilityLoss = e.PlannedBusyTime - e.ActualProductionTime
	r.PerformanceLoss = e.ActualProductionTime - e.IdealProductionTime
	r.QualityLoss = e.IdealProductionTime * (1 - r.Quality)
	if e.ProducedQuantity == 0 {
		r.QualityLoss = 0
	}
	return r
}

// Compute returns the elements of the periods and parts within w. now ends
// open periods, the calendar time and the parts that count (a part
// recorded after now is not in the figures yet). periods should include,
// for each location, the period before the window's first one when it
// touches the window start (rows without a FirstOfStop mark need it to
// tell whether a stop continues across the start).
func Compute(w Window, now int64, periods []Period, parts []Part) Elements {
	var e Elements
	end := min(w.End, now)
	if end > w.Start {
		e.CalendarTime = ms(end - w.Start)
	}
	ps := append([]Period(nil), periods...)
	sort.Slice(ps, func(i, j int) bool {
		if ps[i].Location != ps[j].Location {
			return ps[i].Location < ps[j].Location
		}
		return ps[i].Start < ps[j].Start
	})
	downEnds := map[[2]uint64]bool{}
	for _, p := range ps {
		if p.State == period.Down && !p.Open {
			downEnds[[2]uint64{p.Location, uint64(p.End)}] = true
		}
	}
	for _, p := range ps {
		pe := p.End
		if p.Open {
			pe = now
		}
		s, f := max(p.Start, w.Start), min(pe, end)
		d := 0.0
		if f > s {
			d = ms(f - s)
		}
		switch p.State {
		case period.Running:
			e.ActualProductionTime += d
			e.PlannedBusyTime += d
		case period.Down:
			e.UnplannedDownTime += d
			e.PlannedBusyTime += d
			first := p.FirstOfStop == period.FirstPiece ||
				p.FirstOfStop == period.FirstUnknown && !downEnds[[2]uint64{p.Location, uint64(p.Start)}]
			if first && p.Start >= w.Start && p.Start < end {
				e.DownEvents++
			}
		case period.PlannedDown:
			e.PlannedDownTime += d
		}
	}
	for _, p := range parts {
		if p.RecordedMs < w.Start || p.RecordedMs >= end {
			continue
		}
		q := uint64(p.Quantity)
		switch p.Class {
		case period.OutsideShifts:
			e.UnscheduledQuantity += q
			continue
		case period.TooLateToPlace:
			e.LateQuantity += q
			continue
		}
		e.ProducedQuantity += q
		switch p.Quality {
		case "scrap":
			e.ScrapQuantity += q
		case "rework":
			e.ReworkQuantity += q
		default:
			e.GoodQuantity += q
		}
		e.IdealProductionTime += p.IdealCycleTime * float64(p.Quantity)
	}
	return e
}

func ms(d int64) float64 { return float64(d) / 1000 }
