package translate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"unicode/utf8"

	zipkinmodel "github.com/openzipkin/zipkin-go/model"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"google.golang.org/protobuf/encoding/protowire"
)

// The proto3 decoder walks the wire format of zipkin.proto3.ListOfSpans
// with protowire instead of unmarshalling into the generated structs: the
// generated map<string,string> of tags alone cost more than the whole
// JSON path. A wire-level error fails the batch; a span with bad ids is
// skipped and named. Invalid UTF-8 in strings is replaced rather than
// failing the batch.

// Field numbers of zipkin.proto3.
const (
	fieldListSpans = 1

	fieldTraceID    = 1
	fieldParentID   = 2
	fieldID         = 3
	fieldKind       = 4
	fieldName       = 5
	fieldTimestamp  = 6
	fieldDuration   = 7
	fieldLocal      = 8
	fieldRemote     = 9
	fieldAnnotation = 10
	fieldTags       = 11
	fieldDebug      = 12
	fieldShared     = 13

	fieldEPService = 1
	fieldEPIPv4    = 2
	fieldEPIPv6    = 3
	fieldEPPort    = 4

	fieldAnnTimestamp = 1
	fieldAnnValue     = 2
)

var errWire = errors.New("malformed protobuf")

type protoDecoder struct {
	intern map[string]string
	err    error // first problem of the current span
}

func (d *protoDecoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf(format, args...)
	}
}

func (d *protoDecoder) string(b []byte) string {
	if !utf8.Valid(b) {
		return string([]rune(string(b))) // replaces invalid bytes with U+FFFD
	}
	if len(b) == 0 {
		return ""
	}
	if len(b) > maxInternedLen {
		return string(b)
	}
	if s, ok := d.intern[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(d.intern) < maxInterned {
		d.intern[s] = s
	}
	return s
}

// fields calls fn for each field of a message; fn returns the bytes it
// consumed of the value, -1 to have the value skipped (or re-read, which
// fails if it was truncated), or another negative number for an error.
func fields(b []byte, fn func(num protowire.Number, typ protowire.Type, v []byte) int) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errWire
		}
		b = b[n:]
		used := fn(num, typ, b)
		if used == -1 {
			used = protowire.ConsumeFieldValue(num, typ, b)
		}
		if used < 0 {
			return errWire
		}
		b = b[used:]
	}
	return nil
}

func consumeBytes(typ protowire.Type, b []byte, out *[]byte) int {
	if typ != protowire.BytesType {
		return -1 // skipped; a wrong wire type is tolerated as unknown
	}
	v, n := protowire.ConsumeBytes(b)
	*out = v
	return n
}

func (d *protoDecoder) endpoint(b []byte) (endpoint, error) {
	var ep endpoint
	err := fields(b, func(num protowire.Number, typ protowire.Type, v []byte) int {
		var raw []byte
		switch num {
		case fieldEPService:
			n := consumeBytes(typ, v, &raw)
			ep.service = d.string(raw)
			return n
		case fieldEPIPv4:
			n := consumeBytes(typ, v, &raw)
			if ip, ok := netip.AddrFromSlice(raw); ok && ip.Is4() {
				ep.ipv4 = ip.String()
			}
			return n
		case fieldEPIPv6:
			n := consumeBytes(typ, v, &raw)
			if ip, ok := netip.AddrFromSlice(raw); ok && ip.Is6() && !ip.Is4In6() {
				ep.ipv6 = ip.String()
			}
			return n
		case fieldEPPort:
			if typ != protowire.VarintType {
				return -1
			}
			p, n := protowire.ConsumeVarint(v)
			if p32 := int32(p); p32 > 0 && p32 <= 65535 {
				ep.port = uint16(p32)
			}
			return n
		}
		return -1
	})
	return ep, err
}

func (d *protoDecoder) span(b []byte, s *span) error {
	tags, anns := s.tags[:0], s.annotations[:0]
	*s = span{}
	var traceID, id, parent []byte
	haveID := false
	err := fields(b, func(num protowire.Number, typ protowire.Type, v []byte) int {
		var raw []byte
		switch num {
		case fieldTraceID:
			return consumeBytes(typ, v, &traceID)
		case fieldParentID:
			return consumeBytes(typ, v, &parent)
		case fieldID:
			haveID = true
			return consumeBytes(typ, v, &id)
		case fieldKind:
			if typ != protowire.VarintType {
				return -1
			}
			k, n := protowire.ConsumeVarint(v)
			switch k {
			case 1:
				s.kind = string(zipkinmodel.Client)
			case 2:
				s.kind = string(zipkinmodel.Server)
			case 3:
				s.kind = string(zipkinmodel.Producer)
			case 4:
				s.kind = string(zipkinmodel.Consumer)
			}
			return n
		case fieldName:
			n := consumeBytes(typ, v, &raw)
			s.name = d.string(raw)
			return n
		case fieldTimestamp:
			if typ != protowire.Fixed64Type {
				return -1
			}
			ts, n := protowire.ConsumeFixed64(v)
			s.us = ts
			return n
		case fieldDuration:
			if typ != protowire.VarintType {
				return -1
			}
			dur, n := protowire.ConsumeVarint(v)
			s.durUs = dur
			return n
		case fieldLocal, fieldRemote:
			n := consumeBytes(typ, v, &raw)
			if n < 0 {
				return n
			}
			ep, err := d.endpoint(raw)
			if err != nil {
				return -2
			}
			if num == fieldLocal {
				s.local = ep
			} else {
				s.remote = ep
			}
			return n
		case fieldAnnotation:
			n := consumeBytes(typ, v, &raw)
			if n < 0 {
				return n
			}
			var a annotation
			err := fields(raw, func(num protowire.Number, typ protowire.Type, v []byte) int {
				switch {
				case num == fieldAnnTimestamp && typ == protowire.Fixed64Type:
					ts, n := protowire.ConsumeFixed64(v)
					a.us = ts
					return n
				case num == fieldAnnValue:
					var val []byte
					n := consumeBytes(typ, v, &val)
					a.value = d.string(val)
					return n
				}
				return -1
			})
			if err != nil {
				return -2
			}
			if a.us <= maxMicros {
				anns = append(anns, a)
			}
			return n
		case fieldTags:
			n := consumeBytes(typ, v, &raw)
			if n < 0 {
				return n
			}
			var k, val string
			err := fields(raw, func(num protowire.Number, typ protowire.Type, v []byte) int {
				var b []byte
				switch num {
				case 1:
					n := consumeBytes(typ, v, &b)
					k = d.string(b)
					return n
				case 2:
					n := consumeBytes(typ, v, &b)
					val = d.string(b)
					return n
				}
				return -1
			})
			if err != nil {
				return -2
			}
			tags = append(tags, tag{k, val})
			return n
		case fieldDebug, fieldShared:
			if typ != protowire.VarintType {
				return -1
			}
			x, n := protowire.ConsumeVarint(v)
			if num == fieldDebug {
				s.debug = x != 0
			} else {
				s.shared = x != 0
			}
			return n
		}
		return -1
	})
	s.tags, s.annotations = tags, anns
	if err != nil {
		return err
	}
	switch len(traceID) {
	case 8:
		s.traceID.Low = binary.BigEndian.Uint64(traceID)
	case 16:
		s.traceID.High = binary.BigEndian.Uint64(traceID[:8])
		s.traceID.Low = binary.BigEndian.Uint64(traceID[8:])
	default:
		d.fail("trace_id has %d bytes, want 8 or 16", len(traceID))
	}
	if len(id) == 8 {
		s.id = binary.BigEndian.Uint64(id)
	} else if haveID || len(id) != 0 {
		d.fail("id has %d bytes, want 8", len(id))
	}
	switch len(parent) {
	case 0:
	case 8:
		s.parent = binary.BigEndian.Uint64(parent)
	default:
		d.fail("parent_id has %d bytes, want 8", len(parent))
	}
	if s.us > maxMicros || s.durUs > maxMicros {
		d.fail("timestamp or duration out of range")
	}
	return nil
}

// DecodeProto3 decodes and translates a Zipkin proto3 ListOfSpans. Like
// ParseProto3 it accepts 64-bit (8-byte) trace ids and keeps the valid
// spans of a batch that has invalid ones.
func DecodeProto3(body []byte) (ptrace.Traces, []Rejected, error) {
	d := protoDecoder{intern: make(map[string]string, 64)}
	b := NewBuilder()
	var rejected []Rejected
	var s span
	i := 0
	err := fields(body, func(num protowire.Number, typ protowire.Type, v []byte) int {
		if num != fieldListSpans || typ != protowire.BytesType {
			// Skipped as an unknown field, as protobuf-go (ParseProto3)
			// does with a known field of the wrong wire type.
			return -1
		}
		var raw []byte
		n := consumeBytes(typ, v, &raw)
		if n < 0 {
			return -2
		}
		d.err = nil
		if err := d.span(raw, &s); err != nil {
			return -2
		}
		err := d.err
		if err == nil {
			err = s.validate()
		}
		if err != nil {
			rj := Rejected{Index: i, Err: err}
			if !s.traceID.Empty() {
				rj.TraceID = s.traceID.String()
			}
			if s.id != 0 {
				rj.ID = zipkinmodel.ID(s.id).String()
			}
			rejected = append(rejected, rj)
		} else {
			b.append(&s)
		}
		i++
		return n
	})
	if err != nil {
		return ptrace.Traces{}, nil, fmt.Errorf("malformed protobuf ListOfSpans near span[%d]", i)
	}
	return b.Traces(), rejected, nil
}
