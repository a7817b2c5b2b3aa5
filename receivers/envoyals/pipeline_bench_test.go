package envoyals

import (
	"context"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/meshlens/meshlens/model"
	"github.com/meshlens/meshlens/processors/endpoints"
	"github.com/meshlens/meshlens/processors/identity"
)

// BenchmarkPipelineHTTPEntries runs the stages owned next to this package
// on each entry: gRPC-level framing, wire decode, conversion, identity
// resolution (static resolver for the peer IP) and endpoint templating.
// Aggregation and storage are other packages' benchmarks.
func BenchmarkPipelineHTTPEntries(b *testing.B) {
	raw := benchMessage()
	cfg := DefaultConfig()
	conv := newConverter(&cfg, parseNode(productpage, cfg.ServiceLabels, cfg.TrustDomain))
	static, err := identity.NewStaticResolver([]identity.StaticEntry{{IP: "10.0.0.20", Service: "reviews", Namespace: "default"}})
	if err != nil {
		b.Fatal(err)
	}
	idp, err := identity.New(identity.DefaultConfig(), nil, static)
	if err != nil {
		b.Fatal(err)
	}
	ep, err := endpoints.New(endpoints.DefaultConfig(), nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	// Without peer metadata, so identity has work to do.
	var msgBytes []byte
	{
		m, err := UnmarshalMessage(raw)
		if err != nil {
			b.Fatal(err)
		}
		for _, e := range m.GetHttpLogs().GetLogEntry() {
			e.CommonProperties.FilterStateObjects = nil
		}
		if msgBytes, err = proto.Marshal(m); err != nil {
			b.Fatal(err)
		}
	}
	buf := make([]model.Call, 0, 128)
	var empty emptypb.Empty
	var msg message
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	m0, cpu0 := startCount(), cpuNanos()
	entries := 0
	for b.Loop() {
		if err := proto.Unmarshal(msgBytes, &empty); err != nil {
			b.Fatal(err)
		}
		if err := splitMessage(empty.ProtoReflect().GetUnknown(), &msg); err != nil {
			b.Fatal(err)
		}
		buf = buf[:0]
		for _, e := range msg.http {
			if err := decodeHTTP(e, &conv.e, &conv.strs); err != nil {
				b.Fatal(err)
			}
			if buf, err = conv.appendHTTP(buf, &conv.e); err != nil {
				b.Fatal(err)
			}
			entries++
		}
		idp.ProcessCalls(ctx, buf)
		ep.ProcessCalls(ctx, buf)
	}
	b.StopTimer()
	if buf[0].Destination.Service != "reviews" || buf[0].Endpoint != "GET:/reviews/{id}" {
		b.Fatalf("pipeline output %+v", buf[0])
	}
	reportPerEntry(b, entries, m0, cpu0)
}
