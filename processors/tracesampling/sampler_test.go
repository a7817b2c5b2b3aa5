package tracesampling

import (
	"context"
	"encoding/binary"
	"math"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/meshlens/meshlens/pipeline"
)

type spanSpec struct {
	trace uint64
	err   bool
	dur   time.Duration
}

func traces(service string, specs ...spanSpec) ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", service)
	spans := rs.ScopeSpans().AppendEmpty().Spans()
	for i, s := range specs {
		sp := spans.AppendEmpty()
		var tid [16]byte
		binary.BigEndian.PutUint64(tid[8:], s.trace)
		sp.SetTraceID(pcommon.TraceID(tid))
		sp.SetSpanID(pcommon.SpanID([8]byte{byte(i + 1)}))
		sp.SetStartTimestamp(1e18)
		sp.SetEndTimestamp(1e18 + pcommon.Timestamp(s.dur))
		if s.err {
			sp.Status().SetCode(ptrace.StatusCodeError)
		}
	}
	return td
}

type collect struct{ kept map[uint64]int }

func (c *collect) ConsumeTraces(_ context.Context, td ptrace.Traces) error {
	for i := 0; i < td.ResourceSpans().Len(); i++ {
		ss := td.ResourceSpans().At(i).ScopeSpans()
		for j := 0; j < ss.Len(); j++ {
			for k := 0; k < ss.At(j).Spans().Len(); k++ {
				tid := ss.At(j).Spans().At(k).TraceID()
				c.kept[binary.BigEndian.Uint64(tid[8:])]++
			}
		}
	}
	return nil
}

func TestProbabilisticConsistent(t *testing.T) {
	cfg := Config{Default: Policy{Percent: 10}, Services: map[string]Policy{"ratings": {Percent: 10}, "reviews": {Percent: 50}}}
	c := &collect{kept: map[uint64]int{}}
	s, err := New(cfg, c, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	const n = 20000
	var specs []spanSpec
	for i := uint64(1); i <= n; i++ {
		specs = append(specs, spanSpec{trace: i * 0x9e3779b97f4a7c15, dur: time.Millisecond})
	}
	for _, svc := range []string{"productpage", "ratings", "reviews"} {
		if err := s.ConsumeTraces(context.Background(), traces(svc, specs...)); err != nil {
			t.Fatal(err)
		}
	}
	var both, onlyReviews int
	for _, k := range c.kept {
		switch k {
		case 3:
			both++
		case 1:
			onlyReviews++
		default:
			// A trace kept at 10% must be kept by both 10% services and by
			// the 50% one: any other count breaks consistency.
			t.Fatalf("a trace was kept by %d services", k)
		}
	}
	if got := float64(both) / n; math.Abs(got-0.10) > 0.015 {
		t.Errorf("10%% policy kept %.3f", got)
	}
	if got := float64(both+onlyReviews) / n; math.Abs(got-0.50) > 0.02 {
		t.Errorf("50%% policy kept %.3f", got)
	}
}

func TestKeepErrorsAndSlow(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := &collect{kept: map[uint64]int{}}
	s, err := New(Config{Default: Policy{Percent: 0, KeepErrors: true, SlowThreshold: time.Second}, Services: map[string]Policy{"quiet": {Percent: 0}}}, c, reg)
	if err != nil {
		t.Fatal(err)
	}
	td := traces("reviews", spanSpec{trace: 1, dur: time.Millisecond}, spanSpec{trace: 2, err: true}, spanSpec{trace: 3, dur: 2 * time.Second})
	if err := s.ConsumeTraces(context.Background(), td); err != nil {
		t.Fatal(err)
	}
	if len(c.kept) != 2 || c.kept[2] != 1 || c.kept[3] != 1 {
		t.Errorf("kept %v, want traces 2 (error) and 3 (slow)", c.kept)
	}
	// A service whose policy does not keep errors loses them.
	called := false
	s2, _ := New(Config{Default: Policy{Percent: 0}}, pipeline.TraceConsumerFunc(func(context.Context, ptrace.Traces) error { called = true; return nil }), nil)
	s2.ConsumeTraces(context.Background(), traces("quiet", spanSpec{trace: 2, err: true}))
	if called {
		t.Error("next consumer called with nothing left")
	}
	for reason, want := range map[string]float64{ReasonError: 1, ReasonSlow: 1, ReasonDropped: 1} {
		if got := testutil.ToFloat64(s.spans.WithLabelValues("default", reason)); got != want {
			t.Errorf("%s: %v, want %v", reason, got, want)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, p := range []Policy{{Percent: -1}, {Percent: 101}, {Percent: math.NaN()}, {Percent: 5, SlowThreshold: -1}} {
		if _, err := New(Config{Default: p}, nil, nil); err == nil {
			t.Errorf("%+v accepted", p)
		}
	}
}

func BenchmarkSampler(b *testing.B) {
	s, _ := New(Config{Default: Policy{Percent: 10, KeepErrors: true, SlowThreshold: time.Second}}, pipeline.TraceConsumerFunc(func(context.Context, ptrace.Traces) error { return nil }), nil)
	specs := make([]spanSpec, 100)
	for i := range specs {
		specs[i] = spanSpec{trace: uint64(i) * 7919, dur: time.Millisecond}
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		td := traces("x", specs...)
		b.StartTimer()
		s.ConsumeTraces(context.Background(), td)
	}
}
