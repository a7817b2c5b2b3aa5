package jaegerclient

import (
	"reflect"

	gogoproto "github.com/gogo/protobuf/proto"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
)

// Codec is Jaeger's gogocodec, limited to this package's types: pass it
// with grpc.ForceCodecV2 (it is not registered globally).
type Codec struct{}

var _ encoding.CodecV2 = Codec{}

// Name implements encoding.CodecV2.
func (Codec) Name() string { return proto.Name }

func gogo(v any) bool {
	return reflect.TypeOf(v).Elem().PkgPath() == reflect.TypeOf(Codec{}).PkgPath()
}

// Marshal implements encoding.CodecV2.
func (Codec) Marshal(v any) (mem.BufferSlice, error) {
	if gogo(v) {
		b, err := gogoproto.Marshal(v.(gogoproto.Message))
		return mem.BufferSlice{mem.SliceBuffer(b)}, err
	}
	return encoding.GetCodecV2(proto.Name).Marshal(v)
}

// Unmarshal implements encoding.CodecV2.
func (Codec) Unmarshal(data mem.BufferSlice, v any) error {
	if gogo(v) {
		return gogoproto.Unmarshal(data.Materialize(), v.(gogoproto.Message))
	}
	return encoding.GetCodecV2(proto.Name).Unmarshal(data, v)
}
