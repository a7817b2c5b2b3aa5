package envoymetrics

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	metricsv3 "github.com/envoyproxy/go-control-plane/envoy/service/metrics/v3"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
)

// typicalMessage is one flush of a sidecar: counters, gauges and
// histograms over a few dozen clusters. It returns the message and the
// number of samples it yields.
func typicalMessage(ts int64) (*metricsv3.StreamMetricsMessage, int) {
	var fams []*dto.MetricFamily
	samples := 0
	for i := range 40 {
		c := fmt.Sprintf("cluster.outbound|9080||svc%d.default.svc.cluster.local.", i)
		fams = append(fams,
			counter(c+"upstream_rq_total", float64(i), ts),
			counter(c+"upstream_rq_200", float64(i), ts),
			counter(c+"upstream_rq_2xx", float64(i), ts),
			counter(c+"upstream_cx_total", float64(i), ts),
			gauge(c+"upstream_cx_active", float64(i), ts),
			gauge(c+"membership_healthy", 1, ts),
			histogram(c+"upstream_rq_time", ts),
		)
		samples += 6 + 6 // histogram: 3 buckets + Inf + sum + count
	}
	return &metricsv3.StreamMetricsMessage{EnvoyMetrics: fams}, samples
}

type nopAppendable struct{}

func (nopAppendable) Appender(context.Context) storage.Appender { return nopAppender{} }

type nopAppender struct{ storage.Appender }

func (nopAppender) Append(storage.SeriesRef, labels.Labels, int64, float64) (storage.SeriesRef, error) {
	return 0, nil
}
func (nopAppender) Commit() error { return nil }

// BenchmarkConvertAppend measures conversion (tag extraction cached as in a
// long-lived stream), limits and appending to a no-op appender; ns/op and
// allocs/op are per sample.
func BenchmarkConvertAppend(b *testing.B) {
	r := New(Config{}, nopAppendable{}, nil, nil)
	p := proxyFromNode(&corev3.Node{Id: "sidecar~10.0.0.1~productpage-v1-x.default~default.svc.cluster.local", Cluster: "productpage.default"})
	ps := r.limiter.acquire(p.key())
	conv := newConverter(r.names, p, 8192)
	msg, n := typicalMessage(1700000000000)
	// The samples' own time, so that none is refused as out of window.
	r.now = func() time.Time { return time.UnixMilli(1700000000000) }
	log := r.logger
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += n {
		if err := r.appendMessage(context.Background(), conv, ps, msg, log); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "samples/s")
}

// BenchmarkExtractUncached is the cost of tag extraction for a stat name
// not yet seen on the stream.
func BenchmarkExtractUncached(b *testing.B) {
	x := newTagExtractor("cluster.local", []string{"istiocustom"})
	b.ReportAllocs()
	for b.Loop() {
		x.Extract("cluster.outbound|9080||reviews.default.svc.cluster.local.upstream_rq_200")
	}
}

// BenchmarkAppendTSDB is BenchmarkConvertAppend into a real TSDB head (a
// temp dir), each flush one second after the previous; per sample.
func BenchmarkAppendTSDB(b *testing.B) {
	opts := tsdb.DefaultOptions()
	db, err := tsdb.Open(b.TempDir(), nil, nil, opts, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	r := New(Config{}, db, nil, nil)
	p := proxyFromNode(&corev3.Node{Id: "sidecar~10.0.0.1~productpage-v1-x.default~default.svc.cluster.local", Cluster: "productpage.default"})
	ps := r.limiter.acquire(p.key())
	conv := newConverter(r.names, p, 8192)
	ts := time.Now().Add(-time.Hour).UnixMilli()
	msg, n := typicalMessage(ts)
	// The receive time follows the flushes, as it would live.
	r.now = func() time.Time { return time.UnixMilli(ts) }
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += n {
		ts += 1000
		for _, mf := range msg.GetEnvoyMetrics() {
			for _, m := range mf.GetMetric() {
				m.TimestampMs = &ts
			}
		}
		if err := r.appendMessage(context.Background(), conv, ps, msg, r.logger); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "samples/s")
}
