package jaeger

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	jaegermodel "github.com/jaegertracing/jaeger-idl/model/v1"
	"github.com/jaegertracing/jaeger-idl/proto-gen/api_v2"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/meshlens/meshlens/pipeline"
)

type sink struct {
	mu  sync.Mutex
	got []ptrace.Traces
	err error
}

func (s *sink) ConsumeTraces(_ context.Context, td ptrace.Traces) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	s.got = append(s.got, td)
	return nil
}

type flat struct {
	res  map[string]any
	span ptrace.Span
}

func (s *sink) spans() map[string]flat {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]flat{}
	for _, td := range s.got {
		for i := 0; i < td.ResourceSpans().Len(); i++ {
			rs := td.ResourceSpans().At(i)
			for j := 0; j < rs.ScopeSpans().Len(); j++ {
				sp := rs.ScopeSpans().At(j).Spans()
				for k := 0; k < sp.Len(); k++ {
					out[sp.At(k).SpanID().String()] = flat{rs.Resource().Attributes().AsRaw(), sp.At(k)}
				}
			}
		}
	}
	return out
}

func start(t *testing.T, next pipeline.TraceConsumer) api_v2.CollectorServiceClient {
	t.Helper()
	s := grpc.NewServer()
	New(Config{}, next, nil, nil).Register(s)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return api_v2.NewCollectorServiceClient(cc)
}

func sampleBatch(ts time.Time) jaegermodel.Batch {
	tid := jaegermodel.NewTraceID(0xabc, 0xdef)
	other := &jaegermodel.Process{ServiceName: "ratings", Tags: []jaegermodel.KeyValue{jaegermodel.String("hostname", "ratings-v1-xyz")}}
	return jaegermodel.Batch{
		Process: &jaegermodel.Process{ServiceName: "reviews", Tags: []jaegermodel.KeyValue{
			jaegermodel.String("hostname", "reviews-v1-abc"), jaegermodel.Int64("ip", 0x0a000009), jaegermodel.String("jaeger.version", "Go-2.30"),
		}},
		Spans: []*jaegermodel.Span{
			{
				TraceID: tid, SpanID: 0x10, OperationName: "GET /reviews/{id}", StartTime: ts, Duration: 8 * time.Millisecond,
				References: []jaegermodel.SpanRef{{TraceID: tid, SpanID: 0x01, RefType: jaegermodel.SpanRefType_CHILD_OF}},
				Tags: []jaegermodel.KeyValue{
					jaegermodel.String("span.kind", "server"), jaegermodel.Int64("http.status_code", 500),
					jaegermodel.Bool("error", true), jaegermodel.Float64("ratio", 0.5), jaegermodel.Binary("blob", []byte{1, 2}),
				},
				Logs: []jaegermodel.Log{{Timestamp: ts.Add(time.Millisecond), Fields: []jaegermodel.KeyValue{
					jaegermodel.String("event", "retry"), jaegermodel.Int64("attempt", 2),
				}}},
			},
			{
				TraceID: tid, SpanID: 0x11, OperationName: "GET ratings", StartTime: ts.Add(time.Millisecond), Duration: 5 * time.Millisecond,
				References: []jaegermodel.SpanRef{
					{TraceID: jaegermodel.NewTraceID(0, 0x99), SpanID: 0x77, RefType: jaegermodel.SpanRefType_FOLLOWS_FROM},
					{TraceID: tid, SpanID: 0x10, RefType: jaegermodel.SpanRefType_CHILD_OF},
				},
				Tags: []jaegermodel.KeyValue{jaegermodel.String("span.kind", "client"), jaegermodel.String("peer.service", "ratings")},
			},
			{
				TraceID: tid, SpanID: 0x12, OperationName: "GET /ratings", StartTime: ts, Duration: time.Millisecond, Process: other,
				References: []jaegermodel.SpanRef{{TraceID: tid, SpanID: 0x11, RefType: jaegermodel.SpanRefType_FOLLOWS_FROM}},
			},
		},
	}
}

func TestPostSpans(t *testing.T) {
	s := &sink{}
	c := start(t, s)
	ts := time.Unix(1700000000, 5000)
	if _, err := c.PostSpans(context.Background(), &api_v2.PostSpansRequest{Batch: sampleBatch(ts)}); err != nil {
		t.Fatal(err)
	}
	got := s.spans()
	if len(got) != 3 {
		t.Fatalf("%d spans", len(got))
	}
	srv := got["0000000000000010"]
	if srv.res["service.name"] != "reviews" || srv.res["host.name"] != "reviews-v1-abc" || srv.res["net.host.ip"] != "10.0.0.9" || srv.res["jaeger.version"] != "Go-2.30" {
		t.Errorf("resource %v", srv.res)
	}
	sp := srv.span
	if sp.TraceID().String() != "0000000000000abc0000000000000def" || sp.ParentSpanID().String() != "0000000000000001" {
		t.Errorf("ids %s %s", sp.TraceID(), sp.ParentSpanID())
	}
	if sp.Kind() != ptrace.SpanKindServer || sp.Status().Code() != ptrace.StatusCodeError {
		t.Errorf("kind %v status %v", sp.Kind(), sp.Status().Code())
	}
	if _, ok := sp.Attributes().Get("span.kind"); ok {
		t.Error("span.kind kept as attribute")
	}
	if v, _ := sp.Attributes().Get("http.status_code"); v.Int() != 500 {
		t.Errorf("attrs %v", sp.Attributes().AsRaw())
	}
	if v, _ := sp.Attributes().Get("ratio"); v.Double() != 0.5 {
		t.Errorf("attrs %v", sp.Attributes().AsRaw())
	}
	if !sp.StartTimestamp().AsTime().Equal(ts) || sp.EndTimestamp()-sp.StartTimestamp() != 8e6 {
		t.Errorf("timing %v", sp.StartTimestamp())
	}
	if sp.Events().Len() != 1 || sp.Events().At(0).Name() != "retry" {
		t.Errorf("events")
	} else if v, _ := sp.Events().At(0).Attributes().Get("attempt"); v.Int() != 2 {
		t.Errorf("event attrs %v", sp.Events().At(0).Attributes().AsRaw())
	}
	cl := got["0000000000000011"].span
	if cl.Kind() != ptrace.SpanKindClient || cl.ParentSpanID().String() != "0000000000000010" {
		t.Errorf("client kind %v parent %s", cl.Kind(), cl.ParentSpanID())
	}
	if cl.Links().Len() != 1 || cl.Links().At(0).SpanID().String() != "0000000000000077" {
		t.Fatalf("links %d", cl.Links().Len())
	}
	if v, _ := cl.Links().At(0).Attributes().Get(AttrRefType); v.Str() != "follows_from" {
		t.Errorf("link ref type %v", v.Str())
	}
	rt := got["0000000000000012"]
	if rt.res["service.name"] != "ratings" || rt.span.ParentSpanID().String() != "0000000000000011" || rt.span.Kind() != ptrace.SpanKindInternal {
		t.Errorf("span-level process / follows_from parent: %v %s", rt.res, rt.span.ParentSpanID())
	}
}

func TestPostSpansErrors(t *testing.T) {
	s := &sink{}
	c := start(t, s)
	b := sampleBatch(time.Now())
	b.Spans = append(b.Spans, &jaegermodel.Span{SpanID: 5}, &jaegermodel.Span{TraceID: jaegermodel.NewTraceID(0, 1)})
	_, err := c.PostSpans(context.Background(), &api_v2.PostSpansRequest{Batch: b})
	st, _ := status.FromError(err)
	if st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "span[3]: trace_id is zero") || !strings.Contains(st.Message(), "span[4]: span_id is zero") {
		t.Fatalf("got %v", err)
	}
	if n := len(s.spans()); n != 3 {
		t.Errorf("kept %d valid spans, want 3", n)
	}

	for _, tc := range []struct {
		err  error
		code codes.Code
	}{
		{fmt.Errorf("x: %w", pipeline.ErrOverloaded), codes.ResourceExhausted},
		{fmt.Errorf("x: %w", pipeline.ErrShuttingDown), codes.Unavailable},
	} {
		c := start(t, &sink{err: tc.err})
		_, err := c.PostSpans(context.Background(), &api_v2.PostSpansRequest{Batch: sampleBatch(time.Now())})
		if status.Code(err) != tc.code {
			t.Errorf("%v: got %v", tc.err, err)
		}
	}
}

// FuzzBatchToTraces feeds arbitrary bytes through the gogo decoder the
// gRPC server uses and the translation.
func FuzzBatchToTraces(f *testing.F) {
	req := api_v2.PostSpansRequest{Batch: sampleBatch(time.Unix(1700000000, 0))}
	seed, _ := req.Marshal()
	f.Add(seed)
	f.Add([]byte{0x0a, 0x02, 0x0a, 0x00})
	// Times a uint64 nanosecond timestamp cannot hold (they used to wrap).
	for _, ts := range []time.Time{time.Date(1969, 7, 20, 20, 17, 0, 0, time.UTC), time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)} {
		req := api_v2.PostSpansRequest{Batch: sampleBatch(ts)}
		seed, _ := req.Marshal()
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var req api_v2.PostSpansRequest
		if req.Unmarshal(b) != nil {
			return
		}
		td, rejected := BatchToTraces(&req.Batch)
		if td.SpanCount()+len(rejected) != len(req.Batch.Spans) {
			t.Fatalf("%d translated + %d rejected != %d spans", td.SpanCount(), len(rejected), len(req.Batch.Spans))
		}
		// No kept timestamp wrapped: each is in 1970-2262 (fits an int64,
		// which pcommon.Timestamp.AsTime reads it as), and no span ends
		// before it starts.
		for i := 0; i < td.ResourceSpans().Len(); i++ {
			spans := td.ResourceSpans().At(i).ScopeSpans().At(0).Spans()
			for j := 0; j < spans.Len(); j++ {
				sp := spans.At(j)
				if int64(sp.StartTimestamp()) < 0 || int64(sp.EndTimestamp()) < 0 || sp.EndTimestamp() < sp.StartTimestamp() {
					t.Fatalf("span %s: start %d, end %d", sp.SpanID(), sp.StartTimestamp(), sp.EndTimestamp())
				}
			}
		}
	})
}

// BenchmarkPostSpans measures gogo decode + translation of a 100-span
// batch (what the gRPC handler does), per span.
func BenchmarkPostSpans(b *testing.B) {
	batch := sampleBatch(time.Unix(1700000000, 0))
	base := batch.Spans
	batch.Spans = nil
	for i := 0; i < 34; i++ {
		for _, s := range base {
			c := *s
			c.SpanID += jaegermodel.SpanID(i << 16)
			batch.Spans = append(batch.Spans, &c)
		}
	}
	body, _ := (&api_v2.PostSpansRequest{Batch: batch}).Marshal()
	r := New(Config{}, pipeline.TraceConsumerFunc(func(context.Context, ptrace.Traces) error { return nil }), nil, nil)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for i := 0; i < b.N; i++ {
		var req api_v2.PostSpansRequest
		if err := req.Unmarshal(body); err != nil {
			b.Fatal(err)
		}
		if _, err := r.PostSpans(context.Background(), &req); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch.Spans)), "ns/span")
}
