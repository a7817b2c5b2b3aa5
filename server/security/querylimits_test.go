package security

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/tsdb"
)

func TestLimitSeriesFailsTheQueryClearly(t *testing.T) {
	db, err := tsdb.Open(t.TempDir(), nil, nil, tsdb.DefaultOptions(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Now()
	app := db.Appender(context.Background())
	for i := 0; i < 10; i++ {
		if _, err := app.Append(0, labels.FromStrings("__name__", "m", "i", fmt.Sprint(i)), now.UnixMilli(), 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	eng := promql.NewEngine(promql.EngineOpts{MaxSamples: 1e6, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	run := func(max int, q string) (promql.Vector, error) {
		qry, err := eng.NewInstantQuery(context.Background(), LimitSeries(db, max), nil, q, now)
		if err != nil {
			t.Fatal(err)
		}
		res := qry.Exec(context.Background())
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Vector()
	}
	if v, err := run(10, `sum(m)`); err != nil || len(v) != 1 || v[0].F != 10 {
		t.Fatalf("at the cap: %v %v, want sum 10", v, err)
	}
	_, err = run(9, `sum(m)`)
	var tooMany ErrTooManySeries
	if !errors.As(err, &tooMany) {
		t.Fatalf("over the cap: %v, want ErrTooManySeries", err)
	}
	if v, err := run(9, `m{i="3"}`); err != nil || len(v) != 1 {
		t.Fatalf("a narrow query under the cap: %v %v", v, err)
	}
	if v, err := run(0, `sum(m)`); err != nil || v[0].F != 10 {
		t.Fatalf("no cap: %v %v", v, err)
	}
}
