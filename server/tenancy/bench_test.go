package tenancy

import (
	"context"
	"fmt"
	"log/slog"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/meshlens/meshlens/pipeline"
	"github.com/meshlens/meshlens/storage/metricstore"
	"github.com/meshlens/meshlens/storage/tracestore"
	"github.com/meshlens/meshlens/storage/tracestore/memstore"
	"github.com/meshlens/meshlens/storage/tracestore/pebblestore"
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
	cpu0 := cpuTime()
	for b.Loop() {
		if err := c.ConsumeTraces(ctx, td); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N)/100, "cpu-ns/span")
}

// BenchmarkGetServices compares the service list of one tenant (one
// FindTraceIDs per service the store knows) with the unfiltered list, on
// an in-memory store of 10,000 traces from 50 services and 2 tenants.
func BenchmarkGetServices(b *testing.B) {
	b.Run("memstore", func(b *testing.B) { benchGetServices(b, memstore.New(memstore.Config{})) })
	b.Run("pebble", func(b *testing.B) {
		s, err := pebblestore.Open(pebblestore.Config{Dir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		benchGetServices(b, s)
	})
}

func benchGetServices(b *testing.B, store tracestore.Store) {
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
	warm := Reader(store)
	if _, err := warm.GetServices(ctx); err != nil { // fill the probe cache
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		r    func() tracestore.Reader
		want int
	}{
		{"unfiltered", func() tracestore.Reader { return store }, 50},
		{"tenant-cold", func() tracestore.Reader { return Reader(store) }, 25}, // every probe runs
		{"tenant-warm", func() tracestore.Reader { return warm }, 25},          // answers from the probe cache
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			cpu0 := cpuTime()
			for b.Loop() {
				s, err := bc.r().GetServices(ctx)
				if err != nil || len(s) != bc.want {
					b.Fatalf("%d services, %v; want %d", len(s), err, bc.want)
				}
			}
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// cpuTime is the process's user and system CPU time so far, in ns: wall
// time is meaningless on a machine shared with other builds.
func cpuTime() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkQueryable compares one PromQL query over 10,000 series of two
// tenants without tenancy (every series) and as one tenant (the injected
// matcher halves the series read).
func BenchmarkQueryable(b *testing.B) {
	s, err := metricstore.Open(metricstore.Config{Path: b.TempDir(), Retention: 24 * time.Hour}, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ts := time.Now().Truncate(time.Minute)
	for _, tenant := range []string{"team-a", "team-b"} {
		app := Appendable(s).Appender(NewContext(context.Background(), tenant))
		for i := 0; i < 5000; i++ {
			ls := labels.FromStrings("__name__", "istio_requests_total", "destination_workload", fmt.Sprint("w", i%100), "pod", fmt.Sprint(i))
			for k := 0; k < 10; k++ {
				if _, err := app.Append(0, ls, ts.Add(time.Duration(k-10)*15*time.Second).UnixMilli(), float64(k)); err != nil {
					b.Fatal(err)
				}
			}
		}
		if err := app.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	eng := promql.NewEngine(promql.EngineOpts{MaxSamples: 1e8, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	for _, bc := range []struct {
		name string
		q    storage.Queryable
		ctx  context.Context
	}{
		{"untenanted", s, context.Background()},
		{"tenant", Queryable(s), NewContext(context.Background(), "team-a")},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			cpu0 := cpuTime()
			for b.Loop() {
				qry, err := eng.NewInstantQuery(bc.ctx, bc.q, nil, `sum by (destination_workload) (rate(istio_requests_total[5m]))`, ts)
				if err != nil {
					b.Fatal(err)
				}
				res := qry.Exec(bc.ctx)
				if res.Err != nil {
					b.Fatal(res.Err)
				}
				qry.Close()
			}
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}
