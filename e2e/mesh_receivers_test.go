package e2e

import (
	"fmt"
	"testing"
	"time"

	metricsv3 "github.com/envoyproxy/go-control-plane/envoy/service/metrics/v3"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"

	"github.com/meshlens/meshlens/receivers/meshreport/meshpb"
)

// TestServiceMeshMetricReports streams SkyWalking ServiceMeshMetric batches
// (as SkyWalking's mesh probes and Istio adapters send them) to the binary
// and reads the resulting series back through PromQL.
func TestServiceMeshMetricReports(t *testing.T) {
	in := start(t, t.TempDir(), fastFlush)
	ctx := ctxTimeout(t, time.Minute)
	conn := dialALS(t, in.addrs["grpc"])
	stream, err := meshpb.NewServiceMeshMetricServiceClient(conn).Collect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixMilli()
	var http []*meshpb.HTTPServiceMeshMetric
	for i := 0; i < 40; i++ {
		code, ok := int32(200), true
		if i%10 == 0 {
			code, ok = 500, false
		}
		http = append(http, &meshpb.HTTPServiceMeshMetric{
			StartTime: now - 30, EndTime: now,
			SourceServiceName: "frontend", SourceServiceInstance: "frontend-1",
			DestServiceName: "cart", DestServiceInstance: "cart-7",
			Endpoint: "/cart", Latency: 30, ResponseCode: code, Status: ok,
			Protocol: meshpb.Protocol_HTTP, DetectPoint: meshpb.DetectPoint_server, TlsMode: "mTLS",
		})
	}
	// One invalid metric in the batch: rejected alone.
	http = append(http, &meshpb.HTTPServiceMeshMetric{StartTime: now, EndTime: now - 1000, Protocol: meshpb.Protocol_HTTP})
	if err := stream.Send(&meshpb.ServiceMeshMetrics{Metrics: &meshpb.ServiceMeshMetrics_HttpMetrics{
		HttpMetrics: &meshpb.HTTPServiceMeshMetrics{Metrics: http}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.CloseAndRecv(); err != nil {
		t.Fatalf("mesh report stream not acknowledged: %v", err)
	}
	eventually(t, 20*time.Second, "mesh reports stored", func() (bool, string) {
		res := in.query(`sum(istio_requests_total{reporter="destination",source_canonical_service="frontend",destination_service_name="cart"})`)
		if len(res) != 1 {
			return false, "no samples"
		}
		v := res[0].float(t)
		return v == 40, fmt.Sprintf("value %v", v)
	})
	for q, want := range map[string]float64{
		`sum(istio_requests_total{destination_service_name="cart",response_code="500"})`:                          4,
		`sum(istio_requests_total{destination_service_name="cart",connection_security_policy="mutual_tls"})`:      40,
		`sum(meshlens_service_errors_total{service="cart",detect_point="server"})`:                                4,
		`sum(meshlens_instance_relation_calls_total{source_instance="frontend-1",destination_instance="cart-7"})`: 40,
	} {
		if got := in.scalar(q); got != want {
			t.Errorf("%s = %v, want %v", q, got, want)
		}
	}
}

// TestEnvoyMetricsService streams Envoy's own stats over the Metrics Service
// and reads them back under the names Envoy's Prometheus endpoint uses,
// labelled with the proxy's identity.
func TestEnvoyMetricsService(t *testing.T) {
	in := start(t, t.TempDir())
	ctx := ctxTimeout(t, time.Minute)
	conn := dialALS(t, in.addrs["grpc"])
	stream, err := metricsv3.NewMetricsServiceClient(conn).StreamMetrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const cluster = "outbound|9080||reviews.default.svc.cluster.local"
	ts := time.Now().UnixMilli()
	counter := func(name string, v float64) *dto.MetricFamily {
		return &dto.MetricFamily{Name: proto.String(name), Type: dto.MetricType_COUNTER.Enum(),
			Metric: []*dto.Metric{{Counter: &dto.Counter{Value: proto.Float64(v)}, TimestampMs: proto.Int64(ts)}}}
	}
	gauge := &dto.MetricFamily{Name: proto.String("server.memory_allocated"), Type: dto.MetricType_GAUGE.Enum(),
		Metric: []*dto.Metric{{Gauge: &dto.Gauge{Value: proto.Float64(123456)}, TimestampMs: proto.Int64(ts)}}}
	if err := stream.Send(&metricsv3.StreamMetricsMessage{
		Identifier: &metricsv3.StreamMetricsMessage_Identifier{Node: node("productpage-v1-abc", "productpage", "v1", productpageIP)},
		EnvoyMetrics: []*dto.MetricFamily{counter("cluster."+cluster+".upstream_rq_total", 42), gauge,
			counter("istiocustom.istio_requests_total.reporter=.=source;.;destination_service_name=.=reviews;.;response_code=.=200;.;", 7)},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.CloseAndRecv(); err != nil {
		t.Fatalf("metrics stream not acknowledged: %v", err)
	}
	eventually(t, 20*time.Second, "Envoy stats stored", func() (bool, string) {
		res := in.query(`envoy_cluster_upstream_rq_total{envoy_cluster_name="` + cluster + `",service="productpage"}`)
		if len(res) != 1 {
			return false, fmt.Sprintf("%d series", len(res))
		}
		return res[0].float(t) == 42, fmt.Sprintf("value %v", res[0].float(t))
	})
	if got := in.scalar(`envoy_server_memory_allocated{service="productpage",namespace="default",instance="productpage-v1-abc"}`); got != 123456 {
		t.Errorf("envoy_server_memory_allocated = %v, want 123456", got)
	}
	// The proxy's own Istio stats must not add to the istio_* series that
	// meshlens computes from access logs.
	if got := in.scalar(`sum(envoy_istiocustom_istio_requests_total{destination_service_name="reviews"})`); got != 7 {
		t.Errorf("envoy_istiocustom_istio_requests_total = %v, want 7", got)
	}
	if res := in.query(`istio_requests_total`); len(res) != 0 {
		t.Errorf("the proxy's stats were stored as istio_requests_total: %v", res)
	}
}
