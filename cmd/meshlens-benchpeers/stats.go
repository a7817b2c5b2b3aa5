package main

import (
	"math"
	"slices"
	"time"
)

// Percentile returns the p-th percentile (0 < p <= 100) of xs by the
// nearest-rank method: the smallest value with at least p% of the samples at
// or below it. It does not modify xs. An empty input gives 0.
func Percentile(xs []time.Duration, p float64) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return percentileSorted(s, p)
}

func percentileSorted(s []time.Duration, p float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	if p <= 0 {
		return s[0]
	}
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	rank = min(max(rank, 1), len(s))
	return s[rank-1]
}

// Step is the outcome of one step of offered load.
type Step struct {
	Offered  float64 // items/s the generator scheduled
	Accepted float64 // items/s acknowledged with success
	P50, P99 time.Duration
	CPU      float64 // server CPU utilisation in cores over the step
	RSS      int64   // largest server RSS seen during the step, bytes
	Errors   int     // failed or refused requests
	Skipped  int     // requests not sent because the in-flight bound was reached
	// StoreFsyncP99 and StoreWriteP99 are meshlens's own trace-store WAL
	// fsync and batch-commit p99 over the step (bucket upper bounds), to
	// tell a storage tail from a CPU one; zero for other targets.
	StoreFsyncP99 time.Duration `json:",omitempty"`
	StoreWriteP99 time.Duration `json:",omitempty"`
	StoreFsyncs   float64       `json:",omitempty"` // fsyncs per second
	// SchedP99 is meshlens's p99 of the time runnable goroutines waited
	// for a CPU over the step (Go runtime's /sched/latencies:seconds).
	SchedP99 time.Duration `json:",omitempty"`
}

// Saturation criteria from the issue: a step is sustained when at least 99%
// of the offered load was accepted and the p99 acknowledgement latency
// stayed under 100 ms.
const (
	minAcceptedShare = 0.99
	maxP99           = 100 * time.Millisecond
)

// Sustained reports whether s meets the saturation criteria.
func (s Step) Sustained() bool {
	return s.Offered > 0 && s.Accepted >= minAcceptedShare*s.Offered && s.P99 < maxP99
}

// Saturation returns the index of the step with the highest offered load that
// was sustained, or -1 if none was. Steps need not be sorted, and a sustained
// step above a failed one still counts (the definition is "the highest rate
// where", not "the last rate before the first failure").
func Saturation(steps []Step) int {
	best := -1
	for i, s := range steps {
		if s.Sustained() && (best < 0 || s.Offered > steps[best].Offered) {
			best = i
		}
	}
	return best
}

// Summary is the median and spread of repeated measurements.
type Summary struct {
	N        int
	Median   float64
	Min, Max float64
}

// Summarize returns the median (mean of the two middle values for an even
// count), minimum and maximum of xs.
func Summarize(xs []float64) Summary {
	if len(xs) == 0 {
		return Summary{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Summary{N: len(s), Median: m, Min: s[0], Max: s[len(s)-1]}
}

// SpreadPct is (max-min)/median in percent, 0 when undefined.
func (s Summary) SpreadPct() float64 {
	if s.Median == 0 {
		return 0
	}
	return (s.Max - s.Min) / s.Median * 100
}

// Ladder returns offered-load steps from lo to hi (inclusive of hi's
// neighbourhood) growing by factor, rounded to 3 significant digits.
func Ladder(lo, hi, factor float64) []float64 {
	if lo <= 0 || hi < lo || factor <= 1 {
		return nil
	}
	var out []float64
	for r := lo; r <= hi*1.0001; r *= factor {
		out = append(out, round3(r))
	}
	return out
}

func round3(x float64) float64 {
	if x == 0 {
		return 0
	}
	e := math.Pow(10, math.Floor(math.Log10(math.Abs(x)))-2)
	return math.Round(x/e) * e
}
