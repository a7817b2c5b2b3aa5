package remotestorage

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/meshlens/meshlens/query/remotestorage/storagev2"
	"github.com/meshlens/meshlens/storage/tracestore/tracestoretest"
)

// FuzzFromWire: TracesData from a client decodes or fails, never panics,
// and what ToWire encodes decodes to the same span count.
func FuzzFromWire(f *testing.F) {
	m, err := ToWire(tracestoretest.Fixture(tracestoretest.Base()))
	if err != nil {
		f.Fatal(err)
	}
	for _, rs := range m.ResourceSpans {
		f.Add(rs)
	}
	f.Add([]byte{0x0a, 0x02, 0x12})
	f.Fuzz(func(t *testing.T, b []byte) {
		td, err := FromWire(&storagev2.TracesData{ResourceSpans: [][]byte{b}})
		if err != nil {
			return
		}
		again, err := ToWire(td)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		back, err := FromWire(again)
		if err != nil || back.SpanCount() != td.SpanCount() {
			t.Fatalf("round trip: %d spans, then %d, %v", td.SpanCount(), back.SpanCount(), err)
		}
	})
}

// FuzzQuery: any TraceQueryParameters message converts to a query or an
// error, never a panic.
func FuzzQuery(f *testing.F) {
	seed, _ := proto.Marshal(&storagev2.TraceQueryParameters{ServiceName: "a", SearchDepth: 5,
		Attributes: []*storagev2.KeyValue{{Key: "k", Value: &storagev2.AnyValue{Value: &storagev2.AnyValue_IntValue{IntValue: 3}}}}})
	f.Add(seed)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var p storagev2.TraceQueryParameters
		if proto.Unmarshal(b, &p) != nil {
			return
		}
		_, _ = Query(&p)
	})
}
