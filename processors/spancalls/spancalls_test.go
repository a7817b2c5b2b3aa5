package spancalls

import (
	"context"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	zipkinmodel "github.com/openzipkin/zipkin-go/model"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/meshlens/meshlens/model"
	"github.com/meshlens/meshlens/receivers/zipkin/translate"
)

type outputs struct {
	mu      sync.Mutex
	calls   []model.Call
	metrics []SpanMetric
	edges   []GraphEdge
}

func (o *outputs) ConsumeCalls(_ context.Context, calls []model.Call) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls = append(o.calls, calls...)
	return nil
}

func (o *outputs) ConsumeSpanMetrics(_ context.Context, m []SpanMetric, e []GraphEdge) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.metrics = append(o.metrics, m...)
	o.edges = append(o.edges, e...)
	return nil
}

func (o *outputs) call(t *testing.T, dp model.DetectPoint, src, dst string) model.Call {
	t.Helper()
	for _, c := range o.calls {
		if c.DetectPoint == dp && c.Source.Service == src && c.Destination.Service == dst {
			return c
		}
	}
	t.Fatalf("no %v call %s -> %s in %+v", dp, src, dst, o.calls)
	return model.Call{}
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newProc(o *outputs, cfg Config) (*Processor, *clock) {
	p := New(cfg, o, o, nil, nil)
	c := &clock{t: time.Unix(1700000000, 0)}
	p.now = c.now
	return p, c
}

func pid(v uint64) *zipkinmodel.ID { i := zipkinmodel.ID(v); return &i }

// bookinfo is what Istio's sidecars send over Zipkin for
// productpage -> reviews -> ratings, with shared span context: the
// productpage CLIENT and reviews SERVER halves share span id 0xa; the
// reviews -> ratings CLIENT span (0xb) is in the batch, the ratings side is
// not.
func bookinfo() ptrace.Traces {
	ts := time.Unix(1700000000, 0)
	tid := zipkinmodel.TraceID{Low: 0x1234}
	ep := func(svc, ip string) *zipkinmodel.Endpoint {
		return &zipkinmodel.Endpoint{ServiceName: svc, IPv4: net.ParseIP(ip).To4()}
	}
	spans := []*zipkinmodel.SpanModel{
		{
			SpanContext: zipkinmodel.SpanContext{TraceID: tid, ID: 0xa, ParentID: pid(0x1)},
			Name:        "reviews:9080/*", Kind: zipkinmodel.Client, Timestamp: ts, Duration: 20 * time.Millisecond,
			LocalEndpoint: ep("productpage.default", "10.0.0.5"),
			Tags: map[string]string{
				"node_id":                 "sidecar~10.0.0.5~productpage-v1-6b746f74dc-9stp2.default~default.svc.cluster.local",
				"istio.canonical_service": "productpage", "istio.namespace": "default", "istio.canonical_revision": "v1",
				"upstream_cluster": "outbound|9080||reviews.default.svc.cluster.local",
				"http.url":         "http://reviews:9080/reviews/0?x=1", "http.method": "GET", "http.status_code": "200",
				"response_flags": "-", "request_size": "0", "response_size": "358", "guid:x-request-id": "req-1",
			},
		},
		{
			SpanContext: zipkinmodel.SpanContext{TraceID: tid, ID: 0xa, ParentID: pid(0x1)},
			Name:        "reviews.default.svc.cluster.local:9080/*", Kind: zipkinmodel.Server, Shared: true,
			Timestamp: ts.Add(time.Millisecond), Duration: 18 * time.Millisecond,
			LocalEndpoint: ep("reviews.default", "10.0.0.9"),
			Tags: map[string]string{
				"node_id":          "sidecar~10.0.0.9~reviews-v2-7bf8c9648f-7xkzb.default~default.svc.cluster.local",
				"upstream_cluster": "inbound|9080||", "http.url": "http://reviews:9080/reviews/0",
				"http.method": "GET", "http.status_code": "200", "peer.address": "10.0.0.5",
			},
		},
		{
			SpanContext: zipkinmodel.SpanContext{TraceID: tid, ID: 0xb, ParentID: pid(0xa)},
			Name:        "ratings:9080/*", Kind: zipkinmodel.Client, Timestamp: ts.Add(2 * time.Millisecond), Duration: 10 * time.Millisecond,
			LocalEndpoint: ep("reviews.default", "10.0.0.9"),
			Tags: map[string]string{
				"node_id":          "sidecar~10.0.0.9~reviews-v2-7bf8c9648f-7xkzb.default~default.svc.cluster.local",
				"upstream_cluster": "outbound|9080||ratings.default.svc.cluster.local",
				"http.url":         "http://ratings:9080/ratings/0", "http.method": "GET", "http.status_code": "503",
				"response_flags": "UF", "error": "true",
			},
		},
	}
	return translate.ToTraces(spans)
}

func TestBookinfoEnvoyZipkin(t *testing.T) {
	o := &outputs{}
	p, clk := newProc(o, Config{PairingTTL: 5 * time.Second})
	if err := p.ConsumeTraces(context.Background(), bookinfo()); err != nil {
		t.Fatal(err)
	}
	if len(o.calls) != 3 {
		t.Fatalf("%d calls", len(o.calls))
	}

	pc := o.call(t, model.DetectClient, "productpage", "reviews")
	if pc.Source.Namespace != "default" || pc.Source.Instance != "productpage-v1-6b746f74dc-9stp2" || pc.Source.Version != "v1" || pc.Source.IP != "10.0.0.5" {
		t.Errorf("client source %+v", pc.Source)
	}
	if pc.Destination.Instance != "reviews-v2-7bf8c9648f-7xkzb" || pc.Destination.Namespace != "default" {
		t.Errorf("client destination from the shared server half: %+v", pc.Destination)
	}
	if pc.Endpoint != "GET:/reviews/0" || pc.StatusCode != 200 || pc.ResponseBytes != 358 || pc.RequestID != "req-1" ||
		pc.Authority != "reviews:9080" || pc.ResponseFlags != "" || pc.Duration != 20*time.Millisecond || pc.IsError() {
		t.Errorf("client request %+v", pc)
	}

	sc := o.call(t, model.DetectServer, "productpage", "reviews")
	if sc.Destination.Instance != "reviews-v2-7bf8c9648f-7xkzb" || sc.Source.Instance != "productpage-v1-6b746f74dc-9stp2" || sc.Duration != 18*time.Millisecond {
		t.Errorf("server call %+v", sc)
	}

	rc := o.call(t, model.DetectClient, "reviews", "ratings")
	if rc.Destination.Namespace != "default" || rc.UpstreamCluster != "outbound|9080||ratings.default.svc.cluster.local" ||
		rc.StatusCode != 503 || rc.ResponseFlags != "UF" || !rc.IsError() {
		t.Errorf("ratings call %+v", rc)
	}

	// Span metrics: one per span, Tempo's label values.
	if len(o.metrics) != 3 {
		t.Fatalf("%d span metrics", len(o.metrics))
	}
	kinds := map[string]int{}
	for _, m := range o.metrics {
		kinds[m.SpanKind+"/"+m.StatusCode]++
	}
	if kinds["SPAN_KIND_CLIENT/STATUS_CODE_UNSET"] != 1 || kinds["SPAN_KIND_SERVER/STATUS_CODE_UNSET"] != 1 || kinds["SPAN_KIND_CLIENT/STATUS_CODE_ERROR"] != 1 {
		t.Errorf("span metric labels %v", kinds)
	}

	// The shared halves pair at once; the ratings client waits.
	if len(o.edges) != 1 {
		t.Fatalf("edges %+v", o.edges)
	}
	e := o.edges[0]
	if e.Client != "productpage.default" || e.Server != "reviews.default" || e.ConnectionType != ConnNone ||
		e.ClientDuration != 20*time.Millisecond || e.ServerDuration != 18*time.Millisecond || e.Failed {
		t.Errorf("edge %+v", e)
	}
	if st := p.PairerStats(); st.Pending != 1 || st.Paired != 1 {
		t.Errorf("stats %+v", st)
	}
	clk.t = clk.t.Add(6 * time.Second)
	p.ExpireNow(context.Background())
	if len(o.edges) != 2 {
		t.Fatalf("edges after expiry %+v", o.edges)
	}
	if e := o.edges[1]; e.Client != "reviews.default" || e.Server != "ratings.default" || e.ConnectionType != ConnVirtualNode || !e.Failed {
		t.Errorf("virtual edge %+v", e)
	}
}

type otelSpan struct {
	id, parent byte
	kind       ptrace.SpanKind
	service    string
	attrs      map[string]any
	err        bool
	dur        time.Duration
}

func otelTraces(spans ...otelSpan) ptrace.Traces {
	td := ptrace.NewTraces()
	for _, s := range spans {
		rs := td.ResourceSpans().AppendEmpty()
		rs.Resource().Attributes().PutStr("service.name", s.service)
		rs.Resource().Attributes().PutStr("k8s.pod.name", s.service+"-pod")
		rs.Resource().Attributes().PutStr("k8s.namespace.name", "shop")
		sp := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
		sp.SetTraceID(pcommon.TraceID([16]byte{9, 9}))
		sp.SetSpanID(pcommon.SpanID([8]byte{s.id}))
		if s.parent != 0 {
			sp.SetParentSpanID(pcommon.SpanID([8]byte{s.parent}))
		}
		sp.SetKind(s.kind)
		sp.SetName("op")
		sp.SetStartTimestamp(1e18)
		sp.SetEndTimestamp(1e18 + pcommon.Timestamp(s.dur))
		sp.Attributes().FromRaw(s.attrs)
		if s.err {
			sp.Status().SetCode(ptrace.StatusCodeError)
		}
	}
	return td
}

// TestParentChildAcrossBatches: OTel SDK spans, client and server in
// different exports, paired by parent id.
func TestParentChildAcrossBatches(t *testing.T) {
	o := &outputs{}
	p, _ := newProc(o, Config{})
	ctx := context.Background()
	p.ConsumeTraces(ctx, otelTraces(otelSpan{id: 1, kind: ptrace.SpanKindServer, service: "frontend", dur: 9 * time.Millisecond,
		attrs: map[string]any{"http.request.method": "GET", "url.path": "/", "http.response.status_code": 200, "client.address": "192.168.1.10"}}))
	p.ConsumeTraces(ctx, otelTraces(otelSpan{id: 2, parent: 1, kind: ptrace.SpanKindClient, service: "frontend", dur: 5 * time.Millisecond,
		attrs: map[string]any{"rpc.system": "grpc", "rpc.service": "hipstershop.CartService", "rpc.method": "GetCart", "rpc.grpc.status_code": 0, "server.address": "cartservice", "server.port": 7070}}))
	p.ConsumeTraces(ctx, otelTraces(otelSpan{id: 3, parent: 2, kind: ptrace.SpanKindServer, service: "cartservice", dur: 4 * time.Millisecond, err: true,
		attrs: map[string]any{"rpc.system": "grpc", "rpc.service": "hipstershop.CartService", "rpc.method": "GetCart", "network.peer.address": "10.1.0.7"}}))

	root := o.call(t, model.DetectServer, "", "frontend")
	if root.Source.IP != "192.168.1.10" || root.Endpoint != "GET:/" || root.Destination.Namespace != "shop" || root.Destination.Instance != "frontend-pod" {
		t.Errorf("root call %+v", root)
	}
	cl := o.call(t, model.DetectClient, "frontend", "cartservice")
	if cl.Protocol != model.ProtocolGRPC || cl.GRPCStatus != 0 || cl.Endpoint != "/hipstershop.CartService/GetCart" || cl.Authority != "cartservice" {
		t.Errorf("client call %+v", cl)
	}
	sv := o.call(t, model.DetectServer, "", "cartservice")
	if sv.Source.IP != "10.1.0.7" || sv.GRPCStatus != 2 || !sv.IsError() {
		t.Errorf("failed gRPC server span without status code: %+v", sv)
	}
	want := []GraphEdge{
		{Client: VirtualUser, Server: "frontend", ConnectionType: ConnVirtualNode, ClientDuration: 9 * time.Millisecond, ServerDuration: 9 * time.Millisecond},
		{Client: "frontend", Server: "cartservice", ClientDuration: 5 * time.Millisecond, ServerDuration: 4 * time.Millisecond, Failed: true},
	}
	if len(o.edges) != len(want) || o.edges[0] != want[0] || o.edges[1] != want[1] {
		t.Errorf("edges %+v", o.edges)
	}
}

func TestDatabaseMessagingAndErrors(t *testing.T) {
	o := &outputs{}
	p, _ := newProc(o, Config{})
	p.ConsumeTraces(context.Background(), otelTraces(
		otelSpan{id: 1, parent: 7, kind: ptrace.SpanKindClient, service: "orders", dur: time.Millisecond, attrs: map[string]any{"db.system": "postgresql", "db.name": "orders_db"}},
		otelSpan{id: 2, parent: 7, kind: ptrace.SpanKindProducer, service: "orders", dur: time.Millisecond, attrs: map[string]any{"messaging.system": "kafka"}},
		otelSpan{id: 3, parent: 2, kind: ptrace.SpanKindConsumer, service: "shipping", dur: 2 * time.Millisecond},
		otelSpan{id: 4, parent: 7, kind: ptrace.SpanKindClient, service: "orders", err: true, attrs: map[string]any{"http.method": "POST", "http.url": "http://pay.shop.svc.cluster.local/charge"}},
	))
	sort.Slice(o.edges, func(i, j int) bool { return o.edges[i].Server < o.edges[j].Server })
	if len(o.edges) != 2 || o.edges[0].Server != "orders_db" || o.edges[0].ConnectionType != ConnDatabase ||
		o.edges[1].Server != "shipping" || o.edges[1].ConnectionType != ConnMessaging {
		t.Errorf("edges %+v", o.edges)
	}
	if c := o.call(t, model.DetectClient, "orders", "orders_db"); c.Protocol != model.ProtocolTCP || c.Duration != time.Millisecond {
		t.Errorf("database call %+v", c)
	}
	var pay *model.Call
	for i := range o.calls {
		if o.calls[i].Endpoint == "POST:/charge" {
			pay = &o.calls[i]
		}
	}
	if pay == nil || pay.ResponseFlags != SpanErrorFlag || !pay.IsError() || pay.Authority != "pay.shop.svc.cluster.local" {
		t.Fatalf("failed HTTP span without a status: %+v", pay)
	}
}

func TestPairerBounds(t *testing.T) {
	pr := NewPairer(time.Second, 2)
	now := time.Unix(0, 0)
	var edges []GraphEdge
	for i := byte(1); i <= 3; i++ {
		edges = pr.Add(Half{TraceID: pcommon.TraceID{1}, Key: pcommon.SpanID{i}, Client: true, Service: "a"}, now, edges)
	}
	if st := pr.Stats(); st.Pending != 2 || st.Evicted != 1 || len(edges) != 0 {
		t.Fatalf("stats %+v edges %v", st, edges)
	}
	// Same side twice does not pair; the other side does.
	edges = pr.Add(Half{TraceID: pcommon.TraceID{1}, Key: pcommon.SpanID{3}, Client: true, Service: "dup"}, now, edges)
	edges = pr.Add(Half{TraceID: pcommon.TraceID{1}, Key: pcommon.SpanID{3}, Service: "b", Duration: time.Millisecond}, now, edges)
	if len(edges) != 1 || edges[0].Client != "a" || edges[0].Server != "b" {
		t.Fatalf("edges %+v", edges)
	}
	edges = pr.Expire(now.Add(time.Second), nil)
	if st := pr.Stats(); st.Pending != 0 || st.Expired != 1 || len(edges) != 0 {
		t.Fatalf("after expiry %+v %v", st, edges)
	}
}

func TestParseHelpers(t *testing.T) {
	n := parseNodeID("sidecar~10.0.0.9~reviews-v2-7bf8c9648f-7xkzb.default~default.svc.cluster.local")
	if n.ip != "10.0.0.9" || n.pod != "reviews-v2-7bf8c9648f-7xkzb" || n.namespace != "default" {
		t.Errorf("%+v", n)
	}
	if s, ns, ok := parseUpstreamCluster("outbound|9080|v1|reviews.bookinfo.svc.cluster.local"); !ok || s != "reviews" || ns != "bookinfo" {
		t.Errorf("%s %s %v", s, ns, ok)
	}
	if _, _, ok := parseUpstreamCluster("inbound|9080||"); ok {
		t.Error("inbound parsed")
	}
}

// FuzzParseHelpers checks the Cut-based parsers against the Split-based
// reading they replaced.
func FuzzParseHelpers(f *testing.F) {
	for _, s := range []string{"sidecar~10.0.0.9~reviews-v2-7bf8c9648f-7xkzb.default~default.svc.cluster.local", "a~b~c", "a~b~c~d~e", "~~~",
		"outbound|9080|v1|reviews.bookinfo.svc.cluster.local", "outbound|9080|v1|", "outbound|9080||a|b", "inbound|9080||x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want := nodeID{}
		if parts := strings.Split(s, "~"); len(parts) == 4 {
			want.ip = parts[1]
			if pod, ns, ok := strings.Cut(parts[2], "."); ok {
				want.pod, want.namespace = pod, ns
			} else {
				want.pod = parts[2]
			}
			if want.namespace == "" {
				want.namespace, _, _ = strings.Cut(parts[3], ".")
			}
		}
		if got := parseNodeID(s); got != want {
			t.Errorf("parseNodeID(%q) = %+v, want %+v", s, got, want)
		}
		var ws, wns string
		parts := strings.Split(s, "|")
		wok := len(parts) == 4 && parts[0] == "outbound" && parts[3] != ""
		if wok {
			ws, wns = splitService(parts[3])
		}
		if gs, gns, gok := parseUpstreamCluster(s); gs != ws || gns != wns || gok != wok {
			t.Errorf("parseUpstreamCluster(%q) = %q %q %v, want %q %q %v", s, gs, gns, gok, ws, wns, wok)
		}
	})
}

func BenchmarkConsumeTraces(b *testing.B) {
	p := New(Config{}, &discard{}, &discard{}, nil, nil)
	td := bookinfo()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		p.ConsumeTraces(context.Background(), td)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*td.SpanCount()), "ns/span")
}

type discard struct{}

func (discard) ConsumeCalls(context.Context, []model.Call) error { return nil }
func (discard) ConsumeSpanMetrics(context.Context, []SpanMetric, []GraphEdge) error {
	return nil
}

// A CLIENT span and the SERVER spans it caused, in one batch: the client's
// destination is the first SERVER child in batch order (not what its own
// attributes say), and every server's source is the client's service.
func TestSameBatchClientServer(t *testing.T) {
	o := &outputs{}
	p, _ := newProc(o, Config{})
	p.ConsumeTraces(context.Background(), otelTraces(
		otelSpan{id: 2, parent: 1, kind: ptrace.SpanKindClient, service: "frontend", dur: 5 * time.Millisecond,
			attrs: map[string]any{"http.method": "GET", "server.address": "gateway"}},
		otelSpan{id: 3, parent: 2, kind: ptrace.SpanKindServer, service: "cartservice", dur: 4 * time.Millisecond},
		otelSpan{id: 4, parent: 2, kind: ptrace.SpanKindServer, service: "cartservice-canary", dur: 3 * time.Millisecond},
	))
	var client []model.Call
	for _, c := range o.calls {
		if c.DetectPoint == model.DetectClient {
			client = append(client, c)
		}
	}
	if len(client) != 1 || client[0].Source.Service != "frontend" || client[0].Destination.Service != "cartservice" {
		t.Fatalf("client calls %+v", client)
	}
	o.call(t, model.DetectServer, "frontend", "cartservice")
	o.call(t, model.DetectServer, "frontend", "cartservice-canary")
}
