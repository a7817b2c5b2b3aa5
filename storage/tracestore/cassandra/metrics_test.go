package cassandra

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/meshlens/meshlens/storage/tracestore"
	"github.com/meshlens/meshlens/storage/tracestore/tracestoretest"
)

func TestSelfMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	f := newFakeSession()
	s, err := New(f, Config{Keyspace: "ks", Registerer: reg, MaxInflightBatches: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	td := tracestoretest.Fixture(tracestoretest.Base())
	if err := s.WriteTraces(ctx, td); err != nil {
		t.Fatal(err)
	}
	f.failNext = true
	if err := s.WriteTraces(ctx, td); err == nil {
		t.Fatal("failure not reported")
	}
	if _, err := s.FindTraceIDs(ctx, tracestore.Query{Service: "frontend"}); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(s.m.Spans); got != float64(td.SpanCount()) {
		t.Errorf("spans written = %v, want %d", got, td.SpanCount())
	}
	if got := testutil.ToFloat64(s.m.Failed); got != 1 {
		t.Errorf("write failures = %v", got)
	}
	if got := testutil.ToFloat64(s.m.statements.WithLabelValues("batch", "error")); got != 1 {
		t.Errorf("failed batches = %v", got)
	}
	if got := testutil.ToFloat64(s.m.statements.WithLabelValues("batch", "ok")); got != float64(f.Batches-1) {
		t.Errorf("ok batches = %v, fake saw %d", got, f.Batches-1)
	}
	if got := testutil.ToFloat64(s.m.statements.WithLabelValues("select", "ok")); got != float64(f.Selects) || got == 0 {
		t.Errorf("selects = %v, fake saw %d", got, f.Selects)
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n < 7 {
		t.Errorf("gathered %d series, %v", n, err)
	}
}
