package eval

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/meshlens/meshlens/model"
	"github.com/meshlens/meshlens/processors/recommend"
)

// genService is a service of a generated call graph with its true values.
type genService struct {
	name     string
	layer    int
	selfMs   float64
	capacity float64
	inbound  float64
	limit    float64
	needMs   float64 // what a call into it may take: budget below + self
}

type genEdge struct {
	src, dst            int
	calls               float64 // calls per request of src
	rate                float64
	timeout, perTry     float64
	retries             int
	budget, backoff     float64
	seededInverted      bool
	seededAmplify       bool
	seededLimitAtCaller bool
}

// Graph is a generated call graph with a configuration and the keys of
// the misconfigurations seeded into it.
type Graph struct {
	svcs   []genService
	edges  []genEdge
	Seeded map[string]bool
}

func key(kind string, parts ...string) string {
	k := kind
	for _, p := range parts {
		k += "|" + p
	}
	return k
}

// GenerateGraph builds a layered call graph of n services (5 layers, each
// service calling one to three deeper ones), sets a consistent
// configuration with margins from tight (5%) to generous (100%), then
// seeds misconfigurations: callers whose timeout is below their callee's
// budget, edges with 4–6 retries and no budget, and rate limits above what
// the services below can carry. Severities range from marginal to gross.
func GenerateGraph(seed uint64, n int) *Graph {
	rng := rand.New(rand.NewPCG(seed, seed*31+7))
	g := &Graph{Seeded: map[string]bool{}}
	const layers = 5
	for i := 0; i < n; i++ {
		l := min(i*layers/n, layers-1)
		g.svcs = append(g.svcs, genService{name: fmt.Sprintf("s%02d", i), layer: l, selfMs: 2 + 28*rng.Float64()})
	}
	byLayer := map[int][]int{}
	for i, s := range g.svcs {
		byLayer[s.layer] = append(byLayer[s.layer], i)
	}
	for i, s := range g.svcs {
		if s.layer == layers-1 {
			continue
		}
		k := 1 + rng.IntN(3)
		seen := map[int]bool{}
		for j := 0; j < k; j++ {
			l := s.layer + 1
			if rng.Float64() < 0.2 && l < layers-1 {
				l++
			}
			c := byLayer[l][rng.IntN(len(byLayer[l]))]
			if seen[c] {
				continue
			}
			seen[c] = true
			g.edges = append(g.edges, genEdge{src: i, dst: c, calls: 0.5 + 1.5*rng.Float64(), backoff: 25, budget: 20})
		}
	}
	// Rates, layer by layer.
	for i := range g.svcs {
		if g.svcs[i].layer == 0 {
			g.svcs[i].inbound = 50 + 450*rng.Float64()
		}
	}
	for l := 0; l < layers; l++ {
		for ei := range g.edges {
			e := &g.edges[ei]
			if g.svcs[e.src].layer == l {
				e.rate = g.svcs[e.src].inbound * e.calls
				g.svcs[e.dst].inbound += e.rate
			}
		}
	}
	for i := range g.svcs {
		g.svcs[i].capacity = g.svcs[i].inbound * (1.5 + 1.5*rng.Float64())
	}
	// Timeouts bottom-up, each covering the callee's need with a margin.
	margin := func() float64 {
		if rng.Float64() < 0.25 {
			return 1.05 + 0.1*rng.Float64()
		}
		return 1.15 + 0.85*rng.Float64()
	}
	for l := layers - 1; l >= 0; l-- {
		for i := range g.svcs {
			s := &g.svcs[i]
			if s.layer != l {
				continue
			}
			need := 0.0
			for _, e := range g.edges {
				if e.src == i {
					need = math.Max(need, g.budgetOf(&e))
				}
			}
			if need == 0 {
				need = 3 * s.selfMs // a leaf: its own tail
			}
			s.needMs = need + s.selfMs
			for ei := range g.edges {
				e := &g.edges[ei]
				if e.dst != i {
					continue
				}
				if rng.Float64() < 0.5 {
					e.retries, e.perTry = 1, s.needMs*margin()
					e.timeout = 2*e.perTry + e.backoff
				} else {
					e.timeout = s.needMs * margin()
				}
			}
		}
	}
	// Limits below what the chain can carry, bottom-up so that each layer
	// sees the limits set below it.
	for l := layers - 1; l >= 0; l-- {
		c := g.carrier(false)
		for i := range g.svcs {
			if g.svcs[i].layer == l && rng.Float64() < 0.6 {
				v, _ := c.Carry(g.svcs[i].name)
				g.svcs[i].limit = v * (0.7 + 0.25*rng.Float64())
			}
		}
	}
	// Seed misconfigurations on disjoint edges and services.
	for ei := range g.edges {
		e := &g.edges[ei]
		hasChildren := g.svcs[e.dst].needMs > g.svcs[e.dst].selfMs*3.5 || g.hasOut(e.dst)
		switch u := rng.Float64(); {
		case u < 0.15 && g.hasOut(e.dst) && hasChildren:
			e.seededInverted = true
			e.retries, e.perTry = 0, 0
			e.timeout = g.svcs[e.dst].needMs * (0.4 + 0.55*rng.Float64())
			g.Seeded[key("inverted_timeout", g.svcs[e.src].name, g.svcs[e.dst].name)] = true
		case u < 0.23:
			e.seededAmplify = true
			e.retries, e.perTry, e.budget = 4+rng.IntN(3), 0, 0
			g.Seeded[key("retry_amplification", g.svcs[e.src].name, g.svcs[e.dst].name)] = true
		}
	}
	// A seed can undo another (a seeded short timeout below B shrinks B's
	// budget): keep as truth only the inverted pairs still inverted with
	// the true values.
	for ei := range g.edges {
		e := &g.edges[ei]
		if !e.seededInverted {
			continue
		}
		need := 0.0
		for ci := range g.edges {
			if g.edges[ci].src == e.dst {
				need = math.Max(need, g.budgetOf(&g.edges[ci]))
			}
		}
		if e.timeout >= need+g.svcs[e.dst].selfMs {
			delete(g.Seeded, key("inverted_timeout", g.svcs[e.src].name, g.svcs[e.dst].name))
		}
	}
	c := g.carrier(false)
	for i := range g.svcs {
		if g.hasOut(i) && rng.Float64() < 0.12 {
			if b, _ := c.Below(g.svcs[i].name); !math.IsInf(b, 1) {
				g.svcs[i].limit = b * (1.3 + 1.7*rng.Float64())
				g.Seeded[key("limit_above_downstream", g.svcs[i].name)] = true
			}
		}
	}
	return g
}

func (g *Graph) hasOut(i int) bool {
	for _, e := range g.edges {
		if e.src == i {
			return true
		}
	}
	return false
}

func (g *Graph) budgetOf(e *genEdge) float64 {
	ce := recommend.ChainEdge{TimeoutMs: e.timeout, PerTryTimeoutMs: e.perTry, Retries: e.retries, BackoffMs: e.backoff}
	return ce.Budget()
}

// ChainGraph returns the graph as the checker sees it: configuration exact
// (it is read from YAML), measured quantities (self times, rates,
// capacities) with the noise of estimating them from traffic.
func (g *Graph) ChainGraph(rng *rand.Rand) *recommend.ChainGraph {
	noise := func(sd float64) float64 {
		if rng == nil {
			return 1
		}
		return math.Max(0.5, 1+sd*rng.NormFloat64())
	}
	cg := &recommend.ChainGraph{Services: map[string]recommend.ChainService{}}
	for _, s := range g.svcs {
		cg.Services[s.name] = recommend.ChainService{SelfMs: s.selfMs * noise(0.3), LimitPerSec: s.limit,
			CapacityPerSec: s.capacity * noise(0.2), InboundPerSec: s.inbound * noise(0.05)}
	}
	for _, e := range g.edges {
		cg.Edges = append(cg.Edges, recommend.ChainEdge{Source: g.svcs[e.src].name, Destination: g.svcs[e.dst].name,
			TimeoutMs: e.timeout, PerTryTimeoutMs: e.perTry, Retries: e.retries, BackoffMs: e.backoff,
			RetryBudgetPercent: e.budget, RatePerSec: e.rate * noise(0.05)})
	}
	return cg
}

type chainCarrier interface {
	Carry(s string) (float64, []string)
	Below(s string) (float64, []string)
}

func (g *Graph) carrier(noisy bool) chainCarrier {
	return recommend.NewCarrier(g.ChainGraph(nil))
}

// DetectionKey maps a reported inconsistency to the seeded key it would
// match.
func DetectionKey(inc recommend.Inconsistency) string {
	p := inc.Path
	switch inc.Kind {
	case "retry_amplification":
		return key(inc.Kind, p[len(p)-2], p[len(p)-1])
	case "limit_above_downstream":
		return key(inc.Kind, p[0])
	}
	return key(inc.Kind, p[0], p[1])
}

// ChainResult summarises the chain check evaluation.
type ChainResult struct {
	Graphs, Seeded, Detected, TruePositives int
	Precision, Recall                       float64
	ByKind                                  map[string][3]int // seeded, detected, true positives
	FalsePositives, Missed                  []string
	// RecommendedInconsistencies counts what the checker finds in the
	// engine's own recommendations for the same graphs' traffic.
	RecommendedInconsistencies int
	RecommendedEdges           int
}

// RunChainCheck generates graphs, runs the checker on each configuration
// with noisy measurements, and scores it against the seeded keys. With
// engine set it also feeds each graph's traffic to a recommendation engine
// and checks the engine's own recommendations.
func RunChainCheck(seed uint64, graphs, services int, engine bool) (*ChainResult, error) {
	res := &ChainResult{Graphs: graphs, ByKind: map[string][3]int{}}
	for gi := 0; gi < graphs; gi++ {
		g := GenerateGraph(seed+uint64(gi), services)
		rng := rand.New(rand.NewPCG(seed+uint64(gi), 99))
		detected := map[string]bool{}
		for _, inc := range recommend.CheckChains(g.ChainGraph(rng), recommend.ChainRules{}) {
			detected[DetectionKey(inc)] = true
		}
		for k := range g.Seeded {
			kind := kindOf(k)
			v := res.ByKind[kind]
			v[0]++
			res.ByKind[kind] = v
		}
		for k := range detected {
			kind := kindOf(k)
			v := res.ByKind[kind]
			v[1]++
			if g.Seeded[k] {
				v[2]++
				res.TruePositives++
			} else {
				res.FalsePositives = append(res.FalsePositives, fmt.Sprintf("graph %d: %s", gi, k))
			}
			res.ByKind[kind] = v
		}
		for k := range g.Seeded {
			if !detected[k] {
				res.Missed = append(res.Missed, fmt.Sprintf("graph %d: %s", gi, k))
			}
		}
		res.Seeded += len(g.Seeded)
		res.Detected += len(detected)
		if engine {
			n, edges, err := g.engineInconsistencies(seed + uint64(gi))
			if err != nil {
				return nil, err
			}
			res.RecommendedInconsistencies += n
			res.RecommendedEdges += edges
		}
	}
	if res.Detected > 0 {
		res.Precision = float64(res.TruePositives) / float64(res.Detected)
	}
	if res.Seeded > 0 {
		res.Recall = float64(res.TruePositives) / float64(res.Seeded)
	}
	sort.Strings(res.FalsePositives)
	sort.Strings(res.Missed)
	return res, nil
}

func kindOf(k string) string {
	for i := range k {
		if k[i] == '|' {
			return k[:i]
		}
	}
	return k
}

// engineInconsistencies feeds 30 minutes of the graph's traffic (client
// and server views, latencies log-normal around each service's median
// path time) to an engine and returns how many inconsistencies its
// recommendations have, and how many edge timeouts it recommended.
func (g *Graph) engineInconsistencies(seed uint64) (int, int, error) {
	end := time.Date(2026, 11, 2, 12, 0, 0, 0, time.UTC)
	e, err := recommend.New(recommend.Config{MaxEndpoints: -1, Now: func() time.Time { return end }}, nil, nil)
	if err != nil {
		return 0, 0, err
	}
	rng := rand.New(rand.NewPCG(seed, 5))
	// Median time of a call into each service: own time plus its slowest
	// callee, bottom-up.
	med := make([]float64, len(g.svcs))
	for l := 4; l >= 0; l-- {
		for i, s := range g.svcs {
			if s.layer != l {
				continue
			}
			m := 0.0
			for _, ed := range g.edges {
				if ed.src == i {
					m = math.Max(m, med[ed.dst])
				}
			}
			med[i] = s.selfMs + m
		}
	}
	const per = 52000
	span := 30 * time.Minute
	batch := make([]model.Call, 0, 4096)
	for _, ed := range g.edges {
		src := model.Identity{Service: g.svcs[ed.src].name, Namespace: "gen"}
		dst := model.Identity{Service: g.svcs[ed.dst].name, Namespace: "gen"}
		for i := 0; i < per; i++ {
			d := time.Duration(med[ed.dst] * math.Exp(0.35*rng.NormFloat64()) * float64(time.Millisecond))
			at := end.Add(-span + time.Duration(i)*span/per)
			for _, dp := range []model.DetectPoint{model.DetectClient, model.DetectServer} {
				batch = append(batch, model.Call{Source: src, Destination: dst, Method: "GET", Start: at, Duration: d,
					StatusCode: 200, GRPCStatus: -1, DetectPoint: dp})
			}
			if len(batch) >= 4000 {
				if err := e.ConsumeCalls(context.Background(), batch); err != nil {
					return 0, 0, err
				}
				batch = batch[:0]
			}
		}
	}
	if err := e.ConsumeCalls(context.Background(), batch); err != nil {
		return 0, 0, err
	}
	e.Recompute(end)
	n := len(e.Recommendations(recommend.Filter{Kind: recommend.KindTimeout}))
	return len(e.RecommendedInconsistencies()), n, nil
}
