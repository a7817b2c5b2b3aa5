package meshreport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/meshlens/meshlens/model"
	"github.com/meshlens/meshlens/pipeline"
	"github.com/meshlens/meshlens/receivers/meshreport/meshpb"
)

type sink struct {
	mu    sync.Mutex
	calls []model.Call
	err   error
}

func (s *sink) ConsumeCalls(_ context.Context, calls []model.Call) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	s.calls = append(s.calls, calls...)
	return nil
}

func (s *sink) all() []model.Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]model.Call(nil), s.calls...)
}

func startServer(t *testing.T, next pipeline.CallConsumer, tel *pipeline.Telemetry) meshpb.ServiceMeshMetricServiceClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	New(Config{}, next, tel, nil).Register(srv)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return meshpb.NewServiceMeshMetricServiceClient(conn)
}

const t0 = int64(1700000000000)

func httpBatch(ms ...*meshpb.HTTPServiceMeshMetric) *meshpb.ServiceMeshMetrics {
	return &meshpb.ServiceMeshMetrics{Metrics: &meshpb.ServiceMeshMetrics_HttpMetrics{
		HttpMetrics: &meshpb.HTTPServiceMeshMetrics{Metrics: ms}}}
}

func tcpBatch(ms ...*meshpb.TCPServiceMeshMetric) *meshpb.ServiceMeshMetrics {
	return &meshpb.ServiceMeshMetrics{Metrics: &meshpb.ServiceMeshMetrics_TcpMetrics{
		TcpMetrics: &meshpb.TCPServiceMeshMetrics{Metrics: ms}}}
}

func TestCollectOverGRPC(t *testing.T) {
	reg := prometheus.NewRegistry()
	tel := pipeline.NewTelemetry(reg)
	s := &sink{}
	client := startServer(t, s, tel)

	stream, err := client.Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	msgs := []*meshpb.ServiceMeshMetrics{
		httpBatch(
			&meshpb.HTTPServiceMeshMetric{
				StartTime: t0, EndTime: t0 + 42,
				SourceServiceName: "productpage", SourceServiceInstance: "productpage-v1-1",
				DestServiceName: "reviews", DestServiceInstance: "reviews-v2-1",
				Endpoint: "/reviews/0", Latency: 40, ResponseCode: 503, Status: false,
				Protocol: meshpb.Protocol_HTTP, DetectPoint: meshpb.DetectPoint_client,
				TlsMode: "mTLS", InternalErrorCode: "UF,URX",
				SourceInstanceProperties: []*meshpb.KeyStringValuePair{{Key: "namespace", Value: "bookinfo"}},
			},
			// invalid: end before start
			&meshpb.HTTPServiceMeshMetric{StartTime: t0 + 10, EndTime: t0, SourceServiceName: "x", DestServiceName: "y"},
			// invalid: no service names at all
			&meshpb.HTTPServiceMeshMetric{StartTime: t0, EndTime: t0 + 1},
			&meshpb.HTTPServiceMeshMetric{
				StartTime: t0, EndTime: t0 + 5, SourceServiceName: "frontend", DestServiceName: "cart",
				Endpoint: "/hipstershop.CartService/GetCart", ResponseCode: 200, Status: true,
				Protocol: meshpb.Protocol_gRPC, DetectPoint: meshpb.DetectPoint_server, TlsMode: "NONE",
			},
		),
		tcpBatch(&meshpb.TCPServiceMeshMetric{
			StartTime: t0, EndTime: t0 + 2000, SourceServiceName: "reviews", DestServiceName: "mysql",
			DestServiceInstance: "10.0.0.7:3306", DetectPoint: meshpb.DetectPoint_proxy, TlsMode: "TLS",
			InternalErrorCode: "-", ReceivedBytes: 100, SentBytes: 2000,
		}),
	}
	for _, m := range msgs {
		if err := stream.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	// A pre-9.x probe's single ServiceMeshMetric, sent as raw bytes in the
	// same frame type.
	legacy := &meshpb.ServiceMeshMetrics{}
	raw, _ := proto.Marshal(&meshpb.HTTPServiceMeshMetric{
		StartTime: t0, EndTime: t0 + 3, SourceServiceName: "old-probe", DestServiceName: "ratings",
		Endpoint: "/ratings/1", Latency: 3, ResponseCode: 200, Status: true,
	})
	legacy.ProtoReflect().SetUnknown(raw)
	if err := stream.Send(legacy); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.CloseAndRecv(); err != nil {
		t.Fatalf("CloseAndRecv: %v", err)
	}

	got := s.all()
	if len(got) != 4 {
		t.Fatalf("got %d calls, want 4: %+v", len(got), got)
	}
	h := got[0]
	want := model.Call{
		Source:      model.Identity{Service: "productpage", Instance: "productpage-v1-1", Namespace: "bookinfo"},
		Destination: model.Identity{Service: "reviews", Instance: "reviews-v2-1"},
		Endpoint:    "/reviews/0", Path: "/reviews/0",
		Start: time.UnixMilli(t0), Duration: 40 * time.Millisecond,
		StatusCode: 503, GRPCStatus: -1, ResponseFlags: "UF,URX",
		Protocol: model.ProtocolHTTP, TLS: model.TLSMutual, DetectPoint: model.DetectClient,
	}
	if !callEqual(h, want) {
		t.Errorf("http call\n got %+v\nwant %+v", h, want)
	}
	g := got[1]
	if g.Protocol != model.ProtocolGRPC || g.GRPCStatus != 0 || g.DetectPoint != model.DetectServer ||
		g.Endpoint != "/hipstershop.CartService/GetCart" || g.Duration != 5*time.Millisecond || g.TLS != model.TLSNone {
		t.Errorf("grpc call %+v", g)
	}
	tc := got[2]
	if tc.Protocol != model.ProtocolTCP || tc.RequestBytes != 100 || tc.ResponseBytes != 2000 ||
		tc.DetectPoint != model.DetectProxy || tc.TLS != model.TLSSimple || tc.ResponseFlags != "" ||
		tc.Duration != 2*time.Second || tc.Destination.Instance != "10.0.0.7:3306" || !tc.ConnClosed {
		t.Errorf("tcp call %+v", tc)
	}
	if got[3].Source.Service != "old-probe" || got[3].Endpoint != "/ratings/1" {
		t.Errorf("legacy call %+v", got[3])
	}

	const acc = `
# HELP meshlens_receiver_accepted_items_total Items (log entries, spans, metric samples) accepted by a receiver.
# TYPE meshlens_receiver_accepted_items_total counter
meshlens_receiver_accepted_items_total{receiver="meshreport",transport="grpc"} 4
# HELP meshlens_receiver_refused_items_total Items a receiver refused, by reason (malformed, overloaded, shutting_down, ...).
# TYPE meshlens_receiver_refused_items_total counter
meshlens_receiver_refused_items_total{reason="malformed",receiver="meshreport",transport="grpc"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(acc),
		"meshlens_receiver_accepted_items_total", "meshlens_receiver_refused_items_total"); err != nil {
		t.Error(err)
	}
}

func callEqual(a, b model.Call) bool {
	return a.Start.Equal(b.Start) && func() bool { a.Start, b.Start = time.Time{}, time.Time{}; return a == b }()
}

func TestCollectOverloaded(t *testing.T) {
	s := &sink{err: fmt.Errorf("queue full: %w", pipeline.ErrOverloaded)}
	client := startServer(t, s, nil)
	stream, err := client.Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	_ = stream.Send(httpBatch(&meshpb.HTTPServiceMeshMetric{SourceServiceName: "a", DestServiceName: "b"}))
	_, err = stream.CloseAndRecv()
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("err = %v, want RESOURCE_EXHAUSTED", err)
	}
}

func TestConvertRejectsNamingField(t *testing.T) {
	now := time.UnixMilli(t0)
	tests := []struct {
		name  string
		m     *meshpb.HTTPServiceMeshMetric
		field string
	}{
		{"no names", &meshpb.HTTPServiceMeshMetric{}, "sourceServiceName/destServiceName"},
		{"end before start", &meshpb.HTTPServiceMeshMetric{SourceServiceName: "a", StartTime: t0 + 1, EndTime: t0}, "endTime"},
		{"negative latency", &meshpb.HTTPServiceMeshMetric{SourceServiceName: "a", Latency: -1}, "latency"},
		{"bad protocol", &meshpb.HTTPServiceMeshMetric{SourceServiceName: "a", Protocol: 9}, "protocol"},
		{"bad detect point", &meshpb.HTTPServiceMeshMetric{SourceServiceName: "a", DetectPoint: 5}, "detectPoint"},
		{"bad code", &meshpb.HTTPServiceMeshMetric{SourceServiceName: "a", ResponseCode: 7000}, "responseCode"},
		{"far future", &meshpb.HTTPServiceMeshMetric{SourceServiceName: "a", StartTime: 1 << 60}, "startTime"},
		{"long name", &meshpb.HTTPServiceMeshMetric{SourceServiceName: strings.Repeat("a", maxFieldLen+1)}, "sourceServiceName"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c model.Call
			err := convertHTTP(tt.m, now, &c)
			var ie *invalidError
			if !errors.As(err, &ie) || ie.field != tt.field {
				t.Fatalf("err = %v, want invalid %s", err, tt.field)
			}
		})
	}
}

func TestConvertValues(t *testing.T) {
	now := time.UnixMilli(t0 + 60000)
	tests := []struct {
		name  string
		m     *meshpb.HTTPServiceMeshMetric
		check func(c model.Call) bool
	}{
		{"only dest name kept, source left for identity resolution",
			&meshpb.HTTPServiceMeshMetric{DestServiceName: "reviews", DetectPoint: meshpb.DetectPoint_server},
			func(c model.Call) bool { return c.Source.Service == "" && c.Destination.Service == "reviews" }},
		{"no timestamps: receive time",
			&meshpb.HTTPServiceMeshMetric{SourceServiceName: "a", Latency: 10},
			func(c model.Call) bool {
				return c.Start.Equal(now.Add(-10*time.Millisecond)) && c.Duration == 10*time.Millisecond
			}},
		{"end only: start = end - latency",
			&meshpb.HTTPServiceMeshMetric{SourceServiceName: "a", EndTime: t0, Latency: 10},
			func(c model.Call) bool { return c.Start.Equal(time.UnixMilli(t0 - 10)) }},
		{"latency from timestamps",
			&meshpb.HTTPServiceMeshMetric{SourceServiceName: "a", StartTime: t0, EndTime: t0 + 250},
			func(c model.Call) bool { return c.Duration == 250*time.Millisecond }},
		{"failed grpc is an error",
			&meshpb.HTTPServiceMeshMetric{SourceServiceName: "a", Protocol: meshpb.Protocol_gRPC, ResponseCode: 200},
			func(c model.Call) bool { return c.GRPCStatus == grpcUnknown && c.IsError() }},
		{"tls strings", &meshpb.HTTPServiceMeshMetric{SourceServiceName: "a", TlsMode: "mtls"},
			func(c model.Call) bool { return c.TLS == model.TLSMutual }},
		{"unknown tls string is none", &meshpb.HTTPServiceMeshMetric{SourceServiceName: "a", TlsMode: "weird"},
			func(c model.Call) bool { return c.TLS == model.TLSNone }},
		{"properties", &meshpb.HTTPServiceMeshMetric{SourceServiceName: "a",
			DestInstanceProperties: []*meshpb.KeyStringValuePair{{Key: "namespace", Value: "ns"}, {Key: "version", Value: "v3"}, {Key: "pod", Value: "p-1"}}},
			func(c model.Call) bool {
				return c.Destination.Namespace == "ns" && c.Destination.Version == "v3" && c.Destination.Instance == "p-1"
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c model.Call
			if err := convertHTTP(tt.m, now, &c); err != nil {
				t.Fatal(err)
			}
			if !tt.check(c) {
				t.Fatalf("unexpected call %+v", c)
			}
		})
	}
}

func TestConvertTCPRejectsNegativeBytes(t *testing.T) {
	var c model.Call
	err := convertTCP(&meshpb.TCPServiceMeshMetric{SourceServiceName: "a", SentBytes: -1}, time.Now(), &c)
	var ie *invalidError
	if !errors.As(err, &ie) || ie.field != "sentBytes" {
		t.Fatalf("err = %v", err)
	}
}

func TestBatchLimit(t *testing.T) {
	s := &sink{}
	r := New(Config{MaxMetricsPerMessage: 2}, s, nil, nil)
	m := httpBatch(&meshpb.HTTPServiceMeshMetric{SourceServiceName: "a"}, &meshpb.HTTPServiceMeshMetric{SourceServiceName: "a"}, &meshpb.HTTPServiceMeshMetric{SourceServiceName: "a"})
	if _, err := r.convert(m, nil); err == nil || !strings.Contains(err.Error(), "limit of 2") {
		t.Fatalf("err = %v", err)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestInvalidMetricLoggedWithField(t *testing.T) {
	var buf syncBuffer
	s := &sink{}
	r := New(Config{}, s, nil, slog.New(slog.NewTextHandler(&buf, nil)))
	calls, err := r.convert(httpBatch(
		&meshpb.HTTPServiceMeshMetric{SourceServiceName: "ok", StartTime: t0, EndTime: t0 + 1},
		&meshpb.HTTPServiceMeshMetric{SourceServiceName: "x", StartTime: t0 + 10, EndTime: t0},
	), nil)
	if err != nil || len(calls) != 1 {
		t.Fatalf("calls %d, err %v", len(calls), err)
	}
	if out := buf.String(); !strings.Contains(out, "metric 1: endTime") || !strings.Contains(out, "before startTime") {
		t.Fatalf("log does not name the field: %s", out)
	}
	// A second bad message within the throttle interval is counted, not logged.
	_, _ = r.convert(httpBatch(&meshpb.HTTPServiceMeshMetric{}), nil)
	if n := strings.Count(buf.String(), "skipped invalid"); n != 1 {
		t.Fatalf("%d warnings logged, want 1 (throttled)", n)
	}
}

func TestEmptyMessageIgnored(t *testing.T) {
	r := New(Config{}, &sink{}, nil, nil)
	calls, err := r.convert(&meshpb.ServiceMeshMetrics{}, nil)
	if err != nil || len(calls) != 0 {
		t.Fatalf("calls %v, err %v", calls, err)
	}
}
