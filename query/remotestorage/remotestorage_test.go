package remotestorage

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/meshlens/meshlens/query/remotestorage/storagev2"
	"github.com/meshlens/meshlens/storage/tracestore"
	"github.com/meshlens/meshlens/storage/tracestore/memstore"
	"github.com/meshlens/meshlens/storage/tracestore/tracestoretest"
)

type clients struct {
	tr   storagev2.TraceReaderClient
	dep  storagev2.DependencyReaderClient
	caps storagev2.CapabilitiesClient
}

// serve starts the API on 127.0.0.1:0 over a memstore holding the
// conformance fixture, and returns generated-gRPC clients dialled to it.
func serve(t *testing.T, base time.Time, chunk int) clients {
	t.Helper()
	st := memstore.New(memstore.Config{})
	if err := st.WriteTraces(context.Background(), tracestoretest.Fixture(base)); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	srv := New(st, nil)
	if chunk > 0 {
		srv.chunkSpans = chunk
	}
	srv.Register(g)
	go g.Serve(ln)
	t.Cleanup(g.Stop)
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return clients{storagev2.NewTraceReaderClient(cc), storagev2.NewDependencyReaderClient(cc), storagev2.NewCapabilitiesClient(cc)}
}

// collect reads a TracesData stream, decoding each chunk with pdata's
// OTLP decoder (the real opentelemetry.proto.trace.v1.TracesData schema).
func collect(t *testing.T, stream grpc.ServerStreamingClient[storagev2.TracesData]) ([]ptrace.Traces, error) {
	t.Helper()
	var out []ptrace.Traces
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		td, err := FromWire(m)
		if err != nil {
			t.Fatalf("chunk is not OTLP TracesData: %v", err)
		}
		if td.SpanCount() == 0 {
			t.Error("empty chunk (the API forbids them)")
		}
		out = append(out, td)
	}
}

func traceOf(t *testing.T, td ptrace.Traces) pcommon.TraceID {
	t.Helper()
	var id pcommon.TraceID
	tracestoretest.EachSpan(td, func(_ pcommon.Resource, sp ptrace.Span) {
		if id.IsEmpty() {
			id = sp.TraceID()
		} else if sp.TraceID() != id {
			t.Errorf("chunk mixes traces %s and %s", id, sp.TraceID())
		}
	})
	return id
}

func TestTraceReader(t *testing.T) {
	base := tracestoretest.Base()
	c := serve(t, base, 0)
	ctx := context.Background()

	svcs, err := c.tr.GetServices(ctx, &storagev2.GetServicesRequest{})
	if err != nil || !slices.Equal(svcs.GetServices(), []string{"details", "frontend", "productpage", "ratings", "reviews"}) {
		t.Errorf("GetServices = %v, %v", svcs.GetServices(), err)
	}
	ops, err := c.tr.GetOperations(ctx, &storagev2.GetOperationsRequest{Service: "frontend", SpanKind: "server"})
	if err != nil || len(ops.GetOperations()) != 1 || ops.GetOperations()[0].GetName() != "GET /" || ops.GetOperations()[0].GetSpanKind() != "server" {
		t.Errorf("GetOperations = %v, %v", ops.GetOperations(), err)
	}
	if _, err := c.tr.GetOperations(ctx, &storagev2.GetOperationsRequest{Service: "frontend", SpanKind: "sideways"}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("bad span kind: %v", err)
	}

	// GetTraces: found ids come back whole, unknown ones are skipped.
	unknown := tracestoretest.TraceID(9, 9)
	stream, err := c.tr.GetTraces(ctx, &storagev2.GetTracesRequest{Query: []*storagev2.GetTraceParams{
		{TraceId: tracestoretest.TraceBookinfo[:]}, {TraceId: unknown[:]}, {TraceId: tracestoretest.Trace64[:]},
	}})
	if err != nil {
		t.Fatal(err)
	}
	chunks, err := collect(t, stream)
	if err != nil || len(chunks) != 2 {
		t.Fatalf("GetTraces: %d chunks, %v", len(chunks), err)
	}
	if traceOf(t, chunks[0]) != tracestoretest.TraceBookinfo || chunks[0].SpanCount() != 5 || traceOf(t, chunks[1]) != tracestoretest.Trace64 {
		t.Errorf("GetTraces chunks: %s (%d spans), %s", traceOf(t, chunks[0]), chunks[0].SpanCount(), traceOf(t, chunks[1]))
	}
	// Content survives: attribute, status, resource.
	found := false
	tracestoretest.EachSpan(chunks[0], func(res pcommon.Resource, sp ptrace.Span) {
		if sp.Name() == "GET /ratings" && sp.Kind() == ptrace.SpanKindClient {
			found = true
			v, _ := sp.Attributes().Get("http.status_code")
			if v.Int() != 503 || sp.Status().Message() != "upstream reset" || tracestore.ServiceName(res) != "reviews" {
				t.Errorf("span content lost: %v %q %v", v.AsRaw(), sp.Status().Message(), res.Attributes().AsRaw())
			}
		}
	})
	if !found {
		t.Error("reviews client span missing")
	}
	stream, _ = c.tr.GetTraces(ctx, &storagev2.GetTracesRequest{Query: []*storagev2.GetTraceParams{{TraceId: []byte{1, 2, 3}}}})
	if _, err := collect(t, stream); status.Code(err) != codes.InvalidArgument {
		t.Errorf("3-byte trace id: %v", err)
	}

	caps, err := c.caps.GetCapabilities(ctx, &storagev2.GetCapabilitiesRequest{})
	if err != nil || !caps.GetSearch().GetWithoutServiceName() || !caps.GetSearch().GetSameSpanConjunction() || caps.GetSearch().GetPaginated() {
		t.Errorf("capabilities %v, %v", caps, err)
	}
}

// TestFind runs the conformance suite's query table through FindTraceIDs
// and FindTraces, for every row the API can express (service, operation,
// attributes, time window, duration, limit).
func TestFind(t *testing.T) {
	base := tracestoretest.Base()
	c := serve(t, base, 0)
	ctx := context.Background()
	ran := 0
	for _, tc := range tracestoretest.FindCases() {
		q := tc.Query(base)
		if q.SpanKind != "" || q.RemoteService != "" || len(q.Annotations) > 0 {
			continue
		}
		ran++
		t.Run(tc.Name, func(t *testing.T) {
			p := &storagev2.TraceQueryParameters{ServiceName: q.Service, OperationName: q.Operation, SearchDepth: int32(q.Limit)}
			for k, v := range q.Tags {
				p.Attributes = append(p.Attributes, &storagev2.KeyValue{Key: k, Value: &storagev2.AnyValue{Value: &storagev2.AnyValue_StringValue{StringValue: v}}})
			}
			if !q.StartMin.IsZero() {
				p.StartTimeMin = timestamppb.New(q.StartMin)
			}
			if !q.StartMax.IsZero() {
				p.StartTimeMax = timestamppb.New(q.StartMax)
			}
			if q.DurationMin > 0 {
				p.DurationMin = durationpb.New(q.DurationMin)
			}
			if q.DurationMax > 0 {
				p.DurationMax = durationpb.New(q.DurationMax)
			}
			ids, err := c.tr.FindTraceIDs(ctx, &storagev2.FindTraceIDsRequest{Query: p})
			if err != nil {
				t.Fatal(err)
			}
			var got []pcommon.TraceID
			for _, f := range ids.GetTraceIds() {
				got = append(got, pcommon.TraceID(f.GetTraceId()))
			}
			if !slices.Equal(got, tc.Want) && !(len(got) == 0 && len(tc.Want) == 0) {
				t.Errorf("FindTraceIDs = %v, want %v", got, tc.Want)
			}
			stream, err := c.tr.FindTraces(ctx, &storagev2.FindTracesRequest{Query: p})
			if err != nil {
				t.Fatal(err)
			}
			chunks, err := collect(t, stream)
			if err != nil {
				t.Fatal(err)
			}
			var traces []pcommon.TraceID
			for _, ch := range chunks {
				traces = append(traces, traceOf(t, ch))
			}
			if !slices.Equal(traces, tc.Want) && !(len(traces) == 0 && len(tc.Want) == 0) {
				t.Errorf("FindTraces = %v, want %v", traces, tc.Want)
			}
		})
	}
	if ran < 20 {
		t.Errorf("only %d query rows ran", ran)
	}
	// Typed attributes compare as strings, as Jaeger's do.
	ids, err := c.tr.FindTraceIDs(ctx, &storagev2.FindTraceIDsRequest{Query: &storagev2.TraceQueryParameters{ServiceName: "frontend",
		Attributes: []*storagev2.KeyValue{{Key: "http.status_code", Value: &storagev2.AnyValue{Value: &storagev2.AnyValue_IntValue{IntValue: 201}}}}}})
	if err != nil || len(ids.GetTraceIds()) != 1 || pcommon.TraceID(ids.GetTraceIds()[0].GetTraceId()) != tracestoretest.Trace64 {
		t.Errorf("int attribute: %v, %v", ids, err)
	}
	// Bad queries are InvalidArgument.
	for name, p := range map[string]*storagev2.TraceQueryParameters{
		"min > max":      {ServiceName: "a", DurationMin: durationpb.New(time.Second), DurationMax: durationpb.New(time.Millisecond)},
		"page token":     {ServiceName: "a", Pagination: &storagev2.Pagination{PageSize: 10, PageToken: "x"}},
		"no query":       nil,
		"bytes attr":     {ServiceName: "a", Attributes: []*storagev2.KeyValue{{Key: "k", Value: &storagev2.AnyValue{Value: &storagev2.AnyValue_BytesValue{BytesValue: []byte{1}}}}}},
		"negative limit": {ServiceName: "a", SearchDepth: -1},
	} {
		if _, err := c.tr.FindTraceIDs(ctx, &storagev2.FindTraceIDsRequest{Query: p}); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}
	// Jaeger's gogo client sends unset times as 0001-01-01 and unset
	// durations as zero: treated as unset, not as an empty window.
	zero := timestamppb.New(time.Time{})
	ids, err = c.tr.FindTraceIDs(ctx, &storagev2.FindTraceIDsRequest{Query: &storagev2.TraceQueryParameters{ServiceName: "frontend",
		StartTimeMin: zero, StartTimeMax: zero, DurationMin: durationpb.New(0), DurationMax: durationpb.New(0)}})
	if err != nil || len(ids.GetTraceIds()) != 3 {
		t.Errorf("zero times from a gogo client: %v, %v; want 3 traces", ids, err)
	}
	// Pagination's page size is the limit of a single page.
	ids, err = c.tr.FindTraceIDs(ctx, &storagev2.FindTraceIDsRequest{Query: &storagev2.TraceQueryParameters{ServiceName: "frontend", Pagination: &storagev2.Pagination{PageSize: 1}}})
	if err != nil || len(ids.GetTraceIds()) != 1 || ids.GetNextPageToken() != "" {
		t.Errorf("page of 1: %v, %v", ids, err)
	}
}

func TestDependencies(t *testing.T) {
	c := serve(t, tracestoretest.Base(), 0)
	now := time.Now()
	resp, err := c.dep.GetDependencies(context.Background(), &storagev2.GetDependenciesRequest{StartTime: timestamppb.New(now.Add(-time.Hour)), EndTime: timestamppb.New(now)})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range resp.GetDependencies() {
		got = append(got, d.GetParent()+"->"+d.GetChild())
		if d.GetCallCount() != 1 {
			t.Errorf("%s->%s call count %d", d.GetParent(), d.GetChild(), d.GetCallCount())
		}
	}
	if !slices.Equal(got, []string{"frontend->reviews", "productpage->details", "reviews->ratings"}) {
		t.Errorf("dependencies %v", got)
	}
	zero := timestamppb.New(time.Time{})
	resp, err = c.dep.GetDependencies(context.Background(), &storagev2.GetDependenciesRequest{StartTime: zero, EndTime: zero})
	if err != nil || len(resp.GetDependencies()) != 3 {
		t.Errorf("zero window (last 24h): %v, %v", resp, err)
	}
	_, err = c.dep.GetDependencies(context.Background(), &storagev2.GetDependenciesRequest{StartTime: timestamppb.New(now), EndTime: timestamppb.New(now.Add(-time.Hour))})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("reversed window: %v", err)
	}
}

// TestLargeTraceIsChunked: a trace larger than a chunk comes back as
// consecutive chunks of the one trace, every span once.
func TestLargeTraceIsChunked(t *testing.T) {
	c := serve(t, tracestoretest.Base(), 2)
	stream, err := c.tr.GetTraces(context.Background(), &storagev2.GetTracesRequest{Query: []*storagev2.GetTraceParams{
		{TraceId: tracestoretest.TraceBookinfo[:]}, {TraceId: tracestoretest.TraceSlow[:]}}})
	if err != nil {
		t.Fatal(err)
	}
	chunks, err := collect(t, stream)
	if err != nil {
		t.Fatal(err)
	}
	var order []pcommon.TraceID
	keys := map[pcommon.TraceID][]string{}
	for _, ch := range chunks {
		if ch.SpanCount() > 2 {
			t.Errorf("chunk of %d spans, limit 2", ch.SpanCount())
		}
		id := traceOf(t, ch)
		if len(order) == 0 || order[len(order)-1] != id {
			order = append(order, id)
		}
		keys[id] = append(keys[id], tracestoretest.SpanKeys(ch)...)
	}
	if !slices.Equal(order, []pcommon.TraceID{tracestoretest.TraceBookinfo, tracestoretest.TraceSlow}) {
		t.Errorf("chunks of a trace are not consecutive: %v", order)
	}
	if len(keys[tracestoretest.TraceBookinfo]) != 5 || len(keys[tracestoretest.TraceSlow]) != 3 {
		t.Errorf("spans per trace: %d, %d", len(keys[tracestoretest.TraceBookinfo]), len(keys[tracestoretest.TraceSlow]))
	}
}
