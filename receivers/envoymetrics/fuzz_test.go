package envoymetrics

import (
	"testing"
	"unicode/utf8"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/model/labels"
	"google.golang.org/protobuf/proto"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
)

func validMetricName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == ':' || (i > 0 && c >= '0' && c <= '9')) {
			return false
		}
	}
	return true
}

func validLabelName(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == ':' {
			return false
		}
	}
	return validMetricName(s)
}

// FuzzExtract: any stat name yields a valid Prometheus name and valid,
// distinct label names, and never panics.
func FuzzExtract(f *testing.F) {
	for _, s := range []string{
		"cluster.outbound|9080||reviews.default.svc.cluster.local.upstream_rq_total",
		"listener.0.0.0.0_15006.http.inbound_http.downstream_rq_2xx",
		"http.ingress.dynamodb.table.locations.capacity.GetItem.__partition_id=ABC1234",
		"istiocustom.istio_requests_total.reporter=.=source;.;a=.=b;.;",
		"cluster..", "", ".", "istiocustom.", "=.=;.;", "cluster.x.upstream_rq_200",
	} {
		f.Add(s)
	}
	x := newTagExtractor("cluster.local", []string{"istiocustom"})
	f.Fuzz(func(t *testing.T, stat string) {
		name, tags := x.Extract(stat)
		if !validMetricName(name) {
			t.Fatalf("invalid metric name %q from %q", name, stat)
		}
		seen := map[string]bool{}
		for _, tg := range tags {
			if !validLabelName(tg.Name) || seen[tg.Name] {
				t.Fatalf("bad or duplicate label name %q from %q", tg.Name, stat)
			}
			seen[tg.Name] = true
		}
	})
}

// FuzzConvertFamily: any decodable MetricFamily converts without panic into
// series with valid names and UTF-8 label values and no duplicate labels.
func FuzzConvertFamily(f *testing.F) {
	for _, mf := range []*dto.MetricFamily{
		counter("cluster.a.upstream_rq_total", 1, 1000),
		histogram("cluster.a.upstream_rq_time", 1000),
		summary("listener.0.0.0.0_80.downstream_cx_length_ms", 1000),
		{Name: proto.String("http.x.rq"), Type: dto.MetricType_GAUGE.Enum(), Metric: []*dto.Metric{{
			Label: []*dto.LabelPair{{Name: proto.String("service"), Value: proto.String("spoof")}, {Name: proto.String("__name__"), Value: proto.String("x")}},
			Gauge: &dto.Gauge{Value: proto.Float64(2)}}}},
	} {
		b, err := proto.Marshal(mf)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0x0a, 0x00})
	if b, err := proto.Marshal(histogram("istiocustom.m.Z=.=1;.;le=.=x;.;instance=.=spoof;.;", 1000)); err == nil {
		f.Add(b)
	}
	x := newTagExtractor("cluster.local", []string{"istiocustom"})
	f.Fuzz(func(t *testing.T, data []byte) {
		var mf dto.MetricFamily
		if err := proto.Unmarshal(data, &mf); err != nil {
			return
		}
		c := newConverter(newNameCache(x, 100), proxyFromNode(&corev3.Node{Id: "p", Cluster: "svc"}), 8192)
		_, _, err := c.family(&mf, 1000, func(l labels.Labels, _ int64, _ float64) error {
			if !validMetricName(l.Get(labels.MetricName)) {
				t.Fatalf("invalid name in %v", l)
			}
			if l.Get("service") != "svc" {
				t.Fatalf("proxy label overridden: %v", l)
			}
			prev := ""
			l.Range(func(lb labels.Label) {
				if lb.Name <= prev && prev != "" {
					t.Fatalf("labels not sorted or duplicated at %q in %v", lb.Name, l)
				}
				prev = lb.Name
				if lb.Name != labels.MetricName && !validLabelName(lb.Name) {
					t.Fatalf("invalid label name %q", lb.Name)
				}
				if !utf8.ValidString(lb.Value) {
					t.Fatalf("invalid UTF-8 value in %v", l)
				}
			})
			return nil
		})
		if err != nil {
			t.Fatalf("emit never fails here, got %v", err)
		}
	})
}

// TestFastLabelsMatchSlowPath checks the presorted path against the
// general one (sort and dedupe) on names whose tags sort before, between
// and after __name__, le and quantile.
func TestFastLabelsMatchSlowPath(t *testing.T) {
	x := newTagExtractor("cluster.local", []string{"istiocustom"})
	c := newConverter(newNameCache(x, 100), proxyFromNode(&corev3.Node{Id: "p", Cluster: "svc", Metadata: nil}), 8192)
	for _, stat := range []string{
		"istiocustom.m.A=.=1;.;le=.=x;.;zz=.=2;.;instance=.=spoof;.;service=.=s;.;",
		"cluster.outbound|80||a.b.svc.cluster.local.upstream_rq_200",
		"server.live",
	} {
		cn := c.names.get(stat)
		for _, extra := range [][2]string{{"", ""}, {"le", "1.0"}, {"quantile", "0.5"}} {
			fast := c.labels(cn, &dto.Metric{}, cn.name, extra[0], extra[1])
			slow := c.labels(&cachedName{name: cn.name, tags: cn.tags}, &dto.Metric{}, cn.name, extra[0], extra[1])
			if !labels.Equal(fast, slow) {
				t.Errorf("%s %v:\nfast %v\nslow %v", stat, extra, fast, slow)
			}
		}
	}
}
