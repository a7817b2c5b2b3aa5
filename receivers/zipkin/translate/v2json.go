package translate

import (
	"errors"
	"fmt"
	"net/netip"

	zipkinmodel "github.com/openzipkin/zipkin-go/model"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// The v2 JSON decoder reads the body in one pass with a small scanner and
// no reflection (encoding/json into zipkin-go's SpanModel cost several
// times the per-span budget of the whole server), straight into ptrace.
// A syntax error fails the batch, as Zipkin does; a span whose fields have
// the wrong type or fail validation is skipped and named.

// maxInterned bounds the per-request table of repeated strings (tag keys
// and short values: "http.method", "GET", "200", cluster names).
const (
	maxInterned    = 4096
	maxInternedLen = 96
)

type spanDecoder struct {
	sc     scanner
	err    error // first problem of the span being decoded
	intern map[string]string
}

func (d *spanDecoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf(format, args...)
	}
}

// string returns b as a string, shared with earlier equal strings of the
// request when short.
func (d *spanDecoder) string(b []byte) string {
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

// str reads a string field; null reads as "".
func (d *spanDecoder) str(field string) string {
	switch d.sc.next() {
	case kindString:
		return d.string(d.sc.rawString())
	case kindNull:
		d.sc.literal("null")
		return ""
	}
	d.fail("%s must be a string", field)
	d.sc.skip()
	return ""
}

// strBytes reads a string field without copying (valid until the next read).
func (d *spanDecoder) strBytes(field string) []byte {
	switch d.sc.next() {
	case kindString:
		return d.sc.rawString()
	case kindNull:
		d.sc.literal("null")
		return nil
	}
	d.fail("%s must be a string", field)
	d.sc.skip()
	return nil
}

// scalar reads a tag value: a string, or a number or bool as its text
// (tags are strings in Zipkin, but lenient clients send others).
func (d *spanDecoder) scalar(key string) (string, bool) {
	switch d.sc.next() {
	case kindString:
		return d.string(d.sc.rawString()), true
	case kindNumber:
		return d.string(d.sc.number()), true
	case kindBool:
		if d.sc.boolean() {
			return "true", true
		}
		return "false", true
	case kindNull:
		d.sc.literal("null")
		return "", false
	}
	d.fail("tag %q must be a string", key)
	d.sc.skip()
	return "", false
}

func (d *spanDecoder) uint(field string, max uint64) uint64 {
	switch d.sc.next() {
	case kindNumber:
		n := d.sc.number()
		v, ok := parseUint(n)
		if !ok || v > max {
			d.fail("%s %s is not a valid count of microseconds", field, shorten(string(n)))
			return 0
		}
		return v
	case kindNull:
		d.sc.literal("null")
		return 0
	}
	d.fail("%s must be a number", field)
	d.sc.skip()
	return 0
}

func (d *spanDecoder) boolean(field string) bool {
	switch d.sc.next() {
	case kindBool:
		return d.sc.boolean()
	case kindNull:
		d.sc.literal("null")
		return false
	}
	d.fail("%s must be a boolean", field)
	d.sc.skip()
	return false
}

// object calls cb with each key of an object (cb must consume the value);
// anything but an object or null is a failure of the span.
func (d *spanDecoder) object(field string, cb func(key []byte)) {
	switch d.sc.next() {
	case kindObject:
	case kindNull:
		d.sc.literal("null")
		return
	default:
		d.fail("%s must be an object", field)
		d.sc.skip()
		return
	}
	if !d.sc.beginObject() {
		return
	}
	for first := true; d.sc.err == nil; first = false {
		k := d.sc.nextKey(first)
		if k == nil {
			return
		}
		cb(k)
	}
}

func (d *spanDecoder) endpoint(field string, ep *endpoint) {
	d.object(field, func(key []byte) {
		switch string(key) {
		case "serviceName":
			ep.service = d.str("serviceName")
		case "ipv4":
			if v := d.strBytes("ipv4"); len(v) > 0 {
				if ip, err := netip.ParseAddr(string(v)); err == nil && ip.Is4() {
					ep.ipv4 = d.string(v)
				} else {
					d.fail("%s.ipv4 %q is not an IPv4 address", field, shorten(string(v)))
				}
			}
		case "ipv6":
			if v := d.strBytes("ipv6"); len(v) > 0 {
				if ip, err := netip.ParseAddr(string(v)); err == nil && ip.Is6() && !ip.Is4In6() {
					ep.ipv6 = d.string(v)
				} else if err != nil || !ip.Is4In6() {
					d.fail("%s.ipv6 %q is not an IPv6 address", field, shorten(string(v)))
				}
			}
		case "port":
			ep.port = uint16(d.uint(field+".port", 65535))
		default:
			d.sc.skip()
		}
	})
}

func (d *spanDecoder) hexID(field string) uint64 {
	b := d.strBytes(field)
	if len(b) == 0 {
		return 0
	}
	v, ok := parseHex64(b)
	if !ok {
		d.fail("%s %q is not up to 16 hex digits", field, shorten(string(b)))
		return 0
	}
	return v
}

func (d *spanDecoder) traceID() zipkinmodel.TraceID {
	b := d.strBytes("traceId")
	var t zipkinmodel.TraceID
	if len(b) == 0 {
		return t
	}
	ok := len(b) <= 32
	if ok && len(b) > 16 {
		t.High, ok = parseHex64(b[:len(b)-16])
		if ok {
			t.Low, ok = parseHex64(b[len(b)-16:])
		}
	} else if ok {
		t.Low, ok = parseHex64(b)
	}
	if !ok {
		d.fail("traceId %q is not 16 or 32 hex digits", shorten(string(b)))
		return zipkinmodel.TraceID{}
	}
	return t
}

// span decodes one span into s, reusing s's tag and annotation slices.
func (d *spanDecoder) span(s *span) {
	tags, anns := s.tags[:0], s.annotations[:0]
	*s = span{}
	d.object("span", func(key []byte) {
		switch string(key) {
		case "traceId":
			s.traceID = d.traceID()
		case "id":
			s.id = d.hexID("id")
		case "parentId":
			s.parent = d.hexID("parentId")
		case "name":
			s.name = d.str("name")
		case "kind":
			s.kind = d.str("kind")
		case "timestamp":
			s.us = d.uint("timestamp", maxMicros)
		case "duration":
			s.durUs = d.uint("duration", maxMicros)
		case "debug":
			s.debug = d.boolean("debug")
		case "shared":
			s.shared = d.boolean("shared")
		case "localEndpoint":
			d.endpoint("localEndpoint", &s.local)
		case "remoteEndpoint":
			d.endpoint("remoteEndpoint", &s.remote)
		case "annotations":
			anns = d.annotations(anns)
		case "tags":
			d.object("tags", func(k []byte) {
				// The key may live in scratch: make it a string before the
				// value is read.
				ks := d.string(k)
				if v, ok := d.scalar(ks); ok {
					tags = append(tags, tag{ks, v})
				}
			})
		default:
			d.sc.skip()
		}
	})
	s.tags, s.annotations = tags, anns
}

func (d *spanDecoder) annotations(anns []annotation) []annotation {
	switch d.sc.next() {
	case kindArray:
	case kindNull:
		d.sc.literal("null")
		return anns
	default:
		d.fail("annotations must be an array")
		d.sc.skip()
		return anns
	}
	if !d.sc.beginArray() {
		return anns
	}
	for first := true; d.sc.nextElem(first); first = false {
		var a annotation
		d.object("annotation", func(key []byte) {
			switch string(key) {
			case "timestamp":
				a.us = d.uint("annotation timestamp", maxMicros)
			case "value":
				a.value = d.str("annotation value")
			default:
				d.sc.skip()
			}
		})
		anns = append(anns, a)
	}
	return anns
}

// DecodeV2JSON decodes and translates a Zipkin v2 JSON body (an array of
// spans). err is set only when the body is not a syntactically valid JSON
// array or nests deeper than maxDepth; spans that parse but are invalid
// (no id, no trace id, bad hex, wrong types) come back in rejected, the
// others in td.
func DecodeV2JSON(body []byte, maxDepth int) (td ptrace.Traces, rejected []Rejected, err error) {
	if maxDepth <= 0 {
		maxDepth = DefaultMaxJSONDepth
	}
	d := spanDecoder{sc: scanner{b: body, maxDepth: maxDepth}, intern: make(map[string]string, 64)}
	sc := &d.sc
	switch sc.peek() {
	case 0:
		return ptrace.Traces{}, nil, errors.New("empty body: expected a JSON array of spans")
	case '[':
	default:
		return ptrace.Traces{}, nil, errors.New("expected a JSON array of spans")
	}
	sc.beginArray()
	b := NewBuilder()
	var s span
	i := 0
	for first := true; sc.nextElem(first); first = false {
		d.err = nil
		isNull := sc.peek() == 'n'
		d.span(&s)
		if sc.err != nil {
			break
		}
		err := d.err
		if err == nil && isNull {
			err = errNilSpan
		}
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
	}
	if sc.err == nil && sc.peek() != 0 {
		sc.fail("data after the array of spans")
	}
	if sc.err != nil {
		return ptrace.Traces{}, nil, fmt.Errorf("malformed JSON near span[%d]: %w", i, sc.err)
	}
	return b.Traces(), rejected, nil
}
