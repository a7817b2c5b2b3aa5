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
func SpanIDFrom(id zipkinmodel.ID) pcommon.SpanID {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(id))
	return pcommon.SpanID(b)
}

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
	service string
	ip      string
	port    uint16
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
func (b *Builder) Append(s *zipkinmodel.SpanModel) {
	key := resourceKey{}
	if le := s.LocalEndpoint; le != nil {
		key.service = le.ServiceName
		key.ip = endpointIP(le)
		key.port = le.Port
	}
	spans, ok := b.scopes[key]
	if !ok {
		rs := b.td.ResourceSpans().AppendEmpty()
		attrs := rs.Resource().Attributes()
		attrs.PutStr(AttrServiceName, key.service)
		if key.ip != "" {
			attrs.PutStr(AttrHostIP, key.ip)
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

func endpointIP(e *zipkinmodel.Endpoint) string {
	if ip := e.IPv4; len(ip) != 0 {
		return ip.String()
	}
	if ip := e.IPv6; len(ip) != 0 {
		return ip.String()
	}
	return ""
}

func fillSpan(sp ptrace.Span, s *zipkinmodel.SpanModel) {
	sp.SetTraceID(TraceIDFrom(s.TraceID))
	sp.SetSpanID(SpanIDFrom(s.ID))
	if s.ParentID != nil && *s.ParentID != 0 {
		sp.SetParentSpanID(SpanIDFrom(*s.ParentID))
	}
	sp.SetName(s.Name)
	sp.SetKind(kindFrom(s.Kind))
	if !s.Timestamp.IsZero() {
		start := pcommon.NewTimestampFromTime(s.Timestamp)
		sp.SetStartTimestamp(start)
		sp.SetEndTimestamp(start + pcommon.Timestamp(s.Duration))
	}

	attrs := sp.Attributes()
	attrs.EnsureCapacity(len(s.Tags) + 5)
	if re := s.RemoteEndpoint; re != nil {
		if re.ServiceName != "" {
			attrs.PutStr(AttrPeerService, re.ServiceName)
		}
		if ip := endpointIP(re); ip != "" {
			attrs.PutStr(AttrPeerIP, ip)
		}
		if re.Port != 0 {
			attrs.PutInt(AttrPeerPort, int64(re.Port))
		}
	}
	if s.Shared {
		attrs.PutBool(AttrShared, true)
	}
	if s.Debug {
		attrs.PutBool(AttrDebug, true)
	}

	code, desc := ptrace.StatusCodeUnset, ""
	for k, v := range s.Tags {
		switch k {
		case TagOTelStatusCode:
			switch strings.ToUpper(v) {
			case "ERROR":
				code = ptrace.StatusCodeError
			case "OK":
				if code != ptrace.StatusCodeError {
					code = ptrace.StatusCodeOk
				}
			}
			continue
		case TagOTelStatusDescription:
			desc = v
			continue
		case TagError:
			code = ptrace.StatusCodeError
			if desc == "" && v != "" && v != "true" {
				desc = v
			}
		}
		attrs.PutStr(k, v)
	}
	if code != ptrace.StatusCodeUnset {
		sp.Status().SetCode(code)
		if code == ptrace.StatusCodeError {
			sp.Status().SetMessage(desc)
		}
	}

	if len(s.Annotations) > 0 {
		evs := sp.Events()
		evs.EnsureCapacity(len(s.Annotations))
		for _, a := range s.Annotations {
			ev := evs.AppendEmpty()
			ev.SetName(a.Value)
			if !a.Timestamp.IsZero() {
				ev.SetTimestamp(pcommon.NewTimestampFromTime(a.Timestamp))
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
