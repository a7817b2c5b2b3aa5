package security

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
)

// ErrTooManySeries is the error a query gets when it touches more series
// than allowed.
type ErrTooManySeries struct{ Max int }

func (e ErrTooManySeries) Error() string {
	return fmt.Sprintf("query touches more than %d series (query.max_series); narrow the selectors or aggregate over a shorter range", e.Max)
}

// LimitSeries returns q with every Querier capped at max series across all
// its Selects (one PromQL query uses one Querier). Past the cap the series
// set fails with ErrTooManySeries, which PromQL and the API report as the
// query's error. max <= 0 means no cap.
func LimitSeries(q storage.Queryable, max int) storage.Queryable {
	if max <= 0 {
		return q
	}
	return limitedQueryable{q: q, max: max}
}

type limitedQueryable struct {
	q   storage.Queryable
	max int
}

func (l limitedQueryable) Querier(mint, maxt int64) (storage.Querier, error) {
	q, err := l.q.Querier(mint, maxt)
	if err != nil {
		return nil, err
	}
	return &limitedQuerier{Querier: q, max: int64(l.max)}, nil
}

type limitedQuerier struct {
	storage.Querier
	max  int64
	seen atomic.Int64
}

func (q *limitedQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, matchers ...*labels.Matcher) storage.SeriesSet {
	return &limitedSet{SeriesSet: q.Querier.Select(ctx, sortSeries, hints, matchers...), q: q}
}

type limitedSet struct {
	storage.SeriesSet
	q   *limitedQuerier
	err error
}

func (s *limitedSet) Next() bool {
	if s.err != nil || !s.SeriesSet.Next() {
		return false
	}
	if s.q.seen.Add(1) > s.q.max {
		s.err = ErrTooManySeries{Max: int(s.q.max)}
		return false
	}
	return true
}

func (s *limitedSet) Err() error {
	if s.err != nil {
		return s.err
	}
	return s.SeriesSet.Err()
}
