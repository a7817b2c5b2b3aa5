package envoyals

import (
	"runtime"
	"strconv"
	"syscall"
	"testing"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/meshlens/meshlens/model"
)

// benchMessage is a realistic ALS message: 100 outbound HTTP entries from
// one sidecar to a few peers, with Istio ≥1.24 upstream_peer filter state.
func benchMessage() []byte {
	peers := []*anypb.Any{
		peerStruct("reviews-v1", "default", "reviews", "v1"),
		peerStruct("reviews-v2", "default", "reviews", "v2"),
		peerStruct("details-v1", "default", "details", "v1"),
	}
	var entries []*accesslogv3.HTTPAccessLogEntry
	for i := 0; i < 100; i++ {
		entries = append(entries, httpEntry(func(e *accesslogv3.HTTPAccessLogEntry) {
			e.CommonProperties.FilterStateObjects = map[string]*anypb.Any{"upstream_peer": peers[i%3]}
			e.Request.Path = "/reviews/" + strconv.Itoa(i)
			e.Request.RequestId = "5d1c6f0e-9a3b-4c1e-8e0f-" + strconv.Itoa(100000000000+i)
			e.Request.UserAgent = "Mozilla/5.0"
		}))
	}
	b, err := proto.Marshal(httpMsg(productpage, entries...))
	if err != nil {
		panic(err)
	}
	return b
}

// BenchmarkDecodeHTTPEntries measures what the receiver does per entry:
// protobuf decode of the message plus conversion into the stream's reused
// []model.Call buffer.
func BenchmarkDecodeHTTPEntries(b *testing.B) {
	raw := benchMessage()
	cfg := DefaultConfig()
	conv := newConverter(&cfg, parseNode(productpage, cfg.ServiceLabels, cfg.TrustDomain))
	buf := make([]model.Call, 0, 128)
	b.ReportAllocs()
	b.ResetTimer()
	m0 := startCount()
	cpu0 := cpuNanos()
	entries := 0
	var empty emptypb.Empty
	var msg message
	for b.Loop() {
		// What the gRPC codec does, then what the stream handler does.
		if err := proto.Unmarshal(raw, &empty); err != nil {
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
			var err error
			if buf, err = conv.appendHTTP(buf, &conv.e); err != nil {
				b.Fatal(err)
			}
			entries++
		}
	}
	b.StopTimer()
	reportPerEntry(b, entries, m0, cpu0)
}

// BenchmarkDecodeHTTPEntriesGenerated is the same work through the
// generated protobuf types, for comparison.
func BenchmarkDecodeHTTPEntriesGenerated(b *testing.B) {
	raw := benchMessage()
	cfg := DefaultConfig()
	conv := newConverter(&cfg, parseNode(productpage, cfg.ServiceLabels, cfg.TrustDomain))
	buf := make([]model.Call, 0, 128)
	b.ReportAllocs()
	b.ResetTimer()
	m0 := startCount()
	cpu0 := cpuNanos()
	entries := 0
	for b.Loop() {
		msg, err := UnmarshalMessage(raw)
		if err != nil {
			b.Fatal(err)
		}
		buf = buf[:0]
		for _, h := range msg.GetHttpLogs().GetLogEntry() {
			e := entryFromHTTP(h)
			buf, _ = conv.appendHTTP(buf, &e)
			entries++
		}
	}
	b.StopTimer()
	reportPerEntry(b, entries, m0, cpu0)
}

// startCount snapshots the allocation count; reportPerEntry turns the
// difference into allocs/entry next to ns/entry (one op is 100 entries).
func startCount() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.Mallocs
}

// cpuNanos is the process's user+system CPU time. On a shared machine the
// wall-clock ns/entry includes time spent waiting for a core; cpu-ns/entry
// (all threads, GC included) is what one core's throughput follows from.
func cpuNanos() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

func reportPerEntry(b *testing.B, entries int, mallocs0 uint64, cpu0 int64) {
	if entries == 0 {
		return
	}
	b.ReportMetric(float64(cpuNanos()-cpu0)/float64(entries), "cpu-ns/entry")
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(entries), "ns/entry")
	b.ReportMetric(float64(ms.Mallocs-mallocs0)/float64(entries), "allocs/entry")
}

// UnmarshalMessage decodes a message with the generated types, for the
// comparison benchmark and reference tests.
func UnmarshalMessage(b []byte) (*alsv3.StreamAccessLogsMessage, error) {
	m := new(alsv3.StreamAccessLogsMessage)
	if err := proto.Unmarshal(b, m); err != nil {
		return nil, err
	}
	return m, nil
}
