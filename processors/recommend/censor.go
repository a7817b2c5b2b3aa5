package recommend

import (
	"fmt"
	"math"
	"time"
)

// Censored latencies. Once a timeout is in force, a request slower than it
// is cut by the proxy: it ends as a UT timeout at the timeout, and its
// latency is never seen. Two things follow. The window's successes lack
// exactly the slowest ones, so their quantile is biased down by the share
// cut (left alone, a timeout set at p99.9 would be re-estimated at about
// p99.8 and drift down). And a rise in latency no longer shows as slow
// successes, only as more UT timeouts. The engine therefore treats every
// UT-cut call as a right-censored observation ("at least the timeout in
// force"), and tests the rate of such calls for a rise.

// censorStep is the factor a timeout is raised by when the cut rate shows
// a rise: censored data says that more requests than the target took
// longer than the timeout, not how much longer. The step is bounded and
// repeated at every recomputation (once the recent data was cut at the
// raised value) while the cut rate stays high; an overshoot cuts less than
// the target until the window, which now sees the latencies up to the
// raised timeout, brings it down through the ordinary hysteresis.
const censorStep = 2.0

// censorTolerance is how far (relative) the mean duration of a slot's UT
// calls may be from another's for both to count as cut at the same
// timeout (Envoy cuts at the timeout, give or take scheduling).
const censorTolerance = 0.02

// utMean is the timeout the UT calls of c ended at (0: none).
func utMean(c *counts) time.Duration {
	ut := c.cls[clsTimeout]
	if ut == 0 {
		return 0
	}
	return time.Duration(c.utDurUs/ut) * time.Microsecond
}

// addCensored records, for every slot of the window with UT calls, the
// calls cut at the slot's timeout as observations at that timeout, so that
// ranks count them above it. A UT call is either a success that took longer
// (what the quantile is about) or a request that would have failed anyway
// after hanging (which the proxy reports the same way); the two cannot be
// told apart, so at most the target share of the slot's successes is
// counted as cut successes: as many as a timeout at the quantile cuts.
// Beyond that, the cut rate test (censoredRise) decides. With fewer UT
// calls than that, all of them count, and the quantile is the exact
// censored-data estimate. It returns the number recorded.
func (e *Engine) addCensored(s *series, h *Histogram) uint64 {
	target := e.cfg.TargetFalseTimeout
	var added uint64
	var carry float64
	add := func(c *counts) {
		t := utMean(c)
		if t <= 0 {
			return
		}
		carry += math.Min(float64(c.cls[clsTimeout]), target*float64(c.success))
		if k := math.Floor(carry); k >= 1 {
			// Just above the timeout's own bucket: a cut request took longer
			// than the timeout, and successes just below it share that bucket.
			_, hi := bucketBounds(bucketOf(uint64(t / time.Microsecond)))
			h.RecordN(time.Duration(hi)*time.Microsecond, uint32(k))
			added += uint64(k)
			carry -= k
		}
	}
	add(&s.curC)
	for k := 1; k < len(s.ring); k++ {
		sl, end := s.past(k)
		if end {
			break
		}
		if sl != nil {
			add(&sl.c)
		}
	}
	return added
}

// censRise is the outcome of the cut-rate test of one edge.
type censRise struct {
	found   bool
	at      time.Duration // the timeout the recent requests were cut at
	span    time.Duration // recent data tested
	n, succ uint64        // requests and successes in it
	cut     uint64        // of the requests, ended as UT timeouts
	want    float64       // expected cut if the timeout still held
	base    float64       // baseline share of hanging failures
}

// censoredRise tests whether the latest minutes were cut significantly
// more often than the target allows. It looks at the suffixes of the window
// (the current slot, then one more slot at a time, up to RecentWindow)
// whose UT calls all ended at the same timeout, the one in force at the
// newest slot with UT calls. Their UT calls (cut successes and hanging
// failures alike) are compared with what the timeout would give if it
// held: the hanging failures at the older part of the window's rate (its
// share of UT and gateway failures, gateway being how a hanging request
// ends without a timeout in force; cuts there, if the older data was
// censored too, only make the test more cautious) plus the target share of
// the recent successes. A count of at least that plus half the target
// share (the edge of the ±50% band), whose Poisson tail is below
// shiftAlpha, is a rise.
func (e *Engine) censoredRise(s *series, win *counts, now time.Time) censRise {
	var out censRise
	if s.cur < 0 {
		return out
	}
	target := e.cfg.TargetFalseTimeout
	slots := max(1, int(e.cfg.RecentWindow/e.cfg.Slot))
	var recent, acc counts
	var ref time.Duration
	stopped := false
	type suffix struct {
		c counts
		k int
	}
	var cands []suffix
	for k := 0; k < slots && k < len(s.ring); k++ {
		c := &s.curC
		if k > 0 {
			sl, end := s.past(k)
			if end {
				break
			}
			if sl == nil {
				continue
			}
			c = &sl.c
		}
		recent.add(c)
		if stopped {
			continue
		}
		if t := utMean(c); t > 0 {
			if ref == 0 {
				ref = t
			} else if math.Abs(float64(t-ref)) > censorTolerance*float64(ref) {
				// Cut at another timeout: older data says nothing about
				// the one in force.
				stopped = true
				continue
			}
		}
		acc.add(c)
		if ref > 0 {
			cands = append(cands, suffix{c: acc, k: k})
		}
	}
	if ref == 0 {
		return out
	}
	older := *win
	older.sub(&recent)
	if older.total == 0 {
		return out
	}
	base := float64(older.cls[clsTimeout]+older.cls[clsGateway]) / float64(older.total)
	for _, sf := range cands {
		c := &sf.c
		if c.total == 0 {
			continue
		}
		// Only UT calls: a request that hung from before the timeout was
		// applied still ends later as a gateway failure, and counting it
		// with the UT calls of those started since would count hanging
		// requests twice in the minutes after a timeout is first applied.
		cut := c.cls[clsTimeout]
		want := base*float64(c.total) + target*float64(c.success)
		if float64(cut) < want+(minExcess-1)*target*float64(c.success) || poissonTail(cut, want) > shiftAlpha {
			continue
		}
		out = censRise{found: true, at: ref, n: c.total, succ: c.success, cut: cut, want: want, base: base,
			span: now.Sub(time.Unix(0, (s.cur-int64(sf.k))*int64(e.cfg.Slot))).Round(time.Second)}
	}
	return out
}

// censoredTimeout applies a rise seen in the cut rate: the timeout in force
// when the recent requests were cut (which must be the published one, else
// the cuts are those of an earlier, lower timeout and the raise is already
// made) is raised by censorStep.
func (e *Engine) censoredTimeout(r *Recommendation, es *edgeSnap, publishedMs float64) bool {
	cr := es.cens
	if !cr.found || publishedMs <= 0 || math.Abs(ms(cr.at)-publishedMs) > math.Max(1, censorTolerance*publishedMs) {
		return false
	}
	t := envoyMs(censorStep * publishedMs)
	if t <= r.Recommended.TimeoutMs {
		return false
	}
	r.Recommended.TimeoutMs = t
	r.Evidence.MarkerMs = t
	if r.Confidence != nil {
		r.Confidence.Upper = math.Max(r.Confidence.Upper, t)
	}
	r.Explanation = fmt.Sprintf("Latency rose above the timeout in force: of the %d requests of the last %s, %d were cut at %.0f ms (UT timeouts: slow successes or hanging failures), where %.1f were expected (%.2g%% hanging failures as before, plus %.2g%% of the %d successes; chance below %g); their latencies are unseen, so the timeout is raised %gx at once, %.0f ms → %.0f ms, again at each recomputation while the cut rate stays high. ",
		cr.n, cr.span, cr.cut, ms(cr.at), cr.want, 100*cr.base, 100*e.cfg.TargetFalseTimeout, cr.succ, shiftAlpha, censorStep, publishedMs, t) + r.Explanation
	return true
}
