package translate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	zipkinmodel "github.com/openzipkin/zipkin-go/model"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// Zipkin v1 has no span kind: the side is told by "core" annotations. A
// v1 span that carries both client (cs/cr) and server (sr/ss) annotations
// is one RPC reported under one id by both sides; like Zipkin's own
// converter, DecodeV1JSON splits it into a CLIENT span and a shared SERVER
// span.
const (
	annClientSend     = "cs"
	annClientRecv     = "cr"
	annServerRecv     = "sr"
	annServerSend     = "ss"
	annMessageSend    = "ms"
	annMessageRecv    = "mr"
	binClientAddr     = "ca"
	binServerAddr     = "sa"
	binMessageAddr    = "ma"
	binLocalComponent = "lc"
)

type v1Endpoint struct {
	ServiceName string `json:"serviceName"`
	IPv4        string `json:"ipv4"`
	IPv6        string `json:"ipv6"`
	Port        int32  `json:"port"`
}

type v1Annotation struct {
	Timestamp uint64      `json:"timestamp"`
	Value     string      `json:"value"`
	Endpoint  *v1Endpoint `json:"endpoint"`
}

type v1BinaryAnnotation struct {
	Key      string          `json:"key"`
	Value    json.RawMessage `json:"value"`
	Type     string          `json:"type"`
	Endpoint *v1Endpoint     `json:"endpoint"`
}

type v1Span struct {
	TraceID           string               `json:"traceId"`
	TraceIDHigh       string               `json:"traceIdHigh"`
	ID                string               `json:"id"`
	ParentID          string               `json:"parentId"`
	Name              string               `json:"name"`
	Timestamp         uint64               `json:"timestamp"`
	Duration          uint64               `json:"duration"`
	Debug             bool                 `json:"debug"`
	Annotations       []v1Annotation       `json:"annotations"`
	BinaryAnnotations []v1BinaryAnnotation `json:"binaryAnnotations"`
}

// DecodeV1JSON decodes and translates a Zipkin v1 JSON body (see ParseV1JSON).
func DecodeV1JSON(body []byte, maxDepth int) (ptrace.Traces, []Rejected, error) {
	spans, rejected, err := ParseV1JSON(body, maxDepth)
	if err != nil {
		return ptrace.Traces{}, nil, err
	}
	return ToTraces(spans), rejected, nil
}

// ParseV1JSON decodes a Zipkin v1 JSON body (an array of v1 spans) into
// v2 spans. err is set only when the body is not a JSON array; invalid
// spans come back in rejected. One v1 span can become two v2 spans (see the
// package comment on shared spans).
func ParseV1JSON(body []byte, maxDepth int) (spans []*zipkinmodel.SpanModel, rejected []Rejected, err error) {
	raw, err := splitArray(body, maxDepth)
	if err != nil {
		return nil, nil, err
	}
	spans = make([]*zipkinmodel.SpanModel, 0, len(raw))
	for i, r := range raw {
		var v v1Span
		err := json.Unmarshal(r, &v)
		if err == nil && bytes.Equal(bytes.TrimSpace(r), []byte("null")) {
			err = errNilSpan
		}
		var out []*zipkinmodel.SpanModel
		if err == nil {
			out, err = convertV1(&v)
		}
		if err != nil {
			tid, id := rawIDs(r)
			rejected = append(rejected, Rejected{Index: i, TraceID: tid, ID: id, Err: err})
			continue
		}
		spans = append(spans, out...)
	}
	return spans, rejected, nil
}

func parseHexID(name, s string) (uint64, error) {
	if s == "" {
		return 0, fmt.Errorf("%s required", name)
	}
	if len(s) > 16 {
		return 0, fmt.Errorf("%s %q longer than 16 hex digits", name, shorten(s))
	}
	v, err := strconv.ParseUint(s, 16, 64)
	if err != nil {
		return 0, fmt.Errorf("%s %q is not hex", name, shorten(s))
	}
	return v, nil
}

func convertV1(v *v1Span) ([]*zipkinmodel.SpanModel, error) {
	if v.TraceID == "" {
		return nil, zipkinmodel.ErrValidTraceIDRequired
	}
	tid, err := zipkinmodel.TraceIDFromHex(v.TraceID)
	if err != nil || len(v.TraceID) > 32 {
		return nil, fmt.Errorf("traceId %q is not 16 or 32 hex digits", shorten(v.TraceID))
	}
	if v.TraceIDHigh != "" && tid.High == 0 {
		if tid.High, err = parseHexID("traceIdHigh", v.TraceIDHigh); err != nil {
			return nil, err
		}
	}
	if tid.Empty() {
		return nil, zipkinmodel.ErrValidTraceIDRequired
	}
	id, err := parseHexID("id", v.ID)
	if err != nil {
		return nil, err
	}
	if id == 0 {
		return nil, zipkinmodel.ErrValidIDRequired
	}
	var parent *zipkinmodel.ID
	if v.ParentID != "" {
		p, err := parseHexID("parentId", v.ParentID)
		if err != nil {
			return nil, err
		}
		if p != 0 {
			pid := zipkinmodel.ID(p)
			parent = &pid
		}
	}
	if v.Timestamp > maxMicros || v.Duration > maxMicros {
		return nil, errors.New("timestamp or duration out of range")
	}

	// Find the core annotations; the rest become annotations of the span
	// whose side they belong to.
	var cs, cr, sr, ss, ms, mr *v1Annotation
	for i := range v.Annotations {
		a := &v.Annotations[i]
		switch a.Value {
		case annClientSend:
			cs = a
		case annClientRecv:
			cr = a
		case annServerRecv:
			sr = a
		case annServerSend:
			ss = a
		case annMessageSend:
			ms = a
		case annMessageRecv:
			mr = a
		}
	}

	newSpan := func() *zipkinmodel.SpanModel {
		s := &zipkinmodel.SpanModel{Name: v.Name}
		s.TraceID = tid
		s.ID = zipkinmodel.ID(id)
		s.ParentID = parent
		s.Debug = v.Debug
		return s
	}
	var client, server *zipkinmodel.SpanModel
	var out []*zipkinmodel.SpanModel
	switch {
	case cs != nil || cr != nil:
		client = newSpan()
		client.Kind = zipkinmodel.Client
		first, last := cs, cr
		client.LocalEndpoint = endpointOf(first, last)
		client.Timestamp, client.Duration = timing(v, first, last)
		out = append(out, client)
	case ms != nil:
		client = newSpan()
		client.Kind = zipkinmodel.Producer
		client.LocalEndpoint = endpointOf(ms, nil)
		client.Timestamp, client.Duration = timing(v, ms, nil)
		out = append(out, client)
	}
	switch {
	case sr != nil || ss != nil:
		server = newSpan()
		server.Kind = zipkinmodel.Server
		server.LocalEndpoint = endpointOf(sr, ss)
		if client != nil {
			// Both sides reported under one id: the server half is shared and
			// times itself from its own annotations, not the span's.
			server.Shared = true
			server.Timestamp, server.Duration = timing(&v1Span{}, sr, ss)
		} else {
			server.Timestamp, server.Duration = timing(v, sr, ss)
			// In v1 the client owns the timestamp of an RPC span; a server
			// side reported without one is the shared half.
			server.Shared = v.Timestamp == 0 && parent != nil
		}
		out = append(out, server)
	case mr != nil:
		server = newSpan()
		server.Kind = zipkinmodel.Consumer
		server.LocalEndpoint = endpointOf(mr, nil)
		server.Timestamp, server.Duration = timing(v, mr, nil)
		out = append(out, server)
	}
	if len(out) == 0 {
		local := newSpan()
		local.Timestamp = microsToTime(v.Timestamp)
		local.Duration = time.Duration(v.Duration) * time.Microsecond
		out = append(out, local)
	}
	if client != nil && server != nil && client.LocalEndpoint != nil && server.LocalEndpoint == nil {
		server.LocalEndpoint = client.LocalEndpoint
	}

	// pick chooses the v2 span an annotation or tag belongs to: the one
	// whose local endpoint has the same service, else the first.
	pick := func(ep *v1Endpoint) *zipkinmodel.SpanModel {
		if ep != nil && len(out) > 1 {
			for _, s := range out {
				if s.LocalEndpoint != nil && s.LocalEndpoint.ServiceName == ep.ServiceName {
					return s
				}
			}
		}
		return out[0]
	}
	for i := range v.Annotations {
		a := &v.Annotations[i]
		switch a.Value {
		case annClientSend, annClientRecv, annServerRecv, annServerSend, annMessageSend, annMessageRecv:
			continue
		}
		s := pick(a.Endpoint)
		s.Annotations = append(s.Annotations, zipkinmodel.Annotation{Timestamp: microsToTime(a.Timestamp), Value: a.Value})
		if s.LocalEndpoint == nil {
			s.LocalEndpoint = a.Endpoint.model()
		}
	}
	for i := range v.BinaryAnnotations {
		b := &v.BinaryAnnotations[i]
		switch b.Key {
		case binClientAddr:
			// The client's address, seen by the server.
			if server != nil {
				server.RemoteEndpoint = b.Endpoint.model()
			} else if client == nil {
				out[0].RemoteEndpoint = b.Endpoint.model()
			}
			continue
		case binServerAddr, binMessageAddr:
			if client != nil {
				client.RemoteEndpoint = b.Endpoint.model()
			} else if server == nil {
				out[0].RemoteEndpoint = b.Endpoint.model()
			}
			continue
		}
		s := pick(b.Endpoint)
		if s.Tags == nil {
			s.Tags = make(map[string]string, len(v.BinaryAnnotations))
		}
		s.Tags[b.Key] = binaryValue(b.Value)
		if s.LocalEndpoint == nil && b.Endpoint != nil {
			s.LocalEndpoint = b.Endpoint.model()
		}
	}
	// Without an explicit address, each side's peer is the other side.
	if client != nil && server != nil && server.Kind == zipkinmodel.Server {
		if client.RemoteEndpoint == nil && server.LocalEndpoint != nil {
			client.RemoteEndpoint = server.LocalEndpoint
		}
		if server.RemoteEndpoint == nil && client.LocalEndpoint != nil {
			server.RemoteEndpoint = client.LocalEndpoint
		}
	}
	return out, nil
}

// timing picks a span's start and duration: the v1 span's own fields when
// set, else the core annotations'.
func timing(v *v1Span, first, last *v1Annotation) (time.Time, time.Duration) {
	ts, dur := v.Timestamp, v.Duration
	if ts == 0 && first != nil {
		ts = first.Timestamp
	}
	if dur == 0 && first != nil && last != nil && last.Timestamp > first.Timestamp {
		dur = last.Timestamp - first.Timestamp
	}
	return microsToTime(ts), time.Duration(dur) * time.Microsecond
}

func endpointOf(a, b *v1Annotation) *zipkinmodel.Endpoint {
	if a != nil && a.Endpoint != nil {
		return a.Endpoint.model()
	}
	if b != nil && b.Endpoint != nil {
		return b.Endpoint.model()
	}
	return nil
}

func (e *v1Endpoint) model() *zipkinmodel.Endpoint {
	if e == nil {
		return nil
	}
	ep := &zipkinmodel.Endpoint{ServiceName: e.ServiceName}
	if e.Port > 0 && e.Port <= 65535 {
		ep.Port = uint16(e.Port)
	}
	if ip, v4 := parseIP(e.IPv4); ip != nil && v4 {
		ep.IPv4 = ip
	}
	if ip, v4 := parseIP(e.IPv6); ip != nil && !v4 {
		ep.IPv6 = ip
	}
	if ep.Empty() {
		return nil
	}
	return ep
}

// binaryValue renders a v1 binary annotation value (a string, bool or
// number in JSON) as the string a v2 tag holds.
func binaryValue(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s
		}
	}
	return string(raw)
}
