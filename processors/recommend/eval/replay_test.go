package eval

import "testing"

func TestReplayFalseTimeoutRate(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the replay generates millions of requests")
	}
	res := sharedReplay(t)
	for _, e := range res.PerEdge {
		if e.TimeoutMs > 0 && (e.Realised < 0.0005 || e.Realised > 0.0015) {
			t.Logf("outside band: %s samples=%d timeout=%.1fms realised=%.3f%% incident=%v", e.Name, e.Samples, e.TimeoutMs, 100*e.Realised, e.Incident)
		}
	}
	t.Logf("adaptive (recomputed every 30 s): recommended %d/%d edges, %.1f%% within ±50%% of target (median ratio %.2f), %d changes; wait on failures: none %.0fs, 15s %.0fs, recommended %.0fs",
		res.Recommended, res.Edges, 100*res.ShareWithinBand, res.MedianRatio, res.Changes, res.WaitNoTimeout, res.Wait15s, res.WaitRecommended)
	if st := res.Static; st != nil {
		t.Logf("train once, same requests: recommended %d, %.1f%% within band, wait reduction %.1f%% / %.1f%%",
			st.Recommended, 100*st.ShareWithinBand, 100*st.ReductionVsNoTimeout, 100*st.ReductionVs15s)
	}
	if res.Recommended < 20 {
		t.Fatalf("only %d edges got a recommendation", res.Recommended)
	}
	if res.ShareWithinBand < 0.95 {
		t.Fatalf("only %.1f%% of recommended edges realise a false-timeout rate within ±50%% of the target (want ≥ 95%%)", 100*res.ShareWithinBand)
	}
	if res.ReductionVs15s < 0.5 || res.ReductionVsNoTimeout < 0.5 {
		t.Fatalf("wait on failing requests dropped only %.0f%% vs 15 s and %.0f%% vs no timeout (want ≥ 50%%)",
			100*res.ReductionVs15s, 100*res.ReductionVsNoTimeout)
	}
	// Edges without enough samples must get no recommendation.
	for _, e := range res.PerEdge {
		if e.TimeoutMs > 0 && e.Samples < 50000 {
			t.Fatalf("%s: recommendation from %d samples", e.Name, e.Samples)
		}
	}
}
