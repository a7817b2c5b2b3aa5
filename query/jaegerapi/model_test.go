package jaegerapi

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	jaegerrcv "github.com/meshlens/meshlens/receivers/jaeger"
	"github.com/meshlens/meshlens/receivers/zipkin/translate"
)

// TestSyntheticTags checks the tags the translation adds, as Jaeger's own
// OTLP translation does: scope, span.kind (internal included, except where
// a Zipkin/Jaeger receiver's INTERNAL means "no kind given"), status tags
// without repeating a Zipkin error tag as the description.
func TestSyntheticTags(t *testing.T) {
	for _, tc := range []struct {
		name, scope string
		kind        ptrace.SpanKind
		errAttr     any
		status      ptrace.StatusCode
		msg         string
		want        string
	}{
		{name: "sdk internal span", scope: "lib", kind: ptrace.SpanKindInternal,
			want: "otel.scope.name=lib otel.scope.version=1 span.kind=internal"},
		{name: "unspecified kind", scope: "lib", kind: ptrace.SpanKindUnspecified,
			want: "otel.scope.name=lib otel.scope.version=1"},
		{name: "zipkin span without kind", scope: translate.ScopeName, kind: ptrace.SpanKindInternal, want: ""},
		{name: "jaeger span without kind", scope: jaegerrcv.ScopeName, kind: ptrace.SpanKindInternal, want: ""},
		{name: "zipkin client", scope: translate.ScopeName, kind: ptrace.SpanKindClient, want: "span.kind=client"},
		{name: "zipkin error tag is the description", scope: translate.ScopeName, kind: ptrace.SpanKindServer,
			errAttr: "boom", status: ptrace.StatusCodeError, msg: "boom",
			want: "error=boom otel.status_code=ERROR span.kind=server"},
		{name: "otlp error status", scope: "", kind: ptrace.SpanKindServer, status: ptrace.StatusCodeError, msg: "timeout",
			want: "error=true otel.status_code=ERROR otel.status_description=timeout span.kind=server"},
		{name: "error attribute differs from the description", scope: "", kind: ptrace.SpanKindClient,
			errAttr: "reset", status: ptrace.StatusCodeError, msg: "timeout",
			want: "error=reset otel.status_code=ERROR otel.status_description=timeout span.kind=client"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			scope := pcommon.NewInstrumentationScope()
			scope.SetName(tc.scope)
			scope.SetVersion("1")
			sp := ptrace.NewSpan()
			sp.SetKind(tc.kind)
			if tc.errAttr != nil {
				_ = sp.Attributes().PutEmpty("error").FromRaw(tc.errAttr)
			}
			sp.Status().SetCode(tc.status)
			sp.Status().SetMessage(tc.msg)
			var got []string
			for _, kv := range toUISpan(scope, sp, "p1", pcommon.TraceID{}, "").Tags {
				got = append(got, fmt.Sprintf("%s=%v", kv.Key, kv.Value))
			}
			sort.Strings(got)
			if g := strings.Join(got, " "); g != tc.want {
				t.Errorf("tags %q, want %q", g, tc.want)
			}
		})
	}
}

// TestDedupeSharedSpanIDs follows Jaeger's span ID deduplication: only a
// server span sharing its ID with a client span is renamed, to the lowest
// unused ID, and the shared span's children follow the server half.
func TestDedupeSharedSpanIDs(t *testing.T) {
	span := func(id, kind, parent string) uiSpan {
		s := uiSpan{TraceID: "t", SpanID: id, References: []uiReference{}}
		if kind != "" {
			s.Tags = []uiKeyValue{{Key: "span.kind", Type: "string", Value: kind}}
		}
		if parent != "" {
			s.References = append(s.References, uiReference{RefType: "CHILD_OF", TraceID: "t", SpanID: parent})
		}
		s.Tags = append(s.Tags, uiKeyValue{Key: translate.AttrShared, Type: "bool", Value: true})
		return s
	}
	render := func(spans []uiSpan) string {
		var out []string
		for _, s := range spans {
			out = append(out, fmt.Sprintf("%s<%s:%d", s.SpanID, parentOf(s), len(s.Tags)))
		}
		return strings.Join(out, " ")
	}
	for _, tc := range []struct {
		name  string
		spans []uiSpan
		want  string
	}{
		{"shared pair with a child",
			[]uiSpan{span("0000000000000001", "server", ""), span("00000000000000aa", "client", "0000000000000001"),
				span("00000000000000aa", "server", "0000000000000001"), span("00000000000000bb", "client", "00000000000000aa")},
			// id 1 is taken: the server half becomes 2, the child follows it;
			// the renamed span loses its zipkin.shared tag (2 tags -> 1).
			"0000000000000001<:2 00000000000000aa<0000000000000001:2 0000000000000002<00000000000000aa:1 00000000000000bb<0000000000000002:2"},
		{"server half without parent gets the client as parent",
			[]uiSpan{span("00000000000000aa", "client", ""), span("00000000000000aa", "server", "")},
			"00000000000000aa<:2 0000000000000001<00000000000000aa:1"},
		{"two server spans, no client: unchanged",
			[]uiSpan{span("00000000000000aa", "server", ""), span("00000000000000aa", "server", "")},
			"00000000000000aa<:2 00000000000000aa<:2"},
		{"unique ids: unchanged",
			[]uiSpan{span("00000000000000aa", "client", ""), span("00000000000000ab", "server", "00000000000000aa")},
			"00000000000000aa<:2 00000000000000ab<00000000000000aa:2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dedupeSharedSpanIDs(tc.spans)
			if got := render(tc.spans); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}
