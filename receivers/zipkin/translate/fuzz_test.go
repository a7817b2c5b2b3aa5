package translate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	zipkinmodel "github.com/openzipkin/zipkin-go/model"
	zipkinproto "github.com/openzipkin/zipkin-go/proto/zipkin_proto3"
)

const seedV2 = `[{"traceId":"463ac35c9f6413ad48485a3953bb6124","id":"a2fb4a1d1a96d312","parentId":"0020000000000001","name":"get /api","kind":"SERVER","shared":true,"timestamp":1700000000000000,"duration":2000,"localEndpoint":{"serviceName":"backend","ipv4":"192.168.99.101","port":9000},"remoteEndpoint":{"ipv6":"::1","port":58648},"tags":{"error":"x","otel.status_code":"OK"},"annotations":[{"timestamp":1700000000000100,"value":"wr"}]}]`

const seedV1 = `[{"traceId":"48485a3953bb6124","name":"get","id":"6b221d5bc9e6496c","timestamp":1700000000000000,"annotations":[{"timestamp":1700000000000000,"value":"cs","endpoint":{"serviceName":"frontend","ipv4":"10.1.1.1"}},{"timestamp":1700000000001000,"value":"sr","endpoint":{"serviceName":"backend"}}],"binaryAnnotations":[{"key":"ca","value":true,"endpoint":{"ipv6":"::1"}},{"key":"n","value":5}]}]`

// checkParsed asserts what every successful parse must give: valid spans
// that translate both ways without panicking and without losing any.
func checkParsed(t *testing.T, spans []*zipkinmodel.SpanModel, rejected []Rejected, err error) {
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
	checkRejected(t, rejected)
	td := ToTraces(spans)
	if td.SpanCount() != len(spans) {
		t.Fatalf("translated %d of %d spans", td.SpanCount(), len(spans))
	}
	if back := ToZipkinV2(td); len(back) != len(spans) {
		t.Fatalf("reverse gave %d of %d spans", len(back), len(spans))
	}
}

func checkRejected(t *testing.T, rejected []Rejected) {
	for _, r := range rejected {
		if r.Err == nil {
			t.Fatal("rejected span without a reason")
		}
		_ = r.String()
	}
}

func FuzzDecodeV2JSON(f *testing.F) {
	f.Add([]byte(seedV2))
	f.Add([]byte(`[{"traceId":"1","id":"1"},{"id":"2"},null,{"traceId":"x","id":"1"}]`))
	f.Add([]byte(`[[[[[[]]]]]]`))
	f.Add([]byte(`{"a":1}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		td, rejected, err := DecodeV2JSON(body, 0)
		// Differential check against encoding/json and zipkin-go: a valid
		// array is never refused as a whole, invalid JSON never accepted,
		// and every span zipkin-go accepts is kept.
		var raws []json.RawMessage
		if json.Unmarshal(body, &raws) == nil && CheckJSONDepth(body, DefaultMaxJSONDepth) == nil && bytes.HasPrefix(bytes.TrimSpace(body), []byte("[")) {
			if err != nil {
				t.Fatalf("valid JSON array refused: %v", err)
			}
			want := 0
			for _, r := range raws {
				var m zipkinmodel.SpanModel
				if !bytes.Equal(bytes.TrimSpace(r), []byte("null")) && strictSpan(r) && json.Unmarshal(r, &m) == nil && Validate(&m) == nil && validEndpoints(&m) {
					want++
				}
			}
			if td.SpanCount() < want {
				t.Fatalf("kept %d spans, zipkin-go accepts %d; rejected %v", td.SpanCount(), want, rejected)
			}
		} else if err == nil && !json.Valid(body) {
			t.Fatal("invalid JSON accepted")
		}
		if err != nil {
			return
		}
		checkRejected(t, rejected)
		// Every span that came through must be valid and survive the way back.
		back := ToZipkinV2(td)
		for _, s := range back {
			if s.TraceID.Empty() || s.ID == 0 {
				t.Fatalf("invalid span kept: %+v", s)
			}
		}
		if len(back) != td.SpanCount() {
			t.Fatal("reverse lost spans")
		}
	})
}

func FuzzDecodeV1JSON(f *testing.F) {
	f.Add([]byte(seedV1))
	f.Add([]byte(`[{"traceId":"48485a3953bb612448485a3953bb6124","id":"1","annotations":[{"value":"ss"},{"value":"mr"}]},{"traceId":"1"}]`))
	f.Add([]byte(`[null]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		spans, rejected, err := ParseV1JSON(body, 0)
		checkParsed(t, spans, rejected, err)
	})
}

func FuzzDecodeProto3(f *testing.F) {
	p, _ := zipkinproto.SpanSerializer{}.Serialize(benchSpans(3))
	f.Add(p)
	f.Add([]byte{0x0a, 0x02, 0x0a, 0x00})
	f.Fuzz(func(t *testing.T, body []byte) {
		spans, rejected, err := ParseProto3(body)
		checkParsed(t, spans, rejected, err)
		td, rejected2, err2 := DecodeProto3(body)
		// The wire walker is more lenient (invalid UTF-8 is replaced, not
		// fatal), so only a batch ParseProto3 takes must be taken the same.
		if err == nil && err2 != nil {
			t.Fatalf("ParseProto3 takes the batch, DecodeProto3 refuses it: %v", err2)
		}
		if err == nil && (td.SpanCount() != len(spans) || len(rejected2) != len(rejected)) {
			t.Fatalf("DecodeProto3 and ParseProto3 disagree: %d/%d spans, %d/%d rejected", td.SpanCount(), len(spans), len(rejected2), len(rejected))
		}
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
	td, rejected, err := DecodeV2JSON([]byte(`[{"traceId":"01","id":"02"},{"traceId":"01"},{"traceId":"01","id":"zz"},null]`), 0)
	if err != nil || td.SpanCount() != 1 || len(rejected) != 3 {
		t.Fatalf("spans %d rejected %v err %v", td.SpanCount(), rejected, err)
	}
	if rejected[0].Index != 1 || rejected[0].TraceID != "0000000000000001" || rejected[2].Index != 3 {
		t.Errorf("rejected %+v", rejected)
	}
	// proto: a 64-bit trace id is valid, a 3-byte one is not.
	p, _ := zipkinproto.SpanSerializer{}.Serialize(benchSpans(1))
	td, rejected, err = DecodeProto3(p)
	if err != nil || td.SpanCount() != 1 || len(rejected) != 0 {
		t.Fatalf("proto: %d %v %v", td.SpanCount(), rejected, err)
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
		td, _, err := DecodeV2JSON(body, 0)
		if err != nil || td.SpanCount() != n {
			b.Fatal(err)
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
		td, _, err := DecodeProto3(body)
		if err != nil || td.SpanCount() != n {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/span")
}

// validEndpoints: zipkin-go takes any IP in either field; the decoder
// wants an IPv4 address in ipv4 and an IPv6 one in ipv6.
func validEndpoints(m *zipkinmodel.SpanModel) bool {
	for _, e := range []*zipkinmodel.Endpoint{m.LocalEndpoint, m.RemoteEndpoint} {
		if e == nil {
			continue
		}
		if len(e.IPv4) > 0 && e.IPv4.To4() == nil {
			return false
		}
		if len(e.IPv6) > 0 && e.IPv6.To4() != nil {
			return false
		}
	}
	return true
}

// strictSpan filters out what encoding/json and zipkin-go accept but
// Zipkin's own server does not: keys in another case, numeric ids.
func strictSpan(raw []byte) bool {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return false
	}
	known := map[string]bool{"traceId": true, "id": true, "parentId": true, "name": true, "kind": true, "timestamp": true,
		"duration": true, "debug": true, "shared": true, "localEndpoint": true, "remoteEndpoint": true, "annotations": true, "tags": true}
	for k, v := range m {
		if !known[k] && strings.EqualFold(k, "traceId") || !known[k] && strings.EqualFold(k, "id") {
			return false
		}
		switch k {
		case "traceId", "id", "parentId":
			if len(v) == 0 || v[0] != '"' {
				return false
			}
		case "localEndpoint", "remoteEndpoint":
			var ep map[string]json.RawMessage
			if json.Unmarshal(v, &ep) == nil {
				for ek := range ep {
					switch ek {
					case "serviceName", "ipv4", "ipv6", "port":
					default:
						return false
					}
				}
			}
		case "annotations":
			var as []map[string]json.RawMessage
			if json.Unmarshal(v, &as) == nil {
				for _, a := range as {
					for ak := range a {
						if ak != "timestamp" && ak != "value" {
							return false
						}
					}
				}
			}
		default:
			if !known[k] {
				// Unknown keys are skipped by both, unless encoding/json
				// folds them onto a known one.
				for kk := range known {
					if strings.EqualFold(k, kk) {
						return false
					}
				}
			}
		}
	}
	return true
}
