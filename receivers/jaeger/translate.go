package jaeger

import (
	"encoding/binary"
	"fmt"
	"math"
	"net"
	"strings"
	"time"

	jaegermodel "github.com/jaegertracing/jaeger-idl/model/v1"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// Keys the translation reads or writes, following the OpenTelemetry
// conventions for Jaeger (those of the collector's Jaeger translator).
const (
	attrServiceName = "service.name"
	attrHostName    = "host.name"
	attrHostIP      = "net.host.ip"
	// AttrRefType marks a link made from a span reference other than the
	// parent, with the reference's type ("child_of" or "follows_from").
	AttrRefType = "opentracing.ref_type"

	tagHostname          = "hostname"
	tagIP                = "ip"
	tagError             = "error"
	tagStatusCode        = "otel.status_code"
	tagStatusDescription = "otel.status_description"
	tagTraceState        = "w3c.tracestate"
	logEvent             = "event"
)

// ScopeName is the instrumentation scope given to translated spans.
const ScopeName = "github.com/meshlens/meshlens/receivers/jaeger"

// Rejected names a span that could not be translated.
type Rejected struct {
	Index int
	Err   error
}

func (r Rejected) String() string { return fmt.Sprintf("span[%d]: %v", r.Index, r.Err) }

func traceID(t jaegermodel.TraceID) pcommon.TraceID {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], t.High)
	binary.BigEndian.PutUint64(b[8:], t.Low)
	return pcommon.TraceID(b)
}

func spanID(s jaegermodel.SpanID) pcommon.SpanID {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(s))
	return pcommon.SpanID(b)
}

// BatchToTraces translates one api_v2 batch. Spans without a trace id or
// span id, or without any process, are returned in rejected and left out.
func BatchToTraces(batch *jaegermodel.Batch) (ptrace.Traces, []Rejected) {
	td := ptrace.NewTraces()
	var rejected []Rejected
	scopes := make(map[*jaegermodel.Process]ptrace.SpanSlice, 1)
	for i, s := range batch.Spans {
		if err := validate(s); err != nil {
			rejected = append(rejected, Rejected{Index: i, Err: err})
			continue
		}
		proc := s.Process
		if proc == nil {
			proc = batch.Process
		}
		if proc == nil {
			rejected = append(rejected, Rejected{Index: i, Err: fmt.Errorf("span has no process and the batch none either")})
			continue
		}
		spans, ok := scopes[proc]
		if !ok {
			rs := td.ResourceSpans().AppendEmpty()
			fillResource(rs.Resource().Attributes(), proc)
			ss := rs.ScopeSpans().AppendEmpty()
			ss.Scope().SetName(ScopeName)
			spans = ss.Spans()
			scopes[proc] = spans
		}
		fillSpan(spans.AppendEmpty(), s)
	}
	return td, rejected
}

func validate(s *jaegermodel.Span) error {
	switch {
	case s == nil:
		return fmt.Errorf("span is null")
	case s.TraceID.High == 0 && s.TraceID.Low == 0:
		return fmt.Errorf("trace_id is zero")
	case s.SpanID == 0:
		return fmt.Errorf("span_id is zero")
	case s.Duration < 0:
		return fmt.Errorf("duration %v is negative", s.Duration)
	}
	// OTLP timestamps are unsigned nanoseconds since 1970 in 64 bits: a
	// time outside 1970-2262 would wrap around (a 1969 span would land in
	// 2554) instead of being stored as sent. A zero start time means
	// "not set" and stays unset.
	if !s.StartTime.IsZero() {
		if err := representable("start_time", s.StartTime); err != nil {
			return err
		}
		if err := representable("start_time + duration", s.StartTime.Add(s.Duration)); err != nil {
			return err
		}
	}
	for i := range s.Logs {
		if ts := s.Logs[i].Timestamp; !ts.IsZero() {
			if err := representable(fmt.Sprintf("logs[%d].timestamp", i), ts); err != nil {
				return err
			}
		}
	}
	return nil
}

// Bounds of a time that pcommon.Timestamp (uint64 nanoseconds since the
// Unix epoch, read back through int64 by time.Unix) holds without wrapping.
var (
	minTimestamp = time.Unix(0, 0)
	maxTimestamp = time.Unix(0, math.MaxInt64)
)

func representable(field string, t time.Time) error {
	if t.Before(minTimestamp) || t.After(maxTimestamp) {
		return fmt.Errorf("%s %s is outside 1970-2262, the range of an OTLP timestamp", field, t.UTC().Format(time.RFC3339Nano))
	}
	return nil
}

func fillResource(attrs pcommon.Map, p *jaegermodel.Process) {
	attrs.EnsureCapacity(len(p.Tags) + 1)
	attrs.PutStr(attrServiceName, p.ServiceName)
	for i := range p.Tags {
		kv := &p.Tags[i]
		switch kv.Key {
		case tagHostname:
			attrs.PutStr(attrHostName, kv.AsString())
			continue
		case tagIP:
			attrs.PutStr(attrHostIP, ipString(kv))
			continue
		}
		putKV(attrs, kv)
	}
}

// ipString renders Jaeger's "ip" process tag, which older clients send as
// a 32-bit integer.
func ipString(kv *jaegermodel.KeyValue) string {
	if kv.VType == jaegermodel.ValueType_INT64 {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(kv.VInt64))
		return net.IP(b[:]).String()
	}
	return kv.AsString()
}

func putKV(attrs pcommon.Map, kv *jaegermodel.KeyValue) {
	switch kv.VType {
	case jaegermodel.ValueType_STRING:
		attrs.PutStr(kv.Key, kv.VStr)
	case jaegermodel.ValueType_BOOL:
		attrs.PutBool(kv.Key, kv.VBool)
	case jaegermodel.ValueType_INT64:
		attrs.PutInt(kv.Key, kv.VInt64)
	case jaegermodel.ValueType_FLOAT64:
		attrs.PutDouble(kv.Key, kv.VFloat64)
	case jaegermodel.ValueType_BINARY:
		attrs.PutEmptyBytes(kv.Key).FromRaw(kv.VBinary)
	default:
		attrs.PutStr(kv.Key, kv.AsString())
	}
}

func fillSpan(sp ptrace.Span, s *jaegermodel.Span) {
	sp.SetTraceID(traceID(s.TraceID))
	sp.SetSpanID(spanID(s.SpanID))
	sp.SetName(s.OperationName)
	if !s.StartTime.IsZero() {
		start := pcommon.NewTimestampFromTime(s.StartTime)
		sp.SetStartTimestamp(start)
		sp.SetEndTimestamp(start + pcommon.Timestamp(s.Duration))
	}

	// The parent is the first CHILD_OF reference in the same trace, else
	// the first reference in the same trace; the others become links.
	parent := -1
	for i, r := range s.References {
		if r.TraceID == s.TraceID && r.RefType == jaegermodel.SpanRefType_CHILD_OF {
			parent = i
			break
		}
	}
	if parent < 0 {
		for i, r := range s.References {
			if r.TraceID == s.TraceID {
				parent = i
				break
			}
		}
	}
	for i, r := range s.References {
		if i == parent {
			sp.SetParentSpanID(spanID(r.SpanID))
			continue
		}
		l := sp.Links().AppendEmpty()
		l.SetTraceID(traceID(r.TraceID))
		l.SetSpanID(spanID(r.SpanID))
		l.Attributes().PutStr(AttrRefType, strings.ToLower(r.RefType.String()))
	}

	attrs := sp.Attributes()
	attrs.EnsureCapacity(len(s.Tags))
	code, desc := ptrace.StatusCodeUnset, ""
	for i := range s.Tags {
		kv := &s.Tags[i]
		switch kv.Key {
		case jaegermodel.SpanKindKey:
			sp.SetKind(kindFrom(kv.AsString()))
			continue
		case tagStatusCode:
			switch strings.ToUpper(kv.AsString()) {
			case "ERROR":
				code = ptrace.StatusCodeError
			case "OK":
				if code != ptrace.StatusCodeError {
					code = ptrace.StatusCodeOk
				}
			}
			continue
		case tagStatusDescription:
			desc = kv.AsString()
			continue
		case tagTraceState:
			sp.TraceState().FromRaw(kv.AsString())
			continue
		case tagError:
			if (kv.VType == jaegermodel.ValueType_BOOL && kv.VBool) || (kv.VType == jaegermodel.ValueType_STRING && kv.VStr == "true") {
				code = ptrace.StatusCodeError
			}
		}
		putKV(attrs, kv)
	}
	if sp.Kind() == ptrace.SpanKindUnspecified {
		sp.SetKind(ptrace.SpanKindInternal)
	}
	if code != ptrace.StatusCodeUnset {
		sp.Status().SetCode(code)
		if code == ptrace.StatusCodeError {
			sp.Status().SetMessage(desc)
		}
	}

	if len(s.Logs) > 0 {
		evs := sp.Events()
		evs.EnsureCapacity(len(s.Logs))
		for i := range s.Logs {
			lg := &s.Logs[i]
			ev := evs.AppendEmpty()
			if !lg.Timestamp.IsZero() {
				ev.SetTimestamp(pcommon.NewTimestampFromTime(lg.Timestamp))
			}
			ev.Attributes().EnsureCapacity(len(lg.Fields))
			for j := range lg.Fields {
				f := &lg.Fields[j]
				if f.Key == logEvent && ev.Name() == "" {
					ev.SetName(f.AsString())
					continue
				}
				putKV(ev.Attributes(), f)
			}
		}
	}
}

func kindFrom(k string) ptrace.SpanKind {
	switch jaegermodel.SpanKind(strings.ToLower(k)) {
	case jaegermodel.SpanKindClient:
		return ptrace.SpanKindClient
	case jaegermodel.SpanKindServer:
		return ptrace.SpanKindServer
	case jaegermodel.SpanKindProducer:
		return ptrace.SpanKindProducer
	case jaegermodel.SpanKindConsumer:
		return ptrace.SpanKindConsumer
	}
	return ptrace.SpanKindInternal
}
