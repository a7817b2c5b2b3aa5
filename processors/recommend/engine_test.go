package recommend

import (
	"context"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/meshlens/meshlens/model"
)

func TestHistogramRelativeError(t *testing.T) {
	for _, us := range []uint64{0, 1, 31, 32, 33, 63, 64, 100, 999, 12345, 987654, 123456789, maxMicros} {
		b := bucketOf(us)
		lo, hi := bucketBounds(b)
		if us < lo || us >= hi {
			t.Fatalf("value %d not in its bucket %d [%d,%d)", us, b, lo, hi)
		}
		if us >= 64 && float64(hi-lo)/float64(lo) > 1.0/32+1e-9 {
			t.Fatalf("bucket of %d is %.3f wide relative", us, float64(hi-lo)/float64(lo))
		}
	}
	if numBuckets != bucketOf(maxMicros)+1 {
		t.Fatalf("layout: %d buckets, last index %d", numBuckets, bucketOf(maxMicros))
	}
}

func TestQuantileWithCI(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	tests := []struct {
		name string
		n    int
		q    float64
	}{{"median 10k", 10000, 0.5}, {"p99 100k", 100000, 0.99}, {"p99.9 200k", 200000, 0.999}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var h Histogram
			for i := 0; i < tc.n; i++ {
				h.Record(time.Duration(math.Exp(rng.NormFloat64()*0.5+math.Log(50e6))) * time.Nanosecond)
			}
			ci := h.QuantileWithCI(tc.q, 1.96)
			// true quantile of the log-normal
			z := map[float64]float64{0.5: 0, 0.99: 2.3263, 0.999: 3.0902}[tc.q]
			truth := time.Duration(math.Exp(z*0.5+math.Log(50e6))) * time.Nanosecond
			if ci.Lower > ci.Value || ci.Value > ci.Upper {
				t.Fatalf("interval not ordered: %+v", ci)
			}
			if float64(truth) < float64(ci.Lower)*0.97 || float64(truth) > float64(ci.Upper)*1.03 {
				t.Fatalf("true %v outside [%v, %v]", truth, ci.Lower, ci.Upper)
			}
		})
	}
}

// feed sends n calls on src→dst at a fixed rate ending at end, with latency
// from lat and failures from fail.
func feed(t testing.TB, e *Engine, src, dst string, end time.Time, n int, span time.Duration, dp model.DetectPoint,
	lat func(i int) time.Duration, fail func(i int) (int, string)) {
	t.Helper()
	batch := make([]model.Call, 0, 1000)
	step := span / time.Duration(n)
	start := end.Add(-span)
	for i := 0; i < n; i++ {
		code, flags := 200, ""
		if fail != nil {
			code, flags = fail(i)
		}
		d := lat(i)
		batch = append(batch, model.Call{
			Source: model.Identity{Service: src, Namespace: "default"}, Destination: model.Identity{Service: dst, Namespace: "default"},
			Endpoint: "GET:/" + dst, Method: "GET", Start: start.Add(time.Duration(i) * step).Add(-d), Duration: d,
			StatusCode: code, ResponseFlags: flags, GRPCStatus: -1, DetectPoint: dp,
		})
		if len(batch) == cap(batch) {
			if err := e.ConsumeCalls(context.Background(), batch); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if err := e.ConsumeCalls(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
}

func lognormal(rng *rand.Rand, medianMs, sigma float64) func(int) time.Duration {
	return func(int) time.Duration {
		return time.Duration(math.Exp(rng.NormFloat64()*sigma) * medianMs * float64(time.Millisecond))
	}
}

func find(recs []Recommendation, id string) *Recommendation {
	for i := range recs {
		if recs[i].ID == id {
			return &recs[i]
		}
	}
	return nil
}

func TestEngineTimeoutsAndChain(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	end := time.Date(2026, 11, 2, 12, 0, 0, 0, time.UTC)
	e, err := New(Config{Now: func() time.Time { return end }}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	// productpage -> reviews -> ratings; reviews' callee is slow so the
	// caller's raw p99.9 would not cover it.
	feed(t, e, "productpage", "reviews", end, 120000, 25*time.Minute, model.DetectClient, lognormal(rng, 20, 0.3), nil)
	feed(t, e, "reviews", "ratings", end, 120000, 25*time.Minute, model.DetectClient, lognormal(rng, 30, 0.5), nil)
	feed(t, e, "reviews", "details", end, 3000, 25*time.Minute, model.DetectClient, lognormal(rng, 5, 0.3), nil)
	e.Recompute(end)
	recs := e.Recommendations(Filter{})
	rt := find(recs, "timeout:reviews.default->ratings.default")
	if rt == nil {
		t.Fatalf("no timeout for reviews->ratings; have %d recs", len(recs))
	}
	want := 30 * math.Exp(3.0902*0.5)
	if got := rt.Recommended.TimeoutMs; math.Abs(got-want)/want > 0.08 {
		t.Fatalf("reviews->ratings timeout %.1f ms, want ≈ %.1f (p99.9)", got, want)
	}
	if rt.Confidence.Lower > rt.Recommended.TimeoutMs || rt.Confidence.Upper < rt.Recommended.TimeoutMs {
		t.Fatalf("bounds %+v do not contain %v", rt.Confidence, rt.Recommended.TimeoutMs)
	}
	if find(recs, "timeout:reviews.default->details.default") != nil {
		t.Fatal("3000 samples cannot support p99.9 but a timeout was recommended")
	}
	pr := find(recs, "timeout:productpage.default->reviews.default")
	if pr == nil {
		t.Fatal("no timeout for productpage->reviews")
	}
	if pr.Recommended.TimeoutMs < rt.Recommended.TimeoutMs {
		t.Fatalf("chain inverted: caller %.0f < callee %.0f", pr.Recommended.TimeoutMs, rt.Recommended.TimeoutMs)
	}
	if !strings.Contains(pr.Explanation, "Raised") {
		t.Fatalf("caller timeout not explained as raised: %s", pr.Explanation)
	}
	g := RecommendedGraph(recs, nil, nil, nil)
	if incs := CheckChains(g, ChainRules{}); len(incs) != 0 {
		t.Fatalf("recommended settings inconsistent: %+v", incs)
	}
	if len(e.History(Filter{}, 0)) == 0 {
		t.Fatal("no history recorded")
	}
}

func TestHysteresis(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	now := time.Date(2026, 11, 2, 12, 0, 0, 0, time.UTC)
	e, _ := New(Config{Window: 10 * time.Minute, Now: func() time.Time { return now }}, nil, nil)
	id := "timeout:a.default->b.default"
	var vals []float64
	for step := 0; step < 8; step++ {
		median := 20.0
		if step >= 4 {
			median = 40 // a real shift after step 4
		}
		feed(t, e, "a", "b", now, 60000, 5*time.Minute, model.DetectClient, lognormal(rng, median, 0.3), nil)
		e.Recompute(now)
		r := find(e.Recommendations(Filter{Kind: KindTimeout}), id)
		if r == nil {
			t.Fatalf("step %d: no recommendation", step)
		}
		vals = append(vals, r.Recommended.TimeoutMs)
		now = now.Add(5 * time.Minute)
	}
	changes := 0
	for i := 1; i < len(vals); i++ {
		if vals[i] != vals[i-1] {
			changes++
		}
	}
	if changes == 0 || changes > 2 || vals[0] != vals[3] {
		t.Fatalf("want one or two smooth changes after the shift, got %v", vals)
	}
	h := e.History(Filter{Service: "b"}, 0)
	if len(h) < 2 || !strings.Contains(h[0].Reason, "changed from") {
		t.Fatalf("change not recorded with reason: %+v", h)
	}
}

func TestLoadIstioDir(t *testing.T) {
	c, err := LoadIstioDir("testdata/istio")
	if err != nil {
		t.Fatal(err)
	}
	r := c.Routes["reviews.default"]
	if r == nil || r.Timeout != 5*time.Second || r.Retries != 3 || r.PerTryTimeout != 2*time.Second {
		t.Fatalf("reviews route: %+v", r)
	}
	if rt := c.Routes["ratings.default"]; rt == nil || rt.Timeout != 10*time.Millisecond || rt.Retries != IstioDefaultRetries {
		t.Fatalf("ratings route: %+v", rt)
	}
	if p := c.Policies["reviews.default"]; p == nil || !p.HasOutlierDetection || p.RetryBudgetPercent != 25 {
		t.Fatalf("reviews policy: %+v", p)
	}
	if l := c.Limits["productpage.default"]; l == nil || l.RatePerSecond != 100 || l.Burst != 100 {
		t.Fatalf("productpage limit: %+v", l)
	}
}

func TestAddYAMLBadInputKeepsRest(t *testing.T) {
	c := NewCurrentConfig()
	in := "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: x}\nspec:\n  http:\n  - timeout: notaduration\n    route: [{destination: {host: x}}]\n---\n" +
		"apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: web, namespace: ns}\nspec:\n  http:\n  - timeout: 2s\n    route: [{destination: {host: web}}]\n"
	err := c.AddYAML([]byte(in), "t.yaml")
	if err == nil || !strings.Contains(err.Error(), "t.yaml: document 1") {
		t.Fatalf("want an error naming document 1, got %v", err)
	}
	if r := c.Routes["web.ns"]; r == nil || r.Timeout != 2*time.Second {
		t.Fatalf("second document lost: %+v", c.Routes)
	}
}

func FuzzAddYAML(f *testing.F) {
	f.Add([]byte("apiVersion: networking.istio.io/v1\nkind: VirtualService\nspec: {http: [{timeout: 1s}]}\n"))
	f.Add([]byte("apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nspec: {workloadSelector: {labels: {app: a}}, configPatches: [{patch: {value: {token_bucket: {fill_interval: 1s}}}}]}\n"))
	f.Add([]byte("---\n---\nkind: [\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c := NewCurrentConfig()
		_ = c.AddYAML(b, "fuzz")
	})
}

func TestRunAndConcurrentUse(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 9))
	end := time.Date(2026, 11, 2, 12, 0, 0, 0, time.UTC)
	e, err := New(Config{RecomputeEvery: 5 * time.Millisecond, Now: func() time.Time { return end }}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- e.Run(ctx) }()
	readers := make(chan struct{})
	go func() {
		defer close(readers)
		for i := 0; i < 50; i++ {
			_ = e.Recommendations(Filter{Service: "b"})
			_ = e.History(Filter{}, 10)
			_, _ = e.IstioYAML(Filter{})
			_ = e.Diff(Filter{})
			time.Sleep(time.Millisecond)
		}
	}()
	feed(t, e, "a", "b", end, 60000, 10*time.Minute, model.DetectClient, lognormal(rng, 10, 0.3), nil)
	<-readers
	deadline := time.Now().Add(5 * time.Second)
	for e.LastRecompute().IsZero() || find(e.Recommendations(Filter{}), "timeout:a.default->b.default") == nil {
		if time.Now().After(deadline) {
			t.Fatal("the ticker never produced a recommendation")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestMissingLimitAndRetryStorm(t *testing.T) {
	rng := rand.New(rand.NewPCG(12, 13))
	end := time.Date(2026, 11, 2, 12, 0, 0, 0, time.UTC)
	e, _ := New(Config{Now: func() time.Time { return end }}, nil, nil)
	cur := NewCurrentConfig()
	cur.Loaded = true
	cur.Routes["api.default"] = &RouteSetting{Retries: 4, RetryOn: "5xx", HasRetries: true, Resource: "default/api"}
	if err := e.SetCurrentConfig(cur); err != nil {
		t.Fatal(err)
	}
	// Traffic from outside the mesh (unknown source) into api, 10% failing.
	for _, dp := range []model.DetectPoint{model.DetectClient, model.DetectServer} {
		feed(t, e, model.Unknown, "api", end, 60000, 20*time.Minute, dp, lognormal(rng, 10, 0.3), func(i int) (int, string) {
			if i%10 == 0 {
				return 503, ""
			}
			return 200, ""
		})
	}
	e.Recompute(end)
	mis := e.Recommendations(Filter{Kind: KindMisconfig, Service: "api"})
	var storm, missing bool
	for _, r := range mis {
		storm = storm || strings.HasSuffix(r.ID, ":retry_storm")
		missing = missing || (strings.HasSuffix(r.ID, ":missing_limit") && r.Recommended.RatePerSecond > 0)
	}
	if !storm || !missing {
		t.Fatalf("want retry_storm and missing_limit flags, got %+v", mis)
	}
}

// TestNoFlappingOnSteadyTraffic recomputes every 30 s over two hours of
// stationary traffic: once published, no value may change.
func TestNoFlappingOnSteadyTraffic(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	now := time.Date(2026, 11, 2, 8, 0, 0, 0, time.UTC)
	e, _ := New(Config{Now: func() time.Time { return now }}, nil, nil)
	edges := []struct {
		dst    string
		median float64
		sigma  float64
	}{{"a", 5, 0.2}, {"b", 40, 0.5}, {"c", 200, 0.8}}
	for step := 0; step < 240; step++ {
		now = now.Add(30 * time.Second)
		for _, ed := range edges {
			feed(t, e, "src", ed.dst, now, 3000, 30*time.Second, model.DetectClient, lognormal(rng, ed.median, ed.sigma), nil)
		}
		e.Recompute(now)
	}
	changes := 0
	for _, c := range e.History(Filter{Kind: KindTimeout}, 0) {
		if strings.HasPrefix(c.Reason, "changed") || strings.HasPrefix(c.Reason, "withdrawn") || strings.HasPrefix(c.Reason, "raised") {
			changes++
			t.Logf("%s %s: %s", c.At.Format(time.TimeOnly), c.ID, c.Reason)
		}
	}
	// One per edge and one per endpoint, except for edge a: its p99.9
	// (≈ 9.3 ms at σ 0.2) lies between 9 and 10 ms, and Envoy's whole
	// milliseconds cut either far more or far less than the target, so it
	// gets none — and must not flap in and out either.
	tmo := e.Recommendations(Filter{Kind: KindTimeout})
	if got := len(tmo); got != 2*(len(edges)-1) {
		t.Fatalf("%d timeouts published, want %d", got, 2*(len(edges)-1))
	}
	for _, r := range tmo {
		if r.Edge.Destination == "a.default" {
			t.Fatalf("timeout for edge a: %s", r.Explanation)
		}
	}
	if changes > 0 {
		t.Fatalf("%d changes on stationary traffic over 240 recomputations", changes)
	}
}

func TestBadTimestampsDoNotWipeAnEdge(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	end := time.Date(2026, 11, 2, 12, 0, 0, 0, time.UTC)
	reg := prometheus.NewRegistry()
	e, err := New(Config{Now: func() time.Time { return end }}, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	feed(t, e, "a", "b", end, 60000, 20*time.Minute, model.DetectClient, lognormal(rng, 10, 0.3), nil)
	bad := []model.Call{
		{Source: model.Identity{Service: "a", Namespace: "default"}, Destination: model.Identity{Service: "b", Namespace: "default"},
			Start: end.AddDate(70, 0, 0), Duration: time.Millisecond, StatusCode: 200, GRPCStatus: -1},
		{Source: model.Identity{Service: "a", Namespace: "default"}, Destination: model.Identity{Service: "b", Namespace: "default"},
			Duration: time.Millisecond, StatusCode: 200, GRPCStatus: -1}, // zero Start
	}
	if err := e.ConsumeCalls(context.Background(), bad); err != nil {
		t.Fatal(err)
	}
	e.Recompute(end)
	if find(e.Recommendations(Filter{}), "timeout:a.default->b.default") == nil {
		t.Fatal("a call stamped 70 years ahead wiped the edge's window")
	}
	if got := testutil.ToFloat64(e.metrics.badTime); got != 2 {
		t.Fatalf("bad-timestamp counter %v, want 2", got)
	}
}

// TestDemoRateTraffic is traffic at the demo's default rate (about 10
// req/s per edge): too few samples for p99.9, but 503 bursts still get a
// fast-failure retry policy, and a 1% target gets a p99 timeout.
func TestDemoRateTraffic(t *testing.T) {
	end := time.Date(2026, 11, 2, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name        string
		target      float64
		wantTimeout bool
	}{{"default target", 0, false}, {"1% target", 0.01, true}} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(41, 42))
			e, _ := New(Config{TargetFalseTimeout: tc.target, Now: func() time.Time { return end }}, nil, nil)
			feed(t, e, "productpage", "details", end, 18000, 30*time.Minute, model.DetectClient, lognormal(rng, 3, 0.3),
				func(i int) (int, string) {
					if i%600 < 60 && rng.Float64() < 0.3 { // 503 bursts
						return 503, ""
					}
					return 200, ""
				})
			e.Recompute(end)
			recs := e.Recommendations(Filter{Service: "details"})
			r := find(recs, "retry:productpage.default->details.default")
			if r == nil || !strings.Contains(r.Recommended.RetryOn, "503") || r.Recommended.RetryBudgetPercent != 20 {
				t.Fatalf("no fast-failure retry policy for the 503 bursts: %+v", r)
			}
			if got := find(recs, "timeout:productpage.default->details.default") != nil; got != tc.wantTimeout {
				t.Fatalf("timeout recommended = %v, want %v", got, tc.wantTimeout)
			}
			y, err := e.IstioYAML(Filter{Service: "details"})
			if err != nil || !strings.Contains(string(y), "retryOn: connect-failure,refused-stream,unavailable,503") {
				t.Fatalf("retry policy not exported: %v\n%s", err, y)
			}
		})
	}
}

// TestRaiseOnLatencyRise: when a share of requests suddenly slows down, the
// 30-minute window's p99.9 does not move for minutes, and the timeout in
// force would cut the slow requests. The recent-window check must raise it
// at once (within two recomputations), record why, and not lower it while
// the rise lasts; on the steady traffic before, nothing may change.
func TestRaiseOnLatencyRise(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	now := time.Date(2026, 11, 2, 8, 0, 0, 0, time.UTC)
	e, _ := New(Config{Now: func() time.Time { return now }}, nil, nil)
	id := "timeout:src.default->b.default"
	steady := lognormal(rng, 40, 0.3)
	incident := func(i int) time.Duration {
		d := steady(i)
		if rng.Float64() < 0.03 {
			d *= 5
		}
		return d
	}
	var before, at float64
	var raisedStep int = -1
	for step := 0; step < 100; step++ {
		now = now.Add(30 * time.Second)
		lat := steady
		if step >= 70 {
			lat = incident
		}
		feed(t, e, "src", "b", now, 3000, 30*time.Second, model.DetectClient, lat, nil)
		e.Recompute(now)
		r := find(e.Recommendations(Filter{Kind: KindTimeout}), id)
		if r == nil && step < 60 {
			continue // p99.9 needs 50,000 samples: 17 steps
		}
		if r == nil {
			t.Fatalf("step %d: no timeout", step)
		}
		v := r.Recommended.TimeoutMs
		switch {
		case step == 69:
			before = v
		case step >= 70 && raisedStep < 0 && v > 1.5*before:
			raisedStep, at = step, v
		case raisedStep >= 0 && v < at:
			t.Fatalf("step %d: timeout lowered from %.0f to %.0f ms while the rise lasts", step, at, v)
		case raisedStep >= 0:
			at = v
		}
	}
	if raisedStep < 0 || raisedStep > 71 {
		t.Fatalf("timeout %.0f ms before the rise not raised within two recomputations (raised at step %d)", before, raisedStep)
	}
	var reasons []string
	for _, c := range e.History(Filter{Kind: KindTimeout}, 0) {
		if c.ID == id && !strings.HasPrefix(c.Reason, "first") {
			reasons = append(reasons, c.Reason)
		}
	}
	if len(reasons) == 0 || !strings.HasPrefix(reasons[len(reasons)-1], "raised at once") || !strings.Contains(reasons[len(reasons)-1], "Latency rose") {
		t.Fatalf("first change after the rise should be recorded as raised at once with its reason: %q", reasons)
	}
	t.Logf("timeout %.0f ms before, %.0f ms at step %d, %.0f ms at the end; changes: %q", before, at, raisedStep, at, reasons)
}

// TestWithheldTimeoutHysteresis: a timeout Envoy's whole milliseconds
// cannot express within maxSnapError is not recommended, but one already
// published is kept up to maxSnapErrorKeep, so that an edge near the limit
// is not withdrawn and restored at every wobble.
func TestWithheldTimeoutHysteresis(t *testing.T) {
	e, _ := New(Config{}, nil, nil)
	cur := NewCurrentConfig()
	for _, tc := range []struct {
		name      string
		cutLo     float64 // share above 9 ms, relative to the target
		published bool
		want      bool
	}{
		{"within 25%, new", 1.2, false, true},
		{"28% off, new", 1.28, false, false},
		{"28% off, published", 1.28, true, true},
		{"35% off, published", 1.35, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			es := &edgeSnap{src: "a.default", dst: "b.default", view: viewClient, window: 30 * time.Minute,
				c: counts{success: 60000, total: 60000}, tqOK: true,
				tq:   QuantileCI{Value: 9300 * time.Microsecond, Lower: 9 * time.Millisecond, Upper: 10 * time.Millisecond, Samples: 60000},
				msLo: 9, msHi: 10, cutLo: tc.cutLo * e.cfg.TargetFalseTimeout, cutHi: 0.26 * e.cfg.TargetFalseTimeout}
			r, _ := e.timeoutRec(time.Now(), cur, es, tc.published, 0)
			if got := r != nil; got != tc.want {
				t.Fatalf("recommended = %v, want %v", got, tc.want)
			}
			if r != nil && r.Recommended.TimeoutMs != 9 {
				t.Fatalf("timeout %.0f ms, want 9", r.Recommended.TimeoutMs)
			}
		})
	}
}
