package tracestore

import (
	"testing"

	"go.opentelemetry.io/collector/pdata/ptrace"
)

// TestMoveSpanAssemblesAsAddSpan: moving spans gives the same trace as
// copying them (grouped under shared resources and scopes, in order),
// and leaves the moved spans empty.
func TestMoveSpanAssemblesAsAddSpan(t *testing.T) {
	src := ptrace.NewTraces()
	for i, svc := range []string{"a", "b", "a"} {
		rs := src.ResourceSpans().AppendEmpty()
		rs.Resource().Attributes().PutStr("service.name", svc)
		ss := rs.ScopeSpans().AppendEmpty()
		ss.Scope().SetName("lib")
		for j := range 2 {
			sp := ss.Spans().AppendEmpty()
			sp.SetName(svc)
			sp.SetSpanID([8]byte{byte(i), byte(j), 1})
			sp.Attributes().PutInt("j", int64(j))
		}
	}
	copied, moved := NewAssembler(), NewAssembler()
	each := func(fn func(rs ptrace.ResourceSpans, ss ptrace.ScopeSpans, sp ptrace.Span)) {
		for i := 0; i < src.ResourceSpans().Len(); i++ {
			rs := src.ResourceSpans().At(i)
			ss := rs.ScopeSpans().At(0)
			for k := 0; k < ss.Spans().Len(); k++ {
				fn(rs, ss, ss.Spans().At(k))
			}
		}
	}
	each(func(rs ptrace.ResourceSpans, ss ptrace.ScopeSpans, sp ptrace.Span) {
		copied.AddSpan(rs.Resource(), ss.Scope(), sp)
	})
	each(func(rs ptrace.ResourceSpans, ss ptrace.ScopeSpans, sp ptrace.Span) {
		moved.MoveSpan(rs.Resource(), ss.Scope(), sp)
	})
	var m ptrace.ProtoMarshaler
	want, _ := m.MarshalTraces(copied.Traces())
	got, _ := m.MarshalTraces(moved.Traces())
	if string(got) != string(want) || moved.Count() != 6 {
		t.Fatalf("moved %d spans into %d bytes, copying gave %d spans in %d bytes", moved.Count(), len(got), copied.Count(), len(want))
	}
	if n := moved.Traces().ResourceSpans().Len(); n != 2 {
		t.Fatalf("%d resources, want a and b grouped into 2", n)
	}
	each(func(_ ptrace.ResourceSpans, _ ptrace.ScopeSpans, sp ptrace.Span) {
		if sp.Name() != "" || sp.Attributes().Len() != 0 {
			t.Fatalf("a moved span kept %q and %d attributes", sp.Name(), sp.Attributes().Len())
		}
	})
}
