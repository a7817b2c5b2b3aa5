package server

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// alsSink reads every message until the stream ends, as the ALS receiver
// does.
type alsSink struct {
	alsv3.UnimplementedAccessLogServiceServer
	got chan struct{}
}

func (a *alsSink) StreamAccessLogs(s alsv3.AccessLogService_StreamAccessLogsServer) error {
	for {
		if _, err := s.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return s.SendAndClose(&alsv3.StreamAccessLogsResponse{})
			}
			return err
		}
		a.got <- struct{}{}
	}
}

// TestStreamIdleTimeout drives a real ALS stream over 127.0.0.1: a client
// that goes silent is closed with UNAVAILABLE naming the setting after
// the (shortened) idle timeout; a client that keeps sending is not.
func TestStreamIdleTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.ChainStreamInterceptor(streamIdle{timeout: timeout, setting: "pipeline.grpc_stream_idle_timeout"}.StreamInterceptor))
	sink := &alsSink{got: make(chan struct{}, 100)}
	alsv3.RegisterAccessLogServiceServer(srv, sink)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	client := alsv3.NewAccessLogServiceClient(cc)

	for _, tc := range []struct {
		name      string
		sendEvery time.Duration // 0: one message, then silence
		sendFor   time.Duration
	}{
		{"silent client is closed", 0, 0},
		{"busy client stays open", timeout / 3, 4 * timeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			stream, err := client.StreamAccessLogs(ctx)
			if err != nil {
				t.Fatal(err)
			}
			msg := &alsv3.StreamAccessLogsMessage{Identifier: &alsv3.StreamAccessLogsMessage_Identifier{LogName: "test"}}
			t0 := time.Now()
			for {
				if err := stream.Send(msg); err != nil {
					t.Fatalf("send after %v: %v", time.Since(t0), err)
				}
				<-sink.got
				if tc.sendEvery == 0 || time.Since(t0) > tc.sendFor {
					break
				}
				time.Sleep(tc.sendEvery)
			}
			if tc.sendEvery != 0 {
				// Kept busy past 4 timeouts and still open: end it cleanly.
				if _, err := stream.CloseAndRecv(); err != nil {
					t.Fatalf("busy stream ended with %v, want a clean close", err)
				}
				return
			}
			silent := time.Now()
			var resp alsv3.StreamAccessLogsResponse
			err = stream.RecvMsg(&resp)
			waited := time.Since(silent)
			if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "pipeline.grpc_stream_idle_timeout") {
				t.Fatalf("silent stream ended with %v, want UNAVAILABLE naming the setting", err)
			}
			if waited < timeout || waited > timeout*3 {
				t.Fatalf("silent stream closed after %v, want between %v and %v", waited, timeout, timeout*3)
			}
		})
	}
}
