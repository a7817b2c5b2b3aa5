package pebblestore

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the store's self-metrics; nil-safe when no registry is given.
type metrics struct {
	spans   prometheus.Counter
	batches prometheus.Counter
	failed  prometheus.Counter
	latency prometheus.Histogram
	dropped *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, s *Store) *metrics {
	m := &metrics{
		spans: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_tracestore_spans_written_total",
			Help: "Spans durably written to the trace store.",
		}),
		batches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_tracestore_batches_written_total",
			Help: "WriteTraces calls that committed.",
		}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_tracestore_write_failures_total",
			Help: "WriteTraces calls that failed.",
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "meshlens_tracestore_write_duration_seconds",
			Help:    "Time to encode and durably commit one WriteTraces batch.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 9),
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_tracestore_buckets_dropped_total",
			Help: "Time buckets dropped by retention, by reason (ttl, size).",
		}, []string{"reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.spans, m.batches, m.failed, m.latency, m.dropped,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "meshlens_tracestore_disk_bytes",
				Help: "Trace store size as the size cap counts it (live sstables and WAL).",
			}, func() float64 { return float64(s.DiskUsage()) }),
		)
	}
	return m
}
