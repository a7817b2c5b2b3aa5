package pebblestore

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/meshlens/meshlens/storage/tracestore/tracestoretest"
)

// copiedTraces is what a chunk held before splicing: each span of trace id
// copied, with its resource and scope, into a ptrace.Traces holding one
// ResourceSpans per scope, in the order the scopes first occur.
func copiedTraces(tds []ptrace.Traces, id pcommon.TraceID) ptrace.Traces {
	out := ptrace.NewTraces()
	for _, td := range tds {
		rss := td.ResourceSpans()
		for i := 0; i < rss.Len(); i++ {
			rs := rss.At(i)
			for j := 0; j < rs.ScopeSpans().Len(); j++ {
				ss := rs.ScopeSpans().At(j)
				var dst ptrace.ScopeSpans
				for k := 0; k < ss.Spans().Len(); k++ {
					sp := ss.Spans().At(k)
					if sp.TraceID() != id {
						continue
					}
					if dst == (ptrace.ScopeSpans{}) {
						drs := out.ResourceSpans().AppendEmpty()
						rs.Resource().CopyTo(drs.Resource())
						drs.SetSchemaUrl(rs.SchemaUrl())
						dst = drs.ScopeSpans().AppendEmpty()
						ss.Scope().CopyTo(dst.Scope())
						dst.SetSchemaUrl(ss.SchemaUrl())
					}
					sp.CopyTo(dst.Spans().AppendEmpty())
				}
			}
		}
	}
	return out
}

// splicedTraces builds trace id's TracesData the way encode does, from the
// requests tds, and decodes it with ptrace.
func splicedTraces(t testing.TB, tds []ptrace.Traces, id pcommon.TraceID) ptrace.Traces {
	t.Helper()
	var reqs [][]byte
	var scopes []wireScope
	var spans []spanAt
	for ri, td := range tds {
		r, err := newWireReq(td)
		if err != nil {
			t.Fatal(err)
		}
		reqs = append(reqs, r.proto)
		si, fi := len(scopes), 0
		for _, sc := range r.scopes {
			sc.req = ri
			scopes = append(scopes, sc)
		}
		rss := td.ResourceSpans()
		for i := 0; i < rss.Len(); i++ {
			for j := 0; j < rss.At(i).ScopeSpans().Len(); j++ {
				ss := rss.At(i).ScopeSpans().At(j)
				for k := 0; k < ss.Spans().Len(); k++ {
					if ss.Spans().At(k).TraceID() == id {
						spans = append(spans, spanAt{si, r.spans[fi]})
					}
					fi++
				}
				si++
			}
		}
	}
	slices.SortStableFunc(spans, bySpanScope)
	got, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(appendTracesData(nil, reqs, scopes, spans))
	if err != nil {
		t.Fatalf("spliced protobuf of trace %s does not decode: %v", id, err)
	}
	return got
}

func sameTraces(t testing.TB, id pcommon.TraceID, got, want ptrace.Traces) {
	t.Helper()
	var m ptrace.ProtoMarshaler
	g, err := m.MarshalTraces(got)
	if err != nil {
		t.Fatal(err)
	}
	w, err := m.MarshalTraces(want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(g, w) {
		gj, _ := (&ptrace.JSONMarshaler{}).MarshalTraces(got)
		wj, _ := (&ptrace.JSONMarshaler{}).MarshalTraces(want)
		t.Fatalf("trace %s spliced:\n%s\ncopied:\n%s", id, gj, wj)
	}
}

func traceIDs(tds []ptrace.Traces) []pcommon.TraceID {
	var ids []pcommon.TraceID
	for _, td := range tds {
		tracestoretest.EachSpan(td, func(_ pcommon.Resource, sp ptrace.Span) {
			if !slices.Contains(ids, sp.TraceID()) {
				ids = append(ids, sp.TraceID())
			}
		})
	}
	return ids
}

// TestSplicedChunkDecodesAsCopied: a chunk spliced from its requests'
// protobuf decodes to exactly what copying its spans, scopes and resources
// into a ptrace.Traces gives, for traces spread over several requests,
// resources and scopes, with schema URLs, empty resources and scopes, and
// spans of other traces in between.
func TestSplicedChunkDecodesAsCopied(t *testing.T) {
	base := time.Now().Add(-time.Minute)
	var seq uint64
	mixed := ptrace.NewTraces()
	for r := range 3 {
		rs := mixed.ResourceSpans().AppendEmpty()
		if r > 0 { // the first resource is empty
			rs.Resource().Attributes().PutStr("service.name", []string{"", "a", "b"}[r])
			rs.Resource().Attributes().PutInt("r", int64(r))
			rs.SetSchemaUrl("https://opentelemetry.io/schemas/1.26.0")
		}
		for sc := range 2 {
			ss := rs.ScopeSpans().AppendEmpty()
			if sc == 1 {
				ss.Scope().SetName("lib")
				ss.Scope().SetVersion("1.2")
				ss.Scope().Attributes().PutBool("x", true)
				ss.SetSchemaUrl("https://opentelemetry.io/schemas/1.21.0")
			}
			for k := range 5 {
				sp := ss.Spans().AppendEmpty()
				sp.SetTraceID(tracestoretest.TraceID(9, uint64(k%3+1)))
				sp.SetSpanID(tracestoretest.SpanID(uint64(r*100 + sc*10 + k + 1)))
				sp.SetName("op")
				sp.SetStartTimestamp(pcommon.NewTimestampFromTime(base))
				sp.SetEndTimestamp(pcommon.NewTimestampFromTime(base.Add(time.Millisecond)))
				sp.Events().AppendEmpty().SetName("ev")
				sp.Status().SetCode(ptrace.StatusCodeError)
			}
		}
	}
	emptyScopes := ptrace.NewTraces()
	emptyScopes.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty()
	rs := emptyScopes.ResourceSpans().AppendEmpty()
	rs.ScopeSpans().AppendEmpty()
	sp := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	sp.SetTraceID(tracestoretest.TraceID(9, 1))
	sp.SetSpanID(tracestoretest.SpanID(999))

	for _, tc := range []struct {
		name string
		tds  []ptrace.Traces
	}{
		{"fixture", []ptrace.Traces{tracestoretest.Fixture(base)}},
		{"istio", []ptrace.Traces{tracestoretest.IstioTraces(200, &seq)}},
		{"mixed resources and scopes", []ptrace.Traces{mixed}},
		{"trace over requests", []ptrace.Traces{mixed, emptyScopes, tracestoretest.Fixture(base), mixed}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ids := traceIDs(tc.tds)
			if len(ids) == 0 {
				t.Fatal("no spans")
			}
			for _, id := range ids {
				sameTraces(t, id, splicedTraces(t, tc.tds, id), copiedTraces(tc.tds, id))
			}
		})
	}
}

// FuzzSplicedChunk is the same differential check on whatever ptrace
// accepts as an OTLP request.
func FuzzSplicedChunk(f *testing.F) {
	var seq uint64
	base := time.Unix(1_700_000_000, 0)
	for _, td := range []ptrace.Traces{tracestoretest.Fixture(base), tracestoretest.IstioTraces(5, &seq)} {
		b, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		td, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(b)
		if err != nil {
			return
		}
		tds := []ptrace.Traces{td, td}
		for _, id := range traceIDs(tds) {
			sameTraces(t, id, splicedTraces(t, tds, id), copiedTraces(tds, id))
		}
	})
}
