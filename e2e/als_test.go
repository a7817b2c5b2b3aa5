package e2e

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// node is an Istio sidecar's Envoy node as Istio's pilot-agent fills it.
func node(pod, app, version, ip string) *corev3.Node {
	md, err := structpb.NewStruct(map[string]any{
		"NAME":          pod,
		"NAMESPACE":     "default",
		"WORKLOAD_NAME": app + "-" + version,
		"CLUSTER_ID":    "Kubernetes",
		"INSTANCE_IPS":  ip,
		"LABELS": map[string]any{
			"app": app, "version": version,
			"service.istio.io/canonical-name":     app,
			"service.istio.io/canonical-revision": version,
		},
	})
	if err != nil {
		panic(err)
	}
	return &corev3.Node{
		Id:       fmt.Sprintf("sidecar~%s~%s.default~default.svc.cluster.local", ip, pod),
		Cluster:  app + ".default",
		Metadata: md,
	}
}

func sockAddr(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}
}

// httpEntry is one access-log entry of a request that took d and answered code.
func httpEntry(start time.Time, d time.Duration, code uint32, upstreamCluster, upstreamIP, downstreamIP, localIP string) *accesslogv3.HTTPAccessLogEntry {
	return &accesslogv3.HTTPAccessLogEntry{
		CommonProperties: &accesslogv3.AccessLogCommon{
			StartTime:                  timestamppb.New(start),
			TimeToLastDownstreamTxByte: durationpb.New(d),
			UpstreamCluster:            upstreamCluster,
			UpstreamRemoteAddress:      sockAddr(upstreamIP, 9080),
			DownstreamRemoteAddress:    sockAddr(downstreamIP, 45678),
			DownstreamLocalAddress:     sockAddr(localIP, 9080),
		},
		ProtocolVersion: accesslogv3.HTTPAccessLogEntry_HTTP11,
		Request: &accesslogv3.HTTPRequestProperties{
			RequestMethod: corev3.RequestMethod_GET, Path: "/reviews/0", Authority: "reviews:9080",
			RequestId: "req-1", RequestHeadersBytes: 200,
		},
		Response: &accesslogv3.HTTPResponseProperties{
			ResponseCode: wrapperspb.UInt32(code), ResponseHeadersBytes: 100, ResponseBodyBytes: 400,
		},
	}
}

// alsStream opens one ALS stream as Envoy does: identifier on the first
// message only.
type alsStream struct {
	stream grpc.ClientStreamingClient[alsv3.StreamAccessLogsMessage, alsv3.StreamAccessLogsResponse]
	first  bool
	node   *corev3.Node
}

func dialALS(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func openALS(t *testing.T, ctx context.Context, conn *grpc.ClientConn, n *corev3.Node) *alsStream {
	t.Helper()
	s, err := alsv3.NewAccessLogServiceClient(conn).StreamAccessLogs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return &alsStream{stream: s, first: true, node: n}
}

func (s *alsStream) send(entries ...*accesslogv3.HTTPAccessLogEntry) error {
	msg := &alsv3.StreamAccessLogsMessage{LogEntries: &alsv3.StreamAccessLogsMessage_HttpLogs{
		HttpLogs: &alsv3.StreamAccessLogsMessage_HTTPAccessLogEntries{LogEntry: entries}}}
	if s.first {
		msg.Identifier = &alsv3.StreamAccessLogsMessage_Identifier{Node: s.node, LogName: "http_envoy_accesslog"}
		s.first = false
	}
	return s.stream.Send(msg)
}

// close ends the stream; a nil error is the server's acknowledgement.
func (s *alsStream) close() error {
	_, err := s.stream.CloseAndRecv()
	return err
}

const (
	productpageIP = "10.244.0.11"
	reviewsIP     = "10.244.0.21"
)

// sendBookinfoHop streams n productpage->reviews requests reported from both
// sides; every tenth answers 503 after 300 ms, the rest 200 after 20 ms.
func sendBookinfoHop(t *testing.T, ctx context.Context, addr string, n int) {
	t.Helper()
	conn := dialALS(t, addr)
	client := openALS(t, ctx, conn, node("productpage-v1-abc", "productpage", "v1", productpageIP))
	server := openALS(t, ctx, conn, node("reviews-v1-xyz", "reviews", "v1", reviewsIP))
	start := time.Now().Add(-time.Second)
	const batch = 50
	for i := 0; i < n; i += batch {
		var out, in []*accesslogv3.HTTPAccessLogEntry
		for j := i; j < i+batch && j < n; j++ {
			code, d := uint32(200), 20*time.Millisecond
			if j%10 == 0 {
				code, d = 503, 300*time.Millisecond
			}
			out = append(out, httpEntry(start, d, code, "outbound|9080||reviews.default.svc.cluster.local", reviewsIP, "127.0.0.6", productpageIP))
			in = append(in, httpEntry(start, d, code, "inbound|9080||", "127.0.0.6", productpageIP, reviewsIP))
		}
		if err := client.send(out...); err != nil {
			t.Fatal(err)
		}
		if err := server.send(in...); err != nil {
			t.Fatal(err)
		}
	}
	if err := client.close(); err != nil {
		t.Fatalf("client-side stream not acknowledged: %v", err)
	}
	if err := server.close(); err != nil {
		t.Fatalf("server-side stream not acknowledged: %v", err)
	}
}

var fastFlush = "--processors.metrics.flush_interval=500ms"

func TestALSToPromQL(t *testing.T) {
	in := start(t, t.TempDir(), fastFlush)
	ctx := ctxTimeout(t, time.Minute)
	sendBookinfoHop(t, ctx, in.addrs["grpc"], 1000)

	const total = `sum(istio_requests_total{reporter="destination",destination_service_name="reviews"})`
	eventually(t, 20*time.Second, "all 1000 requests stored", func() (bool, string) {
		res := in.query(total)
		if len(res) != 1 {
			return false, fmt.Sprintf("%d samples", len(res))
		}
		v := res[0].float(t)
		return v == 1000, fmt.Sprintf("value %v", v)
	})
	checks := []struct {
		q      string
		lo, hi float64 // inclusive range of the exact answer
	}{
		{total, 1000, 1000},
		{`sum(istio_requests_total{reporter="source",source_canonical_service="productpage",destination_service_name="reviews"})`, 1000, 1000},
		{`sum(istio_requests_total{reporter="destination",response_code="503"}) / sum(istio_requests_total{reporter="destination"})`, 0.1, 0.1},
		{`sum(istio_requests_total{reporter="destination",connection_security_policy="none"})`, 1000, 1000},
		{`sum(istio_requests_total{reporter="source",connection_security_policy="unknown"})`, 1000, 1000},
		// Each quantile must fall in the bucket that holds it: 20 ms in
		// (10, 25], 300 ms in (250, 500].
		{`histogram_quantile(0.5, sum by (le) (istio_request_duration_milliseconds_bucket{reporter="destination"}))`, 10.0001, 25},
		{`histogram_quantile(0.95, sum by (le) (istio_request_duration_milliseconds_bucket{reporter="destination"}))`, 250.0001, 500},
		{`sum(istio_request_duration_milliseconds_count{reporter="destination"})`, 1000, 1000},
		{`sum(istio_request_duration_milliseconds_sum{reporter="destination"})`, 900*20 + 100*300, 900*20 + 100*300},
		{`sum(istio_response_bytes_sum{reporter="destination"})`, 1000 * 500, 1000 * 500},
	}
	for _, c := range checks {
		got := in.scalar(c.q)
		if got < c.lo-1e-9 || got > c.hi+1e-9 || math.IsNaN(got) {
			t.Errorf("%s = %v, want in [%v, %v]", c.q, got, c.lo, c.hi)
		}
	}
	// query_range answers a matrix, as Grafana asks for it.
	resp := httpGetJSON(t, in.url("/api/v1/query_range?query=sum(istio_requests_total)&step=1&start=")+
		fmt.Sprint(time.Now().Add(-time.Minute).Unix())+"&end="+fmt.Sprint(time.Now().Add(2*time.Second).Unix()))
	if !strings.Contains(resp, `"resultType":"matrix"`) || !strings.Contains(resp, `"values":[[`) {
		t.Errorf("query_range answer is not a non-empty matrix: %.300s", resp)
	}
}

func TestSIGTERMKeepsAcknowledgedData(t *testing.T) {
	dir := t.TempDir()
	// A long flush interval: whatever is stored must come from the final
	// flush during shutdown, not from a periodic one.
	in := start(t, dir, "--processors.metrics.flush_interval=1h", "--processors.metrics.stale_after=1h", "--processors.metrics.evict_after=2h")
	ctx := ctxTimeout(t, time.Minute)
	// Load keeps flowing on another stream while the signal arrives.
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	go func() {
		conn := dialALS(t, in.addrs["grpc"])
		s := openALS(t, loadCtx, conn, node("details-v1-q", "details", "v1", "10.244.0.31"))
		for loadCtx.Err() == nil {
			e := httpEntry(time.Now(), time.Millisecond, 200, "inbound|9080||", "127.0.0.6", productpageIP, "10.244.0.31")
			if s.send(e) != nil {
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	sendBookinfoHop(t, ctx, in.addrs["grpc"], 2000) // acknowledged
	in.stop()
	stopLoad()

	in2 := start(t, dir, fastFlush)
	got := in2.scalar(`sum(istio_requests_total{destination_service_name="reviews"})`)
	if got != 4000 { // 2000 requests, each reported by both sides
		t.Fatalf("after SIGTERM and restart the TSDB holds %v reviews requests, want all 4000 acknowledged", got)
	}
	// Counters continue across the restart instead of resetting.
	sendBookinfoHop(t, ctx, in2.addrs["grpc"], 100)
	eventually(t, 20*time.Second, "counter continues after restart", func() (bool, string) {
		v := in2.scalar(`sum(istio_requests_total{destination_service_name="reviews"})`)
		return v == 4200, fmt.Sprintf("value %v", v)
	})
}

// rawCodec sends bytes as they are, to put an invalid protobuf on the wire.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error)      { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error { *(v.(*[]byte)) = data; return nil }
func (rawCodec) Name() string                       { return "proto" }

var _ encoding.Codec = rawCodec{}

func TestMalformedInputKeepsServing(t *testing.T) {
	in := start(t, t.TempDir(), fastFlush)
	ctx := ctxTimeout(t, time.Minute)
	conn := dialALS(t, in.addrs["grpc"])

	// 1. Bytes that are not a StreamAccessLogsMessage end that stream with
	// a clear error. grpc-go itself answers a message that does not
	// unmarshal with INTERNAL before the handler sees it; the message names
	// the failure.
	desc := &grpc.StreamDesc{StreamName: "StreamAccessLogs", ClientStreams: true}
	cs, err := conn.NewStream(ctx, desc, "/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs", grpc.ForceCodec(rawCodec{}))
	if err != nil {
		t.Fatal(err)
	}
	garbage := []byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01}
	_ = cs.SendMsg(&garbage)
	_ = cs.CloseSend()
	var reply []byte
	err = cs.RecvMsg(&reply)
	if st, _ := status.FromError(err); (st.Code() != codes.Internal && st.Code() != codes.InvalidArgument) ||
		!strings.Contains(st.Message(), "unmarshal") {
		t.Errorf("invalid protobuf: got %v, want an error naming the unmarshal failure", err)
	}

	// 2. An entry without timestamps is refused; the rest of its batch is kept.
	s := openALS(t, ctx, conn, node("reviews-v1-xyz", "reviews", "v1", reviewsIP))
	good := httpEntry(time.Now(), 5*time.Millisecond, 200, "inbound|9080||", "127.0.0.6", productpageIP, reviewsIP)
	bad := httpEntry(time.Now(), 5*time.Millisecond, 200, "inbound|9080||", "127.0.0.6", productpageIP, reviewsIP)
	bad.CommonProperties.StartTime = nil
	if err := s.send(good, bad, good); err != nil {
		t.Fatal(err)
	}
	if err := s.close(); err != nil {
		t.Fatalf("a batch with one bad entry must still be acknowledged: %v", err)
	}
	eventually(t, 20*time.Second, "good entries of the batch stored", func() (bool, string) {
		res := in.query(`sum(istio_requests_total{destination_service_name="reviews"})`)
		if len(res) != 1 {
			return false, "no samples"
		}
		v := res[0].float(t)
		return v == 2, fmt.Sprintf("value %v", v)
	})
	metrics := httpGetText(t, in.url("/metrics"))
	if !strings.Contains(metrics, `meshlens_receiver_refused_items_total{reason="malformed",receiver="envoy_als",transport="grpc"}`) &&
		!strings.Contains(metrics, `receiver="envoy_als"`) {
		t.Errorf("/metrics does not count the refused entries")
	}

	// 3. The server still serves.
	sendBookinfoHop(t, ctx, in.addrs["grpc"], 10)
	if !in.isReady() {
		t.Fatal("server not ready after malformed input")
	}
}

func TestInvalidConfigNamesTheField(t *testing.T) {
	dir := t.TempDir()
	cfgFile := dir + "/meshlens.yaml"
	cases := []struct {
		name, yaml, want string
	}{
		{"unknown key", "listen:\n  htp: 127.0.0.1:0\n", "field htp not found"},
		{"bad duration", "storage:\n  metrics:\n    retention: soon\n", "retention"},
		{"garbage", "{{{{ not yaml", "config file"},
		{"invalid value", "pipeline:\n  queue_capacity: -3\n", "pipeline.queue_capacity"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := os.WriteFile(cfgFile, []byte(c.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(binary, "serve", "--config", cfgFile).CombinedOutput()
			if err == nil {
				t.Fatalf("serve accepted an invalid config:\n%s", out)
			}
			if !strings.Contains(string(out), c.want) {
				t.Errorf("error does not name %q:\n%s", c.want, out)
			}
		})
	}
}
