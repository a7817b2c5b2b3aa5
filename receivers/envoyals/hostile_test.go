package envoyals

import (
	"bytes"
	"net"
	"strings"
	"testing"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/meshlens/meshlens/pipeline"
	"github.com/meshlens/meshlens/receivers/receivertest"
)

// startLimitedServer is startServer with the gRPC message cap the server
// sets (pipeline.max_recv_msg_bytes), shortened.
func startLimitedServer(t *testing.T, maxMsg int) *harness {
	t.Helper()
	h := &harness{sink: &sink{}, reg: prometheus.NewRegistry()}
	h.tel = pipeline.NewTelemetry(h.reg)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(maxMsg))
	New(DefaultConfig(), h.sink, h.tel, nil).Register(srv)
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

// sendRaw streams pre-encoded messages (invalid UTF-8 and the like).
func (h *harness) sendRaw(t *testing.T, msgs ...[]byte) error {
	return receivertest.SendRaw(t, h.cc, "/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs", msgs...)
}

// withBytes marshals m and swaps the same-length placeholder for raw, so
// that the length prefixes stay right.
func withBytes(t *testing.T, m proto.Message, placeholder, raw string) []byte {
	t.Helper()
	if len(placeholder) != len(raw) {
		t.Fatal("placeholder and raw bytes must have one length")
	}
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(placeholder)) {
		t.Fatal("placeholder not in the encoding")
	}
	return bytes.ReplaceAll(b, []byte(placeholder), []byte(raw))
}

// TestHostileInput is the ALS part of docs/hostile-input.md: each case
// asserts the status, what reached the pipeline, and that the server
// still serves a good stream afterwards.
func TestHostileInput(t *testing.T) {
	const maxMsg = 64 << 10
	huge := strings.Repeat("a", 1<<20)
	for _, tc := range []struct {
		name      string
		msgs      func(t *testing.T) [][]byte
		wantCode  codes.Code
		wantMsg   string
		wantCalls int
		check     func(t *testing.T, h *harness)
	}{
		{
			name: "message over the gRPC cap",
			msgs: func(t *testing.T) [][]byte {
				b, _ := proto.Marshal(httpMsg(productpage, httpEntry(func(e *accesslogv3.HTTPAccessLogEntry) { e.Request.Path = "/" + huge })))
				return [][]byte{b}
			},
			wantCode: codes.ResourceExhausted, wantMsg: "larger than max",
		},
		{
			name: "invalid UTF-8 in the path",
			msgs: func(t *testing.T) [][]byte {
				m := httpMsg(productpage,
					httpEntry(func(e *accesslogv3.HTTPAccessLogEntry) { e.Request.Path = "/ratings/PLACEHOLDER" }),
					httpEntry(func(e *accesslogv3.HTTPAccessLogEntry) { e.Request.RequestId = "req-2" }))
				return [][]byte{withBytes(t, m, "PLACEHOLDER", "r\xff\xfe\xc3\x28atings")}
			},
			wantCode: codes.OK, wantCalls: 2,
			check: func(t *testing.T, h *harness) {
				c := h.sink.get()[0]
				// Kept byte for byte at the receiver; the metric labels are
				// sanitized where series are made (redmetrics).
				if !strings.HasPrefix(c.Path, "/ratings/r\xff\xfe") {
					t.Errorf("path %q", c.Path)
				}
			},
		},
		{
			name: "timestamps far in the past and the future",
			msgs: func(t *testing.T) [][]byte {
				past := httpEntry(func(e *accesslogv3.HTTPAccessLogEntry) {
					e.CommonProperties.StartTime = timestamppb.New(time.Unix(1, 0))
				})
				future := httpEntry(func(e *accesslogv3.HTTPAccessLogEntry) {
					e.CommonProperties.StartTime = timestamppb.New(time.Now().Add(100 * 365 * 24 * time.Hour))
				})
				b, _ := proto.Marshal(httpMsg(productpage, past, future, httpEntry()))
				return [][]byte{b}
			},
			// Access logs are counted when they arrive (the aggregator
			// writes at flush time), so their own clock cannot put samples
			// outside the TSDB head: every entry is kept.
			wantCode: codes.OK, wantCalls: 3,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := startLimitedServer(t, maxMsg)
			err := h.sendRaw(t, tc.msgs(t)...)
			if status.Code(err) != tc.wantCode || (tc.wantMsg != "" && !strings.Contains(err.Error(), tc.wantMsg)) {
				t.Fatalf("stream ended with %v, want %v containing %q", err, tc.wantCode, tc.wantMsg)
			}
			if n := len(h.sink.get()); n != tc.wantCalls {
				t.Fatalf("%d calls reached the pipeline, want %d", n, tc.wantCalls)
			}
			if tc.check != nil {
				tc.check(t, h)
			}
			before := len(h.sink.get())
			if err := h.send(t, httpMsg(productpage, httpEntry())); err != nil {
				t.Fatalf("server not serving after the hostile stream: %v", err)
			}
			if n := len(h.sink.get()); n != before+1 {
				t.Fatalf("good stream after the hostile one: %d calls, want %d", n, before+1)
			}
		})
	}
}
