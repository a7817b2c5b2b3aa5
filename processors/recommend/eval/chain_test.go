package eval

import "testing"

func TestChainCheckPrecisionRecall(t *testing.T) {
	res, err := RunChainCheck(100, 30, 40, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("seeded %d, detected %d, true positives %d: precision %.3f recall %.3f; by kind %v",
		res.Seeded, res.Detected, res.TruePositives, res.Precision, res.Recall, res.ByKind)
	for _, k := range res.FalsePositives[:min(5, len(res.FalsePositives))] {
		t.Logf("false positive: %s", k)
	}
	for _, k := range res.Missed[:min(5, len(res.Missed))] {
		t.Logf("missed: %s", k)
	}
	if res.Seeded < 100 {
		t.Fatalf("only %d misconfigurations seeded", res.Seeded)
	}
	if res.Precision < 0.9 || res.Recall < 0.8 {
		t.Fatalf("precision %.3f (want ≥ 0.90), recall %.3f (want ≥ 0.80)", res.Precision, res.Recall)
	}
}

func TestRecommendedSettingsConsistent(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short mode: feeds millions of calls")
	}
	res, err := RunChainCheck(200, 2, 30, true)
	if err != nil {
		t.Fatal(err)
	}
	if res.RecommendedEdges < 40 {
		t.Fatalf("only %d edge timeouts recommended", res.RecommendedEdges)
	}
	if res.RecommendedInconsistencies != 0 {
		t.Fatalf("the engine's recommendations have %d inconsistencies", res.RecommendedInconsistencies)
	}
}
