package promapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/prometheus/promql"
)

// maxPointsPerSeries is Prometheus' cap on the points of one range-query
// series (60 s resolution for a week, 1 h for a year).
const maxPointsPerSeries = 11000

// errTruncated is the warning Prometheus gives when limit cut an answer.
var errTruncated = errors.New("results truncated due to limit")

func (a *API) queryOpts(r *http.Request) (promql.QueryOpts, *Error) {
	var lookback time.Duration
	if v := r.FormValue("lookback_delta"); v != "" {
		d, err := ParseDuration(v)
		if err != nil {
			return nil, invalidParam("lookback_delta", err)
		}
		lookback = d
	}
	return promql.NewPrometheusQueryOpts(false, lookback, nil), nil
}

// requestContext bounds a query by the request's timeout parameter, which
// may only shorten QueryTimeout. The bound covers waiting for a slot too.
func (a *API) requestContext(r *http.Request) (context.Context, context.CancelFunc, *Error) {
	d := a.opts.QueryTimeout
	if v := r.FormValue("timeout"); v != "" {
		t, err := ParseDuration(v)
		if err != nil {
			return nil, nil, invalidParam("timeout", err)
		}
		if t <= 0 {
			return nil, nil, invalidParam("timeout", errors.New("timeout must be positive"))
		}
		d = min(d, t)
	}
	ctx, cancel := context.WithTimeout(r.Context(), d)
	return ctx, cancel, nil
}

func (a *API) query(r *http.Request) result {
	limit, perr := limitParam(r)
	if perr != nil {
		return fail(perr)
	}
	ts, perr := timeParam(r, "time", a.now())
	if perr != nil {
		return fail(perr)
	}
	opts, perr := a.queryOpts(r)
	if perr != nil {
		return fail(perr)
	}
	ctx, cancel, perr := a.requestContext(r)
	if perr != nil {
		return fail(perr)
	}
	defer cancel()
	if err := checkSubquerySteps(a.parser, r.FormValue("query"), 0); err != nil {
		return fail(badData(err))
	}
	q, err := a.engine.NewInstantQuery(ctx, a.queryable, opts, r.FormValue("query"), ts)
	if err != nil {
		return fail(constructionError(err))
	}
	return a.exec(ctx, q, limit)
}

func (a *API) queryRange(r *http.Request) result {
	limit, perr := limitParam(r)
	if perr != nil {
		return fail(perr)
	}
	start, err := ParseTime(r.FormValue("start"))
	if err != nil {
		return fail(invalidParam("start", err))
	}
	end, err := ParseTime(r.FormValue("end"))
	if err != nil {
		return fail(invalidParam("end", err))
	}
	if end.Before(start) {
		return fail(invalidParam("end", errors.New("end timestamp must not be before start time")))
	}
	step, err := ParseDuration(r.FormValue("step"))
	if err != nil {
		return fail(invalidParam("step", err))
	}
	if step <= 0 {
		return fail(invalidParam("step", errors.New("zero or negative query resolution step widths are not accepted. Try a positive integer")))
	}
	if end.Sub(start)/step > maxPointsPerSeries {
		return fail(badData(errors.New("exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)")))
	}
	opts, perr := a.queryOpts(r)
	if perr != nil {
		return fail(perr)
	}
	ctx, cancel, perr := a.requestContext(r)
	if perr != nil {
		return fail(perr)
	}
	defer cancel()
	if err := checkSubquerySteps(a.parser, r.FormValue("query"), end.Sub(start)); err != nil {
		return fail(badData(err))
	}
	q, err := a.engine.NewRangeQuery(ctx, a.queryable, opts, r.FormValue("query"), start, end, step)
	if err != nil {
		return fail(constructionError(err))
	}
	return a.exec(ctx, q, limit)
}

// exec runs q. The answer's data points into the query's memory, so the
// query is closed only after the answer is written.
func (a *API) exec(ctx context.Context, q promql.Query, limit int) result {
	select {
	case a.slots <- struct{}{}:
	case <-ctx.Done():
		q.Close()
		return fail(engineError(fmt.Errorf("waiting for a query slot: %w", ctx.Err())))
	}
	res := q.Exec(ctx)
	<-a.slots
	if res.Err != nil {
		q.Close()
		return result{err: engineError(res.Err), warnings: res.Warnings}
	}
	warnings := res.Warnings
	v := res.Value
	switch vv := v.(type) {
	case promql.Vector:
		if vv == nil {
			v = promql.Vector{}
		} else if limit > 0 && len(vv) > limit {
			v = vv[:limit]
			warnings = warnings.Add(errTruncated)
		}
	case promql.Matrix:
		if vv == nil {
			v = promql.Matrix{}
		} else if limit > 0 && len(vv) > limit {
			v = vv[:limit]
			warnings = warnings.Add(errTruncated)
		}
	}
	return result{
		data:     &queryData{ResultType: v.Type(), Result: v},
		warnings: warnings,
		finalize: q.Close,
	}
}

// constructionError classifies an error from building a query: a parse
// error is bad data, running out of time while waiting for a slot is not.
func constructionError(err error) *Error {
	var (
		eqt promql.ErrQueryTimeout
		eqc promql.ErrQueryCanceled
	)
	if errors.As(err, &eqt) || errors.As(err, &eqc) {
		return engineError(err)
	}
	return invalidParam("query", err)
}

func (a *API) formatQuery(r *http.Request) result {
	expr, err := a.parser.ParseExpr(r.FormValue("query"))
	if err != nil {
		return fail(invalidParam("query", err))
	}
	return result{data: expr.Pretty(0)}
}

func (a *API) queryExemplars(r *http.Request) result {
	start, perr := timeParam(r, "start", minTime)
	if perr != nil {
		return fail(perr)
	}
	end, perr := timeParam(r, "end", maxTime)
	if perr != nil {
		return fail(perr)
	}
	if end.Before(start) {
		return fail(badData(errors.New("end timestamp must not be before start timestamp")))
	}
	if _, err := a.parser.ParseExpr(r.FormValue("query")); err != nil {
		return fail(badData(err))
	}
	// meshlens stores no exemplars; traces are linked through the trace APIs.
	return result{data: []struct{}{}}
}
