package eval

import (
	"context"
	"math"
	"math/rand/v2"
	"time"

	"github.com/meshlens/meshlens/model"
	"github.com/meshlens/meshlens/processors/recommend"
)

// RetryBudget decides whether one more retry may be sent.
type RetryBudget interface {
	Allow(now float64, activeRequests, activeRetries int) bool
	Request(now float64)
	Retry(now float64)
}

// NoBudget allows every retry (Istio's default: no budget).
type NoBudget struct{}

func (NoBudget) Allow(float64, int, int) bool { return true }
func (NoBudget) Request(float64)              {}
func (NoBudget) Retry(float64)                {}

// ConcurrencyBudget is Envoy's retry budget: active retries at most
// Percent of active requests, and at least MinConcurrency.
type ConcurrencyBudget struct {
	Percent        float64
	MinConcurrency int
}

func (b ConcurrencyBudget) Allow(_ float64, active, retries int) bool {
	return float64(retries) < math.Max(float64(b.MinConcurrency), b.Percent/100*float64(active))
}
func (ConcurrencyBudget) Request(float64) {}
func (ConcurrencyBudget) Retry(float64)   {}

// RateBudget allows retries up to Percent of the requests of the last
// second, and at least MinPerSecond per second.
type RateBudget struct {
	Percent, MinPerSecond float64
	reqs, retries         []float64
}

func trim(ts []float64, now float64) []float64 {
	i := 0
	for i < len(ts) && ts[i] <= now-1 {
		i++
	}
	return ts[i:]
}

func (b *RateBudget) Allow(now float64, _, _ int) bool {
	b.reqs, b.retries = trim(b.reqs, now), trim(b.retries, now)
	return float64(len(b.retries)+1) <= math.Max(b.MinPerSecond, b.Percent/100*float64(len(b.reqs)))
}
func (b *RateBudget) Request(now float64) { b.reqs = append(b.reqs, now) }
func (b *RateBudget) Retry(now float64)   { b.retries = append(b.retries, now) }

// RetryStormResult is the amplification under a fully failing downstream.
type RetryStormResult struct {
	Policy                          *recommend.Setting
	NoBudget, EnvoyBudget, RateBudg float64
	// IstioDefault is Istio's default policy (2 retries, no budget).
	IstioDefault float64
}

// RecommendRetry trains an engine on 30 minutes of healthy traffic with
// bursts of 503s and returns its retry recommendation for the edge.
func RecommendRetry(seed uint64) (*recommend.Recommendation, error) {
	end := time.Date(2026, 11, 2, 12, 0, 0, 0, time.UTC)
	e, err := recommend.New(recommend.Config{MaxEndpoints: -1, Now: func() time.Time { return end }}, nil, nil)
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(seed, 3))
	src, dst := model.Identity{Service: "web", Namespace: "sim"}, model.Identity{Service: "catalog", Namespace: "sim"}
	batch := make([]model.Call, 0, 4096)
	const n = 200 * 1800
	for i := 0; i < n; i++ {
		at := end.Add(-30*time.Minute + time.Duration(i)*30*time.Minute/n)
		code, d := 200, time.Duration(20*math.Exp(0.4*rng.NormFloat64())*float64(time.Millisecond))
		if at.Second() < 3 && at.Minute()%3 == 0 {
			code, d = 503, 2*time.Millisecond
		}
		batch = append(batch, model.Call{Source: src, Destination: dst, Method: "GET", Start: at, Duration: d,
			StatusCode: code, GRPCStatus: -1, DetectPoint: model.DetectClient})
		if len(batch) == cap(batch) {
			if err := e.ConsumeCalls(context.Background(), batch); err != nil {
				return nil, err
			}
			batch = batch[:0]
		}
	}
	if err := e.ConsumeCalls(context.Background(), batch); err != nil {
		return nil, err
	}
	e.Recompute(end)
	for _, r := range e.Recommendations(recommend.Filter{Kind: recommend.KindRetry}) {
		if r.Edge.Endpoint == "" {
			return &r, nil
		}
	}
	return nil, nil
}

// Amplification simulates rate req/s for dur seconds against a
// downstream that fails every request after failMs, retrying up to
// retries times with jittered exponential backoff from backoffMs, under
// budget. It returns attempts per request.
func Amplification(seed uint64, rate, dur, failMs float64, retries int, backoffMs float64, budget RetryBudget) float64 {
	rng := rand.New(rand.NewPCG(seed, 9))
	type ev struct {
		t     float64
		kind  uint8 // 0 arrival, 1 attempt fails, 2 retry due
		tries int
	}
	var h []ev
	push := func(e ev) {
		h = append(h, e)
		for i := len(h) - 1; i > 0; {
			p := (i - 1) / 2
			if h[p].t <= h[i].t {
				break
			}
			h[p], h[i] = h[i], h[p]
			i = p
		}
	}
	pop := func() ev {
		top := h[0]
		n := len(h) - 1
		h[0] = h[n]
		h = h[:n]
		for i := 0; ; {
			l := 2*i + 1
			if l >= n {
				break
			}
			m := l
			if r := l + 1; r < n && h[r].t < h[l].t {
				m = r
			}
			if h[i].t <= h[m].t {
				break
			}
			h[i], h[m] = h[m], h[i]
			i = m
		}
		return top
	}
	for t := rng.ExpFloat64() / rate; t < dur; t += rng.ExpFloat64() / rate {
		push(ev{t: t})
	}
	var requests, attempts, active, activeRetries int
	for len(h) > 0 {
		e := pop()
		switch e.kind {
		case 0:
			requests++
			attempts++
			active++
			budget.Request(e.t)
			push(ev{t: e.t + failMs/1000, kind: 1, tries: 1})
		case 1:
			if e.tries > 1 {
				activeRetries--
			}
			if e.tries <= retries && budget.Allow(e.t, active, activeRetries) {
				// Envoy's backoff: uniform in [0, base·2^(n-1)], capped at 10×base.
				wait := rng.Float64() * math.Min(backoffMs*math.Pow(2, float64(e.tries-1)), 10*backoffMs) / 1000
				activeRetries++
				budget.Retry(e.t)
				push(ev{t: e.t + wait, kind: 2, tries: e.tries})
				continue
			}
			active--
		case 2:
			attempts++
			push(ev{t: e.t + failMs/1000, kind: 1, tries: e.tries + 1})
		}
	}
	return float64(attempts) / float64(requests)
}

// RunRetryStorm takes the engine's retry recommendation and measures the
// amplification it allows when the downstream fails 100% of requests.
func RunRetryStorm(seed uint64) (*RetryStormResult, error) {
	rec, err := RecommendRetry(seed)
	if err != nil || rec == nil {
		return nil, err
	}
	s := rec.Recommended
	const rate, dur, failMs = 200.0, 60.0, 2.0
	res := &RetryStormResult{Policy: s}
	res.IstioDefault = Amplification(seed, rate, dur, failMs, recommend.IstioDefaultRetries, 25, NoBudget{})
	res.NoBudget = Amplification(seed, rate, dur, failMs, s.Retries, s.BackoffMs, NoBudget{})
	res.EnvoyBudget = Amplification(seed, rate, dur, failMs, s.Retries, s.BackoffMs,
		ConcurrencyBudget{Percent: s.RetryBudgetPercent, MinConcurrency: s.MinRetryConcurrency})
	res.RateBudg = Amplification(seed, rate, dur, failMs, s.Retries, s.BackoffMs,
		&RateBudget{Percent: s.RetryBudgetPercent, MinPerSecond: float64(s.MinRetryConcurrency)})
	return res, nil
}
