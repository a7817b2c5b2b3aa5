package meshreport

import (
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/meshlens/meshlens/receivers/meshreport/meshpb"
)

// Field numbers as published in apache/skywalking-data-collect-protocol
// service-mesh-probe/service-mesh.proto and common/Common.proto. The test
// builds wire bytes by hand from these numbers, so a wrong number in
// proto/*.proto fails here even though the generated code is self-consistent.
const (
	fBatchHTTP, fBatchTCP = 1, 2
	fListMetrics          = 1

	fHStart, fHEnd, fHSrcSvc, fHSrcInst, fHDstSvc, fHDstInst = 1, 2, 3, 4, 5, 6
	fHEndpoint, fHLatency, fHCode, fHStatus, fHProto         = 7, 8, 9, 10, 11
	fHDetect, fHTLS, fHErr, fHReqLat, fHRespLat              = 12, 13, 14, 15, 16
	fHSrcProps, fHDstProps                                   = 17, 18

	fTStart, fTEnd, fTSrcSvc, fTSrcInst, fTDstSvc, fTDstInst = 1, 2, 3, 4, 5, 6
	fTDetect, fTTLS, fTErr, fTReqLat, fTRespLat              = 7, 8, 9, 10, 11
	fTSrcProps, fTDstProps, fTRecv, fTSent                   = 12, 13, 14, 15

	fKVKey, fKVValue = 1, 2
)

func appendString(b []byte, num protowire.Number, s string) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendMsg(b []byte, num protowire.Number, m []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, m)
}

func kv(k, v string) []byte {
	return appendString(appendString(nil, fKVKey, k), fKVValue, v)
}

func handHTTPMetric() []byte {
	var m []byte
	m = appendVarint(m, fHStart, 1700000000000)
	m = appendVarint(m, fHEnd, 1700000000042)
	m = appendString(m, fHSrcSvc, "productpage")
	m = appendString(m, fHSrcInst, "productpage-v1-abc")
	m = appendString(m, fHDstSvc, "reviews")
	m = appendString(m, fHDstInst, "reviews-v2-xyz")
	m = appendString(m, fHEndpoint, "/reviews/0")
	m = appendVarint(m, fHLatency, 42)
	m = appendVarint(m, fHCode, 503)
	m = appendVarint(m, fHStatus, 0)
	m = appendVarint(m, fHProto, 1)  // gRPC
	m = appendVarint(m, fHDetect, 1) // server
	m = appendString(m, fHTLS, "mTLS")
	m = appendString(m, fHErr, "UF,URX")
	m = appendVarint(m, fHReqLat, 1500)
	m = appendVarint(m, fHRespLat, 2500)
	m = appendMsg(m, fHSrcProps, kv("namespace", "bookinfo"))
	m = appendMsg(m, fHDstProps, kv("version", "v2"))
	return m
}

func TestWireDecodeHandBuiltHTTP(t *testing.T) {
	list := appendMsg(nil, fListMetrics, handHTTPMetric())
	wire := appendMsg(nil, fBatchHTTP, list)

	var got meshpb.ServiceMeshMetrics
	if err := proto.Unmarshal(wire, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.ProtoReflect().GetUnknown()) != 0 {
		t.Fatalf("unknown fields left: a field number in the .proto is wrong")
	}
	ms := got.GetHttpMetrics().GetMetrics()
	if len(ms) != 1 {
		t.Fatalf("got %d http metrics", len(ms))
	}
	m := ms[0]
	if len(m.ProtoReflect().GetUnknown()) != 0 {
		t.Fatalf("HTTPServiceMeshMetric has unknown fields: a field number is wrong")
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"startTime", m.GetStartTime(), int64(1700000000000)},
		{"endTime", m.GetEndTime(), int64(1700000000042)},
		{"sourceServiceName", m.GetSourceServiceName(), "productpage"},
		{"sourceServiceInstance", m.GetSourceServiceInstance(), "productpage-v1-abc"},
		{"destServiceName", m.GetDestServiceName(), "reviews"},
		{"destServiceInstance", m.GetDestServiceInstance(), "reviews-v2-xyz"},
		{"endpoint", m.GetEndpoint(), "/reviews/0"},
		{"latency", m.GetLatency(), int32(42)},
		{"responseCode", m.GetResponseCode(), int32(503)},
		{"status", m.GetStatus(), false},
		{"protocol", m.GetProtocol(), meshpb.Protocol_gRPC},
		{"detectPoint", m.GetDetectPoint(), meshpb.DetectPoint_server},
		{"tlsMode", m.GetTlsMode(), "mTLS"},
		{"internalErrorCode", m.GetInternalErrorCode(), "UF,URX"},
		{"internalRequestLatencyNanos", m.GetInternalRequestLatencyNanos(), int64(1500)},
		{"internalResponseLatencyNanos", m.GetInternalResponseLatencyNanos(), int64(2500)},
		{"sourceInstanceProperties", m.GetSourceInstanceProperties()[0].GetValue(), "bookinfo"},
		{"destInstanceProperties", m.GetDestInstanceProperties()[0].GetKey(), "version"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestWireDecodeHandBuiltTCP(t *testing.T) {
	var m []byte
	m = appendVarint(m, fTStart, 1700000000000)
	m = appendVarint(m, fTEnd, 1700000001000)
	m = appendString(m, fTSrcSvc, "a")
	m = appendString(m, fTSrcInst, "a-1")
	m = appendString(m, fTDstSvc, "mysql")
	m = appendString(m, fTDstInst, "mysql-0")
	m = appendVarint(m, fTDetect, 2)
	m = appendString(m, fTTLS, "TLS")
	m = appendString(m, fTErr, "UC")
	m = appendVarint(m, fTReqLat, 7)
	m = appendVarint(m, fTRespLat, 8)
	m = appendMsg(m, fTSrcProps, kv("pod", "a-1"))
	m = appendMsg(m, fTDstProps, kv("pod", "mysql-0"))
	m = appendVarint(m, fTRecv, 1234)
	m = appendVarint(m, fTSent, 5678)
	wire := appendMsg(nil, fBatchTCP, appendMsg(nil, fListMetrics, m))

	var got meshpb.ServiceMeshMetrics
	if err := proto.Unmarshal(wire, &got); err != nil {
		t.Fatal(err)
	}
	tm := got.GetTcpMetrics().GetMetrics()[0]
	if len(tm.ProtoReflect().GetUnknown()) != 0 {
		t.Fatalf("TCPServiceMeshMetric has unknown fields: a field number is wrong")
	}
	if tm.GetStartTime() != 1700000000000 || tm.GetEndTime() != 1700000001000 ||
		tm.GetSourceServiceName() != "a" || tm.GetSourceServiceInstance() != "a-1" ||
		tm.GetDestServiceName() != "mysql" || tm.GetDestServiceInstance() != "mysql-0" ||
		tm.GetDetectPoint() != meshpb.DetectPoint_proxy || tm.GetTlsMode() != "TLS" ||
		tm.GetInternalErrorCode() != "UC" || tm.GetInternalRequestLatencyNanos() != 7 ||
		tm.GetInternalResponseLatencyNanos() != 8 ||
		tm.GetSourceInstanceProperties()[0].GetValue() != "a-1" ||
		tm.GetDestInstanceProperties()[0].GetValue() != "mysql-0" ||
		tm.GetReceivedBytes() != 1234 || tm.GetSentBytes() != 5678 {
		t.Fatalf("decoded %v", tm)
	}
}

// TestWireEncodeFieldNumbers encodes with the generated types and reads the
// bytes back with protowire, so the numbers the generated code writes are
// checked against the published ones in the other direction too.
func TestWireEncodeFieldNumbers(t *testing.T) {
	msg := &meshpb.ServiceMeshMetrics{Metrics: &meshpb.ServiceMeshMetrics_TcpMetrics{
		TcpMetrics: &meshpb.TCPServiceMeshMetrics{Metrics: []*meshpb.TCPServiceMeshMetric{{
			SourceServiceName: "src", ReceivedBytes: 11, SentBytes: 22, DetectPoint: meshpb.DetectPoint_server,
		}}},
	}}
	b, err := proto.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 || num != fBatchTCP || typ != protowire.BytesType {
		t.Fatalf("batch tag = %d/%d, want %d/bytes", num, typ, fBatchTCP)
	}
	list, _ := protowire.ConsumeBytes(b[n:])
	num, _, n = protowire.ConsumeTag(list)
	if num != fListMetrics {
		t.Fatalf("list field = %d", num)
	}
	item, _ := protowire.ConsumeBytes(list[n:])
	seen := map[protowire.Number]uint64{}
	for len(item) > 0 {
		num, typ, n := protowire.ConsumeTag(item)
		item = item[n:]
		switch typ {
		case protowire.VarintType:
			v, m := protowire.ConsumeVarint(item)
			seen[num] = v
			item = item[m:]
		case protowire.BytesType:
			v, m := protowire.ConsumeBytes(item)
			seen[num] = uint64(len(v))
			item = item[m:]
		default:
			t.Fatalf("unexpected wire type %d", typ)
		}
	}
	want := map[protowire.Number]uint64{fTSrcSvc: 3, fTRecv: 11, fTSent: 22, fTDetect: 1}
	for k, v := range want {
		if seen[k] != v {
			t.Errorf("field %d = %d, want %d (seen %v)", k, seen[k], v, seen)
		}
	}
}

// TestWireLegacySingleMetric proves the pre-9.x form (one ServiceMeshMetric
// per stream message, fields 1-14) is recovered from a ServiceMeshMetrics
// frame.
func TestWireLegacySingleMetric(t *testing.T) {
	var got meshpb.ServiceMeshMetrics
	if err := proto.Unmarshal(handHTTPMetric(), &got); err != nil {
		t.Fatal(err)
	}
	if got.GetMetrics() != nil {
		t.Fatalf("legacy bytes decoded as a batch: %v", got.GetMetrics())
	}
	m, err := legacyMetric(&got)
	if err != nil || m == nil {
		t.Fatalf("legacyMetric = %v, %v", m, err)
	}
	if m.GetSourceServiceName() != "productpage" || m.GetResponseCode() != 503 || m.GetStartTime() != 1700000000000 {
		t.Fatalf("legacy metric decoded as %v", m)
	}
}
