package pebblestore

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// A chunk's protobuf is spliced from the protobuf of the request its spans
// came in: WriteTraces marshals each request once with ptrace's marshaler
// and locates its fields here, and a chunk copies the fields of its spans,
// scopes and resources. Copying each span into a per-trace ptrace.Traces
// and marshalling that (the way before) deep-copied every attribute: 40%
// of the bytes the store allocated per span, and the garbage collector's
// work was most of the OTLP ingest tail (docs/tracestore.md). Decoding
// stays ptrace's: only the framing of the three enclosing messages is
// written here, and TestSplicedChunkDecodesAsCopied checks the result
// against the copy.

// Field numbers of opentelemetry/proto/trace/v1/trace.proto.
const (
	fieldTracesResourceSpans = 1 // TracesData.resource_spans

	fieldRSResource   = 1 // ResourceSpans.resource
	fieldRSScopeSpans = 2 // ResourceSpans.scope_spans
	fieldRSSchemaURL  = 3 // ResourceSpans.schema_url

	fieldSSScope     = 1 // ScopeSpans.scope
	fieldSSSpans     = 2 // ScopeSpans.spans
	fieldSSSchemaURL = 3 // ScopeSpans.schema_url
)

// wireRange is a field of a request's protobuf: tag, length and payload.
type wireRange struct{ lo, hi int }

func (r wireRange) size() int { return r.hi - r.lo }

// wireScope locates, in request req's protobuf, the fields a chunk repeats
// for each scope of spans it holds (absent fields are empty ranges).
type wireScope struct {
	req                                 int
	resource, rsSchema, scope, ssSchema wireRange
}

// walkTraces locates the fields of buf, a TracesData protobuf, appending
// one wireScope per ScopeSpans and one range per Span to scopes and spans,
// in the order ptrace iterates them.
func walkTraces(buf []byte, req int, scopes []wireScope, spans []wireRange) ([]wireScope, []wireRange, error) {
	err := eachField(buf, wireRange{0, len(buf)}, func(num protowire.Number, _, rs wireRange) error {
		if num != fieldTracesResourceSpans {
			return nil
		}
		first := len(scopes)
		var res, schema wireRange
		err := eachField(buf, rs, func(num protowire.Number, f, ss wireRange) error {
			switch num {
			case fieldRSResource:
				res = f
			case fieldRSSchemaURL:
				schema = f
			case fieldRSScopeSpans:
				sc := wireScope{req: req}
				err := eachField(buf, ss, func(num protowire.Number, f, _ wireRange) error {
					switch num {
					case fieldSSScope:
						sc.scope = f
					case fieldSSSpans:
						spans = append(spans, f)
					case fieldSSSchemaURL:
						sc.ssSchema = f
					}
					return nil
				})
				if err != nil {
					return fmt.Errorf("scope spans: %w", err)
				}
				scopes = append(scopes, sc)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("resource spans: %w", err)
		}
		for i := first; i < len(scopes); i++ {
			scopes[i].resource, scopes[i].rsSchema = res, schema
		}
		return nil
	})
	return scopes, spans, err
}

// eachField calls fn for each length-delimited field within r of buf with
// the whole field and its payload; fields of other wire types are skipped.
func eachField(buf []byte, r wireRange, fn func(num protowire.Number, field, payload wireRange) error) error {
	for off := r.lo; off < r.hi; {
		b := buf[off:r.hi]
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("at byte %d: %w", off, protowire.ParseError(n))
		}
		if typ != protowire.BytesType {
			m := protowire.ConsumeFieldValue(num, typ, b[n:])
			if m < 0 {
				return fmt.Errorf("field %d at byte %d: %w", num, off, protowire.ParseError(m))
			}
			off += n + m
			continue
		}
		v, m := protowire.ConsumeBytes(b[n:])
		if m < 0 {
			return fmt.Errorf("field %d at byte %d: %w", num, off, protowire.ParseError(m))
		}
		end := off + n + m
		if err := fn(num, wireRange{off, end}, wireRange{end - len(v), end}); err != nil {
			return err
		}
		off = end
	}
	return nil
}

// spanAt is a span of a trace in a batch: its field in a request's
// protobuf and the index of its scope in writer.scopes.
type spanAt struct {
	scope int
	field wireRange
}

// appendTracesData appends a TracesData protobuf holding spans, which are
// sorted by scope: one ResourceSpans per scope, spans in the given order.
func appendTracesData(b []byte, reqs [][]byte, scopes []wireScope, spans []spanAt) []byte {
	for len(spans) > 0 {
		n := 1
		for n < len(spans) && spans[n].scope == spans[0].scope {
			n++
		}
		sc := &scopes[spans[0].scope]
		buf := reqs[sc.req]
		ssLen := sc.scope.size() + sc.ssSchema.size()
		for _, sp := range spans[:n] {
			ssLen += sp.field.size()
		}
		rsLen := sc.resource.size() + protowire.SizeTag(fieldRSScopeSpans) + protowire.SizeBytes(ssLen) + sc.rsSchema.size()
		b = protowire.AppendTag(b, fieldTracesResourceSpans, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(rsLen))
		b = append(b, buf[sc.resource.lo:sc.resource.hi]...)
		b = protowire.AppendTag(b, fieldRSScopeSpans, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(ssLen))
		b = append(b, buf[sc.scope.lo:sc.scope.hi]...)
		for _, sp := range spans[:n] {
			b = append(b, buf[sp.field.lo:sp.field.hi]...)
		}
		b = append(b, buf[sc.ssSchema.lo:sc.ssSchema.hi]...)
		b = append(b, buf[sc.rsSchema.lo:sc.rsSchema.hi]...)
		spans = spans[n:]
	}
	return b
}
