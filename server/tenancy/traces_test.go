package tenancy

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/meshlens/meshlens/model"
	"github.com/meshlens/meshlens/storage/tracestore"
	"github.com/meshlens/meshlens/storage/tracestore/memstore"
)

type testSpan struct {
	trace, id, parent byte
	service, name     string
	kind              ptrace.SpanKind
	attrs             map[string]string
	resAttrs          map[string]string
}

func spans(start time.Time, ss ...testSpan) ptrace.Traces {
	td := ptrace.NewTraces()
	for _, s := range ss {
		rs := td.ResourceSpans().AppendEmpty()
		rs.Resource().Attributes().PutStr("service.name", s.service)
		for k, v := range s.resAttrs {
			rs.Resource().Attributes().PutStr(k, v)
		}
		sp := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
		sp.SetTraceID(pcommon.TraceID{s.trace})
		sp.SetSpanID(pcommon.SpanID{s.id})
		if s.parent != 0 {
			sp.SetParentSpanID(pcommon.SpanID{s.parent})
		}
		sp.SetName(s.name)
		sp.SetKind(s.kind)
		sp.SetStartTimestamp(pcommon.NewTimestampFromTime(start))
		sp.SetEndTimestamp(pcommon.NewTimestampFromTime(start.Add(time.Millisecond)))
		for k, v := range s.attrs {
			sp.Attributes().PutStr(k, v)
		}
	}
	return td
}

func TestTraceIsolation(t *testing.T) {
	store := memstore.New(memstore.Config{AutocompleteKeys: []string{"http.method"}})
	ingest := StampTraces(store)
	ctxA := NewContext(context.Background(), "team-a")
	ctxB := NewContext(context.Background(), "team-b")
	now := time.Now().Add(-time.Minute)
	srv, cli := ptrace.SpanKindServer, ptrace.SpanKindClient
	// team-a: trace 1 (frontend -> cart), and its spans of trace 3.
	if err := ingest.ConsumeTraces(ctxA, spans(now,
		testSpan{trace: 1, id: 1, service: "frontend", name: "GET /", kind: srv, attrs: map[string]string{"http.method": "GET"}},
		testSpan{trace: 1, id: 2, parent: 1, service: "frontend", name: "cart", kind: cli, attrs: map[string]string{"peer.service": "cart"}},
		testSpan{trace: 1, id: 3, parent: 2, service: "cart", name: "cart", kind: srv},
		testSpan{trace: 3, id: 1, service: "frontend", name: "GET /", kind: srv},
	)); err != nil {
		t.Fatal(err)
	}
	// team-b: trace 2, spans with trace 3's id, and a resource claiming
	// to be team-a (overwritten at ingest).
	if err := ingest.ConsumeTraces(ctxB, spans(now,
		testSpan{trace: 2, id: 1, service: "billing", name: "POST /pay", kind: srv, attrs: map[string]string{"http.method": "POST"}},
		testSpan{trace: 3, id: 2, parent: 1, service: "billing", name: "charge", kind: srv},
		testSpan{trace: 4, id: 1, service: "spoofed", name: "x", kind: srv, resAttrs: map[string]string{model.TenantAttribute: "team-a"}},
	)); err != nil {
		t.Fatal(err)
	}
	if err := ingest.ConsumeTraces(context.Background(), spans(now, testSpan{trace: 5, id: 1, service: "x"})); err == nil {
		t.Error("ingest without a tenant accepted")
	}

	r := Reader(store)
	svcA, err := r.GetServices(ctxA)
	if err != nil || !slices.Equal(svcA, []string{"cart", "frontend"}) {
		t.Errorf("team-a services %v, %v", svcA, err)
	}
	svcB, err := r.GetServices(ctxB)
	if err != nil || !slices.Equal(svcB, []string{"billing", "spoofed"}) {
		t.Errorf("team-b services %v, %v", svcB, err)
	}
	if ops, err := r.GetOperations(ctxB, "frontend", ""); err != nil || len(ops) != 0 {
		t.Errorf("team-b sees team-a's operations: %v, %v", ops, err)
	}
	if ops, err := r.GetOperations(ctxA, "frontend", ""); err != nil || len(ops) != 2 {
		t.Errorf("team-a operations of frontend: %v, %v", ops, err)
	}
	if peers, err := r.GetRemoteServices(ctxB, "frontend"); err != nil || len(peers) != 0 {
		t.Errorf("team-b sees team-a's peers: %v, %v", peers, err)
	}
	if vals, err := r.GetTagValues(ctxA, "http.method"); err != nil || !slices.Equal(vals, []string{"GET"}) {
		t.Errorf("team-a http.method values %v, %v", vals, err)
	}

	// Trace by id.
	if _, err := r.GetTrace(ctxB, pcommon.TraceID{1}); !errors.Is(err, tracestore.ErrTraceNotFound) {
		t.Errorf("team-b reads team-a's trace: %v", err)
	}
	tr, err := r.GetTrace(ctxA, pcommon.TraceID{1})
	if err != nil || tr.Spans.SpanCount() != 3 {
		t.Fatalf("team-a trace 1: %v", err)
	}
	// Trace 3 holds spans of both tenants: each sees its own.
	for ctx, want := range map[context.Context]string{ctxA: "frontend", ctxB: "billing"} {
		tr, err := r.GetTrace(ctx, pcommon.TraceID{3})
		if err != nil || tr.Spans.SpanCount() != 1 || tracestore.ServiceName(tr.Spans.ResourceSpans().At(0).Resource()) != want {
			t.Errorf("shared trace id as %v: %v", want, err)
		}
	}

	// Searches.
	found, err := r.FindTraces(ctxA, tracestore.Query{Limit: 10})
	if err != nil || len(found) != 2 {
		t.Fatalf("team-a search: %d traces, %v", len(found), err)
	}
	for _, tr := range found {
		rss := tr.Spans.ResourceSpans()
		for i := 0; i < rss.Len(); i++ {
			if v, _ := rss.At(i).Resource().Attributes().Get(model.TenantAttribute); v.Str() != "team-a" {
				t.Errorf("team-a search returned a span of %q", v.Str())
			}
		}
	}
	if ids, err := r.FindTraceIDs(ctxB, tracestore.Query{Service: "frontend", Limit: 10}); err != nil || len(ids) != 0 {
		t.Errorf("team-b finds team-a's trace ids: %v, %v", ids, err)
	}
	// Asking for the other tenant's attribute does not widen the search.
	if ids, err := r.FindTraceIDs(ctxB, tracestore.Query{Tags: map[string]string{model.TenantAttribute: "team-a"}, Limit: 10}); err != nil || len(ids) != 0 {
		t.Errorf("team-b query naming team-a: %v, %v", ids, err)
	}
	deps, err := r.GetDependencies(ctxA, time.Now(), time.Hour)
	if err != nil || len(deps) != 1 || deps[0] != (tracestore.DependencyLink{Parent: "frontend", Child: "cart", CallCount: 1}) {
		t.Errorf("team-a dependencies %+v, %v", deps, err)
	}
	if deps, err := r.GetDependencies(ctxB, time.Now(), time.Hour); err != nil || len(deps) != 0 {
		t.Errorf("team-b dependencies %+v, %v", deps, err)
	}

	// No tenant, no answer.
	if _, err := r.GetServices(context.Background()); !errors.Is(err, ErrNoTenant) {
		t.Errorf("services without a tenant: %v", err)
	}
	if _, err := r.GetTrace(context.Background(), pcommon.TraceID{1}); !errors.Is(err, ErrNoTenant) {
		t.Errorf("trace without a tenant: %v", err)
	}
}
