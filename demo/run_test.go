package demo

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	zipkin "github.com/openzipkin/zipkin-go/model"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// alsRecorder is an Envoy ALS server that keeps every stream's messages.
type alsRecorder struct {
	accesslogv3.UnimplementedAccessLogServiceServer
	// failFirst makes the first stream of each logger fail after its first
	// message, to exercise reconnection.
	failFirst bool

	mu      sync.Mutex
	streams [][]*accesslogv3.StreamAccessLogsMessage
	failed  map[string]bool
}

func (s *alsRecorder) StreamAccessLogs(stream grpc.ClientStreamingServer[accesslogv3.StreamAccessLogsMessage, accesslogv3.StreamAccessLogsResponse]) error {
	s.mu.Lock()
	idx := len(s.streams)
	s.streams = append(s.streams, nil)
	s.mu.Unlock()
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&accesslogv3.StreamAccessLogsResponse{})
		}
		if err != nil {
			return err
		}
		s.mu.Lock()
		s.streams[idx] = append(s.streams[idx], msg)
		fail := false
		if s.failFirst && msg.Identifier != nil {
			if s.failed == nil {
				s.failed = map[string]bool{}
			}
			k := msg.Identifier.Node.Id + "|" + msg.Identifier.LogName
			fail = !s.failed[k]
			s.failed[k] = true
		}
		s.mu.Unlock()
		if fail {
			return status.Error(codes.Unavailable, "test: dropping first stream")
		}
	}
}

func (s *alsRecorder) snapshot() [][]*accesslogv3.StreamAccessLogsMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([][]*accesslogv3.StreamAccessLogsMessage, len(s.streams))
	for i := range s.streams {
		out[i] = append([]*accesslogv3.StreamAccessLogsMessage(nil), s.streams[i]...)
	}
	return out
}

func startALS(t testing.TB, srv accesslogv3.AccessLogServiceServer) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	accesslogv3.RegisterAccessLogServiceServer(g, srv)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	return lis.Addr().String()
}

// discardALS reads and drops everything, for benchmarks.
type discardALS struct {
	accesslogv3.UnimplementedAccessLogServiceServer
}

func (discardALS) StreamAccessLogs(stream grpc.ClientStreamingServer[accesslogv3.StreamAccessLogsMessage, accesslogv3.StreamAccessLogsResponse]) error {
	for {
		if _, err := stream.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return stream.SendAndClose(&accesslogv3.StreamAccessLogsResponse{})
			}
			return err
		}
	}
}

// zipkinRecorder is a Zipkin v2 collector endpoint.
type zipkinRecorder struct {
	status int

	mu    sync.Mutex
	spans []zipkin.SpanModel
	posts int
	bad   []string
}

func (z *zipkinRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.posts++
	if r.Method != http.MethodPost || r.URL.Path != "/api/v2/spans" || r.Header.Get("Content-Type") != "application/json" {
		z.bad = append(z.bad, r.Method+" "+r.URL.Path+" "+r.Header.Get("Content-Type"))
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if z.status != 0 {
		w.WriteHeader(z.status)
		return
	}
	var spans []zipkin.SpanModel
	if err := json.NewDecoder(r.Body).Decode(&spans); err != nil {
		z.bad = append(z.bad, "decode: "+err.Error())
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	z.spans = append(z.spans, spans...)
	w.WriteHeader(http.StatusAccepted)
}

func runFor(t *testing.T, cfg Config, d time.Duration) *Generator {
	t.Helper()
	g, err := NewGenerator(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v on cancel, want nil", err)
		}
	case <-time.After(d + 10*time.Second):
		t.Fatal("Run did not return after ctx ended")
	}
	return g
}

func TestRunOverRealProtocols(t *testing.T) {
	als := &alsRecorder{}
	addr := startALS(t, als)
	zr := &zipkinRecorder{}
	zs := httptest.NewServer(zr)
	defer zs.Close()

	// The injected clock puts the whole run inside a details outage.
	g := runFor(t, Config{ALSAddr: addr, ZipkinURL: zs.URL, Rate: 300, Seed: 1, FlushInterval: 50 * time.Millisecond,
		Clock: fixed(detailsBurst)}, 1500*time.Millisecond)
	st := g.Stats()
	// The race detector on a busy machine slows the simulation a lot; what
	// matters is that nothing failed and what was counted arrived.
	if st.Requests < 50 || st.Errors != 0 {
		t.Fatalf("stats %+v", st)
	}
	if st.EntriesDropped != 0 || st.SpansDropped != 0 {
		t.Logf("dropped at shutdown on a slow machine: %+v", st)
	}

	streams := als.snapshot()
	perLogger := map[string]int{}
	nodes := map[string]bool{}
	requestIDs := map[string]bool{}
	var entries uint64
	var details, details503 int
	for _, msgs := range streams {
		if len(msgs) == 0 {
			continue
		}
		id := msgs[0].Identifier
		if id == nil || id.Node.GetId() == "" {
			t.Fatal("first message of a stream has no identifier")
		}
		perLogger[id.Node.Id+"|"+id.LogName]++
		nodes[id.Node.Id] = true
		for i, m := range msgs {
			if i > 0 && m.Identifier != nil {
				t.Fatalf("message %d of %s's stream repeats the identifier", i, id.Node.Id)
			}
			switch {
			case m.GetHttpLogs() != nil:
				if id.LogName != HTTPLogName {
					t.Fatalf("HTTP entries on a %q stream", id.LogName)
				}
				for _, e := range m.GetHttpLogs().LogEntry {
					requestIDs[e.Request.RequestId] = true
					start := e.CommonProperties.StartTime.AsTime()
					if start.After(detailsBurst) || start.Before(detailsBurst.Add(-time.Minute)) {
						t.Fatalf("entry starts at %s, not just before the injected clock %s", start, detailsBurst)
					}
					if strings.HasPrefix(id.Node.Id, "sidecar~") && strings.Contains(id.Node.Id, "~details-") {
						details++
						if e.Response.GetResponseCode().GetValue() == 503 {
							details503++
						}
					}
				}
			case m.GetTcpLogs() != nil:
				if id.LogName != TCPLogName {
					t.Fatalf("TCP entries on a %q stream", id.LogName)
				}
			default:
				t.Fatal("message without entries")
			}
			entries += uint64(entryCount(m))
		}
		if want := id.Node.Id; !strings.Contains(want, "~") {
			t.Fatalf("node id %q", want)
		}
	}
	if r := float64(details503) / float64(details); details == 0 || r < 0.15 || r > 0.45 {
		t.Errorf("details answered 503 to %d of %d requests during the outage", details503, details)
	}
	for k, n := range perLogger {
		if n != 1 {
			t.Errorf("logger %s opened %d streams, want one long-lived stream", k, n)
		}
	}
	for _, p := range NewMesh(1, nil).Pods() {
		if !nodes[p.NodeID()] {
			t.Errorf("pod %s never opened a stream", p.Name)
		}
	}
	if entries != st.EntriesSent || uint64(len(streams)) != st.StreamsOpened {
		t.Errorf("server got %d entries on %d streams, stats say %d on %d", entries, len(streams), st.EntriesSent, st.StreamsOpened)
	}

	zr.mu.Lock()
	defer zr.mu.Unlock()
	if len(zr.bad) > 0 {
		t.Fatalf("bad zipkin posts: %v", zr.bad)
	}
	if uint64(len(zr.spans)) != st.SpansSent || len(zr.spans) == 0 {
		t.Fatalf("collector got %d spans, stats say %d", len(zr.spans), st.SpansSent)
	}
	kinds := map[zipkin.ID]map[zipkin.Kind]zipkin.TraceID{}
	for _, s := range zr.spans {
		if !requestIDs[s.Tags["guid:x-request-id"]] {
			t.Fatalf("span x-request-id %q not seen in any access log", s.Tags["guid:x-request-id"])
		}
		if kinds[s.ID] == nil {
			kinds[s.ID] = map[zipkin.Kind]zipkin.TraceID{}
		}
		kinds[s.ID][s.Kind] = s.TraceID
	}
	shared := 0
	for _, k := range kinds {
		if c, ok := k[zipkin.Client]; ok {
			if s, ok := k[zipkin.Server]; ok {
				shared++
				if c != s {
					t.Fatal("shared span halves in different traces")
				}
			}
		}
	}
	if shared == 0 {
		t.Fatal("no span id is shared by a CLIENT and a SERVER span")
	}
	t.Logf("stats %+v, %d streams, %d zipkin posts", st, len(streams), zr.posts)
}

// TestRunReconnects drops every logger's first stream; the generator must
// reopen it, identify itself again, and keep going.
func TestRunReconnects(t *testing.T) {
	als := &alsRecorder{failFirst: true}
	addr := startALS(t, als)
	g := runFor(t, Config{ALSAddr: addr, Rate: 300, Seed: 2, FlushInterval: 30 * time.Millisecond}, 1500*time.Millisecond)
	st := g.Stats()
	if st.Errors == 0 {
		t.Fatalf("no errors counted although streams were dropped: %+v", st)
	}
	perLogger := map[string]int{}
	for _, msgs := range als.snapshot() {
		if len(msgs) == 0 {
			continue
		}
		if msgs[0].Identifier == nil {
			t.Fatal("reopened stream does not start with the identifier")
		}
		perLogger[msgs[0].Identifier.Node.Id+"|"+msgs[0].Identifier.LogName]++
	}
	again := 0
	for _, n := range perLogger {
		if n >= 2 {
			again++
		}
	}
	if again == 0 {
		t.Fatalf("no logger reopened its stream: %v", perLogger)
	}
}

func TestRunZipkinFailureIsCounted(t *testing.T) {
	zr := &zipkinRecorder{status: http.StatusServiceUnavailable}
	zs := httptest.NewServer(zr)
	defer zs.Close()
	g := runFor(t, Config{ZipkinURL: zs.URL, Rate: 100, Seed: 3}, 1300*time.Millisecond)
	st := g.Stats()
	if st.Errors == 0 || st.SpansDropped == 0 || st.SpansSent != 0 {
		t.Fatalf("stats %+v after a collector answering 503", st)
	}
}

func TestNewGeneratorValidates(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"nothing to send to", Config{}, false},
		{"negative rate", Config{ALSAddr: "127.0.0.1:1", Rate: -1}, false},
		{"sampling above one", Config{ALSAddr: "127.0.0.1:1", TraceSampling: 1.5}, false},
		{"zipkin not a URL", Config{ZipkinURL: "127.0.0.1:9411"}, false},
		{"defaults", Config{ALSAddr: "127.0.0.1:1"}, true},
		{"zipkin only", Config{ZipkinURL: "http://127.0.0.1:9411"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, err := NewGenerator(tc.cfg, nil)
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
			if err == nil && (g.cfg.Rate != 10 || g.cfg.TraceSampling != 1) {
				t.Fatalf("defaults not applied: %+v", g.cfg)
			}
		})
	}
}
