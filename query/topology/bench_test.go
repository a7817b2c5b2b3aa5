package topology

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/meshlens/meshlens/query/promapi"
)

// BenchmarkServiceGraph builds the service graph of a 100-service mesh
// (each service calling the next two, both sides reporting, with duration
// histograms) over the last 5 minutes of 30 minutes of 10 s samples.
func BenchmarkServiceGraph(b *testing.B) {
	const services = 100
	t0 := time.Now().Add(-history - time.Minute).Truncate(time.Minute)
	db := loadBookinfo(b, t0) // a base to extend
	w := &writer{tb: b, app: db.Appender(context.Background()), t0: t0}
	for i := range services {
		for _, d := range []int{1, 2} {
			e := istioEdgeSpec{srcNS: "mesh", src: fmt.Sprintf("svc-%d", i), dstNS: "mesh", dst: fmt.Sprintf("svc-%d", (i+d)%services),
				protocol: "http", policy: "mutual_tls"}
			for _, rep := range []string{"source", "destination"} {
				base := peerLabels(e, rep)
				w.counter(float64(1+i%7), append(slices.Clone(base), "__name__", "istio_requests_total", "response_code", "200", "response_flags", "-", "grpc_response_status", "")...)
				w.counter(0.1, append(slices.Clone(base), "__name__", "istio_requests_total", "response_code", "503", "response_flags", "-", "grpc_response_status", "")...)
				w.histogram("istio_request_duration_milliseconds_bucket", istioBuckets, map[float64]float64{10: 1, 25: 2, 100: 0.5}, base...)
			}
		}
	}
	if err := w.app.Commit(); err != nil {
		b.Fatal(err)
	}
	prom := promapi.New(promapi.Options{Queryable: db})
	defer prom.Close()
	mux := http.NewServeMux()
	New(Options{Engine: prom.Engine(), Queryable: db}).Register(mux)
	end := t0.Add(history - 7*time.Second)
	target := fmt.Sprintf("%s?end=%d", TopologyPath, end.Unix())

	b.ReportAllocs()
	lat := make([]time.Duration, 0, b.N)
	for b.Loop() {
		start := time.Now()
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
		lat = append(lat, time.Since(start))
		if rec.Code != http.StatusOK {
			b.Fatalf("%d %s", rec.Code, rec.Body.String())
		}
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[min(len(lat)-1, len(lat)*99/100)].Microseconds())/1000, "p99-ms")
}
