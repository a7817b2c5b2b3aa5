package cassandra

import (
	"context"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

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
				batches[i] = tracestoretest.IstioTraces(size, &seq)
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
