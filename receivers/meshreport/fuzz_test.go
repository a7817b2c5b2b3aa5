package meshreport

import (
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
