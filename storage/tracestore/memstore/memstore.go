// Package memstore is an in-memory tracestore backend for tests and small
// deployments: bounded by trace count, not durable.
package memstore

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/meshlens/meshlens/storage/tracestore"
)

// Config sizes the store.
type Config struct {
	// MaxTraces is the number of traces kept; the oldest written is evicted
	// first. Default 100000.
	MaxTraces int
	// MaxSpansPerTrace caps GetTrace. Default tracestore.DefaultMaxSpansPerTrace.
	MaxSpansPerTrace int
	// AutocompleteKeys are the tag keys whose values GetTagValues returns.
	AutocompleteKeys []string
}

type span struct {
	res   pcommon.Resource
	scope pcommon.InstrumentationScope
	span  ptrace.Span
}

type trace struct {
	spans map[tracestore.SpanKey]span
	order []tracestore.SpanKey
}

// Store keeps traces in memory.
type Store struct {
	cfg Config

	mu     sync.RWMutex
	traces map[pcommon.TraceID]*trace
	fifo   []pcommon.TraceID
	closed bool
}

var _ tracestore.Store = (*Store)(nil)

// New returns an empty store.
func New(cfg Config) *Store {
	if cfg.MaxTraces <= 0 {
		cfg.MaxTraces = 100000
	}
	if cfg.MaxSpansPerTrace <= 0 {
		cfg.MaxSpansPerTrace = tracestore.DefaultMaxSpansPerTrace
	}
	return &Store{cfg: cfg, traces: map[pcommon.TraceID]*trace{}}
}

// Capabilities implements tracestore.Store.
func (s *Store) Capabilities() tracestore.Capabilities {
	return tracestore.Capabilities{MaxSpansPerTrace: s.cfg.MaxSpansPerTrace, AutocompleteKeys: s.cfg.AutocompleteKeys}
}

// Close drops everything.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.traces = nil
	return nil
}

// ConsumeTraces implements pipeline.TraceConsumer.
func (s *Store) ConsumeTraces(ctx context.Context, td ptrace.Traces) error {
	return s.WriteTraces(ctx, td)
}

// WriteTraces copies the spans of td.
func (s *Store) WriteTraces(_ context.Context, td ptrace.Traces) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return tracestore.ErrClosed
	}
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		rs := rss.At(i)
		res := pcommon.NewResource()
		rs.Resource().CopyTo(res)
		for j := 0; j < rs.ScopeSpans().Len(); j++ {
			ss := rs.ScopeSpans().At(j)
			sc := pcommon.NewInstrumentationScope()
			ss.Scope().CopyTo(sc)
			for k := 0; k < ss.Spans().Len(); k++ {
				sp := ptrace.NewSpan()
				ss.Spans().At(k).CopyTo(sp)
				key := tracestore.KeyOf(sp)
				t := s.traces[key.TraceID]
				if t == nil {
					t = &trace{spans: map[tracestore.SpanKey]span{}}
					s.traces[key.TraceID] = t
					s.fifo = append(s.fifo, key.TraceID)
					s.evict()
				}
				if _, ok := t.spans[key]; !ok {
					t.order = append(t.order, key)
				}
				t.spans[key] = span{res: res, scope: sc, span: sp}
			}
		}
	}
	return nil
}

func (s *Store) evict() {
	for len(s.traces) > s.cfg.MaxTraces && len(s.fifo) > 0 {
		delete(s.traces, s.fifo[0])
		s.fifo = s.fifo[1:]
	}
}

// GetTrace implements tracestore.Reader.
func (s *Store) GetTrace(_ context.Context, id pcommon.TraceID) (*tracestore.Trace, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t := s.traces[id]
	if t == nil {
		return nil, tracestore.ErrTraceNotFound
	}
	return s.assemble(id, t), nil
}

func (s *Store) assemble(id pcommon.TraceID, t *trace) *tracestore.Trace {
	a := tracestore.NewAssembler()
	out := &tracestore.Trace{ID: id}
	for _, k := range t.order {
		if a.Count() >= s.cfg.MaxSpansPerTrace {
			out.Warnings = append(out.Warnings, fmt.Sprintf("trace has %d spans; only the first %d are returned", len(t.order), s.cfg.MaxSpansPerTrace))
			break
		}
		sp := t.spans[k]
		a.AddSpan(sp.res, sp.scope, sp.span)
	}
	out.Spans = a.Traces()
	return out
}

func (s *Store) each(fn func(span)) {
	for _, t := range s.traces {
		for _, sp := range t.spans {
			fn(sp)
		}
	}
}

// GetServices implements tracestore.Reader.
func (s *Store) GetServices(context.Context) ([]string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	set := map[string]bool{}
	s.each(func(sp span) { set[tracestore.ServiceName(sp.res)] = true })
	return sortedKeys(set), nil
}

// GetOperations implements tracestore.Reader.
func (s *Store) GetOperations(_ context.Context, service, kind string) ([]tracestore.Operation, error) {
	if _, err := tracestore.ParseKind(kind); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	set := map[tracestore.Operation]bool{}
	s.each(func(sp span) {
		if tracestore.ServiceName(sp.res) != service {
			return
		}
		k := tracestore.KindName(sp.span.Kind())
		if kind != "" && k != kind {
			return
		}
		set[tracestore.Operation{Name: sp.span.Name(), SpanKind: k}] = true
	})
	out := make([]tracestore.Operation, 0, len(set))
	for o := range set {
		out = append(out, o)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].SpanKind < out[j].SpanKind
	})
	return out, nil
}

// GetRemoteServices implements tracestore.Reader.
func (s *Store) GetRemoteServices(_ context.Context, service string) ([]string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	set := map[string]bool{}
	s.each(func(sp span) {
		if tracestore.ServiceName(sp.res) != service {
			return
		}
		if v, ok := sp.span.Attributes().Get(tracestore.AttrPeerService); ok && v.AsString() != "" {
			set[v.AsString()] = true
		}
	})
	return sortedKeys(set), nil
}

// GetTagValues implements tracestore.Reader.
func (s *Store) GetTagValues(_ context.Context, key string) ([]string, error) {
	if !slices.Contains(s.cfg.AutocompleteKeys, key) {
		return []string{}, nil
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	set := map[string]bool{}
	s.each(func(sp span) {
		if v, ok := sp.span.Attributes().Get(key); ok {
			set[v.AsString()] = true
		}
	})
	return sortedKeys(set), nil
}

// FindTraceIDs implements tracestore.Reader.
func (s *Store) FindTraceIDs(_ context.Context, q tracestore.Query) ([]pcommon.TraceID, error) {
	q, err := q.Normalize(time.Now(), 0)
	if err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	type hit struct {
		id    pcommon.TraceID
		start pcommon.Timestamp
	}
	var hits []hit
	for id, t := range s.traces {
		var best pcommon.Timestamp
		found := false
		for _, sp := range t.spans {
			if q.MatchSpan(sp.res, sp.span) {
				found = true
				best = max(best, sp.span.StartTimestamp())
			}
		}
		if found {
			hits = append(hits, hit{id, best})
		}
	}
	sort.Slice(hits, func(i, j int) bool { return hits[i].start > hits[j].start })
	if len(hits) > q.Limit {
		hits = hits[:q.Limit]
	}
	ids := make([]pcommon.TraceID, len(hits))
	for i, h := range hits {
		ids[i] = h.id
	}
	return ids, nil
}

// FindTraces implements tracestore.Reader.
func (s *Store) FindTraces(ctx context.Context, q tracestore.Query) ([]*tracestore.Trace, error) {
	ids, err := s.FindTraceIDs(ctx, q)
	if err != nil {
		return nil, err
	}
	out := make([]*tracestore.Trace, 0, len(ids))
	for _, id := range ids {
		t, err := s.GetTrace(ctx, id)
		if err != nil {
			continue
		}
		out = append(out, t)
	}
	return out, nil
}

// GetDependencies implements tracestore.Reader.
func (s *Store) GetDependencies(_ context.Context, endTs time.Time, lookback time.Duration) ([]tracestore.DependencyLink, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	l := tracestore.NewLinker()
	from := endTs.Add(-lookback)
	var buf []tracestore.LinkSpan
	for _, t := range s.traces {
		buf = buf[:0]
		for _, sp := range t.spans {
			st := sp.span.StartTimestamp().AsTime()
			if !st.After(from) || st.After(endTs) {
				continue
			}
			buf = append(buf, tracestore.LinkSpan{SpanID: sp.span.SpanID(), ParentID: sp.span.ParentSpanID(), Kind: sp.span.Kind(), Service: tracestore.ServiceName(sp.res)})
		}
		l.AddTrace(buf)
	}
	return l.Links(), nil
}

func sortedKeys(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
