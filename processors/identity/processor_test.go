package identity

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/meshlens/meshlens/model"
)

// mapResolver is a stand-in for Kubernetes in table tests.
type mapResolver map[string]model.Identity

func (m mapResolver) ResolveIP(ip string, _ int) (model.Identity, bool) {
	id, ok := m[ip]
	return id, ok
}

var (
	gatewaySelf = model.Identity{Service: "istio-ingressgateway", Namespace: "istio-system", Workload: "istio-ingressgateway",
		Instance: "istio-ingressgateway-6c9f", IP: "10.0.0.2"}
	productpageSelf = model.Identity{Service: "productpage", Namespace: "default", Workload: "productpage-v1",
		Version: "v1", Instance: "productpage-v1-5b8d6", IP: "10.0.0.10"}
	reviewsSelf = model.Identity{Service: "reviews", Namespace: "default", Workload: "reviews-v1",
		Version: "v1", Instance: "reviews-v1-7f99c", IP: "10.0.0.20"}

	kube = mapResolver{
		"10.0.0.10": {Service: "productpage", Namespace: "default", Workload: "productpage-v1", Version: "v1", Instance: "productpage-v1-5b8d6"},
		"10.0.0.20": {Service: "reviews", Namespace: "default", Workload: "reviews-v1", Version: "v1", Instance: "reviews-v1-7f99c"},
		"10.0.0.2":  {Service: "istio-ingressgateway", Namespace: "istio-system", Workload: "istio-ingressgateway", Instance: "istio-ingressgateway-6c9f"},
	}
)

func TestProcessCalls(t *testing.T) {
	dir := t.TempDir()
	static := filepath.Join(dir, "static.yaml")
	if err := os.WriteFile(static, []byte(`
- ip: 203.0.113.5
  port: 5432
  service: orders-db
  namespace: databases
  instance: orders-db-primary
- ip: 198.51.100.0/24
  service: legacy
`), 0o600); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name      string
		static    bool
		qualify   bool
		in        model.Call
		wantSrc   model.Identity
		wantDst   model.Identity
		wantTLS   model.TLSMode
		checkOnly bool
	}{
		{
			name: "ingress gateway -> sidecar (gateway upstream leg)",
			in: model.Call{DetectPoint: model.DetectClient, Source: gatewaySelf,
				Destination:     model.Identity{IP: "10.0.0.10", Instance: "10.0.0.10:9080"},
				UpstreamCluster: "outbound|9080||productpage.default.svc.cluster.local", Authority: "bookinfo.example.com"},
			wantSrc: gatewaySelf,
			wantDst: model.Identity{Service: "productpage", Namespace: "default", Workload: "productpage-v1", Version: "v1",
				Instance: "productpage-v1-5b8d6", IP: "10.0.0.10"},
		},
		{
			name: "ingress gateway downstream leg: external client is unknown",
			in: model.Call{DetectPoint: model.DetectServer, Destination: gatewaySelf,
				Source: model.Identity{IP: "192.0.2.7", Instance: "192.0.2.7"}},
			wantSrc: model.Identity{Service: model.Unknown, Namespace: model.Unknown, IP: "192.0.2.7", Instance: "192.0.2.7"},
			wantDst: gatewaySelf,
		},
		{
			name: "sidecar client side: destination from upstream cluster and pod",
			in: model.Call{DetectPoint: model.DetectClient, Source: productpageSelf,
				Destination:     model.Identity{IP: "10.0.0.20", Instance: "10.0.0.20:9080"},
				UpstreamCluster: "outbound|9080|v1|reviews.default.svc.cluster.local"},
			wantSrc: productpageSelf,
			wantDst: reviewsSelf,
		},
		{
			name: "sidecar server side mTLS: source from pod IP, principal kept",
			in: model.Call{DetectPoint: model.DetectServer, TLS: model.TLSMutual, Destination: reviewsSelf,
				Source:          model.Identity{IP: "10.0.0.10", Instance: "10.0.0.10", Principal: "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"},
				UpstreamCluster: "inbound|9080||"},
			wantSrc: model.Identity{Service: "productpage", Namespace: "default", Workload: "productpage-v1", Version: "v1",
				Instance: "productpage-v1-5b8d6", IP: "10.0.0.10", Principal: "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"},
			wantDst: reviewsSelf,
			wantTLS: model.TLSMutual,
		},
		{
			name: "sidecar server side plaintext: same resolution",
			in: model.Call{DetectPoint: model.DetectServer, Destination: reviewsSelf,
				Source: model.Identity{IP: "10.0.0.10", Instance: "10.0.0.10"}, UpstreamCluster: "inbound|9080||"},
			wantSrc: model.Identity{Service: "productpage", Namespace: "default", Workload: "productpage-v1", Version: "v1",
				Instance: "productpage-v1-5b8d6", IP: "10.0.0.10"},
			wantDst: reviewsSelf,
			wantTLS: model.TLSNone,
		},
		{
			name: "TCP to external database, unknown IP",
			in: model.Call{Protocol: model.ProtocolTCP, Source: productpageSelf,
				Destination: model.Identity{IP: "203.0.113.5", Instance: "203.0.113.5:5432"}, UpstreamCluster: "PassthroughCluster"},
			wantSrc: productpageSelf,
			wantDst: model.Identity{Service: model.Unknown, Namespace: model.Unknown, IP: "203.0.113.5", Instance: "203.0.113.5:5432"},
		},
		{
			name:   "TCP to external database in the static file",
			static: true,
			in: model.Call{Protocol: model.ProtocolTCP, Source: productpageSelf,
				Destination: model.Identity{IP: "203.0.113.5", Instance: "203.0.113.5:5432"}, UpstreamCluster: "PassthroughCluster"},
			wantSrc: productpageSelf,
			wantDst: model.Identity{Service: "orders-db", Namespace: "databases", IP: "203.0.113.5", Instance: "orders-db-primary"},
		},
		{
			name:   "static CIDR entry, static consulted before kubernetes",
			static: true,
			in: model.Call{Source: productpageSelf, Destination: model.Identity{IP: "198.51.100.9", Instance: "198.51.100.9:80"},
				UpstreamCluster: "PassthroughCluster"},
			wantSrc: productpageSelf,
			wantDst: model.Identity{Service: "legacy", IP: "198.51.100.9", Instance: "198.51.100.9:80"},
		},
		{
			name:    "no route: short authority resolves in the caller's namespace",
			in:      model.Call{Source: productpageSelf, Authority: "ratings:9080", ResponseFlags: "NR", StatusCode: 404},
			wantSrc: productpageSelf,
			wantDst: model.Identity{Service: "ratings", Namespace: "default"},
		},
		{
			name:    "no route: service.namespace authority",
			in:      model.Call{Source: productpageSelf, Authority: "details.bookinfo", ResponseFlags: "NR"},
			wantSrc: productpageSelf,
			wantDst: model.Identity{Service: "details", Namespace: "bookinfo"},
		},
		{
			name: "unknown source IP surfaces as unknown",
			in: model.Call{DetectPoint: model.DetectServer, Destination: reviewsSelf,
				Source: model.Identity{IP: "10.9.9.9", Instance: "10.9.9.9"}, UpstreamCluster: "inbound|9080||"},
			wantSrc: model.Identity{Service: model.Unknown, Namespace: model.Unknown, IP: "10.9.9.9", Instance: "10.9.9.9"},
			wantDst: reviewsSelf,
		},
		{
			name:    "no address at all still becomes unknown, never dropped",
			in:      model.Call{Source: productpageSelf, UpstreamCluster: "UH_unknown_cluster"},
			wantSrc: productpageSelf,
			wantDst: model.Identity{Service: model.Unknown, Namespace: model.Unknown},
		},
		{
			name:    "black hole",
			in:      model.Call{Source: productpageSelf, UpstreamCluster: "BlackHoleCluster", ResponseFlags: "UH"},
			wantSrc: productpageSelf,
			wantDst: model.Identity{Service: "BlackHoleCluster"},
		},
		{
			name: "passthrough HTTP names the external host",
			in: model.Call{Source: productpageSelf, UpstreamCluster: "PassthroughCluster", Authority: "api.example.com",
				Destination: model.Identity{IP: "93.184.216.34", Instance: "93.184.216.34:443"}},
			wantSrc: productpageSelf,
			wantDst: model.Identity{Service: "api.example.com", IP: "93.184.216.34", Instance: "93.184.216.34:443"},
		},
		{
			name:    "namespace qualification",
			qualify: true,
			in: model.Call{Source: productpageSelf, Destination: model.Identity{IP: "10.0.0.20", Instance: "10.0.0.20:9080"},
				UpstreamCluster: "outbound|9080||reviews.default.svc.cluster.local"},
			wantSrc: func() model.Identity { s := productpageSelf; s.Service = "productpage.default"; return s }(),
			wantDst: func() model.Identity { s := reviewsSelf; s.Service = "reviews.default"; return s }(),
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Naming.QualifyNamespace = tc.qualify
			if tc.static {
				cfg.StaticIdentities = static
			}
			p, err := New(cfg, nil, kube)
			if err != nil {
				t.Fatal(err)
			}
			calls := []model.Call{tc.in}
			p.ProcessCalls(context.Background(), calls)
			c := calls[0]
			if c.Source != tc.wantSrc {
				t.Errorf("source\n got %+v\nwant %+v", c.Source, tc.wantSrc)
			}
			if c.Destination != tc.wantDst {
				t.Errorf("destination\n got %+v\nwant %+v", c.Destination, tc.wantDst)
			}
			if c.TLS != tc.wantTLS && tc.wantTLS != 0 {
				t.Errorf("TLS changed to %v", c.TLS)
			}
		})
	}
}

func TestClusterCacheBounded(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ClusterCacheSize = 8
	p, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1000; i++ {
		c := []model.Call{{Source: productpageSelf, UpstreamCluster: "outbound|" + itoa(i) + "||svc.ns.svc.cluster.local"}}
		p.ProcessCalls(context.Background(), c)
		if c[0].Destination.Service != "svc" {
			t.Fatalf("got %+v", c[0].Destination)
		}
	}
	if n := len(p.clusters); n > 8 {
		t.Errorf("cluster cache has %d entries, bound is 8", n)
	}
}

func itoa(i int) string {
	b := []byte{}
	for {
		b = append([]byte{byte('0' + i%10)}, b...)
		i /= 10
		if i == 0 {
			return string(b)
		}
	}
}

func TestStaticFileErrors(t *testing.T) {
	for _, bad := range []string{
		"- ip: 10.0.0.1\n",               // no service
		"- ip: nonsense\n  service: x\n", // bad ip
		"- ip: 10.0.0.1\n  service: x\n  port: 70000\n",
		"- ip: 10.0.0.1\n  service: x\n- ip: 10.0.0.1\n  service: y\n",
		"- ip: 10.0.0.1\n  service: x\n  colour: red\n", // unknown key
		"ip: 10.0.0.1\n",
	} {
		if _, err := ParseStatic([]byte(bad)); err == nil {
			t.Errorf("ParseStatic(%q) accepted", bad)
		}
	}
	if _, err := New(Config{StaticIdentities: "/nonexistent/file.yaml"}, nil); err == nil {
		t.Error("missing static file accepted")
	}
}

func TestExampleStaticFileLoads(t *testing.T) {
	r, err := LoadStaticFile("../../deploy/static-identities.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if id, ok := r.ResolveIP("10.20.0.5", 5432); !ok || id.Service != "orders-db" || id.Instance != "orders-db-primary" {
		t.Errorf("example entry: %+v %v", id, ok)
	}
	if _, ok := r.ResolveIP("10.20.0.5", 80); ok {
		t.Error("port-specific entry matched another port")
	}
	if id, ok := r.ResolveIP("10.30.0.77", 8080); !ok || id.Service != "billing-legacy" {
		t.Errorf("CIDR entry: %+v %v", id, ok)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := (Config{ClusterCacheSize: -1}).Validate(); err == nil {
		t.Error("negative cache accepted")
	}
	if err := (Config{Naming: Naming{Labels: []string{""}}}).Validate(); err == nil {
		t.Error("empty label accepted")
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Error(err)
	}
}

// BenchmarkProcessCalls resolves a typical batch: client-side calls named
// by their upstream cluster and server-side calls whose source resolves by
// IP.
func BenchmarkProcessCalls(b *testing.B) {
	p, err := New(DefaultConfig(), nil, kube)
	if err != nil {
		b.Fatal(err)
	}
	tmpl := make([]model.Call, 100)
	for i := range tmpl {
		if i%2 == 0 {
			tmpl[i] = model.Call{Source: productpageSelf, Destination: model.Identity{IP: "10.0.0.20", Instance: "10.0.0.20:9080"},
				UpstreamCluster: "outbound|9080||reviews.default.svc.cluster.local"}
		} else {
			tmpl[i] = model.Call{Destination: reviewsSelf, Source: model.Identity{IP: "10.0.0.10", Instance: "10.0.0.10"},
				UpstreamCluster: "inbound|9080||"}
		}
	}
	calls := make([]model.Call, len(tmpl))
	b.ReportAllocs()
	for b.Loop() {
		copy(calls, tmpl)
		p.ProcessCalls(context.Background(), calls)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(calls)), "ns/call")
}

// TestConcurrentWorkers runs ProcessCalls from several goroutines, as the
// queue's workers do (run with -race), with a cluster cache small enough
// to be cleared while in use.
func TestConcurrentWorkers(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ClusterCacheSize = 4
	p, err := New(cfg, nil, kube)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	for w := 0; w < 4; w++ {
		go func(w int) {
			defer func() { done <- struct{}{} }()
			for i := 0; i < 500; i++ {
				c := []model.Call{{Source: productpageSelf, UpstreamCluster: "outbound|" + itoa(i%10+w) + "||reviews.default.svc.cluster.local",
					Destination: model.Identity{IP: "10.0.0.20", Instance: "10.0.0.20:9080"}}}
				p.ProcessCalls(context.Background(), c)
				if c[0].Destination != reviewsSelf {
					t.Errorf("got %+v", c[0].Destination)
					return
				}
			}
		}(w)
	}
	for w := 0; w < 4; w++ {
		<-done
	}
}
