package translate

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/meshlens/meshlens/receivers/httpbody"
	"net"
	"strings"
	"time"

	zipkinmodel "github.com/openzipkin/zipkin-go/model"
	zipkinproto "github.com/openzipkin/zipkin-go/proto/zipkin_proto3"
	"google.golang.org/protobuf/proto"
)

// DefaultMaxJSONDepth bounds JSON nesting. A Zipkin span is at most four
// levels deep (array, span, annotations, annotation); anything far deeper
// is an attack on the decoder, not a span.
const DefaultMaxJSONDepth = 32

var errNilSpan = errors.New("span is null")

// Rejected names one span dropped from a batch whose encoding was fine.
type Rejected struct {
	// Index is the span's position in the request, from 0.
	Index int
	// TraceID and ID are the ids as sent, when they could be read.
	TraceID, ID string
	Err         error
}

func (r Rejected) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "span[%d]", r.Index)
	if r.TraceID != "" || r.ID != "" {
		fmt.Fprintf(&b, " (traceId=%q id=%q)", r.TraceID, r.ID)
	}
	b.WriteString(": ")
	b.WriteString(r.Err.Error())
	return b.String()
}

// CheckJSONDepth fails when body nests arrays/objects deeper than max. It
// is a linear scan that ignores brackets inside strings, run before the
// real decoder so a deeply nested body costs one pass and no recursion.
func CheckJSONDepth(body []byte, max int) error {
	if max <= 0 {
		max = DefaultMaxJSONDepth
	}
	return httpbody.CheckJSONDepth(body, max)
}

// splitArray parses body as a JSON array and returns its elements. Only a
// body that is not a JSON array fails; the elements are checked later, one
// by one, so one bad span does not cost the batch.
func splitArray(body []byte, maxDepth int) ([]json.RawMessage, error) {
	if err := CheckJSONDepth(body, maxDepth); err != nil {
		return nil, err
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return nil, errors.New("empty body: expected a JSON array of spans")
	}
	if trimmed[0] != '[' {
		return nil, errors.New("expected a JSON array of spans")
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(trimmed, &raw); err != nil {
		return nil, fmt.Errorf("malformed JSON: %w", err)
	}
	return raw, nil
}

// rawIDs reads the ids of a span that failed to decode, to name it.
func rawIDs(raw []byte) (traceID, id string) {
	var ids struct {
		TraceID json.RawMessage `json:"traceId"`
		ID      json.RawMessage `json:"id"`
	}
	if json.Unmarshal(raw, &ids) != nil {
		return "", ""
	}
	return shorten(strings.Trim(string(ids.TraceID), `"`)), shorten(strings.Trim(string(ids.ID), `"`))
}

func shorten(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// ParseProto3 decodes a Zipkin proto3 ListOfSpans. Unlike zipkin-go's
// ParseSpans it accepts 64-bit (8-byte) trace ids, which Zipkin allows, and
// keeps the valid spans of a batch that has invalid ones.
func ParseProto3(body []byte) (spans []*zipkinmodel.SpanModel, rejected []Rejected, err error) {
	var list zipkinproto.ListOfSpans
	if err := proto.Unmarshal(body, &list); err != nil {
		return nil, nil, fmt.Errorf("malformed protobuf ListOfSpans: %w", err)
	}
	spans = make([]*zipkinmodel.SpanModel, 0, len(list.Spans))
	for i, ps := range list.Spans {
		s, err := fromProto(ps)
		if err == nil {
			err = Validate(s)
		}
		if err != nil {
			rejected = append(rejected, Rejected{Index: i, TraceID: fmt.Sprintf("%x", ps.GetTraceId()), ID: fmt.Sprintf("%x", ps.GetId()), Err: err})
			continue
		}
		spans = append(spans, s)
	}
	return spans, rejected, nil
}

func fromProto(ps *zipkinproto.Span) (*zipkinmodel.SpanModel, error) {
	if ps == nil {
		return nil, errNilSpan
	}
	s := &zipkinmodel.SpanModel{
		Name:           ps.Name,
		Shared:         ps.Shared,
		Tags:           ps.Tags,
		LocalEndpoint:  endpointFromProto(ps.LocalEndpoint),
		RemoteEndpoint: endpointFromProto(ps.RemoteEndpoint),
	}
	s.Debug = ps.Debug
	switch len(ps.TraceId) {
	case 8:
		s.TraceID.Low = binary.BigEndian.Uint64(ps.TraceId)
	case 16:
		s.TraceID.High = binary.BigEndian.Uint64(ps.TraceId[:8])
		s.TraceID.Low = binary.BigEndian.Uint64(ps.TraceId[8:])
	default:
		return nil, fmt.Errorf("trace_id has %d bytes, want 8 or 16", len(ps.TraceId))
	}
	if len(ps.Id) != 8 {
		return nil, fmt.Errorf("id has %d bytes, want 8", len(ps.Id))
	}
	s.ID = zipkinmodel.ID(binary.BigEndian.Uint64(ps.Id))
	switch len(ps.ParentId) {
	case 0:
	case 8:
		p := zipkinmodel.ID(binary.BigEndian.Uint64(ps.ParentId))
		s.ParentID = &p
	default:
		return nil, fmt.Errorf("parent_id has %d bytes, want 8", len(ps.ParentId))
	}
	switch ps.Kind {
	case zipkinproto.Span_CLIENT:
		s.Kind = zipkinmodel.Client
	case zipkinproto.Span_SERVER:
		s.Kind = zipkinmodel.Server
	case zipkinproto.Span_PRODUCER:
		s.Kind = zipkinmodel.Producer
	case zipkinproto.Span_CONSUMER:
		s.Kind = zipkinmodel.Consumer
	}
	if ps.Timestamp != 0 {
		s.Timestamp = microsToTime(ps.Timestamp)
	}
	if ps.Timestamp > maxMicros || ps.Duration > maxMicros {
		return nil, fmt.Errorf("timestamp or duration out of range")
	}
	s.Duration = time.Duration(ps.Duration) * time.Microsecond
	if len(ps.Annotations) > 0 {
		s.Annotations = make([]zipkinmodel.Annotation, 0, len(ps.Annotations))
		for _, a := range ps.Annotations {
			if a == nil {
				continue
			}
			s.Annotations = append(s.Annotations, zipkinmodel.Annotation{Timestamp: microsToTime(a.Timestamp), Value: a.Value})
		}
	}
	return s, nil
}

// maxMicros keeps microsecond values inside time.Duration / UnixNano.
const maxMicros = uint64(1<<63-1) / 1000

func microsToTime(us uint64) time.Time {
	if us == 0 || us > maxMicros {
		return time.Time{}
	}
	return time.UnixMicro(int64(us)).UTC()
}

func endpointFromProto(e *zipkinproto.Endpoint) *zipkinmodel.Endpoint {
	if e == nil {
		return nil
	}
	ep := &zipkinmodel.Endpoint{ServiceName: e.ServiceName, Port: uint16(e.Port)}
	if len(e.Ipv4) == 4 {
		ep.IPv4 = net.IP(e.Ipv4)
	}
	if len(e.Ipv6) == 16 {
		ep.IPv6 = net.IP(e.Ipv6)
	}
	if ep.Empty() {
		return nil
	}
	return ep
}
