package eval

import "testing"

func TestOverloadGoodput(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the overload simulation takes seconds")
	}
	cfg := OverloadConfig{Chain: DefaultChain(), Deadline: 1, Seed: 7}
	rec, results := sharedOverload(t)
	if rec == nil || rec.Recommended.RatePerSecond <= 0 || rec.Evidence.KneePerSec <= 0 {
		t.Fatalf("no rate limit with a knee recommended for the entry service: %+v", rec)
	}
	t.Logf("capacity %.0f req/s: %s", Capacity(cfg.Chain), rec.Explanation)
	for _, r := range results {
		step := r.Step
		t.Logf("step %.1f×: peak %.0f, recommended %.0f, static(75%% knee) %.0f, gradient %.0f, aimd %.0f, none %.0f",
			step, r.Peak, r.Recommended, r.Static, r.Gradient, r.AIMD, r.NoLimit)
		if r.Recommended < 0.9*r.Peak {
			t.Errorf("step %.1f×: goodput %.0f below 90%% of peak %.0f", step, r.Recommended, r.Peak)
		}
		if r.Recommended < 1.2*r.Static {
			t.Errorf("step %.1f×: goodput %.0f not 20%% above the static limit's %.0f", step, r.Recommended, r.Static)
		}
		// No tolerance: with common random numbers every limiter that
		// keeps the bottleneck busy completes as many requests, so the
		// goodputs are equal counts over the same 120 s, and any shortfall
		// is requests the recommended limits turned away while the
		// bottleneck had room (before the rate ceiling: 0.18 req/s here at
		// 2.0×, the token bucket at the measured capacity running dry).
		if best := max(r.Gradient, r.AIMD); r.Recommended < best {
			t.Errorf("step %.1f×: goodput %.2f below the best adaptive limiter's %.2f", step, r.Recommended, best)
		}
	}
}

func TestRetryAmplificationUnderOutage(t *testing.T) {
	res, err := RunRetryStorm(5)
	if err != nil || res == nil {
		t.Fatalf("no retry recommendation: %v", err)
	}
	t.Logf("policy %+v: amplification without budget %.2f×, Envoy concurrency budget %.2f×, rate budget %.2f×",
		*res.Policy, res.NoBudget, res.EnvoyBudget, res.RateBudg)
	if res.Policy.Retries < 1 || res.Policy.RetryBudgetPercent != 20 {
		t.Fatalf("policy %+v lacks retries or the 20%% budget", *res.Policy)
	}
	// The exported configuration is Envoy's concurrency budget, so that is
	// the one that must hold; the rate budget is the issue's own wording.
	if res.EnvoyBudget > 1.2 {
		t.Errorf("retry amplification %.3f× with Envoy's retry budget under a fully failing downstream (want ≤ 1.2×)", res.EnvoyBudget)
	}
	if res.RateBudg > 1.2 {
		t.Errorf("retry amplification %.3f× with a rate budget under a fully failing downstream (want ≤ 1.2×)", res.RateBudg)
	}
	if res.NoBudget < 1.9 {
		t.Errorf("without a budget the policy retries only %.2f× (want ≈ 2×): the storm does not exercise the budget", res.NoBudget)
	}
}
