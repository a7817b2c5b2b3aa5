// Package translate converts between Zipkin's span model (v1 JSON, v2 JSON,
// proto3) and OpenTelemetry's ptrace.Traces, in both directions: the Zipkin
// receiver uses it for ingest and the Zipkin query API for answers.
//
// The mapping keeps everything a Zipkin reader needs to rebuild the span:
// the local endpoint becomes the resource (service.name, net.host.ip,
// net.host.port), the remote endpoint span attributes (peer.service,
// net.peer.ip, net.peer.port), tags attributes (string-valued, unchanged),
// annotations events, and the debug/shared flags the attributes
// zipkin.debug / zipkin.shared. Keeping `shared` matters for Envoy: the
// client and server halves of one hop share a span id, and a reader shows
// both only if it can tell them apart.
package translate

import (
	"encoding/binary"
	"net"
	"strings"
	"time"

	zipkinmodel "github.com/openzipkin/zipkin-go/model"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// Attribute keys the translation reads and writes.
const (
	AttrServiceName = "service.name"
	AttrHostIP      = "net.host.ip"
	AttrHostPort    = "net.host.port"
	AttrPeerService = "peer.service"
	AttrPeerIP      = "net.peer.ip"
	AttrPeerPort    = "net.peer.port"
	// AttrShared marks the server half of a span whose id the client half
	// also uses (Zipkin's "shared" flag, Envoy's shared_span_context).
	AttrShared = "zipkin.shared"
	// AttrDebug carries Zipkin's debug flag (forced sampling).
	AttrDebug = "zipkin.debug"

	// TagError is Zipkin's error tag; any value marks the span failed.
	TagError = "error"
	// TagOTelStatusCode and TagOTelStatusDescription are what OpenTelemetry
	// exporters write into Zipkin tags for the span status.
	TagOTelStatusCode        = "otel.status_code"
	TagOTelStatusDescription = "otel.status_description"
)

// ScopeName is the instrumentation scope given to translated spans.
const ScopeName = "github.com/meshlens/meshlens/receivers/zipkin"

// TraceIDFrom converts a Zipkin trace id to OTLP's 16 bytes: a 64-bit id is
// the lower half, the upper half zero.
func TraceIDFrom(t zipkinmodel.TraceID) pcommon.TraceID {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], t.High)
	binary.BigEndian.PutUint64(b[8:], t.Low)
	return pcommon.TraceID(b)
}

// SpanIDFrom converts a Zipkin span id to OTLP's 8 bytes.
func SpanIDFrom(id zipkinmodel.ID) pcommon.SpanID { return spanID(uint64(id)) }

// Validate reports why a decoded span cannot be stored, or nil.
func Validate(s *zipkinmodel.SpanModel) error {
	switch {
	case s == nil:
		return errNilSpan
	case s.TraceID.Empty():
		return zipkinmodel.ErrValidTraceIDRequired
	case s.ID == 0:
		return zipkinmodel.ErrValidIDRequired
	case s.Duration < 0:
		return zipkinmodel.ErrValidDurationRequired
	}
	return nil
}

type resourceKey struct {
	service    string
	ipv4, ipv6 string
	port       uint16
}

// endpoint is a validated Zipkin endpoint, IPs in text form.
type endpoint struct {
	service    string
	ipv4, ipv6 string
	port       uint16
}

func (e *endpoint) empty() bool {
	return e.service == "" && e.ipv4 == "" && e.ipv6 == "" && e.port == 0
}

func (e *endpoint) ip() string {
	if e.ipv4 != "" {
		return e.ipv4
	}
	return e.ipv6
}

type tag struct{ k, v string }

type annotation struct {
	us    uint64
	value string
}

// span is the decoders' common form of a Zipkin v2 span: flat, its tags
// and annotations slices of per-batch arenas, so decoding a span costs
// few allocations beyond its strings.
type span struct {
	traceID       zipkinmodel.TraceID
	id, parent    uint64
	name, kind    string
	us, durUs     uint64
	debug, shared bool
	local, remote endpoint
	tags          []tag
	annotations   []annotation
}

func (s *span) validate() error {
	switch {
	case s.traceID.Empty():
		return zipkinmodel.ErrValidTraceIDRequired
	case s.id == 0:
		return zipkinmodel.ErrValidIDRequired
	}
	return nil
}

func endpointFrom(e *zipkinmodel.Endpoint) endpoint {
	if e == nil {
		return endpoint{}
	}
	ep := endpoint{service: e.ServiceName, port: e.Port}
	if ip := e.IPv4.To4(); ip != nil {
		ep.ipv4 = ip.String()
	}
	if len(e.IPv6) == net.IPv6len && e.IPv6.To4() == nil {
		ep.ipv6 = e.IPv6.String()
	}
	return ep
}

// fromModel converts a zipkin-go span (v1 and proto3 decoders, ToTraces).
func fromModel(m *zipkinmodel.SpanModel) span {
	s := span{
		traceID: m.TraceID, id: uint64(m.ID), name: m.Name, kind: string(m.Kind),
		debug: m.Debug, shared: m.Shared,
		local: endpointFrom(m.LocalEndpoint), remote: endpointFrom(m.RemoteEndpoint),
	}
	if m.ParentID != nil {
		s.parent = uint64(*m.ParentID)
	}
	if !m.Timestamp.IsZero() && m.Timestamp.UnixMicro() > 0 {
		s.us = uint64(m.Timestamp.UnixMicro())
	}
	if m.Duration > 0 {
		s.durUs = uint64(m.Duration / time.Microsecond)
	}
	if len(m.Tags) > 0 {
		s.tags = make([]tag, 0, len(m.Tags))
		for k, v := range m.Tags {
			s.tags = append(s.tags, tag{k, v})
		}
	}
	for _, a := range m.Annotations {
		var us uint64
		if !a.Timestamp.IsZero() && a.Timestamp.UnixMicro() > 0 {
			us = uint64(a.Timestamp.UnixMicro())
		}
		s.annotations = append(s.annotations, annotation{us, a.Value})
	}
	return s
}

// Builder accumulates Zipkin spans into one ptrace.Traces, one
// ResourceSpans per distinct local endpoint. It is not safe for concurrent
// use; a zero Builder is not usable, call NewBuilder.
type Builder struct {
	td     ptrace.Traces
	scopes map[resourceKey]ptrace.SpanSlice
}

// NewBuilder returns an empty Builder.
func NewBuilder() *Builder {
	return &Builder{td: ptrace.NewTraces(), scopes: make(map[resourceKey]ptrace.SpanSlice, 4)}
}

// Traces returns what was added so far. The Builder must not be used after.
func (b *Builder) Traces() ptrace.Traces { return b.td }

// Len is the number of spans added.
func (b *Builder) Len() int { return b.td.SpanCount() }

// Append adds one span, which must have passed Validate.
func (b *Builder) Append(m *zipkinmodel.SpanModel) {
	s := fromModel(m)
	b.append(&s)
}

func (b *Builder) append(s *span) {
	key := resourceKey{service: s.local.service, ipv4: s.local.ipv4, ipv6: s.local.ipv6, port: s.local.port}
	spans, ok := b.scopes[key]
	if !ok {
		rs := b.td.ResourceSpans().AppendEmpty()
		attrs := rs.Resource().Attributes()
		attrs.PutStr(AttrServiceName, key.service)
		if ip := s.local.ip(); ip != "" {
			attrs.PutStr(AttrHostIP, ip)
		}
		if key.port != 0 {
			attrs.PutInt(AttrHostPort, int64(key.port))
		}
		ss := rs.ScopeSpans().AppendEmpty()
		ss.Scope().SetName(ScopeName)
		spans = ss.Spans()
		b.scopes[key] = spans
	}
	fillSpan(spans.AppendEmpty(), s)
}

// ToTraces translates valid spans into ptrace.Traces.
func ToTraces(spans []*zipkinmodel.SpanModel) ptrace.Traces {
	b := NewBuilder()
	for _, s := range spans {
		b.Append(s)
	}
	return b.Traces()
}

func spanID(v uint64) pcommon.SpanID {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return pcommon.SpanID(b)
}

func microsToTimestamp(us uint64) pcommon.Timestamp { return pcommon.Timestamp(us * 1000) }

func fillSpan(sp ptrace.Span, s *span) {
	sp.SetTraceID(TraceIDFrom(s.traceID))
	sp.SetSpanID(spanID(s.id))
	if s.parent != 0 {
		sp.SetParentSpanID(spanID(s.parent))
	}
	sp.SetName(s.name)
	sp.SetKind(kindFrom(zipkinmodel.Kind(s.kind)))
	if s.us != 0 {
		start := microsToTimestamp(s.us)
		sp.SetStartTimestamp(start)
		sp.SetEndTimestamp(start + microsToTimestamp(s.durUs))
	}

	attrs := sp.Attributes()
	attrs.EnsureCapacity(len(s.tags) + 5)
	if re := &s.remote; !re.empty() {
		if re.service != "" {
			attrs.PutStr(AttrPeerService, re.service)
		}
		if ip := re.ip(); ip != "" {
			attrs.PutStr(AttrPeerIP, ip)
		}
		if re.port != 0 {
			attrs.PutInt(AttrPeerPort, int64(re.port))
		}
	}
	if s.shared {
		attrs.PutBool(AttrShared, true)
	}
	if s.debug {
		attrs.PutBool(AttrDebug, true)
	}

	code, desc := ptrace.StatusCodeUnset, ""
	for _, t := range s.tags {
		switch t.k {
		case TagOTelStatusCode:
			switch strings.ToUpper(t.v) {
			case "ERROR":
				code = ptrace.StatusCodeError
			case "OK":
				if code != ptrace.StatusCodeError {
					code = ptrace.StatusCodeOk
				}
			}
			continue
		case TagOTelStatusDescription:
			desc = t.v
			continue
		case TagError:
			code = ptrace.StatusCodeError
			if desc == "" && t.v != "" && t.v != "true" {
				desc = t.v
			}
		}
		attrs.PutStr(t.k, t.v)
	}
	if code != ptrace.StatusCodeUnset {
		sp.Status().SetCode(code)
		if code == ptrace.StatusCodeError {
			sp.Status().SetMessage(desc)
		}
	}

	if len(s.annotations) > 0 {
		evs := sp.Events()
		evs.EnsureCapacity(len(s.annotations))
		for _, a := range s.annotations {
			ev := evs.AppendEmpty()
			ev.SetName(a.value)
			if a.us != 0 {
				ev.SetTimestamp(microsToTimestamp(a.us))
			}
		}
	}
}

func kindFrom(k zipkinmodel.Kind) ptrace.SpanKind {
	switch strings.ToUpper(string(k)) {
	case string(zipkinmodel.Client):
		return ptrace.SpanKindClient
	case string(zipkinmodel.Server):
		return ptrace.SpanKindServer
	case string(zipkinmodel.Producer):
		return ptrace.SpanKindProducer
	case string(zipkinmodel.Consumer):
		return ptrace.SpanKindConsumer
	}
	// Zipkin has no kind for local spans; OTLP calls them internal.
	return ptrace.SpanKindInternal
}

// parseIP accepts a textual IPv4 or IPv6 address and says which it is.
func parseIP(s string) (ip net.IP, v4 bool) {
	ip = net.ParseIP(s)
	if ip == nil {
		return nil, false
	}
	if ip4 := ip.To4(); ip4 != nil {
		return ip4, true
	}
	return ip, false
}
