package translate

import (
	"math"
	"testing"

	"go.opentelemetry.io/collector/pdata/ptrace"
)

// TestToZipkinV2ScopeAndEvents checks the parts of the OpenTelemetry to
// Zipkin mapping that have no Zipkin field of their own: the scope becomes
// otel.scope.* tags (except the Zipkin receiver's own scope, so Zipkin
// spans round-trip unchanged) and event attributes go into the annotation.
func TestToZipkinV2ScopeAndEvents(t *testing.T) {
	for _, tc := range []struct {
		name, scope, version string
		attrs                map[string]any
		event                map[string]any
		wantTags             map[string]string
		wantAnnotation       string
	}{
		{name: "sdk scope, event with attributes", scope: "shop/checkout", version: "0.9.1",
			event:    map[string]any{"items": int64(2), "cart.id": "c-9"},
			wantTags: map[string]string{"otel.scope.name": "shop/checkout", "otel.scope.version": "0.9.1"}, wantAnnotation: `ev: {"cart.id":"c-9","items":2}`},
		{name: "scope without version, plain event", scope: "lib",
			wantTags: map[string]string{"otel.scope.name": "lib"}, wantAnnotation: "ev"},
		{name: "zipkin receiver scope is not a tag", scope: ScopeName, version: "1",
			wantTags: map[string]string{}, wantAnnotation: "ev"},
		{name: "span's own scope tag wins", scope: "lib", attrs: map[string]any{"otel.scope.name": "mine"},
			wantTags: map[string]string{"otel.scope.name": "mine"}, wantAnnotation: "ev"},
		{name: "NaN attribute keeps the name", scope: "",
			event: map[string]any{"x": math.NaN()}, wantTags: map[string]string{}, wantAnnotation: "ev"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			td := ptrace.NewTraces()
			ss := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty()
			ss.Scope().SetName(tc.scope)
			ss.Scope().SetVersion(tc.version)
			sp := ss.Spans().AppendEmpty()
			sp.SetTraceID([16]byte{1})
			sp.SetSpanID([8]byte{2})
			_ = sp.Attributes().FromRaw(tc.attrs)
			ev := sp.Events().AppendEmpty()
			ev.SetName("ev")
			_ = ev.Attributes().FromRaw(tc.event)
			out := ToZipkinV2(td)
			if len(out) != 1 {
				t.Fatalf("%d spans", len(out))
			}
			if len(out[0].Tags) != len(tc.wantTags) {
				t.Errorf("tags %v, want %v", out[0].Tags, tc.wantTags)
			}
			for k, v := range tc.wantTags {
				if out[0].Tags[k] != v {
					t.Errorf("tag %s = %q, want %q", k, out[0].Tags[k], v)
				}
			}
			if len(out[0].Annotations) != 1 || out[0].Annotations[0].Value != tc.wantAnnotation {
				t.Errorf("annotations %+v, want %q", out[0].Annotations, tc.wantAnnotation)
			}
		})
	}
}
