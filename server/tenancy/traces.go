package tenancy

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/meshlens/meshlens/model"
	"github.com/meshlens/meshlens/storage/tracestore"
)

// Reader confines every read of r to the tenant of the read's context,
// whatever the backend: searches get the tenant as a mandatory tag (the
// model.TenantAttribute ingest stamps on every resource), every trace
// returned is cut to the tenant's spans (another tenant may have sent spans
// with the same trace id), a trace with none is not found, and lists
// (services, operations, peers, tag values) keep only the entries the
// tenant has a span for.
//
// The lists cost one FindTraceIDs (limit 1) per entry of the backend's
// list not answered within the probe cache's TTLs, and see only the
// backend's search lookback, because the Reader contract has no tenant
// dimension; dependencies are linked from at most tracestore.MaxLimit of
// the tenant's traces in the window.
func Reader(r tracestore.Reader) tracestore.Reader {
	return tenantReader{r: r, cache: newProbeCache()}
}

type tenantReader struct {
	r     tracestore.Reader
	cache *probeCache
}

// own cuts t down to id's resources; nil when none is left.
func own(t *tracestore.Trace, id string) *tracestore.Trace {
	if t == nil {
		return nil
	}
	rss := t.Spans.ResourceSpans()
	keep := 0
	for i := 0; i < rss.Len(); i++ {
		if ownedBy(rss.At(i).Resource(), id) {
			keep++
		}
	}
	if keep == 0 {
		return nil
	}
	if keep == rss.Len() {
		return t
	}
	// Copy rather than edit: a backend may hand out a cached trace.
	td := ptrace.NewTraces()
	for i := 0; i < rss.Len(); i++ {
		if rs := rss.At(i); ownedBy(rs.Resource(), id) {
			rs.CopyTo(td.ResourceSpans().AppendEmpty())
		}
	}
	return &tracestore.Trace{ID: t.ID, Spans: td, Warnings: t.Warnings}
}

func ownedBy(res pcommon.Resource, id string) bool {
	v, ok := res.Attributes().Get(model.TenantAttribute)
	return ok && v.Type() == pcommon.ValueTypeStr && v.Str() == id
}

// tenantQuery adds the tenant tag to q. It reports false when q asks for
// another tenant's tag, which nothing of id's can match.
func tenantQuery(q tracestore.Query, id string) (tracestore.Query, bool) {
	if v, ok := q.Tags[model.TenantAttribute]; ok && v != id {
		return q, false
	}
	tags := make(map[string]string, len(q.Tags)+1)
	maps.Copy(tags, q.Tags)
	tags[model.TenantAttribute] = id
	q.Tags = tags
	return q, true
}

// has reports whether the tenant has a span matching q.
func (t tenantReader) has(ctx context.Context, q tracestore.Query, id string) (bool, error) {
	key := probeKey(id, q)
	if ok, found := t.cache.get(key); found {
		return ok, nil
	}
	q, ok := tenantQuery(q, id)
	if !ok {
		return false, nil
	}
	q.Limit = 1
	ids, err := t.r.FindTraceIDs(ctx, q)
	if err != nil {
		return false, err
	}
	t.cache.put(key, len(ids) > 0)
	return len(ids) > 0, nil
}

// filterList keeps the entries of in the tenant has spans for, probing up
// to probeWorkers at once; the order of in is kept.
func filterList[T any](ctx context.Context, t tenantReader, in []T, id string, query func(T) tracestore.Query) ([]T, error) {
	keep := make([]bool, len(in))
	errs := make([]error, len(in))
	sem := make(chan struct{}, probeWorkers)
	var wg sync.WaitGroup
	for i := range in {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			keep[i], errs[i] = t.has(ctx, query(in[i]), id)
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("tenant filter: %w", err)
	}
	out := in[:0:0]
	for i, v := range in {
		if errs[i] != nil {
			return nil, fmt.Errorf("tenant filter: %w", errs[i])
		}
		if keep[i] {
			out = append(out, v)
		}
	}
	return out, nil
}

func (t tenantReader) GetTrace(ctx context.Context, tid pcommon.TraceID) (*tracestore.Trace, error) {
	id, err := mustFromContext(ctx)
	if err != nil {
		return nil, err
	}
	tr, err := t.r.GetTrace(ctx, tid)
	if err != nil {
		return nil, err
	}
	if tr = own(tr, id); tr == nil {
		// Indistinguishable from an unknown id: another tenant's trace ids
		// are not confirmed either.
		return nil, tracestore.ErrTraceNotFound
	}
	return tr, nil
}

func (t tenantReader) GetServices(ctx context.Context) ([]string, error) {
	id, err := mustFromContext(ctx)
	if err != nil {
		return nil, err
	}
	all, err := t.r.GetServices(ctx)
	if err != nil {
		return nil, err
	}
	return filterList(ctx, t, all, id, func(s string) tracestore.Query { return tracestore.Query{Service: s} })
}

func (t tenantReader) GetOperations(ctx context.Context, service, spanKind string) ([]tracestore.Operation, error) {
	id, err := mustFromContext(ctx)
	if err != nil {
		return nil, err
	}
	all, err := t.r.GetOperations(ctx, service, spanKind)
	if err != nil {
		return nil, err
	}
	return filterList(ctx, t, all, id, func(o tracestore.Operation) tracestore.Query {
		return tracestore.Query{Service: service, Operation: o.Name, SpanKind: o.SpanKind}
	})
}

func (t tenantReader) GetRemoteServices(ctx context.Context, service string) ([]string, error) {
	id, err := mustFromContext(ctx)
	if err != nil {
		return nil, err
	}
	all, err := t.r.GetRemoteServices(ctx, service)
	if err != nil {
		return nil, err
	}
	return filterList(ctx, t, all, id, func(p string) tracestore.Query {
		return tracestore.Query{Service: service, RemoteService: p}
	})
}

func (t tenantReader) GetTagValues(ctx context.Context, key string) ([]string, error) {
	id, err := mustFromContext(ctx)
	if err != nil {
		return nil, err
	}
	all, err := t.r.GetTagValues(ctx, key)
	if err != nil {
		return nil, err
	}
	return filterList(ctx, t, all, id, func(v string) tracestore.Query {
		return tracestore.Query{Tags: map[string]string{key: v}}
	})
}

func (t tenantReader) FindTraces(ctx context.Context, q tracestore.Query) ([]*tracestore.Trace, error) {
	id, err := mustFromContext(ctx)
	if err != nil {
		return nil, err
	}
	q, ok := tenantQuery(q, id)
	if !ok {
		return nil, nil
	}
	found, err := t.r.FindTraces(ctx, q)
	if err != nil {
		return nil, err
	}
	out := found[:0]
	for _, tr := range found {
		if tr = own(tr, id); tr != nil {
			out = append(out, tr)
		}
	}
	return out, nil
}

func (t tenantReader) FindTraceIDs(ctx context.Context, q tracestore.Query) ([]pcommon.TraceID, error) {
	id, err := mustFromContext(ctx)
	if err != nil {
		return nil, err
	}
	q, ok := tenantQuery(q, id)
	if !ok {
		return nil, nil
	}
	return t.r.FindTraceIDs(ctx, q)
}

func (t tenantReader) GetDependencies(ctx context.Context, endTs time.Time, lookback time.Duration) ([]tracestore.DependencyLink, error) {
	// The backends link every tenant's spans together; link the tenant's
	// own traces instead (FindTraces confines them), as many as one search
	// returns.
	traces, err := t.FindTraces(ctx, tracestore.Query{StartMin: endTs.Add(-lookback), StartMax: endTs, Limit: tracestore.MaxLimit})
	if err != nil {
		return nil, err
	}
	l := tracestore.NewLinker()
	var buf []tracestore.LinkSpan
	from := endTs.Add(-lookback)
	for _, tr := range traces {
		buf = buf[:0]
		rss := tr.Spans.ResourceSpans()
		for i := 0; i < rss.Len(); i++ {
			rs := rss.At(i)
			svc := tracestore.ServiceName(rs.Resource())
			sss := rs.ScopeSpans()
			for j := 0; j < sss.Len(); j++ {
				spans := sss.At(j).Spans()
				for k := 0; k < spans.Len(); k++ {
					sp := spans.At(k)
					if st := sp.StartTimestamp().AsTime(); !st.After(from) || st.After(endTs) {
						continue
					}
					buf = append(buf, tracestore.LinkSpan{SpanID: sp.SpanID(), ParentID: sp.ParentSpanID(), Kind: sp.Kind(), Service: svc})
				}
			}
		}
		l.AddTrace(buf)
	}
	return l.Links(), nil
}
