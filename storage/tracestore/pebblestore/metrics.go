package pebblestore

import (
	"github.com/meshlens/meshlens/storage/tracestore"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the store's self-metrics; nil-safe when no registry is given.
type metrics struct {
	*tracestore.WriteMetrics
	dropped *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, s *Store) *metrics {
	m := &metrics{
		WriteMetrics: tracestore.NewWriteMetrics("Spans durably written to the trace store.",
			"Time to encode and durably commit one WriteTraces batch.", 0.0001),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_tracestore_buckets_dropped_total",
			Help: "Time buckets dropped by retention, by reason (ttl, size).",
		}, []string{"reason"}),
	}
	if reg != nil {
		reg.MustRegister(append(m.Collectors(), m.dropped,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "meshlens_tracestore_disk_bytes",
				Help: "Trace store size as the size cap counts it (live sstables and WAL).",
			}, func() float64 { return float64(s.DiskUsage()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "meshlens_tracestore_pebble_memory_bytes",
				Help: "Memory Pebble allocates outside the Go heap (block cache, live and zombie memtables); bounded by the cache size and memtable settings, it counts in RSS but not in go_memstats.",
			}, func() float64 { return float64(s.ManualMemoryBytes()) }))...)
	}
	return m
}

// ManualMemoryBytes is the memory Pebble holds outside the Go heap: its
// block cache and its memtables, including memtables still referenced by
// readers after a flush.
func (s *Store) ManualMemoryBytes() int64 {
	m := s.db.Metrics()
	return m.BlockCache.Size + int64(m.MemTable.Size) + int64(m.MemTable.ZombieSize)
}
