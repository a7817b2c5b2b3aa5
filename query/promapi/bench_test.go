package promapi

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
)

// benchMesh sizes the benchmark data: a ring of services, each called by
// its predecessor, reported by the destination, with two response codes
// and the Istio duration histogram (19 bounds + Inf) per edge: 2,200
// series. The default covers a day at 10 s (19 M samples, about 10 s to
// generate); MESHLENS_BENCH_HOURS sets another span.
type benchMesh struct {
	services int
	hours    int
	interval time.Duration
}

func benchSize() benchMesh {
	m := benchMesh{services: 100, hours: 24, interval: 10 * time.Second}
	if v, err := strconv.Atoi(os.Getenv("MESHLENS_BENCH_HOURS")); err == nil && v > 0 && v <= 24*7 {
		m.hours = v
	}
	return m
}

var benchBounds = []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000}

// loadBenchMesh appends the mesh into a TSDB and compacts what it can into
// blocks, as a day of real ingestion would leave it.
func loadBenchMesh(b *testing.B, m benchMesh) (*tsdb.DB, time.Time, int) {
	b.Helper()
	db := openTSDB(b, nil)
	end := time.Now().Truncate(time.Minute)
	start := end.Add(-time.Duration(m.hours) * time.Hour)
	type ser struct {
		l    labels.Labels
		ref  storage.SeriesRef
		rate float64
		val  float64
	}
	var all []*ser
	for i := range m.services {
		src, dst := fmt.Sprintf("svc-%d", i), fmt.Sprintf("svc-%d", (i+1)%m.services)
		base := []string{"reporter", "destination", "source_workload", src + "-v1", "source_workload_namespace", "mesh",
			"destination_service_name", dst, "destination_service_namespace", "mesh", "destination_workload", dst + "-v1",
			"request_protocol", "http", "connection_security_policy", "mutual_tls"}
		rps := 5 + float64(i%10)
		for _, code := range []string{"200", "503"} {
			r := rps
			if code == "503" {
				r = rps / 50
			}
			all = append(all, &ser{l: labels.FromStrings(append(slices.Clone(base), "__name__", "istio_requests_total", "response_code", code, "response_flags", "-")...), rate: r})
		}
		for bi, le := range append(slices.Clone(benchBounds), 1e308) {
			leS := strconv.FormatFloat(le, 'f', -1, 64)
			if le == 1e308 {
				leS = "+Inf"
			}
			share := min(1, float64(bi+1)/9) // most requests under 250 ms
			all = append(all, &ser{l: labels.FromStrings(append(slices.Clone(base), "__name__", "istio_request_duration_milliseconds_bucket", "le", leS)...), rate: rps * share})
		}
	}
	samples := 0
	// Append in time order, one commit per step: how ingestion writes.
	for ts := start; !ts.After(end); ts = ts.Add(m.interval) {
		app := db.Appender(context.Background())
		for j, s := range all {
			// Vary the increments a little so chunks compress like real data.
			s.val += s.rate * m.interval.Seconds() * (0.9 + 0.2*float64((j+int(ts.Unix()/10))%7)/6)
			var err error
			if s.ref, err = app.Append(s.ref, s.l, ts.UnixMilli(), s.val); err != nil {
				b.Fatal(err)
			}
			samples++
		}
		if err := app.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	if err := db.Compact(context.Background()); err != nil {
		b.Fatal(err)
	}
	return db, end, samples
}

// BenchmarkDashboardQueries measures dashboard-style PromQL through the HTTP
// handlers (parsing, evaluation and JSON encoding) and reports the p50 and
// p99 latency of each query shape.
func BenchmarkDashboardQueries(b *testing.B) {
	m := benchSize()
	setup := time.Now()
	db, end, samples := loadBenchMesh(b, m)
	b.Logf("mesh: %d services, %d h at %s: %d series, %d samples, loaded in %s",
		m.services, m.hours, m.interval, m.services*22, samples, time.Since(setup).Round(time.Millisecond))
	a := New(Options{Queryable: db})
	defer a.Close()
	mux := http.NewServeMux()
	a.Register(mux)

	endS := strconv.FormatInt(end.Unix(), 10)
	startOf := func(d time.Duration) string { return strconv.FormatInt(end.Add(-d).Unix(), 10) }
	full := time.Duration(m.hours) * time.Hour
	queries := []struct {
		name string
		path string
		form url.Values
	}{
		{"instant_sum_by_rate", "/api/v1/query", url.Values{"query": {`sum by (destination_service_name) (rate(istio_requests_total{reporter="destination"}[5m]))`}, "time": {endS}}},
		{"instant_error_ratio", "/api/v1/query", url.Values{"query": {`sum by (destination_service_name) (rate(istio_requests_total{reporter="destination",response_code=~"5.."}[5m])) / sum by (destination_service_name) (rate(istio_requests_total{reporter="destination"}[5m]))`}, "time": {endS}}},
		{"range1h_sum_by_rate", "/api/v1/query_range", url.Values{"query": {`sum by (destination_service_name) (rate(istio_requests_total{reporter="destination"}[1m]))`}, "start": {startOf(time.Hour)}, "end": {endS}, "step": {"15"}}},
		{"range1h_p99_by_service", "/api/v1/query_range", url.Values{"query": {`histogram_quantile(0.99, sum by (le, destination_service_name) (rate(istio_request_duration_milliseconds_bucket{reporter="destination"}[1m])))`}, "start": {startOf(time.Hour)}, "end": {endS}, "step": {"15"}}},
		{"rangeAll_p95_one_service", "/api/v1/query_range", url.Values{"query": {`histogram_quantile(0.95, sum by (le) (rate(istio_request_duration_milliseconds_bucket{destination_service_name="svc-7"}[5m])))`}, "start": {startOf(full)}, "end": {endS}, "step": {"60"}}},
		{"rangeAll_sum_rate_by_service", "/api/v1/query_range", url.Values{"query": {`sum by (destination_service_name) (rate(istio_requests_total[5m]))`}, "start": {startOf(full)}, "end": {endS}, "step": {"300"}}},
	}
	for _, q := range queries {
		b.Run(q.name, func(b *testing.B) {
			b.ReportAllocs()
			target := q.path + "?" + q.form.Encode()
			lat := make([]time.Duration, 0, b.N)
			for b.Loop() {
				t := time.Now()
				rec := httptest.NewRecorder()
				mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
				lat = append(lat, time.Since(t))
				if rec.Code != http.StatusOK {
					b.Fatalf("%s: %d %s", q.name, rec.Code, rec.Body.String())
				}
			}
			slices.Sort(lat)
			pct := func(p float64) float64 {
				return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
			}
			b.ReportMetric(pct(0.50), "p50-ms")
			b.ReportMetric(pct(0.99), "p99-ms")
		})
	}
}
