package server

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/meshlens/meshlens/pipeline"
	"github.com/meshlens/meshlens/processors/redmetrics"
	"github.com/meshlens/meshlens/processors/spancalls"
	"github.com/meshlens/meshlens/processors/tracesampling"
	"github.com/meshlens/meshlens/storage/metricstore"
	"github.com/meshlens/meshlens/storage/tracestore/cassandra"
	"github.com/meshlens/meshlens/storage/tracestore/tracestoretest"
)

// cqlSink is an in-process Cassandra session: it accepts every batch and
// counts the statements (one UNLOGGED batch is one statement on the wire)
// and the rows in them.
type cqlSink struct{ batches, rows atomic.Int64 }

func (s *cqlSink) ExecBatch(_ context.Context, stmts []cassandra.Stmt) error {
	s.batches.Add(1)
	s.rows.Add(int64(len(stmts)))
	return nil
}
func (s *cqlSink) Query(context.Context, cassandra.Stmt) cassandra.Iter { return emptyIter{} }
func (s *cqlSink) ExecCQL(context.Context, string) error                { return nil }
func (s *cqlSink) Close()                                               {}

type emptyIter struct{}

func (emptyIter) Next() ([]any, bool) { return nil, false }
func (emptyIter) Close() error        { return nil }

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkCollectorSpans measures a collector's CPU per span on its whole
// trace path, wired as buildComponents wires it in collector mode: OTLP
// protobuf decoding, span -> call derivation and span metrics, the call
// queue with identity and endpoint processors into the RED aggregator
// (flushing to its TSDB), head sampling (default: keep all), and the
// Cassandra store batching its writes into an in-process session. It
// reports process CPU per span (getrusage: every goroutine, GC included)
// and the CQL statements per span.
func BenchmarkCollectorSpans(b *testing.B) {
	sink := &cqlSink{}
	benchTracePath(b, func(s *Server) (pipeline.TraceConsumer, error) {
		return cassandra.New(sink, cassandra.Config{Keyspace: "meshlens", TTL: s.cfg.Storage.Traces.Retention, AutocompleteKeys: autocompleteKeys, Logger: s.logger, Registerer: s.reg})
	}, func(b *testing.B, n float64) {
		b.ReportMetric(float64(sink.batches.Load())/n, "stmts/span")
		b.ReportMetric(float64(sink.rows.Load())/n, "rows/span")
	})
}

// BenchmarkAllInOneSpans is BenchmarkCollectorSpans with the embedded
// store (synced Pebble batches, one writer) in place of Cassandra: the
// single binary's trace path.
func BenchmarkAllInOneSpans(b *testing.B) {
	benchTracePath(b, func(s *Server) (pipeline.TraceConsumer, error) {
		return s.openTraceStore()
	}, func(*testing.B, float64) {})
}

func benchTracePath(b *testing.B, openStore func(*Server) (pipeline.TraceConsumer, error), report func(b *testing.B, spans float64)) {
	for _, size := range []int{100, 1000} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			logger := slog.New(slog.DiscardHandler)
			cfg := DefaultConfig()
			cfg.Storage.Path = b.TempDir()
			s := &Server{cfg: cfg, flags: Flags{Mode: ModeCollector}, logger: logger}
			s.reg = prometheus.NewRegistry()
			s.tel = pipeline.NewTelemetry(s.reg)
			ms, err := metricstore.Open(cfg.MetricStore(), logger, s.reg)
			if err != nil {
				b.Fatal(err)
			}
			defer ms.Close()
			mc := redmetrics.DefaultConfig()
			mc.FlushInterval = time.Second
			s.agg = redmetrics.New(mc, ms, nil, s.reg, logger)
			if err := s.buildProcessors(); err != nil {
				b.Fatal(err)
			}
			s.queue = pipeline.NewQueue(pipeline.QueueConfig{Name: "calls", Capacity: 1024, Workers: 1, EnqueueWait: time.Second},
				s.tel, s.sinks, s.procs...)
			s.queue.Start()
			go s.agg.Run(ctx)

			store, err := openStore(s)
			if err != nil {
				b.Fatal(err)
			}
			sampler, err := tracesampling.New(cfg.Processors.Sampling, store, s.reg)
			if err != nil {
				b.Fatal(err)
			}
			spans := spancalls.New(spancalls.Config{}, spanOrigin{s.queue}, s.agg, s.tel, logger)
			go spans.Run(ctx)
			traces := traceFanout{derive: spans, store: sampler, tel: s.tel}

			var seq uint64
			encoded := make([][]byte, 16)
			for i := range encoded {
				if encoded[i], err = (&ptrace.ProtoMarshaler{}).MarshalTraces(tracestoretest.IstioTraces(size, &seq)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			cpu0 := cpuTime()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				td, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(encoded[i%len(encoded)])
				if err != nil {
					b.Fatal(err)
				}
				if err := traces.ConsumeTraces(ctx, td); err != nil {
					b.Fatal(err)
				}
			}
			// The calls derived from the last batches are still queued:
			// their processing is part of the cost.
			if err := s.queue.Shutdown(context.Background()); err != nil {
				b.Fatal(err)
			}
			if err := s.agg.Flush(context.Background(), time.Now()); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			n := float64(b.N * size)
			b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/n, "cpu-ns/span")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/span")
			report(b, n)
			for _, c := range s.closers {
				if err := c(context.Background()); err != nil {
					b.Error(err)
				}
			}
		})
	}
}
