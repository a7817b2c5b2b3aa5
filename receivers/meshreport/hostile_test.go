package meshreport

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/meshlens/meshlens/pipeline"
	"github.com/meshlens/meshlens/receivers/meshreport/meshpb"
	"github.com/meshlens/meshlens/receivers/receivertest"
)

type hostileHarness struct {
	sink *sink
	reg  *prometheus.Registry
	logs *syncBuffer
	cc   *grpc.ClientConn
}

// startHostile serves the receiver on a loopback listener with the gRPC
// message cap the server sets (pipeline.max_recv_msg_bytes), shortened.
func startHostile(t *testing.T, cfg Config, maxMsg int) *hostileHarness {
	t.Helper()
	h := &hostileHarness{sink: &sink{}, reg: prometheus.NewRegistry(), logs: &syncBuffer{}}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(maxMsg))
	New(cfg, h.sink, pipeline.NewTelemetry(h.reg), slog.New(slog.NewTextHandler(h.logs, nil))).Register(srv)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	h.cc, err = grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.cc.Close() })
	return h
}

// sendRaw streams pre-encoded messages (invalid UTF-8 and the like).
func (h *hostileHarness) sendRaw(t *testing.T, msgs ...[]byte) error {
	return receivertest.SendRaw(t, h.cc, meshpb.ServiceMeshMetricService_Collect_FullMethodName, msgs...)
}

func (h *hostileHarness) refused(t *testing.T) map[string]float64 {
	return receivertest.Refused(t, h.reg)
}

func marshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// withBytes marshals m and swaps each placeholder for raw bytes of the same
// length, so that the length prefixes stay right.
func withBytes(t *testing.T, m proto.Message, swaps ...string) []byte {
	t.Helper()
	b := marshal(t, m)
	for i := 0; i < len(swaps); i += 2 {
		if len(swaps[i]) != len(swaps[i+1]) || !bytes.Contains(b, []byte(swaps[i])) {
			t.Fatalf("placeholder %q: not in the encoding or not as long as its replacement", swaps[i])
		}
		b = bytes.ReplaceAll(b, []byte(swaps[i]), []byte(swaps[i+1]))
	}
	return b
}

// TestHostileInput is the mesh-report part of docs/hostile-input.md: each
// case asserts how the stream ends, which calls reached the pipeline, what
// was counted and logged, and that a good stream is served afterwards.
func TestHostileInput(t *testing.T) {
	const maxMsg = 4 << 20
	good := func(src string, start int64) *meshpb.HTTPServiceMeshMetric {
		return &meshpb.HTTPServiceMeshMetric{StartTime: start, EndTime: start + 5, Latency: 5,
			SourceServiceName: src, DestServiceName: "reviews", Endpoint: "/reviews/0", ResponseCode: 200,
			Protocol: meshpb.Protocol_HTTP, DetectPoint: meshpb.DetectPoint_server}
	}
	now := time.Now().UnixMilli()
	manyProps := make([]*meshpb.KeyStringValuePair, 10_000)
	for i := range manyProps {
		manyProps[i] = &meshpb.KeyStringValuePair{Key: fmt.Sprint("k", i), Value: strings.Repeat("v", 100)}
	}
	manyProps = append(manyProps, &meshpb.KeyStringValuePair{Key: "namespace", Value: "bookinfo"})
	for _, tc := range []struct {
		name        string
		cfg         Config
		msgs        func(t *testing.T) [][]byte
		wantCode    codes.Code
		wantMsg     string
		wantCalls   []string // source services, in order
		wantRefused map[string]float64
		wantLog     string
		check       func(t *testing.T, h *hostileHarness)
	}{
		{
			name: "message over the gRPC cap",
			msgs: func(t *testing.T) [][]byte {
				m := good("a", t0)
				m.SourceInstanceProperties = []*meshpb.KeyStringValuePair{{Key: "k", Value: strings.Repeat("v", maxMsg)}}
				return [][]byte{marshal(t, httpBatch(good("before", t0))), marshal(t, httpBatch(m))}
			},
			wantCode: codes.ResourceExhausted, wantMsg: "larger than max", wantCalls: []string{"before"},
		},
		{
			name: "more metrics than max_metrics_per_message: that message refused, stream goes on",
			cfg:  Config{MaxMetricsPerMessage: 100},
			msgs: func(t *testing.T) [][]byte {
				var ms []*meshpb.HTTPServiceMeshMetric
				for range 101 {
					ms = append(ms, good("big", t0))
				}
				return [][]byte{marshal(t, httpBatch(ms...)), marshal(t, httpBatch(good("after", t0)))}
			},
			wantCalls: []string{"after"}, wantRefused: map[string]float64{"malformed": 101},
			wantLog: "httpMetrics holds 101 metrics, more than the limit of 100",
		},
		{
			name: "names and endpoint over 4096 bytes rejected with the field named, rest kept",
			msgs: func(t *testing.T) [][]byte {
				longEp := good("ep", t0)
				longEp.Endpoint = "/" + strings.Repeat("e", 1<<20)
				longSvc := good(strings.Repeat("s", 4097), t0)
				return [][]byte{marshal(t, httpBatch(good("a", t0), longEp, longSvc, good("b", t0)))}
			},
			wantCalls: []string{"a", "b"}, wantRefused: map[string]float64{"malformed": 2},
			wantLog: "metric 1: endpoint: longer than 4096 bytes",
		},
		{
			name: "10,000 instance properties: known keys applied, the rest ignored",
			msgs: func(t *testing.T) [][]byte {
				m := good("a", t0)
				m.SourceInstanceProperties = manyProps
				return [][]byte{marshal(t, httpBatch(m))}
			},
			wantCalls: []string{"a"},
			check: func(t *testing.T, h *hostileHarness) {
				if c := h.sink.all()[0]; c.Source.Namespace != "bookinfo" {
					t.Errorf("source namespace %q, want bookinfo", c.Source.Namespace)
				}
			},
		},
		{
			// protobuf-go refuses proto3 strings with invalid UTF-8; before
			// unmarshalLenient the stream ended INTERNAL and the whole batch
			// was lost.
			name: "invalid UTF-8 in a service name and endpoint replaced, batch kept",
			msgs: func(t *testing.T) [][]byte {
				m := good("PLACEHOLDER1", t0)
				m.Endpoint = "/PLACEHOLDER2"
				legacy := withBytes(t, good("PLACEHOLDER3", t0), "PLACEHOLDER3", "leg\xffacy-svcs")
				return [][]byte{
					withBytes(t, httpBatch(good("a", t0), m), "PLACEHOLDER1", "re\xffviews-svc", "PLACEHOLDER2", "ratings\xc3\x28xyz"),
					legacy, // SkyWalking 8.x single-metric form
				}
			},
			wantCalls: []string{"a", "re\uFFFDviews-svc", "leg\uFFFDacy-svcs"},
			wantLog:   "replaced invalid UTF-8 with U+FFFD",
			check: func(t *testing.T, h *hostileHarness) {
				if c := h.sink.all()[1]; c.Endpoint != "/ratings\uFFFD(xyz" {
					t.Errorf("endpoint %q", c.Endpoint)
				}
			},
		},
		{
			name: "timestamps: before 2000 and after 2200 rejected, 2100 kept as sent, zero is the receive time",
			msgs: func(t *testing.T) [][]byte {
				zero := good("zero", 0)
				zero.EndTime = 0
				return [][]byte{marshal(t, httpBatch(good("epoch", 1), good("y2100", 4102444800000),
					good("y2300", 10413792000000), zero, &meshpb.HTTPServiceMeshMetric{StartTime: -5, SourceServiceName: "neg",
						Protocol: meshpb.Protocol_HTTP, DetectPoint: meshpb.DetectPoint_server}))}
			},
			wantCalls: []string{"y2100", "zero"}, wantRefused: map[string]float64{"malformed": 3},
			wantLog: "metric 0: startTime: 1 ms is outside years 2000-2200",
			check: func(t *testing.T, h *hostileHarness) {
				calls := h.sink.all()
				if !calls[0].Start.Equal(time.UnixMilli(4102444800000)) {
					t.Errorf("2100 call starts %v", calls[0].Start)
				}
				if d := time.Since(calls[1].Start); d < 0 || d > time.Minute {
					t.Errorf("call without timestamps starts %v, want the receive time minus its latency", calls[1].Start)
				}
			},
		},
		{
			// Client and server halves from two proxies 10 minutes apart:
			// each keeps its own start and its own latency.
			name: "clock skew between proxies kept as sent",
			msgs: func(t *testing.T) [][]byte {
				client := good("productpage", now)
				client.DetectPoint = meshpb.DetectPoint_client
				client.Latency = 40
				server := good("productpage", now-10*60*1000)
				server.Latency = 30
				return [][]byte{marshal(t, httpBatch(client, server))}
			},
			wantCalls: []string{"productpage", "productpage"},
			check: func(t *testing.T, h *hostileHarness) {
				c := h.sink.all()
				if !c[0].Start.Equal(time.UnixMilli(now)) || !c[1].Start.Equal(time.UnixMilli(now-600000)) ||
					c[0].Duration != 40*time.Millisecond || c[1].Duration != 30*time.Millisecond {
					t.Errorf("client %v %v, server %v %v", c[0].Start, c[0].Duration, c[1].Start, c[1].Duration)
				}
			},
		},
		{
			name: "malformed metrics mixed with good ones",
			msgs: func(t *testing.T) [][]byte {
				endBefore := good("x", t0)
				endBefore.EndTime = t0 - 1
				badProto := good("x", t0)
				badProto.Protocol = 7
				code := good("x", t0)
				code.ResponseCode = 1000
				return [][]byte{
					marshal(t, httpBatch(good("a", t0), endBefore, badProto, code, &meshpb.HTTPServiceMeshMetric{StartTime: t0}, good("b", t0))),
					marshal(t, tcpBatch(&meshpb.TCPServiceMeshMetric{SourceServiceName: "tcp", ReceivedBytes: -1},
						&meshpb.TCPServiceMeshMetric{SourceServiceName: "tcp-ok", SentBytes: 10})),
				}
			},
			wantCalls: []string{"a", "b", "tcp-ok"}, wantRefused: map[string]float64{"malformed": 5},
			wantLog: "metric 1: endTime: 1699999999999 is before startTime 1700000000000",
		},
		{
			name: "broken protobuf ends the stream, earlier messages kept",
			msgs: func(t *testing.T) [][]byte {
				return [][]byte{marshal(t, httpBatch(good("a", t0))), {0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f}}
			},
			wantCode: codes.Internal, wantMsg: "unmarshal", wantCalls: []string{"a"},
		},
		{
			name: "empty stream",
			msgs: func(t *testing.T) [][]byte { return nil },
		},
		{
			name: "empty messages ignored",
			msgs: func(t *testing.T) [][]byte {
				return [][]byte{{}, marshal(t, httpBatch()), marshal(t, httpBatch(good("a", t0)))}
			},
			wantCalls: []string{"a"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := startHostile(t, tc.cfg, maxMsg)
			err := h.sendRaw(t, tc.msgs(t)...)
			if status.Code(err) != tc.wantCode || (tc.wantMsg != "" && !strings.Contains(err.Error(), tc.wantMsg)) {
				t.Fatalf("stream ended with %v, want %v containing %q", err, tc.wantCode, tc.wantMsg)
			}
			var got []string
			for _, c := range h.sink.all() {
				got = append(got, c.Source.Service)
			}
			if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", tc.wantCalls) {
				t.Fatalf("calls from %q reached the pipeline, want %q", got, tc.wantCalls)
			}
			want := tc.wantRefused
			if want == nil {
				want = map[string]float64{}
			}
			if r := h.refused(t); fmt.Sprint(r) != fmt.Sprint(want) {
				t.Errorf("refused %v, want %v", r, want)
			}
			if !strings.Contains(h.logs.String(), tc.wantLog) {
				t.Errorf("log %q, want it to contain %q", h.logs.String(), tc.wantLog)
			}
			if tc.check != nil {
				tc.check(t, h)
			}
			before := len(h.sink.all())
			if err := h.sendRaw(t, marshal(t, httpBatch(good("after", t0)))); err != nil {
				t.Fatalf("good stream after the hostile one: %v", err)
			}
			if n := len(h.sink.all()); n != before+1 {
				t.Fatalf("good stream after the hostile one: %d calls, want %d", n, before+1)
			}
		})
	}
}
