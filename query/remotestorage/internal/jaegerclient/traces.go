// Package jaegerclient is Jaeger v1.76.0's own generated gRPC client for
// the remote storage API v2 (gogo-generated, from
// github.com/jaegertracing/jaeger/internal/proto-gen/storage/v2), with the
// two pieces of Jaeger it needs (jptrace.TracesData and the gogo codec),
// so that tests talk to meshlens exactly as Jaeger v2 does. Test use only.
package jaegerclient

import (
	"github.com/gogo/protobuf/jsonpb"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// TracesData is jptrace.TracesData: ptrace.Traces with gogo marshaling
// that delegates to pdata's OTLP encoding.
type TracesData ptrace.Traces

// ToTraces returns the traces.
func (td TracesData) ToTraces() ptrace.Traces { return ptrace.Traces(td) }

// Marshal implements the gogo custom type.
func (td *TracesData) Marshal() ([]byte, error) {
	return new(ptrace.ProtoMarshaler).MarshalTraces(td.ToTraces())
}

// MarshalTo implements the gogo custom type.
func (td *TracesData) MarshalTo(buf []byte) (int, error) { return td.MarshalToSizedBuffer(buf) }

// MarshalToSizedBuffer is used by gogo.
func (td *TracesData) MarshalToSizedBuffer(buf []byte) (int, error) {
	data, err := td.Marshal()
	if err != nil {
		return 0, err
	}
	return copy(buf, data), nil
}

// MarshalJSONPB implements the gogo custom type.
func (td *TracesData) MarshalJSONPB(*jsonpb.Marshaler) ([]byte, error) {
	return new(ptrace.JSONMarshaler).MarshalTraces(td.ToTraces())
}

// UnmarshalJSONPB implements the gogo custom type.
func (td *TracesData) UnmarshalJSONPB(_ *jsonpb.Unmarshaler, data []byte) error {
	t, err := new(ptrace.JSONUnmarshaler).UnmarshalTraces(data)
	if err != nil {
		return err
	}
	*td = TracesData(t)
	return nil
}

// Size implements the gogo custom type.
func (td *TracesData) Size() int { return new(ptrace.ProtoMarshaler).TracesSize(td.ToTraces()) }

// Unmarshal implements the gogo custom type.
func (td *TracesData) Unmarshal(data []byte) error {
	t, err := new(ptrace.ProtoUnmarshaler).UnmarshalTraces(data)
	if err != nil {
		return err
	}
	*td = TracesData(t)
	return nil
}

// ProtoMessage implements proto.Message.
func (*TracesData) ProtoMessage() {}

// Reset implements proto.Message.
func (td *TracesData) Reset() { *td = TracesData(ptrace.NewTraces()) }

// String implements proto.Message.
func (*TracesData) String() string { return "*TracesData" }
