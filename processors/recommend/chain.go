package recommend

import (
	"fmt"
	"math"
	"sort"
)

// ChainEdge is the configuration and traffic of one service→service edge
// as the chain checker sees it.
type ChainEdge struct {
	Source, Destination string
	// TimeoutMs is the route timeout; 0 means none.
	TimeoutMs float64
	// PerTryTimeoutMs is the per-try timeout; 0 means none.
	PerTryTimeoutMs float64
	Retries         int
	BackoffMs       float64
	// RetryBudgetPercent caps retries at this share of active requests; 0
	// means no budget.
	RetryBudgetPercent float64
	// RatePerSec is the observed request rate on the edge.
	RatePerSec float64
}

// ChainService is what the checker knows of one service.
type ChainService struct {
	// SelfMs is the service's own processing time besides its calls.
	SelfMs float64
	// LimitPerSec is the rate limit in force; 0 means none.
	LimitPerSec float64
	// CapacityPerSec is the load at the knee; 0 means unknown.
	CapacityPerSec float64
	// InboundPerSec is the observed inbound request rate.
	InboundPerSec float64
}

// ChainGraph is a call graph with its settings.
type ChainGraph struct {
	Edges    []ChainEdge
	Services map[string]ChainService
}

// ChainRules are the tolerances of the checker.
type ChainRules struct {
	// MaxRetryAmplification is the largest product of attempts allowed
	// along a path (default 4).
	MaxRetryAmplification float64
	// LimitSlack is how far above what the chain below can carry a limit
	// may be before it is flagged (default 1.1).
	LimitSlack float64
}

func (r ChainRules) withDefaults() ChainRules {
	if r.MaxRetryAmplification <= 0 {
		r.MaxRetryAmplification = 4
	}
	if r.LimitSlack <= 0 {
		r.LimitSlack = 1.1
	}
	return r
}

// Budget is the longest a caller can wait on the edge: the route timeout
// if set (Envoy cuts all tries there), else per-try timeout × attempts plus
// backoff, else unbounded (+Inf).
func (e *ChainEdge) Budget() float64 {
	tries := e.PerTryTimeoutMs*float64(e.Retries+1) + e.BackoffMs*float64(e.Retries)
	switch {
	case e.TimeoutMs > 0 && e.PerTryTimeoutMs > 0:
		return math.Min(e.TimeoutMs, tries)
	case e.TimeoutMs > 0:
		return e.TimeoutMs
	case e.PerTryTimeoutMs > 0:
		return tries
	}
	return math.Inf(1)
}

// attemptWait is how long one attempt of the caller waits.
func (e *ChainEdge) attemptWait() float64 {
	switch {
	case e.TimeoutMs > 0 && e.PerTryTimeoutMs > 0:
		return math.Min(e.TimeoutMs, e.PerTryTimeoutMs)
	case e.PerTryTimeoutMs > 0:
		return e.PerTryTimeoutMs
	}
	return e.TimeoutMs
}

// Amplification is the worst-case number of attempts per request.
func (e *ChainEdge) Amplification() float64 {
	a := float64(e.Retries + 1)
	if e.RetryBudgetPercent > 0 {
		a = math.Min(a, 1+e.RetryBudgetPercent/100)
	}
	return a
}

// CheckChains reports every inconsistent pair or path of g: a caller whose
// attempt timeout does not cover its callee's full budget plus its own
// processing time, retries that do not fit in the route timeout, retry
// products above the allowed amplification, and rate limits above what the
// services below can carry.
func CheckChains(g *ChainGraph, rules ChainRules) []Inconsistency {
	rules = rules.withDefaults()
	out := []Inconsistency{}
	out_ := func(i Inconsistency) { out = append(out, i) }
	bySrc := map[string][]int{}
	for i := range g.Edges {
		bySrc[g.Edges[i].Source] = append(bySrc[g.Edges[i].Source], i)
	}
	for i := range g.Edges {
		e := &g.Edges[i]
		if e.TimeoutMs > 0 && e.PerTryTimeoutMs > 0 && e.Retries > 0 {
			tries := e.PerTryTimeoutMs*float64(e.Retries+1) + e.BackoffMs*float64(e.Retries)
			if tries > e.TimeoutMs*1.0001 {
				out_(Inconsistency{Kind: "retries_exceed_timeout", Path: []string{e.Source, e.Destination},
					Detail: fmt.Sprintf("%d retries of %.0f ms (+%.0f ms backoff) need %.0f ms but the route timeout is %.0f ms: the last attempts can never complete",
						e.Retries, e.PerTryTimeoutMs, e.BackoffMs, tries, e.TimeoutMs),
					Have: e.TimeoutMs, Need: tries})
			}
		}
		wait := e.attemptWait()
		if wait <= 0 {
			continue
		}
		self := g.Services[e.Destination].SelfMs
		for _, j := range bySrc[e.Destination] {
			c := &g.Edges[j]
			b := c.Budget()
			if math.IsInf(b, 1) || c.Destination == e.Source {
				continue
			}
			if need := b + self; wait < need {
				out_(Inconsistency{Kind: "inverted_timeout", Path: []string{e.Source, e.Destination, c.Destination},
					Detail: fmt.Sprintf("%s waits %.0f ms per attempt on %s, but %s may wait %.0f ms on %s plus %.0f ms of its own work: the caller gives up while the callee is still working",
						e.Source, wait, e.Destination, e.Destination, b, c.Destination, self),
					Have: wait, Need: need})
			}
		}
	}
	out = append(out, checkAmplification(g, bySrc, rules)...)
	out = append(out, checkLimits(g, bySrc, rules)...)
	return out
}

// checkAmplification finds, for every service, the largest product of
// attempts on a path reaching it, and flags each edge where a path first
// crosses the allowed amplification.
func checkAmplification(g *ChainGraph, bySrc map[string][]int, rules ChainRules) []Inconsistency {
	amp := map[string]float64{}
	pred := map[string]int{}
	hasIn := map[string]bool{}
	for _, e := range g.Edges {
		hasIn[e.Destination] = true
	}
	for _, e := range g.Edges {
		if !hasIn[e.Source] {
			amp[e.Source] = 1
		}
	}
	if len(amp) == 0 { // every service is on a cycle: start everywhere
		for _, e := range g.Edges {
			amp[e.Source] = 1
		}
	}
	// Bellman-Ford style relaxation bounded by a path depth keeps cycles
	// finite. An edge that pushes a path over the limit is reported and
	// then counted as 1 below it, as if fixed, so each offending edge is
	// reported once and offenders further down are still found.
	flagged := map[int]bool{}
	for iter := 0; iter < 16; iter++ {
		changed := false
		for i, e := range g.Edges {
			a, ok := amp[e.Source]
			if !ok {
				continue
			}
			f := e.Amplification()
			if a*f > rules.MaxRetryAmplification {
				if !flagged[i] {
					flagged[i], changed = true, true
				}
				f = 1
			}
			if na := a * f; na > amp[e.Destination]+1e-9 {
				amp[e.Destination] = na
				pred[e.Destination] = i
				changed = true
			}
		}
		if !changed {
			break
		}
	}
	var out []Inconsistency
	idx := make([]int, 0, len(flagged))
	for i := range flagged {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	for _, i := range idx {
		e := g.Edges[i]
		na := amp[e.Source] * e.Amplification()
		path := []string{e.Destination, e.Source}
		seen := map[string]bool{e.Destination: true, e.Source: true}
		for cur := e.Source; ; {
			p, ok := pred[cur]
			if !ok || seen[g.Edges[p].Source] {
				break
			}
			cur = g.Edges[p].Source
			seen[cur] = true
			path = append(path, cur)
		}
		for l, r := 0, len(path)-1; l < r; l, r = l+1, r-1 {
			path[l], path[r] = path[r], path[l]
		}
		out = append(out, Inconsistency{Kind: "retry_amplification", Path: path,
			Detail: fmt.Sprintf("retries multiply to %.1f attempts per request along this path (allowed %.1f): an outage of %s becomes %.1f× its load",
				na, rules.MaxRetryAmplification, e.Destination, na),
			Have: na, Need: rules.MaxRetryAmplification})
	}
	return out
}

// carry computes what each service can accept without overloading the
// services below it: its own limit or capacity, and each child's carry
// scaled by this service's share of the child's traffic per request of
// its own.
type carrier struct {
	g     *ChainGraph
	bySrc map[string][]int
	memo  map[string]float64
	via   map[string][]string
	state map[string]uint8
}

func newCarrier(g *ChainGraph, bySrc map[string][]int) *carrier {
	return &carrier{g: g, bySrc: bySrc, memo: map[string]float64{}, via: map[string][]string{}, state: map[string]uint8{}}
}

// Carrier answers what each service of a graph can carry; see NewCarrier.
type Carrier struct{ c *carrier }

// NewCarrier returns a Carrier over g.
func NewCarrier(g *ChainGraph) *Carrier {
	bySrc := map[string][]int{}
	for i := range g.Edges {
		bySrc[g.Edges[i].Source] = append(bySrc[g.Edges[i].Source], i)
	}
	return &Carrier{c: newCarrier(g, bySrc)}
}

// Carry is the most s can accept without overloading itself or anything
// below it, with the path to the bottleneck.
func (c *Carrier) Carry(s string) (float64, []string) { return c.c.carry(s) }

// Below is the most s can accept given only the services below it.
func (c *Carrier) Below(s string) (float64, []string) { return c.c.below(s) }

func (c *carrier) inbound(s string) float64 {
	if v := c.g.Services[s].InboundPerSec; v > 0 {
		return v
	}
	var sum float64
	for _, e := range c.g.Edges {
		if e.Destination == s {
			sum += e.RatePerSec
		}
	}
	return sum
}

// own is the service's own ceiling: limit if set, else capacity, else +Inf.
func (c *carrier) own(s string) float64 {
	sv := c.g.Services[s]
	v := math.Inf(1)
	if sv.LimitPerSec > 0 {
		v = sv.LimitPerSec
	}
	if sv.CapacityPerSec > 0 && sv.CapacityPerSec < v {
		v = sv.CapacityPerSec
	}
	return v
}

// below is the most s can accept given its children only.
func (c *carrier) below(s string) (float64, []string) {
	best, path := math.Inf(1), []string(nil)
	in := c.inbound(s)
	if in <= 0 {
		return best, nil
	}
	for _, i := range c.bySrc[s] {
		e := &c.g.Edges[i]
		if e.RatePerSec <= 0 {
			continue
		}
		k, kp := c.carry(e.Destination)
		if math.IsInf(k, 1) {
			continue
		}
		// A request to s makes RatePerSec/in calls to the child; s's share
		// of the child's capacity is its share of the child's traffic.
		inC := c.inbound(e.Destination)
		if inC <= 0 {
			continue
		}
		allowed := k * (e.RatePerSec / inC) / (e.RatePerSec / in)
		if allowed < best {
			best, path = allowed, append([]string{s}, kp...)
		}
	}
	return best, path
}

func (c *carrier) carry(s string) (float64, []string) {
	if v, ok := c.memo[s]; ok {
		return v, c.via[s]
	}
	if c.state[s] == 1 { // cycle: do not follow the back edge
		return math.Inf(1), nil
	}
	c.state[s] = 1
	v, path := c.own(s), []string{s}
	if b, bp := c.below(s); b < v {
		v, path = b, bp
	}
	c.state[s] = 2
	c.memo[s], c.via[s] = v, path
	return v, path
}

func checkLimits(g *ChainGraph, bySrc map[string][]int, rules ChainRules) []Inconsistency {
	c := newCarrier(g, bySrc)
	names := make([]string, 0, len(g.Services))
	for s := range g.Services {
		names = append(names, s)
	}
	sort.Strings(names)
	var out []Inconsistency
	for _, s := range names {
		l := g.Services[s].LimitPerSec
		if l <= 0 {
			continue
		}
		b, path := c.below(s)
		if math.IsInf(b, 1) || l <= b*rules.LimitSlack {
			continue
		}
		out = append(out, Inconsistency{Kind: "limit_above_downstream", Path: path,
			Detail: fmt.Sprintf("%s admits %.0f req/s but the services below can carry only %.0f req/s of its traffic (bottleneck %s): the excess fails deeper in the chain after using resources",
				s, l, b, path[len(path)-1]),
			Have: l, Need: b})
	}
	return out
}
