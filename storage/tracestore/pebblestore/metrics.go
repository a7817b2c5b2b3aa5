package pebblestore

import (
	"github.com/meshlens/meshlens/storage/tracestore"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// metrics are the store's self-metrics; nil-safe when no registry is given.
type metrics struct {
	*tracestore.WriteMetrics
	dropped *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, s *Store) *metrics {
	m := &metrics{
		WriteMetrics: tracestore.NewWriteMetrics("Spans durably written to the trace store.",
			"Time from a WriteTraces call to its spans being durable, including the wait for the group committing ahead of it.", 0.0001),
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
			}, func() float64 { return float64(s.ManualMemoryBytes()) }),
			fsyncMetric(s))...)
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

// fsyncMetric is the WAL fsync latency: the background syncer's when it
// runs, else Pebble's, which every acknowledgement waits for.
func fsyncMetric(s *Store) prometheus.Collector {
	if s.walSync != nil {
		return s.walSync.latency
	}
	return newWALFsyncCollector(s)
}

// walFsyncCollector exports Pebble's WAL fsync latency histogram in
// seconds. Every acknowledged span batch waits for one of these fsyncs, so
// its tail is the floor of the ingest acknowledgement's tail.
type walFsyncCollector struct {
	s    *Store
	desc *prometheus.Desc
}

func newWALFsyncCollector(s *Store) *walFsyncCollector {
	return &walFsyncCollector{s: s, desc: prometheus.NewDesc("meshlens_tracestore_wal_fsync_seconds",
		"Latency of the trace store's write-ahead-log fsyncs, which every acknowledged span batch waits for.", nil, nil)}
}

func (c *walFsyncCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *walFsyncCollector) Collect(ch chan<- prometheus.Metric) {
	h := c.s.db.Metrics().LogWriter.FsyncLatency
	if h == nil {
		return
	}
	var m dto.Metric
	if err := h.Write(&m); err != nil || m.Histogram == nil {
		return
	}
	// Pebble's buckets are in nanoseconds.
	buckets := make(map[float64]uint64, len(m.Histogram.Bucket))
	for _, b := range m.Histogram.Bucket {
		buckets[b.GetUpperBound()/1e9] = b.GetCumulativeCount()
	}
	ch <- prometheus.MustNewConstHistogram(c.desc, m.Histogram.GetSampleCount(), m.Histogram.GetSampleSum()/1e9, buckets)
}
