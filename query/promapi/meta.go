package promapi

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/timestamp"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"
)

// effectiveLimit is the tighter of the request's limit and MaxSeries.
func (a *API) effectiveLimit(r *http.Request) (int, *Error) {
	limit, perr := limitParam(r)
	if perr != nil {
		return 0, perr
	}
	if limit == 0 || limit > a.opts.MaxSeries {
		limit = a.opts.MaxSeries
	}
	return limit, nil
}

type rangeParams struct {
	start, end int64
	limit      int
	matchers   [][]*labels.Matcher
}

func (a *API) metaParams(r *http.Request) (rangeParams, *Error) {
	var p rangeParams
	limit, perr := a.effectiveLimit(r)
	if perr != nil {
		return p, perr
	}
	start, perr := timeParam(r, "start", minTime)
	if perr != nil {
		return p, perr
	}
	end, perr := timeParam(r, "end", maxTime)
	if perr != nil {
		return p, perr
	}
	sets, err := matchersParam(a.parser, r.Form["match[]"])
	if err != nil {
		return p, invalidParam("match[]", err)
	}
	return rangeParams{start: timestamp.FromTime(start), end: timestamp.FromTime(end), limit: limit, matchers: sets}, nil
}

func (a *API) series(r *http.Request) result {
	if len(r.Form["match[]"]) == 0 {
		return fail(badData(errors.New("no match[] parameter provided")))
	}
	p, perr := a.metaParams(r)
	if perr != nil {
		return fail(perr)
	}
	ctx := r.Context()
	q, err := a.queryable.Querier(p.start, p.end)
	if err != nil {
		return fail(engineError(err))
	}
	hints := &storage.SelectHints{Start: p.start, End: p.end, Func: "series", Limit: p.limit + 1}
	var set storage.SeriesSet
	if len(p.matchers) > 1 {
		sets := make([]storage.SeriesSet, 0, len(p.matchers))
		for _, ms := range p.matchers {
			// Merging needs sorted sets.
			sets = append(sets, q.Select(ctx, true, hints, ms...))
		}
		set = storage.NewMergeSeriesSet(sets, 0, storage.ChainedSeriesMerge)
	} else {
		set = q.Select(ctx, false, hints, p.matchers[0]...)
	}
	out := []labels.Labels{}
	var warnings annotations.Annotations
	for set.Next() {
		if len(out)%128 == 0 {
			if err := ctx.Err(); err != nil {
				return result{err: engineError(err), finalize: func() { q.Close() }}
			}
		}
		if len(out) == p.limit {
			warnings = warnings.Add(errTruncated)
			break
		}
		out = append(out, set.At().Labels())
	}
	warnings.Merge(set.Warnings())
	if err := set.Err(); err != nil {
		return result{err: engineError(err), warnings: warnings, finalize: func() { q.Close() }}
	}
	// Labels may point into the querier's memory until it is closed.
	return result{data: out, warnings: warnings, finalize: func() { q.Close() }}
}

func (a *API) labelNames(r *http.Request) result {
	p, perr := a.metaParams(r)
	if perr != nil {
		return fail(perr)
	}
	q, err := a.queryable.Querier(p.start, p.end)
	if err != nil {
		return fail(engineError(err))
	}
	defer q.Close()
	hints := &storage.LabelHints{Limit: p.limit + 1}
	names, warnings, err := collectStrings(p.matchers, func(ms []*labels.Matcher) ([]string, annotations.Annotations, error) {
		return q.LabelNames(r.Context(), hints, ms...)
	})
	if err != nil {
		return result{err: engineError(err), warnings: warnings}
	}
	if len(names) > p.limit {
		names = names[:p.limit]
		warnings = warnings.Add(errTruncated)
	}
	return result{data: names, warnings: warnings}
}

func (a *API) labelValues(r *http.Request) result {
	name := r.PathValue("name")
	if len(name) > 3 && name[:3] == "U__" {
		name = model.UnescapeName(name, model.ValueEncodingEscaping)
	}
	if !model.UTF8Validation.IsValidLabelName(name) {
		return fail(badData(fmt.Errorf("invalid label name: %q", name)))
	}
	p, perr := a.metaParams(r)
	if perr != nil {
		return fail(perr)
	}
	q, err := a.queryable.Querier(p.start, p.end)
	if err != nil {
		return fail(engineError(err))
	}
	defer q.Close()
	hints := &storage.LabelHints{Limit: p.limit + 1}
	vals, warnings, err := collectStrings(p.matchers, func(ms []*labels.Matcher) ([]string, annotations.Annotations, error) {
		return q.LabelValues(r.Context(), name, hints, ms...)
	})
	if err != nil {
		return result{err: engineError(err), warnings: warnings}
	}
	if len(vals) > p.limit {
		vals = vals[:p.limit]
		warnings = warnings.Add(errTruncated)
	}
	return result{data: vals, warnings: warnings}
}

// collectStrings unions the answers of get for each matcher set (or once
// with no matchers), sorted and copied out of the querier's memory.
func collectStrings(sets [][]*labels.Matcher, get func([]*labels.Matcher) ([]string, annotations.Annotations, error)) ([]string, annotations.Annotations, error) {
	var warnings annotations.Annotations
	if len(sets) == 0 {
		sets = [][]*labels.Matcher{nil}
	}
	seen := map[string]struct{}{}
	out := []string{}
	for _, ms := range sets {
		vals, w, err := get(ms)
		warnings.Merge(w)
		if err != nil {
			return nil, warnings, err
		}
		for _, v := range vals {
			if _, ok := seen[v]; ok {
				continue
			}
			v = string([]byte(v))
			seen[v] = struct{}{}
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return out, warnings, nil
}

func (a *API) metadata(r *http.Request) result {
	limit, limitPerMetric := -1, -1
	if s := r.FormValue("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return fail(badData(errors.New("limit must be a number")))
		}
		limit = n
	}
	if s := r.FormValue("limit_per_metric"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return fail(badData(errors.New("limit_per_metric must be a number")))
		}
		limitPerMetric = n
	}
	out := map[string][]MetadataEntry{}
	if a.opts.Metadata == nil {
		return result{data: out}
	}
	all := a.opts.Metadata()
	names := make([]string, 0, len(all))
	if m := r.FormValue("metric"); m != "" {
		if _, ok := all[m]; ok {
			names = append(names, m)
		}
	} else {
		for n := range all {
			names = append(names, n)
		}
		slices.Sort(names)
	}
	for _, n := range names {
		if limit >= 0 && len(out) >= limit {
			break
		}
		entries := all[n]
		if limitPerMetric > 0 && len(entries) > limitPerMetric {
			entries = entries[:limitPerMetric]
		}
		out[n] = entries
	}
	return result{data: out}
}

func (a *API) buildInfo(*http.Request) result {
	bi := a.opts.BuildInfo
	if bi.Version == "" {
		bi.Version = engineVersion()
	}
	if bi.GoVersion == "" {
		bi.GoVersion = runtime.Version()
	}
	return result{data: bi}
}

// engineVersion is the Prometheus release whose PromQL engine is linked in.
// Clients such as Grafana read buildinfo's version as a Prometheus version
// to decide which API features to use, so it is the sensible default.
// Prometheus 3.x publishes its Go module as v0.3MM.P for release 3.MM.P.
func engineVersion() string {
	const fallback = "3.0.0"
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return fallback
	}
	for _, d := range bi.Deps {
		if d.Path != "github.com/prometheus/prometheus" {
			continue
		}
		var minor, patch int
		if _, err := fmt.Sscanf(d.Version, "v0.%d.%d", &minor, &patch); err == nil && minor >= 300 {
			return fmt.Sprintf("%d.%d.%d", minor/100, minor%100, patch)
		}
	}
	return fallback
}

func (a *API) config(*http.Request) result {
	cfg := ""
	if a.opts.ConfigYAML != nil {
		cfg = a.opts.ConfigYAML()
	}
	return result{data: struct {
		YAML string `json:"yaml"`
	}{cfg}}
}

func (a *API) flags(*http.Request) result {
	f := map[string]string{}
	if a.opts.Flags != nil {
		if got := a.opts.Flags(); got != nil {
			f = got
		}
	}
	return result{data: f}
}

func (a *API) runtimeInfo(*http.Request) result {
	if a.opts.RuntimeInfo != nil {
		return result{data: a.opts.RuntimeInfo()}
	}
	info := RuntimeInfo{
		StartTime:           a.startTime,
		ServerTime:          a.now(),
		ReloadConfigSuccess: true,
		LastConfigTime:      a.startTime,
		GoroutineCount:      runtime.NumGoroutine(),
		GOMAXPROCS:          runtime.GOMAXPROCS(0),
		GOMEMLIMIT:          debug.SetMemoryLimit(-1),
		GOGC:                os.Getenv("GOGC"),
		GODEBUG:             os.Getenv("GODEBUG"),
	}
	info.CWD, _ = os.Getwd()
	info.Hostname, _ = os.Hostname()
	return result{data: info}
}

// The endpoints below answer Prometheus' empty shapes: meshlens scrapes
// nothing and evaluates no rules, but Grafana probes them.

func (a *API) targets(*http.Request) result {
	return result{data: map[string]any{
		"activeTargets":       []struct{}{},
		"droppedTargets":      []struct{}{},
		"droppedTargetCounts": map[string]int{},
	}}
}

func (a *API) emptyList(*http.Request) result { return result{data: []struct{}{}} }

func (a *API) rules(*http.Request) result {
	return result{data: map[string]any{"groups": []struct{}{}}}
}

func (a *API) alerts(*http.Request) result {
	return result{data: map[string]any{"alerts": []struct{}{}}}
}

func (a *API) alertmanagers(*http.Request) result {
	return result{data: map[string]any{
		"activeAlertmanagers":  []struct{}{},
		"droppedAlertmanagers": []struct{}{},
	}}
}
