package downsample

import (
	"context"
	"io"
	"log/slog"
	"math"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
)

// fill writes three days of 10 s samples of two counters with a varying
// rate, ending at end.
func fill(t *testing.T, db *tsdb.DB, end time.Time) {
	t.Helper()
	a := labels.FromStrings("__name__", "meshlens_service_calls_total", "service", "reviews")
	b := labels.FromStrings("__name__", "meshlens_service_latency_milliseconds_bucket", "service", "reviews", "le", "100")
	start := end.Add(-72 * time.Hour)
	va, vb := 0.0, 0.0
	app := db.Appender(context.Background())
	n := 0
	for ts := start; !ts.After(end); ts = ts.Add(10 * time.Second) {
		// A diurnal rate between 5 and 15 per second.
		rate := 10 + 5*math.Sin(float64(ts.Unix())/86400*2*math.Pi)
		va += rate * 10
		vb += rate * 7
		if _, err := app.Append(0, a, ts.UnixMilli(), va); err != nil {
			t.Fatal(err)
		}
		if _, err := app.Append(0, b, ts.UnixMilli(), vb); err != nil {
			t.Fatal(err)
		}
		if n++; n%5000 == 0 {
			if err := app.Commit(); err != nil {
				t.Fatal(err)
			}
			app = db.Appender(context.Background())
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
}

func rangeQuery(t *testing.T, q storage.Queryable, expr string, start, end time.Time, step time.Duration) promql.Matrix {
	t.Helper()
	eng := promql.NewEngine(promql.EngineOpts{MaxSamples: 1e8, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	qry, err := eng.NewRangeQuery(context.Background(), q, nil, expr, start, end, step)
	if err != nil {
		t.Fatal(err)
	}
	res := qry.Exec(context.Background())
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	m, err := res.Matrix()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestDownsampledAnswersAgreeWithRaw(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	opts := tsdb.DefaultOptions()
	opts.RetentionDuration = (30 * 24 * time.Hour).Milliseconds()
	raw, err := tsdb.Open(t.TempDir(), logger, nil, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	now := time.Now().Truncate(time.Hour)
	fill(t, raw, now)

	cfg := DefaultConfig()
	cfg.Delay = 0
	// Pretend raw samples are kept one day only, so older ranges must come
	// from the 1-minute and 1-hour levels.
	ds, err := Open(cfg, t.TempDir(), raw, 24*time.Hour, logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ds.Close()
	ds.now = func() time.Time { return now }
	for i := 0; i < 10; i++ { // catch up the backlog in bounded passes
		if err := ds.Compact(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if ds.levels[0].done != now.UnixMilli() || ds.levels[1].done != now.UnixMilli() {
		t.Fatalf("levels done at %d/%d, want %d", ds.levels[0].done, ds.levels[1].done, now.UnixMilli())
	}

	cases := []struct {
		expr string
		step time.Duration
		tol  float64
	}{
		{`sum(rate(meshlens_service_calls_total[1h]))`, time.Hour, 0.01},
		{`sum(increase(meshlens_service_latency_milliseconds_bucket[6h]))`, time.Hour, 0.01},
		{`sum(rate(meshlens_service_calls_total[10m]))`, 30 * time.Minute, 0.02},
	}
	start, end := now.Add(-70*time.Hour), now
	for _, c := range cases {
		want := rangeQuery(t, raw, c.expr, start, end, c.step)
		got := rangeQuery(t, ds, c.expr, start, end, c.step)
		if len(want) != 1 || len(got) != 1 {
			t.Fatalf("%s: raw %d series, downsampled %d", c.expr, len(want), len(got))
		}
		wp := map[int64]float64{}
		for _, p := range want[0].Floats {
			wp[p.T] = p.F
		}
		checked := 0
		for _, p := range got[0].Floats {
			w, ok := wp[p.T]
			if !ok {
				continue
			}
			checked++
			if rel := math.Abs(p.F-w) / w; rel > c.tol {
				t.Errorf("%s at %s: downsampled %.4f vs raw %.4f (%.2f%% off, allowed %.0f%%)",
					c.expr, time.UnixMilli(p.T).Sub(now), p.F, w, rel*100, c.tol*100)
			}
		}
		if checked < len(want[0].Floats)*9/10 {
			t.Errorf("%s: only %d of %d raw points have a downsampled answer", c.expr, checked, len(want[0].Floats))
		}
	}
	// Older than the raw retention, the store really serves the levels:
	// one sample a minute two days ago (not the raw six), one an hour ten
	// days ago, and raw samples within the last day.
	for _, c := range []struct {
		ago  time.Duration
		want int
	}{{48 * time.Hour, 60}, {12 * time.Hour, 360}} {
		if got := countSamples(t, ds, now.Add(-c.ago), now.Add(-c.ago+time.Hour)); got != c.want {
			t.Errorf("an hour %s ago: store serves %d samples, want %d", c.ago, got, c.want)
		}
	}
}

func countSamples(t *testing.T, q storage.Queryable, from, to time.Time) int {
	t.Helper()
	qr, err := q.Querier(from.UnixMilli(), to.UnixMilli()-1)
	if err != nil {
		t.Fatal(err)
	}
	defer qr.Close()
	set := qr.Select(context.Background(), true, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "meshlens_service_calls_total"))
	count := 0
	for set.Next() {
		it := set.At().Iterator(nil)
		for it.Next() != 0 {
			count++
		}
	}
	return count
}

// TestFreshStoreDownsamplesAtOnce: with only minutes of raw data, the first
// pass writes the closed windows instead of walking the levels' whole
// retention in one-day passes.
func TestFreshStoreDownsamplesAtOnce(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	raw, err := tsdb.Open(t.TempDir(), logger, nil, tsdb.DefaultOptions(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	now := time.Now().Truncate(time.Minute)
	a := labels.FromStrings("__name__", "meshlens_service_calls_total", "service", "reviews")
	app := raw.Appender(context.Background())
	for i := 10; i >= 0; i-- {
		if _, err := app.Append(0, a, now.Add(-time.Duration(i)*time.Minute).UnixMilli(), float64(100-i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Delay = 0
	ds, err := Open(cfg, t.TempDir(), raw, 24*time.Hour, logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ds.Close()
	ds.now = func() time.Time { return now }
	if err := ds.Compact(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := ds.levels[0].done; got != now.UnixMilli() {
		t.Fatalf("after one pass the 1-minute level is done up to %s, want %s", time.UnixMilli(got).Sub(now), time.Duration(0))
	}
	if n := testutil.ToFloat64(ds.written); n < 10 {
		t.Errorf("first pass wrote %v samples, want the 10 closed windows", n)
	}
}

func TestValidate(t *testing.T) {
	bad := Config{Levels: []Level{{Resolution: time.Hour, Retention: 30 * 24 * time.Hour}, {Resolution: time.Minute, Retention: 7 * 24 * time.Hour}}}
	if err := bad.Validate(); err == nil {
		t.Error("levels that get finer were accepted")
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Error(err)
	}
}
