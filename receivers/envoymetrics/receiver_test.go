package envoymetrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	metricsv3 "github.com/envoyproxy/go-control-plane/envoy/service/metrics/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshlens/meshlens/pipeline"
)

func openTSDB(t *testing.T) *tsdb.DB {
	t.Helper()
	opts := tsdb.DefaultOptions()
	opts.OutOfOrderTimeWindow = 0
	db, err := tsdb.Open(t.TempDir(), nil, nil, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func startServer(t *testing.T, r *Receiver) metricsv3.MetricsServiceClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	r.Register(srv)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return metricsv3.NewMetricsServiceClient(conn)
}

func istioNode(t testing.TB, pod, ns, app string) *corev3.Node {
	md, err := structpb.NewStruct(map[string]any{
		"NAME":          pod,
		"NAMESPACE":     ns,
		"WORKLOAD_NAME": app + "-v1",
		"LABELS":        map[string]any{"app": app, "service.istio.io/canonical-name": app, "version": "v1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return &corev3.Node{
		Id:       "sidecar~10.1.2.3~" + pod + "." + ns + "~" + ns + ".svc.cluster.local",
		Cluster:  app + "." + ns,
		Metadata: md,
	}
}

func counter(name string, v float64, ts int64) *dto.MetricFamily {
	return &dto.MetricFamily{Name: proto.String(name), Type: dto.MetricType_COUNTER.Enum(),
		Metric: []*dto.Metric{{Counter: &dto.Counter{Value: proto.Float64(v)}, TimestampMs: proto.Int64(ts)}}}
}

func gauge(name string, v float64, ts int64) *dto.MetricFamily {
	return &dto.MetricFamily{Name: proto.String(name), Type: dto.MetricType_GAUGE.Enum(),
		Metric: []*dto.Metric{{Gauge: &dto.Gauge{Value: proto.Float64(v)}, TimestampMs: proto.Int64(ts)}}}
}

func histogram(name string, ts int64) *dto.MetricFamily {
	return &dto.MetricFamily{Name: proto.String(name), Type: dto.MetricType_HISTOGRAM.Enum(),
		Metric: []*dto.Metric{{TimestampMs: proto.Int64(ts), Histogram: &dto.Histogram{
			SampleCount: proto.Uint64(10), SampleSum: proto.Float64(123.5),
			Bucket: []*dto.Bucket{
				{UpperBound: proto.Float64(0.5), CumulativeCount: proto.Uint64(1)},
				{UpperBound: proto.Float64(10), CumulativeCount: proto.Uint64(6)},
				{UpperBound: proto.Float64(100), CumulativeCount: proto.Uint64(9)},
			}}}}}
}

func summary(name string, ts int64) *dto.MetricFamily {
	return &dto.MetricFamily{Name: proto.String(name), Type: dto.MetricType_SUMMARY.Enum(),
		Metric: []*dto.Metric{{TimestampMs: proto.Int64(ts), Summary: &dto.Summary{
			SampleCount: proto.Uint64(4), SampleSum: proto.Float64(20),
			Quantile: []*dto.Quantile{{Quantile: proto.Float64(0.5), Value: proto.Float64(4)}, {Quantile: proto.Float64(0.99), Value: proto.Float64(9)}},
		}}}}
}

func query(t *testing.T, db storage.Queryable, q string, at time.Time) promql.Vector {
	t.Helper()
	eng := promql.NewEngine(promql.EngineOpts{MaxSamples: 100000, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	qry, err := eng.NewInstantQuery(context.Background(), db, nil, q, at)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	res := qry.Exec(context.Background())
	if res.Err != nil {
		t.Fatalf("%s: %v", q, res.Err)
	}
	v, err := res.Vector()
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return v
}

func queryOne(t *testing.T, db storage.Queryable, q string, at time.Time) float64 {
	t.Helper()
	v := query(t, db, q, at)
	if len(v) != 1 {
		t.Fatalf("%s: %d results, want 1: %v", q, len(v), v)
	}
	return v[0].F
}

func TestStreamMetricsIntoTSDB(t *testing.T) {
	db := openTSDB(t)
	reg := prometheus.NewRegistry()
	r := New(Config{}, db, pipeline.NewTelemetry(reg), nil)
	client := startServer(t, r)

	now := time.Now().Truncate(time.Second)
	ts1 := now.Add(-10 * time.Second).UnixMilli()
	ts2 := now.Add(-5 * time.Second).UnixMilli()

	stream, err := client.StreamMetrics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	const cluster = "outbound|9080||reviews.default.svc.cluster.local"
	send := func(m *metricsv3.StreamMetricsMessage) {
		t.Helper()
		if err := stream.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	send(&metricsv3.StreamMetricsMessage{
		Identifier: &metricsv3.StreamMetricsMessage_Identifier{Node: istioNode(t, "productpage-v1-7d8f", "default", "productpage")},
		EnvoyMetrics: []*dto.MetricFamily{
			counter("cluster."+cluster+".upstream_rq_total", 100, ts1),
			counter("cluster."+cluster+".upstream_rq_503", 3, ts1),
			gauge("server.live", 1, ts1),
			histogram("cluster."+cluster+".upstream_rq_time", ts1),
			summary("listener.0.0.0.0_15006.downstream_cx_length_ms", ts1),
			counter("istiocustom.istio_requests_total.reporter=.=source;.;destination_service=.=reviews.default.svc.cluster.local;.;response_code=.=200;.;", 42, ts1),
			{Name: proto.String("cluster.bad.upstream_rq_total"), Type: dto.MetricType_COUNTER.Enum(), Metric: []*dto.Metric{{}}},
		},
	})
	send(&metricsv3.StreamMetricsMessage{EnvoyMetrics: []*dto.MetricFamily{
		counter("cluster."+cluster+".upstream_rq_total", 160, ts2),
	}})
	if _, err := stream.CloseAndRecv(); err != nil {
		t.Fatal(err)
	}

	at := now
	if v := queryOne(t, db, `envoy_cluster_upstream_rq_total{envoy_cluster_name="`+cluster+`",service="productpage"}`, at); v != 160 {
		t.Errorf("upstream_rq_total = %v, want 160", v)
	}
	if v := queryOne(t, db, `increase(envoy_cluster_upstream_rq_total{service="productpage",namespace="default",instance="productpage-v1-7d8f",workload="productpage-v1"}[1m])`, at); v <= 0 {
		t.Errorf("increase = %v", v)
	}
	if v := queryOne(t, db, `envoy_cluster_upstream_rq{envoy_response_code="503"}`, at); v != 3 {
		t.Errorf("upstream_rq{503} = %v", v)
	}
	if v := queryOne(t, db, `envoy_server_live{service="productpage"}`, at); v != 1 {
		t.Errorf("server_live = %v", v)
	}
	if v := queryOne(t, db, `envoy_cluster_upstream_rq_time_bucket{le="+Inf"}`, at); v != 10 {
		t.Errorf("+Inf bucket = %v", v)
	}
	if v := queryOne(t, db, `envoy_cluster_upstream_rq_time_bucket{le="10.0"}`, at); v != 6 {
		t.Errorf("le=10 bucket = %v", v)
	}
	if v := queryOne(t, db, `envoy_cluster_upstream_rq_time_sum`, at); v != 123.5 {
		t.Errorf("sum = %v", v)
	}
	if v := queryOne(t, db, `histogram_quantile(0.5, envoy_cluster_upstream_rq_time_bucket)`, at); v <= 0.5 || v > 10 {
		t.Errorf("p50 = %v", v)
	}
	if v := queryOne(t, db, `envoy_listener_downstream_cx_length_ms{quantile="0.99",envoy_listener_address="0.0.0.0_15006"}`, at); v != 9 {
		t.Errorf("summary p99 = %v", v)
	}
	if v := queryOne(t, db, `envoy_listener_downstream_cx_length_ms_count`, at); v != 4 {
		t.Errorf("summary count = %v", v)
	}
	if v := queryOne(t, db, `istio_requests_total{reporter="source",response_code="200",destination_service="reviews.default.svc.cluster.local",service="productpage"}`, at); v != 42 {
		t.Errorf("istio_requests_total = %v", v)
	}
	if v := query(t, db, `{__name__=~"envoy_cluster_upstream_rq_total",envoy_cluster_name="bad"}`, at); len(v) != 0 {
		t.Errorf("malformed counter stored: %v", v)
	}

	const want = `
# HELP meshlens_receiver_refused_items_total Items a receiver refused, by reason (malformed, overloaded, shutting_down, ...).
# TYPE meshlens_receiver_refused_items_total counter
meshlens_receiver_refused_items_total{reason="malformed",receiver="envoymetrics",transport="grpc"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "meshlens_receiver_refused_items_total"); err != nil {
		t.Error(err)
	}
}

func TestStreamWithoutNodeRefused(t *testing.T) {
	r := New(Config{}, openTSDB(t), nil, nil)
	client := startServer(t, r)
	stream, err := client.StreamMetrics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	_ = stream.Send(&metricsv3.StreamMetricsMessage{EnvoyMetrics: []*dto.MetricFamily{counter("server.live", 1, 0)}})
	_, err = stream.CloseAndRecv()
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "identifier.node") {
		t.Fatalf("err = %v", err)
	}
}

func TestReceiveTimeWhenNoTimestamp(t *testing.T) {
	db := openTSDB(t)
	r := New(Config{}, db, nil, nil)
	fixed := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	r.now = func() time.Time { return fixed }
	client := startServer(t, r)
	stream, _ := client.StreamMetrics(context.Background())
	mf := &dto.MetricFamily{Name: proto.String("server.uptime"), Type: dto.MetricType_GAUGE.Enum(),
		Metric: []*dto.Metric{{Gauge: &dto.Gauge{Value: proto.Float64(7)}}}}
	_ = stream.Send(&metricsv3.StreamMetricsMessage{
		Identifier:   &metricsv3.StreamMetricsMessage_Identifier{Node: &corev3.Node{Id: "edge-1", Cluster: "gateway"}},
		EnvoyMetrics: []*dto.MetricFamily{mf},
	})
	if _, err := stream.CloseAndRecv(); err != nil {
		t.Fatal(err)
	}
	q, _ := db.Querier(0, time.Now().UnixMilli())
	defer q.Close()
	ss := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "envoy_server_uptime"))
	if !ss.Next() {
		t.Fatal("series not stored")
	}
	s := ss.At()
	if s.Labels().Get("service") != "gateway" || s.Labels().Get("instance") != "edge-1" {
		t.Errorf("labels %v", s.Labels())
	}
	it := s.Iterator(nil)
	it.Next()
	if ts, v := it.At(); ts != fixed.UnixMilli() || v != 7 {
		t.Errorf("sample %d %v, want %d 7", ts, v, fixed.UnixMilli())
	}
}

func TestSeriesLimits(t *testing.T) {
	db := openTSDB(t)
	reg := prometheus.NewRegistry()
	r := New(Config{MaxSeriesPerProxy: 3, MaxSeriesTotal: 4}, db, pipeline.NewTelemetry(reg), nil)
	client := startServer(t, r)
	ts := time.Now().UnixMilli()
	open := func(pod string, n int) metricsv3.MetricsService_StreamMetricsClient {
		stream, err := client.StreamMetrics(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var fams []*dto.MetricFamily
		for i := range n {
			fams = append(fams, gauge("server.g"+string(rune('a'+i)), 1, ts))
		}
		if err := stream.Send(&metricsv3.StreamMetricsMessage{
			Identifier:   &metricsv3.StreamMetricsMessage_Identifier{Node: istioNode(t, pod, "ns", "app")},
			EnvoyMetrics: fams,
		}); err != nil {
			t.Fatal(err)
		}
		return stream
	}
	waitSeries := func(n int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			r.limiter.mu.Lock()
			total := r.limiter.total
			r.limiter.mu.Unlock()
			if total == n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("series total %d, want %d", total, n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// Both streams stay open while the other sends: the limits count the
	// series of connected proxies.
	a := open("a", 5) // 3 admitted (per proxy), 2 refused
	waitSeries(3)
	b := open("b", 3) // 1 admitted (total 4), 2 refused
	waitSeries(4)
	for _, s := range []metricsv3.MetricsService_StreamMetricsClient{b, a} {
		if _, err := s.CloseAndRecv(); err != nil {
			t.Fatal(err)
		}
	}
	const want = `
# HELP meshlens_receiver_accepted_items_total Items (log entries, spans, metric samples) accepted by a receiver.
# TYPE meshlens_receiver_accepted_items_total counter
meshlens_receiver_accepted_items_total{receiver="envoymetrics",transport="grpc"} 4
# HELP meshlens_receiver_refused_items_total Items a receiver refused, by reason (malformed, overloaded, shutting_down, ...).
# TYPE meshlens_receiver_refused_items_total counter
meshlens_receiver_refused_items_total{reason="series_limit",receiver="envoymetrics",transport="grpc"} 4
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"meshlens_receiver_accepted_items_total", "meshlens_receiver_refused_items_total"); err != nil {
		t.Error(err)
	}
	// Both streams have ended: their series no longer count.
	if r.limiter.total != 0 || len(r.limiter.proxies) != 0 {
		t.Errorf("limiter not released: total %d, proxies %d", r.limiter.total, len(r.limiter.proxies))
	}
}

type failingAppendable struct{ err error }

func (f failingAppendable) Appender(context.Context) storage.Appender {
	return failingAppender{err: f.err}
}

type failingAppender struct {
	storage.Appender
	err error
}

func (f failingAppender) Append(storage.SeriesRef, labels.Labels, int64, float64) (storage.SeriesRef, error) {
	return 0, f.err
}
func (failingAppender) Rollback() error { return nil }

func TestStorageFailureStatus(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want codes.Code
	}{
		{errors.New("disk full"), codes.Unavailable},
		{fmt.Errorf("head full: %w", pipeline.ErrOverloaded), codes.ResourceExhausted},
	} {
		client := startServer(t, New(Config{}, failingAppendable{err: tt.err}, nil, nil))
		stream, _ := client.StreamMetrics(context.Background())
		_ = stream.Send(&metricsv3.StreamMetricsMessage{
			Identifier:   &metricsv3.StreamMetricsMessage_Identifier{Node: &corev3.Node{Id: "x"}},
			EnvoyMetrics: []*dto.MetricFamily{counter("server.c", 1, 0)},
		})
		_, err := stream.CloseAndRecv()
		if status.Code(err) != tt.want {
			t.Errorf("storage error %v: stream error %v, want %v", tt.err, err, tt.want)
		}
	}
}

func TestProxyFromNode(t *testing.T) {
	tests := []struct {
		name string
		node *corev3.Node
		want proxyIdentity
	}{
		{"istio metadata", istioNode(t, "reviews-v2-abc", "bookinfo", "reviews"),
			proxyIdentity{ID: "sidecar~10.1.2.3~reviews-v2-abc.bookinfo~bookinfo.svc.cluster.local", Service: "reviews", Namespace: "bookinfo", Instance: "reviews-v2-abc", Workload: "reviews-v1"}},
		{"istio id and cluster only", &corev3.Node{Id: "sidecar~10.0.0.1~ratings-v1-x.default~default.svc.cluster.local", Cluster: "ratings.default"},
			proxyIdentity{ID: "sidecar~10.0.0.1~ratings-v1-x.default~default.svc.cluster.local", Service: "ratings", Namespace: "default", Instance: "ratings-v1-x"}},
		{"plain envoy", &corev3.Node{Id: "edge-1", Cluster: "front-proxy"},
			proxyIdentity{ID: "edge-1", Service: "front-proxy", Instance: "edge-1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := proxyFromNode(tt.node); got != tt.want {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// TestSharedNameCacheKeepsProxyLabels: two proxies send the same stat (so
// the second hits the shared tag-extraction cache); each series carries
// its own proxy's identity.
func TestSharedNameCacheKeepsProxyLabels(t *testing.T) {
	db := openTSDB(t)
	client := startServer(t, New(Config{}, db, nil, nil))
	ts := time.Now().Add(-time.Second).UnixMilli()
	for _, app := range []string{"productpage", "reviews"} {
		stream, err := client.StreamMetrics(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&metricsv3.StreamMetricsMessage{
			Identifier:   &metricsv3.StreamMetricsMessage_Identifier{Node: istioNode(t, app+"-v1-x", "default", app)},
			EnvoyMetrics: []*dto.MetricFamily{counter("cluster.xds-grpc.upstream_cx_total", 5, ts)},
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.CloseAndRecv(); err != nil {
			t.Fatal(err)
		}
	}
	v := query(t, db, `envoy_cluster_upstream_cx_total{envoy_cluster_name="xds-grpc"}`, time.Now())
	got := map[string]string{}
	for _, s := range v {
		got[s.Metric.Get("service")] = s.Metric.Get("instance")
	}
	if len(got) != 2 || got["productpage"] != "productpage-v1-x" || got["reviews"] != "reviews-v1-x" {
		t.Fatalf("series %v", v)
	}
}
