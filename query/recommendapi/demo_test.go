package recommendapi

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/meshlens/meshlens/demo"
	"github.com/meshlens/meshlens/model"
	"github.com/meshlens/meshlens/pipeline"
	"github.com/meshlens/meshlens/processors/recommend"
	"github.com/meshlens/meshlens/receivers/envoyals"
)

// TestRealDemoOverALS plays the demo's Bookinfo traffic over real ALS gRPC
// into the envoyals receiver and the engine, with the demo clock running 60×
// fast so that 25 seconds cover both incidents (ratings slow at minutes
// 5–8 of each quarter hour, details 503 bursts at minute 2 of each ten).
func TestRealDemoOverALS(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: plays the demo for 25 s")
	}
	base := time.Date(2026, 11, 2, 12, 0, 0, 0, time.UTC)
	realStart := time.Now()
	clock := func() time.Time { return base.Add(time.Since(realStart) * 60) }
	eng, err := recommend.New(recommend.Config{TargetFalseTimeout: 0.01, Now: clock}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var calls int
	count := pipeline.CallConsumerFunc(func(ctx context.Context, c []model.Call) error {
		mu.Lock()
		calls += len(c)
		mu.Unlock()
		return eng.ConsumeCalls(ctx, c)
	})
	rcv := envoyals.New(envoyals.DefaultConfig(), count, pipeline.NewTelemetry(prometheus.NewRegistry()), nil)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	rcv.Register(srv)
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()

	g, err := demo.NewGenerator(demo.Config{ALSAddr: lis.Addr().String(), Rate: 400, Seed: 1, Clock: clock,
		FlushInterval: 50 * time.Millisecond}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	if err := g.Run(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // let the last streams close
	eng.Recompute(clock())
	mu.Lock()
	t.Logf("demo: %+v; %d calls reached the engine", g.Stats(), calls)
	mu.Unlock()

	mux := http.NewServeMux()
	New(eng, nil).Register(mux)
	hs := httptest.NewServer(mux)
	defer hs.Close()
	var all Response
	get(t, hs.URL+Base, &all)
	for _, r := range all.Recommendations {
		if r.Edge == nil || r.Edge.Endpoint == "" {
			t.Logf("%s %s: %s", r.Kind, r.ID, r.Explanation)
		}
	}
	// The details 503 bursts: a retry policy on 503 with a budget, with the
	// unavailable failures as evidence.
	var retry *recommend.Recommendation
	for i := range all.Recommendations {
		r := &all.Recommendations[i]
		if r.Kind == recommend.KindRetry && r.Edge.Endpoint == "" && strings.HasPrefix(r.Edge.Destination, "details") {
			retry = r
		}
	}
	if retry == nil || retry.Evidence.Failures["unavailable"] == 0 || !strings.Contains(retry.Recommended.RetryOn, "503") ||
		retry.Recommended.RetryBudgetPercent != 20 {
		t.Fatalf("details 503 bursts: no retry policy on 503 with a budget: %+v", retry)
	}
	// The slow ratings: its timeout covers the slowdown's tail.
	var rt *recommend.Recommendation
	for i := range all.Recommendations {
		r := &all.Recommendations[i]
		if r.Kind == recommend.KindTimeout && r.Edge.Endpoint == "" && strings.HasPrefix(r.Edge.Source, "reviews") &&
			strings.HasPrefix(r.Edge.Destination, "ratings") {
			rt = r
		}
	}
	if rt == nil {
		t.Fatal("no reviews→ratings timeout from the demo traffic")
	}
	if rt.Recommended.TimeoutMs < rt.Evidence.P50Ms*demo.RatingsSlowFactor/2 {
		t.Fatalf("ratings timeout %.0f ms does not cover the slowdown (median %.1f ms, slowdown ×%d)",
			rt.Recommended.TimeoutMs, rt.Evidence.P50Ms, demo.RatingsSlowFactor)
	}
}
