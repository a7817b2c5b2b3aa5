package utf8guard

import (
	"testing"
	"unicode/utf8"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

func TestTraces(t *testing.T) {
	const bad = "a\xffb\xc3\x28"
	const want = "a\uFFFDb\uFFFD("
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", bad)
	ss := rs.ScopeSpans().AppendEmpty()
	ss.Scope().SetName(bad)
	sp := ss.Spans().AppendEmpty()
	sp.SetName(bad)
	sp.Attributes().PutStr("ok", "fine")
	sp.Attributes().PutStr(bad, "value under a bad key")
	nested := sp.Attributes().PutEmptyMap("nested")
	nested.PutEmptySlice("list").AppendEmpty().SetStr(bad)
	sp.Status().SetMessage(bad)
	sp.Events().AppendEmpty().SetName(bad)

	if n := Traces(td); n != 7 {
		t.Errorf("fixed %d strings, want 7", n)
	}
	res, _ := rs.Resource().Attributes().Get("service.name")
	moved, ok := sp.Attributes().Get(want)
	list, _ := sp.Attributes().Get("nested")
	okv, _ := sp.Attributes().Get("ok")
	for name, got := range map[string]string{
		"resource attribute": res.Str(), "scope name": ss.Scope().Name(), "span name": sp.Name(),
		"nested slice value": list.Map().AsRaw()["list"].([]any)[0].(string),
		"status message":     sp.Status().Message(), "event name": sp.Events().At(0).Name(),
	} {
		if got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if !ok || moved.Str() != "value under a bad key" || okv.Str() != "fine" {
		t.Errorf("attributes %v", sp.Attributes().AsRaw())
	}
	sp.Attributes().Range(func(k string, _ pcommon.Value) bool {
		if !utf8.ValidString(k) {
			t.Errorf("key %q still invalid", k)
		}
		return true
	})
	if n := Traces(td); n != 0 {
		t.Errorf("second pass fixed %d strings, want 0", n)
	}
}

func BenchmarkTracesValid(b *testing.B) {
	td := ptrace.NewTraces()
	ss := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty()
	for i := 0; i < 100; i++ {
		sp := ss.Spans().AppendEmpty()
		sp.SetName("GET /reviews/{id}")
		sp.Attributes().PutStr("http.url", "http://reviews:9080/reviews/0")
		sp.Attributes().PutStr("peer.service", "ratings")
		sp.Attributes().PutInt("http.status_code", 200)
	}
	b.ReportAllocs()
	for b.Loop() {
		Traces(td)
	}
}
