package redmetrics

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/meshlens/meshlens/model"
	"github.com/meshlens/meshlens/processors/spancalls"
)

// TestTenantLabel: every series of a tenant's calls carries tenant="<id>",
// the same call of two tenants makes two series, and one tenant's access
// logs do not suppress another tenant's span-derived calls.
func TestTenantLabel(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	a := New(DefaultConfig(), s, nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx := context.Background()
	la := call("productpage", "reviews", model.DetectServer, 200, 10*time.Millisecond)
	la.Tenant = "team-a"
	sb := la
	sb.Tenant, sb.Origin = "team-b", model.OriginSpan // team-b only sends spans
	untenanted := call("productpage", "ratings", model.DetectServer, 200, 10*time.Millisecond)
	_ = a.ConsumeCalls(ctx, []model.Call{la, la, sb, untenanted})
	_ = a.ConsumeSpanMetrics(ctx,
		[]spancalls.SpanMetric{{Tenant: "team-b", ServiceName: "reviews", SpanName: "GET", SpanKind: "SPAN_KIND_SERVER", StatusCode: "STATUS_CODE_UNSET", Duration: time.Millisecond}},
		[]spancalls.GraphEdge{{Tenant: "team-b", Client: "productpage", Server: "reviews", ServerDuration: time.Millisecond}})
	ts := time.Now().Truncate(time.Second)
	if err := a.Flush(ctx, ts); err != nil {
		t.Fatal(err)
	}
	for q, want := range map[string]float64{
		`sum(istio_requests_total{tenant="team-a",destination_service_name="reviews"})`:                   2,
		`sum(istio_requests_total{tenant="team-b",destination_service_name="reviews"})`:                   1,
		`sum(meshlens_service_calls_total{tenant="team-a",service="reviews"})`:                            2,
		`sum(meshlens_service_relation_calls_total{tenant="team-b"})`:                                     1,
		`sum(traces_span_metrics_calls_total{tenant="team-b"})`:                                           1,
		`sum(traces_service_graph_request_total{tenant="team-b",server="reviews"})`:                       1,
		`sum(traces_service_graph_request_total{tenant="team-a",server="reviews"})`:                       2, // both access logs
		`count({__name__=~"istio_requests_total|meshlens_service_calls_total",tenant=""})`:                2, // the untenanted call: no label
		`count({__name__=~".+",tenant!~"team-a|team-b",destination_service_name="reviews"}) or vector(0)`: 0,
	} {
		if got := scalarOf(t, instant(t, s, q, ts), q); got != want {
			t.Errorf("%s = %v, want %v", q, got, want)
		}
	}
}
