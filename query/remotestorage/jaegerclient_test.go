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
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meshlens/meshlens/query/remotestorage/internal/jaegerclient"
	"github.com/meshlens/meshlens/storage/tracestore/memstore"
	"github.com/meshlens/meshlens/storage/tracestore/tracestoretest"
)

// TestJaegerV2Client drives the server with the client Jaeger v1.76.0 (v2
// binary) uses for remote storage — its own gogo-generated code, codec and
// TracesData type — over 127.0.0.1, the way Jaeger's query service calls
// it (unset times are sent as 0001-01-01 by its stdtime fields).
func TestJaegerV2Client(t *testing.T) {
	base := tracestoretest.Base()
	st := memstore.New(memstore.Config{})
	if err := st.WriteTraces(context.Background(), tracestoretest.Fixture(base)); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	New(st, nil).Register(g)
	go g.Serve(ln)
	t.Cleanup(g.Stop)
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(jaegerclient.Codec{})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	tr := jaegerclient.NewTraceReaderClient(cc)
	dep := jaegerclient.NewDependencyReaderClient(cc)
	ctx := context.Background()

	svcs, err := tr.GetServices(ctx, &jaegerclient.GetServicesRequest{})
	if err != nil || len(svcs.Services) != 5 {
		t.Fatalf("GetServices = %v, %v", svcs, err)
	}
	ops, err := tr.GetOperations(ctx, &jaegerclient.GetOperationsRequest{Service: "reviews"})
	if err != nil || len(ops.Operations) != 2 {
		t.Fatalf("GetOperations = %v, %v", ops, err)
	}

	recv := func(s interface {
		Recv() (*jaegerclient.TracesData, error)
	}) []pcommon.TraceID {
		var ids []pcommon.TraceID
		for {
			m, err := s.Recv()
			if errors.Is(err, io.EOF) {
				return ids
			}
			if err != nil {
				t.Fatal(err)
			}
			td := m.ToTraces()
			ids = append(ids, td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0).TraceID())
			if td.SpanCount() == 0 {
				t.Error("empty chunk")
			}
		}
	}
	gs, err := tr.GetTraces(ctx, &jaegerclient.GetTracesRequest{Query: []*jaegerclient.GetTraceParams{
		{TraceId: tracestoretest.TraceBookinfo[:]}, {TraceId: tracestoretest.TraceSlow[:]}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := recv(gs); !slices.Equal(got, []pcommon.TraceID{tracestoretest.TraceBookinfo, tracestoretest.TraceSlow}) {
		t.Errorf("GetTraces = %v", got)
	}

	// A search as Jaeger's query service sends it: service, attributes,
	// duration, window, search depth; unset times as zero time.Time.
	q := &jaegerclient.TraceQueryParameters{
		ServiceName: "frontend",
		Attributes: []*jaegerclient.KeyValue{{Key: "http.method", Value: &jaegerclient.AnyValue{
			Value: &jaegerclient.AnyValue_StringValue{StringValue: "GET"}}}},
		DurationMin:  50 * time.Millisecond,
		StartTimeMin: base.Add(-time.Hour),
		StartTimeMax: time.Now(),
		SearchDepth:  20,
	}
	fs, err := tr.FindTraces(ctx, &jaegerclient.FindTracesRequest{Query: q})
	if err != nil {
		t.Fatal(err)
	}
	if got := recv(fs); !slices.Equal(got, []pcommon.TraceID{tracestoretest.TraceBookinfo}) {
		t.Errorf("FindTraces = %v", got)
	}
	ids, err := tr.FindTraceIDs(ctx, &jaegerclient.FindTracesRequest{Query: &jaegerclient.TraceQueryParameters{ServiceName: "frontend", SearchDepth: 20}})
	if err != nil || len(ids.TraceIds) != 3 {
		t.Fatalf("FindTraceIDs with unset times = %v, %v", ids, err)
	}
	if pcommon.TraceID(ids.TraceIds[0].TraceId) != tracestoretest.TraceBookinfo {
		t.Errorf("newest first: %x", ids.TraceIds[0].TraceId)
	}
	deps, err := dep.GetDependencies(ctx, &jaegerclient.GetDependenciesRequest{StartTime: time.Now().Add(-time.Hour), EndTime: time.Now()})
	if err != nil || len(deps.Dependencies) != 3 {
		t.Errorf("GetDependencies = %v, %v", deps, err)
	}
}
