package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	zipkinmodel "github.com/openzipkin/zipkin-go/model"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// TestOTelSDKExporters sends a trace made by the OpenTelemetry Go SDK through
// its OTLP gRPC and OTLP HTTP (protobuf) exporters to the real binary, then
// reads it back through Jaeger's /api/traces/{id}, Jaeger's api_v3 and
// Zipkin's /api/v2/trace/{id}, comparing span for span with what the SDK
// itself recorded (a span recorder on the same TracerProvider sees exactly
// the spans the exporter sent).
func TestOTelSDKExporters(t *testing.T) {
	in := start(t, t.TempDir())
	for _, tc := range []struct {
		name     string
		exporter func(ctx context.Context) (sdktrace.SpanExporter, error)
	}{
		{"grpc", func(ctx context.Context) (sdktrace.SpanExporter, error) {
			return otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(in.addrs["otlp_grpc"]), otlptracegrpc.WithInsecure())
		}},
		{"http", func(ctx context.Context) (sdktrace.SpanExporter, error) {
			return otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(in.addrs["otlp_http"]), otlptracehttp.WithInsecure())
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := ctxTimeout(t, 30*time.Second)
			exp, err := tc.exporter(ctx)
			if err != nil {
				t.Fatalf("exporter: %v", err)
			}
			service := "sdk-shop-" + tc.name
			res := resource.NewWithAttributes("",
				attribute.String("service.name", service),
				attribute.String("service.version", "1.4.2"),
				attribute.String("host.name", "node-7"),
				attribute.Int64("process.pid", 4242),
			)
			rec := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(
				sdktrace.WithResource(res),
				sdktrace.WithSampler(sdktrace.AlwaysSample()),
				sdktrace.WithSpanProcessor(rec),
				sdktrace.WithBatcher(exp),
			)
			defer func() { _ = tp.Shutdown(context.Background()) }()
			ids := sdkTrace(tp)
			if err := tp.ForceFlush(ctx); err != nil {
				t.Fatalf("ForceFlush: %v", err)
			}
			want := map[trace.TraceID][]sdktrace.ReadOnlySpan{}
			for _, s := range rec.Ended() {
				want[s.SpanContext().TraceID()] = append(want[s.SpanContext().TraceID()], s)
			}
			if len(want[ids.main]) != 5 || len(want[ids.linked]) != 1 {
				t.Fatalf("recorder saw %d + %d spans, want 5 + 1", len(want[ids.main]), len(want[ids.linked]))
			}
			for _, id := range []trace.TraceID{ids.main, ids.linked} {
				spans := want[id]
				var got jaegerTraceJSON
				eventually(t, 10*time.Second, "trace "+id.String()+" readable with every span", func() (bool, string) {
					got = jaegerTrace(t, in.url("/api/traces/"+id.String()))
					return len(got.Spans) == len(spans), fmt.Sprintf("%d spans of %d", len(got.Spans), len(spans))
				})
				checkJaegerSpans(t, got, spans)
				checkV3Spans(t, in.url("/api/v3/traces/"+id.String()), spans)
				checkZipkinSpans(t, in.url("/api/v2/trace/"+id.String()), spans)
			}
		})
	}
}

type sdkTraceIDs struct{ main, linked trace.TraceID }

// sdkTrace makes two traces with explicit timestamps carrying nanoseconds
// below the microsecond (the APIs must truncate, not round): a one-span
// producer trace, and a five-span request trace that links to it, with
// every span kind, attributes of every OTLP type, events with attributes
// and an error status.
func sdkTrace(tp trace.TracerProvider) sdkTraceIDs {
	tr := tp.Tracer("shop/checkout", trace.WithInstrumentationVersion("0.9.1"))
	base := time.Now().Add(-2 * time.Minute).Truncate(time.Second).Add(123_456_789)
	at := func(us int64) time.Time { return base.Add(time.Duration(us)*time.Microsecond + 321) }

	_, prod := tr.Start(context.Background(), "publish order", trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithTimestamp(at(-5000)), trace.WithAttributes(attribute.String("messaging.system", "kafka")))
	prod.End(trace.WithTimestamp(at(-4200)))

	ctx, root := tr.Start(context.Background(), "GET /checkout", trace.WithSpanKind(trace.SpanKindServer),
		trace.WithTimestamp(at(0)),
		trace.WithLinks(trace.Link{SpanContext: prod.SpanContext(), Attributes: []attribute.KeyValue{attribute.String("link.reason", "order")}}),
		trace.WithAttributes(
			attribute.String("http.request.method", "GET"),
			attribute.Int64("http.response.status_code", 503),
			attribute.Float64("shop.cart.value", 12.75),
			attribute.Bool("shop.member", true),
			attribute.StringSlice("shop.items", []string{"book", "pen"}),
			attribute.Int64Slice("shop.qty", []int64{1, 3}),
		))
	root.AddEvent("cart loaded", trace.WithTimestamp(at(150)), trace.WithAttributes(attribute.Int64("items", 2), attribute.String("cart.id", "c-9")))
	root.SetStatus(codes.Error, "inventory unavailable")

	cctx, client := tr.Start(ctx, "GET /inventory", trace.WithSpanKind(trace.SpanKindClient), trace.WithTimestamp(at(200)),
		trace.WithAttributes(attribute.String("server.address", "inventory"), attribute.Int64("server.port", 8080)))
	_, internal := tr.Start(cctx, "retry backoff", trace.WithTimestamp(at(300)))
	internal.AddEvent("sleep", trace.WithTimestamp(at(310)))
	internal.End(trace.WithTimestamp(at(1300)))
	client.SetStatus(codes.Error, "")
	client.End(trace.WithTimestamp(at(2500)))

	_, cons := tr.Start(ctx, "consume stock event", trace.WithSpanKind(trace.SpanKindConsumer), trace.WithTimestamp(at(2600)),
		trace.WithAttributes(attribute.BoolSlice("flags", []bool{true, false}), attribute.Float64Slice("weights", []float64{0.5, 1.25})))
	cons.SetStatus(codes.Ok, "")
	cons.End(trace.WithTimestamp(at(2700)))

	_, internal2 := tr.Start(ctx, "render", trace.WithSpanKind(trace.SpanKindInternal), trace.WithTimestamp(at(2800)))
	internal2.End(trace.WithTimestamp(at(2800)))

	root.End(trace.WithTimestamp(at(3000)))
	return sdkTraceIDs{main: root.SpanContext().TraceID(), linked: prod.SpanContext().TraceID()}
}

func usOf(t time.Time) uint64 { return uint64(t.UnixNano() / 1000) }

func durUS(s sdktrace.ReadOnlySpan) uint64 {
	return uint64(s.EndTime().Sub(s.StartTime()).Nanoseconds() / 1000)
}

// Jaeger's /api/traces JSON (model/json), only what the checks read.
type jaegerTraceJSON struct {
	TraceID string `json:"traceID"`
	Spans   []struct {
		TraceID       string `json:"traceID"`
		SpanID        string `json:"spanID"`
		OperationName string `json:"operationName"`
		References    []struct {
			RefType string `json:"refType"`
			TraceID string `json:"traceID"`
			SpanID  string `json:"spanID"`
		} `json:"references"`
		StartTime uint64       `json:"startTime"`
		Duration  uint64       `json:"duration"`
		Tags      []jaegerKV   `json:"tags"`
		Logs      []jaegerLogJ `json:"logs"`
		ProcessID string       `json:"processID"`
	} `json:"spans"`
	Processes map[string]struct {
		ServiceName string     `json:"serviceName"`
		Tags        []jaegerKV `json:"tags"`
	} `json:"processes"`
}

type jaegerKV struct {
	Key   string `json:"key"`
	Type  string `json:"type"`
	Value any    `json:"value"`
}

type jaegerLogJ struct {
	Timestamp uint64     `json:"timestamp"`
	Fields    []jaegerKV `json:"fields"`
}

func jaegerTrace(t *testing.T, url string) jaegerTraceJSON {
	t.Helper()
	var env struct {
		Data   []jaegerTraceJSON `json:"data"`
		Errors []struct {
			Msg string `json:"msg"`
		} `json:"errors"`
	}
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return jaegerTraceJSON{}
	}
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		t.Fatalf("GET %s: %s: decode: %v", url, resp.Status, err)
	}
	if resp.StatusCode != 200 || len(env.Data) != 1 {
		t.Fatalf("GET %s: %s, %d traces, errors %v", url, resp.Status, len(env.Data), env.Errors)
	}
	return env.Data[0]
}

// jaegerTag renders an attribute the way Jaeger's OTLP translator does:
// typed scalars, everything else (slices, maps) as its JSON string.
func jaegerTag(kv attribute.KeyValue) jaegerKV {
	switch kv.Value.Type() {
	case attribute.BOOL:
		return jaegerKV{string(kv.Key), "bool", kv.Value.AsBool()}
	case attribute.INT64:
		return jaegerKV{string(kv.Key), "int64", float64(kv.Value.AsInt64())} // JSON numbers decode as float64
	case attribute.FLOAT64:
		return jaegerKV{string(kv.Key), "float64", kv.Value.AsFloat64()}
	case attribute.STRING:
		return jaegerKV{string(kv.Key), "string", kv.Value.AsString()}
	}
	return jaegerKV{string(kv.Key), "string", pcommonString(kv)}
}

// pcommonString is the OTLP/JSON form of a slice attribute, as collectors
// and Jaeger stringify it.
func pcommonString(kv attribute.KeyValue) string {
	v := pcommon.NewValueEmpty()
	_ = v.FromRaw(attrRaw(kv.Value))
	return v.AsString()
}

func attrRaw(v attribute.Value) any {
	switch v.Type() {
	case attribute.BOOL:
		return v.AsBool()
	case attribute.INT64:
		return v.AsInt64()
	case attribute.FLOAT64:
		return v.AsFloat64()
	case attribute.STRING:
		return v.AsString()
	case attribute.BOOLSLICE:
		return toAny(v.AsBoolSlice())
	case attribute.INT64SLICE:
		return toAny(v.AsInt64Slice())
	case attribute.FLOAT64SLICE:
		return toAny(v.AsFloat64Slice())
	case attribute.STRINGSLICE:
		return toAny(v.AsStringSlice())
	}
	return v.Emit()
}

func toAny[T any](s []T) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

func sortKVs(kvs []jaegerKV) []jaegerKV {
	out := append([]jaegerKV(nil), kvs...)
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

func kvsString(kvs []jaegerKV) string {
	var b strings.Builder
	for _, kv := range sortKVs(kvs) {
		fmt.Fprintf(&b, "%s(%s)=%v ", kv.Key, kv.Type, kv.Value)
	}
	return b.String()
}

// wantJaegerTags is the tag set of one span: its attributes, the scope,
// and the synthetic span.kind / otel.status_code / error /
// otel.status_description tags of Jaeger's OTLP translation.
func wantJaegerTags(s sdktrace.ReadOnlySpan) []jaegerKV {
	var out []jaegerKV
	for _, kv := range s.Attributes() {
		out = append(out, jaegerTag(kv))
	}
	out = append(out, jaegerKV{"otel.scope.name", "string", s.InstrumentationScope().Name},
		jaegerKV{"otel.scope.version", "string", s.InstrumentationScope().Version})
	switch s.SpanKind() {
	case trace.SpanKindServer, trace.SpanKindClient, trace.SpanKindProducer, trace.SpanKindConsumer, trace.SpanKindInternal:
		out = append(out, jaegerKV{"span.kind", "string", s.SpanKind().String()})
	}
	switch s.Status().Code {
	case codes.Error:
		out = append(out, jaegerKV{"otel.status_code", "string", "ERROR"}, jaegerKV{"error", "bool", true})
		if s.Status().Description != "" {
			out = append(out, jaegerKV{"otel.status_description", "string", s.Status().Description})
		}
	case codes.Ok:
		out = append(out, jaegerKV{"otel.status_code", "string", "OK"})
	}
	return out
}

func checkJaegerSpans(t *testing.T, got jaegerTraceJSON, spans []sdktrace.ReadOnlySpan) {
	t.Helper()
	byID := map[string]int{}
	for i, s := range got.Spans {
		byID[s.SpanID] = i
	}
	if got.TraceID != spans[0].SpanContext().TraceID().String() {
		t.Errorf("jaeger traceID %s, want %s", got.TraceID, spans[0].SpanContext().TraceID())
	}
	for _, w := range spans {
		sid := w.SpanContext().SpanID().String()
		i, ok := byID[sid]
		if !ok {
			t.Errorf("jaeger: span %s (%s) missing", sid, w.Name())
			continue
		}
		g := got.Spans[i]
		where := "jaeger span " + w.Name()
		if g.TraceID != w.SpanContext().TraceID().String() || g.OperationName != w.Name() {
			t.Errorf("%s: traceID %s name %q", where, g.TraceID, g.OperationName)
		}
		if g.StartTime != usOf(w.StartTime()) || g.Duration != durUS(w) {
			t.Errorf("%s: start %d duration %d, want %d %d", where, g.StartTime, g.Duration, usOf(w.StartTime()), durUS(w))
		}
		var refs, wantRefs []string
		for _, r := range g.References {
			refs = append(refs, r.RefType+":"+r.TraceID+":"+r.SpanID)
		}
		if w.Parent().IsValid() {
			wantRefs = append(wantRefs, "CHILD_OF:"+w.Parent().TraceID().String()+":"+w.Parent().SpanID().String())
		}
		for _, l := range w.Links() {
			wantRefs = append(wantRefs, "FOLLOWS_FROM:"+l.SpanContext.TraceID().String()+":"+l.SpanContext.SpanID().String())
		}
		if strings.Join(refs, ",") != strings.Join(wantRefs, ",") {
			t.Errorf("%s: references %v, want %v", where, refs, wantRefs)
		}
		if a, b := kvsString(g.Tags), kvsString(wantJaegerTags(w)); a != b {
			t.Errorf("%s: tags\n got %s\nwant %s", where, a, b)
		}
		var wantLogs []jaegerLogJ
		for _, ev := range w.Events() {
			l := jaegerLogJ{Timestamp: usOf(ev.Time), Fields: []jaegerKV{{"event", "string", ev.Name}}}
			for _, kv := range ev.Attributes {
				l.Fields = append(l.Fields, jaegerTag(kv))
			}
			wantLogs = append(wantLogs, l)
		}
		if len(g.Logs) != len(wantLogs) {
			t.Errorf("%s: %d logs, want %d", where, len(g.Logs), len(wantLogs))
		} else {
			for k := range wantLogs {
				if g.Logs[k].Timestamp != wantLogs[k].Timestamp || kvsString(g.Logs[k].Fields) != kvsString(wantLogs[k].Fields) {
					t.Errorf("%s: log %d = %d %s, want %d %s", where, k, g.Logs[k].Timestamp, kvsString(g.Logs[k].Fields), wantLogs[k].Timestamp, kvsString(wantLogs[k].Fields))
				}
			}
		}
		p, ok := got.Processes[g.ProcessID]
		if !ok {
			t.Errorf("%s: process %q not in the trace's processes", where, g.ProcessID)
			continue
		}
		var wantProc []jaegerKV
		var svc string
		for _, kv := range w.Resource().Attributes() {
			if kv.Key == "service.name" {
				svc = kv.Value.AsString()
				continue
			}
			wantProc = append(wantProc, jaegerTag(kv))
		}
		if p.ServiceName != svc || kvsString(p.Tags) != kvsString(wantProc) {
			t.Errorf("%s: process %s %s, want %s %s", where, p.ServiceName, kvsString(p.Tags), svc, kvsString(wantProc))
		}
	}
}

// checkV3Spans reads api_v3's OTLP JSON answer, which must carry each span
// exactly as the SDK exported it: nanosecond times, typed attributes,
// events and links with their attributes, status, scope and resource.
func checkV3Spans(t *testing.T, url string, spans []sdktrace.ReadOnlySpan) {
	t.Helper()
	body := httpGetJSON(t, url)
	var env struct {
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal([]byte(body), &env); err != nil || len(env.Result) == 0 {
		t.Fatalf("api_v3 %s: %v: %.200s", url, err, body)
	}
	td, err := (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(env.Result)
	if err != nil {
		t.Fatalf("api_v3 %s: not OTLP JSON: %v", url, err)
	}
	type gotSpan struct {
		span  ptrace.Span
		scope pcommon.InstrumentationScope
		res   pcommon.Resource
	}
	byID := map[pcommon.SpanID]gotSpan{}
	for _, rs := range td.ResourceSpans().All() {
		for _, ss := range rs.ScopeSpans().All() {
			for _, sp := range ss.Spans().All() {
				byID[sp.SpanID()] = gotSpan{sp, ss.Scope(), rs.Resource()}
			}
		}
	}
	if len(byID) != len(spans) {
		t.Errorf("api_v3: %d spans, want %d", len(byID), len(spans))
	}
	for _, w := range spans {
		g, ok := byID[pcommon.SpanID(w.SpanContext().SpanID())]
		where := "api_v3 span " + w.Name()
		if !ok {
			t.Errorf("%s missing", where)
			continue
		}
		sp := g.span
		if sp.TraceID() != pcommon.TraceID(w.SpanContext().TraceID()) || sp.ParentSpanID() != pcommon.SpanID(w.Parent().SpanID()) || sp.Name() != w.Name() {
			t.Errorf("%s: ids %s/%s name %q", where, sp.TraceID(), sp.ParentSpanID(), sp.Name())
		}
		if int(sp.Kind()) != int(w.SpanKind()) {
			t.Errorf("%s: kind %v, want %v", where, sp.Kind(), w.SpanKind())
		}
		if sp.StartTimestamp().AsTime().UnixNano() != w.StartTime().UnixNano() || sp.EndTimestamp().AsTime().UnixNano() != w.EndTime().UnixNano() {
			t.Errorf("%s: times %d..%d, want %d..%d (nanoseconds)", where, sp.StartTimestamp(), sp.EndTimestamp(), w.StartTime().UnixNano(), w.EndTime().UnixNano())
		}
		if a, b := rawString(sp.Attributes().AsRaw()), rawString(attrsRaw(w.Attributes())); a != b {
			t.Errorf("%s: attributes\n got %s\nwant %s", where, a, b)
		}
		// The SDK numbers its codes Unset, Error, Ok; OTLP Unset, Ok, Error.
		otlpCode := map[codes.Code]ptrace.StatusCode{codes.Unset: ptrace.StatusCodeUnset, codes.Ok: ptrace.StatusCodeOk, codes.Error: ptrace.StatusCodeError}
		if sp.Status().Code() != otlpCode[w.Status().Code] || sp.Status().Message() != w.Status().Description {
			t.Errorf("%s: status %v %q, want %v %q", where, sp.Status().Code(), sp.Status().Message(), w.Status().Code, w.Status().Description)
		}
		if sp.Events().Len() != len(w.Events()) {
			t.Errorf("%s: %d events, want %d", where, sp.Events().Len(), len(w.Events()))
		} else {
			for k, ev := range w.Events() {
				ge := sp.Events().At(k)
				if ge.Name() != ev.Name || ge.Timestamp().AsTime().UnixNano() != ev.Time.UnixNano() || rawString(ge.Attributes().AsRaw()) != rawString(attrsRaw(ev.Attributes)) {
					t.Errorf("%s: event %d = %q %d %s", where, k, ge.Name(), ge.Timestamp(), rawString(ge.Attributes().AsRaw()))
				}
			}
		}
		if sp.Links().Len() != len(w.Links()) {
			t.Errorf("%s: %d links, want %d", where, sp.Links().Len(), len(w.Links()))
		} else {
			for k, l := range w.Links() {
				gl := sp.Links().At(k)
				if gl.TraceID() != pcommon.TraceID(l.SpanContext.TraceID()) || gl.SpanID() != pcommon.SpanID(l.SpanContext.SpanID()) || rawString(gl.Attributes().AsRaw()) != rawString(attrsRaw(l.Attributes)) {
					t.Errorf("%s: link %d = %s/%s %s", where, k, gl.TraceID(), gl.SpanID(), rawString(gl.Attributes().AsRaw()))
				}
			}
		}
		if g.scope.Name() != w.InstrumentationScope().Name || g.scope.Version() != w.InstrumentationScope().Version {
			t.Errorf("%s: scope %s %s", where, g.scope.Name(), g.scope.Version())
		}
		if a, b := rawString(g.res.Attributes().AsRaw()), rawString(attrsRaw(w.Resource().Attributes())); a != b {
			t.Errorf("%s: resource\n got %s\nwant %s", where, a, b)
		}
	}
}

func attrsRaw(kvs []attribute.KeyValue) map[string]any {
	out := map[string]any{}
	for _, kv := range kvs {
		out[string(kv.Key)] = attrRaw(kv.Value)
	}
	return out
}

// rawString renders attributes canonically (sorted keys, numbers as
// JSON), so that int64 and float64 are told apart by their JSON form only
// where they differ, and a pcommon map compares with an SDK attribute set.
func rawString(m map[string]any) string {
	v := pcommon.NewMap()
	_ = v.FromRaw(m)
	keys := make([]string, 0, v.Len())
	for k := range v.All() {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		val, _ := v.Get(k)
		fmt.Fprintf(&b, "%s:%s=%s ", k, val.Type(), val.AsString())
	}
	return b.String()
}

// checkZipkinSpans reads Zipkin's v2 JSON answer: the OTel-to-Zipkin
// mapping keeps ids, kind (none for internal), microsecond timestamp and
// duration, every attribute as a string tag, the error status as the
// "error" tag (its description, or "true") plus otel.status_code, events as
// annotations, and the service as the local endpoint.
func checkZipkinSpans(t *testing.T, url string, spans []sdktrace.ReadOnlySpan) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s: %s", url, resp.Status, b)
	}
	var got []zipkinmodel.SpanModel
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("zipkin %s: %v", url, err)
	}
	byID := map[string]zipkinmodel.SpanModel{}
	for _, s := range got {
		byID[s.ID.String()] = s
	}
	if len(got) != len(spans) {
		t.Errorf("zipkin: %d spans, want %d", len(got), len(spans))
	}
	kinds := map[trace.SpanKind]zipkinmodel.Kind{trace.SpanKindServer: zipkinmodel.Server, trace.SpanKindClient: zipkinmodel.Client,
		trace.SpanKindProducer: zipkinmodel.Producer, trace.SpanKindConsumer: zipkinmodel.Consumer, trace.SpanKindInternal: zipkinmodel.Undetermined}
	for _, w := range spans {
		where := "zipkin span " + w.Name()
		g, ok := byID[w.SpanContext().SpanID().String()]
		if !ok {
			t.Errorf("%s missing", where)
			continue
		}
		// Zipkin lowercases span and service names (its server and
		// zipkin-go's JSON encoder both do).
		if g.TraceID.String() != w.SpanContext().TraceID().String() || g.Name != strings.ToLower(w.Name()) || g.Kind != kinds[w.SpanKind()] {
			t.Errorf("%s: trace %s name %q kind %q", where, g.TraceID, g.Name, g.Kind)
		}
		wantParent := ""
		if w.Parent().IsValid() {
			wantParent = w.Parent().SpanID().String()
		}
		if gp := ""; g.ParentID != nil {
			gp = g.ParentID.String()
			if gp != wantParent {
				t.Errorf("%s: parent %s, want %s", where, gp, wantParent)
			}
		} else if wantParent != "" {
			t.Errorf("%s: no parent, want %s", where, wantParent)
		}
		if usOf(g.Timestamp) != usOf(w.StartTime()) || uint64(g.Duration.Microseconds()) != durUS(w) {
			t.Errorf("%s: timestamp %d duration %d, want %d %d", where, usOf(g.Timestamp), g.Duration.Microseconds(), usOf(w.StartTime()), durUS(w))
		}
		var svc string
		for _, kv := range w.Resource().Attributes() {
			if kv.Key == "service.name" {
				svc = kv.Value.AsString()
			}
		}
		if g.LocalEndpoint == nil || g.LocalEndpoint.ServiceName != svc {
			t.Errorf("%s: local endpoint %+v, want service %s", where, g.LocalEndpoint, svc)
		}
		want := map[string]string{}
		for _, kv := range w.Attributes() {
			want[string(kv.Key)] = zipkinTagValue(kv)
		}
		switch w.Status().Code {
		case codes.Error:
			want["otel.status_code"] = "ERROR"
			want["error"] = w.Status().Description
			if want["error"] == "" {
				want["error"] = "true"
			}
		case codes.Ok:
			want["otel.status_code"] = "OK"
		}
		want["otel.scope.name"] = w.InstrumentationScope().Name
		want["otel.scope.version"] = w.InstrumentationScope().Version
		if a, b := mapString(g.Tags), mapString(want); a != b {
			t.Errorf("%s: tags\n got %s\nwant %s", where, a, b)
		}
		var anns, wantAnns []string
		for _, a := range g.Annotations {
			anns = append(anns, fmt.Sprintf("%d:%s", usOf(a.Timestamp), a.Value))
		}
		for _, ev := range w.Events() {
			wantAnns = append(wantAnns, fmt.Sprintf("%d:%s", usOf(ev.Time), zipkinAnnotation(ev)))
		}
		if strings.Join(anns, ",") != strings.Join(wantAnns, ",") {
			t.Errorf("%s: annotations %v, want %v", where, anns, wantAnns)
		}
	}
}

// zipkinTagValue is an attribute as a Zipkin string tag: scalars in their
// plain form, slices as their JSON array.
func zipkinTagValue(kv attribute.KeyValue) string {
	switch kv.Value.Type() {
	case attribute.FLOAT64:
		f := kv.Value.AsFloat64()
		if f == math.Trunc(f) {
			return fmt.Sprintf("%.0f", f)
		}
		return fmt.Sprint(f)
	case attribute.BOOL, attribute.INT64, attribute.STRING:
		return kv.Value.Emit()
	}
	return pcommonString(kv)
}

// zipkinAnnotation is an event as a Zipkin annotation value, as the
// OpenTelemetry specification's Zipkin mapping and the Go SDK's Zipkin
// exporter write it: the name, and when the event has attributes,
// `name: {"k":v,...}` (Zipkin annotations have no attributes of their own).
func zipkinAnnotation(ev sdktrace.Event) string {
	if len(ev.Attributes) == 0 {
		return ev.Name
	}
	m := pcommon.NewMap()
	_ = m.FromRaw(attrsRaw(ev.Attributes))
	j, _ := json.Marshal(m.AsRaw())
	return ev.Name + ": " + string(j)
}

func mapString(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%s ", k, m[k])
	}
	return b.String()
}
