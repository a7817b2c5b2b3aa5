package translate

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	jsoniter "github.com/json-iterator/go"
	zipkinmodel "github.com/openzipkin/zipkin-go/model"
)

// The v2 JSON decoder is a streaming one (jsoniter's Iterator, no
// reflection): encoding/json into zipkin-go's SpanModel cost several times
// the per-span budget of the whole server. It reads the body in one pass:
// a syntax error fails the batch (as Zipkin does), while a span whose
// fields have the wrong type or fail validation is skipped and named.

type spanDecoder struct {
	it  *jsoniter.Iterator
	err error // first problem of the span being decoded
}

func (d *spanDecoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf(format, args...)
	}
}

// str reads a string field; null reads as "".
func (d *spanDecoder) str(field string) string {
	switch d.it.WhatIsNext() {
	case jsoniter.StringValue:
		return d.it.ReadString()
	case jsoniter.NilValue:
		d.it.Skip()
		return ""
	}
	d.fail("%s must be a string", field)
	d.it.Skip()
	return ""
}

// scalar reads a string, number or bool as its text (tags are strings in
// Zipkin, but lenient clients send numbers and bools).
func (d *spanDecoder) scalar(field string) (string, bool) {
	switch d.it.WhatIsNext() {
	case jsoniter.StringValue:
		return d.it.ReadString(), true
	case jsoniter.NumberValue:
		return string(d.it.ReadNumber()), true
	case jsoniter.BoolValue:
		return strconv.FormatBool(d.it.ReadBool()), true
	case jsoniter.NilValue:
		d.it.Skip()
		return "", false
	}
	d.fail("tag %q must be a string", field)
	d.it.Skip()
	return "", false
}

func (d *spanDecoder) uint(field string, max uint64) uint64 {
	switch d.it.WhatIsNext() {
	case jsoniter.NumberValue:
		n := d.it.ReadNumber()
		v, err := strconv.ParseUint(string(n), 10, 64)
		if err != nil || v > max {
			d.fail("%s %s is not a valid count of microseconds", field, shorten(string(n)))
			return 0
		}
		return v
	case jsoniter.NilValue:
		d.it.Skip()
		return 0
	}
	d.fail("%s must be a number", field)
	d.it.Skip()
	return 0
}

func (d *spanDecoder) boolean(field string) bool {
	switch d.it.WhatIsNext() {
	case jsoniter.BoolValue:
		return d.it.ReadBool()
	case jsoniter.NilValue:
		d.it.Skip()
		return false
	}
	d.fail("%s must be a boolean", field)
	d.it.Skip()
	return false
}

// object runs cb for each field of an object; anything else is a failure.
func (d *spanDecoder) object(field string, cb func(key string) bool) {
	switch d.it.WhatIsNext() {
	case jsoniter.ObjectValue:
		d.it.ReadObjectCB(func(_ *jsoniter.Iterator, key string) bool { return cb(key) })
	case jsoniter.NilValue:
		d.it.Skip()
	default:
		d.fail("%s must be an object", field)
		d.it.Skip()
	}
}

func (d *spanDecoder) endpoint(field string) *zipkinmodel.Endpoint {
	var ep zipkinmodel.Endpoint
	d.object(field, func(key string) bool {
		switch key {
		case "serviceName":
			ep.ServiceName = d.str(field + ".serviceName")
		case "ipv4":
			if s := d.str(field + ".ipv4"); s != "" {
				if ip, v4 := parseIP(s); v4 {
					ep.IPv4 = ip
				} else {
					d.fail("%s.ipv4 %q is not an IPv4 address", field, shorten(s))
				}
			}
		case "ipv6":
			if s := d.str(field + ".ipv6"); s != "" {
				if ip, v4 := parseIP(s); ip != nil && !v4 {
					ep.IPv6 = ip
				} else if ip == nil {
					d.fail("%s.ipv6 %q is not an IPv6 address", field, shorten(s))
				}
			}
		case "port":
			ep.Port = uint16(d.uint(field+".port", 65535))
		default:
			d.it.Skip()
		}
		return d.it.Error == nil
	})
	if ep.Empty() {
		return nil
	}
	return &ep
}

func (d *spanDecoder) hexID(field string) uint64 {
	s := d.str(field)
	if s == "" {
		return 0
	}
	v, err := strconv.ParseUint(s, 16, 64)
	if err != nil || len(s) > 16 {
		d.fail("%s %q is not up to 16 hex digits", field, shorten(s))
		return 0
	}
	return v
}

func (d *spanDecoder) span() *zipkinmodel.SpanModel {
	s := &zipkinmodel.SpanModel{}
	var ts, dur uint64
	d.object("span", func(key string) bool {
		switch key {
		case "traceId":
			h := d.str("traceId")
			if h == "" {
				break
			}
			t, err := zipkinmodel.TraceIDFromHex(h)
			if err != nil || len(h) > 32 {
				d.fail("traceId %q is not 16 or 32 hex digits", shorten(h))
			}
			s.TraceID = t
		case "id":
			s.ID = zipkinmodel.ID(d.hexID("id"))
		case "parentId":
			if p := d.hexID("parentId"); p != 0 {
				pid := zipkinmodel.ID(p)
				s.ParentID = &pid
			}
		case "name":
			s.Name = d.str("name")
		case "kind":
			s.Kind = zipkinmodel.Kind(d.str("kind"))
		case "timestamp":
			ts = d.uint("timestamp", maxMicros)
		case "duration":
			dur = d.uint("duration", maxMicros)
		case "debug":
			s.Debug = d.boolean("debug")
		case "shared":
			s.Shared = d.boolean("shared")
		case "localEndpoint":
			s.LocalEndpoint = d.endpoint("localEndpoint")
		case "remoteEndpoint":
			s.RemoteEndpoint = d.endpoint("remoteEndpoint")
		case "annotations":
			d.annotations(s)
		case "tags":
			d.object("tags", func(k string) bool {
				if v, ok := d.scalar(k); ok {
					if s.Tags == nil {
						s.Tags = make(map[string]string, 16)
					}
					s.Tags[k] = v
				}
				return d.it.Error == nil
			})
		default:
			d.it.Skip()
		}
		return d.it.Error == nil
	})
	if ts != 0 {
		s.Timestamp = time.UnixMicro(int64(ts)).UTC()
	}
	s.Duration = time.Duration(dur) * time.Microsecond
	return s
}

func (d *spanDecoder) annotations(s *zipkinmodel.SpanModel) {
	switch d.it.WhatIsNext() {
	case jsoniter.ArrayValue:
	case jsoniter.NilValue:
		d.it.Skip()
		return
	default:
		d.fail("annotations must be an array")
		d.it.Skip()
		return
	}
	d.it.ReadArrayCB(func(*jsoniter.Iterator) bool {
		var a zipkinmodel.Annotation
		d.object("annotation", func(key string) bool {
			switch key {
			case "timestamp":
				if us := d.uint("annotation timestamp", maxMicros); us != 0 {
					a.Timestamp = time.UnixMicro(int64(us)).UTC()
				}
			case "value":
				a.Value = d.str("annotation value")
			default:
				d.it.Skip()
			}
			return d.it.Error == nil
		})
		s.Annotations = append(s.Annotations, a)
		return d.it.Error == nil
	})
}

// DecodeV2JSON decodes a Zipkin v2 JSON body (an array of spans). err is
// set only when the body is not a syntactically valid JSON array; spans
// that parse but are invalid (no id, no trace id, bad hex, wrong types)
// come back in rejected, the others in spans.
func DecodeV2JSON(body []byte, maxDepth int) (spans []*zipkinmodel.SpanModel, rejected []Rejected, err error) {
	if err := CheckJSONDepth(body, maxDepth); err != nil {
		return nil, nil, err
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return nil, nil, errors.New("empty body: expected a JSON array of spans")
	}
	if trimmed[0] != '[' {
		return nil, nil, errors.New("expected a JSON array of spans")
	}
	it := jsoniter.ParseBytes(jsoniter.ConfigDefault, trimmed)
	d := spanDecoder{it: it}
	spans = make([]*zipkinmodel.SpanModel, 0, 16)
	i := 0
	it.ReadArrayCB(func(*jsoniter.Iterator) bool {
		d.err = nil
		isNull := it.WhatIsNext() == jsoniter.NilValue
		s := d.span()
		if it.Error != nil {
			return false
		}
		err := d.err
		if err == nil && isNull {
			err = errNilSpan
		}
		if err == nil {
			err = Validate(s)
		}
		if err != nil {
			rj := Rejected{Index: i, Err: err}
			if !s.TraceID.Empty() {
				rj.TraceID = s.TraceID.String()
			}
			if s.ID != 0 {
				rj.ID = s.ID.String()
			}
			rejected = append(rejected, rj)
		} else {
			spans = append(spans, s)
		}
		i++
		return true
	})
	if it.Error != nil {
		return nil, nil, fmt.Errorf("malformed JSON near span[%d]: %s", i, shortenN(it.Error.Error(), 200))
	}
	if it.WhatIsNext() != jsoniter.InvalidValue || it.Error != io.EOF {
		return nil, nil, errors.New("malformed JSON: data after the array of spans")
	}
	return spans, rejected, nil
}

func shortenN(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
