package meshreport

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/meshlens/meshlens/model"
	"github.com/meshlens/meshlens/receivers/meshreport/meshpb"
)

// BenchmarkDecodeConvert measures the per-message work of Collect: unmarshal
// one 100-metric batch and convert it into a reused call slice. ns/op and
// allocs/op are per metric (b.N counts metrics).
func BenchmarkDecodeConvert(b *testing.B) {
	const batch = 100
	ms := make([]*meshpb.HTTPServiceMeshMetric, batch)
	for i := range ms {
		ms[i] = &meshpb.HTTPServiceMeshMetric{
			StartTime: t0 + int64(i), EndTime: t0 + int64(i) + 12,
			SourceServiceName: "productpage", SourceServiceInstance: fmt.Sprintf("productpage-v1-%d", i%5),
			DestServiceName: "reviews", DestServiceInstance: "reviews-v2-1", Endpoint: "/reviews/0",
			Latency: 12, ResponseCode: 200, Status: true, DetectPoint: meshpb.DetectPoint_client, TlsMode: "mTLS",
		}
	}
	raw, err := proto.Marshal(httpBatch(ms...))
	if err != nil {
		b.Fatal(err)
	}
	r := New(Config{}, nil, nil, nil)
	var calls []model.Call
	var msg meshpb.ServiceMeshMetrics
	b.ReportAllocs()
	b.SetBytes(int64(len(raw) / batch))
	b.ResetTimer()
	for i := 0; i < b.N; i += batch {
		msg.Reset()
		if err := proto.Unmarshal(raw, &msg); err != nil {
			b.Fatal(err)
		}
		calls, err = r.convert(&msg, calls[:0])
		if err != nil || len(calls) != batch {
			b.Fatal(err, len(calls))
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "metrics/s")
}
