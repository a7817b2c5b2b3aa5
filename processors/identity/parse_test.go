package identity

import (
	"strings"
	"testing"
)

func TestParseUpstreamCluster(t *testing.T) {
	cases := []struct {
		in   string
		ok   bool
		want Cluster
	}{
		{"outbound|9080||reviews.default.svc.cluster.local", true, Cluster{Kind: ClusterOutbound, Port: 9080, Host: "reviews.default.svc.cluster.local", Service: "reviews", Namespace: "default"}},
		{"outbound|9080|v1|reviews.default.svc.cluster.local", true, Cluster{Kind: ClusterOutbound, Port: 9080, Subset: "v1", Host: "reviews.default.svc.cluster.local", Service: "reviews", Namespace: "default"}},
		{"outbound|443||api.example.com", true, Cluster{Kind: ClusterOutbound, Port: 443, Host: "api.example.com", Service: "api.example.com"}},
		{"outbound_.9080_._.reviews.default.svc.cluster.local", true, Cluster{Kind: ClusterOutbound, Port: 9080, Host: "reviews.default.svc.cluster.local", Service: "reviews", Namespace: "default"}},
		{"outbound_.9080_.v2_.reviews.default.svc.cluster.local", true, Cluster{Kind: ClusterOutbound, Port: 9080, Subset: "v2", Host: "reviews.default.svc.cluster.local", Service: "reviews", Namespace: "default"}},
		{"inbound-vip|9080|http|reviews.default.svc.cluster.local", true, Cluster{Kind: ClusterOutbound, Port: 9080, Subset: "http", Host: "reviews.default.svc.cluster.local", Service: "reviews", Namespace: "default"}},
		{"inbound|9080||", true, Cluster{Kind: ClusterInbound, Port: 9080}},
		{"inbound|9080|http|reviews.default.svc.cluster.local", true, Cluster{Kind: ClusterInbound, Port: 9080, Subset: "http", Host: "reviews.default.svc.cluster.local", Service: "reviews", Namespace: "default"}},
		{"outbound|5432||10.1.2.3", true, Cluster{Kind: ClusterOutbound, Port: 5432, Host: "10.1.2.3"}},
		{"PassthroughCluster", true, Cluster{Kind: ClusterPassthrough}},
		{"BlackHoleCluster", true, Cluster{Kind: ClusterBlackHole}},
		{"InboundPassthroughClusterIpv4", true, Cluster{Kind: ClusterInboundPassthrough}},
		{"InboundPassthroughClusterIpv6", true, Cluster{Kind: ClusterInboundPassthrough}},
		{"", false, Cluster{}},
		{"outbound|x||reviews", false, Cluster{}},
		{"outbound|9080|reviews", false, Cluster{}},
		{"outbound|99999||reviews.default.svc.cluster.local", false, Cluster{}},
		{"my_custom_cluster", false, Cluster{}},
		{"outbound|80||a|b", false, Cluster{}},
	}
	for _, tc := range cases {
		got, ok := ParseUpstreamCluster(tc.in)
		if ok != tc.ok || got != tc.want {
			t.Errorf("ParseUpstreamCluster(%q) = %+v, %v; want %+v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestParseAuthority(t *testing.T) {
	cases := []struct {
		in   string
		ok   bool
		want Authority
	}{
		{"reviews:9080", true, Authority{Port: 9080, Service: "reviews"}},
		{"reviews", true, Authority{Service: "reviews"}},
		{"reviews.default.svc.cluster.local", true, Authority{Service: "reviews", Namespace: "default"}},
		{"reviews.default.svc.cluster.local:9080", true, Authority{Port: 9080, Service: "reviews", Namespace: "default"}},
		{"reviews.default.svc", true, Authority{Service: "reviews", Namespace: "default"}},
		{"details.default", true, Authority{Service: "details", Namespace: "default"}},
		{"Details.Default.", true, Authority{Service: "details", Namespace: "default"}},
		{"example.com", true, Authority{Service: "example.com", External: true}},
		{"api.example.com:443", true, Authority{Port: 443, Service: "api.example.com", External: true}},
		{"10.0.0.5:8080", true, Authority{IP: "10.0.0.5", Port: 8080}},
		{"10.0.0.5", true, Authority{IP: "10.0.0.5"}},
		{"[fd00::1]:80", true, Authority{IP: "fd00::1", Port: 80}},
		{"fd00::1", true, Authority{IP: "fd00::1"}},
		{"", false, Authority{}},
		{":80", false, Authority{}},
		{"a..b", false, Authority{}},
		{"reviews:notaport", false, Authority{}},
		{"[fd00::1", false, Authority{}},
		{"[nothost]:80", false, Authority{}},
		{"a/b", false, Authority{}},
	}
	for _, tc := range cases {
		got, ok := ParseAuthority(tc.in)
		if ok != tc.ok || got != tc.want {
			t.Errorf("ParseAuthority(%q) = %+v, %v; want %+v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func FuzzParseUpstreamCluster(f *testing.F) {
	for _, s := range []string{
		"outbound|9080||reviews.default.svc.cluster.local", "outbound|9080|v1|reviews.default.svc.cluster.local",
		"inbound|9080||", "PassthroughCluster", "BlackHoleCluster", "InboundPassthroughClusterIpv4",
		"outbound_.9080_._.reviews.default.svc.cluster.local", "outbound|||", "inbound-vip|1|a|b.c.svc",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, ok := ParseUpstreamCluster(s)
		if !ok {
			if c != (Cluster{}) {
				t.Fatalf("not ok but %+v", c)
			}
			return
		}
		if c.Port < 0 || c.Port > 65535 {
			t.Fatalf("port %d", c.Port)
		}
		if c.Service != "" && !strings.Contains(s, c.Service) {
			t.Fatalf("service %q not in %q", c.Service, s)
		}
		if c.Namespace != "" && c.Service == "" {
			t.Fatalf("namespace without service: %+v", c)
		}
	})
}

func FuzzParseAuthority(f *testing.F) {
	for _, s := range []string{"reviews:9080", "reviews.default.svc.cluster.local", "details.default",
		"[fd00::1]:80", "10.0.0.1:1", "api.example.com", "a.b.c.d.e", "[:", "::"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, ok := ParseAuthority(s)
		if !ok {
			return
		}
		if (a.IP == "") == (a.Service == "") {
			t.Fatalf("%q: exactly one of IP and Service must be set: %+v", s, a)
		}
		if a.Port < 0 || a.Port > 65535 {
			t.Fatalf("port %d", a.Port)
		}
		if a.IP != "" && !isIP(a.IP) {
			t.Fatalf("IP %q", a.IP)
		}
		if a.Service != "" && !strings.Contains(strings.ToLower(s), a.Service) {
			t.Fatalf("service %q not from %q", a.Service, s)
		}
	})
}
