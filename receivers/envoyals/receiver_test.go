package envoyals

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshlens/meshlens/model"
	"github.com/meshlens/meshlens/pipeline"
	"github.com/meshlens/meshlens/receivers/receivertest"
)

// sink records every call it is given (copied, as the contract requires).
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

func (s *sink) get() []model.Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]model.Call(nil), s.calls...)
}

type harness struct {
	sink   *sink
	reg    *prometheus.Registry
	tel    *pipeline.Telemetry
	client alsv3.AccessLogServiceClient
	cc     *grpc.ClientConn
}

// startServer runs the receiver on a real 127.0.0.1 listener.
func startServer(t *testing.T, cfg Config) *harness {
	t.Helper()
	h := &harness{sink: &sink{}, reg: prometheus.NewRegistry()}
	h.tel = pipeline.NewTelemetry(h.reg)
	r := New(cfg, h.sink, h.tel, nil)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	r.Register(srv)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	h.cc = cc
	h.client = alsv3.NewAccessLogServiceClient(cc)
	return h
}

// send streams msgs and returns the stream's final error.
func (h *harness) send(t *testing.T, msgs ...*alsv3.StreamAccessLogsMessage) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := h.client.StreamAccessLogs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if err := st.Send(m); err != nil {
			break // the server ended the stream; CloseAndRecv has the status
		}
	}
	_, err = st.CloseAndRecv()
	return err
}

func (h *harness) refused(reason string) float64 {
	return testutil.ToFloat64(h.telRefused(reason))
}

func (h *harness) telRefused(reason string) prometheus.Collector {
	// Read the counter through the registry so the test sees what /metrics would.
	return gathered{h.reg, "meshlens_receiver_refused_items_total", map[string]string{"reason": reason}}
}

func (h *harness) accepted() float64 {
	return testutil.ToFloat64(gathered{h.reg, "meshlens_receiver_accepted_items_total", nil})
}

var (
	productpage = istioNode("sidecar", "10.0.0.10", "productpage-v1-5b8d6", "default", "productpage", "v1")
	reviewsV1   = istioNode("sidecar", "10.0.0.20", "reviews-v1-7f99c", "default", "reviews", "v1")
	ingressGW   = istioNode("router", "10.0.0.2", "istio-ingressgateway-6c9f", "istio-system", "istio-ingressgateway", "")
)

func TestIdentifierRememberedPerStream(t *testing.T) {
	h := startServer(t, DefaultConfig())
	err := h.send(t,
		httpMsg(productpage, httpEntry()),
		httpMsg(nil, httpEntry(), httpEntry()), // later messages carry no identifier
	)
	if err != nil {
		t.Fatal(err)
	}
	calls := h.sink.get()
	if len(calls) != 3 {
		t.Fatalf("got %d calls, want 3", len(calls))
	}
	for i, c := range calls {
		if c.Source.Service != "productpage" || c.Source.Namespace != "default" || c.Source.Instance != "productpage-v1-5b8d6" {
			t.Errorf("call %d: source %+v, want the stream's node productpage", i, c.Source)
		}
	}
	if got := h.accepted(); got != 3 {
		t.Errorf("accepted = %v, want 3", got)
	}
}

func TestFirstMessageWithoutIdentifier(t *testing.T) {
	h := startServer(t, DefaultConfig())
	err := h.send(t, httpMsg(nil, httpEntry()))
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("err = %v, want InvalidArgument", err)
	}
	if got := h.refused("missing_identifier"); got != 1 {
		t.Errorf("refused missing_identifier = %v, want 1", got)
	}
}

func TestSidecarOutboundClientSide(t *testing.T) {
	h := startServer(t, DefaultConfig())
	if err := h.send(t, httpMsg(productpage, httpEntry())); err != nil {
		t.Fatal(err)
	}
	calls := h.sink.get()
	if len(calls) != 1 {
		t.Fatalf("got %d calls", len(calls))
	}
	c := calls[0]
	want := model.Call{
		Source: model.Identity{Service: "productpage", Namespace: "default", Cluster: "Kubernetes",
			Workload: "productpage-v1", Version: "v1", Instance: "productpage-v1-5b8d6",
			Principal: "spiffe://cluster.local/ns/default/sa/bookinfo-productpage", IP: "10.0.0.10"},
		Destination:     model.Identity{IP: "10.0.0.20", Instance: "10.0.0.20:9080"},
		Start:           t0,
		Duration:        25 * time.Millisecond,
		StatusCode:      200,
		GRPCStatus:      -1,
		RequestBytes:    120,
		ResponseBytes:   450,
		Protocol:        model.ProtocolHTTP,
		TLS:             model.TLSNone,
		DetectPoint:     model.DetectClient,
		Method:          "GET",
		Path:            "/reviews/0?x=1",
		Authority:       "reviews:9080",
		RequestID:       "req-1",
		UpstreamCluster: "outbound|9080||reviews.default.svc.cluster.local",
	}
	c.Start = c.Start.UTC()
	if c != want {
		t.Errorf("call\n got %+v\nwant %+v", c, want)
	}
}

func TestSidecarOutboundWithUpstreamPeer(t *testing.T) {
	h := startServer(t, DefaultConfig())
	e := httpEntry(func(e *accesslogv3.HTTPAccessLogEntry) {
		e.CommonProperties.FilterStateObjects = map[string]*anypb.Any{
			"upstream_peer": peerStruct("reviews-v2", "default", "reviews", "v2"),
		}
	})
	if err := h.send(t, httpMsg(productpage, e, e)); err != nil {
		t.Fatal(err)
	}
	calls := h.sink.get()
	if len(calls) != 2 {
		t.Fatalf("got %d calls", len(calls))
	}
	for _, c := range calls {
		d := c.Destination
		if d.Service != "reviews" || d.Namespace != "default" || d.Version != "v2" || d.Workload != "reviews-v2" ||
			d.Instance != "reviews-v2-abc12" || d.IP != "10.0.0.20" || d.Cluster != "Kubernetes" {
			t.Errorf("destination from upstream_peer = %+v", d)
		}
	}
}

func TestSidecarInboundServerSideMTLS(t *testing.T) {
	h := startServer(t, DefaultConfig())
	e := httpEntry(func(e *accesslogv3.HTTPAccessLogEntry) {
		cm := e.CommonProperties
		cm.UpstreamCluster = "inbound|9080||"
		cm.DownstreamRemoteAddress = sockAddr("10.0.0.10", 43210)
		cm.DownstreamLocalAddress = sockAddr("10.0.0.20", 9080)
		cm.UpstreamRemoteAddress = sockAddr("10.0.0.20", 9080)
		cm.TlsProperties = mtls("default", "bookinfo-productpage", "default", "bookinfo-reviews")
	})
	plain := httpEntry(func(e *accesslogv3.HTTPAccessLogEntry) {
		cm := e.CommonProperties
		cm.UpstreamCluster = "inbound|9080||"
		cm.DownstreamRemoteAddress = sockAddr("10.0.0.11", 43211)
		cm.DownstreamLocalAddress = sockAddr("10.0.0.20", 9080)
	})
	if err := h.send(t, httpMsg(reviewsV1, e, plain)); err != nil {
		t.Fatal(err)
	}
	calls := h.sink.get()
	if len(calls) != 2 {
		t.Fatalf("got %d calls", len(calls))
	}
	c := calls[0]
	if c.DetectPoint != model.DetectServer {
		t.Errorf("detect point %v, want server", c.DetectPoint)
	}
	if c.Destination.Service != "reviews" || c.Destination.Version != "v1" || c.Destination.Instance != "reviews-v1-7f99c" {
		t.Errorf("destination %+v, want the proxy itself", c.Destination)
	}
	if c.Destination.Principal != "spiffe://cluster.local/ns/default/sa/bookinfo-reviews" {
		t.Errorf("destination principal %q", c.Destination.Principal)
	}
	if c.Source.Service != "" || c.Source.IP != "10.0.0.10" || c.Source.Instance != "10.0.0.10" {
		t.Errorf("source %+v, want the unresolved client IP", c.Source)
	}
	if c.Source.Principal != "spiffe://cluster.local/ns/default/sa/bookinfo-productpage" {
		t.Errorf("source principal %q", c.Source.Principal)
	}
	if c.TLS != model.TLSMutual {
		t.Errorf("TLS %v, want mtls", c.TLS)
	}
	if calls[1].TLS != model.TLSNone || calls[1].DetectPoint != model.DetectServer {
		t.Errorf("plaintext inbound: TLS %v detect %v", calls[1].TLS, calls[1].DetectPoint)
	}
}

func TestInboundFromDownstreamPeerMetadata(t *testing.T) {
	h := startServer(t, DefaultConfig())
	fn := flatNode(
		fbField{slot: fnName, str: "productpage-v1-5b8d6"},
		fbField{slot: fnNamespace, str: "default"},
		fbField{slot: fnLabels, labels: [][2]string{{"app", "productpage"}, {"version", "v1"}, {"pod-template-hash", "5b8d6"}}},
		fbField{slot: fnWorkloadName, str: "productpage-v1"},
		fbField{slot: fnClusterID, str: "Kubernetes"},
		fbField{slot: fnInstanceIPs, strs: []string{"10.0.0.10"}},
	)
	e := httpEntry(func(e *accesslogv3.HTTPAccessLogEntry) {
		e.CommonProperties.UpstreamCluster = "inbound|9080||"
		e.CommonProperties.FilterStateObjects = map[string]*anypb.Any{"wasm.downstream_peer": wasmPeer(fn)}
	})
	if err := h.send(t, httpMsg(reviewsV1, e)); err != nil {
		t.Fatal(err)
	}
	c := h.sink.get()[0]
	s := c.Source
	if s.Service != "productpage" || s.Namespace != "default" || s.Version != "v1" || s.Workload != "productpage-v1" ||
		s.Instance != "productpage-v1-5b8d6" || s.Cluster != "Kubernetes" || s.IP != "10.0.0.10" {
		t.Errorf("source from wasm.downstream_peer FlatBuffer = %+v", s)
	}
}

func TestGatewayYieldsTwoCalls(t *testing.T) {
	h := startServer(t, DefaultConfig())
	e := httpEntry(func(e *accesslogv3.HTTPAccessLogEntry) {
		cm := e.CommonProperties
		cm.DownstreamRemoteAddress = sockAddr("192.0.2.7", 51000)
		cm.DownstreamLocalAddress = sockAddr("10.0.0.2", 8080)
		cm.UpstreamRemoteAddress = sockAddr("10.0.0.10", 9080)
		cm.UpstreamCluster = "outbound|9080||productpage.default.svc.cluster.local"
		cm.TlsProperties = &accesslogv3.TLSProperties{TlsVersion: accesslogv3.TLSProperties_TLSv1_3, TlsSniHostname: "bookinfo.example.com"}
		e.Request.Authority = "bookinfo.example.com"
		e.Request.Path = "/productpage"
	})
	if err := h.send(t, httpMsg(ingressGW, e)); err != nil {
		t.Fatal(err)
	}
	calls := h.sink.get()
	if len(calls) != 2 {
		t.Fatalf("gateway entry gave %d calls, want 2", len(calls))
	}
	down, up := calls[0], calls[1]
	if down.DetectPoint != model.DetectServer || down.Destination.Service != "istio-ingressgateway" ||
		down.Source.IP != "192.0.2.7" || down.TLS != model.TLSSimple {
		t.Errorf("downstream leg %+v", down)
	}
	if up.DetectPoint != model.DetectClient || up.Source.Service != "istio-ingressgateway" ||
		up.Source.Namespace != "istio-system" || up.Destination.IP != "10.0.0.10" ||
		up.UpstreamCluster != "outbound|9080||productpage.default.svc.cluster.local" {
		t.Errorf("upstream leg %+v", up)
	}
	if up.DetectPoint.Reporter() != "source" {
		t.Errorf("gateway upstream leg reporter %q, want source", up.DetectPoint.Reporter())
	}
	if got := h.accepted(); got != 1 {
		t.Errorf("accepted %v entries, want 1", got)
	}
}

func TestNoRouteEmptyUpstreamCluster(t *testing.T) {
	h := startServer(t, DefaultConfig())
	e := httpEntry(func(e *accesslogv3.HTTPAccessLogEntry) {
		cm := e.CommonProperties
		cm.UpstreamCluster = ""
		cm.UpstreamRemoteAddress = nil
		cm.UpstreamLocalAddress = nil
		cm.ResponseFlags = &accesslogv3.ResponseFlags{NoRouteFound: true}
		e.Request.Authority = "ratings.default:9080"
		e.Response.ResponseCode = wrapperspb.UInt32(404)
	})
	if err := h.send(t, httpMsg(productpage, e)); err != nil {
		t.Fatal(err)
	}
	c := h.sink.get()[0]
	if c.ResponseFlags != "NR" || c.StatusCode != 404 || c.UpstreamCluster != "" || c.DetectPoint != model.DetectClient {
		t.Errorf("NR call %+v", c)
	}
	if c.Destination.Service != "" || c.Destination.IP != "" || c.Authority != "ratings.default:9080" {
		t.Errorf("NR destination %+v authority %q: want empty, resolvable from authority", c.Destination, c.Authority)
	}
}

func TestTCPEntries(t *testing.T) {
	h := startServer(t, DefaultConfig())
	tcp := func(typ accesslogv3.AccessLogType, tlsProps *accesslogv3.TLSProperties) *accesslogv3.TCPAccessLogEntry {
		return &accesslogv3.TCPAccessLogEntry{
			CommonProperties: &accesslogv3.AccessLogCommon{
				StartTime:                  timestamppb.New(t0),
				TimeToLastDownstreamTxByte: durationpb.New(3 * time.Second),
				DownstreamRemoteAddress:    sockAddr("10.0.0.10", 40001),
				UpstreamRemoteAddress:      sockAddr("203.0.113.5", 5432),
				UpstreamCluster:            "PassthroughCluster",
				AccessLogType:              typ,
				TlsProperties:              tlsProps,
			},
			ConnectionProperties: &accesslogv3.ConnectionProperties{ReceivedBytes: 1000, SentBytes: 5000},
		}
	}
	err := h.send(t, tcpMsg(productpage,
		tcp(accesslogv3.AccessLogType_TcpConnectionEnd, nil),
		tcp(accesslogv3.AccessLogType_TcpPeriodic, nil),
		tcp(accesslogv3.AccessLogType_NotSet, mtls("db", "pg", "default", "bookinfo-productpage")),
	))
	if err != nil {
		t.Fatal(err)
	}
	calls := h.sink.get()
	if len(calls) != 3 {
		t.Fatalf("got %d calls", len(calls))
	}
	c := calls[0]
	if c.Protocol != model.ProtocolTCP || c.RequestBytes != 1000 || c.ResponseBytes != 5000 ||
		!c.ConnOpened || !c.ConnClosed || c.Destination.Instance != "203.0.113.5:5432" ||
		c.Duration != 3*time.Second || c.StatusCode != 0 || c.GRPCStatus != -1 || c.TLS != model.TLSNone {
		t.Errorf("TCP end entry %+v", c)
	}
	if calls[1].ConnOpened || calls[1].ConnClosed {
		t.Errorf("periodic TCP entry counted as open/close: %+v", calls[1])
	}
	if calls[2].TLS != model.TLSMutual || !calls[2].ConnClosed {
		t.Errorf("mTLS TCP entry %+v", calls[2])
	}
}

func TestEntryWithoutStartTimeRejectedRestKept(t *testing.T) {
	h := startServer(t, DefaultConfig())
	bad := httpEntry(func(e *accesslogv3.HTTPAccessLogEntry) { e.CommonProperties.StartTime = nil })
	good2 := httpEntry(func(e *accesslogv3.HTTPAccessLogEntry) { e.Request.RequestId = "req-3" })
	if err := h.send(t, httpMsg(productpage, httpEntry(), bad, good2)); err != nil {
		t.Fatal(err)
	}
	calls := h.sink.get()
	if len(calls) != 2 || calls[0].RequestID != "req-1" || calls[1].RequestID != "req-3" {
		t.Fatalf("got %d calls %+v, want the 2 good entries", len(calls), calls)
	}
	if got := h.refused("missing_start_time"); got != 1 {
		t.Errorf("refused missing_start_time = %v, want 1", got)
	}
	if got := h.accepted(); got != 2 {
		t.Errorf("accepted = %v, want 2", got)
	}
}

func TestMaxEntriesPerMessage(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxEntriesPerMessage = 2
	h := startServer(t, cfg)
	if err := h.send(t, httpMsg(productpage, httpEntry(), httpEntry(), httpEntry())); err != nil {
		t.Fatal(err)
	}
	if n := len(h.sink.get()); n != 2 {
		t.Errorf("kept %d, want 2", n)
	}
	if got := h.refused("too_many_entries"); got != 1 {
		t.Errorf("refused too_many_entries = %v", got)
	}
}

func TestGRPCAndFlags(t *testing.T) {
	h := startServer(t, DefaultConfig())
	g := httpEntry(func(e *accesslogv3.HTTPAccessLogEntry) {
		e.ProtocolVersion = accesslogv3.HTTPAccessLogEntry_HTTP2
		e.Request.RequestMethod = 3 // POST
		e.Request.Path = "/hipstershop.CartService/GetCart"
		e.Response.ResponseTrailers = map[string]string{"grpc-status": "14"}
		e.CommonProperties.ResponseFlags = &accesslogv3.ResponseFlags{
			UpstreamRetryLimitExceeded: true, NoHealthyUpstream: true, UpstreamConnectionFailure: true,
		}
	})
	heur := httpEntry(func(e *accesslogv3.HTTPAccessLogEntry) {
		e.ProtocolVersion = accesslogv3.HTTPAccessLogEntry_HTTP2
		e.Request.RequestMethod = 3
		e.Request.Path = "/grpc.health.v1.Health/Check"
	})
	if err := h.send(t, httpMsg(productpage, g, heur)); err != nil {
		t.Fatal(err)
	}
	calls := h.sink.get()
	if calls[0].Protocol != model.ProtocolGRPC || calls[0].GRPCStatus != 14 || !calls[0].IsError() {
		t.Errorf("gRPC call %+v", calls[0])
	}
	if calls[0].ResponseFlags != "UH,UF,URX" {
		t.Errorf("flags %q, want Envoy order UH,UF,URX", calls[0].ResponseFlags)
	}
	if calls[1].Protocol != model.ProtocolGRPC || calls[1].GRPCStatus != -1 {
		t.Errorf("path heuristic: %+v", calls[1])
	}
}

func TestMalformedProtobufEndsStreamServerKeepsServing(t *testing.T) {
	h := startServer(t, DefaultConfig())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	desc := &grpc.StreamDesc{StreamName: "StreamAccessLogs", ClientStreams: true}
	st, err := h.cc.NewStream(ctx, desc, "/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs",
		grpc.ForceCodec(receivertest.RawCodec{}))
	if err != nil {
		t.Fatal(err)
	}
	// Field 2 (http_logs), wire type 2, length 100 with only 3 bytes behind.
	_ = st.SendMsg([]byte{0x12, 0x64, 0x01, 0x02, 0x03})
	_ = st.CloseSend()
	err = st.RecvMsg(new([]byte))
	// grpc-go answers an unparsable message itself with INTERNAL before the
	// handler runs; what matters is that the stream ends with an error that
	// says so and that the server carries on.
	if s := status.Convert(err); s.Code() != codes.Internal || !strings.Contains(s.Message(), "unmarshal") {
		t.Fatalf("malformed message: err = %v, want INTERNAL failed to unmarshal", err)
	}
	// grpc-go sends the status before the handler returns, so the counter
	// may lag the client by a moment.
	deadline := time.Now().Add(5 * time.Second)
	for h.refused("malformed") != 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := h.refused("malformed"); got != 1 {
		t.Errorf("refused malformed = %v", got)
	}
	// The server is still serving.
	if err := h.send(t, httpMsg(productpage, httpEntry())); err != nil {
		t.Fatalf("after a malformed stream: %v", err)
	}
	if n := len(h.sink.get()); n != 1 {
		t.Errorf("got %d calls after recovery", n)
	}
}

func TestOverloadResourceExhausted(t *testing.T) {
	h := startServer(t, DefaultConfig())
	h.sink.err = fmt.Errorf("queue als is full: %w", pipeline.ErrOverloaded)
	err := h.send(t, httpMsg(productpage, httpEntry(), httpEntry()))
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("err = %v, want ResourceExhausted", err)
	}
	if got := h.refused("overloaded"); got != 2 {
		t.Errorf("refused overloaded = %v, want 2", got)
	}
}

func TestDisabledKindsIgnored(t *testing.T) {
	cfg := DefaultConfig()
	cfg.TCP = false
	h := startServer(t, cfg)
	e := &accesslogv3.TCPAccessLogEntry{CommonProperties: &accesslogv3.AccessLogCommon{StartTime: timestamppb.New(t0)}}
	if err := h.send(t, tcpMsg(productpage, e), httpMsg(nil, httpEntry())); err != nil {
		t.Fatal(err)
	}
	calls := h.sink.get()
	if len(calls) != 1 || calls[0].Protocol != model.ProtocolHTTP {
		t.Errorf("with TCP off got %+v", calls)
	}
}

func TestMalformedEntryKeepsRestEndsStream(t *testing.T) {
	h := startServer(t, DefaultConfig())
	good, err := proto.Marshal(httpEntry())
	if err != nil {
		t.Fatal(err)
	}
	ident, err := proto.Marshal(&alsv3.StreamAccessLogsMessage_Identifier{Node: productpage, LogName: "als"})
	if err != nil {
		t.Fatal(err)
	}
	// common_properties holding a start_time whose length runs past the end.
	bad := []byte{0x0a, 0x02, 0x2a, 0x05}
	var logs []byte
	logs = protowire.AppendTag(logs, 1, protowire.BytesType)
	logs = protowire.AppendBytes(logs, good)
	logs = protowire.AppendTag(logs, 1, protowire.BytesType)
	logs = protowire.AppendBytes(logs, bad)
	var msg []byte
	msg = protowire.AppendTag(msg, 1, protowire.BytesType)
	msg = protowire.AppendBytes(msg, ident)
	msg = protowire.AppendTag(msg, 2, protowire.BytesType)
	msg = protowire.AppendBytes(msg, logs)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := h.cc.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true},
		"/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs", grpc.ForceCodec(receivertest.RawCodec{}))
	if err != nil {
		t.Fatal(err)
	}
	_ = st.SendMsg(msg)
	_ = st.CloseSend()
	err = st.RecvMsg(new([]byte))
	if s := status.Convert(err); s.Code() != codes.InvalidArgument || !strings.Contains(s.Message(), "start_time") && !strings.Contains(s.Message(), "common_properties") {
		t.Fatalf("err = %v, want InvalidArgument naming the broken field", err)
	}
	if calls := h.sink.get(); len(calls) != 1 || calls[0].RequestID != "req-1" {
		t.Fatalf("the good entry of the message was not kept: %+v", calls)
	}
	if got := h.refused("malformed"); got != 1 {
		t.Errorf("refused malformed = %v, want 1", got)
	}
}

func TestWaypointProxyCall(t *testing.T) {
	h := startServer(t, DefaultConfig())
	wp := istioNode("waypoint", "10.0.0.3", "waypoint-5f6d", "default", "waypoint", "")
	e := httpEntry(func(e *accesslogv3.HTTPAccessLogEntry) {
		e.CommonProperties.UpstreamCluster = "inbound-vip|9080|http|reviews.default.svc.cluster.local"
		e.CommonProperties.DownstreamRemoteAddress = sockAddr("10.0.0.10", 40000)
		e.CommonProperties.UpstreamRemoteAddress = sockAddr("10.0.0.20", 9080)
	})
	if err := h.send(t, httpMsg(wp, e)); err != nil {
		t.Fatal(err)
	}
	calls := h.sink.get()
	if len(calls) != 1 {
		t.Fatalf("waypoint gave %d calls", len(calls))
	}
	c := calls[0]
	if c.DetectPoint != model.DetectProxy || c.Source.IP != "10.0.0.10" || c.Destination.Instance != "10.0.0.20:9080" ||
		c.Source.Service == "waypoint" || c.Destination.Service == "waypoint" {
		t.Errorf("waypoint call %+v", c)
	}
}
