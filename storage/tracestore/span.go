package tracestore

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// Attribute names the store gives meaning to.
const (
	AttrServiceName = "service.name"
	AttrPeerService = "peer.service"
	// AttrZipkinShared marks the server half of an Envoy/Zipkin span whose
	// id is shared with the client half.
	AttrZipkinShared = "zipkin.shared"
)

// UnknownService names spans whose resource has no service.name, as the
// OpenTelemetry SDKs do.
const UnknownService = "unknown_service"

// ServiceName returns the resource's service.name or UnknownService.
func ServiceName(res pcommon.Resource) string {
	if v, ok := res.Attributes().Get(AttrServiceName); ok && v.AsString() != "" {
		return v.AsString()
	}
	return UnknownService
}

// KindName returns Jaeger's lower-case name of a span kind, "" when
// unspecified.
func KindName(k ptrace.SpanKind) string {
	switch k {
	case ptrace.SpanKindServer:
		return "server"
	case ptrace.SpanKindClient:
		return "client"
	case ptrace.SpanKindProducer:
		return "producer"
	case ptrace.SpanKindConsumer:
		return "consumer"
	case ptrace.SpanKindInternal:
		return "internal"
	}
	return ""
}

// ParseKind parses a span kind name, case-insensitively; "" is
// unspecified.
func ParseKind(s string) (ptrace.SpanKind, error) {
	switch strings.ToLower(s) {
	case "":
		return ptrace.SpanKindUnspecified, nil
	case "server":
		return ptrace.SpanKindServer, nil
	case "client":
		return ptrace.SpanKindClient, nil
	case "producer":
		return ptrace.SpanKindProducer, nil
	case "consumer":
		return ptrace.SpanKindConsumer, nil
	case "internal":
		return ptrace.SpanKindInternal, nil
	}
	return 0, fmt.Errorf("%w: unknown span kind %q (want server, client, producer, consumer or internal)", ErrBadQuery, s)
}

// Duration is the span's end minus start, never negative.
func Duration(s ptrace.Span) time.Duration {
	st, en := s.StartTimestamp(), s.EndTimestamp()
	if en <= st {
		return 0
	}
	return time.Duration(en - st)
}

// SpanKey identifies a stored span: Envoy's shared span context gives the
// client and server halves of a hop one span id, so kind is part of the
// identity, and a span written twice with the same key is stored once.
type SpanKey struct {
	TraceID pcommon.TraceID
	SpanID  pcommon.SpanID
	Kind    ptrace.SpanKind
	Start   pcommon.Timestamp
}

// KeyOf returns the identity of s.
func KeyOf(s ptrace.Span) SpanKey {
	return SpanKey{TraceID: s.TraceID(), SpanID: s.SpanID(), Kind: s.Kind(), Start: s.StartTimestamp()}
}

// Normalize validates q and applies the defaults and bounds every backend
// shares: the limit, and a start window no longer than maxLookback ending
// at now when StartMax is unset.
func (q Query) Normalize(now time.Time, maxLookback time.Duration) (Query, error) {
	if q.Limit < 0 {
		return q, fmt.Errorf("%w: limit %d is negative", ErrBadQuery, q.Limit)
	}
	if q.Limit == 0 {
		q.Limit = DefaultLimit
	}
	if q.Limit > MaxLimit {
		q.Limit = MaxLimit
	}
	if q.DurationMin < 0 || q.DurationMax < 0 {
		return q, fmt.Errorf("%w: negative duration bound", ErrBadQuery)
	}
	if q.DurationMax > 0 && q.DurationMax < q.DurationMin {
		return q, fmt.Errorf("%w: maxDuration %v is less than minDuration %v", ErrBadQuery, q.DurationMax, q.DurationMin)
	}
	if q.StartMax.IsZero() {
		q.StartMax = now
	}
	if !q.StartMin.IsZero() && q.StartMax.Before(q.StartMin) {
		return q, fmt.Errorf("%w: end %v is before start %v", ErrBadQuery, q.StartMax, q.StartMin)
	}
	if maxLookback > 0 {
		floor := q.StartMax.Add(-maxLookback)
		if q.StartMin.IsZero() || q.StartMin.Before(floor) {
			q.StartMin = floor
		}
	}
	if _, err := ParseKind(q.SpanKind); err != nil {
		return q, err
	}
	return q, nil
}

// MatchTime reports whether a span with this start and duration satisfies
// the time and duration predicates.
func (q *Query) MatchTime(start time.Time, d time.Duration) bool {
	if !q.StartMin.IsZero() && start.Before(q.StartMin) {
		return false
	}
	if !q.StartMax.IsZero() && start.After(q.StartMax) {
		return false
	}
	if d < q.DurationMin {
		return false
	}
	if q.DurationMax > 0 && d > q.DurationMax {
		return false
	}
	return true
}

// MatchSpan reports whether the span (with its resource) satisfies every
// predicate of q.
func (q *Query) MatchSpan(res pcommon.Resource, s ptrace.Span) bool {
	if !q.MatchTime(s.StartTimestamp().AsTime(), Duration(s)) {
		return false
	}
	return q.MatchAttrs(res, s)
}

// MatchAttrs is MatchSpan without the time and duration predicates.
func (q *Query) MatchAttrs(res pcommon.Resource, s ptrace.Span) bool {
	if q.Service != "" && ServiceName(res) != q.Service {
		return false
	}
	if q.Operation != "" && s.Name() != q.Operation {
		return false
	}
	if q.SpanKind != "" && !strings.EqualFold(KindName(s.Kind()), q.SpanKind) {
		return false
	}
	if q.RemoteService != "" {
		v, ok := s.Attributes().Get(AttrPeerService)
		if !ok || v.AsString() != q.RemoteService {
			return false
		}
	}
	for k, v := range q.Tags {
		if !HasTag(res, s, k, v) {
			return false
		}
	}
	for _, a := range q.Annotations {
		if !HasAnnotation(res, s, a) {
			return false
		}
	}
	return true
}

// HasTag reports whether key=value is one of the span's tags: a span,
// resource or event attribute, or a synthetic tag (see Query.Tags).
func HasTag(res pcommon.Resource, s ptrace.Span, key, value string) bool {
	found := false
	ForEachTag(res, s, func(k, v string) bool {
		if k == key && v == value {
			found = true
			return false
		}
		return true
	})
	return found
}

// HasAnnotation reports whether name is an attribute key of the span or
// its resource, or the name of one of its events.
func HasAnnotation(res pcommon.Resource, s ptrace.Span, name string) bool {
	if _, ok := s.Attributes().Get(name); ok {
		return true
	}
	if _, ok := res.Attributes().Get(name); ok {
		return true
	}
	if name == "error" && s.Status().Code() == ptrace.StatusCodeError {
		return true
	}
	evs := s.Events()
	for i := 0; i < evs.Len(); i++ {
		if evs.At(i).Name() == name {
			return true
		}
	}
	return false
}

// ForEachTag calls fn with every tag of the span, as strings, until fn
// returns false: span attributes, resource attributes, event attributes and
// the synthetic tags error=true, span.kind and otel.status_code. Indexing
// backends index exactly these, so index and filter agree.
func ForEachTag(res pcommon.Resource, s ptrace.Span, fn func(k, v string) bool) {
	more := true
	visit := func(k string, v pcommon.Value) bool {
		more = fn(k, v.AsString())
		return more
	}
	s.Attributes().Range(visit)
	if !more {
		return
	}
	res.Attributes().Range(visit)
	if !more {
		return
	}
	evs := s.Events()
	for i := 0; i < evs.Len() && more; i++ {
		evs.At(i).Attributes().Range(visit)
	}
	if !more {
		return
	}
	if k := KindName(s.Kind()); k != "" {
		if !fn("span.kind", k) {
			return
		}
	}
	switch s.Status().Code() {
	case ptrace.StatusCodeError:
		if !fn("otel.status_code", "ERROR") {
			return
		}
		fn("error", "true")
	case ptrace.StatusCodeOk:
		fn("otel.status_code", "OK")
	}
}

// ResourceScopeHash identifies a resource and scope, so that spans read
// back one by one can be regrouped under one resource.
func ResourceScopeHash(res pcommon.Resource, sc pcommon.InstrumentationScope) uint64 {
	h := NewScopeHasher()
	res.Attributes().Range(func(k string, v pcommon.Value) bool {
		h.Attr(k, v.Type(), v.AsString())
		return true
	})
	h.Scope(sc.Name(), sc.Version())
	sc.Attributes().Range(func(k string, v pcommon.Value) bool {
		h.Attr(k, v.Type(), v.AsString())
		return true
	})
	return h.Sum64()
}

// ScopeHasher computes ResourceScopeHash from the parts of a resource and
// a scope, for readers that decode them without pdata: the resource's
// attributes through Attr, then Scope, then the scope's attributes.
type ScopeHasher struct{ h uint64 }

// FNV-1a, 64 bits.
const (
	fnvOffset64 = 14695981039346656037
	fnvPrime64  = 1099511628211
)

// NewScopeHasher returns a hasher with nothing added.
func NewScopeHasher() ScopeHasher { return ScopeHasher{fnvOffset64} }

func (h *ScopeHasher) write(s string) {
	for i := 0; i < len(s); i++ {
		h.writeByte(s[i])
	}
}

func (h *ScopeHasher) writeByte(b byte) {
	h.h ^= uint64(b)
	h.h *= fnvPrime64
}

// Attr adds an attribute: its key, type and value as pcommon.Value's
// AsString gives it.
func (h *ScopeHasher) Attr(key string, typ pcommon.ValueType, value string) {
	h.write(key)
	h.writeByte(0)
	h.writeByte(byte(typ))
	h.write(value)
	h.writeByte(0)
}

// Scope adds the scope's name and version.
func (h *ScopeHasher) Scope(name, version string) {
	h.writeByte(1)
	h.write(name)
	h.writeByte(0)
	h.write(version)
	h.writeByte(0)
}

// Sum64 is the hash of what was added.
func (h ScopeHasher) Sum64() uint64 { return h.h }

// Assembler builds one ptrace.Traces from spans read back individually,
// grouping them under shared resources and scopes.
type Assembler struct {
	td     ptrace.Traces
	scopes map[uint64]ptrace.ScopeSpans
	n      int
}

// NewAssembler returns an empty assembler.
func NewAssembler() *Assembler {
	return &Assembler{td: ptrace.NewTraces(), scopes: map[uint64]ptrace.ScopeSpans{}}
}

// Scope returns the ScopeSpans for the resource and scope identified by
// hash, creating it from res and sc (copied) when new.
func (a *Assembler) Scope(hash uint64, res pcommon.Resource, sc pcommon.InstrumentationScope) ptrace.ScopeSpans {
	if ss, ok := a.scopes[hash]; ok {
		return ss
	}
	rs := a.td.ResourceSpans().AppendEmpty()
	res.CopyTo(rs.Resource())
	ss := rs.ScopeSpans().AppendEmpty()
	sc.CopyTo(ss.Scope())
	a.scopes[hash] = ss
	return ss
}

// AddSpan copies s under its resource and scope.
func (a *Assembler) AddSpan(res pcommon.Resource, sc pcommon.InstrumentationScope, s ptrace.Span) {
	s.CopyTo(a.Scope(ResourceScopeHash(res, sc), res, sc).Spans().AppendEmpty())
	a.n++
}

// MoveSpan moves s under its resource and scope; s is left empty. For
// spans the caller decoded for this trace alone: moving skips the deep
// copy of every attribute, which was as much garbage as the decode.
func (a *Assembler) MoveSpan(res pcommon.Resource, sc pcommon.InstrumentationScope, s ptrace.Span) {
	s.MoveTo(a.Scope(ResourceScopeHash(res, sc), res, sc).Spans().AppendEmpty())
	a.n++
}

// Count is the number of spans added through AddSpan and MoveSpan.
func (a *Assembler) Count() int { return a.n }

// Traces returns what was assembled.
func (a *Assembler) Traces() ptrace.Traces { return a.td }

// LinkSpan is what dependency linking needs of a span.
type LinkSpan struct {
	SpanID, ParentID pcommon.SpanID
	Kind             ptrace.SpanKind
	Service          string
}

// Linker counts service→service calls from parent/child spans.
type Linker struct {
	counts map[[2]string]uint64
	owner  map[pcommon.SpanID]LinkSpan
}

// NewLinker returns an empty linker.
func NewLinker() *Linker {
	return &Linker{counts: map[[2]string]uint64{}, owner: map[pcommon.SpanID]LinkSpan{}}
}

// AddTrace counts the calls within the spans of one trace: every span
// whose parent belongs to another service is one call parent→child. With a
// shared span id (Envoy's Zipkin client and server halves) the server half
// owns the id, because the spans beneath it run in the server.
func (l *Linker) AddTrace(spans []LinkSpan) {
	clear(l.owner)
	for _, s := range spans {
		prev, ok := l.owner[s.SpanID]
		if !ok || (isServerSide(s.Kind) && !isServerSide(prev.Kind)) {
			l.owner[s.SpanID] = s
		}
	}
	for _, s := range spans {
		if s.ParentID.IsEmpty() {
			continue
		}
		p, ok := l.owner[s.ParentID]
		if !ok || p.Service == s.Service {
			continue
		}
		l.counts[[2]string{p.Service, s.Service}]++
	}
}

func isServerSide(k ptrace.SpanKind) bool {
	return k == ptrace.SpanKindServer || k == ptrace.SpanKindConsumer
}

// Add adds calls counted elsewhere.
func (l *Linker) Add(links []DependencyLink) {
	for _, d := range links {
		l.counts[[2]string{d.Parent, d.Child}] += d.CallCount
	}
}

// Links returns the counted edges, sorted by parent then child.
func (l *Linker) Links() []DependencyLink {
	out := make([]DependencyLink, 0, len(l.counts))
	for k, n := range l.counts {
		out = append(out, DependencyLink{Parent: k[0], Child: k[1], CallCount: n})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Parent != out[j].Parent {
			return out[i].Parent < out[j].Parent
		}
		return out[i].Child < out[j].Child
	})
	return out
}

// ParseTraceID parses 1 to 32 hex digits (Jaeger and Zipkin ids, 64-bit ids
// left-padded with zeros) into a trace id.
func ParseTraceID(s string) (pcommon.TraceID, error) {
	var id pcommon.TraceID
	if len(s) == 0 || len(s) > 32 {
		return id, fmt.Errorf("%w: trace id %q must be 1 to 32 hex digits", ErrBadQuery, truncate(s))
	}
	off := 32 - len(s)
	for i := 0; i < len(s); i++ {
		c := s[i]
		var v byte
		switch {
		case c >= '0' && c <= '9':
			v = c - '0'
		case c >= 'a' && c <= 'f':
			v = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			v = c - 'A' + 10
		default:
			return pcommon.TraceID{}, fmt.Errorf("%w: trace id %q is not hex", ErrBadQuery, truncate(s))
		}
		p := off + i
		if p%2 == 0 {
			id[p/2] |= v << 4
		} else {
			id[p/2] |= v
		}
	}
	if id.IsEmpty() {
		return id, fmt.Errorf("%w: trace id is zero", ErrBadQuery)
	}
	return id, nil
}

// TraceIDString renders a trace id as Jaeger and Zipkin do: 16 hex digits
// when the upper half is zero (a 64-bit id), else 32.
func TraceIDString(id pcommon.TraceID) string {
	s := id.String()
	if strings.HasPrefix(s, "0000000000000000") {
		return s[16:]
	}
	return s
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
