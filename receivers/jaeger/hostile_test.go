package jaeger

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	jaegermodel "github.com/jaegertracing/jaeger-idl/model/v1"
	"github.com/jaegertracing/jaeger-idl/proto-gen/api_v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// startLimited is start with the gRPC message cap the server sets
// (pipeline.max_recv_msg_bytes), shortened, and a span cap per batch.
func startLimited(t *testing.T, next *sink, maxMsg, maxSpans int) api_v2.CollectorServiceClient {
	t.Helper()
	s := grpc.NewServer(grpc.MaxRecvMsgSize(maxMsg))
	New(Config{MaxSpansPerBatch: maxSpans}, next, nil, nil).Register(s)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return api_v2.NewCollectorServiceClient(cc)
}

// TestHostileInput is the Jaeger gRPC part of docs/hostile-input.md: each
// case asserts the status and its message, which spans reached the
// pipeline, and that a good batch is served afterwards.
func TestHostileInput(t *testing.T) {
	const (
		maxMsg   = 4 << 20
		maxSpans = 1000
	)
	now := time.Unix(1700000000, 0)
	tid := jaegermodel.NewTraceID(0xabc, 0xdef)
	span := func(id uint64, start time.Time) *jaegermodel.Span {
		return &jaegermodel.Span{TraceID: tid, SpanID: jaegermodel.SpanID(id), OperationName: "GET /ratings", StartTime: start, Duration: time.Millisecond}
	}
	batch := func(spans ...*jaegermodel.Span) jaegermodel.Batch {
		return jaegermodel.Batch{Process: &jaegermodel.Process{ServiceName: "reviews"}, Spans: spans}
	}
	manyTags := make([]jaegermodel.KeyValue, 10_000)
	for i := range manyTags {
		manyTags[i] = jaegermodel.String("tag."+strings.Repeat("k", 8)+string(rune('a'+i%26))+strings.Repeat("x", i/26), "v")
	}
	for _, tc := range []struct {
		name      string
		batch     jaegermodel.Batch
		wantCode  codes.Code
		wantMsg   string
		wantSpans int
		check     func(t *testing.T, got map[string]flat)
	}{
		{
			name: "message over the gRPC cap",
			batch: batch(func() *jaegermodel.Span {
				s := span(1, now)
				s.Tags = []jaegermodel.KeyValue{jaegermodel.String("big", strings.Repeat("v", maxMsg+1))}
				return s
			}()),
			wantCode: codes.ResourceExhausted, wantMsg: "larger than max",
		},
		{
			name: "more spans than max_spans_per_batch",
			batch: func() jaegermodel.Batch {
				b := batch()
				for i := range maxSpans + 1 {
					b.Spans = append(b.Spans, span(uint64(i+1), now))
				}
				return b
			}(),
			wantCode: codes.InvalidArgument, wantMsg: "batch of 1001 spans exceeds the limit of 1000",
		},
		{
			name: "1 MB tag value kept whole",
			batch: batch(func() *jaegermodel.Span {
				s := span(1, now)
				s.Tags = []jaegermodel.KeyValue{jaegermodel.String("big", strings.Repeat("v", 1<<20))}
				return s
			}()),
			wantCode: codes.OK, wantSpans: 1,
			check: func(t *testing.T, got map[string]flat) {
				if v, _ := got["0000000000000001"].span.Attributes().Get("big"); len(v.Str()) != 1<<20 {
					t.Errorf("tag is %d bytes, want 1 MiB (traces keep values; series labels are cut)", len(v.Str()))
				}
			},
		},
		{
			name: "10,000 distinct tags on one span kept",
			batch: batch(func() *jaegermodel.Span {
				s := span(1, now)
				s.Tags = manyTags
				return s
			}()),
			wantCode: codes.OK, wantSpans: 1,
			check: func(t *testing.T, got map[string]flat) {
				if n := got["0000000000000001"].span.Attributes().Len(); n != len(manyTags) {
					t.Errorf("%d attributes, want %d (tags are not series labels; no cap)", n, len(manyTags))
				}
			},
		},
		{
			name: "invalid UTF-8 in service, operation, tag key and value replaced",
			batch: func() jaegermodel.Batch {
				s := span(1, now)
				s.OperationName = "GET /rat\xffings"
				s.Tags = []jaegermodel.KeyValue{jaegermodel.String("k\xc3\x28", "v\xfe")}
				b := batch(s)
				b.Process.ServiceName = "re\xffviews"
				return b
			}(),
			wantCode: codes.OK, wantSpans: 1,
			check: func(t *testing.T, got map[string]flat) {
				f := got["0000000000000001"]
				if f.res["service.name"] != "re\uFFFDviews" || f.span.Name() != "GET /rat\uFFFDings" {
					t.Errorf("service %q name %q, want U+FFFD in place of the bad bytes", f.res["service.name"], f.span.Name())
				}
				if v, ok := f.span.Attributes().Get("k\uFFFD("); !ok || v.Str() != "v\uFFFD" {
					t.Errorf("attributes %v, want key and value with U+FFFD", f.span.Attributes().AsRaw())
				}
			},
		},
		{
			name:     "timestamps far in the past and future kept as sent",
			batch:    batch(span(1, time.Unix(0, 1000)), span(2, time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC))),
			wantCode: codes.OK, wantSpans: 2,
			check: func(t *testing.T, got map[string]flat) {
				if s := got["0000000000000001"].span.StartTimestamp(); s != 1000 {
					t.Errorf("1970 span starts at %d ns, want 1000", s)
				}
				if s := got["0000000000000002"].span.StartTimestamp().AsTime(); !s.Equal(time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)) {
					t.Errorf("2100 span starts at %v", s)
				}
			},
		},
		{
			name:     "zero start time left unset",
			batch:    batch(span(1, time.Time{})),
			wantCode: codes.OK, wantSpans: 1,
			check: func(t *testing.T, got map[string]flat) {
				if sp := got["0000000000000001"].span; sp.StartTimestamp() != 0 || sp.EndTimestamp() != 0 {
					t.Errorf("start %d end %d, want both unset", sp.StartTimestamp(), sp.EndTimestamp())
				}
			},
		},
		{
			// Before this check a 1969 span wrapped around to the year
			// 2554 (uint64 nanoseconds) and was stored there.
			name: "start before 1970 or after 2262 dropped with the field named, rest kept",
			batch: batch(span(1, time.Date(1969, 7, 20, 20, 17, 0, 0, time.UTC)), span(2, now),
				span(3, time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)),
				func() *jaegermodel.Span {
					s := span(4, now)
					s.Logs = []jaegermodel.Log{{Timestamp: time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC)}}
					return s
				}()),
			wantCode: codes.InvalidArgument,
			wantMsg: "dropped 3 invalid span(s), kept 1: span[0]: start_time 1969-07-20T20:17:00Z is outside 1970-2262, the range of an OTLP timestamp; " +
				"span[2]: start_time 2300-01-01T00:00:00Z is outside 1970-2262, the range of an OTLP timestamp; " +
				"span[3]: logs[0].timestamp 1960-01-01T00:00:00Z is outside 1970-2262, the range of an OTLP timestamp",
			wantSpans: 1,
		},
		{
			// Two proxies' clocks 10 minutes apart: the server span starts
			// before its client. Both are stored as sent, not adjusted.
			name: "clock skew between client and server kept as sent",
			batch: func() jaegermodel.Batch {
				client := span(1, now)
				client.Tags = []jaegermodel.KeyValue{jaegermodel.String("span.kind", "client")}
				server := span(2, now.Add(-10*time.Minute))
				server.Tags = []jaegermodel.KeyValue{jaegermodel.String("span.kind", "server")}
				server.References = []jaegermodel.SpanRef{{TraceID: tid, SpanID: 1, RefType: jaegermodel.SpanRefType_CHILD_OF}}
				return batch(client, server)
			}(),
			wantCode: codes.OK, wantSpans: 2,
			check: func(t *testing.T, got map[string]flat) {
				c, s := got["0000000000000001"].span, got["0000000000000002"].span
				if !c.StartTimestamp().AsTime().Equal(now) || !s.StartTimestamp().AsTime().Equal(now.Add(-10*time.Minute)) {
					t.Errorf("client %v server %v, want the timestamps each proxy sent", c.StartTimestamp(), s.StartTimestamp())
				}
				if s.EndTimestamp()-s.StartTimestamp() != 1e6 {
					t.Errorf("server duration %d ns, want 1 ms", s.EndTimestamp()-s.StartTimestamp())
				}
			},
		},
		{
			name: "malformed spans mixed with good ones",
			batch: batch(span(1, now), &jaegermodel.Span{SpanID: 2, StartTime: now},
				&jaegermodel.Span{TraceID: tid, SpanID: 3, StartTime: now, Duration: -time.Second}, span(4, now)),
			wantCode: codes.InvalidArgument, wantMsg: "dropped 2 invalid span(s), kept 2: span[1]: trace_id is zero; span[2]: duration -1s is negative",
			wantSpans: 2,
		},
		{
			name:     "batch without a process",
			batch:    jaegermodel.Batch{Spans: []*jaegermodel.Span{span(1, now)}},
			wantCode: codes.InvalidArgument, wantMsg: "span[0]: span has no process and the batch none either",
		},
		{
			name:     "empty batch",
			batch:    batch(),
			wantCode: codes.OK,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &sink{}
			c := startLimited(t, s, maxMsg, maxSpans)
			_, err := c.PostSpans(context.Background(), &api_v2.PostSpansRequest{Batch: tc.batch})
			if status.Code(err) != tc.wantCode || (tc.wantMsg != "" && !strings.Contains(status.Convert(err).Message(), tc.wantMsg)) {
				t.Fatalf("got %v, want %v containing %q", err, tc.wantCode, tc.wantMsg)
			}
			got := s.spans()
			if len(got) != tc.wantSpans {
				t.Fatalf("%d spans reached the pipeline, want %d", len(got), tc.wantSpans)
			}
			if tc.check != nil {
				tc.check(t, got)
			}
			s.mu.Lock()
			s.got = nil
			s.mu.Unlock()
			if _, err := c.PostSpans(context.Background(), &api_v2.PostSpansRequest{Batch: sampleBatch(now)}); err != nil || len(s.spans()) != 3 {
				t.Fatalf("good batch after the hostile one: %v, %d spans", err, len(s.spans()))
			}
		})
	}
}
