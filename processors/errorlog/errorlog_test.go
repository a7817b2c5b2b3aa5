package errorlog

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/meshlens/meshlens/model"
	"github.com/meshlens/meshlens/pipeline"
)

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func call(dst string, status int, flags string, start time.Time) model.Call {
	return model.Call{
		Source:      model.Identity{Service: "productpage", Namespace: "bookinfo", Instance: "productpage-v1-1"},
		Destination: model.Identity{Service: dst, Namespace: "bookinfo", Instance: dst + "-v1-1"},
		Endpoint:    "GET:/" + dst, Method: "GET", Path: "/" + dst + "/1",
		Start: start, Duration: 25 * time.Millisecond,
		StatusCode: status, GRPCStatus: -1, ResponseFlags: flags,
		DetectPoint: model.DetectClient, RequestID: "req-" + dst,
		UpstreamCluster: "outbound|9080||" + dst + ".bookinfo.svc.cluster.local",
	}
}

func newLog(cfg Config, clock *time.Time) *Log {
	l := New(cfg, nil, nil)
	l.now = func() time.Time { return *clock }
	return l
}

func TestOnlyErrorsRecorded(t *testing.T) {
	now := t0
	l := newLog(Config{}, &now)
	g := call("cart", 200, "", t0)
	g.Protocol, g.GRPCStatus = model.ProtocolGRPC, 14
	_ = l.ConsumeCalls(context.Background(), []model.Call{
		call("a", 200, "", t0), call("b", 302, "", t0), call("c", 404, "", t0),
		call("d", 503, "UH", t0), call("e", 0, "UC", t0), g,
	})
	got, _ := l.Query(context.Background(), Filter{})
	var names []string
	for _, r := range got {
		names = append(names, r.Destination.Service)
	}
	// Newest first; all start at t0, so ring order (newest first) is kept.
	if strings.Join(names, ",") != "cart,e,d,c" {
		t.Fatalf("recorded %v, want c, d, e, cart", names)
	}
	for _, r := range got {
		if r.Destination.Service == "a" || r.Destination.Service == "b" {
			t.Fatalf("success recorded: %+v", r)
		}
	}
}

func TestRateLimitPerServiceAndCode(t *testing.T) {
	now := t0
	reg := prometheus.NewRegistry()
	l := New(Config{RatePerSecond: 10, Burst: 50}, pipeline.NewTelemetry(reg), nil)
	l.now = func() time.Time { return now }
	batch := func(dst string, status, n int) {
		cs := make([]model.Call, n)
		for i := range cs {
			cs[i] = call(dst, status, "", now)
		}
		_ = l.ConsumeCalls(context.Background(), cs)
	}
	count := func(f Filter) int {
		rs, _ := l.Query(context.Background(), f)
		return len(rs)
	}

	batch("reviews", 503, 100) // burst: 50 kept
	if n := count(Filter{Service: "reviews", Code: "503"}); n != 50 {
		t.Fatalf("after burst: %d records, want 50", n)
	}
	batch("reviews", 500, 10) // another code has its own bucket
	batch("ratings", 503, 10) // another service too
	if n := count(Filter{Service: "reviews", Code: "500"}); n != 10 {
		t.Fatalf("reviews/500: %d, want 10", n)
	}
	if n := count(Filter{Service: "ratings"}); n != 10 {
		t.Fatalf("ratings: %d, want 10", n)
	}

	now = now.Add(time.Second) // refills 10 tokens
	batch("reviews", 503, 30)
	if n := count(Filter{Service: "reviews", Code: "503"}); n != 60 {
		t.Fatalf("after 1s: %d records, want 60", n)
	}
	now = now.Add(time.Hour) // refill is capped at the burst
	batch("reviews", 503, 80)
	if n := count(Filter{Service: "reviews", Code: "503"}); n != 110 {
		t.Fatalf("after 1h: %d records, want 110", n)
	}
	const want = `
# HELP meshlens_pipeline_dropped_items_total Items dropped after acceptance, by stage and reason.
# TYPE meshlens_pipeline_dropped_items_total counter
meshlens_pipeline_dropped_items_total{reason="sampled_out",stage="errorlog"} 100
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "meshlens_pipeline_dropped_items_total"); err != nil {
		t.Error(err)
	}
}

func TestMaxKeysBound(t *testing.T) {
	now := t0
	l := newLog(Config{MaxKeys: 2}, &now)
	_ = l.ConsumeCalls(context.Background(), []model.Call{call("a", 500, "", now), call("b", 500, "", now), call("c", 500, "", now)})
	if len(l.buckets) != 2 {
		t.Fatalf("%d buckets, want 2", len(l.buckets))
	}
	// Once the buckets are idle (refilled) they are pruned and c gets in.
	now = now.Add(10 * time.Second)
	_ = l.ConsumeCalls(context.Background(), []model.Call{call("c", 500, "", now)})
	rs, _ := l.Query(context.Background(), Filter{Service: "c"})
	if len(rs) != 1 {
		t.Fatalf("c after prune: %d records", len(rs))
	}
}

func TestRingKeepsNewest(t *testing.T) {
	now := t0
	l := newLog(Config{Capacity: 5, Burst: 1000, RatePerSecond: 1000}, &now)
	for i := range 12 {
		_ = l.ConsumeCalls(context.Background(), []model.Call{call("svc", 500, "", t0.Add(time.Duration(i)*time.Second))})
	}
	rs, _ := l.Query(context.Background(), Filter{})
	if len(rs) != 5 {
		t.Fatalf("%d records, want 5", len(rs))
	}
	for i, r := range rs {
		if want := t0.Add(time.Duration(11-i) * time.Second); !r.Time.Equal(want) {
			t.Errorf("record %d at %v, want %v", i, r.Time, want)
		}
	}
}

func TestFilters(t *testing.T) {
	now := t0
	l := newLog(Config{}, &now)
	g := call("cart", 200, "", t0.Add(4*time.Second))
	g.Protocol, g.GRPCStatus, g.Destination.Namespace = model.ProtocolGRPC, 14, "shop"
	_ = l.ConsumeCalls(context.Background(), []model.Call{
		call("reviews", 503, "UF,URX", t0),
		call("reviews", 404, "", t0.Add(time.Second)),
		call("ratings", 504, "UT", t0.Add(2*time.Second)),
		call("details", 0, "UC", t0.Add(3*time.Second)),
		g,
	})
	tests := []struct {
		name string
		f    Filter
		want []string // destination service:status, newest first
	}{
		{"all", Filter{}, []string{"cart:200", "details:0", "ratings:504", "reviews:404", "reviews:503"}},
		{"limit", Filter{Limit: 2}, []string{"cart:200", "details:0"}},
		{"destination service", Filter{Service: "reviews"}, []string{"reviews:404", "reviews:503"}},
		{"source service matches too", Filter{Service: "productpage", Limit: 1}, []string{"cart:200"}},
		{"namespace", Filter{Namespace: "shop"}, []string{"cart:200"}},
		{"service and namespace on the same side", Filter{Service: "cart", Namespace: "bookinfo"}, nil},
		{"code", Filter{Code: "503"}, []string{"reviews:503"}},
		{"code class", Filter{Code: "5xx"}, []string{"ratings:504", "reviews:503"}},
		{"grpc code", Filter{Code: "grpc:14"}, []string{"cart:200"}},
		{"flag", Filter{Flag: "URX"}, []string{"reviews:503"}},
		{"flag UC", Filter{Flag: "UC"}, []string{"details:0"}},
		{"time range", Filter{Start: t0.Add(time.Second), End: t0.Add(2 * time.Second)}, []string{"ratings:504", "reviews:404"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := l.Query(context.Background(), tt.f)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range rs {
				got = append(got, r.Destination.Service+":"+itoa(r.Status))
			}
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestRecordFields(t *testing.T) {
	now := t0
	l := newLog(Config{}, &now)
	c := call("reviews", 503, "UF,URX", t0)
	c.TLS = model.TLSMutual
	_ = l.ConsumeCalls(context.Background(), []model.Call{c})
	rs, _ := l.Query(context.Background(), Filter{})
	r := rs[0]
	if r.Source.Instance != "productpage-v1-1" || r.Destination.Service != "reviews" || r.Status != 503 ||
		r.GRPCStatus != nil || strings.Join(r.ResponseFlags, ",") != "UF,URX" || r.DurationMs != 25 ||
		r.RequestID != "req-reviews" || r.UpstreamCluster != "outbound|9080||reviews.bookinfo.svc.cluster.local" ||
		r.DetectPoint != "client" || r.Method != "GET" || r.Path != "/reviews/1" || r.TLS != "mtls" {
		t.Fatalf("record %+v", r)
	}
}
