package tracestoretest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/meshlens/meshlens/pipeline"
	"github.com/meshlens/meshlens/storage/tracestore"
)

// RunAll runs the conformance suite against stores made by newStore, one
// fresh store per subtest. newStore must register the store's cleanup.
func RunAll(t *testing.T, newStore func(t *testing.T) tracestore.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s tracestore.Store)
	}{
		{"GetTrace", testGetTrace},
		{"SharedSpanHalves", testSharedSpan},
		{"IdempotentRewrite", testIdempotent},
		{"TraceIDs64And128", testIDs},
		{"Services", testServices},
		{"Operations", testOperations},
		{"RemoteServicesAndTagValues", testRemoteServices},
		{"FindTraces", testFindTraces},
		{"BadQuery", testBadQuery},
		{"Dependencies", testDependencies},
		{"LargeTrace", testLargeTrace},
		{"ManyTracesLimit", testManyTraces},
		{"SplitBatches", testSplitBatches},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newStore(t))
		})
	}
}

// Base is the fixture time the suite uses: recent enough for any lookback.
func Base() time.Time { return time.Now().Add(-5 * time.Minute).Truncate(time.Microsecond) }

func write(t *testing.T, s tracestore.Store, td ptrace.Traces) {
	t.Helper()
	var c pipeline.TraceConsumer = s
	if err := c.ConsumeTraces(context.Background(), td); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// SpanKeys lists the (span id, kind) of every span in td, sorted.
func SpanKeys(td ptrace.Traces) []string {
	var out []string
	EachSpan(td, func(res pcommon.Resource, sp ptrace.Span) {
		out = append(out, fmt.Sprintf("%s/%s/%s", tracestore.ServiceName(res), sp.SpanID(), tracestore.KindName(sp.Kind())))
	})
	slices.Sort(out)
	return out
}

// EachSpan calls fn for every span of td.
func EachSpan(td ptrace.Traces, fn func(pcommon.Resource, ptrace.Span)) {
	for i := 0; i < td.ResourceSpans().Len(); i++ {
		rs := td.ResourceSpans().At(i)
		for j := 0; j < rs.ScopeSpans().Len(); j++ {
			ss := rs.ScopeSpans().At(j)
			for k := 0; k < ss.Spans().Len(); k++ {
				fn(rs.Resource(), ss.Spans().At(k))
			}
		}
	}
}

func testGetTrace(t *testing.T, s tracestore.Store) {
	base := Base()
	write(t, s, Fixture(base))
	ctx := context.Background()
	for id, n := range FixtureSpanCount {
		tr, err := s.GetTrace(ctx, id)
		if err != nil {
			t.Fatalf("GetTrace(%s): %v", id, err)
		}
		if got := tr.Spans.SpanCount(); got != n {
			t.Errorf("GetTrace(%s) = %d spans, want %d", id, got, n)
		}
		if tr.ID != id {
			t.Errorf("trace id %s, want %s", tr.ID, id)
		}
	}
	tr, _ := s.GetTrace(ctx, TraceBookinfo)
	// Content survives the round trip: attributes, status, resource.
	found := false
	EachSpan(tr.Spans, func(res pcommon.Resource, sp ptrace.Span) {
		if sp.Name() != "GET /ratings" || sp.Kind() != ptrace.SpanKindClient {
			return
		}
		found = true
		if v, _ := sp.Attributes().Get("http.status_code"); v.Int() != 503 {
			t.Errorf("http.status_code = %v", v.AsRaw())
		}
		if sp.Status().Code() != ptrace.StatusCodeError || sp.Status().Message() != "upstream reset" {
			t.Errorf("status = %v %q", sp.Status().Code(), sp.Status().Message())
		}
		if h, _ := res.Attributes().Get("host.name"); h.Str() != "node-2" || tracestore.ServiceName(res) != "reviews" {
			t.Errorf("resource = %v", res.Attributes().AsRaw())
		}
		if !sp.StartTimestamp().AsTime().Equal(base.Add(10*time.Millisecond)) || tracestore.Duration(sp) != 30*time.Millisecond {
			t.Errorf("timing = %v + %v", sp.StartTimestamp().AsTime(), tracestore.Duration(sp))
		}
	})
	if !found {
		t.Fatalf("reviews client span missing")
	}
	if _, err := s.GetTrace(ctx, TraceID(9, 9)); !errors.Is(err, tracestore.ErrTraceNotFound) {
		t.Errorf("unknown trace: err = %v, want ErrTraceNotFound", err)
	}
}

func testSharedSpan(t *testing.T, s tracestore.Store) {
	write(t, s, Fixture(Base()))
	tr, err := s.GetTrace(context.Background(), TraceBookinfo)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []pcommon.SpanID{SpanReviews, SpanRatings} {
		halves := map[ptrace.SpanKind]string{}
		EachSpan(tr.Spans, func(res pcommon.Resource, sp ptrace.Span) {
			if sp.SpanID() == id {
				halves[sp.Kind()] = tracestore.ServiceName(res)
			}
		})
		if len(halves) != 2 || halves[ptrace.SpanKindClient] == halves[ptrace.SpanKindServer] {
			t.Errorf("shared span %s: halves %v, want a client and a server half (%v)", id, halves, SpanKeys(tr.Spans))
		}
	}
}

func testIdempotent(t *testing.T, s tracestore.Store) {
	base := Base()
	write(t, s, Fixture(base))
	write(t, s, Fixture(base))
	ctx := context.Background()
	for id, n := range FixtureSpanCount {
		tr, err := s.GetTrace(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if got := tr.Spans.SpanCount(); got != n {
			t.Errorf("after rewrite %s has %d spans, want %d: %v", id, got, n, SpanKeys(tr.Spans))
		}
	}
	ids, err := s.FindTraceIDs(ctx, tracestore.Query{Service: "frontend"})
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 3 {
		t.Errorf("after rewrite FindTraceIDs(frontend) = %v, want 3 distinct", ids)
	}
	// Same ids but a different start is a different span (a retry).
	retry := Build(SpanSpec{Service: "frontend", Trace: Trace64, ID: SpanID(0x10), Name: "GET /", Kind: ptrace.SpanKindServer,
		Start: base.Add(-time.Minute + time.Second), Duration: time.Millisecond})
	write(t, s, retry)
	tr, _ := s.GetTrace(ctx, Trace64)
	if tr.Spans.SpanCount() != 2 {
		t.Errorf("span with same id and new start: %d spans, want 2", tr.Spans.SpanCount())
	}
}

func testIDs(t *testing.T, s tracestore.Store) {
	write(t, s, Fixture(Base()))
	ctx := context.Background()
	tr, err := s.GetTrace(ctx, Trace64)
	if err != nil {
		t.Fatal(err)
	}
	EachSpan(tr.Spans, func(_ pcommon.Resource, sp ptrace.Span) {
		if sp.TraceID() != Trace64 {
			t.Errorf("64-bit trace id came back as %s", sp.TraceID())
		}
	})
	// A 64-bit id differs from a 128-bit id with the same low half.
	if _, err := s.GetTrace(ctx, TraceID(1, 0x00f067aa0ba902b7)); !errors.Is(err, tracestore.ErrTraceNotFound) {
		t.Errorf("128-bit id sharing the low half of a 64-bit id: err = %v", err)
	}
	ids, err := s.FindTraceIDs(ctx, tracestore.Query{Service: "frontend", Tags: map[string]string{"http.method": "POST"}})
	if err != nil || len(ids) != 1 || ids[0] != Trace64 {
		t.Errorf("FindTraceIDs(POST) = %v, %v; want [%s]", ids, err, Trace64)
	}
}

func testServices(t *testing.T, s tracestore.Store) {
	write(t, s, Fixture(Base()))
	got, err := s.GetServices(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"details", "frontend", "productpage", "ratings", "reviews"}
	if !slices.Equal(got, want) {
		t.Errorf("GetServices = %v, want %v", got, want)
	}
}

func testOperations(t *testing.T, s tracestore.Store) {
	write(t, s, Fixture(Base()))
	ctx := context.Background()
	for _, tc := range []struct {
		service, kind string
		want          []tracestore.Operation
	}{
		{"frontend", "", []tracestore.Operation{{Name: "GET /", SpanKind: "server"}, {Name: "GET /reviews", SpanKind: "client"}}},
		{"frontend", "server", []tracestore.Operation{{Name: "GET /", SpanKind: "server"}}},
		{"frontend", "client", []tracestore.Operation{{Name: "GET /reviews", SpanKind: "client"}}},
		{"reviews", "", []tracestore.Operation{{Name: "GET /ratings", SpanKind: "client"}, {Name: "GET /reviews", SpanKind: "server"}}},
		{"frontend", "producer", []tracestore.Operation{}},
		{"nosuch", "", []tracestore.Operation{}},
	} {
		got, err := s.GetOperations(ctx, tc.service, tc.kind)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 && len(tc.want) == 0 {
			continue
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("GetOperations(%q, %q) = %v, want %v", tc.service, tc.kind, got, tc.want)
		}
	}
	if _, err := s.GetOperations(ctx, "frontend", "sideways"); !errors.Is(err, tracestore.ErrBadQuery) {
		t.Errorf("bad span kind: err = %v, want ErrBadQuery", err)
	}
}

func testRemoteServices(t *testing.T, s tracestore.Store) {
	write(t, s, Fixture(Base()))
	ctx := context.Background()
	got, err := s.GetRemoteServices(ctx, "frontend")
	if err != nil || !slices.Equal(got, []string{"reviews"}) {
		t.Errorf("GetRemoteServices(frontend) = %v, %v", got, err)
	}
	got, _ = s.GetRemoteServices(ctx, "productpage")
	if !slices.Equal(got, []string{"details"}) {
		t.Errorf("GetRemoteServices(productpage) = %v", got)
	}
	keys := s.Capabilities().AutocompleteKeys
	if slices.Contains(keys, "http.method") {
		got, _ := s.GetTagValues(ctx, "http.method")
		if !slices.Equal(got, []string{"GET", "POST"}) {
			t.Errorf("GetTagValues(http.method) = %v", got)
		}
	}
	if got, _ := s.GetTagValues(ctx, "not.autocompleted"); len(got) != 0 {
		t.Errorf("GetTagValues of a key not configured = %v", got)
	}
}

// FindCase is one row of the query-semantics table.
type FindCase struct {
	Name  string
	Query func(base time.Time) tracestore.Query
	Want  []pcommon.TraceID // in order: newest first
}

// FindCases is the query-semantics table over Fixture; the query API tests
// run the same rows through HTTP.
func FindCases() []FindCase {
	ms := time.Millisecond
	ids := func(ids ...pcommon.TraceID) []pcommon.TraceID { return ids }
	q := func(f func(b time.Time) tracestore.Query) func(time.Time) tracestore.Query { return f }
	return []FindCase{
		{"service", q(func(time.Time) tracestore.Query { return tracestore.Query{Service: "frontend"} }),
			ids(TraceBookinfo, Trace64, TraceGetFast)},
		{"service+operation", q(func(time.Time) tracestore.Query {
			return tracestore.Query{Service: "reviews", Operation: "GET /ratings"}
		}),
			ids(TraceBookinfo)},
		{"service+unknown operation", q(func(time.Time) tracestore.Query { return tracestore.Query{Service: "frontend", Operation: "nope"} }),
			ids()},
		{"unknown service", q(func(time.Time) tracestore.Query { return tracestore.Query{Service: "nope"} }), ids()},
		{"tag", q(func(time.Time) tracestore.Query {
			return tracestore.Query{Service: "frontend", Tags: map[string]string{"http.method": "GET"}}
		}), ids(TraceBookinfo, TraceGetFast)},
		{"int tag", q(func(time.Time) tracestore.Query {
			return tracestore.Query{Service: "frontend", Tags: map[string]string{"http.status_code": "201"}}
		}), ids(Trace64)},
		{"two tags", q(func(time.Time) tracestore.Query {
			return tracestore.Query{Service: "frontend", Tags: map[string]string{"http.method": "GET", "guid:x-request-id": "req-1"}}
		}), ids(TraceBookinfo)},
		{"tags on different spans do not combine", q(func(time.Time) tracestore.Query {
			return tracestore.Query{Service: "frontend", Tags: map[string]string{"guid:x-request-id": "req-1", "peer.service": "reviews"}}
		}), ids()},
		{"resource tag", q(func(time.Time) tracestore.Query {
			return tracestore.Query{Service: "frontend", Tags: map[string]string{"host.name": "node-3"}}
		}), ids(Trace64)},
		{"event attribute tag", q(func(time.Time) tracestore.Query {
			return tracestore.Query{Service: "frontend", Tags: map[string]string{"event.note": "cache miss"}}
		}), ids(Trace64)},
		{"error=true from status", q(func(time.Time) tracestore.Query {
			return tracestore.Query{Service: "reviews", Tags: map[string]string{"error": "true"}}
		}), ids(TraceBookinfo)},
		{"tag+minDuration", q(func(time.Time) tracestore.Query {
			return tracestore.Query{Service: "frontend", Tags: map[string]string{"http.method": "GET"}, DurationMin: 50 * ms}
		}), ids(TraceBookinfo)},
		{"tag+maxDuration", q(func(time.Time) tracestore.Query {
			return tracestore.Query{Service: "frontend", Tags: map[string]string{"http.method": "GET"}, DurationMax: 50 * ms}
		}), ids(TraceGetFast)},
		{"tag+duration range excludes all", q(func(time.Time) tracestore.Query {
			return tracestore.Query{Service: "frontend", Tags: map[string]string{"http.method": "POST"}, DurationMin: 11 * ms, DurationMax: 50 * ms}
		}), ids()},
		{"operation+tag+duration", q(func(time.Time) tracestore.Query {
			return tracestore.Query{Service: "frontend", Operation: "GET /", Tags: map[string]string{"http.method": "GET"}, DurationMin: 15 * ms, DurationMax: 25 * ms}
		}), ids(TraceGetFast)},
		{"minDuration", q(func(time.Time) tracestore.Query {
			return tracestore.Query{Service: "productpage", DurationMin: time.Second}
		}),
			ids(TraceSlow)},
		{"minDuration across services", q(func(time.Time) tracestore.Query { return tracestore.Query{Service: "frontend", DurationMin: 15 * ms} }),
			ids(TraceBookinfo, TraceGetFast)},
		{"minDuration+operation", q(func(time.Time) tracestore.Query {
			return tracestore.Query{Service: "productpage", Operation: "details", DurationMin: 1600 * ms}
		}), ids()},
		{"maxDuration only", q(func(time.Time) tracestore.Query { return tracestore.Query{Service: "frontend", DurationMax: 15 * ms} }),
			ids(Trace64)},
		{"time window", q(func(b time.Time) tracestore.Query {
			return tracestore.Query{Service: "frontend", StartMin: b.Add(-90 * time.Second), StartMax: b.Add(-30 * time.Second)}
		}), ids(Trace64)},
		{"time window end only", q(func(b time.Time) tracestore.Query {
			return tracestore.Query{Service: "frontend", StartMax: b.Add(-90 * time.Second)}
		}), ids(TraceGetFast)},
		{"limit", q(func(time.Time) tracestore.Query { return tracestore.Query{Service: "frontend", Limit: 2} }),
			ids(TraceBookinfo, Trace64)},
		{"span kind", q(func(time.Time) tracestore.Query { return tracestore.Query{Service: "frontend", SpanKind: "client"} }),
			ids(TraceBookinfo)},
		{"remote service", q(func(time.Time) tracestore.Query {
			return tracestore.Query{Service: "frontend", RemoteService: "reviews"}
		}),
			ids(TraceBookinfo)},
		{"remote service+duration", q(func(time.Time) tracestore.Query {
			return tracestore.Query{Service: "productpage", RemoteService: "details", DurationMin: time.Second}
		}), ids(TraceSlow)},
		{"annotation event", q(func(time.Time) tracestore.Query {
			return tracestore.Query{Service: "frontend", Annotations: []string{"cache miss"}}
		}), ids(Trace64)},
		{"annotation key + tag", q(func(time.Time) tracestore.Query {
			return tracestore.Query{Service: "reviews", Annotations: []string{"error"}, Tags: map[string]string{"http.method": "GET"}}
		}), ids(TraceBookinfo)},
		{"no service, annotation", q(func(time.Time) tracestore.Query { return tracestore.Query{Annotations: []string{"cache miss"}} }),
			ids(Trace64)},
		{"no service, tag+duration", q(func(time.Time) tracestore.Query {
			return tracestore.Query{Tags: map[string]string{"http.method": "GET"}, DurationMin: time.Second}
		}), ids(TraceSlow)},
		{"no service at all", q(func(time.Time) tracestore.Query { return tracestore.Query{} }),
			ids(TraceBookinfo, Trace64, TraceGetFast, TraceSlow)},
		{"shared server half by tag", q(func(time.Time) tracestore.Query {
			return tracestore.Query{Service: "ratings", Tags: map[string]string{"zipkin.shared": "true"}}
		}), ids(TraceBookinfo)},
	}
}

func testFindTraces(t *testing.T, s tracestore.Store) {
	base := Base()
	write(t, s, Fixture(base))
	ctx := context.Background()
	for _, tc := range FindCases() {
		t.Run(tc.Name, func(t *testing.T) {
			q := tc.Query(base)
			ids, err := s.FindTraceIDs(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ids, tc.Want) && !(len(ids) == 0 && len(tc.Want) == 0) {
				t.Errorf("FindTraceIDs = %v, want %v", ids, tc.Want)
			}
			traces, err := s.FindTraces(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			if len(traces) != len(tc.Want) {
				t.Fatalf("FindTraces returned %d traces, want %d", len(traces), len(tc.Want))
			}
			for i, tr := range traces {
				if tr.ID != tc.Want[i] || tr.Spans.SpanCount() != FixtureSpanCount[tr.ID] {
					t.Errorf("trace %d: %s with %d spans, want %s with %d", i, tr.ID, tr.Spans.SpanCount(), tc.Want[i], FixtureSpanCount[tc.Want[i]])
				}
			}
		})
	}
}

func testBadQuery(t *testing.T, s tracestore.Store) {
	ctx := context.Background()
	now := time.Now()
	for _, q := range []tracestore.Query{
		{Service: "a", DurationMin: time.Second, DurationMax: time.Millisecond},
		{Service: "a", StartMin: now, StartMax: now.Add(-time.Hour)},
		{Service: "a", Limit: -1},
		{Service: "a", SpanKind: "sideways"},
	} {
		if _, err := s.FindTraceIDs(ctx, q); !errors.Is(err, tracestore.ErrBadQuery) {
			t.Errorf("FindTraceIDs(%+v): err = %v, want ErrBadQuery", q, err)
		}
	}
}

func testDependencies(t *testing.T, s tracestore.Store) {
	write(t, s, Fixture(Base()))
	got, err := s.GetDependencies(context.Background(), time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	want := []tracestore.DependencyLink{
		{Parent: "frontend", Child: "reviews", CallCount: 1},
		{Parent: "productpage", Child: "details", CallCount: 1},
		{Parent: "reviews", Child: "ratings", CallCount: 1},
	}
	if !slices.Equal(got, want) {
		t.Errorf("GetDependencies = %v, want %v", got, want)
	}
	got, err = s.GetDependencies(context.Background(), time.Now().Add(-2*time.Hour), time.Hour)
	if err != nil || len(got) != 0 {
		t.Errorf("GetDependencies of an empty window = %v, %v", got, err)
	}
}

func testLargeTrace(t *testing.T, s tracestore.Store) {
	const n = 20000
	base := Base()
	id := TraceID(0xabcdef, 0x123456)
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "batch")
	ss := rs.ScopeSpans().AppendEmpty()
	for i := 0; i < n; i++ {
		sp := ss.Spans().AppendEmpty()
		sp.SetTraceID(id)
		sp.SetSpanID(SpanID(uint64(i + 1)))
		if i > 0 {
			sp.SetParentSpanID(SpanID(1))
		}
		sp.SetName(fmt.Sprintf("step-%d", i%10))
		sp.SetKind(ptrace.SpanKindInternal)
		sp.SetStartTimestamp(pcommon.NewTimestampFromTime(base.Add(time.Duration(i) * time.Microsecond)))
		sp.SetEndTimestamp(pcommon.NewTimestampFromTime(base.Add(time.Duration(i+5) * time.Microsecond)))
		sp.Attributes().PutInt("i", int64(i))
	}
	write(t, s, td)
	tr, err := s.GetTrace(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if got := tr.Spans.SpanCount(); got != min(n, s.Capabilities().MaxSpansPerTrace) {
		t.Errorf("large trace: %d spans, want %d", got, n)
	}
	ids, err := s.FindTraceIDs(context.Background(), tracestore.Query{Service: "batch", Tags: map[string]string{"i": "19999"}})
	if err != nil || len(ids) != 1 {
		t.Errorf("find in large trace: %v %v", ids, err)
	}
}

func testManyTraces(t *testing.T, s tracestore.Store) {
	base := Base()
	var specs []SpanSpec
	for i := 0; i < 3000; i++ {
		specs = append(specs, SpanSpec{Service: "svc", Trace: TraceID(7, uint64(i+1)), ID: SpanID(1), Name: "op", Kind: ptrace.SpanKindServer,
			Start: base.Add(time.Duration(i) * time.Millisecond), Duration: time.Millisecond})
	}
	write(t, s, Build(specs...))
	ctx := context.Background()
	ids, err := s.FindTraceIDs(ctx, tracestore.Query{Service: "svc"})
	if err != nil || len(ids) != tracestore.DefaultLimit {
		t.Fatalf("default limit: %d ids, %v", len(ids), err)
	}
	if ids[0] != TraceID(7, 3000) {
		t.Errorf("newest first: got %s", ids[0])
	}
	ids, _ = s.FindTraceIDs(ctx, tracestore.Query{Service: "svc", Limit: 100000})
	if len(ids) != tracestore.MaxLimit {
		t.Errorf("limit above max: %d ids, want %d", len(ids), tracestore.MaxLimit)
	}
}

func testSplitBatches(t *testing.T, s tracestore.Store) {
	// Each service's proxy reports its own half in its own batch, the client
	// half after the server half.
	base := Base()
	all := Fixture(base)
	ctx := context.Background()
	for i := all.ResourceSpans().Len() - 1; i >= 0; i-- {
		td := ptrace.NewTraces()
		all.ResourceSpans().At(i).CopyTo(td.ResourceSpans().AppendEmpty())
		if err := s.WriteTraces(ctx, td); err != nil {
			t.Fatal(err)
		}
	}
	tr, err := s.GetTrace(ctx, TraceBookinfo)
	if err != nil || tr.Spans.SpanCount() != 5 {
		t.Fatalf("split batches: %v, %v", tr, err)
	}
	deps, _ := s.GetDependencies(ctx, time.Now(), time.Hour)
	if len(deps) != 3 {
		t.Errorf("dependencies from split batches = %v", deps)
	}
}
