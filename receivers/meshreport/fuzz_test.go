package meshreport

import (
	"bytes"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/meshlens/meshlens/model"
	"github.com/meshlens/meshlens/receivers/meshreport/meshpb"
)

// FuzzConvert decodes arbitrary bytes as a stream message and converts it:
// it must never panic, and every call it keeps must satisfy the invariants
// the rest of the pipeline relies on.
func FuzzConvert(f *testing.F) {
	seed := func(m proto.Message) {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	seed(httpBatch(&meshpb.HTTPServiceMeshMetric{StartTime: t0, EndTime: t0 + 5, SourceServiceName: "a", DestServiceName: "b",
		Endpoint: "/x", Latency: 5, ResponseCode: 200, Status: true, TlsMode: "mTLS", InternalErrorCode: "UH"}))
	seed(tcpBatch(&meshpb.TCPServiceMeshMetric{StartTime: t0, EndTime: t0 + 5, SourceServiceName: "a", ReceivedBytes: 1, SentBytes: 2}))
	f.Add(handHTTPMetric())
	f.Add(appendMsg(nil, fBatchHTTP, appendMsg(nil, fListMetrics, handHTTPMetric())))
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x02, 0x0a, 0x00})

	now := time.UnixMilli(t0)
	f.Fuzz(func(t *testing.T, data []byte) {
		var msg meshpb.ServiceMeshMetrics
		if err := proto.Unmarshal(data, &msg); err != nil {
			return
		}
		calls, _ := Convert(&msg, now)
		for _, c := range calls {
			if c.Source.Service == "" && c.Destination.Service == "" {
				t.Fatalf("call without any service name kept: %+v", c)
			}
			if c.Duration < 0 {
				t.Fatalf("negative duration: %+v", c)
			}
			if c.Protocol == model.ProtocolTCP && c.StatusCode != 0 {
				t.Fatalf("tcp call with status: %+v", c)
			}
			if c.Start.IsZero() {
				t.Fatalf("zero start: %+v", c)
			}
		}
	})
}

// FuzzUnmarshalLenient decodes arbitrary bytes as Collect does: whatever
// proto.Unmarshal accepts decodes to the same message, and whatever the
// lenient decoder accepts holds only valid UTF-8 (proto.Marshal, which
// checks proto3 strings, succeeds).
func FuzzUnmarshalLenient(f *testing.F) {
	b, err := proto.Marshal(httpBatch(&meshpb.HTTPServiceMeshMetric{StartTime: t0, EndTime: t0 + 5, SourceServiceName: "PLACEHOLDER",
		DestServiceName: "b", Endpoint: "/x", SourceInstanceProperties: []*meshpb.KeyStringValuePair{{Key: "namespace", Value: "ns"}}}))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add(bytes.ReplaceAll(b, []byte("PLACEHOLDER"), []byte("bad\xff\xfe\xc3(name")))
	f.Add(handHTTPMetric())
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var strict, lenient meshpb.ServiceMeshMetrics
		strictErr := proto.Unmarshal(data, &strict)
		n, err := unmarshalLenient(data, &lenient)
		if strictErr == nil {
			if err != nil || n != 0 || !proto.Equal(&strict, &lenient) {
				t.Fatalf("valid message decoded differently: err %v, %d replaced", err, n)
			}
			return
		}
		if err != nil {
			return
		}
		if _, err := proto.Marshal(&lenient); err != nil {
			t.Fatalf("lenient decode kept invalid data: %v", err)
		}
		if legacy, err := legacyMetric(&lenient); err == nil && legacy != nil {
			if _, err := proto.Marshal(legacy); err != nil {
				t.Fatalf("legacy metric kept invalid data: %v", err)
			}
		}
	})
}
