package recommend

import (
	"fmt"
	"math"
	"time"
)

// shiftAlpha is the false-alarm probability of one recent-window test. A
// recomputation tests up to RecentWindow/Slot suffixes per edge, every 30 s,
// which bounds false raises at 0.06 per edge-hour (fewer in practice: the
// tests are correlated and count against the interval's upper bound); a
// false raise makes a timeout cut less for at least RecentWindow.
const shiftAlpha = 1e-4

// minExcess is the excess over the expected count a shift must show: the
// edge of the ±50% band the realised false-timeout rate should stay in.
const minExcess = 1.5

// shift is the outcome of the recent-window check of one edge: whether the
// latest minutes show significantly more successes above the window's
// estimate than the target allows, and the estimate they support.
type shift struct {
	found bool
	span  time.Duration // recent data the estimate is based on
	n     uint64        // successes in it
	above uint64        // of those, above the window's upper bound
	want  float64       // expected above if the window's estimate held
	value time.Duration // target quantile of the recent data
	ci    QuantileCI
}

// recentShift tests whether latency has risen within the last
// RecentWindow: for each suffix of the window (the current slot, then one
// more closed slot at a time) it counts the successes above the upper 95%
// bound of the window's quantile. If the window's estimate still held, that
// count would be at most Poisson(n × target); a count of at least
// minExcess times that with a tail probability below shiftAlpha is a shift. Of the suffixes
// that show one, the highest estimate of the quantile wins, so that data
// from before the change (in the longer suffixes) does not dilute it. The
// estimate is the order statistic whose expected exceedance is the target,
// rank target × (n+1) from the top and at least the largest value: from
// fewer than 1/target samples that is the maximum, whose expected
// exceedance 1/(n+1) is above the target — the timeout is raised no less
// than the data shows, and the window's own estimate takes over as it
// fills with the new latencies.
func (e *Engine) recentShift(s *series, bound time.Duration, now time.Time) shift {
	var out shift
	if s.cur < 0 {
		return out
	}
	target := e.cfg.TargetFalseTimeout
	h := s.curH
	slots := max(1, int(e.cfg.RecentWindow/e.cfg.Slot))
	for k := 0; k < slots && k < len(s.ring); k++ {
		if k > 0 {
			sl, end := s.past(k)
			if end {
				break
			}
			if sl == nil {
				continue
			}
			sl.h.addTo(&h)
		}
		nr := h.Count()
		if nr == 0 {
			continue
		}
		above := h.CountAbove(bound)
		want := float64(nr) * target
		if float64(above) < minExcess*want || poissonTail(above, want) > shiftAlpha {
			continue
		}
		top := max(1, uint64(math.Round(target*float64(nr+1))))
		v := h.ValueAtRank(nr - top + 1)
		if !out.found || v > out.value {
			out = shift{found: true, span: now.Sub(time.Unix(0, (s.cur-int64(k))*int64(e.cfg.Slot))).Round(time.Second), n: nr, above: above, want: want, value: v,
				ci: h.QuantileWithCI(1-target, 1.96)}
		}
	}
	return out
}

// poissonTail is P(X ≥ k) for X ~ Poisson(lam), summed from k upwards.
func poissonTail(k uint64, lam float64) float64 {
	if k == 0 {
		return 1
	}
	if lam <= 0 {
		return 0
	}
	lg, _ := math.Lgamma(float64(k) + 1)
	term := math.Exp(-lam + float64(k)*math.Log(lam) - lg)
	sum := 0.0
	for i := k; term > 1e-300; i++ {
		sum += term
		if term < sum*1e-12 {
			break
		}
		term *= lam / float64(i+1)
	}
	return math.Min(1, sum)
}

// shiftedTimeout applies a detected shift to a timeout recommendation whose
// window estimate is below what the recent data supports: the timeout is
// the recent estimate rounded up (whole milliseconds below 100 ms, three
// significant digits above), and the explanation says why.
func (e *Engine) shiftedTimeout(r *Recommendation, es *edgeSnap) bool {
	sh := es.shift
	if !sh.found {
		return false
	}
	v := ms(sh.value)
	t := roundUpMs(v)
	if v < 100 {
		t = math.Max(1, math.Ceil(v))
	}
	if t <= r.Recommended.TimeoutMs {
		return false
	}
	r.Recommended.TimeoutMs = t
	r.Evidence.MarkerMs = t
	r.Confidence = &Bounds{Lower: math.Min(t, roundUpMs(ms(sh.ci.Lower))), Upper: math.Max(t, roundUpMs(ms(sh.ci.Upper))), Level: 0.95, Unit: "ms"}
	r.Explanation = fmt.Sprintf("Latency rose: of the %d successful requests of the last %s, %d took longer than %.1f ms (the upper 95%% bound of the window's p%g), where at most %.1f were expected (chance below %g); the timeout is raised at once to the p%g of those recent requests, %.1f ms → %.0f ms, and is not lowered while the rise lasts. ",
		sh.n, sh.span, sh.above, ms(es.tq.Upper), 100*(1-e.cfg.TargetFalseTimeout), sh.want, shiftAlpha,
		100*(1-e.cfg.TargetFalseTimeout), v, t) + r.Explanation
	return true
}
