package tracestore

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestSearchLimitsCheck(t *testing.T) {
	now := time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)
	l := SearchLimits{MaxRange: 24 * time.Hour, MaxResults: 100, Retention: 72 * time.Hour,
		RangeKey: "query.traces.max_search_range", ResultsKey: "query.traces.max_results"}
	cases := []struct {
		name    string
		q       Query
		wantErr string // substring; "" = accepted
		wantMin time.Time
	}{
		{"within limits", Query{Limit: 100, StartMin: now.Add(-24 * time.Hour), StartMax: now}, "", now.Add(-24 * time.Hour)},
		{"too many results", Query{Limit: 101, StartMin: now.Add(-time.Hour), StartMax: now},
			"limit 101 exceeds query.traces.max_results (100 traces per search)", time.Time{}},
		{"range too long", Query{Limit: 10, StartMin: now.Add(-25 * time.Hour), StartMax: now},
			"time range 25h0m0s exceeds query.traces.max_search_range (24h0m0s)", time.Time{}},
		{"unbounded start", Query{Limit: 10, StartMax: now}, "unbounded time range exceeds query.traces.max_search_range", time.Time{}},
		// 52h asked, but the 28h older than the retention hold no spans:
		// they are clipped before the range is checked.
		{"clipped to retention then checked", Query{Limit: 10, StartMin: now.Add(-100 * time.Hour), StartMax: now.Add(-48 * time.Hour)},
			"", now.Add(-72 * time.Hour)},
		{"window wholly older than retention", Query{Limit: 10, StartMin: now.Add(-200 * time.Hour), StartMax: now.Add(-190 * time.Hour)},
			"", now.Add(-72 * time.Hour)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := l.Check(c.q, now)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, c.wantErr)
				}
				if !errors.Is(err, ErrLimit) || !errors.Is(err, ErrBadQuery) || HTTPStatus(err) != 400 {
					t.Fatalf("err %v is not an ErrLimit/ErrBadQuery answered 400", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !got.StartMin.Equal(c.wantMin) || got.StartMax.Before(got.StartMin) {
				t.Fatalf("window = [%v, %v], want start %v and end not before it", got.StartMin, got.StartMax, c.wantMin)
			}
		})
	}
}

func TestSearchLimitsTimeout(t *testing.T) {
	l := SearchLimits{Timeout: 10 * time.Millisecond, TimeoutKey: "query.traces.timeout"}
	ctx, cancel := l.Context(context.Background())
	defer cancel()
	<-ctx.Done()
	err := l.TimeoutError(ctx, ctx.Err())
	if !errors.Is(err, ErrSearchTimeout) || !strings.Contains(err.Error(), "query.traces.timeout (10ms)") {
		t.Fatalf("err = %v, want the search timeout naming query.traces.timeout", err)
	}
	if HTTPStatus(err) != 503 {
		t.Fatalf("status = %d, want 503", HTTPStatus(err))
	}
	// A client that goes away is not reported as the server's timeout.
	parent, stop := context.WithCancel(context.Background())
	ctx2, cancel2 := l.Context(parent)
	defer cancel2()
	stop()
	if err := l.TimeoutError(ctx2, ctx2.Err()); errors.Is(err, ErrSearchTimeout) {
		t.Fatalf("cancellation reported as timeout: %v", err)
	}
}
