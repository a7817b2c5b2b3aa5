package promapi

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
)

// testSeries is one series of the fixture with its samples (ms, value).
type testSeries struct {
	lbls labels.Labels
	ts   []int64
	vals []float64
}

// fixtureStep is the sample interval of the fixture. Query times in the
// tests are offset from it so that no range boundary falls on a sample:
// Prometheus 2 (the reference) closes ranges on the left, Prometheus 3 (the
// engine here) opens them.
const fixtureStep = 15 * time.Second

// fixtureStart returns the first sample time: recent (remote write refuses
// samples far behind the newest) and aligned to the minute.
func fixtureStart() time.Time {
	return time.Now().Add(-50 * time.Minute).Truncate(time.Minute).UTC()
}

var durationBuckets = []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000}

// fixture builds a small Istio-like mesh: request counters by reporter and
// response code, a duration histogram, TCP byte counters and a gauge, 40
// minutes at 15 s.
func fixture(t0 time.Time) []testSeries {
	rng := rand.New(rand.NewPCG(1, 2))
	n := int(40 * time.Minute / fixtureStep)
	stamps := make([]int64, n)
	for i := range stamps {
		stamps[i] = t0.Add(time.Duration(i) * fixtureStep).UnixMilli()
	}
	var out []testSeries
	counter := func(lbls labels.Labels, meanInc float64, resetAt int) {
		vals := make([]float64, n)
		v := 0.0
		for i := range vals {
			if i == resetAt {
				v = 0
			}
			// Fractional increments keep rates of different series apart,
			// so that topk and sort have no ties to break differently.
			v += meanInc * (0.5 + rng.Float64())
			vals[i] = v
		}
		out = append(out, testSeries{lbls: lbls, ts: stamps, vals: vals})
	}
	edges := []struct{ src, dst string }{
		{"productpage", "reviews"}, {"productpage", "details"}, {"reviews", "ratings"}, {"istio-ingressgateway", "productpage"},
	}
	for _, e := range edges {
		for _, rep := range []string{"source", "destination"} {
			for _, code := range []string{"200", "503"} {
				inc := 30.0
				if code == "503" {
					inc = 2
				}
				reset := -1
				if e.dst == "ratings" && rep == "destination" && code == "200" {
					reset = n / 2 // a restarted proxy
				}
				counter(labels.FromStrings(
					"__name__", "istio_requests_total",
					"reporter", rep,
					"source_workload", e.src+"-v1",
					"source_workload_namespace", "default",
					"destination_service_name", e.dst,
					"destination_service_namespace", "default",
					"destination_workload", e.dst+"-v1",
					"request_protocol", "http",
					"response_code", code,
				), inc, reset)
			}
			// Histogram: each bucket gets a share of the requests.
			base := labels.FromStrings(
				"__name__", "istio_request_duration_milliseconds_bucket",
				"reporter", rep,
				"source_workload", e.src+"-v1",
				"destination_service_name", e.dst,
			)
			var bucketVals [][]float64
			for range durationBuckets {
				b := make([]float64, n)
				acc := 0.0
				for i := range b {
					acc += math.Floor(4 * rng.Float64())
					b[i] = acc
				}
				bucketVals = append(bucketVals, b)
			}
			for bi := range bucketVals {
				if bi > 0 {
					for i := range n {
						bucketVals[bi][i] += bucketVals[bi-1][i]
					}
				}
			}
			for bi, le := range durationBuckets {
				lb := labels.NewBuilder(base).Set("le", strconv.FormatFloat(le, 'f', -1, 64)).Labels()
				out = append(out, testSeries{lbls: lb, ts: stamps, vals: bucketVals[bi]})
			}
			inf := make([]float64, n)
			last := bucketVals[len(bucketVals)-1]
			for i := range inf {
				inf[i] = last[i] + float64(i/4)
			}
			out = append(out, testSeries{lbls: labels.NewBuilder(base).Set("le", "+Inf").Labels(), ts: stamps, vals: inf})
			countLbls := labels.NewBuilder(base).Set("__name__", "istio_request_duration_milliseconds_count").Labels()
			out = append(out, testSeries{lbls: countLbls, ts: stamps, vals: inf})
		}
	}
	counter(labels.FromStrings("__name__", "istio_tcp_sent_bytes_total", "reporter", "source",
		"source_workload", "ratings-v1", "destination_service_name", "mongodb", "request_protocol", "tcp"), 4096, -1)
	// A gauge with a gap, a negative value and a tiny one (exponent form).
	g := testSeries{lbls: labels.FromStrings("__name__", "meshlens_test_gauge", "kind", "gap")}
	for i, ts := range stamps {
		if i > n/3 && i < n/3+40 { // a 10 minute gap: staleness by lookback
			continue
		}
		g.ts = append(g.ts, ts)
		g.vals = append(g.vals, float64(i%7)-3.5)
	}
	out = append(out, g)
	tiny := testSeries{lbls: labels.FromStrings("__name__", "meshlens_test_gauge", "kind", "tiny"), ts: stamps, vals: make([]float64, n)}
	for i := range tiny.vals {
		tiny.vals[i] = 1.5e-9 * float64(i+1)
	}
	out = append(out, tiny)
	return out
}

// openTSDB writes series into a fresh TSDB in a temp dir.
func openTSDB(tb testing.TB, series []testSeries) *tsdb.DB {
	tb.Helper()
	opts := tsdb.DefaultOptions()
	opts.RetentionDuration = 0
	db, err := tsdb.Open(tb.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)), nil, opts, nil)
	if err != nil {
		tb.Fatalf("open tsdb: %v", err)
	}
	tb.Cleanup(func() { db.Close() })
	app := db.Appender(context.Background())
	for _, s := range series {
		var ref storage.SeriesRef
		for i, ts := range s.ts {
			var err error
			ref, err = app.Append(ref, s.lbls, ts, s.vals[i])
			if err != nil {
				tb.Fatalf("append %s: %v", s.lbls, err)
			}
		}
	}
	if err := app.Commit(); err != nil {
		tb.Fatalf("commit: %v", err)
	}
	return db
}

// newTestServer serves an API over db on 127.0.0.1.
func newTestServer(tb testing.TB, opts Options) (*API, *httptest.Server) {
	tb.Helper()
	a := New(opts)
	mux := http.NewServeMux()
	a.Register(mux)
	srv := httptest.NewServer(mux)
	tb.Cleanup(func() {
		srv.Close()
		a.Close()
	})
	return a, srv
}

func unixString(t time.Time) string {
	return strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', -1, 64)
}

func mustf(tb testing.TB, err error, format string, args ...any) {
	tb.Helper()
	if err != nil {
		tb.Fatalf("%s: %v", fmt.Sprintf(format, args...), err)
	}
}
