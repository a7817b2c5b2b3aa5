package translate

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"time"

	zipkinmodel "github.com/openzipkin/zipkin-go/model"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// Attribute keys of newer OpenTelemetry semantic conventions that also
// describe the peer, read when the Zipkin-style keys are absent.
const (
	attrServerAddress      = "server.address"
	attrServerPort         = "server.port"
	attrNetPeerName        = "net.peer.name"
	attrNetworkPeerAddress = "network.peer.address"
	attrNetworkPeerPort    = "network.peer.port"
	attrHostName           = "host.name"
)

// ToZipkinV2 translates spans back into Zipkin's v2 model, for the Zipkin
// query API. It is the inverse of the ingest translation for spans that came
// in through Zipkin, and a best-effort mapping for spans from OTLP or
// Jaeger: non-string attributes become string tags, an ERROR status becomes
// the "error" tag, events become annotations.
func ToZipkinV2(td ptrace.Traces) []*zipkinmodel.SpanModel {
	out := make([]*zipkinmodel.SpanModel, 0, td.SpanCount())
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		rs := rss.At(i)
		local := localEndpoint(rs.Resource().Attributes())
		sss := rs.ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			scope := sss.At(j).Scope()
			spans := sss.At(j).Spans()
			for k := 0; k < spans.Len(); k++ {
				s := FromSpan(spans.At(k), local)
				addScopeTags(s, scope)
				out = append(out, s)
			}
		}
	}
	return out
}

// FromSpan translates one span; local is the Zipkin local endpoint of its
// resource (nil when unknown).
func FromSpan(sp ptrace.Span, local *zipkinmodel.Endpoint) *zipkinmodel.SpanModel {
	s := &zipkinmodel.SpanModel{Name: sp.Name(), LocalEndpoint: local}
	tid := sp.TraceID()
	s.TraceID = zipkinmodel.TraceID{High: binary.BigEndian.Uint64(tid[:8]), Low: binary.BigEndian.Uint64(tid[8:])}
	sid := sp.SpanID()
	s.ID = zipkinmodel.ID(binary.BigEndian.Uint64(sid[:]))
	if psid := sp.ParentSpanID(); !psid.IsEmpty() {
		p := zipkinmodel.ID(binary.BigEndian.Uint64(psid[:]))
		s.ParentID = &p
	}
	switch sp.Kind() {
	case ptrace.SpanKindClient:
		s.Kind = zipkinmodel.Client
	case ptrace.SpanKindServer:
		s.Kind = zipkinmodel.Server
	case ptrace.SpanKindProducer:
		s.Kind = zipkinmodel.Producer
	case ptrace.SpanKindConsumer:
		s.Kind = zipkinmodel.Consumer
	}
	if start := sp.StartTimestamp(); start != 0 {
		s.Timestamp = start.AsTime()
		if end := sp.EndTimestamp(); end > start {
			s.Duration = time.Duration(end - start)
		}
	}

	attrs := sp.Attributes()
	var remote zipkinmodel.Endpoint
	s.Tags = make(map[string]string, attrs.Len()+1)
	for k, v := range attrs.All() {
		switch k {
		case AttrShared:
			s.Shared = v.Bool() || v.Str() == "true"
			continue
		case AttrDebug:
			s.Debug = v.Bool() || v.Str() == "true"
			continue
		case AttrPeerService:
			remote.ServiceName = v.AsString()
			continue
		case AttrPeerIP:
			setIP(&remote, v.AsString())
			continue
		case AttrPeerPort:
			remote.Port = portOf(v)
			continue
		}
		s.Tags[k] = v.AsString()
	}
	// Fall back to newer conventions for the peer, keeping them as tags too.
	if remote.IPv4 == nil && remote.IPv6 == nil {
		for _, k := range []string{attrNetworkPeerAddress, attrServerAddress, attrNetPeerName} {
			if v, ok := attrs.Get(k); ok && setIP(&remote, v.AsString()) {
				break
			}
		}
	}
	if remote.Port == 0 {
		for _, k := range []string{attrNetworkPeerPort, attrServerPort} {
			if v, ok := attrs.Get(k); ok {
				if remote.Port = portOf(v); remote.Port != 0 {
					break
				}
			}
		}
	}
	if !remote.Empty() {
		s.RemoteEndpoint = &remote
	}

	switch sp.Status().Code() {
	case ptrace.StatusCodeError:
		if _, ok := s.Tags[TagError]; !ok {
			msg := sp.Status().Message()
			if msg == "" {
				msg = "true"
			}
			s.Tags[TagError] = msg
		}
		s.Tags[TagOTelStatusCode] = "ERROR"
	case ptrace.StatusCodeOk:
		s.Tags[TagOTelStatusCode] = "OK"
	}
	if len(s.Tags) == 0 {
		s.Tags = nil
	}

	if evs := sp.Events(); evs.Len() > 0 {
		s.Annotations = make([]zipkinmodel.Annotation, 0, evs.Len())
		for i := 0; i < evs.Len(); i++ {
			ev := evs.At(i)
			s.Annotations = append(s.Annotations, zipkinmodel.Annotation{Timestamp: ev.Timestamp().AsTime(), Value: annotationValue(ev)})
		}
	}
	return s
}

// Tag keys the OpenTelemetry specification's Zipkin mapping gives the
// instrumentation scope.
const (
	TagOTelScopeName    = "otel.scope.name"
	TagOTelScopeVersion = "otel.scope.version"
)

// addScopeTags records the instrumentation scope as the OpenTelemetry
// Zipkin mapping does. The scope the Zipkin receiver itself gives ingested
// spans is left out, so that Zipkin spans read back as they were sent.
func addScopeTags(s *zipkinmodel.SpanModel, scope pcommon.InstrumentationScope) {
	if scope.Name() == "" || scope.Name() == ScopeName {
		return
	}
	if s.Tags == nil {
		s.Tags = map[string]string{}
	}
	if _, ok := s.Tags[TagOTelScopeName]; !ok {
		s.Tags[TagOTelScopeName] = scope.Name()
	}
	if _, ok := s.Tags[TagOTelScopeVersion]; !ok && scope.Version() != "" {
		s.Tags[TagOTelScopeVersion] = scope.Version()
	}
}

// annotationValue is an event as a Zipkin annotation, which has no
// attributes: the event name, followed by the attributes as a JSON object
// when there are any (`name: {"k":"v"}`), as the OpenTelemetry
// specification's Zipkin mapping writes them, so that they are not lost.
func annotationValue(ev ptrace.SpanEvent) string {
	if ev.Attributes().Len() == 0 {
		return ev.Name()
	}
	j, err := json.Marshal(ev.Attributes().AsRaw())
	if err != nil { // NaN or infinite doubles: keep at least the name
		return ev.Name()
	}
	return ev.Name() + ": " + string(j)
}

func localEndpoint(attrs pcommon.Map) *zipkinmodel.Endpoint {
	var ep zipkinmodel.Endpoint
	if v, ok := attrs.Get(AttrServiceName); ok {
		ep.ServiceName = v.AsString()
	}
	if v, ok := attrs.Get(AttrHostIP); ok {
		setIP(&ep, v.AsString())
	}
	if v, ok := attrs.Get(AttrHostPort); ok {
		ep.Port = portOf(v)
	}
	if ep.Empty() {
		return nil
	}
	return &ep
}

func setIP(ep *zipkinmodel.Endpoint, s string) bool {
	ip, v4 := parseIP(s)
	switch {
	case ip == nil:
		return false
	case v4:
		ep.IPv4 = ip
	default:
		ep.IPv6 = ip
	}
	return true
}

func portOf(v pcommon.Value) uint16 {
	var n int64
	switch v.Type() {
	case pcommon.ValueTypeInt:
		n = v.Int()
	case pcommon.ValueTypeStr:
		n, _ = strconv.ParseInt(v.Str(), 10, 32)
	}
	if n <= 0 || n > 65535 {
		return 0
	}
	return uint16(n)
}

// TraceIDString renders a trace id as Zipkin does: 16 hex digits when the
// upper half is zero, else 32.
func TraceIDString(id pcommon.TraceID) string {
	if binary.BigEndian.Uint64(id[:8]) == 0 {
		return hex.EncodeToString(id[8:])
	}
	return hex.EncodeToString(id[:])
}
