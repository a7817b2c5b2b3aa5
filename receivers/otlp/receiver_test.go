package otlp

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"github.com/meshlens/meshlens/receivers/httpbody"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	grpcgzip "google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

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

func (s *sink) reset() { s.mu.Lock(); s.got = nil; s.mu.Unlock() }

func (s *sink) spans() map[string]ptrace.Span {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]ptrace.Span{}
	for _, td := range s.got {
		for i := 0; i < td.ResourceSpans().Len(); i++ {
			rs := td.ResourceSpans().At(i)
			for j := 0; j < rs.ScopeSpans().Len(); j++ {
				sp := rs.ScopeSpans().At(j).Spans()
				for k := 0; k < sp.Len(); k++ {
					out[sp.At(k).SpanID().String()] = sp.At(k)
				}
			}
		}
	}
	return out
}

func sampleTraces(invalid int) ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "reviews")
	rs.Resource().Attributes().PutStr("k8s.pod.name", "reviews-v1-abc")
	ss := rs.ScopeSpans().AppendEmpty()
	ss.Scope().SetName("test")
	start := pcommon.NewTimestampFromTime(time.Unix(1700000000, 0))
	tid := pcommon.TraceID([16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
	server := ss.Spans().AppendEmpty()
	server.SetTraceID(tid)
	server.SetSpanID(pcommon.SpanID([8]byte{0, 0, 0, 0, 0, 0, 0, 1}))
	server.SetName("GET /reviews/{id}")
	server.SetKind(ptrace.SpanKindServer)
	server.SetStartTimestamp(start)
	server.SetEndTimestamp(start + 5e6)
	server.Attributes().PutInt("http.response.status_code", 200)
	client := ss.Spans().AppendEmpty()
	client.SetTraceID(tid)
	client.SetSpanID(pcommon.SpanID([8]byte{0, 0, 0, 0, 0, 0, 0, 2}))
	client.SetParentSpanID(server.SpanID())
	client.SetName("GET")
	client.SetKind(ptrace.SpanKindClient)
	client.SetStartTimestamp(start + 1e6)
	client.SetEndTimestamp(start + 4e6)
	client.Status().SetCode(ptrace.StatusCodeError)
	client.Attributes().PutStr("peer.service", "ratings")
	for i := 0; i < invalid; i++ {
		bad := ss.Spans().AppendEmpty()
		bad.SetName(fmt.Sprintf("no ids %d", i))
	}
	return td
}

func checkSample(t *testing.T, s *sink) {
	t.Helper()
	got := s.spans()
	if len(got) != 2 {
		t.Fatalf("%d spans reached the consumer, want 2", len(got))
	}
	srv, cl := got["0000000000000001"], got["0000000000000002"]
	if srv.Kind() != ptrace.SpanKindServer || cl.Kind() != ptrace.SpanKindClient {
		t.Errorf("kinds %v %v", srv.Kind(), cl.Kind())
	}
	if cl.ParentSpanID() != srv.SpanID() || cl.TraceID().String() != "0102030405060708090a0b0c0d0e0f10" {
		t.Errorf("ids parent=%s trace=%s", cl.ParentSpanID(), cl.TraceID())
	}
	if v, _ := srv.Attributes().Get("http.response.status_code"); v.Int() != 200 {
		t.Errorf("attribute lost: %v", srv.Attributes().AsRaw())
	}
	if cl.Status().Code() != ptrace.StatusCodeError || cl.EndTimestamp()-cl.StartTimestamp() != 3e6 {
		t.Errorf("status/timing lost")
	}
}

func startGRPC(t *testing.T, next pipeline.TraceConsumer) ptraceotlp.GRPCClient {
	t.Helper()
	r := New(Config{}, next, pipeline.NewTelemetry(prometheus.NewRegistry()), nil)
	s := grpc.NewServer(Config{}.GRPCServerOptions()...)
	r.RegisterGRPC(s)
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
	return ptraceotlp.NewGRPCClient(cc)
}

func TestGRPC(t *testing.T) {
	s := &sink{}
	c := startGRPC(t, s)
	for _, opts := range [][]grpc.CallOption{nil, {grpc.UseCompressor(grpcgzip.Name)}} {
		s.reset()
		resp, err := c.Export(context.Background(), ptraceotlp.NewExportRequestFromTraces(sampleTraces(1)), opts...)
		if err != nil {
			t.Fatal(err)
		}
		if ps := resp.PartialSuccess(); ps.RejectedSpans() != 1 || !strings.Contains(ps.ErrorMessage(), "trace_id") {
			t.Errorf("partial success %d %q", ps.RejectedSpans(), ps.ErrorMessage())
		}
		checkSample(t, s)
	}
}

func TestGRPCErrors(t *testing.T) {
	for _, tc := range []struct {
		err       error
		code      codes.Code
		retryInfo bool
	}{
		{fmt.Errorf("full: %w", pipeline.ErrOverloaded), codes.ResourceExhausted, true},
		{fmt.Errorf("bye: %w", pipeline.ErrShuttingDown), codes.Unavailable, false},
		{pipeline.Permanentf("never"), codes.InvalidArgument, false},
	} {
		c := startGRPC(t, &sink{err: tc.err})
		_, err := c.Export(context.Background(), ptraceotlp.NewExportRequestFromTraces(sampleTraces(0)))
		st, _ := status.FromError(err)
		if st.Code() != tc.code {
			t.Errorf("%v: code %v, want %v", tc.err, st.Code(), tc.code)
		}
		if got := len(st.Details()) > 0; got != tc.retryInfo {
			t.Errorf("%v: retry info %v", tc.err, got)
		}
	}
}

func startHTTP(t *testing.T, cfg Config, next pipeline.TraceConsumer) string {
	t.Helper()
	mux := http.NewServeMux()
	New(cfg, next, nil, nil).Register(mux)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(lis)
	t.Cleanup(func() { srv.Close() })
	return "http://" + lis.Addr().String() + "/v1/traces"
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func post(t *testing.T, url, ct, enc string, body []byte) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", ct)
	if enc != "" {
		req.Header.Set("Content-Encoding", enc)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func TestHTTP(t *testing.T) {
	s := &sink{}
	url := startHTTP(t, Config{MaxRequestBytes: 1 << 16, MaxDecompressedBytes: 1 << 17}, s)
	req := ptraceotlp.NewExportRequestFromTraces(sampleTraces(2))
	pb, _ := req.MarshalProto()
	js, _ := req.MarshalJSON()
	for _, tc := range []struct {
		name, ct, enc string
		body          []byte
	}{
		{"proto", "application/x-protobuf", "", pb},
		{"proto gzip", "application/x-protobuf", "gzip", gz(pb)},
		{"json", "application/json", "", js},
		{"json gzip", "application/json; charset=utf-8", "gzip", gz(js)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s.reset()
			resp, body := post(t, url, tc.ct, tc.enc, tc.body)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			out := ptraceotlp.NewExportResponse()
			var err error
			if strings.HasPrefix(tc.ct, "application/json") {
				err = out.UnmarshalJSON(body)
			} else {
				err = out.UnmarshalProto(body)
			}
			if err != nil || out.PartialSuccess().RejectedSpans() != 2 {
				t.Fatalf("response %v rejected=%d", err, out.PartialSuccess().RejectedSpans())
			}
			checkSample(t, s)
		})
	}
}

func TestHTTPStatus(t *testing.T) {
	url := startHTTP(t, Config{MaxRequestBytes: 1 << 12, MaxDecompressedBytes: 1 << 13}, &sink{})
	pb, _ := ptraceotlp.NewExportRequestFromTraces(sampleTraces(0)).MarshalProto()
	for _, tc := range []struct {
		name, ct, enc string
		body          []byte
		want          int
	}{
		{"garbage proto", "application/x-protobuf", "", []byte{0xff, 0xff, 0xff, 0xff}, 400},
		{"garbage json", "application/json", "", []byte(`{"resourceSpans":[{`), 400},
		{"deep json", "application/json", "", []byte(strings.Repeat("[", 200)), 400},
		{"text", "text/plain", "", pb, 415},
		{"zstd", "application/x-protobuf", "zstd", pb, 415},
		{"too large", "application/x-protobuf", "", make([]byte, 5000), 413},
		{"gzip bomb", "application/x-protobuf", "gzip", gz(make([]byte, 1<<20)), 413},
		{"bad gzip", "application/x-protobuf", "gzip", []byte("x"), 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := post(t, url, tc.ct, tc.enc, tc.body)
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d want %d: %s", resp.StatusCode, tc.want, body)
			}
			var st spb.Status
			if strings.HasPrefix(tc.ct, "application/json") {
				err := protojson.Unmarshal(body, &st)
				if err != nil {
					t.Fatalf("error body is not a JSON google.rpc.Status: %v", err)
				}
			} else if err := proto.Unmarshal(body, &st); err != nil || st.Message == "" {
				t.Fatalf("error body is not a google.rpc.Status: %v %q", err, body)
			}
		})
	}
	for _, tc := range []struct {
		err  error
		want int
	}{
		{pipeline.ErrOverloaded, 429},
		{pipeline.ErrShuttingDown, 503},
	} {
		url := startHTTP(t, Config{}, &sink{err: tc.err})
		resp, _ := post(t, url, "application/x-protobuf", "", pb)
		if resp.StatusCode != tc.want || resp.Header.Get("Retry-After") == "" {
			t.Errorf("%v: status %d retry-after %q", tc.err, resp.StatusCode, resp.Header.Get("Retry-After"))
		}
	}
}

func FuzzHTTPProto(f *testing.F) {
	pb, _ := ptraceotlp.NewExportRequestFromTraces(sampleTraces(1)).MarshalProto()
	f.Add(pb)
	f.Add([]byte{0x0a, 0x00})
	r := New(Config{}, &sink{}, nil, nil)
	f.Fuzz(func(t *testing.T, body []byte) {
		req := ptraceotlp.NewExportRequest()
		if req.UnmarshalProto(body) != nil {
			return
		}
		if _, err := r.consume(context.Background(), req.Traces(), r.httpTel); err != nil {
			t.Fatal(err)
		}
	})
}

func FuzzHTTPJSON(f *testing.F) {
	js, _ := ptraceotlp.NewExportRequestFromTraces(sampleTraces(1)).MarshalJSON()
	f.Add(js)
	f.Add([]byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"x"}]}]}]}`))
	r := New(Config{}, &sink{}, nil, nil)
	f.Fuzz(func(t *testing.T, body []byte) {
		if httpbody.CheckJSONDepth(body, DefaultMaxJSONDepth) != nil {
			return
		}
		req := ptraceotlp.NewExportRequest()
		if req.UnmarshalJSON(body) != nil {
			return
		}
		if _, err := r.consume(context.Background(), req.Traces(), r.httpTel); err != nil {
			t.Fatal(err)
		}
	})
}

func FuzzGunzip(f *testing.F) {
	f.Add(gz([]byte("hello")))
	f.Add([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := httpbody.Gunzip(b, 1<<16)
		if err == nil && len(out) > 1<<16 {
			t.Fatalf("inflated %d bytes past the limit", len(out))
		}
	})
}

// BenchmarkDecodeProto measures OTLP/HTTP protobuf decode of 100 spans
// with Istio-like attributes, per span.
func BenchmarkDecodeProto(b *testing.B) {
	const n = 100
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "reviews")
	rs.Resource().Attributes().PutStr("k8s.pod.name", "reviews-v1-545db77b95-abcde")
	spans := rs.ScopeSpans().AppendEmpty().Spans()
	for i := 0; i < n; i++ {
		sp := spans.AppendEmpty()
		sp.SetTraceID(pcommon.TraceID([16]byte{byte(i), 1}))
		sp.SetSpanID(pcommon.SpanID([8]byte{byte(i), 2}))
		sp.SetParentSpanID(pcommon.SpanID([8]byte{byte(i), 3}))
		sp.SetName("GET /reviews/{id}")
		sp.SetKind(ptrace.SpanKindServer)
		sp.SetStartTimestamp(1700000000000000000)
		sp.SetEndTimestamp(1700000000005000000)
		a := sp.Attributes()
		a.PutStr("http.request.method", "GET")
		a.PutStr("url.path", "/reviews/0")
		a.PutInt("http.response.status_code", 200)
		a.PutStr("server.address", "reviews.default.svc.cluster.local")
		a.PutInt("server.port", 9080)
		a.PutStr("network.peer.address", "10.0.0.5")
		a.PutStr("user_agent.original", "python-requests/2.31")
		a.PutStr("istio.canonical_service", "reviews")
		a.PutStr("istio.namespace", "default")
		a.PutStr("upstream_cluster", "inbound|9080||")
	}
	body, _ := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	r := New(Config{}, pipeline.TraceConsumerFunc(func(context.Context, ptrace.Traces) error { return nil }), nil, nil)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req := ptraceotlp.NewExportRequest()
		if err := req.UnmarshalProto(body); err != nil {
			b.Fatal(err)
		}
		if _, err := r.consume(context.Background(), req.Traces(), r.httpTel); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/span")
}
