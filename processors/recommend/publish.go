package recommend

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"
)

// primary is the value hysteresis compares: the quantity an operator
// would notice changing.
func primary(r *Recommendation) float64 {
	s := r.Recommended
	if s == nil {
		return 0
	}
	switch r.Kind {
	case KindTimeout:
		return s.TimeoutMs
	case KindRetry:
		return s.PerTryTimeoutMs + 1e6*float64(s.Retries)
	case KindRateLimit:
		return s.RatePerSecond
	}
	return 0
}

func relChange(a, b float64) float64 {
	if a == b {
		return 0
	}
	d := math.Max(math.Abs(a), math.Abs(b))
	return math.Abs(a-b) / d
}

func describe(r *Recommendation) string {
	s := r.Recommended
	switch r.Kind {
	case KindTimeout:
		return fmt.Sprintf("%.0f ms", s.TimeoutMs)
	case KindRetry:
		return fmt.Sprintf("%d retries, per-try %.0f ms", s.Retries, s.PerTryTimeoutMs)
	case KindRateLimit:
		return fmt.Sprintf("%.1f req/s", s.RatePerSecond)
	}
	return ""
}

// publish applies hysteresis: a new value replaces the published one only
// when it differs by more than ChangeThreshold for Confirmations
// consecutive recomputations; each change is recorded with its reason.
func (e *Engine) publish(now time.Time, cur *CurrentConfig, cd *candidates) {
	e.pubMu.Lock()
	defer e.pubMu.Unlock()
	for _, p := range e.pub {
		p.seen = false
	}
	all := make([]*Recommendation, 0, len(cd.timeouts)+len(cd.retries)+len(cd.limits))
	for _, m := range []map[string]*Recommendation{cd.timeouts, cd.retries, cd.limits} {
		for _, r := range m {
			all = append(all, r)
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].ID < all[j].ID })
	for _, c := range all {
		p, ok := e.pub[c.ID]
		if !ok {
			e.pub[c.ID] = &published{rec: *c, seen: true}
			if cd.raised[c.ID] {
				e.pub[c.ID].raisedAt = now
			}
			e.recordChange(Change{At: now, ID: c.ID, Kind: c.Kind, From: c.Current, To: c.Recommended,
				Reason: "first recommendation: " + firstSentence(c.Explanation)})
			continue
		}
		p.seen = true
		old, nw := primary(&p.rec), primary(c)
		// Asymmetric hysteresis for timeouts: a rise in latency seen in the
		// recent data raises the timeout at once (every request cut
		// meanwhile is a false timeout), while lowering waits until no rise
		// has been seen for RecentWindow and then for Confirmations
		// recomputations, so a timeout does not swing with the noise of
		// the recent estimate.
		raised := cd.raised[c.ID]
		if raised {
			p.raisedAt = now
		}
		if cd.censRaised[c.ID] {
			p.censRaisedAt = now
		}
		// After a rise seen only in the cut rate, the window holds minutes
		// whose cut requests it cannot place (a cut success and a hanging
		// failure look alike, see addCensored), so its estimate is too low
		// until they have left it: no lowering within Window.
		lowerHeld := c.Kind == KindTimeout && nw < old &&
			(now.Sub(p.raisedAt) < e.cfg.RecentWindow || now.Sub(p.censRaisedAt) < e.cfg.Window)
		if relChange(old, nw) <= e.cfg.ChangeThreshold || lowerHeld {
			p.pending = 0
			// Keep the published value; refresh what it is based on.
			p.rec.Evidence, p.rec.UpdatedAt, p.rec.Current = c.Evidence, now, c.Current
			continue
		}
		p.pending++
		if raised && nw > old {
			e.recordChange(Change{At: now, ID: c.ID, Kind: c.Kind, From: p.rec.Recommended, To: c.Recommended,
				Reason: fmt.Sprintf("raised at once from %s to %s (%.0f%%): %s",
					describe(&p.rec), describe(c), 100*(nw-old)/math.Max(old, 1e-9), firstSentence(c.Explanation))})
			p.rec, p.pending = *c, 0
			continue
		}
		if p.pending < e.cfg.Confirmations {
			continue
		}
		e.recordChange(Change{At: now, ID: c.ID, Kind: c.Kind, From: p.rec.Recommended, To: c.Recommended,
			Reason: fmt.Sprintf("changed from %s to %s (%.0f%%, held for %d recomputations): %s",
				describe(&p.rec), describe(c), 100*(nw-old)/math.Max(old, 1e-9), p.pending, firstSentence(c.Explanation))})
		p.rec, p.pending = *c, 0
	}
	for id, p := range e.pub {
		if p.seen {
			continue
		}
		p.pending++
		if p.pending >= e.cfg.Confirmations {
			e.recordChange(Change{At: now, ID: id, Kind: p.rec.Kind, From: p.rec.Recommended,
				Reason: "withdrawn: too few samples in the window (or no traffic) to support the estimate"})
			delete(e.pub, id)
		}
	}
	recs := make([]Recommendation, 0, len(e.pub)+len(cd.other))
	for _, p := range e.pub {
		recs = append(recs, p.rec)
	}
	// Published values may lag their candidates; make sure what is
	// published is consistent along every path.
	e.recIncs = e.fixPublished(now, recs, cd)
	if len(e.recIncs) > 0 {
		e.log.Warn("recommendations still inconsistent after fixing", "count", len(e.recIncs), "first", e.recIncs[0].Detail)
	}
	recs = append(recs, cd.other...)
	recs = append(recs, e.chainItems(now, cur, recs, cd)...)
	// Sort an index and copy once: swapping the large structs themselves
	// was an eighth of a recomputation on a 10,000-edge mesh.
	idx := make([]int32, len(recs))
	for i := range idx {
		idx[i] = int32(i)
	}
	slices.SortFunc(idx, func(a, b int32) int {
		if c := strings.Compare(string(recs[a].Kind), string(recs[b].Kind)); c != 0 {
			return c
		}
		return strings.Compare(recs[a].ID, recs[b].ID)
	})
	sorted := make([]Recommendation, len(recs))
	for i, j := range idx {
		sorted[i] = recs[j]
	}
	e.recs = sorted
	e.lastRun = now
}

func firstSentence(s string) string {
	if i := strings.Index(s, ". "); i >= 0 {
		return s[:i+1]
	}
	return s
}

// RecommendedGraph builds the chain graph of recs: timeouts and retries per
// service→service edge, and rate limits per service.
func RecommendedGraph(recs []Recommendation, self map[string]float64, rates map[[2]string]float64, inbound map[string]float64) *ChainGraph {
	g := &ChainGraph{Services: map[string]ChainService{}}
	idx := map[[2]string]int{}
	edge := func(src, dst string) *ChainEdge {
		k := [2]string{src, dst}
		i, ok := idx[k]
		if !ok {
			i = len(g.Edges)
			idx[k] = i
			g.Edges = append(g.Edges, ChainEdge{Source: src, Destination: dst, RatePerSec: rates[k]})
		}
		return &g.Edges[i]
	}
	for i := range recs {
		r := &recs[i]
		switch {
		case r.Kind == KindTimeout && r.Edge != nil && r.Edge.Endpoint == "":
			edge(r.Edge.Source, r.Edge.Destination).TimeoutMs = r.Recommended.TimeoutMs
		case r.Kind == KindRetry && r.Edge != nil && r.Edge.Endpoint == "":
			ce := edge(r.Edge.Source, r.Edge.Destination)
			ce.Retries, ce.PerTryTimeoutMs, ce.BackoffMs = r.Recommended.Retries, r.Recommended.PerTryTimeoutMs, r.Recommended.BackoffMs
			ce.RetryBudgetPercent = r.Recommended.RetryBudgetPercent
		case r.Kind == KindRateLimit && r.Edge == nil:
			s := g.Services[r.Service]
			s.LimitPerSec = r.Recommended.RatePerSecond
			g.Services[r.Service] = s
		}
	}
	for k, rate := range rates {
		edge(k[0], k[1]).RatePerSec = rate
	}
	for s, v := range self {
		sv := g.Services[s]
		sv.SelfMs = v
		g.Services[s] = sv
	}
	for s, v := range inbound {
		sv := g.Services[s]
		sv.InboundPerSec = v
		g.Services[s] = sv
	}
	sort.Slice(g.Edges, func(i, j int) bool {
		if g.Edges[i].Source != g.Edges[j].Source {
			return g.Edges[i].Source < g.Edges[j].Source
		}
		return g.Edges[i].Destination < g.Edges[j].Destination
	})
	return g
}

func (cd *candidates) inbound() map[string]float64 {
	m := map[string]float64{}
	for _, s := range cd.svcs {
		if s.endpoint == "" && s.window > 0 {
			m[s.name] = float64(s.c.total) / s.window.Seconds()
		}
	}
	return m
}

// fixPublished raises published caller timeouts and lowers published
// limits until the published set has no inconsistency, and returns what
// remains (nothing, unless a cycle defeats the fixes).
func (e *Engine) fixPublished(now time.Time, recs []Recommendation, cd *candidates) []Inconsistency {
	byID := map[string]*Recommendation{}
	for i := range recs {
		byID[recs[i].ID] = &recs[i]
	}
	inb := cd.inbound()
	for iter := 0; iter < 8; iter++ {
		g := RecommendedGraph(recs, cd.self, cd.edgeRate, inb)
		incs := CheckChains(g, e.cfg.ChainRules)
		if len(incs) == 0 || iter == 7 {
			return incs
		}
		fixed := 0
		for _, inc := range incs {
			var r *Recommendation
			var to Setting
			switch inc.Kind {
			case "inverted_timeout":
				r = byID[edgeID(KindTimeout, inc.Path[0], inc.Path[1], "")]
				if r == nil {
					continue
				}
				to = *r.Recommended
				to.TimeoutMs = envoyMs(inc.Need)
				if rr := byID[edgeID(KindRetry, inc.Path[0], inc.Path[1], "")]; rr != nil && rr.Recommended.PerTryTimeoutMs > 0 && rr.Recommended.PerTryTimeoutMs < inc.Need {
					rs := *rr.Recommended
					rs.PerTryTimeoutMs, rs.Retries = 0, 1
					rr.Recommended = &rs
				}
			case "retry_amplification":
				r = byID[edgeID(KindRetry, inc.Path[len(inc.Path)-2], inc.Path[len(inc.Path)-1], "")]
				if r == nil {
					continue
				}
				to = *r.Recommended
				to.Retries, to.PerTryTimeoutMs, to.HedgeAfterMs = 0, 0, 0
			case "retries_exceed_timeout":
				r = byID[edgeID(KindRetry, inc.Path[0], inc.Path[1], "")]
				if r == nil {
					continue
				}
				to = *r.Recommended
				to.PerTryTimeoutMs, to.Retries = 0, 1
			case "limit_above_downstream":
				r = byID[edgeID(KindRateLimit, inc.Path[0], "", "")]
				if r == nil {
					r = byID[strings.Replace(edgeID(KindRateLimit, inc.Path[0], "", ""), "->", "", 1)]
				}
				if r == nil {
					continue
				}
				to = *r.Recommended
				to.RatePerSecond = math.Floor(inc.Need*10) / 10
			default:
				continue
			}
			e.recordChange(Change{At: now, ID: r.ID, Kind: r.Kind, From: r.Recommended, To: &to,
				Reason: "chain consistency: " + inc.Detail})
			r.Recommended = &to
			if p := e.pub[r.ID]; p != nil {
				p.rec.Recommended = &to
			}
			fixed++
		}
		if fixed == 0 {
			return incs
		}
	}
	return nil
}

// chainItems reports the inconsistencies of the configuration in force and
// the deadline each hop of the recommended configuration should propagate.
func (e *Engine) chainItems(now time.Time, cur *CurrentConfig, recs []Recommendation, cd *candidates) []Recommendation {
	var out []Recommendation
	inb := cd.inbound()
	// The configuration in force, over the observed edges.
	g := &ChainGraph{Services: map[string]ChainService{}}
	for k, rate := range cd.edgeRate {
		ce := ChainEdge{Source: k[0], Destination: k[1], RatePerSec: rate}
		if r := cur.Routes[k[1]]; r != nil {
			if r.HasTimeout {
				ce.TimeoutMs = ms(r.Timeout)
			}
			ce.Retries, ce.PerTryTimeoutMs, ce.BackoffMs = r.Retries, ms(r.PerTryTimeout), ms(r.Backoff)
		} else if cur.Loaded {
			ce.Retries = IstioDefaultRetries
		}
		if p := cur.Policies[k[1]]; p != nil {
			ce.RetryBudgetPercent = p.RetryBudgetPercent
		}
		g.Edges = append(g.Edges, ce)
	}
	sort.Slice(g.Edges, func(i, j int) bool {
		if g.Edges[i].Source != g.Edges[j].Source {
			return g.Edges[i].Source < g.Edges[j].Source
		}
		return g.Edges[i].Destination < g.Edges[j].Destination
	})
	for s, v := range cd.self {
		g.Services[s] = ChainService{SelfMs: v, InboundPerSec: inb[s]}
	}
	for _, s := range cd.svcs {
		if s.endpoint == "" && s.capacity() > 0 {
			sv := g.Services[s.name]
			sv.CapacityPerSec = s.capacity()
			g.Services[s.name] = sv
		}
	}
	for name, l := range cur.Limits {
		sv := g.Services[name]
		sv.LimitPerSec = l.RatePerSecond
		g.Services[name] = sv
	}
	for _, inc := range CheckChains(g, e.cfg.ChainRules) {
		r := Recommendation{ID: "chain:" + inc.Kind + ":" + strings.Join(inc.Path, "->"), Kind: KindChain,
			Service: inc.Path[0], Edge: &Edge{Source: inc.Path[0], Destination: inc.Path[1]}, Severity: "high",
			Inconsistencies: []Inconsistency{inc}, UpdatedAt: now,
			Explanation: "In the configuration in force: " + inc.Detail + "."}
		out = append(out, r)
	}
	// Deadlines: the remaining time each hop should pass on
	// (grpc-timeout, x-envoy-expected-rq-timeout-ms), walking from entry
	// services down. A hop propagates min(its own timeout, what its caller
	// has left after the hop's own processing).
	tmo := map[[2]string]float64{}
	children := map[string][]string{}
	hasIn := map[string]bool{}
	for i := range recs {
		r := &recs[i]
		if r.Kind == KindTimeout && r.Edge.Endpoint == "" {
			tmo[[2]string{r.Edge.Source, r.Edge.Destination}] = r.Recommended.TimeoutMs
			children[r.Edge.Source] = append(children[r.Edge.Source], r.Edge.Destination)
			hasIn[r.Edge.Destination] = true
		}
	}
	deadline := map[[2]string]float64{}
	paths := map[[2]string][]string{}
	var walk func(s string, left float64, path []string)
	walk = func(s string, left float64, path []string) {
		if len(path) > 16 {
			return
		}
		for _, c := range children[s] {
			if contains(path, c) {
				continue
			}
			k := [2]string{s, c}
			d := tmo[k]
			if !math.IsInf(left, 1) {
				d = math.Min(d, left-cd.self[s])
			}
			if old, ok := deadline[k]; ok && old <= d {
				continue
			}
			deadline[k] = d
			paths[k] = append(append([]string(nil), path...), c)
			walk(c, d, paths[k])
		}
	}
	roots := make([]string, 0)
	for s := range children {
		if !hasIn[s] || isUnknown(s) {
			roots = append(roots, s)
		}
	}
	sort.Strings(roots)
	for _, s := range roots {
		walk(s, math.Inf(1), []string{s})
	}
	keys := make([][2]string, 0, len(deadline))
	for k := range deadline {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i][0]+keys[i][1] < keys[j][0]+keys[j][1] })
	for _, k := range keys {
		d := deadline[k]
		out = append(out, Recommendation{ID: edgeID(KindChain, k[0], k[1], "") + ":deadline", Kind: KindChain,
			Service: k[1], Edge: &Edge{Source: k[0], Destination: k[1]}, UpdatedAt: now,
			Recommended: &Setting{DeadlineMs: math.Floor(d), TimeoutMs: tmo[k]},
			Explanation: fmt.Sprintf("On the path %s, %s should propagate a deadline of at most %.0f ms to %s (grpc-timeout / x-envoy-expected-rq-timeout-ms = remaining time), so that %s stops work its caller has already abandoned.",
				strings.Join(paths[k], " → "), k[0], math.Floor(d), k[1], k[1])})
	}
	return out
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
