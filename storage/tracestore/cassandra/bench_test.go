package cassandra

import (
	"context"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/meshlens/meshlens/storage/tracestore/tracestoretest"
)

// sinkSession accepts every batch and counts it: the in-process sink the
// write benchmark measures the store's own CPU against.
type sinkSession struct {
	batches, rows atomic.Int64
}

func (s *sinkSession) ExecBatch(_ context.Context, stmts []Stmt) error {
	s.batches.Add(1)
	s.rows.Add(int64(len(stmts)))
	return nil
}
func (s *sinkSession) Query(context.Context, Stmt) Iter      { return &fakeIter{} }
func (s *sinkSession) ExecCQL(context.Context, string) error { return nil }
func (s *sinkSession) Close()                                {}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// istioBatch builds n spans of Istio-like traces: 5 spans per trace (one
// shared client/server id), 10 span tags including a unique x-request-id,
// 20 services, 15 operations, spread over the last minute.
func istioBatch(n int, seq *uint64) ptrace.Traces {
	td := ptrace.NewTraces()
	base := time.Now().Add(-time.Minute)
	for i := 0; i < n; i += 5 {
		*seq++
		tid := tracestoretest.TraceID(*seq, *seq*7919)
		for j := 0; j < 5 && i+j < n; j++ {
			rs := td.ResourceSpans().AppendEmpty()
			svc := fmt.Sprintf("svc-%d", (int(*seq)+j)%20)
			rs.Resource().Attributes().PutStr("service.name", svc)
			rs.Resource().Attributes().PutStr("host.name", "node-"+svc)
			sp := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
			sp.SetTraceID(tid)
			sp.SetSpanID(tracestoretest.SpanID(uint64(j/2 + 1)))
			if j > 0 {
				sp.SetParentSpanID(tracestoretest.SpanID(uint64((j-1)/2 + 1)))
			}
			sp.SetName(fmt.Sprintf("GET /api/%d", (int(*seq)+j)%15))
			sp.SetKind([]ptrace.SpanKind{ptrace.SpanKindServer, ptrace.SpanKindClient, ptrace.SpanKindServer, ptrace.SpanKindClient, ptrace.SpanKindServer}[j])
			st := base.Add(time.Duration(*seq%60000)*time.Millisecond + time.Duration(j)*time.Millisecond)
			sp.SetStartTimestamp(pcommon.NewTimestampFromTime(st))
			sp.SetEndTimestamp(pcommon.NewTimestampFromTime(st.Add(time.Duration(5+*seq%50) * time.Millisecond)))
			a := sp.Attributes()
			a.PutStr("http.method", "GET")
			a.PutInt("http.status_code", 200)
			a.PutStr("guid:x-request-id", fmt.Sprintf("%016x-%d", *seq, j))
			a.PutStr("http.url", fmt.Sprintf("http://svc/api/%d", *seq%15))
			a.PutStr("upstream_cluster", "outbound|9080||"+svc)
			a.PutStr("node_id", "sidecar~10.0.0.1~"+svc)
			a.PutStr("response_flags", "-")
			a.PutStr("istio.mesh_id", "cluster.local")
			a.PutStr("peer.service", fmt.Sprintf("svc-%d", (int(*seq)+j+1)%20))
			a.PutStr("component", "proxy")
		}
	}
	return td
}

// BenchmarkWriteTraces measures the store's CPU per span and the CQL
// statements (batches) and rows per span, writing to an in-process sink.
func BenchmarkWriteTraces(b *testing.B) {
	for _, size := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			sink := &sinkSession{}
			s, err := New(sink, Config{Keyspace: "ks", AutocompleteKeys: []string{"http.method", "http.status_code"}})
			if err != nil {
				b.Fatal(err)
			}
			var seq uint64
			batches := make([]ptrace.Traces, 16)
			for i := range batches {
				batches[i] = istioBatch(size, &seq)
			}
			ctx := context.Background()
			b.ReportAllocs()
			cpu0 := processCPU()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := s.WriteTraces(ctx, batches[i%len(batches)]); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			spans := float64(b.N * size)
			// Process CPU time (all goroutines, GC included): unlike
			// ns/span it is not inflated by other processes on a shared
			// machine.
			b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/spans, "cpu-ns/span")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/spans, "ns/span")
			b.ReportMetric(float64(sink.batches.Load())/spans, "stmts/span")
			b.ReportMetric(float64(sink.rows.Load())/spans, "rows/span")
		})
	}
}
