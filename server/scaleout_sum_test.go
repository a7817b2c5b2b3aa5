package server

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"

	"github.com/meshlens/meshlens/query/topology"
	"github.com/meshlens/meshlens/storage/metricstore"
)

// halfSeries is one series written by a single node, and by two
// collectors that each saw part of its traffic.
type halfSeries struct {
	lbls []string
	// per-flush increments of collector a and b; the single node sees both.
	a, b float64
}

// TestCollectorHalvesSumToSingleNode writes the same traffic to one store as
// a single node would (one series per label set) and to another as two
// collectors would (the same series twice, with collector="a" and "b",
// each holding part of the counts, stamped at the same aligned flushes),
// then checks that the topology computed on each is the same: its queries
// aggregate the collector label away.
func TestCollectorHalvesSumToSingleNode(t *testing.T) {
	ctx := context.Background()
	logger := slog.New(slog.DiscardHandler)
	open := func() *metricstore.Store {
		s, err := metricstore.Open(metricstore.Config{Path: t.TempDir(), Retention: 24 * time.Hour}, logger, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	single, pair := open(), open()

	edge := func(reporter, code, policy string, extra ...string) []string {
		return append([]string{
			"reporter", reporter, "source_workload_namespace", "default", "source_canonical_service", "productpage",
			"source_workload", "productpage-v1", "destination_service_namespace", "default",
			"destination_service_name", "reviews", "destination_canonical_service", "reviews",
			"request_protocol", "http", "response_code", code, "response_flags", "-", "connection_security_policy", policy,
		}, extra...)
	}
	var series []halfSeries
	for _, r := range []struct{ reporter, policy string }{{"destination", "mutual_tls"}, {"source", "unknown"}} {
		series = append(series,
			halfSeries{append([]string{"__name__", "istio_requests_total"}, edge(r.reporter, "200", r.policy)...), 7, 3},
			halfSeries{append([]string{"__name__", "istio_requests_total"}, edge(r.reporter, "503", r.policy)...), 1, 2},
		)
		// Cumulative buckets: 25 ms holds the 200s, 500 ms also the 503s.
		for _, b := range []struct {
			le   string
			a, b float64
		}{{"25", 7, 3}, {"500", 8, 5}, {"+Inf", 8, 5}} {
			l := edge(r.reporter, "", r.policy)
			l = append([]string{"__name__", "istio_request_duration_milliseconds_bucket", "le", b.le}, l[:len(l)-6]...)
			series = append(series, halfSeries{l, b.a, b.b})
		}
	}

	// Flushes every 10 s; the window (t0-1ms, t1] holds 30 of them after
	// the first.
	const flushes = 31
	base := time.Now().Add(-10 * time.Minute).Truncate(10 * time.Second)
	at := func(i int) time.Time { return base.Add(time.Duration(i) * 10 * time.Second) }
	for i := range flushes {
		sa, pa := single.Appender(ctx), pair.Appender(ctx)
		ts := at(i).UnixMilli()
		for _, s := range series {
			// Both halves already hold traffic at the first flush, as after
			// a warm-up: neither series starts inside the window.
			va, vb := s.a*float64(i+1), s.b*float64(i+1)
			if _, err := sa.Append(0, labels.FromStrings(s.lbls...), ts, va+vb); err != nil {
				t.Fatal(err)
			}
			for _, h := range []struct {
				name string
				v    float64
			}{{"a", va}, {"b", vb}} {
				if _, err := pa.Append(0, labels.FromStrings(append(s.lbls, CollectorLabel, h.name)...), ts, h.v); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := sa.Commit(); err != nil {
			t.Fatal(err)
		}
		if err := pa.Commit(); err != nil {
			t.Fatal(err)
		}
	}

	engine := promql.NewEngine(promql.EngineOpts{MaxSamples: 1_000_000, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	req := topology.Request{Start: at(0).Add(-time.Millisecond), End: at(flushes - 1), Level: topology.LevelService}
	graph := func(s *metricstore.Store) *topology.Graph {
		g, err := topology.New(topology.Options{Engine: engine, Queryable: s, Logger: logger}).Graph(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	want, got := graph(single), graph(pair)
	if len(want.Edges) != 1 || len(got.Edges) != 1 {
		t.Fatalf("edges: single node %+v, collectors %+v; want one productpage->reviews edge each", want.Edges, got.Edges)
	}
	we, ge := want.Edges[0], got.Edges[0]
	// 30 flushes of 10+3 requests (3 of them 503s) over 300.001 s, with
	// rate's extrapolation over the 1 ms before the first sample.
	secs := req.End.Sub(req.Start).Seconds()
	factor := (300 + 0.001) / 300
	if math.Abs(we.RequestRate-30*13*factor/secs) > 1e-9 || math.Abs(we.ErrorRate-30*3*factor/secs) > 1e-9 {
		t.Fatalf("single node: %v req/s, %v err/s; want %v and %v", we.RequestRate, we.ErrorRate, 30*13*factor/secs, 30*3*factor/secs)
	}
	close := func(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(a)) }
	checks := []struct {
		name      string
		got, want float64
	}{
		{"request rate", ge.RequestRate, we.RequestRate},
		{"error rate", ge.ErrorRate, we.ErrorRate},
		{"error ratio", ge.ErrorRatio, we.ErrorRatio},
		{"mTLS ratio", ge.MTLSRatio, we.MTLSRatio},
	}
	if we.LatencyMs == nil || ge.LatencyMs == nil {
		t.Fatalf("latency: single node %+v, collectors %+v", we.LatencyMs, ge.LatencyMs)
	}
	checks = append(checks,
		struct {
			name      string
			got, want float64
		}{"p50", ge.LatencyMs.P50, we.LatencyMs.P50},
		struct {
			name      string
			got, want float64
		}{"p99", ge.LatencyMs.P99, we.LatencyMs.P99})
	for _, c := range checks {
		if !close(c.got, c.want) {
			t.Errorf("%s: collectors %v, single node %v", c.name, c.got, c.want)
		}
	}
	if ge.ID != we.ID || ge.Reporter != we.Reporter || ge.MTLS != we.MTLS || fmt.Sprint(ge.Reporters) != fmt.Sprint(we.Reporters) {
		t.Errorf("edge: collectors %+v, single node %+v", ge, we)
	}
	if len(got.Nodes) != len(want.Nodes) {
		t.Fatalf("nodes: collectors %+v, single node %+v", got.Nodes, want.Nodes)
	}
	for i := range want.Nodes {
		g, w := got.Nodes[i], want.Nodes[i]
		if g.ID != w.ID || !close(g.Inbound.RequestRate, w.Inbound.RequestRate) || !close(g.Inbound.ErrorRate, w.Inbound.ErrorRate) ||
			!close(g.OutboundRequestRate, w.OutboundRequestRate) {
			t.Errorf("node %s: collectors %+v, single node %+v", w.ID, g, w)
		}
	}
}
