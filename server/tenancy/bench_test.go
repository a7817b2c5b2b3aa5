package tenancy

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/meshlens/meshlens/pipeline"
	"github.com/meshlens/meshlens/storage/tracestore"
	"github.com/meshlens/meshlens/storage/tracestore/memstore"
)

// BenchmarkStampTraces: the ingest cost of tenancy, per batch of 100
// resources of one span each (spans/s = 100 × batches/s).
func BenchmarkStampTraces(b *testing.B) {
	td := ptrace.NewTraces()
	for i := 0; i < 100; i++ {
		rs := td.ResourceSpans().AppendEmpty()
		rs.Resource().Attributes().PutStr("service.name", fmt.Sprint("svc-", i%10))
		rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty().SetName("op")
	}
	c := StampTraces(pipeline.TraceConsumerFunc(func(context.Context, ptrace.Traces) error { return nil }))
	ctx := NewContext(context.Background(), "team-a")
	b.ReportAllocs()
	for b.Loop() {
		if err := c.ConsumeTraces(ctx, td); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGetServices compares the service list of one tenant (one
// FindTraceIDs per service the store knows) with the unfiltered list, on
// an in-memory store of 10,000 traces from 50 services and 2 tenants.
func BenchmarkGetServices(b *testing.B) {
	store := memstore.New(memstore.Config{})
	ingest := StampTraces(store)
	now := time.Now().Add(-time.Minute)
	for i := 0; i < 10000; i++ {
		tenant := "team-a"
		if i%2 == 1 {
			tenant = "team-b"
		}
		td := ptrace.NewTraces()
		rs := td.ResourceSpans().AppendEmpty()
		rs.Resource().Attributes().PutStr("service.name", fmt.Sprintf("%s-svc-%d", tenant, i%25))
		sp := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
		sp.SetTraceID(pcommon.TraceID{byte(i >> 8), byte(i), 1})
		sp.SetSpanID(pcommon.SpanID{1})
		sp.SetName("op")
		sp.SetStartTimestamp(pcommon.NewTimestampFromTime(now))
		sp.SetEndTimestamp(pcommon.NewTimestampFromTime(now.Add(time.Millisecond)))
		if err := ingest.ConsumeTraces(NewContext(context.Background(), tenant), td); err != nil {
			b.Fatal(err)
		}
	}
	ctx := NewContext(context.Background(), "team-a")
	for _, bc := range []struct {
		name string
		r    tracestore.Reader
		want int
	}{{"unfiltered", store, 50}, {"tenant", Reader(store), 25}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s, err := bc.r.GetServices(ctx)
				if err != nil || len(s) != bc.want {
					b.Fatalf("%d services, %v; want %d", len(s), err, bc.want)
				}
			}
		})
	}
}
