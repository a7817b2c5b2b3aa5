package eval

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestEvaluationReport prints every evaluation figure; run it with
// `go test -run TestEvaluationReport -v ./processors/recommend/eval/`.
// MESHLENS_EVAL_SEEDS=n adds n more replay seeds.
func TestEvaluationReport(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the evaluation report runs every replay seed")
	}
	var b strings.Builder
	r := sharedReplay(t)
	fmt.Fprintf(&b, "\nREPLAY (seed 42, %d edges, train 30 min, evaluate next 30 min recomputing every 30 s, target 0.1%%)\n", r.Edges)
	fmt.Fprintf(&b, "  edges with a recommendation: %d (the rest had < 50,000 successes in the window)\n", r.Recommended)
	fmt.Fprintf(&b, "  realised false-timeout rate within ±50%% of target: %d/%d = %.1f%% (median realised/target %.2f)\n",
		r.WithinBand, r.Recommended, 100*r.ShareWithinBand, r.MedianRatio)
	fmt.Fprintf(&b, "  seconds waiting on requests that failed anyway: no timeout %.0f, 15 s %.0f, recommended %.0f\n",
		r.WaitNoTimeout, r.Wait15s, r.WaitRecommended)
	fmt.Fprintf(&b, "  reduction: %.1f%% vs no timeout (Istio default), %.1f%% vs 15 s\n", 100*r.ReductionVsNoTimeout, 100*r.ReductionVs15s)
	fmt.Fprintf(&b, "  incident edges recommended %d (%d within band); other edges within band %.1f%%; %d published timeout changes\n",
		r.IncidentRecommended, r.IncidentWithinBand, 100*r.StationaryShare, r.Changes)
	if st := r.Static; st != nil {
		fmt.Fprintf(&b, "  trained once on the same requests: %d/%d = %.1f%% within band, wait reduction %.1f%% / %.1f%%\n",
			st.WithinBand, st.Recommended, 100*st.ShareWithinBand, 100*st.ReductionVsNoTimeout, 100*st.ReductionVs15s)
	}
	if n, _ := strconv.Atoi(os.Getenv("MESHLENS_EVAL_SEEDS")); n > 0 {
		var shares, stat, static, trainedShares []float64
		for s := 1; s <= n; s++ {
			x, err := RunReplay(ReplayConfig{Seed: uint64(1000 + s), Edges: 100, Window: 30 * time.Minute, Target: 0.001, Adaptive: true})
			if err != nil {
				t.Fatal(err)
			}
			st := x.Static
			shares, stat, static = append(shares, x.ShareWithinBand), append(stat, x.StationaryShare), append(static, st.ShareWithinBand)
			trained := float64(x.WithinBand-x.LateWithinBand) / float64(max(1, x.Recommended-x.LateRecommended))
			trainedShares = append(trainedShares, trained)
			fmt.Fprintf(&b, "  seed %d: %d/%d = %.1f%% within band (incident edges %d, %d within; others %.1f%%; first recommended during evaluation %d, %d within; the others %.1f%%), wait reduction %.1f%% / %.1f%%, %d changes | trained once: %d/%d = %.1f%% (incident %d, %d within), %.1f%% / %.1f%%\n",
				1000+s, x.WithinBand, x.Recommended, 100*x.ShareWithinBand, x.IncidentRecommended, x.IncidentWithinBand, 100*x.StationaryShare,
				x.LateRecommended, x.LateWithinBand, 100*trained,
				100*x.ReductionVsNoTimeout, 100*x.ReductionVs15s, x.Changes,
				st.WithinBand, st.Recommended, 100*st.ShareWithinBand, st.IncidentRecommended, st.IncidentWithinBand, 100*st.ReductionVsNoTimeout, 100*st.ReductionVs15s)
			for _, e := range x.PerEdge {
				if e.TimeoutMs > 0 && e.EvalSucc > 0 && (e.Realised < 0.0005 || e.Realised > 0.0015) {
					fmt.Fprintf(&b, "    outside: %s samples %d timeout %.1f ms realised %.3f%% (%d of %d successes under a timeout) incident %v late %v\n",
						e.Name, e.Samples, e.TimeoutMs, 100*e.Realised, e.Cut, e.EvalSucc, e.Incident, e.Late)
				}
			}
		}
		slices.Sort(static)
		slices.Sort(shares)
		slices.Sort(stat)
		ok := 0
		for _, v := range shares {
			if v >= 0.95 {
				ok++
			}
		}
		okStatic, okTrained := 0, 0
		for i := range static {
			if static[i] >= 0.95 {
				okStatic++
			}
			if trainedShares[i] >= 0.95 {
				okTrained++
			}
		}
		slices.Sort(trainedShares)
		fmt.Fprintf(&b, "  edges recommended at the end of training only: min %.1f%%, %d/%d seeds ≥ 95%%\n", 100*trainedShares[0], okTrained, n)
		fmt.Fprintf(&b, "  seeds 1001–%d: within-band share min %.1f%%, median %.1f%%, max %.1f%%; %d/%d seeds ≥ 95%%; without incident edges min %.1f%%, median %.1f%%; trained once: min %.1f%%, %d/%d seeds ≥ 95%%\n",
			1000+n, 100*shares[0], 100*shares[len(shares)/2], 100*shares[len(shares)-1], ok, n, 100*stat[0], 100*stat[len(stat)/2],
			100*static[0], okStatic, n)
	}
	// MESHLENS_EVAL_CENSOR_SEEDS=42,1003 replays those seeds with the
	// timeout in force censoring what the engine sees.
	for _, f := range strings.FieldsFunc(os.Getenv("MESHLENS_EVAL_CENSOR_SEEDS"), func(r rune) bool { return r == ',' || r == ' ' }) {
		seed, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			t.Fatalf("MESHLENS_EVAL_CENSOR_SEEDS: %v", err)
		}
		x, err := RunReplay(ReplayConfig{Seed: seed, Edges: 100, Window: 30 * time.Minute, Target: 0.001, Adaptive: true, Censor: true})
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "  censored, seed %d: %d/%d = %.1f%% within band (incident edges %d, %d within; others %.1f%%), wait reduction %.1f%% / %.1f%%, %d changes (%d on stationary edges)\n",
			seed, x.WithinBand, x.Recommended, 100*x.ShareWithinBand, x.IncidentRecommended, x.IncidentWithinBand, 100*x.StationaryShare,
			100*x.ReductionVsNoTimeout, 100*x.ReductionVs15s, x.Changes, x.StationaryChanges)
	}
	c, err := RunChainCheck(100, 30, 40, false)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&b, "\nCHAIN CHECK (30 generated graphs × 40 services, measured self time ±30%%, capacity ±20%%, rates ±5%% noise)\n")
	fmt.Fprintf(&b, "  seeded %d, reported %d, true positives %d: precision %.3f, recall %.3f\n", c.Seeded, c.Detected, c.TruePositives, c.Precision, c.Recall)
	for _, k := range []string{"inverted_timeout", "retry_amplification", "limit_above_downstream"} {
		v := c.ByKind[k]
		fmt.Fprintf(&b, "  %-24s seeded %3d reported %3d true %3d\n", k, v[0], v[1], v[2])
	}
	e, err := RunChainCheck(200, 2, 30, true)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&b, "  engine's own recommendations on 2 graphs' traffic: %d edge timeouts, %d inconsistencies\n", e.RecommendedEdges, e.RecommendedInconsistencies)

	rec, ov := sharedOverload(t)
	fmt.Fprintf(&b, "\nOVERLOAD (chain frontend→orders→inventory, capacity %.0f req/s, client deadline 1 s)\n", Capacity(DefaultChain()))
	fmt.Fprintf(&b, "  engine after a calibration staircase: knee %.1f req/s, rate limit %.1f req/s, burst %d, max in flight %d\n",
		rec.Evidence.KneePerSec, rec.Recommended.RatePerSecond, rec.Recommended.Burst, rec.Recommended.MaxConcurrency)
	for _, o := range ov {
		fmt.Fprintf(&b, "  step to %.1f×: goodput req/s: peak %.0f | recommended %.0f (%.1f%% of peak) | static 75%% knee (%.0f req/s) %.0f | Gradient2 %.0f | AIMD %.0f | no limit %.0f\n",
			o.Step, o.Peak, o.Recommended, 100*o.Recommended/o.Peak, o.StaticLimit, o.Static, o.Gradient, o.AIMD, o.NoLimit)
	}
	if n, _ := strconv.Atoi(os.Getenv("MESHLENS_EVAL_SEEDS")); n > 0 {
		// Paired comparison over calibration seeds (common random numbers:
		// every limiter sees the same service times, see Simulate).
		below, worst := 0, 0.0
		for _, seed := range []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 23} {
			cfg := OverloadConfig{Chain: DefaultChain(), Deadline: 1, Seed: seed}
			rc, err := Calibrate(cfg)
			if err != nil || rc == nil {
				t.Fatalf("seed %d: no rate limit: %v", seed, err)
			}
			for _, step := range []float64{1.4, 2} {
				o := RunOverload(cfg, rc, step)
				d := o.Recommended - max(o.Gradient, o.AIMD)
				if d < 0 {
					below++
					worst = min(worst, d)
				}
				fmt.Fprintf(&b, "  seed %2d step %.1f×: limit %.1f req/s, %d in flight | recommended %.2f | Gradient2 %.2f | AIMD %.2f | recommended − best %+.2f\n",
					seed, step, rc.Recommended.RatePerSecond, rc.Recommended.MaxConcurrency, o.Recommended, o.Gradient, o.AIMD, d)
			}
		}
		fmt.Fprintf(&b, "  12 seeds × 2 steps: recommended below the best adaptive limiter in %d runs, by at most %.2f req/s\n", below, -worst)
	}
	rs, err := RunRetryStorm(5)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&b, "\nRETRY STORM (downstream fails 100%%, 200 req/s, fast 503s)\n")
	fmt.Fprintf(&b, "  recommended: %d retries on %q, budget %.0f%% (min %d)\n", rs.Policy.Retries, rs.Policy.RetryOn, rs.Policy.RetryBudgetPercent, rs.Policy.MinRetryConcurrency)
	fmt.Fprintf(&b, "  recommended backoff %.1f ms\n", rs.Policy.BackoffMs)
	fmt.Fprintf(&b, "  attempts per request: Istio default %.2f×, recommended without budget %.2f×, with Envoy's concurrency budget %.2f×, with a rate budget %.2f×\n",
		rs.IstioDefault, rs.NoBudget, rs.EnvoyBudget, rs.RateBudg)
	worst := 0.0
	for seed := uint64(1); seed <= 10; seed++ {
		x, err := RunRetryStorm(seed)
		if err != nil || x == nil {
			t.Fatalf("seed %d: no retry recommendation: %v", seed, err)
		}
		worst = max(worst, x.EnvoyBudget)
	}
	fmt.Fprintf(&b, "  seeds 1–10: worst amplification with Envoy's budget %.3f×\n", worst)
	t.Log(b.String())
}
