package meshreport

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// maxNesting bounds the recursion of sanitizeWire. The mesh messages nest
// three deep; protobuf-go itself stops at 10,000.
const maxNesting = 64

// unmarshalLenient is proto.Unmarshal, except that invalid UTF-8 in a
// string field is replaced with U+FFFD instead of failing the whole
// message: protobuf-go refuses such proto3 strings, and one bad name would
// otherwise lose every metric of the batch. It returns how many strings it
// replaced. A valid message costs one proto.Unmarshal.
func unmarshalLenient(b []byte, m proto.Message) (int, error) {
	err := proto.Unmarshal(b, m)
	if err == nil || !strings.Contains(err.Error(), "invalid UTF-8") {
		return 0, err
	}
	fixed, n, serr := sanitizeWire(b, m.ProtoReflect().Descriptor(), 0)
	if serr != nil {
		return 0, errors.Join(err, serr)
	}
	proto.Reset(m)
	if err := proto.Unmarshal(fixed, m); err != nil {
		return 0, err
	}
	return n, nil
}

// sanitizeWire re-encodes b, a message of type md, with every string
// field (at any depth) made valid UTF-8. Other fields, unknown ones
// included, are copied byte for byte.
func sanitizeWire(b []byte, md protoreflect.MessageDescriptor, depth int) ([]byte, int, error) {
	if depth > maxNesting {
		return nil, 0, fmt.Errorf("%s nested deeper than %d", md.FullName(), maxNesting)
	}
	out := make([]byte, 0, len(b)+8)
	n := 0
	for len(b) > 0 {
		num, typ, tagLen := protowire.ConsumeTag(b)
		if tagLen < 0 {
			return nil, 0, protowire.ParseError(tagLen)
		}
		valLen := protowire.ConsumeFieldValue(num, typ, b[tagLen:])
		if valLen < 0 {
			return nil, 0, protowire.ParseError(valLen)
		}
		field := b[:tagLen+valLen]
		b = b[tagLen+valLen:]
		fd := md.Fields().ByNumber(num)
		if typ != protowire.BytesType || fd == nil {
			out = append(out, field...)
			continue
		}
		v, _ := protowire.ConsumeBytes(field[tagLen:])
		switch fd.Kind() {
		case protoreflect.StringKind:
			if utf8.Valid(v) {
				out = append(out, field...)
				continue
			}
			out = protowire.AppendTag(out, num, typ)
			out = protowire.AppendString(out, strings.ToValidUTF8(string(v), "\uFFFD"))
			n++
		case protoreflect.MessageKind:
			inner, k, err := sanitizeWire(v, fd.Message(), depth+1)
			if err != nil {
				return nil, 0, err
			}
			out = protowire.AppendTag(out, num, typ)
			out = protowire.AppendBytes(out, inner)
			n += k
		default:
			out = append(out, field...)
		}
	}
	return out, n, nil
}
