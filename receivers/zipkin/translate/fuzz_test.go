package translate

import (
	"encoding/json"
	"fmt"
	"net"
	"testing"
	"time"

	zipkinmodel "github.com/openzipkin/zipkin-go/model"
	zipkinproto "github.com/openzipkin/zipkin-go/proto/zipkin_proto3"
)

const seedV2 = `[{"traceId":"463ac35c9f6413ad48485a3953bb6124","id":"a2fb4a1d1a96d312","parentId":"0020000000000001","name":"get /api","kind":"SERVER","shared":true,"timestamp":1700000000000000,"duration":2000,"localEndpoint":{"serviceName":"backend","ipv4":"192.168.99.101","port":9000},"remoteEndpoint":{"ipv6":"::1","port":58648},"tags":{"error":"x","otel.status_code":"OK"},"annotations":[{"timestamp":1700000000000100,"value":"wr"}]}]`

const seedV1 = `[{"traceId":"48485a3953bb6124","name":"get","id":"6b221d5bc9e6496c","timestamp":1700000000000000,"annotations":[{"timestamp":1700000000000000,"value":"cs","endpoint":{"serviceName":"frontend","ipv4":"10.1.1.1"}},{"timestamp":1700000000001000,"value":"sr","endpoint":{"serviceName":"backend"}}],"binaryAnnotations":[{"key":"ca","value":true,"endpoint":{"ipv6":"::1"}},{"key":"n","value":5}]}]`

// checkDecoded asserts what every successful decode must give: valid spans
// that translate both ways without panicking and without losing any.
func checkDecoded(t *testing.T, spans []*zipkinmodel.SpanModel, rejected []Rejected, err error) {
	if err != nil {
		if spans != nil || rejected != nil {
			t.Fatalf("error %v with results", err)
		}
		return
	}
	for _, s := range spans {
		if verr := Validate(s); verr != nil {
			t.Fatalf("decoder returned an invalid span: %v", verr)
		}
	}
	for _, r := range rejected {
		if r.Err == nil {
			t.Fatal("rejected span without a reason")
		}
		_ = r.String()
	}
	td := ToTraces(spans)
	if td.SpanCount() != len(spans) {
		t.Fatalf("translated %d of %d spans", td.SpanCount(), len(spans))
	}
	if back := ToZipkinV2(td); len(back) != len(spans) {
		t.Fatalf("reverse gave %d of %d spans", len(back), len(spans))
	}
}

func FuzzDecodeV2JSON(f *testing.F) {
	f.Add([]byte(seedV2))
	f.Add([]byte(`[{"traceId":"1","id":"1"},{"id":"2"},null,{"traceId":"x","id":"1"}]`))
	f.Add([]byte(`[[[[[[]]]]]]`))
	f.Add([]byte(`{"a":1}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		spans, rejected, err := DecodeV2JSON(body, 0)
		checkDecoded(t, spans, rejected, err)
	})
}

func FuzzDecodeV1JSON(f *testing.F) {
	f.Add([]byte(seedV1))
	f.Add([]byte(`[{"traceId":"48485a3953bb612448485a3953bb6124","id":"1","annotations":[{"value":"ss"},{"value":"mr"}]},{"traceId":"1"}]`))
	f.Add([]byte(`[null]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		spans, rejected, err := DecodeV1JSON(body, 0)
		checkDecoded(t, spans, rejected, err)
	})
}

func FuzzDecodeProto3(f *testing.F) {
	p, _ := zipkinproto.SpanSerializer{}.Serialize(benchSpans(3))
	f.Add(p)
	f.Add([]byte{0x0a, 0x02, 0x0a, 0x00})
	f.Fuzz(func(t *testing.T, body []byte) {
		spans, rejected, err := DecodeProto3(body)
		checkDecoded(t, spans, rejected, err)
	})
}

func TestCheckJSONDepth(t *testing.T) {
	for _, tc := range []struct {
		in   string
		max  int
		fail bool
	}{
		{`[{"a":[1]}]`, 3, false},
		{`[{"a":[[1]]}]`, 3, true},
		{`["[[[[[[[[["]`, 2, false},
		{`["\"[[[["]`, 1, false},
	} {
		if err := CheckJSONDepth([]byte(tc.in), tc.max); (err != nil) != tc.fail {
			t.Errorf("%s max %d: err %v", tc.in, tc.max, err)
		}
	}
}

func TestDecodeRejectsNamed(t *testing.T) {
	spans, rejected, err := DecodeV2JSON([]byte(`[{"traceId":"01","id":"02"},{"traceId":"01"},{"traceId":"01","id":"zz"},null]`), 0)
	if err != nil || len(spans) != 1 || len(rejected) != 3 {
		t.Fatalf("spans %d rejected %v err %v", len(spans), rejected, err)
	}
	if rejected[0].Index != 1 || rejected[0].TraceID != "0000000000000001" || rejected[2].Index != 3 {
		t.Errorf("rejected %+v", rejected)
	}
	// proto: a 64-bit trace id is valid, a 3-byte one is not.
	p, _ := zipkinproto.SpanSerializer{}.Serialize(benchSpans(1))
	spans, rejected, err = DecodeProto3(p)
	if err != nil || len(spans) != 1 || len(rejected) != 0 {
		t.Fatalf("proto: %d %v %v", len(spans), rejected, err)
	}
}

func benchSpans(n int) []*zipkinmodel.SpanModel {
	ts := time.Unix(1700000000, 0)
	out := make([]*zipkinmodel.SpanModel, n)
	for i := range out {
		parent := zipkinmodel.ID(i + 1)
		out[i] = &zipkinmodel.SpanModel{
			SpanContext: zipkinmodel.SpanContext{TraceID: zipkinmodel.TraceID{High: uint64(i + 7), Low: uint64(i + 99)}, ID: zipkinmodel.ID(i + 1000), ParentID: &parent},
			Name:        "reviews.default.svc.cluster.local:9080/*",
			Kind:        zipkinmodel.Server, Shared: i%2 == 0,
			Timestamp: ts.Add(time.Duration(i) * time.Millisecond), Duration: 3 * time.Millisecond,
			LocalEndpoint:  &zipkinmodel.Endpoint{ServiceName: fmt.Sprintf("reviews.ns%d", i%3), IPv4: net.ParseIP("10.0.0.9").To4(), Port: 9080},
			RemoteEndpoint: &zipkinmodel.Endpoint{IPv4: net.ParseIP("10.0.0.5").To4(), Port: 41000},
			Tags: map[string]string{
				"node_id": "sidecar~10.0.0.9~reviews-v1-545db77b95-abcde.default~default.svc.cluster.local", "zone": "",
				"guid:x-request-id": "a1b2c3d4-e5f6-7890-abcd-ef0123456789", "http.url": "http://reviews:9080/reviews/0",
				"http.method": "GET", "downstream_cluster": "-", "user_agent": "python-requests/2.31",
				"http.protocol": "HTTP/1.1", "peer.address": "10.0.0.5", "request_size": "0", "response_flags": "-",
				"http.status_code": "200", "response_size": "295", "upstream_cluster": "inbound|9080||",
				"upstream_cluster.name": "inbound|9080||", "istio.canonical_revision": "v1",
				"istio.canonical_service": "reviews", "istio.mesh_id": "cluster.local", "istio.namespace": "default",
				"component": "proxy",
			},
		}
	}
	return out
}

// BenchmarkDecodeV2JSON measures decode+translate of Envoy-like v2 JSON
// spans (20 tags each, as Istio sidecars send), per span.
func BenchmarkDecodeV2JSON(b *testing.B) {
	const n = 100
	body, _ := json.Marshal(benchSpans(n))
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		spans, _, err := DecodeV2JSON(body, 0)
		if err != nil || len(spans) != n {
			b.Fatal(err)
		}
		if ToTraces(spans).SpanCount() != n {
			b.Fatal("lost spans")
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/span")
}

func BenchmarkDecodeProto3(b *testing.B) {
	const n = 100
	body, _ := zipkinproto.SpanSerializer{}.Serialize(benchSpans(n))
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		spans, _, err := DecodeProto3(body)
		if err != nil || len(spans) != n {
			b.Fatal(err)
		}
		ToTraces(spans)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/span")
}
