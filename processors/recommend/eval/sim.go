package eval

import (
	"context"
	"math"
	"math/rand/v2"
	"time"

	"github.com/meshlens/meshlens/model"
	"github.com/meshlens/meshlens/processors/recommend"
)

// SimService is one service of the simulated chain: Workers requests are
// served at once, each holding its worker for a log-normal own time and
// then, while still holding it, for the call to the next service (the
// thread-per-request model of most services).
type SimService struct {
	Name     string
	Workers  int
	MedianMs float64
	Sigma    float64
}

// Limiter decides at the entry whether a request is admitted.
type Limiter interface {
	Admit(now float64, inflight int) bool
	Done(now, rtt float64, dropped bool, inflight int)
}

// SimConfig is one simulation run.
type SimConfig struct {
	Chain []SimService
	// Load returns the offered request rate at time t (seconds).
	Load func(t float64) float64
	// Duration of the run, and the start of the measured period.
	Duration, MeasureFrom float64
	// Deadline is the client's timeout at the entry.
	Deadline float64
	Limiter  Limiter
	Seed     uint64
	// Record, if set, receives the calls the chain's sidecars would
	// report, in batches.
	Record func([]model.Call) error
}

// SimResult is the outcome of a run.
type SimResult struct {
	Offered, Admitted, Succeeded int
	// Goodput is successes within the deadline per second over the
	// measured period.
	Goodput float64
}

type simEvent struct {
	t    float64
	kind uint8 // 0 arrival, 1 own work done, 2 response from child
	svc  int8
	req  int32
}

type eventHeap []simEvent

func (h *eventHeap) push(e simEvent) {
	*h = append(*h, e)
	a := *h
	i := len(a) - 1
	for i > 0 {
		p := (i - 1) / 2
		if a[p].t <= a[i].t {
			break
		}
		a[p], a[i] = a[i], a[p]
		i = p
	}
}

func (h *eventHeap) pop() simEvent {
	a := *h
	top := a[0]
	n := len(a) - 1
	a[0] = a[n]
	a = a[:n]
	i := 0
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && a[r].t < a[l].t {
			m = r
		}
		if a[i].t <= a[m].t {
			break
		}
		a[i], a[m] = a[m], a[i]
		i = m
	}
	*h = a
	return top
}

type simReq struct {
	arrive float64
	at     [4]float64 // arrival time at each service
}

// Simulate runs the chain.
func Simulate(cfg SimConfig) SimResult {
	rng := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed+17))
	n := len(cfg.Chain)
	busy := make([]int, n)
	queues := make([][]int32, n)
	var reqs []simReq
	var h eventHeap
	var res SimResult
	var work []float64 // standard normal draws of own work, per service and start
	arrivals := 0
	started := make([]int, n)
	inflight := 0
	epoch := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)
	const net = 0.0002
	var batch []model.Call
	ids := make([]model.Identity, n+1)
	ids[0] = model.Identity{Service: "loadgen", Namespace: "sim"}
	for i, s := range cfg.Chain {
		ids[i+1] = model.Identity{Service: s.Name, Namespace: "sim"}
	}
	record := func(s int, r *simReq, end float64, dp model.DetectPoint) {
		if cfg.Record == nil {
			return
		}
		start := r.at[s]
		batch = append(batch, model.Call{Source: ids[s], Destination: ids[s+1], Method: "GET", Endpoint: "GET:/",
			Start: epoch.Add(time.Duration(start * float64(time.Second))), Duration: time.Duration((end - start) * float64(time.Second)),
			StatusCode: 200, GRPCStatus: -1, DetectPoint: dp})
		if len(batch) >= 4096 {
			_ = cfg.Record(batch)
			batch = batch[:0]
		}
	}
	var start func(s int, id int32, t float64)
	start = func(s int, id int32, t float64) {
		busy[s]++
		sv := cfg.Chain[s]
		d := sv.MedianMs / 1000 * math.Exp(sv.Sigma*work[s*arrivals+started[s]])
		started[s]++
		h.push(simEvent{t: t + d, kind: 1, svc: int8(s), req: id})
	}
	arriveAt := func(s int, id int32, t float64) {
		reqs[id].at[s] = t
		if busy[s] < cfg.Chain[s].Workers {
			start(s, id, t)
			return
		}
		queues[s] = append(queues[s], id)
	}
	// finish: service s responds to request id at t.
	var finish func(s int, id int32, t float64)
	finish = func(s int, id int32, t float64) {
		busy[s]--
		if len(queues[s]) > 0 {
			next := queues[s][0]
			queues[s] = queues[s][1:]
			start(s, next, t)
		}
		r := &reqs[id]
		record(s, r, t, model.DetectServer)
		if s > 0 {
			record(s, r, t+net, model.DetectClient)
			h.push(simEvent{t: t + net, kind: 2, svc: int8(s - 1), req: id})
			return
		}
		inflight--
		rtt := t - r.arrive
		ok := rtt <= cfg.Deadline
		if cfg.Limiter != nil {
			cfg.Limiter.Done(t, rtt, !ok, inflight)
		}
		// Only answers within the measured period count: the run stops
		// admitting at Duration, and counting the drain after it would
		// credit a limiter for the requests it keeps queued (AIMD holds up
		// to 200 in flight, the recommended limit about 43: over 120 s
		// that alone is ~1.3 req/s).
		if ok && t >= cfg.MeasureFrom && t <= cfg.Duration {
			res.Succeeded++
		}
	}
	// Arrivals: a Poisson process with a time-varying rate (thinning).
	maxRate := 0.0
	for t := 0.0; t < cfg.Duration; t += 1 {
		maxRate = math.Max(maxRate, cfg.Load(t))
	}
	for t := rng.ExpFloat64() / maxRate; t < cfg.Duration; t += rng.ExpFloat64() / maxRate {
		if rng.Float64()*maxRate <= cfg.Load(t) {
			h.push(simEvent{t: t, kind: 0})
			arrivals++
		}
	}
	// Common random numbers: the j-th request to start at a service gets
	// the same own work under every limiter (a stream of its own). Own
	// work is independent of which request it is, so this changes no
	// distribution, but two limiters compared on one seed then see the
	// same sequence of service times at the bottleneck: while it is busy
	// they complete the same work, and what differs is only what a limiter
	// controls — idle workers, and work spent on requests that miss the
	// deadline. Keyed by arrival instead, each limiter's admitted half of
	// the arrivals draws its own luck (±0.6 req/s over 51,000 requests).
	wrng := rand.New(rand.NewPCG(cfg.Seed^0x6a09e667f3bcc909, cfg.Seed+29))
	work = make([]float64, arrivals*n)
	for i := range work {
		work[i] = wrng.NormFloat64()
	}
	for len(h) > 0 {
		ev := h.pop()
		if ev.t > cfg.Duration+5*cfg.Deadline {
			break
		}
		switch ev.kind {
		case 0:
			if ev.t >= cfg.MeasureFrom {
				res.Offered++
			}
			if cfg.Limiter != nil && !cfg.Limiter.Admit(ev.t, inflight) {
				continue
			}
			if ev.t >= cfg.MeasureFrom {
				res.Admitted++
			}
			inflight++
			reqs = append(reqs, simReq{arrive: ev.t})
			arriveAt(0, int32(len(reqs)-1), ev.t)
		case 1:
			s := int(ev.svc)
			if s+1 < n {
				arriveAt(s+1, ev.req, ev.t+net)
			} else {
				finish(s, ev.req, ev.t)
			}
		case 2:
			finish(int(ev.svc), ev.req, ev.t)
		}
	}
	if cfg.Record != nil && len(batch) > 0 {
		_ = cfg.Record(batch)
	}
	res.Goodput = float64(res.Succeeded) / (cfg.Duration - cfg.MeasureFrom)
	return res
}

// TokenBucket is Envoy's local rate limit: a bucket of Burst tokens
// refilled at Rate per second.
type TokenBucket struct {
	Rate, Burst, tokens, last float64
	started                   bool
}

// Admit takes a token if there is one.
func (b *TokenBucket) Admit(now float64, _ int) bool {
	if !b.started {
		b.tokens, b.last, b.started = b.Burst, now, true
	}
	b.tokens = math.Min(b.Burst, b.tokens+(now-b.last)*b.Rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true
	}
	return false
}

// Done does nothing: a rate limit does not adapt.
func (b *TokenBucket) Done(float64, float64, bool, int) {}

// RateAndConcurrency is the recommended protection: Envoy's local rate
// limit in front of a connection-pool cap on requests in flight.
type RateAndConcurrency struct {
	Bucket      TokenBucket
	MaxInflight int
}

// Admit admits when a request may be in flight and a token is available.
func (l *RateAndConcurrency) Admit(now float64, inflight int) bool {
	if l.MaxInflight > 0 && inflight >= l.MaxInflight {
		return false
	}
	return l.Bucket.Admit(now, inflight)
}

// Done does nothing: neither limit adapts between recomputations.
func (l *RateAndConcurrency) Done(float64, float64, bool, int) {}

// Gradient2 is a concurrency limit in the manner of Netflix
// concurrency-limits' Gradient2Limit: the limit follows the ratio of a
// long-term RTT average to the current RTT (tolerating RTTTolerance of
// growth), plus a small queue allowance, smoothed.
type Gradient2 struct {
	Limit, MinLimit, MaxLimit, Smoothing, RTTTolerance, QueueSize float64
	LongWindow                                                    float64
	longRTT                                                       float64
}

// NewGradient2 returns the limiter with the library's defaults (initial
// limit 20, minimum 20, maximum 200, smoothing 0.2, tolerance 1.5, queue 4,
// long window 600 samples).
func NewGradient2() *Gradient2 {
	return &Gradient2{Limit: 20, MinLimit: 20, MaxLimit: 200, Smoothing: 0.2, RTTTolerance: 1.5, QueueSize: 4, LongWindow: 600}
}

// Admit admits while in-flight requests are below the limit.
func (g *Gradient2) Admit(_ float64, inflight int) bool { return float64(inflight) < g.Limit }

// Done updates the limit from one RTT sample.
func (g *Gradient2) Done(_ float64, rtt float64, _ bool, inflight int) {
	if g.longRTT == 0 {
		g.longRTT = rtt
	}
	g.longRTT += (rtt - g.longRTT) * 2 / (g.LongWindow + 1)
	if g.longRTT/rtt > 2 {
		g.longRTT *= 0.95
	}
	if float64(inflight) < g.Limit/2 {
		return // application-limited: no evidence about the limit
	}
	grad := math.Max(0.5, math.Min(1, g.RTTTolerance*g.longRTT/rtt))
	nl := g.Limit*grad + g.QueueSize
	nl = g.Limit*(1-g.Smoothing) + nl*g.Smoothing
	g.Limit = math.Max(g.MinLimit, math.Min(g.MaxLimit, nl))
}

// AIMD is an additive-increase / multiplicative-decrease concurrency
// limit: +1 when a request completes in time while the limit is in use,
// ×Backoff when one is dropped or slower than Timeout.
type AIMD struct {
	Limit, MinLimit, MaxLimit, Backoff, Timeout float64
}

// NewAIMD returns the limiter with the library's defaults (initial 20,
// minimum 20, maximum 200, backoff 0.9) and the client deadline as the
// timeout.
func NewAIMD(timeout float64) *AIMD {
	return &AIMD{Limit: 20, MinLimit: 20, MaxLimit: 200, Backoff: 0.9, Timeout: timeout}
}

// Admit admits while in-flight requests are below the limit.
func (a *AIMD) Admit(_ float64, inflight int) bool { return float64(inflight) < a.Limit }

// Done updates the limit from one sample.
func (a *AIMD) Done(_ float64, rtt float64, dropped bool, inflight int) {
	switch {
	case dropped || rtt > a.Timeout:
		a.Limit = math.Max(a.MinLimit, a.Limit*a.Backoff)
	case float64(inflight)*2 >= a.Limit:
		a.Limit = math.Min(a.MaxLimit, a.Limit+1)
	}
}

// OverloadConfig describes the overload evaluation.
type OverloadConfig struct {
	Chain    []SimService
	Deadline float64
	Seed     uint64
}

// DefaultChain is an entry service calling a middle tier calling a
// bottleneck (8 workers × ~19 ms ≈ 425 req/s).
func DefaultChain() []SimService {
	return []SimService{
		{Name: "frontend", Workers: 64, MedianMs: 2, Sigma: 0.3},
		{Name: "orders", Workers: 24, MedianMs: 4, Sigma: 0.3},
		{Name: "inventory", Workers: 8, MedianMs: 18, Sigma: 0.3},
	}
}

// Capacity is the saturation throughput of the chain's bottleneck.
func Capacity(chain []SimService) float64 {
	c := math.Inf(1)
	hold := 0.0
	for i := len(chain) - 1; i >= 0; i-- {
		s := chain[i]
		mean := s.MedianMs / 1000 * math.Exp(s.Sigma*s.Sigma/2)
		hold += mean
		c = math.Min(c, float64(s.Workers)/hold)
	}
	return c
}

// OverloadResult holds the goodputs of one load step.
type OverloadResult struct {
	Step                                         float64 // offered load / capacity
	Peak                                         float64
	Recommended, Static, Gradient, AIMD, NoLimit float64
	RecommendedLimit, StaticLimit, KneePerSecond float64
	RecommendedConcurrency                       int
}

// Calibrate runs a staircase of loads from 30% to 120% of capacity
// through the chain, feeds the calls to an engine and returns the rate
// limit it recommends for the entry service, with its knee.
func Calibrate(cfg OverloadConfig) (rec *recommend.Recommendation, err error) {
	capacity := Capacity(cfg.Chain)
	steps := []float64{0.3, 0.45, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 1.0, 1.1, 1.2}
	const per = 180.0
	var end time.Time
	eng, err := recommend.New(recommend.Config{MaxEndpoints: -1, Now: func() time.Time { return end }}, nil, nil)
	if err != nil {
		return nil, err
	}
	dur := per * float64(len(steps))
	end = time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC).Add(time.Duration(dur * float64(time.Second)))
	Simulate(SimConfig{Chain: cfg.Chain, Duration: dur, Deadline: cfg.Deadline, Seed: cfg.Seed,
		Load:   func(t float64) float64 { return capacity * steps[min(int(t/per), len(steps)-1)] },
		Record: func(c []model.Call) error { return eng.ConsumeCalls(context.Background(), c) }})
	eng.Recompute(end)
	for _, r := range eng.Recommendations(recommend.Filter{Kind: recommend.KindRateLimit}) {
		if r.Service == cfg.Chain[0].Name+".sim" && r.Edge == nil {
			return &r, nil
		}
	}
	return nil, nil
}

// RunOverload compares limiters under a step from 70% of capacity to
// step × capacity: the recommendation rec (rate and concurrency), a static
// rate limit at 75% of the knee rec reports, Gradient2, AIMD and none.
func RunOverload(cfg OverloadConfig, rec *recommend.Recommendation, step float64) OverloadResult {
	limit, knee := rec.Recommended.RatePerSecond, rec.Evidence.KneePerSec
	capacity := Capacity(cfg.Chain)
	const warm, dur = 30.0, 150.0
	load := func(t float64) float64 {
		if t < warm {
			return 0.7 * capacity
		}
		return step * capacity
	}
	run := func(l Limiter, ld func(float64) float64) float64 {
		return Simulate(SimConfig{Chain: cfg.Chain, Duration: dur, MeasureFrom: warm, Deadline: cfg.Deadline,
			Load: ld, Limiter: l, Seed: cfg.Seed + 3}).Goodput
	}
	res := OverloadResult{Step: step, RecommendedLimit: limit, StaticLimit: 0.75 * knee, KneePerSecond: knee,
		RecommendedConcurrency: rec.Recommended.MaxConcurrency}
	// Peak: the best goodput without any limiter at loads up to capacity.
	for _, f := range []float64{0.8, 0.9, 0.95, 1.0} {
		res.Peak = math.Max(res.Peak, run(nil, func(float64) float64 { return f * capacity }))
	}
	res.Recommended = run(&RateAndConcurrency{Bucket: TokenBucket{Rate: limit, Burst: float64(max(1, rec.Recommended.Burst))},
		MaxInflight: rec.Recommended.MaxConcurrency}, load)
	res.Static = run(&TokenBucket{Rate: res.StaticLimit, Burst: math.Max(1, math.Ceil(0.2*res.StaticLimit))}, load)
	res.Gradient = run(NewGradient2(), load)
	res.AIMD = run(NewAIMD(cfg.Deadline), load)
	res.NoLimit = run(nil, load)
	return res
}
