package zipkin

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"github.com/meshlens/meshlens/receivers/httpbody"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	zipkinmodel "github.com/openzipkin/zipkin-go/model"
	zipkinproto "github.com/openzipkin/zipkin-go/proto/zipkin_proto3"
	reporterhttp "github.com/openzipkin/zipkin-go/reporter/http"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/meshlens/meshlens/pipeline"
	"github.com/meshlens/meshlens/receivers/zipkin/translate"
)

// sink collects what reaches the consumer; err, when set, is returned.
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

// flatSpan is one received span with its resource, for assertions.
type flatSpan struct {
	service string
	res     pcommon.Map
	span    ptrace.Span
}

func (s *sink) spans() []flatSpan {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []flatSpan
	for _, td := range s.got {
		for i := 0; i < td.ResourceSpans().Len(); i++ {
			rs := td.ResourceSpans().At(i)
			svc, _ := rs.Resource().Attributes().Get("service.name")
			for j := 0; j < rs.ScopeSpans().Len(); j++ {
				sp := rs.ScopeSpans().At(j).Spans()
				for k := 0; k < sp.Len(); k++ {
					out = append(out, flatSpan{svc.Str(), rs.Resource().Attributes(), sp.At(k)})
				}
			}
		}
	}
	return out
}

func find(t *testing.T, spans []flatSpan, id string, kind ptrace.SpanKind) flatSpan {
	t.Helper()
	for _, s := range spans {
		if s.span.SpanID().String() == id && s.span.Kind() == kind {
			return s
		}
	}
	t.Fatalf("span %s kind %v not received; got %d spans", id, kind, len(spans))
	return flatSpan{}
}

func attr(m pcommon.Map, k string) string {
	v, ok := m.Get(k)
	if !ok {
		return "<absent>"
	}
	return v.AsString()
}

func startServer(t *testing.T, cfg Config, next pipeline.TraceConsumer) string {
	t.Helper()
	mux := http.NewServeMux()
	New(cfg, next, pipeline.NewTelemetry(prometheus.NewRegistry()), nil).Register(mux)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(lis)
	t.Cleanup(func() { srv.Close() })
	return "http://" + lis.Addr().String()
}

func id(v uint64) *zipkinmodel.ID { i := zipkinmodel.ID(v); return &i }

// envoyHop is what two Envoy sidecars report for one hop with
// shared_span_context: the client and server halves under one span id.
func envoyHop(ts time.Time) []zipkinmodel.SpanModel {
	tid := zipkinmodel.TraceID{High: 0x5af7183fb1d4cf5f, Low: 0x2ba9a0ee4c0e8f16}
	return []zipkinmodel.SpanModel{
		{
			SpanContext: zipkinmodel.SpanContext{TraceID: tid, ID: 0xa1, ParentID: id(0x01)},
			Name:        "reviews.default.svc.cluster.local:9080/*", Kind: zipkinmodel.Client,
			Timestamp: ts, Duration: 12 * time.Millisecond,
			LocalEndpoint:  &zipkinmodel.Endpoint{ServiceName: "productpage.default", IPv4: net.ParseIP("10.0.0.5").To4()},
			RemoteEndpoint: &zipkinmodel.Endpoint{ServiceName: "reviews.default", IPv4: net.ParseIP("10.0.0.9").To4(), Port: 9080},
			Tags: map[string]string{
				"http.method": "GET", "http.status_code": "200", "upstream_cluster": "outbound|9080||reviews.default.svc.cluster.local",
				"istio.canonical_service": "productpage", "istio.namespace": "default", "response_flags": "-",
			},
		},
		{
			SpanContext: zipkinmodel.SpanContext{TraceID: tid, ID: 0xa1, ParentID: id(0x01)},
			Name:        "reviews.default.svc.cluster.local:9080/*", Kind: zipkinmodel.Server, Shared: true,
			Timestamp: ts.Add(time.Millisecond), Duration: 10 * time.Millisecond,
			LocalEndpoint: &zipkinmodel.Endpoint{ServiceName: "reviews.default", IPv4: net.ParseIP("10.0.0.9").To4(), Port: 9080},
			Tags:          map[string]string{"http.status_code": "503", "error": "true", "response_flags": "UF"},
			Annotations:   []zipkinmodel.Annotation{{Timestamp: ts.Add(2 * time.Millisecond), Value: "retry"}},
		},
		{ // 64-bit trace id
			SpanContext: zipkinmodel.SpanContext{TraceID: zipkinmodel.TraceID{Low: 0x463ac35c9f6413ad}, ID: 0xb2, Debug: true},
			Name:        "get /", Kind: zipkinmodel.Server, Timestamp: ts, Duration: time.Millisecond,
			LocalEndpoint: &zipkinmodel.Endpoint{ServiceName: "frontend", IPv6: net.ParseIP("2001:db8::1")},
		},
	}
}

func checkEnvoyHop(t *testing.T, s *sink, ts time.Time) {
	t.Helper()
	spans := s.spans()
	if len(spans) != 3 {
		t.Fatalf("received %d spans, want 3", len(spans))
	}
	client := find(t, spans, "00000000000000a1", ptrace.SpanKindClient)
	server := find(t, spans, "00000000000000a1", ptrace.SpanKindServer)
	if got := client.span.TraceID().String(); got != "5af7183fb1d4cf5f2ba9a0ee4c0e8f16" {
		t.Errorf("client trace id %s", got)
	}
	if client.span.ParentSpanID().String() != "0000000000000001" || server.span.ParentSpanID().String() != "0000000000000001" {
		t.Errorf("parent ids %s %s", client.span.ParentSpanID(), server.span.ParentSpanID())
	}
	if client.service != "productpage.default" || server.service != "reviews.default" {
		t.Errorf("services %q %q", client.service, server.service)
	}
	if got := attr(client.res, "net.host.ip"); got != "10.0.0.5" {
		t.Errorf("client net.host.ip %s", got)
	}
	if got := attr(server.res, "net.host.port"); got != "9080" {
		t.Errorf("server net.host.port %s", got)
	}
	for k, want := range map[string]string{"peer.service": "reviews.default", "net.peer.ip": "10.0.0.9", "net.peer.port": "9080", "http.status_code": "200", "upstream_cluster": "outbound|9080||reviews.default.svc.cluster.local", "zipkin.shared": "<absent>"} {
		if got := attr(client.span.Attributes(), k); got != want {
			t.Errorf("client %s = %q, want %q", k, got, want)
		}
	}
	if got := attr(server.span.Attributes(), "zipkin.shared"); got != "true" {
		t.Errorf("server zipkin.shared = %q", got)
	}
	if server.span.Status().Code() != ptrace.StatusCodeError || client.span.Status().Code() != ptrace.StatusCodeUnset {
		t.Errorf("status server %v client %v", server.span.Status().Code(), client.span.Status().Code())
	}
	if got := client.span.StartTimestamp().AsTime(); got.Sub(ts).Abs() > time.Microsecond {
		t.Errorf("client start %v want %v", got, ts)
	}
	if d := client.span.EndTimestamp().AsTime().Sub(client.span.StartTimestamp().AsTime()); d != 12*time.Millisecond {
		t.Errorf("client duration %v", d)
	}
	if ev := server.span.Events(); ev.Len() != 1 || ev.At(0).Name() != "retry" {
		t.Errorf("server events %d", ev.Len())
	}
	short := find(t, spans, "00000000000000b2", ptrace.SpanKindServer)
	if got := short.span.TraceID().String(); got != "0000000000000000463ac35c9f6413ad" {
		t.Errorf("64-bit trace id padded to %s", got)
	}
	if attr(short.span.Attributes(), "zipkin.debug") != "true" || attr(short.res, "net.host.ip") != "2001:db8::1" {
		t.Errorf("debug/ipv6 lost: %v", short.res.AsRaw())
	}
}

// TestZipkinGoReporter sends with zipkin-go's own HTTP reporter, JSON and
// proto3, and checks the spans that reach the consumer.
func TestZipkinGoReporter(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []reporterhttp.ReporterOption
	}{
		{"json", nil},
		{"proto3", []reporterhttp.ReporterOption{reporterhttp.Serializer(zipkinproto.SpanSerializer{})}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &sink{}
			url := startServer(t, Config{}, s)
			var status int
			opts := append(tc.opts, reporterhttp.BatchSize(10), reporterhttp.Client(doerFunc(func(r *http.Request) (*http.Response, error) {
				resp, err := http.DefaultClient.Do(r)
				if err == nil {
					status = resp.StatusCode
				}
				return resp, err
			})))
			rep := reporterhttp.NewReporter(url+"/api/v2/spans", opts...)
			ts := time.Now()
			for _, sp := range envoyHop(ts) {
				rep.Send(sp)
			}
			if err := rep.Close(); err != nil {
				t.Fatal(err)
			}
			if status != http.StatusAccepted {
				t.Fatalf("status %d", status)
			}
			checkEnvoyHop(t, s, ts)
		})
	}
}

type doerFunc func(*http.Request) (*http.Response, error)

func (f doerFunc) Do(r *http.Request) (*http.Response, error) { return f(r) }

func post(t *testing.T, url, ct, enc string, body []byte) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	if enc != "" {
		req.Header.Set("Content-Encoding", enc)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

const goodV2 = `[{"traceId":"463ac35c9f6413ad48485a3953bb6124","id":"a2fb4a1d1a96d312","parentId":"0020000000000001","name":"get /api","kind":"SERVER","timestamp":1700000000000000,"duration":2000,"localEndpoint":{"serviceName":"backend","ipv4":"192.168.99.101","port":9000},"remoteEndpoint":{"ipv4":"172.19.0.2","port":58648},"tags":{"http.method":"GET","http.path":"/api"},"annotations":[{"timestamp":1700000000000100,"value":"wr"}]}]`

func TestStatusCodes(t *testing.T) {
	s := &sink{}
	url := startServer(t, Config{MaxRequestBytes: 4096, MaxDecompressedBytes: 8192}, s)
	bomb := gz(bytes.Repeat([]byte(" "), 1<<20))
	big := []byte("[" + strings.Repeat(" ", 5000) + "]")
	deep := []byte(strings.Repeat("[", 100) + strings.Repeat("]", 100))
	mixed := `[` + goodV2[1:len(goodV2)-1] + `,{"traceId":"463ac35c9f6413ad","name":"no id"},{"id":"0000000000000002"},{"traceId":"zz","id":"0000000000000003"}]`
	protoBody, _ := zipkinproto.SpanSerializer{}.Serialize([]*zipkinmodel.SpanModel{{SpanContext: zipkinmodel.SpanContext{TraceID: zipkinmodel.TraceID{Low: 1}, ID: 2}, Name: "p"}})
	for _, tc := range []struct {
		name, path, ct, enc string
		body                []byte
		want                int
		wantMsg             string
		wantSpans           int
	}{
		{"v2 json", "/api/v2/spans", "application/json", "", []byte(goodV2), 202, "", 1},
		{"v2 json no content type", "/api/v2/spans", "", "", []byte(goodV2), 202, "", 1},
		{"v2 json gzip", "/api/v2/spans", "application/json; charset=utf-8", "gzip", gz([]byte(goodV2)), 202, "", 1},
		{"v2 proto", "/api/v2/spans", "application/x-protobuf", "", protoBody, 202, "", 1},
		{"empty array", "/api/v2/spans", "application/json", "", []byte("[]"), 202, "", 0},
		{"not json", "/api/v2/spans", "application/json", "", []byte("{nope"), 400, "expected a JSON array", 0},
		{"truncated json", "/api/v2/spans", "application/json", "", []byte(goodV2[:50]), 400, "malformed JSON", 0},
		{"invalid spans dropped, rest kept", "/api/v2/spans", "application/json", "", []byte(mixed), 400, "span[1]", 1},
		{"bad proto", "/api/v2/spans", "application/x-protobuf", "", []byte{0xff, 0xff, 0xff}, 400, "protobuf", 0},
		{"bad gzip", "/api/v2/spans", "application/json", "gzip", []byte("not gzip"), 400, "gzip", 0},
		{"too large", "/api/v2/spans", "application/json", "", big, 413, "limit", 0},
		{"gzip bomb", "/api/v2/spans", "application/json", "gzip", bomb, 413, "decompressed", 0},
		{"too deep", "/api/v2/spans", "application/json", "", deep, 400, "nested", 0},
		{"thrift", "/api/v1/spans", "application/x-thrift", "", []byte{1}, 415, "thrift", 0},
		{"xml", "/api/v2/spans", "application/xml", "", []byte("<a/>"), 415, "Content-Type", 0},
		{"brotli", "/api/v2/spans", "application/json", "br", []byte(goodV2), 415, "Content-Encoding", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s.mu.Lock()
			s.got = nil
			s.mu.Unlock()
			code, msg := post(t, url+tc.path, tc.ct, tc.enc, tc.body)
			if code != tc.want || !strings.Contains(msg, tc.wantMsg) {
				t.Fatalf("got %d %q, want %d containing %q", code, msg, tc.want, tc.wantMsg)
			}
			if n := len(s.spans()); n != tc.wantSpans {
				t.Fatalf("%d spans reached the consumer, want %d", n, tc.wantSpans)
			}
		})
	}
	t.Run("mixed batch names every dropped span", func(t *testing.T) {
		_, msg := post(t, url+"/api/v2/spans", "application/json", "", []byte(mixed))
		for _, want := range []string{"dropped 3", "kept 1", "span[1]", "span[2]", "span[3]", "valid span id required", "valid traceId required"} {
			if !strings.Contains(msg, want) {
				t.Errorf("message %q lacks %q", msg, want)
			}
		}
	})
}

func TestOverload(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{fmt.Errorf("queue full: %w", pipeline.ErrOverloaded), 429},
		{fmt.Errorf("stopping: %w", pipeline.ErrShuttingDown), 503},
		{pipeline.Permanentf("bad"), 400},
	} {
		url := startServer(t, Config{}, &sink{err: tc.err})
		req, _ := http.NewRequest(http.MethodPost, url+"/api/v2/spans", strings.NewReader(goodV2))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%v: status %d, want %d", tc.err, resp.StatusCode, tc.want)
		}
		if tc.want == 429 && resp.Header.Get("Retry-After") == "" {
			t.Error("429 without Retry-After")
		}
	}
}

// TestV1 posts a v1 span reported by both sides under one id and checks it
// becomes a CLIENT span and a shared SERVER span.
func TestV1(t *testing.T) {
	s := &sink{}
	url := startServer(t, Config{}, s)
	body := `[{"traceId":"48485a3953bb6124","name":"get","id":"6b221d5bc9e6496c","parentId":"0000000000000001","timestamp":1700000000000000,"duration":5000,
	  "annotations":[
	    {"timestamp":1700000000000000,"value":"cs","endpoint":{"serviceName":"frontend","ipv4":"10.1.1.1"}},
	    {"timestamp":1700000000001000,"value":"sr","endpoint":{"serviceName":"backend","ipv4":"10.1.1.2","port":8080}},
	    {"timestamp":1700000000002000,"value":"custom","endpoint":{"serviceName":"backend","ipv4":"10.1.1.2","port":8080}},
	    {"timestamp":1700000000004000,"value":"ss","endpoint":{"serviceName":"backend","ipv4":"10.1.1.2","port":8080}},
	    {"timestamp":1700000000005000,"value":"cr","endpoint":{"serviceName":"frontend","ipv4":"10.1.1.1"}}],
	  "binaryAnnotations":[
	    {"key":"http.path","value":"/api","endpoint":{"serviceName":"backend","ipv4":"10.1.1.2","port":8080}},
	    {"key":"http.status_code","value":500,"type":"I32","endpoint":{"serviceName":"frontend","ipv4":"10.1.1.1"}},
	    {"key":"error","value":"boom","endpoint":{"serviceName":"frontend","ipv4":"10.1.1.1"}},
	    {"key":"sa","value":true,"endpoint":{"serviceName":"backend","ipv4":"10.1.1.2","port":8080}}]},
	  {"traceId":"48485a3953bb6124","name":"local","id":"0000000000000007","timestamp":1700000000000000,"duration":10,
	   "binaryAnnotations":[{"key":"lc","value":"cache","endpoint":{"serviceName":"backend"}}]}]`
	if code, msg := post(t, url+"/api/v1/spans", "application/json", "", []byte(body)); code != 202 {
		t.Fatalf("%d %s", code, msg)
	}
	spans := s.spans()
	if len(spans) != 3 {
		t.Fatalf("%d spans", len(spans))
	}
	c := find(t, spans, "6b221d5bc9e6496c", ptrace.SpanKindClient)
	sv := find(t, spans, "6b221d5bc9e6496c", ptrace.SpanKindServer)
	if c.service != "frontend" || sv.service != "backend" {
		t.Errorf("services %q %q", c.service, sv.service)
	}
	if attr(sv.span.Attributes(), "zipkin.shared") != "true" || attr(c.span.Attributes(), "zipkin.shared") != "<absent>" {
		t.Error("shared flag wrong")
	}
	if d := c.span.EndTimestamp() - c.span.StartTimestamp(); d != 5_000_000 {
		t.Errorf("client duration %d", d)
	}
	if d := sv.span.EndTimestamp() - sv.span.StartTimestamp(); d != 3_000_000 {
		t.Errorf("server duration %d", d)
	}
	if attr(c.span.Attributes(), "http.status_code") != "500" || c.span.Status().Code() != ptrace.StatusCodeError || c.span.Status().Message() != "boom" {
		t.Errorf("client tags %v status %v", c.span.Attributes().AsRaw(), c.span.Status().Code())
	}
	if attr(c.span.Attributes(), "peer.service") != "backend" || attr(sv.span.Attributes(), "peer.service") != "frontend" {
		t.Errorf("peers %v / %v", c.span.Attributes().AsRaw(), sv.span.Attributes().AsRaw())
	}
	if attr(sv.span.Attributes(), "http.path") != "/api" || sv.span.Events().Len() != 1 {
		t.Errorf("server tags %v events %d", sv.span.Attributes().AsRaw(), sv.span.Events().Len())
	}
	local := find(t, spans, "0000000000000007", ptrace.SpanKindInternal)
	if local.service != "backend" || attr(local.span.Attributes(), "lc") != "cache" {
		t.Errorf("local span %q %v", local.service, local.span.Attributes().AsRaw())
	}
}

// TestReverse checks ToZipkinV2 gives back what was ingested.
func TestReverse(t *testing.T) {
	ts := time.Unix(1700000000, 123456000)
	in := envoyHop(ts)
	ptrs := make([]*zipkinmodel.SpanModel, len(in))
	for i := range in {
		ptrs[i] = &in[i]
	}
	out := translate.ToZipkinV2(translate.ToTraces(ptrs))
	if len(out) != len(in) {
		t.Fatalf("%d spans back", len(out))
	}
	for _, got := range out {
		var want *zipkinmodel.SpanModel
		for _, w := range ptrs {
			if w.ID == got.ID && w.Kind == got.Kind {
				want = w
			}
		}
		if want == nil {
			t.Fatalf("unexpected span %v %v", got.ID, got.Kind)
		}
		if got.TraceID != want.TraceID || !got.Timestamp.Equal(want.Timestamp) || got.Duration != want.Duration ||
			got.Shared != want.Shared || got.Debug != want.Debug || got.Name != want.Name {
			t.Errorf("span %v: got %+v want %+v", got.ID, got, want)
		}
		if (got.ParentID == nil) != (want.ParentID == nil) || (got.ParentID != nil && *got.ParentID != *want.ParentID) {
			t.Errorf("parent %v", got.ParentID)
		}
		if got.LocalEndpoint.ServiceName != want.LocalEndpoint.ServiceName || got.LocalEndpoint.Port != want.LocalEndpoint.Port {
			t.Errorf("local %+v want %+v", got.LocalEndpoint, want.LocalEndpoint)
		}
		if want.RemoteEndpoint != nil && (got.RemoteEndpoint == nil || got.RemoteEndpoint.ServiceName != want.RemoteEndpoint.ServiceName || !got.RemoteEndpoint.IPv4.Equal(want.RemoteEndpoint.IPv4)) {
			t.Errorf("remote %+v want %+v", got.RemoteEndpoint, want.RemoteEndpoint)
		}
		for k, v := range want.Tags {
			if got.Tags[k] != v {
				t.Errorf("tag %s = %q want %q", k, got.Tags[k], v)
			}
		}
		if len(got.Annotations) != len(want.Annotations) {
			t.Errorf("annotations %v", got.Annotations)
		}
	}
}

func FuzzGunzip(f *testing.F) {
	f.Add(gz([]byte(goodV2)))
	f.Add(gz(bytes.Repeat([]byte("a"), 5000)))
	f.Add([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := httpbody.Gunzip(b, 4096)
		if err == nil && len(out) > 4096 {
			t.Fatalf("inflated %d bytes past the limit", len(out))
		}
		if err != nil && httpbody.StatusOf(err) != 400 && httpbody.StatusOf(err) != 413 {
			t.Fatalf("status %d", httpbody.StatusOf(err))
		}
	})
}

// TestLimitsWithoutContentLength: a chunked body is cut at the limit too,
// and the span cap answers 413.
func TestLimitsWithoutContentLength(t *testing.T) {
	s := &sink{}
	url := startServer(t, Config{MaxRequestBytes: 1024, MaxSpansPerRequest: 1}, s)
	req, _ := http.NewRequest(http.MethodPost, url+"/api/v2/spans", io.MultiReader(strings.NewReader("["), strings.NewReader(strings.Repeat(" ", 4096)+"]")))
	req.ContentLength = -1
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Errorf("chunked oversize body: %d", resp.StatusCode)
	}
	two := `[` + goodV2[1:len(goodV2)-1] + `,` + goodV2[1:len(goodV2)-1] + `]`
	if code, msg := post(t, url+"/api/v2/spans", "application/json", "", []byte(two)); code != 413 || !strings.Contains(msg, "at most 1") {
		t.Errorf("span cap: %d %s", code, msg)
	}
	if len(s.spans()) != 0 {
		t.Error("spans stored despite 413")
	}
}

func TestTelemetry(t *testing.T) {
	reg := prometheus.NewRegistry()
	mux := http.NewServeMux()
	New(Config{}, &sink{}, pipeline.NewTelemetry(reg), nil).Register(mux)
	mixed := `[` + goodV2[1:len(goodV2)-1] + `,{"traceId":"463ac35c9f6413ad","name":"no id"}]`
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/api/v2/spans", strings.NewReader(mixed)))
	if rec.Code != 400 {
		t.Fatalf("status %d", rec.Code)
	}
	want := `
# HELP meshlens_receiver_accepted_items_total Items (log entries, spans, metric samples) accepted by a receiver.
# TYPE meshlens_receiver_accepted_items_total counter
meshlens_receiver_accepted_items_total{receiver="zipkin",transport="http"} 1
# HELP meshlens_receiver_refused_items_total Items a receiver refused, by reason (malformed, overloaded, shutting_down, ...).
# TYPE meshlens_receiver_refused_items_total counter
meshlens_receiver_refused_items_total{reason="malformed",receiver="zipkin",transport="http"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "meshlens_receiver_accepted_items_total", "meshlens_receiver_refused_items_total"); err != nil {
		t.Error(err)
	}
}

// BenchmarkHandlerV2JSON measures the whole HTTP handler (body read,
// decode, translate) on 100 Envoy-like spans, per span.
func BenchmarkHandlerV2JSON(b *testing.B) {
	ts := time.Unix(1700000000, 0)
	var spans []zipkinmodel.SpanModel
	for i := 0; i < 34; i++ {
		for _, s := range envoyHop(ts) {
			s.ID += zipkinmodel.ID(i << 16)
			spans = append(spans, s)
		}
	}
	body, _ := json.Marshal(spans)
	mux := http.NewServeMux()
	New(Config{}, pipeline.TraceConsumerFunc(func(context.Context, ptrace.Traces) error { return nil }), nil, nil).Register(mux)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for i := 0; i < b.N; i++ {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/api/v2/spans", bytes.NewReader(body)))
		if rec.Code != 202 {
			b.Fatal(rec.Code, rec.Body.String())
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(spans)), "ns/span")
}
