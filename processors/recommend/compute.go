package recommend

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"
)

func fullName(name, ns string) string {
	if ns == "" {
		return name
	}
	return name + "." + ns
}

// edgeSnap is what a recomputation needs of one edge series, copied out
// under the ingest lock so the rest runs without it.
type edgeSnap struct {
	src, dst, endpoint string
	view               view
	window             time.Duration
	c                  counts
	tq                 QuantileCI
	tqOK               bool
	// Envoy keeps route timeouts in whole milliseconds: the whole-ms
	// values around the quantile and the share of the window's successes
	// above each.
	msLo, msHi    float64
	cutLo, cutHi  float64
	p50, p95, p99 time.Duration
	perTry        time.Duration // latency at the per-try percentile
	perTryPct     float64
	p99OK         bool // enough samples for the per-try percentile
	buckets       []Bucket
	expected      time.Duration
	curAboveFrac  float64 // share of successes above the current timeout
	curTimeout    time.Duration
	shift         shift    // recent rise in latency above the window's estimate
	cens          censRise // recent rise in the rate of calls cut by the timeout in force
}

type svcSnap struct {
	name, endpoint string
	view           view
	window         time.Duration
	c              counts
	p50            time.Duration
	peakPerSec     float64
	hourly         []float64 // peak req/s per hour of week (0 = Monday 00:00 UTC)
	knee           float64
	kneeLo, kneeHi float64
	kneeLatMs      float64 // mean latency just below the knee
	meanLatMs      float64
	minutes        uint32
	// Closed slots of the window served at capacity, and the variance per
	// second of their served counts (see servedAtCapacity).
	capSlots  int
	capVarSec float64
}

func (s *series) elapsed(now time.Time, slot time.Duration, slots int) time.Duration {
	if s.first < 0 {
		return 0
	}
	start := time.Unix(0, s.first*int64(slot))
	w := now.Sub(start)
	if max := time.Duration(slots) * slot; w > max {
		w = max
	}
	if w < slot {
		w = slot
	}
	return w
}

// snapshot advances every series to now and copies out what the
// recomputation needs.
func (e *Engine) snapshot(now time.Time, cur *CurrentConfig) ([]edgeSnap, map[string]*svcSnap) {
	slotNs := int64(e.cfg.Slot)
	nowSlot := now.UnixNano() / slotNs
	nowMin := now.Unix() / 60
	nowHour := nowMin / 60
	expire := nowSlot - int64(7*24*time.Hour/e.cfg.Slot)
	target := e.cfg.TargetFalseTimeout
	minTail := float64(e.cfg.MinTailSamples)
	var h Histogram

	e.mu.Lock()
	defer e.mu.Unlock()
	edges := make([]edgeSnap, 0, len(e.edges))
	for k, s := range e.edges {
		if s.lastSeen < expire {
			delete(e.edges, k)
			continue
		}
		s.advance(nowSlot)
		if s.minute.idx < nowMin {
			s.closeMinute(nowMin)
		}
		h = s.winH
		h.Add(&s.curH)
		c := s.winC
		c.add(&s.curC)
		if c.total == 0 {
			continue
		}
		if c.cls[clsTimeout] > 0 {
			// Calls cut by the timeout in force count above it (censor.go).
			e.addCensored(s, &h)
		}
		es := edgeSnap{
			src: fullName(k.srcName, k.srcNS), dst: fullName(k.dstName, k.dstNS), endpoint: k.endpoint, view: k.view,
			window: s.elapsed(now, e.cfg.Slot, e.slots), c: c, expected: s.expected,
		}
		n := float64(h.Count())
		if n > 0 {
			es.p50, es.p95, es.p99 = h.Quantile(0.5), h.Quantile(0.95), h.Quantile(0.99)
			// Per-try timeouts sit at a percentile ten times less strict than
			// the route timeout's (p99 for a 0.1% target, p90 for 1%).
			ptq := 1 - math.Min(0.1, 10*target)
			es.perTry = h.Quantile(ptq)
			es.perTryPct = 100 * ptq
			es.p99OK = n*(1-ptq) >= minTail
			if n*target >= minTail {
				es.tq, es.tqOK = h.QuantileWithCI(1-target, 1.96), true
				v := ms(es.tq.Value)
				es.msLo, es.msHi = math.Max(1, math.Floor(v)), math.Max(1, math.Ceil(v))
				es.cutLo = h.ShareAbove(time.Duration(es.msLo * float64(time.Millisecond)))
				es.cutHi = h.ShareAbove(time.Duration(es.msHi * float64(time.Millisecond)))
				es.shift = e.recentShift(s, es.tq.Upper, now)
				if c.cls[clsTimeout] > 0 {
					es.cens = e.censoredRise(s, &c, now)
				}
			}
			es.buckets = h.Buckets(40)
		}
		// The timeout in force: configured, reported by the proxy, or
		// inferred from where UT-flagged calls end.
		if r := cur.Routes[es.dst]; r != nil && r.HasTimeout {
			es.curTimeout = r.Timeout
		} else if s.expected > 0 {
			es.curTimeout = s.expected
		} else if ut := c.cls[clsTimeout]; ut >= 3 && c.utDurUs > 0 {
			es.curTimeout = time.Duration(c.utDurUs/ut) * time.Microsecond
		}
		if es.curTimeout > 0 && n > 0 {
			es.curAboveFrac = float64(h.CountAbove(es.curTimeout)) / n
		}
		edges = append(edges, es)
	}
	svcs := map[string]*svcSnap{}
	for k, s := range e.svcs {
		if s.lastSeen < expire {
			delete(e.svcs, k)
			continue
		}
		s.advance(nowSlot)
		if s.minute.idx < nowMin {
			s.closeMinute(nowMin)
		}
		name := fullName(k.name, k.ns)
		id := name + "\x00" + k.endpoint
		// The server view is authoritative for a service; the client view
		// stands in when the callee has no sidecar reporting.
		if old, ok := svcs[id]; ok && k.view == viewClient && old.view == viewServer {
			continue
		}
		h = s.winH
		h.Add(&s.curH)
		c := s.winC
		c.add(&s.curC)
		ss := &svcSnap{name: name, endpoint: k.endpoint, view: k.view, window: s.elapsed(now, e.cfg.Slot, e.slots), c: c, p50: h.Quantile(0.5)}
		if c.success > 0 {
			ss.meanLatMs = float64(c.latSumUs) / float64(c.success) / 1000
		}
		if s.hours != nil {
			ss.hourly = make([]float64, HistoryHours)
			for _, hr := range s.hours {
				if hr.idx < 0 || hr.idx <= nowHour-HistoryHours {
					continue
				}
				// Unix hour 0 is a Thursday: shift so index 0 is Monday 00:00.
				how := int((hr.idx + 72) % HistoryHours)
				p := float64(hr.peakMin) / 60
				ss.hourly[how] = math.Max(ss.hourly[how], p)
				ss.peakPerSec = math.Max(ss.peakPerSec, p)
			}
		}
		ss.peakPerSec = math.Max(ss.peakPerSec, float64(s.minute.reqs)/60)
		if s.profile != nil {
			ss.knee, ss.kneeLo, ss.kneeHi, ss.kneeLatMs, ss.minutes = e.knee(s.profile)
		}
		if ss.knee > 0 {
			ss.capSlots, ss.capVarSec = s.servedAtCapacity(e.cfg.Slot, ss.knee)
		}
		svcs[id] = ss
	}
	return edges, svcs
}

// knee finds the load (req/s) at which mean latency climbs above
// KneeLatencyFactor × its low-load baseline, or errors exceed
// KneeErrorRate: the lower edge of the first degraded load bin, with the
// mean latency of the last healthy bin. It returns 0 when no degradation
// was seen.
func (e *Engine) knee(p *loadProfile) (knee, lo, hi, latMs float64, minutes uint32) {
	for _, m := range p.minutes {
		minutes += m
	}
	if minutes < 10 {
		return 0, 0, 0, 0, minutes
	}
	need := max(uint32(3), minutes/10)
	var bm uint32
	var blat, berr float64
	b := 0
	for ; b < loadBins && bm < need; b++ {
		bm += p.minutes[b]
		blat += p.latUs[b]
		berr += p.errRate[b]
	}
	if bm == 0 {
		return 0, 0, 0, 0, minutes
	}
	blat /= float64(bm)
	berr /= float64(bm)
	baseLoad := loadBinLower(b - 1)
	errLimit := math.Max(e.cfg.KneeErrorRate, 2*berr+0.005)
	degraded := func(b int) bool {
		m := float64(p.minutes[b])
		return p.latUs[b]/m > e.cfg.KneeLatencyFactor*blat || p.errRate[b]/m > errLimit
	}
	// The knee is the first degraded bin from which every busier bin is
	// degraded too, at a load clearly above the baseline's: latency that
	// climbs with load. Slowness that comes and goes at the same load (an
	// incident, a slow dependency) is not a capacity limit.
	knee, kb := 0.0, -1
	latMs = blat / 1000
	lastHealthy := latMs
	for ; b < loadBins; b++ {
		if p.minutes[b] < 2 {
			continue
		}
		if !degraded(b) {
			kb = -1
			lastHealthy = p.latUs[b] / float64(p.minutes[b]) / 1000
			continue
		}
		if kb < 0 {
			kb, latMs = b, lastHealthy
		}
	}
	if kb < 0 || loadBinLower(kb) < 1.25*baseLoad {
		return 0, 0, 0, 0, minutes
	}
	knee = loadBinLower(kb) / 60
	return knee, loadBinLower(kb-1) / 60, loadBinLower(kb+1) / 60, latMs, minutes
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// roundUpMs rounds a timeout up to three significant digits (18.7 ms,
// 302 ms, 3.02 s): readable, and at most 1% above the estimate, which
// matters because near p99.9 a 1% longer timeout can cut several percent
// fewer requests.
func roundUpMs(v float64) float64 {
	if v <= 0 {
		return 0
	}
	step := math.Pow(10, math.Floor(math.Log10(v))-2)
	return math.Ceil(v/step-1e-9) * step
}

// envoyMs rounds a duration setting up to what Envoy can hold: whole
// milliseconds (Envoy truncates timeouts and backoffs to them), and three
// significant digits from 100 ms up.
func envoyMs(v float64) float64 {
	if v <= 0 {
		return 0
	}
	if v < 100 {
		return math.Ceil(v - 1e-9)
	}
	return roundUpMs(v)
}

func edgeID(kind Kind, src, dst, ep string) string {
	id := string(kind) + ":" + src + "->" + dst
	if ep != "" {
		id += ":" + ep
	}
	return id
}

func idMatches(id, svc string) bool {
	_, rest, _ := strings.Cut(id, ":")
	if a, b, ok := strings.Cut(rest, "->"); ok {
		b, _, _ = strings.Cut(b, ":")
		return svcMatch(svc, a) || svcMatch(svc, b)
	}
	return svcMatch(svc, rest)
}

// candidates holds one recomputation's raw results before smoothing.
type candidates struct {
	timeouts map[string]*Recommendation // by ID
	retries  map[string]*Recommendation
	limits   map[string]*Recommendation
	other    []Recommendation // chain and misconfig diagnostics
	self     map[string]float64
	edgeRate map[[2]string]float64
	svcs     map[string]*svcSnap
	// raised holds the IDs of timeouts raised for a recent rise in
	// latency: published at once, never lowered while it lasts.
	raised map[string]bool
	// censRaised holds the IDs of those raised for a rise in the rate of
	// calls cut by the timeout in force (censor.go).
	censRaised map[string]bool
}

// Recompute recomputes every recommendation as of now, smooths them against
// the published ones and publishes the result.
func (e *Engine) Recompute(now time.Time) {
	start := time.Now()
	cur := e.CurrentConfig()
	edges, svcs := e.snapshot(now, cur)
	cand := e.compute(now, cur, edges, svcs, e.publishedTimeouts())
	e.publish(now, cur, cand)
	e.metrics.recompute.Observe(time.Since(start).Seconds())
}

// published holds the timeouts (ms) published before this recomputation,
// by ID (for the hysteresis of withholding and the cut-rate test, see
// timeoutRec).
func (e *Engine) compute(now time.Time, cur *CurrentConfig, edges []edgeSnap, svcs map[string]*svcSnap, published map[string]float64) *candidates {
	cd := &candidates{
		timeouts: map[string]*Recommendation{}, retries: map[string]*Recommendation{}, limits: map[string]*Recommendation{},
		self: map[string]float64{}, edgeRate: map[[2]string]float64{}, svcs: svcs, raised: map[string]bool{}, censRaised: map[string]bool{},
	}
	// Prefer the client view of an edge; fall back to the server view.
	best := map[string]*edgeSnap{}
	for i := range edges {
		es := &edges[i]
		id := es.src + "->" + es.dst + ":" + es.endpoint
		if o, ok := best[id]; !ok || (es.view == viewClient && (es.tqOK || !o.tqOK)) || (!o.tqOK && es.tqOK) {
			best[id] = es
		}
	}
	ids := make([]string, 0, len(best))
	for id := range best {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	// Self time of a service: its median latency less its slowest
	// downstream median, at least 1 ms.
	childP50 := map[string]float64{}
	for _, id := range ids {
		es := best[id]
		if es.endpoint == "" {
			childP50[es.src] = math.Max(childP50[es.src], ms(es.p50))
			cd.edgeRate[[2]string{es.src, es.dst}] = float64(es.c.total) / es.window.Seconds()
		}
	}
	for id, s := range svcs {
		if s.endpoint == "" {
			_ = id
			cd.self[s.name] = math.Max(1, ms(s.p50)-childP50[s.name])
		}
	}
	for _, id := range ids {
		es := best[id]
		pubMs, isPub := published[edgeID(KindTimeout, es.src, es.dst, es.endpoint)]
		t, raised := e.timeoutRec(now, cur, es, isPub, pubMs)
		if t != nil {
			cd.timeouts[t.ID] = t
			if es.shift.found || raised {
				cd.raised[t.ID] = true
			}
			if raised {
				cd.censRaised[t.ID] = true
			}
		}
		if r := e.retryRec(now, cur, es, t); r != nil {
			cd.retries[r.ID] = r
		}
		if es.endpoint == "" {
			cd.other = append(cd.other, e.edgeMisconfig(now, cur, es, cd.timeouts[edgeID(KindTimeout, es.src, es.dst, "")])...)
		}
	}
	e.chainFix(cd)
	e.ampFix(cd)
	e.limitRecs(now, cur, cd)
	return cd
}

// ampFix stops retries on every edge where they would push the product of
// attempts along a path above the allowed amplification: deep chains
// should retry at one layer, not at each.
func (e *Engine) ampFix(cd *candidates) {
	recs := make([]Recommendation, 0, len(cd.timeouts)+len(cd.retries))
	for _, m := range []map[string]*Recommendation{cd.timeouts, cd.retries} {
		for _, r := range m {
			recs = append(recs, *r)
		}
	}
	g := RecommendedGraph(recs, nil, nil, nil)
	bySrc := map[string][]int{}
	for i := range g.Edges {
		bySrc[g.Edges[i].Source] = append(bySrc[g.Edges[i].Source], i)
	}
	for _, inc := range checkAmplification(g, bySrc, e.cfg.ChainRules.withDefaults()) {
		n := len(inc.Path)
		r := cd.retries[edgeID(KindRetry, inc.Path[n-2], inc.Path[n-1], "")]
		if r == nil {
			continue
		}
		r.Recommended.Retries, r.Recommended.PerTryTimeoutMs, r.Recommended.HedgeAfterMs = 0, 0, 0
		r.Explanation += fmt.Sprintf(" No retries here: with the retries recommended upstream, %s would see %.1f attempts per request along %s (allowed %.1f); retrying at one layer is enough.",
			inc.Path[n-1], inc.Have, strings.Join(inc.Path, " → "), inc.Need)
	}
}

// timeoutRec recommends the edge's timeout, or none; isPublished says
// whether one is published now, which widens the tolerance for keeping it.
func (e *Engine) timeoutRec(now time.Time, cur *CurrentConfig, es *edgeSnap, isPublished bool, publishedMs float64) (*Recommendation, bool) {
	if !es.tqOK {
		return nil, false
	}
	pct := 100 * (1 - e.cfg.TargetFalseTimeout)
	t := e.wholeMsTimeout(es)
	pred := e.cfg.TargetFalseTimeout
	snap := ""
	if ms(es.tq.Value) < 100 {
		pred = es.cutHi
		if t == es.msLo && es.msLo < es.msHi {
			pred = es.cutLo
		}
		// No recommendation where the proxy cannot express the percentile:
		// the whole-millisecond step may use at most half of the ±50%
		// band, the rest is for the percentile's own sampling error. A
		// published timeout is kept up to maxSnapErrorKeep (a Schmitt
		// trigger), so that an edge whose cut share wanders around the
		// limit is not withdrawn and restored again and again.
		limit := maxSnapError
		if isPublished {
			limit = maxSnapErrorKeep
		}
		if r := pred / e.cfg.TargetFalseTimeout; r < 1-limit || r > 1+limit {
			return nil, false
		}
		snap = " (Envoy holds timeouts in whole milliseconds; of the two around the percentile this one's cut share is nearer the target)"
	}
	side := "client-side (what the caller's sidecar waits)"
	if es.view == viewServer {
		side = "server-side (no client-side reports; network time is not included)"
	}
	r := &Recommendation{
		ID: edgeID(KindTimeout, es.src, es.dst, es.endpoint), Kind: KindTimeout, Service: es.dst,
		Edge:        &Edge{Source: es.src, Destination: es.dst, Endpoint: es.endpoint},
		Current:     e.currentTimeout(cur, es),
		Recommended: &Setting{TimeoutMs: t},
		Confidence:  &Bounds{Lower: roundUpMs(ms(es.tq.Lower)), Upper: roundUpMs(ms(es.tq.Upper)), Level: 0.95, Unit: "ms"},
		Evidence: &Evidence{WindowSeconds: es.window.Seconds(), Samples: es.c.success, Percentile: pct,
			MarkerMs: t, P50Ms: ms(es.p50), P99Ms: ms(es.p99), Histogram: es.buckets,
			ErrorRate: errRate(&es.c), RatePerSec: float64(es.c.total) / es.window.Seconds()},
		UpdatedAt: now,
	}
	r.Explanation = fmt.Sprintf("p%g of the %d successful %s latencies over the last %s is %.1f ms (95%% interval %.1f–%.1f ms); a %.0f ms timeout%s cuts about %.2g%% of requests that would have succeeded (target %.2g%%).",
		pct, es.c.success, side, es.window.Round(time.Second), ms(es.tq.Value), ms(es.tq.Lower), ms(es.tq.Upper), t, snap,
		100*pred, 100*e.cfg.TargetFalseTimeout)
	e.shiftedTimeout(r, es)
	raised := e.censoredTimeout(r, es, publishedMs)
	if c := r.Current; c != nil {
		if c.Disabled {
			r.Explanation += " Currently no route timeout is set (Istio's default), so a hung upstream holds the caller indefinitely."
		} else {
			r.Explanation += fmt.Sprintf(" Current timeout %.0f ms (%s) cuts %.3g%% of successful requests.", c.TimeoutMs, c.Source, 100*es.curAboveFrac)
		}
	}
	return r, raised
}

func errRate(c *counts) float64 {
	if c.total == 0 {
		return 0
	}
	return float64(c.errors()) / float64(c.total)
}

func (e *Engine) currentTimeout(cur *CurrentConfig, es *edgeSnap) *Setting {
	if r := cur.Routes[es.dst]; r != nil && r.HasTimeout {
		return &Setting{TimeoutMs: ms(r.Timeout), Source: "istio-yaml " + r.Resource}
	}
	if es.expected > 0 {
		return &Setting{TimeoutMs: ms(es.expected), Source: "x-envoy-expected-rq-timeout-ms"}
	}
	if es.curTimeout > 0 {
		return &Setting{TimeoutMs: ms(es.curTimeout), Source: "response-flags (UT calls end here)"}
	}
	return &Setting{Disabled: true, Source: "istio-default"}
}

// maxSnapError is how far from the target the predicted cut share of a
// whole-millisecond timeout may be (relative).
const maxSnapError = 0.25

// maxSnapErrorKeep is the same limit for keeping a published timeout:
// the 5-point gap is wider than the cut share's drift between two
// recomputations (the window slides by a sixtieth, moving the share by a
// few percent relative), and 20 points of the ±50% band stay for the
// percentile's sampling error.
const maxSnapErrorKeep = 0.3

// wholeMsTimeout turns the quantile into a timeout Envoy can hold: Envoy
// keeps route timeouts in whole milliseconds (it truncates), which below
// about 100 ms moves the cut share noticeably (a 3.4 ms p99.9 enforced as
// 3 ms can cut twice the target). Of the two neighbouring whole
// milliseconds it takes the one whose share of the window's successes
// above it is nearer the target (by ratio); from 100 ms up the
// three-significant-digit rounding already is whole milliseconds.
func (e *Engine) wholeMsTimeout(es *edgeSnap) float64 {
	v := ms(es.tq.Value)
	if v >= 100 {
		return roundUpMs(v)
	}
	tgt := e.cfg.TargetFalseTimeout
	dist := func(c float64) float64 { return math.Abs(math.Log(math.Max(c, 1e-9) / tgt)) }
	if es.msLo < es.msHi && dist(es.cutLo) < dist(es.cutHi) {
		return es.msLo
	}
	return es.msHi
}

// minRetrySamples is the traffic an edge needs in the window before a
// retry policy is recommended without a timeout to fit it in.
const minRetrySamples = 1000

func (e *Engine) retryRec(now time.Time, cur *CurrentConfig, es *edgeSnap, t *Recommendation) *Recommendation {
	retriable := es.c.cls[clsConnect] + es.c.cls[clsReset] + es.c.cls[clsUnavailable] + es.c.cls[clsGateway]
	switch {
	case t != nil && es.p99OK:
	case t == nil && retriable > 0 && es.c.total >= minRetrySamples:
		// Too few samples for a timeout, but retriable failures were seen:
		// a fast-failure policy needs no percentile.
	default:
		return nil
	}
	rate := float64(es.c.total) / es.window.Seconds()
	idemShare := 0.0
	if n := es.c.idem + es.c.nonIdem; n > 0 {
		idemShare = float64(es.c.idem) / float64(n)
	}
	idem := idemShare >= 0.99
	fit, maxR := 0.0, 1
	if t != nil {
		// A retry is useful only if, after the mean jittered wait (half the
		// base), a median attempt still ends within the route timeout.
		fit = 2 * (t.Recommended.TimeoutMs - ms(es.p50))
		if idem {
			maxR = e.cfg.MaxRetries
		}
	}
	backoff, worst, fits := e.retryBackoff(rate, maxR, fit)
	if !fits && maxR > 1 {
		// One retry per request doubles load at worst, where two triple
		// it: on a quiet edge that may stay within the floor.
		maxR = 1
		backoff, worst, fits = e.retryBackoff(rate, maxR, fit)
	}
	set := &Setting{RetryBudgetPercent: e.cfg.RetryBudgetPercent, MinRetryConcurrency: e.cfg.MinRetryConcurrency, BackoffMs: backoff}
	var why strings.Builder
	if t == nil {
		set.Retries = 1
		if idem {
			set.RetryOn = "connect-failure,refused-stream,unavailable,503"
		} else {
			set.RetryOn = "connect-failure,refused-stream"
		}
		fmt.Fprintf(&why, "%d of %d requests in the window failed in ways a retry can fix; with too few samples to set a timeout (and so a per-try timeout) safely, retry once on fast failures only (%s). ",
			retriable, es.c.total, set.RetryOn)
	} else if T := t.Recommended.TimeoutMs; !fits {
		// The backoff that keeps the budget's floor at its share of this
		// edge's traffic does not fit in the route timeout: a typical retry
		// would end after the caller has given up, so it could only add load.
		set.Retries, set.Disabled = 0, true
		fmt.Fprintf(&why, "No retries: at %.1f req/s, keeping Envoy's retry budget (at least %d concurrent retry) within %.0f%% of requests or %.0f retries/s needs a %.0f ms backoff; half of it (the mean jittered wait) plus the %.1f ms median does not fit in the %.1f ms route timeout. ",
			rate, e.cfg.MinRetryConcurrency, e.cfg.RetryBudgetPercent, e.cfg.MinRetriesPerSecond, backoff, ms(es.p50), T)
	} else if idem {
		set.RetryOn = "connect-failure,refused-stream,unavailable,cancelled,reset,503"
		perTry := envoyMs(ms(es.perTry))
		r := int(math.Floor((T - perTry) / (perTry + backoff)))
		r = min(max(r, 0), maxR)
		if r > 0 {
			set.Retries, set.PerTryTimeoutMs = r, perTry
			fmt.Fprintf(&why, "Requests are idempotent (%.0f%%): retry up to %d× with a %.1f ms per-try timeout (p%g), which with %.0f ms backoff fits in the %.1f ms route timeout. ",
				100*idemShare, r, perTry, es.perTryPct, backoff, T)
		} else {
			set.Retries = 1
			fmt.Fprintf(&why, "Requests are idempotent but p%g (%.1f ms) is too close to the %.1f ms timeout for a second full attempt: retry once, without a per-try timeout, on fast failures only. ",
				es.perTryPct, ms(es.perTry), T)
			set.RetryOn = "connect-failure,refused-stream,unavailable,503"
		}
	} else {
		set.Retries = 1
		set.RetryOn = "connect-failure,refused-stream"
		fmt.Fprintf(&why, "Only %.0f%% of requests are idempotent: retry once, only when the request never reached the service (connect failure, refused stream). ", 100*idemShare)
	}
	var fails []string
	f := map[string]int64{}
	for i, n := range es.c.cls {
		if n > 0 {
			f[classNames[i]] = int64(n)
			fails = append(fails, fmt.Sprintf("%s %d", classNames[i], n))
		}
	}
	if len(fails) > 0 {
		fmt.Fprintf(&why, "Failures in the window: %s. ", strings.Join(fails, ", "))
	}
	if er := errRate(&es.c); er > 0.5 {
		fmt.Fprintf(&why, "%.0f%% of requests fail: retries cannot help and the budget keeps them from amplifying the outage. ", 100*er)
	}
	if set.Retries > 0 {
		worst = min(worst, rate*float64(set.Retries))
		fmt.Fprintf(&why, "Envoy's retry budget (DestinationRule retryBudget: %.0f%% of active requests, at least %d concurrent retry) with a %.1f ms backoff: a retry holds its budget slot through its backoff (%.1f ms on average), so when the destination fails fast at this edge's %.1f req/s at most %.1f retries/s get through (%.2f attempts per request).",
			e.cfg.RetryBudgetPercent, e.cfg.MinRetryConcurrency, backoff, backoff/2, rate, worst, 1+worst/math.Max(rate, 1e-9))
	}
	if t != nil && idem && es.p50 > 0 && float64(es.p99)/float64(es.p50) >= 5 && rate < e.cfg.HedgeMaxRate {
		set.HedgeAfterMs = envoyMs(ms(es.p95))
		fmt.Fprintf(&why, " The tail is long (p99/p50 = %.1f) and load low (%.1f req/s): hedging a second request after %.0f ms (p95) would cut tail latency for about 5%% extra load.",
			float64(es.p99)/float64(es.p50), rate, set.HedgeAfterMs)
	}
	r := &Recommendation{
		ID: edgeID(KindRetry, es.src, es.dst, es.endpoint), Kind: KindRetry, Service: es.dst,
		Edge: &Edge{Source: es.src, Destination: es.dst, Endpoint: es.endpoint}, Recommended: set, Explanation: why.String(), UpdatedAt: now,
		Evidence: &Evidence{WindowSeconds: es.window.Seconds(), Samples: es.c.total, Percentile: es.perTryPct, MarkerMs: set.PerTryTimeoutMs,
			P50Ms: ms(es.p50), P99Ms: ms(es.p99), Failures: f, Idempotent: idemShare, ErrorRate: errRate(&es.c), RatePerSec: rate},
	}
	if rt := cur.Routes[es.dst]; rt != nil {
		r.Current = &Setting{Retries: rt.Retries, PerTryTimeoutMs: ms(rt.PerTryTimeout), RetryOn: rt.RetryOn, BackoffMs: ms(rt.Backoff), Source: "istio-yaml " + rt.Resource}
	} else {
		r.Current = &Setting{Retries: IstioDefaultRetries, RetryOn: IstioDefaultRetryOn, Source: "istio-default"}
	}
	if p := cur.Policies[es.dst]; p != nil && p.RetryBudgetPercent > 0 {
		r.Current.RetryBudgetPercent, r.Current.MinRetryConcurrency = p.RetryBudgetPercent, p.MinRetryConcurrency
	}
	return r
}

// retryBackoff picks the retry base interval for an edge carrying rate
// req/s with up to retries retries per request, and returns it with the
// most retries per second that can get through when the destination fails
// every request fast; fits is false if that needs a backoff longer than
// fitMs (0: no limit).
//
// Envoy's retry budget bounds concurrent retries: a retry may start while
// fewer than max(budget% × active requests, min_retry_concurrency) are in
// progress, and it holds its slot from the moment it is scheduled, through
// the jittered backoff (uniform in [0, base] for the first retry), until its
// attempt ends. When a downstream fails fast, few requests are active and
// only the floor binds; by Little's law the floor then admits at most
// min_retry_concurrency / (base/2) retries per second whatever the budget
// percentage says. Envoy's default 25 ms base lets one concurrent retry
// through 80 times a second: 2× amplification on any edge under 80 req/s.
// So the base grows until the floor's rate is within the budget share of
// the edge's traffic, or MinRetriesPerSecond, whichever is larger. The
// price is recovery latency: a request a retry rescues waits base/2 longer
// on average. An edge so quiet that retrying every request stays within
// MinRetriesPerSecond keeps Envoy's default base (shortened to fit).
func (e *Engine) retryBackoff(rate float64, retries int, fitMs float64) (backoffMs, worst float64, fits bool) {
	allowed := math.Max(e.cfg.RetryBudgetPercent/100*rate, e.cfg.MinRetriesPerSecond)
	def := ms(e.cfg.Backoff)
	if fitMs > 0 {
		def = math.Min(def, fitMs)
	}
	def = math.Max(def, 1)
	all := rate * float64(retries)
	if all <= allowed {
		return envoyMs(def), all, true
	}
	need := envoyMs(2 * float64(e.cfg.MinRetryConcurrency) / allowed * 1000)
	backoffMs = math.Max(need, def)
	return backoffMs, math.Min(all, 2*float64(e.cfg.MinRetryConcurrency)/(backoffMs/1000)), fitMs <= 0 || backoffMs <= fitMs
}

// budgetOf is the full wait a retry/timeout pair allows.
func budgetOf(t, r *Recommendation) float64 {
	ce := ChainEdge{TimeoutMs: t.Recommended.TimeoutMs}
	if r != nil {
		ce.Retries, ce.PerTryTimeoutMs, ce.BackoffMs = r.Recommended.Retries, r.Recommended.PerTryTimeoutMs, r.Recommended.BackoffMs
	}
	return ce.Budget()
}

// chainFix raises callers' timeouts (and per-try timeouts) so that each
// covers its callee's full budget plus the callee's own processing time,
// callees first, so the recommended settings are consistent on every path.
func (e *Engine) chainFix(cd *candidates) {
	children := map[string][]string{}
	parents := map[string][]*Recommendation{}
	for _, t := range cd.timeouts {
		if t.Edge.Endpoint == "" {
			children[t.Edge.Source] = append(children[t.Edge.Source], t.Edge.Destination)
		}
		parents[t.Edge.Destination] = append(parents[t.Edge.Destination], t)
	}
	for k := range children {
		sort.Strings(children[k])
	}
	state := map[string]uint8{}
	var visit func(s string)
	visit = func(s string) {
		if state[s] != 0 {
			return
		}
		state[s] = 1
		for _, c := range children[s] {
			visit(c)
		}
		state[s] = 2
		// s's callees are final: compute what a call into s may take.
		need, via := 0.0, ""
		for _, c := range children[s] {
			t := cd.timeouts[edgeID(KindTimeout, s, c, "")]
			if t == nil || state[c] == 1 {
				continue
			}
			if b := budgetOf(t, cd.retries[edgeID(KindRetry, s, c, "")]); b > need {
				need, via = b, c
			}
		}
		if via == "" {
			return
		}
		need = envoyMs(need + cd.self[s])
		for _, t := range parents[s] {
			r := cd.retries[edgeID(KindRetry, t.Edge.Source, s, t.Edge.Endpoint)]
			if t.Recommended.TimeoutMs < need {
				t.Explanation += fmt.Sprintf(" Raised from %.0f ms to %.0f ms so it covers %s's full budget on %s (%.0f ms including retries) plus its own %.0f ms of processing.",
					t.Recommended.TimeoutMs, need, s, via, need-cd.self[s], cd.self[s])
				t.Recommended.TimeoutMs = need
				t.Evidence.MarkerMs = need
				if t.Confidence != nil {
					t.Confidence.Upper = math.Max(t.Confidence.Upper, need)
				}
			}
			if r == nil {
				continue
			}
			rs := r.Recommended
			if rs.PerTryTimeoutMs > 0 && rs.PerTryTimeoutMs < need {
				rs.PerTryTimeoutMs = need
				n := int(math.Floor((t.Recommended.TimeoutMs - need) / (need + rs.BackoffMs)))
				if n < 1 {
					rs.PerTryTimeoutMs, rs.Retries = 0, 1
					rs.RetryOn = "connect-failure,refused-stream,unavailable,503"
					r.Explanation += fmt.Sprintf(" A per-try timeout must cover %s's downstream budget (%.0f ms), leaving no room for a second full attempt: retry once on fast failures only.", s, need)
				} else {
					rs.Retries = min(rs.Retries, n)
					r.Explanation += fmt.Sprintf(" Per-try timeout raised to %.0f ms to cover %s's downstream budget; %d retries fit.", need, s, rs.Retries)
				}
			}
		}
	}
	names := make([]string, 0, len(children))
	for s := range children {
		names = append(names, s)
	}
	sort.Strings(names)
	for _, s := range names {
		visit(s)
	}
}

// limitRecs computes per-service and per-endpoint limits. The rate limit
// is the historical peak with headroom, but never above the rate ceiling
// (once latency has been seen to climb, the highest load served is the
// best estimate of what the service can take; with a concurrency limit
// alongside, plus the margin its observed variability calls for), and
// never above what the services below can carry of this service's traffic. The concurrency
// limit holds in flight twice what Little's law gives at the knee (knee
// rate × latency there): enough to keep the bottleneck busy, too little
// for queues to grow past about one knee latency.
func (e *Engine) limitRecs(now time.Time, cur *CurrentConfig, cd *candidates) {
	g := &ChainGraph{Services: map[string]ChainService{}}
	own := map[string]float64{}
	for _, s := range cd.svcs {
		if s.endpoint != "" || isUnknown(s.name) {
			continue
		}
		own[s.name] = s.ownLimit(e.cfg.Headroom)
		// What a callee carries is its rate ceiling, the rate its own limit
		// may be set at: with its point-estimate capacity instead, a
		// caller's margin over the same variability would be cut back by
		// the very service whose variability it covers.
		ceil, _ := s.rateCeiling()
		g.Services[s.name] = ChainService{LimitPerSec: own[s.name], CapacityPerSec: ceil, InboundPerSec: float64(s.c.total) / s.window.Seconds()}
	}
	for k, r := range cd.edgeRate {
		g.Edges = append(g.Edges, ChainEdge{Source: k[0], Destination: k[1], RatePerSec: r})
	}
	sort.Slice(g.Edges, func(i, j int) bool {
		if g.Edges[i].Source != g.Edges[j].Source {
			return g.Edges[i].Source < g.Edges[j].Source
		}
		return g.Edges[i].Destination < g.Edges[j].Destination
	})
	car := NewCarrier(g)
	svcLimit := map[string]float64{}
	hasCallers := map[string]bool{}
	for k := range cd.edgeRate {
		if !isUnknown(k[0]) {
			hasCallers[k[1]] = true
		}
	}
	for _, s := range cd.svcs {
		if s.endpoint != "" || s.minutes < 10 || own[s.name] <= 0 {
			continue
		}
		lim, path := car.Carry(s.name)
		lim = math.Floor(lim*10) / 10
		svcLimit[s.name] = lim
		r := e.limitRec(now, cur, s, lim, path, "")
		cd.limits[edgeID(KindRateLimit, s.name, "", "")] = r
		if m := e.missingLimit(now, cur, s, r, hasCallers[s.name]); m != nil {
			cd.other = append(cd.other, *m)
		}
	}
	for _, s := range cd.svcs {
		if s.endpoint == "" || s.minutes < 10 || s.peakPerSec <= 0 {
			continue
		}
		o := s.ownLimit(e.cfg.Headroom)
		path := []string{s.name + " " + s.endpoint}
		if sl, ok := svcLimit[s.name]; ok && sl < o {
			o, path = sl, []string{s.name}
		}
		cd.limits[edgeID(KindRateLimit, s.name, "", s.endpoint)] = e.limitRec(now, cur, s, math.Floor(o*10)/10, path, s.endpoint)
	}
}

// missingLimit flags a service without a rate limit in force whose traffic
// has reached its knee, or an entry service (called only from outside the
// mesh) without one: a surge or a retry storm reaches it unchecked.
func (e *Engine) missingLimit(now time.Time, cur *CurrentConfig, s *svcSnap, r *Recommendation, hasCallers bool) *Recommendation {
	if !cur.Loaded || cur.Limits[s.name] != nil {
		return nil
	}
	sev, why := "", ""
	switch {
	case s.knee > 0 && s.peakPerSec >= 0.9*s.knee:
		sev, why = "high", fmt.Sprintf("%s has no rate limit and its traffic has already reached its knee (peak %.1f req/s, latency climbs from %.1f req/s).", s.name, s.peakPerSec, s.knee)
	case !hasCallers:
		sev, why = "medium", fmt.Sprintf("%s is an entry service (called from outside the mesh) with no rate limit: a surge reaches it and everything behind it unchecked.", s.name)
	default:
		return nil
	}
	return &Recommendation{ID: "misconfig:" + s.name + ":missing_limit", Kind: KindMisconfig, Service: s.name, Severity: sev,
		Current: &Setting{Disabled: true, Source: "none"}, Recommended: r.Recommended, UpdatedAt: now,
		Explanation: why + fmt.Sprintf(" Recommended: %.1f req/s, at most %d in flight.", r.Recommended.RatePerSecond, r.Recommended.MaxConcurrency),
		Evidence:    r.Evidence}
}

// capacity is the highest load the service was seen to serve once its
// latency had started to climb, or 0 if it never did.
func (s *svcSnap) capacity() float64 {
	if s.knee <= 0 {
		return 0
	}
	return math.Max(s.peakPerSec, s.knee)
}

// servedAtCapacity returns how many closed slots of the window were served
// at capacity and the variance per second of their served counts. A slot
// counts as served at capacity when it is past the knee and its count is
// within three Poisson standard deviations of the window's busiest slot:
// counting noise alone cannot tell the two apart. Slots arrival-limited
// just below capacity may slip in and widen the spread; that errs towards
// a rate limit that binds less, which the concurrency limit backs.
func (s *series) servedAtCapacity(slot time.Duration, knee float64) (n int, varPerSec float64) {
	sec := slot.Seconds()
	var top uint64
	for k := 1; k <= len(s.ring); k++ {
		sl, end := s.past(k)
		if end {
			break
		}
		if sl != nil {
			top = max(top, sl.c.total)
		}
	}
	lo := float64(top) - 3*math.Sqrt(float64(top))
	var got []float64
	var sum float64
	for k := 1; k <= len(s.ring); k++ {
		sl, end := s.past(k)
		if end {
			break
		}
		if sl == nil {
			continue
		}
		if c := float64(sl.c.total); c >= lo && c/sec >= knee {
			got = append(got, c)
			sum += c
		}
	}
	if len(got) < 2 {
		return len(got), 0
	}
	mean := sum / float64(len(got))
	var ss float64
	for _, c := range got {
		ss += (c - mean) * (c - mean)
	}
	// Counts over disjoint intervals of a saturated server add up like a
	// random walk's steps, so the variance per second is the slot's
	// variance over its length.
	return len(got), ss / float64(len(got)-1) / sec
}

// Rate ceiling above the measured capacity: see rateCeiling.
const (
	// minCapacitySlots is the fewest slots at capacity whose spread is
	// trusted as the served count's variability.
	minCapacitySlots = 5
	// bucketDryRisk is the accepted probability that a bottleneck serving
	// at its capacity, with the variability observed, ever runs a full
	// token bucket dry: the 5% the engine's 95% intervals accept.
	bucketDryRisk = 0.05
)

// rateCeiling is the highest rate limit the service's measurements support.
// Without a concurrency limit it is the capacity: above it the rate limit
// alone would let queues build. With one, the rate limit is not what keeps
// the bottleneck from overload, and set at the capacity it binds whenever
// the bottleneck serves faster than that point estimate for a while: its
// served count over t seconds varies by about σ√t (σ² the variance per
// second of the counts in slots served at capacity), and against a refill
// at exactly the capacity the bucket's level is a random walk without
// drift, which empties any bucket in time. At δ above the capacity the
// walk drifts away from empty, and the chance that it ever falls a whole
// bucket B short is exp(−2δB/σ²) (first passage of a Brownian motion with
// drift), so δ = σ²·ln(1/bucketDryRisk)/(2B).
func (s *svcSnap) rateCeiling() (ceil, margin float64) {
	c := s.capacity()
	if c <= 0 || s.capSlots < minCapacitySlots || s.capVarSec <= 0 || s.maxConcurrency(c) <= 0 {
		return c, 0
	}
	b := math.Max(1, math.Ceil(0.2*c))
	margin = s.capVarSec * math.Log(1/bucketDryRisk) / (2 * b)
	return c + margin, margin
}

func (s *svcSnap) ownLimit(headroom float64) float64 {
	o := s.peakPerSec * headroom
	if c, _ := s.rateCeiling(); c > 0 {
		o = math.Min(o, c)
	}
	return o
}

// maxConcurrency is twice the mean in-flight requests by Little's law
// (rate × latency, at the knee when known), plus four Poisson standard
// deviations so ordinary bursts pass, and at least 10.
func (s *svcSnap) maxConcurrency(limit float64) int {
	var l float64
	switch {
	case s.knee > 0 && s.kneeLatMs > 0:
		l = 2 * s.knee * s.kneeLatMs / 1000
	case s.meanLatMs > 0:
		l = 2 * limit * s.meanLatMs / 1000
	default:
		return 0
	}
	return max(10, int(math.Ceil(l+4*math.Sqrt(l))))
}

// unknownService is model.Unknown: the name of an unresolved peer.
const unknownService = "unknown"

// isUnknown reports whether a full service name is the unresolved peer.
func isUnknown(full string) bool {
	n, _, _ := strings.Cut(full, ".")
	return n == unknownService
}

func (e *Engine) limitRec(now time.Time, cur *CurrentConfig, s *svcSnap, lim float64, path []string, ep string) *Recommendation {
	id := edgeID(KindRateLimit, s.name, "", ep)
	id = strings.Replace(id, "->", "", 1)
	r := &Recommendation{ID: id, Kind: KindRateLimit, Service: s.name, UpdatedAt: now,
		Recommended: &Setting{RatePerSecond: lim, Burst: int(math.Max(1, math.Ceil(lim*0.2))), MaxConcurrency: max(s.maxConcurrency(lim), 1)},
		Evidence: &Evidence{WindowSeconds: float64(HistoryHours * 3600), Samples: uint64(s.minutes), PeakPerSec: s.peakPerSec,
			KneePerSec: s.knee, HourlyPeaks: s.hourly, RatePerSec: float64(s.c.total) / s.window.Seconds(), ErrorRate: errRate(&s.c)},
	}
	if ep != "" {
		r.Edge = &Edge{Destination: s.name, Endpoint: ep}
	}
	var why strings.Builder
	fmt.Fprintf(&why, "Over %d minutes of history (up to 7 days, peaks kept per hour of week) the busiest minute ran at %.1f req/s; with %.0f%% headroom that is %.1f req/s. ",
		s.minutes, s.peakPerSec, 100*(e.cfg.Headroom-1), s.peakPerSec*e.cfg.Headroom)
	if s.knee > 0 {
		fmt.Fprintf(&why, "Latency climbs above %.1f× its low-load level or errors appear from about %.1f req/s (the knee, mean latency %.1f ms just below it); the most it was seen to serve is %.1f req/s. ",
			e.cfg.KneeLatencyFactor, s.knee, s.kneeLatMs, s.capacity())
		r.Confidence = &Bounds{Lower: s.kneeLo, Upper: s.kneeHi, Level: 0.9, Unit: "req/s"}
		if ceil, m := s.rateCeiling(); m > 0 {
			sec := e.cfg.Slot.Seconds()
			fmt.Fprintf(&why, "It served at that level in %d slots of %s in the window, their served rates varying by %.2f req/s (standard deviation). A token bucket refilled at exactly the capacity runs dry whenever the service serves faster for a while; with the in-flight limit below protecting it, the rate goes %.2f req/s higher, to %.1f req/s, where a full %.0f-token bucket runs dry with at most %.0f%% probability at that variability. ",
				s.capSlots, e.cfg.Slot, math.Sqrt(s.capVarSec*sec)/sec, m, ceil, math.Max(1, math.Ceil(0.2*s.capacity())), 100*bucketDryRisk)
		}
	} else {
		why.WriteString("No knee was observed: latency stayed flat at every load seen, so the capacity is at least the peak. ")
	}
	if len(path) > 1 {
		fmt.Fprintf(&why, "The chain below limits it further: %s can carry only %.1f req/s of this service's traffic. ", strings.Join(path, " → "), lim)
	}
	basis := "twice the in-flight requests at the knee by Little's law, plus room for bursts"
	if s.knee <= 0 {
		basis = "twice the in-flight requests at this limit and the mean latency by Little's law, plus room for bursts"
	}
	fmt.Fprintf(&why, "Recommended limit %.1f req/s (burst %d) and at most %d requests in flight (%s), so a surge is shed at the door while the bottleneck stays busy.",
		lim, r.Recommended.Burst, r.Recommended.MaxConcurrency, basis)
	r.Explanation = why.String()
	if l := cur.Limits[s.name]; l != nil && ep == "" {
		r.Current = &Setting{RatePerSecond: l.RatePerSecond, Burst: l.Burst, Source: "istio-yaml " + l.Resource}
	} else if ep == "" {
		r.Current = &Setting{Disabled: true, Source: "none"}
	}
	return r
}

// edgeMisconfig flags settings in force that the edge's traffic shows to
// be wrong.
func (e *Engine) edgeMisconfig(now time.Time, cur *CurrentConfig, es *edgeSnap, t *Recommendation) []Recommendation {
	var out []Recommendation
	mk := func(sev, what, expl string, curSet, rec *Setting) {
		out = append(out, Recommendation{ID: edgeID(KindMisconfig, es.src, es.dst, "") + ":" + what, Kind: KindMisconfig,
			Service: es.dst, Edge: &Edge{Source: es.src, Destination: es.dst}, Severity: sev, Current: curSet, Recommended: rec,
			Explanation: expl, UpdatedAt: now,
			Evidence: &Evidence{WindowSeconds: es.window.Seconds(), Samples: es.c.total, ErrorRate: errRate(&es.c), P99Ms: ms(es.p99), Histogram: es.buckets}})
	}
	target := e.cfg.TargetFalseTimeout
	if es.curTimeout > 0 && es.c.success > 0 {
		ut := es.c.cls[clsTimeout]
		utRate := float64(ut) / float64(es.c.total)
		if es.curAboveFrac > 10*target || utRate > 10*target {
			var rec *Setting
			if t != nil {
				rec = &Setting{TimeoutMs: t.Recommended.TimeoutMs}
			}
			msg := fmt.Sprintf("The timeout in force (%.0f ms) is far below what traffic needs: %.2g%% of the requests that succeeded took longer (target %.2g%%).",
				ms(es.curTimeout), 100*es.curAboveFrac, 100*target)
			if ut > 0 {
				msg += fmt.Sprintf(" %d requests (%.2g%%) were cut with UT (upstream request timeout) in the window.", ut, 100*utRate)
			}
			mk("high", "timeout_too_low", msg, &Setting{TimeoutMs: ms(es.curTimeout)}, rec)
		} else if t != nil && ms(es.curTimeout) > 10*t.Recommended.TimeoutMs {
			mk("medium", "timeout_too_high", fmt.Sprintf("The timeout in force (%.0f ms) is more than 10× what traffic needs (%.0f ms): failing requests hold callers far longer than any success takes.",
				ms(es.curTimeout), t.Recommended.TimeoutMs), &Setting{TimeoutMs: ms(es.curTimeout)}, &Setting{TimeoutMs: t.Recommended.TimeoutMs})
		}
	} else if t != nil && es.c.failDurUs > 0 {
		fails := es.c.errors()
		if mean := float64(es.c.failDurUs) / float64(fails) / 1000; fails > 0 && mean > 2*t.Recommended.TimeoutMs {
			mk("medium", "no_timeout", fmt.Sprintf("No route timeout is in force and failing requests wait %.0f ms on average, %.1f× the recommended %.0f ms timeout.",
				mean, mean/t.Recommended.TimeoutMs, t.Recommended.TimeoutMs), &Setting{Disabled: true, Source: "istio-default"}, &Setting{TimeoutMs: t.Recommended.TimeoutMs})
		}
	}
	if es.c.urx > 0 {
		mk("high", "retries_exhausted", fmt.Sprintf("%d requests exhausted their retries (URX) in the window: retries are multiplying load on a failing %s without succeeding; cap them with a retry budget.",
			es.c.urx, es.dst), nil, &Setting{RetryBudgetPercent: e.cfg.RetryBudgetPercent, MinRetryConcurrency: e.cfg.MinRetryConcurrency})
	} else if rt := cur.Routes[es.dst]; rt != nil && rt.Retries >= 3 && errRate(&es.c) > 0.05 {
		if p := cur.Policies[es.dst]; p == nil || p.RetryBudgetPercent == 0 {
			mk("high", "retry_storm", fmt.Sprintf("%d retries without a retry budget while %.1f%% of requests fail: each failure becomes up to %d requests.",
				rt.Retries, 100*errRate(&es.c), rt.Retries+1), &Setting{Retries: rt.Retries}, &Setting{RetryBudgetPercent: e.cfg.RetryBudgetPercent})
		}
	}
	return out
}
