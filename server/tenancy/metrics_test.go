package tenancy

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"

	"github.com/meshlens/meshlens/storage/metricstore"
)

func TestMetricsIsolation(t *testing.T) {
	s, err := metricstore.Open(metricstore.Config{Path: t.TempDir(), Retention: 24 * time.Hour}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ts := time.Now().Truncate(time.Second)
	app := Appendable(s)
	write := func(ctx context.Context, ls labels.Labels, v float64) error {
		a := app.Appender(ctx)
		if _, err := a.Append(0, ls, ts.UnixMilli(), v); err != nil {
			_ = a.Rollback()
			return err
		}
		return a.Commit()
	}
	ctxA := NewContext(context.Background(), "team-a")
	ctxB := NewContext(context.Background(), "team-b")
	if err := write(ctxA, labels.FromStrings("__name__", "envoy_up", "cluster", "x"), 1); err != nil {
		t.Fatal(err)
	}
	// team-a claims team-b's label: the appender overwrites it.
	if err := write(ctxA, labels.FromStrings("__name__", "envoy_up", "cluster", "spoof", "tenant", "team-b"), 2); err != nil {
		t.Fatal(err)
	}
	if err := write(ctxB, labels.FromStrings("__name__", "envoy_up", "cluster", "y"), 3); err != nil {
		t.Fatal(err)
	}
	if err := write(context.Background(), labels.FromStrings("__name__", "envoy_up", "cluster", "z"), 4); err == nil {
		t.Fatal("append without a tenant accepted")
	}

	q := Queryable(s)
	eng := promql.NewEngine(promql.EngineOpts{MaxSamples: 1e6, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	sum := func(ctx context.Context, expr string) (float64, error) {
		qry, err := eng.NewInstantQuery(ctx, q, nil, expr, ts)
		if err != nil {
			return 0, err
		}
		res := qry.Exec(ctx)
		if res.Err != nil {
			return 0, res.Err
		}
		v, err := res.Vector()
		if err != nil || len(v) == 0 {
			return 0, err
		}
		return v[0].F, nil
	}
	for _, tc := range []struct {
		ctx  context.Context
		expr string
		want float64
	}{
		{ctxA, `sum(envoy_up)`, 3},
		{ctxB, `sum(envoy_up)`, 3},
		{ctxA, `count(envoy_up)`, 2},
		{ctxB, `count(envoy_up)`, 1},
		{ctxA, `count(envoy_up{tenant="team-b"})`, 0}, // asking for another tenant gets nothing
		{ctxA, `count({__name__=~".+"})`, 2},
	} {
		got, err := sum(tc.ctx, tc.expr)
		if err != nil || got != tc.want {
			id, _ := FromContext(tc.ctx)
			t.Errorf("%s as %s = %v, %v; want %v", tc.expr, id, got, err, tc.want)
		}
	}
	if _, err := sum(context.Background(), `sum(envoy_up)`); err == nil {
		t.Error("query without a tenant answered")
	}

	qr, err := q.Querier(0, ts.UnixMilli()+1)
	if err != nil {
		t.Fatal(err)
	}
	defer qr.Close()
	vals, _, err := qr.LabelValues(ctxB, "cluster", nil)
	if err != nil || !slices.Equal(vals, []string{"y"}) {
		t.Errorf("label values of cluster for team-b: %v, %v; want [y]", vals, err)
	}
	vals, _, err = qr.LabelValues(ctxA, "tenant", nil)
	if err != nil || !slices.Equal(vals, []string{"team-a"}) {
		t.Errorf("label values of tenant for team-a: %v, %v; want [team-a]", vals, err)
	}
	names, _, err := qr.LabelNames(ctxA, nil)
	if err != nil || !slices.Equal(names, []string{"__name__", "cluster", "tenant"}) {
		t.Errorf("label names for team-a: %v, %v", names, err)
	}
	if _, _, err := qr.LabelValues(context.Background(), "cluster", nil); err == nil {
		t.Error("label values without a tenant answered")
	}
}
