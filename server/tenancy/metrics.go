package tenancy

import (
	"context"

	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"

	"github.com/meshlens/meshlens/model"
)

// Queryable confines every read of q to the tenant of the read's context,
// as prom-label-proxy does: each Select, LabelNames and LabelValues gets a
// tenant="<id>" matcher, so PromQL, /series, /labels, label values and
// /federate all see only that tenant's series. A context without a tenant
// reads nothing and gets an error.
func Queryable(q storage.Queryable) storage.Queryable { return tenantQueryable{q: q} }

type tenantQueryable struct{ q storage.Queryable }

func (t tenantQueryable) Querier(mint, maxt int64) (storage.Querier, error) {
	q, err := t.q.Querier(mint, maxt)
	if err != nil {
		return nil, err
	}
	return tenantQuerier{q: q}, nil
}

type tenantQuerier struct{ q storage.Querier }

// withTenant appends the tenant matcher. A client matcher on the tenant
// label stays: ANDed with this one, it can only narrow the result.
func withTenant(ctx context.Context, ms []*labels.Matcher) ([]*labels.Matcher, error) {
	id, err := mustFromContext(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]*labels.Matcher, len(ms), len(ms)+1)
	copy(out, ms)
	return append(out, labels.MustNewMatcher(labels.MatchEqual, model.TenantLabel, id)), nil
}

func (t tenantQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	ms, err := withTenant(ctx, ms)
	if err != nil {
		return storage.ErrSeriesSet(err)
	}
	return t.q.Select(ctx, sortSeries, hints, ms...)
}

func (t tenantQuerier) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	ms, err := withTenant(ctx, ms)
	if err != nil {
		return nil, nil, err
	}
	return t.q.LabelValues(ctx, name, hints, ms...)
}

func (t tenantQuerier) LabelNames(ctx context.Context, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	ms, err := withTenant(ctx, ms)
	if err != nil {
		return nil, nil, err
	}
	return t.q.LabelNames(ctx, hints, ms...)
}

func (t tenantQuerier) Close() error { return t.q.Close() }

// Appendable stamps the tenant of the appender's context on every series
// appended through app (the Envoy Metrics Service receiver writes samples
// straight to storage). The label overwrites one the client sent. Without a
// tenant in the context every append fails.
func Appendable(app storage.Appendable) storage.Appendable { return tenantAppendable{app: app} }

type tenantAppendable struct{ app storage.Appendable }

func (t tenantAppendable) Appender(ctx context.Context) storage.Appender {
	id, err := mustFromContext(ctx)
	return &tenantAppender{Appender: t.app.Appender(ctx), id: id, err: err}
}

// tenantAppender relabels every method that names a series; the embedded
// Appender keeps Commit, Rollback and SetOptions.
type tenantAppender struct {
	storage.Appender
	id  string
	err error
	b   labels.Builder
}

func (a *tenantAppender) relabel(l labels.Labels) (labels.Labels, error) {
	if a.err != nil {
		return labels.EmptyLabels(), a.err
	}
	a.b.Reset(l)
	a.b.Set(model.TenantLabel, a.id)
	return a.b.Labels(), nil
}

func (a *tenantAppender) Append(ref storage.SeriesRef, l labels.Labels, t int64, v float64) (storage.SeriesRef, error) {
	l, err := a.relabel(l)
	if err != nil {
		return 0, err
	}
	return a.Appender.Append(ref, l, t, v)
}

func (a *tenantAppender) AppendExemplar(ref storage.SeriesRef, l labels.Labels, e exemplar.Exemplar) (storage.SeriesRef, error) {
	l, err := a.relabel(l)
	if err != nil {
		return 0, err
	}
	return a.Appender.AppendExemplar(ref, l, e)
}

func (a *tenantAppender) AppendHistogram(ref storage.SeriesRef, l labels.Labels, t int64, h *histogram.Histogram, fh *histogram.FloatHistogram) (storage.SeriesRef, error) {
	l, err := a.relabel(l)
	if err != nil {
		return 0, err
	}
	return a.Appender.AppendHistogram(ref, l, t, h, fh)
}

func (a *tenantAppender) AppendHistogramSTZeroSample(ref storage.SeriesRef, l labels.Labels, t, st int64, h *histogram.Histogram, fh *histogram.FloatHistogram) (storage.SeriesRef, error) {
	l, err := a.relabel(l)
	if err != nil {
		return 0, err
	}
	return a.Appender.AppendHistogramSTZeroSample(ref, l, t, st, h, fh)
}

func (a *tenantAppender) UpdateMetadata(ref storage.SeriesRef, l labels.Labels, m metadata.Metadata) (storage.SeriesRef, error) {
	l, err := a.relabel(l)
	if err != nil {
		return 0, err
	}
	return a.Appender.UpdateMetadata(ref, l, m)
}

func (a *tenantAppender) AppendSTZeroSample(ref storage.SeriesRef, l labels.Labels, t, st int64) (storage.SeriesRef, error) {
	l, err := a.relabel(l)
	if err != nil {
		return 0, err
	}
	return a.Appender.AppendSTZeroSample(ref, l, t, st)
}
