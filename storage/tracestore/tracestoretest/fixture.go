// Package tracestoretest is the conformance suite every tracestore backend
// runs (RunAll), and the fixture the query API tests share.
package tracestoretest

import (
	"encoding/binary"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// Fixture trace ids. Trace64 has a 64-bit id (upper half zero), the way
// Zipkin B3 and Envoy report it.
var (
	TraceBookinfo = TraceID(0x0af7651916cd43dd, 0x8448eb211c80319c)
	Trace64       = TraceID(0, 0x00f067aa0ba902b7)
	TraceSlow     = TraceID(0x1111111111111111, 0x2222222222222222)
	TraceGetFast  = TraceID(0x3333333333333333, 0x4444444444444444)
)

// Fixture span ids.
var (
	SpanRoot    = SpanID(0x01)
	SpanReviews = SpanID(0x02) // shared by frontend CLIENT and reviews SERVER
	SpanRatings = SpanID(0x03) // shared by reviews CLIENT and ratings SERVER
)

// TraceID builds a trace id from its two halves.
func TraceID(hi, lo uint64) pcommon.TraceID {
	var id pcommon.TraceID
	binary.BigEndian.PutUint64(id[:8], hi)
	binary.BigEndian.PutUint64(id[8:], lo)
	return id
}

// SpanID builds a span id.
func SpanID(v uint64) pcommon.SpanID {
	var id pcommon.SpanID
	binary.BigEndian.PutUint64(id[:], v)
	return id
}

// SpanSpec describes one fixture span.
type SpanSpec struct {
	Service    string
	ResAttrs   map[string]string
	Trace      pcommon.TraceID
	ID, Parent pcommon.SpanID
	Name       string
	Kind       ptrace.SpanKind
	Start      time.Time
	Duration   time.Duration
	Attrs      map[string]any
	Error      bool
	Events     []string
	LinkTo     pcommon.TraceID
	StatusMsg  string
}

// Build puts the specs into one ptrace.Traces, one ResourceSpans per span.
func Build(specs ...SpanSpec) ptrace.Traces {
	td := ptrace.NewTraces()
	for _, s := range specs {
		rs := td.ResourceSpans().AppendEmpty()
		rs.Resource().Attributes().PutStr("service.name", s.Service)
		for k, v := range s.ResAttrs {
			rs.Resource().Attributes().PutStr(k, v)
		}
		ss := rs.ScopeSpans().AppendEmpty()
		ss.Scope().SetName("meshlens-test")
		sp := ss.Spans().AppendEmpty()
		sp.SetTraceID(s.Trace)
		sp.SetSpanID(s.ID)
		sp.SetParentSpanID(s.Parent)
		sp.SetName(s.Name)
		sp.SetKind(s.Kind)
		sp.SetStartTimestamp(pcommon.NewTimestampFromTime(s.Start))
		sp.SetEndTimestamp(pcommon.NewTimestampFromTime(s.Start.Add(s.Duration)))
		for k, v := range s.Attrs {
			_ = sp.Attributes().PutEmpty(k).FromRaw(v)
		}
		if s.Error {
			sp.Status().SetCode(ptrace.StatusCodeError)
			sp.Status().SetMessage(s.StatusMsg)
		}
		for i, e := range s.Events {
			ev := sp.Events().AppendEmpty()
			ev.SetName(e)
			ev.SetTimestamp(pcommon.NewTimestampFromTime(s.Start.Add(time.Duration(i+1) * time.Microsecond)))
			ev.Attributes().PutStr("event.note", e)
		}
		if !s.LinkTo.IsEmpty() {
			l := sp.Links().AppendEmpty()
			l.SetTraceID(s.LinkTo)
			l.SetSpanID(SpanID(0x99))
		}
	}
	return td
}

// Fixture returns the suite's spans, relative to base (which must be within
// the store's lookback, e.g. now minus a few minutes):
//
//   - TraceBookinfo at base: frontend SERVER "GET /" (100ms, GET, 200) →
//     frontend CLIENT "GET /reviews" and reviews SERVER "GET /reviews"
//     sharing SpanReviews (Envoy shared_span_context) → reviews CLIENT
//     "GET /ratings" (error) and ratings SERVER sharing SpanRatings.
//   - Trace64 at base-1m: frontend SERVER "GET /" 10ms, POST, event
//     "cache miss".
//   - TraceSlow at base-10m: productpage SERVER "GET /productpage" 2s →
//     productpage CLIENT "details" (own id) → details SERVER (child of the
//     client span, Jaeger style).
//   - TraceGetFast at base-2m: frontend SERVER "GET /" 20ms, GET.
func Fixture(base time.Time) ptrace.Traces {
	ms := time.Millisecond
	return Build(
		SpanSpec{Service: "frontend", ResAttrs: map[string]string{"host.name": "node-1"}, Trace: TraceBookinfo, ID: SpanRoot,
			Name: "GET /", Kind: ptrace.SpanKindServer, Start: base, Duration: 100 * ms,
			Attrs: map[string]any{"http.method": "GET", "http.status_code": int64(200), "guid:x-request-id": "req-1"}},
		SpanSpec{Service: "frontend", ResAttrs: map[string]string{"host.name": "node-1"}, Trace: TraceBookinfo, ID: SpanReviews, Parent: SpanRoot,
			Name: "GET /reviews", Kind: ptrace.SpanKindClient, Start: base.Add(5 * ms), Duration: 80 * ms,
			Attrs: map[string]any{"http.method": "GET", "peer.service": "reviews", "upstream_cluster": "outbound|9080||reviews"}},
		SpanSpec{Service: "reviews", ResAttrs: map[string]string{"host.name": "node-2"}, Trace: TraceBookinfo, ID: SpanReviews, Parent: SpanRoot,
			Name: "GET /reviews", Kind: ptrace.SpanKindServer, Start: base.Add(6 * ms), Duration: 70 * ms,
			Attrs: map[string]any{"http.method": "GET", "zipkin.shared": true}},
		SpanSpec{Service: "reviews", ResAttrs: map[string]string{"host.name": "node-2"}, Trace: TraceBookinfo, ID: SpanRatings, Parent: SpanReviews,
			Name: "GET /ratings", Kind: ptrace.SpanKindClient, Start: base.Add(10 * ms), Duration: 30 * ms,
			Attrs: map[string]any{"http.method": "GET", "peer.service": "ratings", "http.status_code": int64(503)}, Error: true, StatusMsg: "upstream reset"},
		SpanSpec{Service: "ratings", Trace: TraceBookinfo, ID: SpanRatings, Parent: SpanReviews,
			// Same id and same start as the client half: only the kind
			// tells them apart.
			Name: "GET /ratings", Kind: ptrace.SpanKindServer, Start: base.Add(10 * ms), Duration: 25 * ms,
			Attrs: map[string]any{"http.method": "GET", "zipkin.shared": true, "http.status_code": int64(503)}, Error: true},

		SpanSpec{Service: "frontend", ResAttrs: map[string]string{"host.name": "node-3"}, Trace: Trace64, ID: SpanID(0x10),
			Name: "GET /", Kind: ptrace.SpanKindServer, Start: base.Add(-time.Minute), Duration: 10 * ms,
			Attrs: map[string]any{"http.method": "POST", "http.status_code": int64(201)}, Events: []string{"cache miss"}},

		SpanSpec{Service: "productpage", Trace: TraceSlow, ID: SpanID(0x20),
			Name: "GET /productpage", Kind: ptrace.SpanKindServer, Start: base.Add(-10 * time.Minute), Duration: 2 * time.Second,
			Attrs: map[string]any{"http.method": "GET", "http.status_code": int64(200)}},
		SpanSpec{Service: "productpage", Trace: TraceSlow, ID: SpanID(0x21), Parent: SpanID(0x20),
			Name: "details", Kind: ptrace.SpanKindClient, Start: base.Add(-10*time.Minute + ms), Duration: 1500 * ms,
			Attrs: map[string]any{"peer.service": "details"}},
		SpanSpec{Service: "details", Trace: TraceSlow, ID: SpanID(0x22), Parent: SpanID(0x21),
			Name: "GET /details", Kind: ptrace.SpanKindServer, Start: base.Add(-10*time.Minute + 2*ms), Duration: 1400 * ms,
			LinkTo: TraceGetFast},

		SpanSpec{Service: "frontend", ResAttrs: map[string]string{"host.name": "node-1"}, Trace: TraceGetFast, ID: SpanID(0x30),
			Name: "GET /", Kind: ptrace.SpanKindServer, Start: base.Add(-2 * time.Minute), Duration: 20 * ms,
			Attrs: map[string]any{"http.method": "GET", "http.status_code": int64(200)}},
	)
}

// FixtureSpanCount is the number of spans per fixture trace.
var FixtureSpanCount = map[pcommon.TraceID]int{TraceBookinfo: 5, Trace64: 1, TraceSlow: 3, TraceGetFast: 1}
