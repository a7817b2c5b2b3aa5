package recommend

import (
	"strings"
	"testing"
)

func TestRenderIstioYAMLRoundTrip(t *testing.T) {
	recs := []Recommendation{
		{ID: "timeout:productpage.default->reviews.default", Kind: KindTimeout, Service: "reviews.default",
			Edge:        &Edge{Source: "productpage.default", Destination: "reviews.default"},
			Recommended: &Setting{TimeoutMs: 250}, Evidence: &Evidence{P99Ms: 120}},
		{ID: "retry:productpage.default->reviews.default", Kind: KindRetry, Service: "reviews.default",
			Edge: &Edge{Source: "productpage.default", Destination: "reviews.default"},
			Recommended: &Setting{Retries: 1, PerTryTimeoutMs: 120, BackoffMs: 25, RetryOn: "connect-failure,503",
				RetryBudgetPercent: 20, MinRetryConcurrency: 3}, Evidence: &Evidence{ErrorRate: 0.01}},
		{ID: "ratelimit:reviews.default", Kind: KindRateLimit, Service: "reviews.default",
			Recommended: &Setting{RatePerSecond: 80, Burst: 16, MaxConcurrency: 12}},
	}
	b, err := RenderIstioYAML(recs)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"kind: VirtualService", "kind: DestinationRule", "kind: EnvoyFilter", "sourceLabels", "retryBudget", "envoy.filters.http.local_ratelimit"} {
		if !strings.Contains(string(b), want) {
			t.Fatalf("rendered YAML lacks %q:\n%s", want, b)
		}
	}
	c := NewCurrentConfig()
	if err := c.AddYAML(b, "rendered"); err != nil {
		t.Fatalf("rendered YAML does not parse back: %v\n%s", err, b)
	}
	r := c.Routes["reviews.default"]
	if r == nil || r.Timeout.Milliseconds() != 250 || r.Retries != 1 || r.PerTryTimeout.Milliseconds() != 120 {
		t.Fatalf("route read back: %+v\n%s", r, b)
	}
	if p := c.Policies["reviews.default"]; p == nil || p.RetryBudgetPercent != 20 || !p.HasOutlierDetection || p.HTTP2MaxRequests != 12 {
		t.Fatalf("policy read back: %+v", p)
	}
	if l := c.Limits["reviews.default"]; l == nil || l.RatePerSecond != 80 {
		t.Fatalf("limit read back: %+v", l)
	}
	// Applying the recommendations leaves nothing to diff.
	if d := DiffConfig(c, recs); len(d) != 0 {
		t.Fatalf("diff after applying: %+v", d)
	}
	if d := DiffConfig(NewCurrentConfig(), recs); len(d) < 4 || !strings.Contains(FormatDiff(d), "+  http[from productpage.default].timeout: 250ms") {
		t.Fatalf("diff against defaults:\n%s", FormatDiff(d))
	}
}
