// Package eval measures the recommendation engine against synthetic but
// realistic traffic: a train/evaluate replay of per-edge latencies, a chain
// checker run on generated call graphs with seeded misconfigurations, and a
// discrete-event overload simulation of a service chain. The data is
// generated from fixed seeds; it is not recorded production traffic.
package eval

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/meshlens/meshlens/model"
	"github.com/meshlens/meshlens/processors/recommend"
)

// LogNormal is one component of a latency mixture.
type LogNormal struct {
	Weight, MedianMs, Sigma float64
}

// EdgeModel generates the traffic of one edge.
type EdgeModel struct {
	Name       string
	Components []LogNormal
	// Rate is the mean request rate; DiurnalAmp and Phase shape it over the
	// day.
	Rate, DiurnalAmp, Phase float64
	// FailRate is the share of requests that fail; HangShare of those hang
	// for HangMs (an upstream's own long timeout) instead of failing fast.
	FailRate, HangShare, HangMs float64
	// Drift multiplies latencies in the evaluation window (1 = none).
	Drift float64
	// IncidentShare of evaluation-window requests are slowed by
	// IncidentFactor (0 = no incident).
	IncidentShare, IncidentFactor float64
}

// GenerateEdges draws n edge models from seed: latency mixtures of one to
// three log-normal modes (fast path, cache miss, slow dependency), request
// rates log-uniform between 5 and 200 req/s with a diurnal curve, a small
// random drift between windows and, on a few edges, an incident.
func GenerateEdges(seed uint64, n int) []EdgeModel {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	out := make([]EdgeModel, n)
	for i := range out {
		m := EdgeModel{Name: fmt.Sprintf("svc-%03d", i)}
		base := math.Exp(math.Log(1) + rng.Float64()*math.Log(300)) // 1..300 ms
		k := 1 + rng.IntN(3)
		w := 1.0
		for j := 0; j < k; j++ {
			c := LogNormal{Weight: w, MedianMs: base * math.Pow(3+4*rng.Float64(), float64(j)), Sigma: 0.15 + 0.5*rng.Float64()}
			if j < k-1 {
				c.Weight = w * (0.75 + 0.2*rng.Float64())
				w -= c.Weight
			}
			m.Components = append(m.Components, c)
		}
		m.Rate = math.Exp(math.Log(5) + rng.Float64()*math.Log(40))
		m.DiurnalAmp = 0.4 * rng.Float64()
		m.Phase = 2 * math.Pi * rng.Float64()
		m.FailRate = math.Exp(math.Log(0.001) + rng.Float64()*math.Log(50)) // 0.1%..5%
		m.HangShare = 0.5 * rng.Float64()
		m.HangMs = []float64{10000, 15000, 30000, 60000}[rng.IntN(4)]
		m.Drift = 1 + 0.01*rng.NormFloat64()
		if rng.Float64() < 0.03 {
			m.IncidentShare, m.IncidentFactor = 0.01+0.04*rng.Float64(), 3+5*rng.Float64()
		}
		out[i] = m
	}
	return out
}

func (m *EdgeModel) latency(rng *rand.Rand, eval bool) time.Duration {
	u := rng.Float64()
	c := m.Components[len(m.Components)-1]
	for _, x := range m.Components {
		if u < x.Weight {
			c = x
			break
		}
		u -= x.Weight
	}
	v := c.MedianMs * math.Exp(c.Sigma*rng.NormFloat64())
	if eval {
		v *= m.Drift
		if m.IncidentShare > 0 && rng.Float64() < m.IncidentShare {
			v *= m.IncidentFactor
		}
	}
	return time.Duration(v * float64(time.Millisecond))
}

func (m *EdgeModel) rateAt(t time.Time) float64 {
	day := float64(t.Unix()%86400) / 86400
	return m.Rate * (1 + m.DiurnalAmp*math.Sin(2*math.Pi*day+m.Phase))
}

// poisson draws a Poisson count: Knuth's method for small means, a rounded
// normal for large ones.
func poisson(rng *rand.Rand, mean float64) int {
	if mean > 30 {
		return max(0, int(math.Round(mean+math.Sqrt(mean)*rng.NormFloat64())))
	}
	l, k, p := math.Exp(-mean), 0, 1.0
	for {
		p *= rng.Float64()
		if p <= l {
			return k
		}
		k++
	}
}

// request is one generated request.
type request struct {
	at   time.Time
	dur  time.Duration
	fail bool
}

// generate produces the requests of [from, from+span) one second at a time.
func (m *EdgeModel) generate(rng *rand.Rand, from time.Time, span time.Duration, eval bool, fn func(request)) {
	for s := time.Duration(0); s < span; s += time.Second {
		t := from.Add(s)
		n := poisson(rng, m.rateAt(t))
		for i := 0; i < n; i++ {
			r := request{at: t.Add(time.Duration(i) * time.Second / time.Duration(n))}
			if rng.Float64() < m.FailRate {
				r.fail = true
				if rng.Float64() < m.HangShare {
					r.dur = time.Duration(m.HangMs * float64(time.Millisecond))
				} else {
					r.dur = time.Duration((1 + 4*rng.Float64()) * float64(time.Millisecond))
				}
			} else {
				r.dur = m.latency(rng, eval)
			}
			fn(r)
		}
	}
}

// ReplayConfig sizes a replay.
type ReplayConfig struct {
	Seed   uint64
	Edges  int
	Window time.Duration
	Target float64
	// Adaptive evaluates what the product does: the engine keeps
	// consuming the evaluation window's traffic and recomputes every
	// Recompute (30 s), and each request is subject to the timeout
	// published at its time. The figures of the train-once timeout on the
	// same requests are kept in Static.
	Adaptive  bool
	Recompute time.Duration
	// Censor, in an adaptive replay, feeds the engine what a mesh with the
	// published timeout applied reports: a request longer than the timeout
	// in force ends at the timeout as a UT timeout (504), its latency
	// unseen.
	Censor bool
}

// EdgeReplay is the outcome on one edge.
type EdgeReplay struct {
	Name      string
	Samples   uint64  // successes in the training window
	TimeoutMs float64 // 0: no recommendation
	Realised  float64 // false-timeout rate in the evaluation window
	Incident  bool
	// Late is set in an adaptive replay when the edge had no timeout at
	// the end of training and got one during the evaluation window: its
	// realised rate covers only the requests after that.
	Late     bool
	EvalSucc int
	Cut      int
	// Changes counts the published timeout changes of the edge during the
	// evaluation window (adaptive replays only).
	Changes    int
	WaitDef    float64
	WaitRecomm float64
}

// ReplayResult summarises a replay.
type ReplayResult struct {
	Edges, Recommended, WithinBand int
	// ShareWithinBand is the share of recommended edges whose realised
	// false-timeout rate is within ±50% of the target.
	ShareWithinBand float64
	// MedianRatio is the median realised/target ratio.
	MedianRatio float64
	// IncidentRecommended and IncidentWithinBand count the recommended
	// edges whose evaluation window has a latency incident the training
	// window could not show; StationaryShare is the within-band share of
	// the other recommended edges.
	IncidentRecommended, IncidentWithinBand int
	StationaryShare                         float64
	// LateRecommended and LateWithinBand count the edges first recommended
	// during the evaluation window (adaptive replays only).
	LateRecommended, LateWithinBand int
	// Seconds spent waiting on requests that failed anyway, under Istio's
	// default (no route timeout), under Envoy's 15 s default, and under
	// the recommendations.
	WaitNoTimeout, Wait15s, WaitRecommended float64
	ReductionVsNoTimeout, ReductionVs15s    float64
	PerEdge                                 []EdgeReplay
	// Static is, in an adaptive replay, the train-once evaluation of the
	// same requests (the timeout published at the end of training held
	// for the whole evaluation window).
	Static *ReplayResult
	// Changes counts, in an adaptive replay, the published timeout
	// changes during the evaluation window; StationaryChanges those of
	// edges with neither an incident nor a late first recommendation.
	Changes, StationaryChanges int
}

// RunReplay trains the engine on one window of generated traffic per edge
// and evaluates its timeouts on the next window.
func RunReplay(cfg ReplayConfig) (*ReplayResult, error) {
	if cfg.Window <= 0 {
		cfg.Window = 30 * time.Minute
	}
	if cfg.Target <= 0 {
		cfg.Target = 0.001
	}
	t0 := time.Date(2026, 11, 2, 8, 0, 0, 0, time.UTC)
	trainEnd := t0.Add(cfg.Window)
	clock := trainEnd
	e, err := recommend.New(recommend.Config{Window: cfg.Window, TargetFalseTimeout: cfg.Target, MaxEndpoints: -1,
		Now: func() time.Time { return clock }}, nil, nil)
	if err != nil {
		return nil, err
	}
	models := GenerateEdges(cfg.Seed, cfg.Edges)
	rng := rand.New(rand.NewPCG(cfg.Seed+1, cfg.Seed+2))
	f := newFeeder(e, models)
	for i := range models {
		models[i].generate(rng, t0, cfg.Window, false, func(r request) { f.add(i, r, false) })
	}
	if err := f.feedUntil(trainEnd); err != nil {
		return nil, fmt.Errorf("replay: feed training window: %w", err)
	}
	e.Recompute(trainEnd)
	if cfg.Adaptive {
		return runAdaptive(cfg, e, f, models, trainEnd, func(t time.Time) { clock = t })
	}
	tmo := map[string]recommend.Recommendation{}
	for _, r := range e.Recommendations(recommend.Filter{Kind: recommend.KindTimeout}) {
		tmo[r.Edge.Destination] = r
	}
	res := &ReplayResult{Edges: len(models)}
	for i := range models {
		m := &models[i]
		er := EdgeReplay{Name: m.Name, Incident: m.IncidentShare > 0}
		rec, ok := tmo[m.Name+".eval"]
		var T time.Duration
		if ok {
			er.TimeoutMs, er.Samples = rec.Recommended.TimeoutMs, rec.Evidence.Samples
			T = time.Duration(rec.Recommended.TimeoutMs * float64(time.Millisecond))
		}
		m.generate(rng, trainEnd, cfg.Window, true, func(r request) { applyTimeout(res, &er, T, r) })
		res.PerEdge = append(res.PerEdge, er)
	}
	tally(res, cfg.Target)
	return res, nil
}

// runAdaptive plays the evaluation window in steps of cfg.Recompute: each
// step's requests are subject to the timeouts published at its start, are
// fed to the engine, and the engine recomputes at the step's end, as Run
// does in production. Unless cfg.Censor is set the engine sees every
// latency in full (as it would while the recommendation is advisory, or
// under a timeout in force well above it).
func runAdaptive(cfg ReplayConfig, e *recommend.Engine, f *feeder, models []EdgeModel, trainEnd time.Time, setClock func(time.Time)) (*ReplayResult, error) {
	step := cfg.Recompute
	if step <= 0 {
		step = 30 * time.Second
	}
	inForce := func() map[string]recommend.Recommendation {
		m := map[string]recommend.Recommendation{}
		for _, r := range e.Recommendations(recommend.Filter{Kind: recommend.KindTimeout}) {
			if r.Edge != nil && r.Edge.Endpoint == "" && r.Recommended != nil {
				m[r.Edge.Destination] = r
			}
		}
		return m
	}
	static := inForce()
	cur := static
	ad, st := &ReplayResult{Edges: len(models)}, &ReplayResult{Edges: len(models)}
	adE, stE := make([]EdgeReplay, len(models)), make([]EdgeReplay, len(models))
	rngs := make([]*rand.Rand, len(models))
	for i := range models {
		adE[i] = EdgeReplay{Name: models[i].Name, Incident: models[i].IncidentShare > 0}
		stE[i] = adE[i]
		// One stream per edge, so that the interleaving of edges in time
		// does not change any edge's requests.
		rngs[i] = rand.New(rand.NewPCG(cfg.Seed^0x2545f4914f6cdd1d, uint64(i)))
	}
	byDst := make(map[string]int, len(models))
	for i := range models {
		byDst[models[i].Name+".eval"] = i
	}
	changed := func(dst string) {
		ad.Changes++
		if i, ok := byDst[dst]; ok {
			adE[i].Changes++
		}
	}
	var ferr error
	for off := time.Duration(0); off < cfg.Window; off += step {
		from := trainEnd.Add(off)
		for i := range models {
			m := &models[i]
			name := m.Name + ".eval"
			aT, sT := timeoutOf(cur, name, &adE[i]), timeoutOf(static, name, &stE[i])
			if aT > 0 && sT == 0 {
				adE[i].Late = true
			}
			m.generate(rngs[i], from, step, true, func(r request) {
				applyTimeout(ad, &adE[i], aT, r)
				applyTimeout(st, &stE[i], sT, r)
				cut := cfg.Censor && aT > 0 && r.dur > aT
				if cut {
					r.dur = aT
				}
				f.add(i, r, cut)
			})
		}
		if err := f.feedUntil(from.Add(step)); err != nil && ferr == nil {
			ferr = err
		}
		setClock(from.Add(step))
		e.Recompute(from.Add(step))
		next := inForce()
		for k, r := range next {
			if o, ok := cur[k]; !ok || o.Recommended.TimeoutMs != r.Recommended.TimeoutMs {
				changed(k)
			}
		}
		for k := range cur {
			if _, ok := next[k]; !ok {
				changed(k)
			}
		}
		cur = next
	}
	if ferr != nil {
		return nil, fmt.Errorf("replay: feed evaluation window: %w", ferr)
	}
	ad.PerEdge, st.PerEdge = adE, stE
	tally(ad, cfg.Target)
	tally(st, cfg.Target)
	ad.Static = st
	return ad, nil
}

// timeoutOf is the timeout published for destination name (0: none) and
// notes it on er: the largest timeout and the fewest samples any
// recommendation in force was based on.
func timeoutOf(m map[string]recommend.Recommendation, name string, er *EdgeReplay) time.Duration {
	r, ok := m[name]
	if !ok {
		return 0
	}
	er.TimeoutMs = math.Max(er.TimeoutMs, r.Recommended.TimeoutMs)
	if r.Evidence != nil && (er.Samples == 0 || r.Evidence.Samples < er.Samples) {
		er.Samples = r.Evidence.Samples
	}
	return time.Duration(r.Recommended.TimeoutMs * float64(time.Millisecond))
}

// applyTimeout scores one request under timeout T (0: none). The realised
// false-timeout rate counts only the successes a timeout applied to.
func applyTimeout(res *ReplayResult, er *EdgeReplay, T time.Duration, r request) {
	if !r.fail {
		if T > 0 {
			er.EvalSucc++
			if r.dur > T {
				er.Cut++
			}
		}
		return
	}
	d := r.dur.Seconds()
	res.WaitNoTimeout += d
	res.Wait15s += math.Min(d, 15)
	er.WaitDef += d
	if T > 0 {
		d = math.Min(d, T.Seconds())
	}
	er.WaitRecomm += d
	res.WaitRecommended += d
}

func callOf(src, dst model.Identity, r request) model.Call {
	code := 200
	if r.fail {
		code = 503
		if r.dur > time.Second {
			code = 504
		}
	}
	return model.Call{Source: src, Destination: dst, Method: "GET", Start: r.at, Duration: r.dur,
		StatusCode: code, GRPCStatus: -1, DetectPoint: model.DetectClient}
}

// tally derives the summary of res from its PerEdge figures.
func tally(res *ReplayResult, target float64) {
	var ratios []float64
	for i := range res.PerEdge {
		er := &res.PerEdge[i]
		if er.TimeoutMs == 0 || er.EvalSucc == 0 {
			continue
		}
		er.Realised = float64(er.Cut) / float64(er.EvalSucc)
		res.Recommended++
		ratio := er.Realised / target
		ratios = append(ratios, ratio)
		in := ratio >= 0.5 && ratio <= 1.5
		if in {
			res.WithinBand++
		}
		if er.Incident {
			res.IncidentRecommended++
			if in {
				res.IncidentWithinBand++
			}
		}
		if !er.Incident && !er.Late {
			res.StationaryChanges += er.Changes
		}
		if er.Late {
			res.LateRecommended++
			if in {
				res.LateWithinBand++
			}
		}
	}
	if res.Recommended > 0 {
		res.ShareWithinBand = float64(res.WithinBand) / float64(res.Recommended)
		if n := res.Recommended - res.IncidentRecommended; n > 0 {
			res.StationaryShare = float64(res.WithinBand-res.IncidentWithinBand) / float64(n)
		}
		sort.Float64s(ratios)
		res.MedianRatio = ratios[len(ratios)/2]
	}
	if res.WaitNoTimeout > 0 {
		res.ReductionVsNoTimeout = 1 - res.WaitRecommended/res.WaitNoTimeout
	}
	if res.Wait15s > 0 {
		res.ReductionVs15s = 1 - res.WaitRecommended/res.Wait15s
	}
}

// feeder hands generated calls to the engine as a mesh would: a proxy
// reports a call when it ends, so the engine receives calls in the order
// they end, and at a recomputation only those that have ended. Fed in
// start order instead, a hung request (10–60 s) would reach the engine
// before the calls that end while it hangs, move the edge's current slot
// ahead of them and take them along into the later slot (the engine records
// late calls in the current slot).
type feeder struct {
	e     *recommend.Engine
	ids   [][2]model.Identity // source and destination by edge index
	pend  []pendingCall
	batch []model.Call
}

type pendingCall struct {
	end  int64 // Unix ns
	edge int
	r    request
	ut   bool // cut by the timeout in force: r.dur is the timeout
}

func newFeeder(e *recommend.Engine, models []EdgeModel) *feeder {
	f := &feeder{e: e, batch: make([]model.Call, 0, 4096)}
	for _, m := range models {
		f.ids = append(f.ids, [2]model.Identity{{Service: "client-" + m.Name[4:], Namespace: "eval"}, {Service: m.Name, Namespace: "eval"}})
	}
	return f
}

func (f *feeder) add(edge int, r request, ut bool) {
	f.pend = append(f.pend, pendingCall{end: r.at.Add(r.dur).UnixNano(), edge: edge, r: r, ut: ut})
}

// feedUntil feeds, in the order they end, the calls that have ended by t.
func (f *feeder) feedUntil(t time.Time) error {
	sort.Slice(f.pend, func(a, b int) bool { return f.pend[a].end < f.pend[b].end })
	n := sort.Search(len(f.pend), func(i int) bool { return f.pend[i].end > t.UnixNano() })
	var err error
	for _, p := range f.pend[:n] {
		c := callOf(f.ids[p.edge][0], f.ids[p.edge][1], p.r)
		if p.ut {
			c.StatusCode, c.ResponseFlags = 504, "UT"
		}
		f.batch = append(f.batch, c)
		if len(f.batch) == cap(f.batch) {
			err = errors.Join(err, f.e.ConsumeCalls(context.Background(), f.batch))
			f.batch = f.batch[:0]
		}
	}
	err = errors.Join(err, f.e.ConsumeCalls(context.Background(), f.batch))
	f.batch = f.batch[:0]
	f.pend = f.pend[:copy(f.pend, f.pend[n:])]
	return err
}
