package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// TestSlowAndStuckClientsAreCutOff runs the binary with shortened limits:
// a slowloris client trickling header bytes is cut off by
// pipeline.http_read_header_timeout, a silent ALS stream is closed by
// pipeline.grpc_stream_idle_timeout, and an over-limit trace search is
// refused with a message naming query.traces.max_results.
func TestSlowAndStuckClientsAreCutOff(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts the meshlens binary")
	}
	in := start(t, t.TempDir(), "--pipeline.http_read_header_timeout=1s", "--pipeline.http_read_timeout=1m",
		"--pipeline.grpc_stream_idle_timeout=1s", "--query.traces.max_results=50")

	t.Run("slowloris", func(t *testing.T) {
		conn, err := net.Dial("tcp", in.addrs["http"])
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		t0 := time.Now()
		if _, err := io.WriteString(conn, "GET /api/services HTTP/1.1\r\nHost: 127.0.0.1\r\n"); err != nil {
			t.Fatal(err)
		}
		// One header byte every 200ms: well within http_read_timeout,
		// never finishing the headers.
		var werr error
		for i := 0; i < 50 && werr == nil; i++ {
			time.Sleep(200 * time.Millisecond)
			_, werr = io.WriteString(conn, "X")
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
			var b [1]byte
			if _, err := conn.Read(b[:]); err != nil && !isTimeout(err) {
				werr = err
			}
		}
		if d := time.Since(t0); werr == nil || d > 5*time.Second {
			t.Fatalf("slowloris client still connected after %v (err %v); want it cut off after ~1s", d, werr)
		}
	})

	t.Run("silent ALS stream", func(t *testing.T) {
		cc, err := grpc.NewClient(in.addrs["grpc"], grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		st, err := alsv3.NewAccessLogServiceClient(cc).StreamAccessLogs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Send(&alsv3.StreamAccessLogsMessage{Identifier: &alsv3.StreamAccessLogsMessage_Identifier{LogName: "e2e"}}); err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		err = st.RecvMsg(new(alsv3.StreamAccessLogsResponse))
		if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "pipeline.grpc_stream_idle_timeout") {
			t.Fatalf("silent stream ended with %v, want UNAVAILABLE naming pipeline.grpc_stream_idle_timeout", err)
		}
		if d := time.Since(t0); d < 900*time.Millisecond || d > 5*time.Second {
			t.Fatalf("closed after %v, want ~1s", d)
		}
	})

	t.Run("trace search over max_results", func(t *testing.T) {
		resp, err := http.Get(in.url("/api/traces?service=productpage&limit=51"))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var env struct {
			Errors []struct {
				Code int    `json:"code"`
				Msg  string `json:"msg"`
			} `json:"errors"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 400 || len(env.Errors) != 1 || !strings.Contains(env.Errors[0].Msg, "query.traces.max_results (50") {
			t.Fatalf("status %d errors %+v, want 400 naming query.traces.max_results", resp.StatusCode, env.Errors)
		}
	})

	if !in.isReady() {
		t.Fatal("server not ready after the slow clients")
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
