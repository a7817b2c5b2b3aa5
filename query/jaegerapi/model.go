package jaegerapi

import (
	"cmp"
	"encoding/base64"
	"fmt"
	"math"
	"slices"
	"strconv"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	jaegerrcv "github.com/meshlens/meshlens/receivers/jaeger"
	"github.com/meshlens/meshlens/receivers/zipkin/translate"
	"github.com/meshlens/meshlens/storage/tracestore"
)

// The Jaeger UI's JSON model (jaeger model/json). Slices are always
// emitted, never null: the UI iterates them without checking.

type uiTrace struct {
	TraceID   string               `json:"traceID"`
	Spans     []uiSpan             `json:"spans"`
	Processes map[string]uiProcess `json:"processes"`
	Warnings  []string             `json:"warnings"`
	// lazy, when set, holds the spans instead of Spans (protoui.go).
	lazy *lazySpans
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
func toUI(t *tracestore.Trace, keepSharedIDs bool) uiTrace {
	out := uiTrace{
		TraceID:   tracestore.TraceIDString(t.ID),
		Spans:     []uiSpan{},
		Processes: map[string]uiProcess{},
		Warnings:  t.Warnings,
	}
	// The spans are ordered by start time before they are converted,
	// through a slice of small keys: sorting converted spans (or even
	// these refs) stably moved large structs, 7-8% of a search's CPU.
	type ref struct {
		scope pcommon.InstrumentationScope
		span  ptrace.Span
		pid   string
	}
	type order struct {
		start uint64
		i     int
	}
	n := 0
	rss := t.Spans.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		for j := 0; j < rss.At(i).ScopeSpans().Len(); j++ {
			n += rss.At(i).ScopeSpans().At(j).Spans().Len()
		}
	}
	refs := make([]ref, 0, n)
	orders := make([]order, 0, n)
	pids := processIDs{names: map[string]string{}, procs: out.Processes}
	for i := 0; i < rss.Len(); i++ {
		rs := rss.At(i)
		pid := pids.id(toProcess(rs.Resource()))
		for j := 0; j < rs.ScopeSpans().Len(); j++ {
			ss := rs.ScopeSpans().At(j)
			for k := 0; k < ss.Spans().Len(); k++ {
				sp := ss.Spans().At(k)
				orders = append(orders, order{micros(sp.StartTimestamp()), len(refs)})
				refs = append(refs, ref{ss.Scope(), sp, pid})
			}
		}
	}
	// Ties keep their order, as a stable sort would.
	slices.SortFunc(orders, func(a, b order) int {
		if c := cmp.Compare(a.start, b.start); c != 0 {
			return c
		}
		return cmp.Compare(a.i, b.i)
	})
	out.Spans = make([]uiSpan, 0, len(refs))
	for _, o := range orders {
		r := refs[o.i]
		out.Spans = append(out.Spans, toUISpan(r.scope, r.span, r.pid, t.ID, out.TraceID))
	}
	if !keepSharedIDs {
		dedupeSharedSpanIDs(out.Spans)
	}
	return out
}

// dedupeSharedSpanIDs gives the server half of a Zipkin shared span (Envoy
// and other B3 tracers use one span ID for the client and the server side
// of a hop) an ID of its own, the way Jaeger's query service does: Jaeger
// UI builds the tree by span ID and cannot show two spans with one ID. The
// new ID is the smallest unused one from 1 up, the server half becomes a
// child of the client half, and the server half's children follow it.
func dedupeSharedSpanIDs(spans []uiSpan) {
	byID := make(map[string][]int, len(spans))
	for i, s := range spans {
		byID[s.SpanID] = append(byID[s.SpanID], i)
	}
	shared := map[string]bool{}
	for id, idx := range byID {
		for _, i := range idx {
			if len(idx) > 1 && spanKindTag(spans[i]) == "client" {
				shared[id] = true
			}
		}
	}
	if len(shared) == 0 {
		return
	}
	used := make(map[uint64]bool, len(byID))
	for id := range byID {
		if v, err := strconv.ParseUint(id, 16, 64); err == nil {
			used[v] = true
		}
	}
	var next uint64
	renamed := map[string]string{}
	for i := range spans {
		s := &spans[i]
		if !shared[s.SpanID] || spanKindTag(*s) != "server" {
			continue
		}
		for next++; used[next]; next++ {
		}
		used[next] = true
		old := s.SpanID
		s.SpanID = fmt.Sprintf("%016x", next)
		renamed[old] = s.SpanID
		replaceParent(s, old)
		// The tree now says what the marker said.
		s.Tags = slices.DeleteFunc(s.Tags, func(kv uiKeyValue) bool { return kv.Key == translate.AttrShared })
	}
	for i := range spans {
		s := &spans[i]
		if id, ok := renamed[parentOf(*s)]; ok && id != s.SpanID {
			replaceParent(s, id)
		}
	}
}

func spanKindTag(s uiSpan) string {
	for _, kv := range s.Tags {
		if kv.Key == "span.kind" {
			v, _ := kv.Value.(string)
			return v
		}
	}
	return ""
}

func parentOf(s uiSpan) string {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" && r.TraceID == s.TraceID {
			return r.SpanID
		}
	}
	return ""
}

// replaceParent points the span's parent reference at id, adding one when
// it has none.
func replaceParent(s *uiSpan, id string) {
	for i, r := range s.References {
		if r.RefType == "CHILD_OF" && r.TraceID == s.TraceID {
			s.References[i].SpanID = id
			return
		}
	}
	s.References = append([]uiReference{{RefType: "CHILD_OF", TraceID: s.TraceID, SpanID: id}}, s.References...)
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

// processIDs names the processes of one trace p1, p2, ... in order of
// first appearance; processes with the same service and tags share one.
type processIDs struct {
	names map[string]string
	key   []byte
	// procs is the trace's Processes.
	procs map[string]uiProcess
}

func (p *processIDs) id(proc uiProcess) string {
	p.key = processKey(p.key[:0], proc)
	if pid, ok := p.names[string(p.key)]; ok {
		return pid
	}
	pid := "p" + strconv.Itoa(len(p.names)+1)
	p.names[string(p.key)] = pid
	p.procs[pid] = proc
	return pid
}

// processKey appends what identifies a process within a trace: its
// service and tags as the answer's JSON writes them, which tells any two
// processes apart.
func processKey(b []byte, p uiProcess) []byte {
	b = appendString(b, p.ServiceName)
	for i := range p.Tags {
		kv, err := appendKV(b, &p.Tags[i])
		if err != nil { // not from toKV: a value encoding/json refuses
			kv = fmt.Appendf(b, "%#v", p.Tags[i])
		}
		b = kv
	}
	return b
}

// traceHex is traceID in hex: a span of that trace (almost every span)
// reuses it instead of formatting its own for itself and its parent
// reference.
func toUISpan(scope pcommon.InstrumentationScope, sp ptrace.Span, pid string, traceID pcommon.TraceID, traceHex string) uiSpan {
	tid := traceHex
	if sp.TraceID() != traceID {
		tid = tracestore.TraceIDString(sp.TraceID())
	}
	s := uiSpan{
		TraceID:       tid,
		SpanID:        spanIDString(sp.SpanID()),
		OperationName: sp.Name(),
		References:    []uiReference{},
		StartTime:     micros(sp.StartTimestamp()),
		Duration:      uint64(tracestore.Duration(sp).Microseconds()),
		// Room for the attributes and the synthetic tags most spans get
		// (kind, status), so that appending does not regrow the slice.
		Tags:      make([]uiKeyValue, 0, sp.Attributes().Len()+3),
		Logs:      []uiLog{},
		ProcessID: pid,
		// Only sampled spans are stored.
		Flags: 1,
	}
	if n := sp.Links().Len() + 1; n > 1 || !sp.ParentSpanID().IsEmpty() {
		s.References = make([]uiReference, 0, n)
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
	var et errorTag
	if e, ok := sp.Attributes().Get("error"); ok {
		et = errorTag{present: true, isStr: e.Type() == pcommon.ValueTypeStr, str: e.Str()}
	}
	s.Tags = appendSpanTags(s.Tags, scope.Name(), scope.Version(), sp.Kind(), sp.Status().Code(), sp.Status().Message(), et)
	if sp.Events().Len() > 0 {
		s.Logs = make([]uiLog, 0, sp.Events().Len())
	}
	for i := 0; i < sp.Events().Len(); i++ {
		ev := sp.Events().At(i)
		l := uiLog{Timestamp: micros(ev.Timestamp()), Fields: make([]uiKeyValue, 0, ev.Attributes().Len()+1)}
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

// errorTag is what the span's first "error" attribute, if any, is.
type errorTag struct {
	present, isStr bool
	str            string
}

// appendSpanTags appends the tags Jaeger derives from a span's scope, kind
// and status.
func appendSpanTags(tags []uiKeyValue, scopeName, scopeVersion string, kind ptrace.SpanKind, code ptrace.StatusCode, message string, et errorTag) []uiKeyValue {
	// The Zipkin and Jaeger receivers name themselves as the scope of the
	// spans they translate; that is not the sender's instrumentation, so
	// it is not shown, and their INTERNAL kind stands for "no kind given".
	ownScope := scopeName == translate.ScopeName || scopeName == jaegerrcv.ScopeName
	if scopeName != "" && !ownScope {
		tags = append(tags, uiKeyValue{Key: "otel.scope.name", Type: "string", Value: scopeName})
		if scopeVersion != "" {
			tags = append(tags, uiKeyValue{Key: "otel.scope.version", Type: "string", Value: scopeVersion})
		}
	}
	if k := tracestore.KindName(kind); k != "" && (k != "internal" || !ownScope) {
		tags = append(tags, uiKeyValue{Key: "span.kind", Type: "string", Value: k})
	}
	switch code {
	case ptrace.StatusCodeError:
		tags = append(tags, uiKeyValue{Key: "otel.status_code", Type: "string", Value: "ERROR"})
		if !et.present {
			tags = append(tags, uiKeyValue{Key: "error", Type: "bool", Value: true})
		}
		// A Zipkin error tag is already the description: do not repeat it.
		if message != "" && (!et.present || !et.isStr || et.str != message) {
			tags = append(tags, uiKeyValue{Key: "otel.status_description", Type: "string", Value: message})
		}
	case ptrace.StatusCodeOk:
		tags = append(tags, uiKeyValue{Key: "otel.status_code", Type: "string", Value: "OK"})
	}
	return tags
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
