package e2e

import (
	"fmt"
	"testing"
	"time"
)

// TestDemoServesBookinfo is the README's promise: after `serve --demo`, the
// Prometheus API lists every Bookinfo service with a non-zero request rate.
func TestDemoServesBookinfo(t *testing.T) {
	in := start(t, t.TempDir(), "--demo", "--demo.rate=50", "--processors.metrics.flush_interval=1s")
	want := []string{"productpage", "details", "reviews", "ratings"}
	eventually(t, 45*time.Second, "every Bookinfo service has traffic", func() (bool, string) {
		res := in.query(`sum(rate(istio_requests_total[1m])) by (destination_service_name)`)
		rates := map[string]float64{}
		for _, s := range res {
			rates[s.Metric["destination_service_name"]] = s.float(t)
		}
		for _, w := range want {
			if rates[w] <= 0 {
				return false, fmt.Sprintf("rates %v", rates)
			}
		}
		return true, ""
	})
	// Both sides of the mesh report: the client side names its callee.
	eventually(t, 30*time.Second, "client-side reports resolve the destination", func() (bool, string) {
		res := in.query(`sum(rate(istio_requests_total{reporter="source",source_canonical_service="productpage"}[1m])) by (destination_service_name)`)
		got := map[string]bool{}
		for _, s := range res {
			got[s.Metric["destination_service_name"]] = s.float(t) > 0
		}
		return got["reviews"] && got["details"], fmt.Sprintf("%v", got)
	})
}
