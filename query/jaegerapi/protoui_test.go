package jaegerapi

import (
	"bytes"
	"context"
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/meshlens/meshlens/receivers/zipkin/translate"
	"github.com/meshlens/meshlens/storage/tracestore"
	"github.com/meshlens/meshlens/storage/tracestore/pebblestore"
	"github.com/meshlens/meshlens/storage/tracestore/tracestoretest"
)

var storedTraceID = pcommon.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}

// richChunks builds two chunks of one trace with everything the fast path
// decodes: several resources and scopes (one resource twice, so that
// groups merge), every attribute type it handles, duplicate service.name
// and error attributes, events, links, statuses, kinds, equal start times
// across groups, a span of another trace, an end before the start, a
// Zipkin shared span id, and a span written again in the second chunk.
func richChunks(t testing.TB) [][]byte {
	t.Helper()
	base := pcommon.Timestamp(1_700_000_000_000_000_000)
	newRes := func(td ptrace.Traces, svc string, extra func(m pcommon.Map)) ptrace.ResourceSpans {
		rs := td.ResourceSpans().AppendEmpty()
		rs.SetSchemaUrl("https://opentelemetry.io/schemas/1.21.0")
		m := rs.Resource().Attributes()
		m.PutStr("service.name", svc)
		if extra != nil {
			extra(m)
		}
		return rs
	}
	span := func(ss ptrace.ScopeSpans, id byte, parent byte, name string, kind ptrace.SpanKind, start, end pcommon.Timestamp) ptrace.Span {
		sp := ss.Spans().AppendEmpty()
		sp.SetTraceID(storedTraceID)
		sp.SetSpanID(pcommon.SpanID{0, 0, 0, 0, 0, 0, 0, id})
		if parent != 0 {
			sp.SetParentSpanID(pcommon.SpanID{0, 0, 0, 0, 0, 0, 0, parent})
		}
		sp.SetName(name)
		sp.SetKind(kind)
		sp.SetStartTimestamp(start)
		sp.SetEndTimestamp(end)
		return sp
	}
	frontAttrs := func(m pcommon.Map) {
		m.PutStr("host.name", "node-1")
		m.PutInt("pid", 4242)
		m.PutDouble("load", 0.75)
		m.PutBool("canary", true)
	}

	one := ptrace.NewTraces()
	rs := newRes(one, "front", frontAttrs)
	ss := rs.ScopeSpans().AppendEmpty()
	ss.Scope().SetName("io.opentelemetry.http")
	ss.Scope().SetVersion("1.2.3")
	ss.Scope().Attributes().PutStr("lib", "x")
	root := span(ss, 1, 0, "GET /", ptrace.SpanKindServer, base, base+5_000_000)
	root.Attributes().PutStr("http.method", "GET")
	root.Attributes().PutInt("http.status_code", 503)
	root.Attributes().PutDouble("ratio", 0.25)
	root.Attributes().PutDouble("nan", math.NaN())
	root.Attributes().PutDouble("inf", math.Inf(-1))
	root.Attributes().PutBool("ok", false)
	root.Attributes().PutEmptyBytes("raw").FromRaw([]byte{0, 1, 254})
	root.Attributes().PutEmpty("nothing")
	root.Status().SetCode(ptrace.StatusCodeError)
	root.Status().SetMessage("upstream down")
	root.TraceState().FromRaw("k=v")
	root.SetFlags(1)
	ev := root.Events().AppendEmpty()
	ev.SetName("retry")
	ev.SetTimestamp(base + 1_000_000)
	ev.Attributes().PutInt("attempt", 2)
	ev = root.Events().AppendEmpty() // no name
	ev.SetTimestamp(base + 2_000_000)
	ev.Attributes().PutStr("note", "x")
	l := root.Links().AppendEmpty()
	l.SetTraceID(pcommon.TraceID{9})
	l.SetSpanID(pcommon.SpanID{9})
	l.Attributes().PutStr("why", "batch")

	// Same start time as the root, in another group.
	ss2 := rs.ScopeSpans().AppendEmpty()
	ss2.Scope().SetName("manual")
	c := span(ss2, 2, 1, "call db", ptrace.SpanKindClient, base, base+3_000_000)
	c.Status().SetCode(ptrace.StatusCodeError)
	c.Status().SetMessage("timeout")
	c.Attributes().PutStr("error", "timeout")                          // the description is not repeated
	c.Attributes().PutStr("error", "second")                           // Map.Get finds the first
	span(ss2, 3, 1, "internal", ptrace.SpanKindInternal, base+1, base) // ends before it starts

	// Zipkin's shared span id: client and server halves of one hop.
	zs := newRes(one, "db", nil).ScopeSpans().AppendEmpty()
	zs.Scope().SetName(translate.ScopeName)
	span(zs, 4, 2, "query", ptrace.SpanKindClient, base+10, base+20).Attributes().PutBool(translate.AttrShared, true)
	span(zs, 4, 2, "query", ptrace.SpanKindServer, base+11, base+19).Status().SetCode(ptrace.StatusCodeOk)
	span(zs, 5, 0, "noop", ptrace.SpanKindInternal, base+12, base+13)
	other := span(zs, 6, 4, "other trace", ptrace.SpanKindProducer, base+30, base+40)
	other.SetTraceID(pcommon.TraceID{7, 7})
	dup := newRes(one, "front", frontAttrs) // the same resource again: the same group
	ds := dup.ScopeSpans().AppendEmpty()
	ds.Scope().SetName("io.opentelemetry.http")
	ds.Scope().SetVersion("1.2.3")
	ds.Scope().Attributes().PutStr("lib", "x")
	span(ds, 7, 1, "GET /", ptrace.SpanKindConsumer, base, base+1)
	// Two service.name attributes: the first names the process.
	twice := newRes(one, "", nil)
	twice.Resource().Attributes().PutStr("service.name", "ignored")
	span(twice.ScopeSpans().AppendEmpty(), 8, 1, "anonymous", ptrace.SpanKindServer, base+50, base+60)

	two := ptrace.NewTraces()
	again := newRes(two, "db", map[bool]func(pcommon.Map){true: func(m pcommon.Map) { m.PutStr("zone", "b") }}[true]).ScopeSpans().AppendEmpty()
	again.Scope().SetName(translate.ScopeName)
	// Written again: replaces the first copy in its place.
	span(again, 5, 0, "noop", ptrace.SpanKindInternal, base+12, base+14).Attributes().PutStr("rewritten", "yes")
	span(again, 9, 5, "late", ptrace.SpanKindServer, base-5, base+1)

	var m ptrace.ProtoMarshaler
	var out [][]byte
	for _, td := range []ptrace.Traces{one, two} {
		b, err := m.MarshalTraces(td)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// checkStored compares uiFromStored with toUI over pdata; it reports
// whether the fast path answered.
func checkStored(t testing.TB, st *tracestore.StoredTrace, keep bool) bool {
	t.Helper()
	got, ok := uiFromStored(st, keep)
	if !ok {
		return false
	}
	tr, err := st.Trace(func(chunk int, err error) {
		t.Fatalf("uiFromStored decoded chunk %d, which pdata refuses: %v", chunk, err)
	})
	if err != nil {
		t.Fatalf("uiFromStored answered, pdata's decoding did not: %v", err)
	}
	want := toUI(tr, keep)
	// Encoded as the handler writes it (spans decoded one by one as they
	// are written, when lazy), then decoded whole.
	g, err := appendEnvelope(nil, []uiTrace{got}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	w, _ := appendEnvelope(nil, []uiTrace{want}, nil, nil)
	if !bytes.Equal(g, w) {
		t.Fatalf("uiFromStored's answer differs from toUI's:\n got %s\nwant %s", g, w)
	}
	got.materialize()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("uiFromStored differs from toUI:\n got %+v\nwant %+v", got, want)
	}
	return true
}

func TestUIFromStoredMatchesToUI(t *testing.T) {
	chunks := richChunks(t)
	for _, tc := range []struct {
		name     string
		chunks   [][]byte
		maxSpans int
	}{
		{"two chunks", chunks, 0},
		{"first chunk", chunks[:1], 0},
		{"reversed", [][]byte{chunks[1], chunks[0]}, 0},
		{"cut to 4 spans", chunks, 4},
		{"empty chunk first", [][]byte{{}, chunks[0]}, 0},
	} {
		for _, keep := range []bool{false, true} {
			st := &tracestore.StoredTrace{ID: storedTraceID, Chunks: tc.chunks, MaxSpans: tc.maxSpans}
			if !checkStored(t, st, keep) {
				t.Errorf("%s (keep=%v): the fast path gave up on what it should decode", tc.name, keep)
			}
		}
	}
	got, _ := uiFromStored(&tracestore.StoredTrace{ID: storedTraceID, Chunks: chunks}, false)
	got.materialize()
	if len(got.Spans) != 10 || len(got.Processes) != 4 {
		t.Errorf("got %d spans in %d processes, want 10 in 4", len(got.Spans), len(got.Processes))
	}
}

// TestUIFromStoredGivesUp: what it does not decode itself goes to pdata.
func TestUIFromStoredGivesUp(t *testing.T) {
	td := ptrace.NewTraces()
	sp := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	sp.SetTraceID(storedTraceID)
	sp.SetSpanID(pcommon.SpanID{1})
	sp.Attributes().PutEmptySlice("list").AppendEmpty().SetStr("a")
	arr, _ := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	good := richChunks(t)[0]
	for name, chunks := range map[string][][]byte{
		"array value":   {arr},
		"truncated":     {good[:len(good)-3]},
		"no spans":      {{}},
		"no chunks":     nil,
		"unknown field": {append(bytes.Clone(good), 0x10, 0x01)}, // field 2, varint
		"bad span id":   {{0x0a, 0x08, 0x12, 0x06, 0x12, 0x04, 0x12, 0x02, 0x01, 0x02}},
	} {
		if _, ok := uiFromStored(&tracestore.StoredTrace{ID: storedTraceID, Chunks: chunks}, false); ok {
			t.Errorf("%s: decoded, want it left to pdata", name)
		}
	}
}

func FuzzUIFromStoredMatchesPdata(f *testing.F) {
	chunks := richChunks(f)
	f.Add(chunks[0], chunks[1], uint8(0), false)
	f.Add(chunks[1], chunks[0], uint8(3), true)
	f.Add(chunks[0], []byte{}, uint8(1), false)
	f.Fuzz(func(t *testing.T, a, b []byte, maxSpans uint8, keep bool) {
		checkStored(t, &tracestore.StoredTrace{ID: storedTraceID, Chunks: [][]byte{a, b}, MaxSpans: int(maxSpans)}, keep)
	})
}

// TestStoredPathAnswersAsPdataPath: the API over the store answers byte
// for byte as it does when the store's stored-trace methods are hidden
// from it, and the fixture's traces do take the direct path.
func TestStoredPathAnswersAsPdataPath(t *testing.T) {
	s, err := pebblestore.Open(pebblestore.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	base := tracestoretest.Base()
	td := tracestoretest.Fixture(base)
	if err := s.WriteTraces(context.Background(), td); err != nil {
		t.Fatal(err)
	}
	serve := func(r tracestore.Reader) *httptest.Server {
		mux := http.NewServeMux()
		New(r, nil).Register(mux)
		srv := httptest.NewServer(mux)
		t.Cleanup(srv.Close)
		return srv
	}
	direct, viaPdata := serve(s), serve(struct{ tracestore.Reader }{s})
	ids := map[pcommon.TraceID]bool{}
	for _, rs := range td.ResourceSpans().All() {
		for _, ss := range rs.ScopeSpans().All() {
			for _, sp := range ss.Spans().All() {
				ids[sp.TraceID()] = true
			}
		}
	}
	paths := []string{"/api/traces?service=productpage&limit=50&lookback=custom&start=" + strconv.FormatInt(base.Add(-time.Hour).UnixMicro(), 10) +
		"&end=" + strconv.FormatInt(base.Add(time.Hour).UnixMicro(), 10)}
	decoded := 0
	for id := range ids {
		paths = append(paths, "/api/traces/"+id.String(), "/api/traces/"+id.String()+"?sharedSpanIDs=keep")
		st, _, err := s.GetStoredTrace(context.Background(), id, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := uiFromStored(&st, false); ok {
			decoded++
		}
	}
	if decoded < len(ids)*3/4 {
		t.Errorf("the direct path decoded %d of the fixture's %d traces", decoded, len(ids))
	}
	// Several at once and one after another: answers reuse pooled
	// scratch space, which must never show through.
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for _, p := range paths {
				c1, b1 := get(t, direct, p)
				c2, b2 := get(t, viaPdata, p)
				if c1 != c2 || !bytes.Equal(b1, b2) {
					t.Errorf("%s: direct %d %s\nvia pdata %d %s", p, c1, b1, c2, b2)
				}
				if !bytes.Contains(b1, []byte(`"spanID"`)) {
					t.Errorf("%s: no spans in the answer: %s", p, b1)
				}
			}
		})
	}
	wg.Wait()
}

// TestUIFromStoredDuplicateKeys: pdata's maps never hold a key twice, but
// the wire can: the first service.name names the process and the first
// error attribute decides the synthetic tags, as Map.Get has it.
func TestUIFromStoredDuplicateKeys(t *testing.T) {
	msg := func(fields ...[]byte) []byte { return bytes.Join(fields, nil) }
	bytesField := func(num protowire.Number, v []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), v)
	}
	str := func(k, v string) []byte { // KeyValue{key, AnyValue{string_value}}
		return msg(bytesField(1, []byte(k)), bytesField(2, bytesField(1, []byte(v))))
	}
	span := msg(bytesField(1, storedTraceID[:]), bytesField(2, []byte{0, 0, 0, 0, 0, 0, 0, 1}), bytesField(5, []byte("op")),
		bytesField(9, str("error", "first")), bytesField(9, str("error", "second")),
		bytesField(15, msg(bytesField(2, []byte("second")), protowire.AppendVarint(protowire.AppendTag(nil, 3, protowire.VarintType), 2))))
	res := msg(bytesField(1, str("service.name", "")), bytesField(1, str("service.name", "named")), bytesField(1, str("zone", "a")))
	chunk := bytesField(1, msg(bytesField(1, res), bytesField(2, bytesField(2, span))))
	st := &tracestore.StoredTrace{ID: storedTraceID, Chunks: [][]byte{chunk}}
	if !checkStored(t, st, false) {
		t.Fatal("the fast path gave up")
	}
	got, _ := uiFromStored(st, false)
	if got.lazy == nil {
		t.Error("a trace without shared span ids was decoded whole, want its spans lazy")
	}
	if p := got.Processes["p1"]; p.ServiceName != tracestore.UnknownService || len(p.Tags) != 1 {
		t.Errorf("process %+v, want %s with the zone tag only", p, tracestore.UnknownService)
	}
}

// TestLazySpansThroughEncodingJSON: an answer that goes to encoding/json
// (a value the hand encoder leaves to it) still carries the lazy spans.
func TestLazySpansThroughEncodingJSON(t *testing.T) {
	chunks := richChunks(t)
	lazy, ok := uiFromStored(&tracestore.StoredTrace{ID: storedTraceID, Chunks: chunks}, true)
	if !ok || lazy.lazy == nil {
		t.Fatal("want a lazy trace")
	}
	whole, _ := uiFromStored(&tracestore.StoredTrace{ID: storedTraceID, Chunks: chunks}, true)
	whole.materialize()
	odd := uiTrace{TraceID: "x", Spans: []uiSpan{{SpanID: "1", Tags: []uiKeyValue{{Key: "m", Type: "string", Value: map[string]int{"a": 1}}}}}}
	rec := httptest.NewRecorder()
	writeTraces(rec, []uiTrace{lazy, odd}, nil)
	if want := stdEnvelope(t, []uiTrace{whole, odd}, nil); !bytes.Equal(rec.Body.Bytes(), want) {
		t.Fatalf("got %s\nwant %s", rec.Body.Bytes(), want)
	}
	if !bytes.Contains(rec.Body.Bytes(), []byte(`"operationName":"late"`)) {
		t.Fatal("the lazy spans are missing")
	}
}
