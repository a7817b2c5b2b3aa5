package cassandra

import (
	"github.com/meshlens/meshlens/storage/tracestore"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the store's self-metrics, registered on the registry passed
// in (none when nil). Names match pebblestore's where the meaning does.
type metrics struct {
	*tracestore.WriteMetrics
	statements *prometheus.CounterVec
	slotWait   prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer, s *Store) *metrics {
	m := &metrics{
		WriteMetrics: tracestore.NewWriteMetrics("Spans written to the trace store (acknowledged at the configured consistency).",
			"Time to write one WriteTraces call, including waits for a batch slot.", 0.0005),
		statements: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_tracestore_cassandra_statements_total",
			Help: "CQL round trips, by kind (batch, select) and result (ok, error).",
		}, []string{"kind", "result"}),
		slotWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "meshlens_tracestore_cassandra_slot_wait_seconds",
			Help:    "Time a batch waited for one of MaxInflightBatches slots (backpressure from a slow cluster).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 9),
		}),
	}
	if reg != nil {
		reg.MustRegister(append(m.Collectors(), m.statements, m.slotWait,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "meshlens_tracestore_cassandra_inflight_batches",
				Help: "Batches being written now.",
			}, func() float64 { return float64(len(s.slots)) }))...)
	}
	return m
}
