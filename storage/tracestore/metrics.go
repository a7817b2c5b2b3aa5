package tracestore

import "github.com/prometheus/client_golang/prometheus"

// WriteMetrics are the self-metrics every trace backend keeps of its
// writes, under the same names whichever backend is configured.
type WriteMetrics struct {
	Spans   prometheus.Counter
	Batches prometheus.Counter
	Failed  prometheus.Counter
	Latency prometheus.Histogram
}

// NewWriteMetrics creates them; spansHelp and latencyHelp say what
// "written" and the measured time mean for the backend.
func NewWriteMetrics(spansHelp, latencyHelp string, latencyStart float64) *WriteMetrics {
	return &WriteMetrics{
		Spans: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_tracestore_spans_written_total", Help: spansHelp,
		}),
		Batches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_tracestore_batches_written_total", Help: "WriteTraces calls that completed.",
		}),
		Failed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_tracestore_write_failures_total", Help: "WriteTraces calls that failed.",
		}),
		Latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "meshlens_tracestore_write_duration_seconds", Help: latencyHelp,
			Buckets: prometheus.ExponentialBuckets(latencyStart, 2, 17), // same range as ×4 ×9, fine enough to place a p99 between fsync and CPU queueing
		}),
	}
}

// Collectors lists them for registration.
func (m *WriteMetrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.Spans, m.Batches, m.Failed, m.Latency}
}
