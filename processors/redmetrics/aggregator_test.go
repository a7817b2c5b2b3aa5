package redmetrics

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/tsdb"

	"github.com/meshlens/meshlens/model"
	"github.com/meshlens/meshlens/processors/spancalls"
	"github.com/meshlens/meshlens/storage/metricstore"
)

func openStore(t *testing.T, dir string) *metricstore.Store {
	t.Helper()
	s, err := metricstore.Open(metricstore.Config{Path: dir, Retention: 24 * time.Hour}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func instant(t *testing.T, s *metricstore.Store, q string, ts time.Time) promql.Vector {
	t.Helper()
	eng := promql.NewEngine(promql.EngineOpts{MaxSamples: 1e7, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	qry, err := eng.NewInstantQuery(context.Background(), s, nil, q, ts)
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

func scalarOf(t *testing.T, v promql.Vector, q string) float64 {
	t.Helper()
	if len(v) != 1 {
		t.Fatalf("%s: want 1 sample, got %d: %v", q, len(v), v)
	}
	return v[0].F
}

func call(src, dst string, dp model.DetectPoint, code int, dur time.Duration) model.Call {
	return model.Call{
		Source:      model.Identity{Service: src, Namespace: "default", Workload: src + "-v1", Version: "v1", Instance: src + "-pod"},
		Destination: model.Identity{Service: dst, Namespace: "default", Workload: dst + "-v1", Version: "v1", Instance: dst + "-pod"},
		Endpoint:    "GET:/x",
		Duration:    dur, StatusCode: code, GRPCStatus: -1,
		Protocol: model.ProtocolHTTP, TLS: model.TLSMutual, DetectPoint: dp,
		RequestBytes: 100, ResponseBytes: 2000,
	}
}

func TestAggregatorIstioMetrics(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	cfg := DefaultConfig()
	a := New(cfg, s, nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))

	var calls []model.Call
	// 90 OK calls of 20ms and 10 failures of 300ms reported by the server,
	// the same 100 also reported by the client.
	for i := 0; i < 100; i++ {
		code, d := 200, 20*time.Millisecond
		if i%10 == 0 {
			code, d = 503, 300*time.Millisecond
		}
		calls = append(calls, call("productpage", "reviews", model.DetectServer, code, d))
		calls = append(calls, call("productpage", "reviews", model.DetectClient, code, d))
	}
	if err := a.ConsumeCalls(context.Background(), calls); err != nil {
		t.Fatal(err)
	}
	ts := time.Now().Truncate(time.Second)
	if err := a.Flush(context.Background(), ts); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		q    string
		want float64
	}{
		{`sum(istio_requests_total{reporter="destination",destination_service_name="reviews"})`, 100},
		{`sum(istio_requests_total{reporter="source",connection_security_policy="unknown"})`, 100},
		{`sum(istio_requests_total{reporter="destination",connection_security_policy="mutual_tls"})`, 100},
		{`sum(istio_requests_total{reporter="destination",response_code="503"})`, 10},
		{`sum(istio_request_duration_milliseconds_bucket{reporter="destination",le="25"})`, 90},
		{`sum(istio_request_duration_milliseconds_bucket{reporter="destination",le="+Inf"})`, 100},
		{`sum(istio_request_duration_milliseconds_sum{reporter="destination"})`, 90*20 + 10*300},
		{`sum(istio_request_bytes_sum{reporter="destination"})`, 100 * 100},
		{`sum(istio_response_bytes_count{reporter="destination"})`, 100},
		{`sum(meshlens_service_calls_total{service="reviews",detect_point="server"})`, 100},
		{`sum(meshlens_service_errors_total{service="reviews",detect_point="server"})`, 10},
		{`sum(meshlens_service_apdex_satisfied_total{service="reviews",detect_point="server"})`, 90},
		{`sum(meshlens_service_relation_calls_total{source_service="productpage",destination_service="reviews",detect_point="client",tls="mtls"})`, 100},
		{`sum(meshlens_instance_relation_calls_total{source_instance="productpage-pod",destination_instance="reviews-pod",detect_point="server"})`, 100},
		{`sum(meshlens_endpoint_calls_total{endpoint="GET:/x",detect_point="server"})`, 100},
		// Reported from both sides, counted once.
		{`sum(traces_service_graph_request_total{client="productpage",server="reviews"})`, 100},
		{`sum(traces_service_graph_request_failed_total{client="productpage",server="reviews"})`, 10},
		{`sum(traces_service_graph_request_client_seconds_count{client="productpage",server="reviews"})`, 100},
	}
	for _, c := range cases {
		if got := scalarOf(t, instant(t, s, c.q, ts), c.q); got != c.want {
			t.Errorf("%s = %v, want %v", c.q, got, c.want)
		}
	}
	// The 0.5 quantile lies in the (10, 25] bucket.
	q := `histogram_quantile(0.5, sum by (le) (istio_request_duration_milliseconds_bucket{reporter="destination"}))`
	if got := scalarOf(t, instant(t, s, q, ts), q); got <= 10 || got > 25 {
		t.Errorf("%s = %v, want within (10,25]", q, got)
	}
	// TCP metrics have no response_code.
	tcp := call("ratings", "mongodb", model.DetectClient, 0, time.Second)
	tcp.Protocol, tcp.RequestBytes, tcp.ResponseBytes = model.ProtocolTCP, 10, 20
	_ = a.ConsumeCalls(context.Background(), []model.Call{tcp})
	ts2 := ts.Add(10 * time.Second)
	if err := a.Flush(context.Background(), ts2); err != nil {
		t.Fatal(err)
	}
	q = `sum(istio_tcp_sent_bytes_total{destination_service_name="mongodb"})`
	if got := scalarOf(t, instant(t, s, q, ts2), q); got != 20 {
		t.Errorf("%s = %v, want 20", q, got)
	}
	q = `count(istio_tcp_connections_opened_total{response_code!=""})`
	if v := instant(t, s, q, ts2); len(v) != 0 {
		t.Errorf("TCP series carry response_code: %v", v)
	}
}

func TestAggregatorRestoresCounters(t *testing.T) {
	dir := t.TempDir()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	ts := time.Now().Truncate(time.Second).Add(-time.Minute)
	{
		s := openStore(t, dir)
		a := New(DefaultConfig(), s, nil, nil, logger)
		_ = a.ConsumeCalls(context.Background(), []model.Call{call("a", "b", model.DetectServer, 200, time.Millisecond)})
		if err := a.Flush(context.Background(), ts); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	s := openStore(t, dir)
	defer s.Close()
	restore, err := s.LastValues(context.Background(), SeriesPattern, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	a := New(DefaultConfig(), s, restore, nil, logger)
	_ = a.ConsumeCalls(context.Background(), []model.Call{call("a", "b", model.DetectServer, 200, time.Millisecond)})
	ts2 := ts.Add(10 * time.Second)
	if err := a.Flush(context.Background(), ts2); err != nil {
		t.Fatal(err)
	}
	for q, want := range map[string]float64{
		`sum(istio_requests_total)`:                               2,
		`sum(istio_request_duration_milliseconds_bucket{le="1"})`: 2,
		`sum(meshlens_service_calls_total)`:                       2,
	} {
		if got := scalarOf(t, instant(t, s, q, ts2), q); got != want {
			t.Errorf("after restart %s = %v, want %v", q, got, want)
		}
	}
	// And the counter never went down: no reset seen by PromQL.
	q := `resets(istio_requests_total[5m])`
	if got := scalarOf(t, instant(t, s, q, ts2), q); got != 0 || math.IsNaN(got) {
		t.Errorf("%s = %v, want 0", q, got)
	}
}

func TestFamilyCap(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	cfg := DefaultConfig()
	cfg.MaxSeriesPerFamily = 5
	a := New(cfg, s, nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	var calls []model.Call
	for i := 0; i < 50; i++ {
		c := call("a", "b", model.DetectServer, 200+i, time.Millisecond)
		calls = append(calls, c)
	}
	_ = a.ConsumeCalls(context.Background(), calls)
	if n := len(a.fam.istioHTTP.m); n != 5 {
		t.Errorf("istio family holds %d entities, want the cap 5", n)
	}
	if a.fam.istioHTTP.overflow != 45 {
		t.Errorf("overflow = %d, want 45", a.fam.istioHTTP.overflow)
	}
}

func BenchmarkAggregateCalls(b *testing.B) {
	a := New(DefaultConfig(), nil, nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	calls := make([]model.Call, 0, 64)
	svcs := []string{"productpage", "reviews", "ratings", "details"}
	for i := 0; i < 64; i++ {
		c := call(svcs[i%4], svcs[(i+1)%4], model.DetectPoint(i%2), 200+(i%3)*100, time.Duration(i)*time.Millisecond)
		calls = append(calls, c)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_ = a.ConsumeCalls(context.Background(), calls)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(calls)), "ns/call")
}

func TestMetadataCoversEveryFamily(t *testing.T) {
	md := Metadata()
	for name, want := range map[string]string{
		"istio_requests_total":                        "counter",
		"istio_request_duration_milliseconds":         "histogram",
		"meshlens_endpoint_relation_calls_total":      "counter",
		"meshlens_service_latency_milliseconds":       "histogram",
		"traces_service_graph_request_server_seconds": "histogram",
	} {
		m, ok := md[name]
		if !ok || m.Type != want || m.Help == "" {
			t.Errorf("metadata[%s] = %+v, want type %s with help", name, m, want)
		}
	}
}

func TestSpansDoNotDoubleCountLoggedServices(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	a := New(DefaultConfig(), s, nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx := context.Background()
	logged := call("productpage", "reviews", model.DetectServer, 200, 10*time.Millisecond)
	spanSame := logged
	spanSame.Origin = model.OriginSpan
	spanOther := call("frontend", "checkout", model.DetectServer, 200, 10*time.Millisecond)
	spanOther.Origin = model.OriginSpan
	_ = a.ConsumeCalls(ctx, []model.Call{logged, spanSame, spanOther})
	_ = a.ConsumeSpanMetrics(ctx,
		[]spancalls.SpanMetric{{ServiceName: "checkout", SpanName: "GET /cart", SpanKind: "SPAN_KIND_SERVER", StatusCode: "STATUS_CODE_UNSET", Duration: 30 * time.Millisecond}},
		[]spancalls.GraphEdge{
			{Client: "frontend", Server: "checkout", ClientDuration: 40 * time.Millisecond, ServerDuration: 30 * time.Millisecond},
			// Istio span names: covered by the access logs of "reviews".
			{Client: "productpage.default", Server: "reviews.default", ServerDuration: 10 * time.Millisecond},
		})
	ts := time.Now().Truncate(time.Second)
	if err := a.Flush(ctx, ts); err != nil {
		t.Fatal(err)
	}
	for q, want := range map[string]float64{
		`sum(istio_requests_total{destination_service_name="reviews"})`:                              1, // the log, not the span
		`sum(istio_requests_total{destination_service_name="checkout"})`:                             1, // traces only: the span counts
		`sum(traces_service_graph_request_total{client="productpage",server="reviews"})`:             1,
		`sum(traces_service_graph_request_total{client="frontend",server="checkout"})`:               1,
		`count(traces_service_graph_request_total{server="reviews.default"}) or vector(0)`:           0,
		`sum(traces_span_metrics_calls_total{service_name="checkout",span_kind="SPAN_KIND_SERVER"})`: 1,
		`sum(traces_span_metrics_duration_milliseconds_bucket{service_name="checkout",le="50"})`:     1,
	} {
		if got := scalarOf(t, instant(t, s, q, ts), q); got != want {
			t.Errorf("%s = %v, want %v", q, got, want)
		}
	}
}

// TestSeriesGrowLinearly checks that the number of series is proportional
// to the mesh's size: for a chain of n services with a fixed number of
// instances and endpoints each, every family grows by the same amount per
// service, and the per-family cap holds when exceeded.
func TestSeriesGrowLinearly(t *testing.T) {
	count := func(n int, capPerFamily int) (int, int) {
		cfg := DefaultConfig()
		cfg.MaxSeriesPerFamily = capPerFamily
		a := New(cfg, nil, nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
		var calls []model.Call
		for s := 0; s < n; s++ {
			for inst := 0; inst < 3; inst++ {
				for ep := 0; ep < 4; ep++ {
					for _, dp := range []model.DetectPoint{model.DetectClient, model.DetectServer} {
						c := call(fmt.Sprintf("svc%d", s), fmt.Sprintf("svc%d", s+1), dp, 200, time.Millisecond)
						c.Source.Instance = fmt.Sprintf("svc%d-%d", s, inst)
						c.Destination.Instance = fmt.Sprintf("svc%d-%d", s+1, inst)
						c.Endpoint = fmt.Sprintf("GET:/op%d", ep)
						calls = append(calls, c)
					}
				}
			}
		}
		_ = a.ConsumeCalls(context.Background(), calls)
		entities, series := 0, 0
		a.fam.each(func(_ string, l *layout, _ func(func(*entity) bool), _ uint64, size int) {
			entities += size
			series += size * l.n
		})
		return entities, series
	}
	_, s10 := count(10, 1_000_000)
	_, s20 := count(20, 1_000_000)
	_, s40 := count(40, 1_000_000)
	if s20-s10 != (s40-s20)/2 {
		t.Errorf("series do not grow linearly: 10 services %d, 20 %d, 40 %d", s10, s20, s40)
	}
	t.Logf("series per service: %d (10 services: %d series)", (s20-s10)/10, s10)
	// With a cap of 50 entities per family, 40 services stay within it.
	e, _ := count(40, 50)
	if e > 50*10 {
		t.Errorf("capped aggregator holds %d entities over 10 families, want at most %d", e, 500)
	}
}

// BenchmarkBytesPerSample writes six hours of 10 s flushes of a small mesh
// through the aggregator, compacts the TSDB head into a block and reports
// the block's bytes per stored sample.
func BenchmarkBytesPerSample(b *testing.B) {
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		s, err := metricstore.Open(metricstore.Config{Path: dir, Retention: 30 * 24 * time.Hour}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
		if err != nil {
			b.Fatal(err)
		}
		a := New(DefaultConfig(), s, nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
		svcs := []string{"productpage", "reviews", "ratings", "details"}
		start := time.Now().Add(-7 * time.Hour).Truncate(10 * time.Second)
		rng := 0
		for step := 0; step < 6*360; step++ {
			var calls []model.Call
			for j := 0; j < 40; j++ {
				rng = (rng*1103515245 + 12345) & 0x7fffffff
				c := call(svcs[j%4], svcs[(j+1)%4], model.DetectPoint(j%2), 200+100*(rng%20/19), time.Duration(rng%300)*time.Millisecond)
				calls = append(calls, c)
			}
			_ = a.ConsumeCalls(context.Background(), calls)
			if err := a.Flush(context.Background(), start.Add(time.Duration(step)*10*time.Second)); err != nil {
				b.Fatal(err)
			}
		}
		head := s.Head()
		if err := s.CompactHead(tsdb.NewRangeHead(head, head.MinTime(), head.MaxTime())); err != nil {
			b.Fatal(err)
		}
		var samples float64
		for _, bl := range s.Blocks() {
			samples += float64(bl.Meta().Stats.NumSamples)
		}
		var bytes int64
		_ = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
			if err == nil && !fi.IsDir() && strings.Contains(p, string(filepath.Separator)+"01") {
				bytes += fi.Size()
			}
			return nil
		})
		b.ReportMetric(float64(bytes)/samples, "bytes/sample")
		b.ReportMetric(samples, "samples")
		_ = s.Close()
	}
}
