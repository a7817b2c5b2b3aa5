package jaegerapi

import (
	"encoding/base64"
	"fmt"
	"math"
	"sort"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/meshlens/meshlens/storage/tracestore"
)

// The Jaeger UI's JSON model (jaeger model/json). Slices are always
// emitted, never null: the UI iterates them without checking.

type uiTrace struct {
	TraceID   string               `json:"traceID"`
	Spans     []uiSpan             `json:"spans"`
	Processes map[string]uiProcess `json:"processes"`
	Warnings  []string             `json:"warnings"`
}

type uiSpan struct {
	TraceID       string        `json:"traceID"`
	SpanID        string        `json:"spanID"`
	Flags         uint32        `json:"flags,omitempty"`
	OperationName string        `json:"operationName"`
	References    []uiReference `json:"references"`
	StartTime     uint64        `json:"startTime"`
	Duration      uint64        `json:"duration"`
	Tags          []uiKeyValue  `json:"tags"`
	Logs          []uiLog       `json:"logs"`
	ProcessID     string        `json:"processID"`
	Warnings      []string      `json:"warnings"`
}

type uiReference struct {
	RefType string `json:"refType"`
	TraceID string `json:"traceID"`
	SpanID  string `json:"spanID"`
}

type uiProcess struct {
	ServiceName string       `json:"serviceName"`
	Tags        []uiKeyValue `json:"tags"`
}

type uiLog struct {
	Timestamp uint64       `json:"timestamp"`
	Fields    []uiKeyValue `json:"fields"`
}

type uiKeyValue struct {
	Key   string `json:"key"`
	Type  string `json:"type"`
	Value any    `json:"value"`
}

type uiDependency struct {
	Parent    string `json:"parent"`
	Child     string `json:"child"`
	CallCount uint64 `json:"callCount"`
}

type uiOperation struct {
	Name     string `json:"name"`
	SpanKind string `json:"spanKind"`
}

func micros(ts pcommon.Timestamp) uint64 { return uint64(ts) / 1000 }

func spanIDString(id pcommon.SpanID) string { return id.String() }

// toUI converts one stored trace the way Jaeger's OTLP translator does:
// resources become processes (service.name lifted out), the parent span
// becomes a CHILD_OF reference, links FOLLOWS_FROM, events logs, and kind
// and status synthetic tags (span.kind, otel.status_code, error=true).
func toUI(t *tracestore.Trace) uiTrace {
	out := uiTrace{
		TraceID:   tracestore.TraceIDString(t.ID),
		Spans:     []uiSpan{},
		Processes: map[string]uiProcess{},
		Warnings:  t.Warnings,
	}
	procKeys := map[string]string{}
	rss := t.Spans.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		rs := rss.At(i)
		proc := toProcess(rs.Resource())
		pk := fmt.Sprintf("%s%v", proc.ServiceName, proc.Tags)
		pid, ok := procKeys[pk]
		if !ok {
			pid = fmt.Sprintf("p%d", len(procKeys)+1)
			procKeys[pk] = pid
			out.Processes[pid] = proc
		}
		for j := 0; j < rs.ScopeSpans().Len(); j++ {
			ss := rs.ScopeSpans().At(j)
			for k := 0; k < ss.Spans().Len(); k++ {
				out.Spans = append(out.Spans, toUISpan(ss.Scope(), ss.Spans().At(k), pid))
			}
		}
	}
	sort.SliceStable(out.Spans, func(i, j int) bool { return out.Spans[i].StartTime < out.Spans[j].StartTime })
	return out
}

func toProcess(res pcommon.Resource) uiProcess {
	p := uiProcess{ServiceName: tracestore.ServiceName(res), Tags: []uiKeyValue{}}
	res.Attributes().Range(func(k string, v pcommon.Value) bool {
		if k != tracestore.AttrServiceName {
			p.Tags = append(p.Tags, toKV(k, v))
		}
		return true
	})
	return p
}

func toUISpan(scope pcommon.InstrumentationScope, sp ptrace.Span, pid string) uiSpan {
	tid := tracestore.TraceIDString(sp.TraceID())
	s := uiSpan{
		TraceID:       tid,
		SpanID:        spanIDString(sp.SpanID()),
		OperationName: sp.Name(),
		References:    []uiReference{},
		StartTime:     micros(sp.StartTimestamp()),
		Duration:      uint64(tracestore.Duration(sp).Microseconds()),
		Tags:          []uiKeyValue{},
		Logs:          []uiLog{},
		ProcessID:     pid,
		// Only sampled spans are stored.
		Flags: 1,
	}
	if p := sp.ParentSpanID(); !p.IsEmpty() {
		s.References = append(s.References, uiReference{RefType: "CHILD_OF", TraceID: tid, SpanID: spanIDString(p)})
	}
	for i := 0; i < sp.Links().Len(); i++ {
		l := sp.Links().At(i)
		s.References = append(s.References, uiReference{RefType: "FOLLOWS_FROM", TraceID: tracestore.TraceIDString(l.TraceID()), SpanID: spanIDString(l.SpanID())})
	}
	sp.Attributes().Range(func(k string, v pcommon.Value) bool {
		s.Tags = append(s.Tags, toKV(k, v))
		return true
	})
	if scope.Name() != "" {
		s.Tags = append(s.Tags, uiKeyValue{Key: "otel.scope.name", Type: "string", Value: scope.Name()})
	}
	if scope.Version() != "" {
		s.Tags = append(s.Tags, uiKeyValue{Key: "otel.scope.version", Type: "string", Value: scope.Version()})
	}
	if k := tracestore.KindName(sp.Kind()); k != "" && k != "internal" {
		s.Tags = append(s.Tags, uiKeyValue{Key: "span.kind", Type: "string", Value: k})
	}
	switch sp.Status().Code() {
	case ptrace.StatusCodeError:
		s.Tags = append(s.Tags, uiKeyValue{Key: "otel.status_code", Type: "string", Value: "ERROR"})
		if _, ok := sp.Attributes().Get("error"); !ok {
			s.Tags = append(s.Tags, uiKeyValue{Key: "error", Type: "bool", Value: true})
		}
		if m := sp.Status().Message(); m != "" {
			s.Tags = append(s.Tags, uiKeyValue{Key: "otel.status_description", Type: "string", Value: m})
		}
	case ptrace.StatusCodeOk:
		s.Tags = append(s.Tags, uiKeyValue{Key: "otel.status_code", Type: "string", Value: "OK"})
	}
	for i := 0; i < sp.Events().Len(); i++ {
		ev := sp.Events().At(i)
		l := uiLog{Timestamp: micros(ev.Timestamp()), Fields: []uiKeyValue{}}
		if ev.Name() != "" {
			l.Fields = append(l.Fields, uiKeyValue{Key: "event", Type: "string", Value: ev.Name()})
		}
		ev.Attributes().Range(func(k string, v pcommon.Value) bool {
			l.Fields = append(l.Fields, toKV(k, v))
			return true
		})
		s.Logs = append(s.Logs, l)
	}
	return s
}

func toKV(k string, v pcommon.Value) uiKeyValue {
	switch v.Type() {
	case pcommon.ValueTypeBool:
		return uiKeyValue{Key: k, Type: "bool", Value: v.Bool()}
	case pcommon.ValueTypeInt:
		return uiKeyValue{Key: k, Type: "int64", Value: v.Int()}
	case pcommon.ValueTypeDouble:
		f := v.Double()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return uiKeyValue{Key: k, Type: "string", Value: v.AsString()}
		}
		return uiKeyValue{Key: k, Type: "float64", Value: f}
	case pcommon.ValueTypeBytes:
		return uiKeyValue{Key: k, Type: "binary", Value: base64.StdEncoding.EncodeToString(v.Bytes().AsRaw())}
	}
	return uiKeyValue{Key: k, Type: "string", Value: v.AsString()}
}
