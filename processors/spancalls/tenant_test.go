package spancalls

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/meshlens/meshlens/model"
)

func stamped(td ptrace.Traces, tenant string) ptrace.Traces {
	for i := 0; i < td.ResourceSpans().Len(); i++ {
		td.ResourceSpans().At(i).Resource().Attributes().PutStr(model.TenantAttribute, tenant)
	}
	return td
}

// TestTenantCarried: the tenant of a span's resource reaches its calls,
// span metrics and edges, and two tenants' halves with the same trace and
// span ids never pair.
func TestTenantCarried(t *testing.T) {
	o := &outputs{}
	p, _ := newProc(o, Config{})
	ctx := context.Background()
	client := otelSpan{id: 2, parent: 1, kind: ptrace.SpanKindClient, service: "frontend", dur: 5 * time.Millisecond,
		attrs: map[string]any{"server.address": "cartservice"}}
	server := otelSpan{id: 3, parent: 2, kind: ptrace.SpanKindServer, service: "cartservice", dur: 4 * time.Millisecond,
		attrs: map[string]any{}}
	p.ConsumeTraces(ctx, stamped(otelTraces(client), "team-a"))
	p.ConsumeTraces(ctx, stamped(otelTraces(server), "team-b")) // same trace id, other tenant
	if len(o.edges) != 0 {
		t.Fatalf("halves of two tenants paired: %+v", o.edges)
	}
	p.ConsumeTraces(ctx, stamped(otelTraces(server), "team-a"))
	if len(o.edges) != 1 || o.edges[0].Tenant != "team-a" || o.edges[0].Client != "frontend" || o.edges[0].Server != "cartservice" {
		t.Fatalf("edges %+v, want one team-a frontend -> cartservice", o.edges)
	}
	tenants := map[string]int{}
	for _, c := range o.calls {
		tenants[c.Tenant]++
	}
	if tenants["team-a"] != 2 || tenants["team-b"] != 1 || len(tenants) != 2 {
		t.Errorf("call tenants %v, want team-a:2 team-b:1", tenants)
	}
	for _, m := range o.metrics {
		if m.Tenant != "team-a" && m.Tenant != "team-b" {
			t.Errorf("span metric without tenant: %+v", m)
		}
	}
	// Without the attribute (tenancy off) nothing is set.
	o2 := &outputs{}
	p2, _ := newProc(o2, Config{})
	p2.ConsumeTraces(ctx, otelTraces(server))
	if len(o2.calls) != 1 || o2.calls[0].Tenant != "" || o2.metrics[0].Tenant != "" {
		t.Errorf("tenancy off: calls %+v metrics %+v", o2.calls, o2.metrics)
	}
}
