package endpoints

import (
	"context"
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/meshlens/meshlens/model"
)

var reviews = model.Identity{Service: "reviews", Namespace: "default"}

func httpCall(method, path string) model.Call {
	return model.Call{Destination: reviews, Protocol: model.ProtocolHTTP, Method: method, Path: path}
}

func mustNew(t testing.TB, cfg Config) *Processor {
	t.Helper()
	p, err := New(cfg, prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestEndpointNames(t *testing.T) {
	cases := []struct {
		call model.Call
		want string
	}{
		{httpCall("GET", "/reviews/0?x=1"), "GET:/reviews/{id}"},
		{httpCall("GET", "/api/users/12345"), "GET:/api/users/{id}"},
		{httpCall("DELETE", "/api/users/12345/"), "DELETE:/api/users/{id}/"},
		{httpCall("GET", "/orders/5d1c6f0e-9a3b-4c1e-8e0f-123456789abc/items"), "GET:/orders/{id}/items"},
		{httpCall("GET", "/commits/9fceb02d0ae598e95dc970b74767f19372d61af8"), "GET:/commits/{id}"},
		{httpCall("GET", "/blobs/a1b2c3d4"), "GET:/blobs/{id}"},
		{httpCall("GET", "/reports/2024-01-15"), "GET:/reports/{id}"},
		{httpCall("GET", "/reports/2024-01-15T10:00:00Z/summary"), "GET:/reports/{id}/summary"},
		{httpCall("GET", "/calls/123-456-789"), "GET:/calls/{id}"},
		{httpCall("GET", "/s/eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0"), "GET:/s/{id}"},
		{httpCall("GET", "/files/aGVsbG8gd29ybGQgdGhpcyBpcyBiYXNlNjQ="), "GET:/files/{id}"},
		{httpCall("GET", "/users/jane@example.com"), "GET:/users/{id}"},
		{httpCall("GET", "/api/v1/products"), "GET:/api/v1/products"},
		{httpCall("GET", "/deadbeef"), "GET:/deadbeef"},
		{httpCall("GET", "/productpage#frag"), "GET:/productpage"},
		{httpCall("GET", "/"), "GET:/"},
		{httpCall("GET", ""), "GET:/"},
		{httpCall("POST", "*"), "POST:/*"},
		{httpCall("", "/health"), ":/health"},
		{model.Call{Destination: reviews, Protocol: model.ProtocolGRPC, Method: "POST", Path: "/hipstershop.CartService/GetCart"}, "/hipstershop.CartService/GetCart"},
		{model.Call{Destination: reviews, Protocol: model.ProtocolTCP}, ""},
		{model.Call{Destination: reviews, Protocol: model.ProtocolTCP, Path: "/x", Endpoint: "stale"}, ""},
		{model.Call{Destination: reviews, Protocol: model.ProtocolHTTP, Endpoint: "GET:/given"}, "GET:/given"},
		{httpCall("GET", "/a/b/c/d/e/f/g/h"), "GET:/a/b/c/{rest}"},
	}
	cfg := DefaultConfig()
	cfg.MaxSegments = 3
	p := mustNew(t, cfg)
	for _, tc := range cases {
		calls := []model.Call{tc.call}
		p.ProcessCalls(context.Background(), calls)
		if calls[0].Endpoint != tc.want {
			t.Errorf("%s %q: endpoint %q, want %q", tc.call.Method, tc.call.Path, calls[0].Endpoint, tc.want)
		}
	}
}

func TestRules(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Rules = []Rule{
		{Service: "reviews", Match: `^/products/[A-Z0-9]{10}$`, Replace: "/products/{sku}"},
		{Match: `^/static/.*`, Replace: "/static/*"},
	}
	p := mustNew(t, cfg)
	calls := []model.Call{
		httpCall("GET", "/products/OLJCESPC7Z"),
		httpCall("GET", "/static/css/site.css?v=3"),
		{Destination: model.Identity{Service: "details"}, Protocol: model.ProtocolHTTP, Method: "GET", Path: "/products/OLJCESPC7Z"},
	}
	p.ProcessCalls(context.Background(), calls)
	want := []string{"GET:/products/{sku}", "GET:/static/*", "GET:/products/OLJCESPC7Z"}
	for i, w := range want {
		if calls[i].Endpoint != w {
			t.Errorf("call %d: %q, want %q", i, calls[i].Endpoint, w)
		}
	}
	if err := (Config{Rules: []Rule{{Match: "("}}}).Validate(); err == nil {
		t.Error("bad regex accepted")
	}
}

func TestAdaptiveCollapse(t *testing.T) {
	cfg := DefaultConfig()
	cfg.AdaptiveThreshold = 5
	p := mustNew(t, cfg)
	names := []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace"}
	var got []string
	for _, n := range names {
		c := []model.Call{httpCall("GET", "/users/"+n+"/profile")}
		p.ProcessCalls(context.Background(), c)
		got = append(got, c[0].Endpoint)
	}
	for i, e := range got {
		want := "GET:/users/" + names[i] + "/profile"
		if i >= 5 {
			want = "GET:/users/{param}/profile"
		}
		if e != want {
			t.Errorf("value %d: %q, want %q", i, e, want)
		}
	}
	// Known values stay literal only until the position collapses; after
	// that every value is {param}.
	c := []model.Call{httpCall("GET", "/users/alice/profile")}
	p.ProcessCalls(context.Background(), c)
	if c[0].Endpoint != "GET:/users/{param}/profile" {
		t.Errorf("after collapse: %q", c[0].Endpoint)
	}
	// Another prefix is independent.
	c = []model.Call{httpCall("GET", "/teams/core")}
	p.ProcessCalls(context.Background(), c)
	if c[0].Endpoint != "GET:/teams/core" {
		t.Errorf("other prefix: %q", c[0].Endpoint)
	}
}

// letters renders i in base 26 with letters only, so no automatic rule
// recognises it as an identifier.
func letters(i int) string {
	var b [16]byte
	n := len(b)
	for {
		n--
		b[n] = byte('a' + i%26)
		i /= 26
		if i == 0 {
			break
		}
	}
	return string(b[n:])
}

func heapAfterGC() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestCardinalityCap pushes 1,000,000 unique paths into one service. The
// distinct endpoint count must stop at the cap and the heap stay bounded:
// 1000 endpoints of ~30 bytes plus map overhead and, with the adaptive rule,
// at most AdaptiveThreshold values per watched position is well under
// 1 MiB; the 4 MiB allowance covers runtime noise, while keeping one entry
// per unique path would need ~100 MiB.
func TestCardinalityCap(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short mode: pushes 1M calls")
	}
	for _, adaptive := range []bool{false, true} {
		name := "adaptive_off"
		if adaptive {
			name = "adaptive_on"
		}
		t.Run(name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.DisableAdaptive = !adaptive
			reg := prometheus.NewRegistry()
			p, err := New(cfg, reg, nil)
			if err != nil {
				t.Fatal(err)
			}
			before := heapAfterGC()
			const total, batch = 1_000_000, 1000
			calls := make([]model.Call, batch)
			for i := 0; i < total; i += batch {
				for j := range calls {
					k := i + j
					calls[j] = httpCall("GET", "/catalog/"+letters(k%7919)+"/item/"+letters(k))
				}
				p.ProcessCalls(context.Background(), calls)
			}
			calls = nil
			after := heapAfterGC()
			n := p.EndpointCount(reviews.ServiceID())
			if !adaptive && n != cfg.MaxEndpointsPerService {
				t.Errorf("distinct endpoints %d, want exactly the cap %d", n, cfg.MaxEndpointsPerService)
			}
			if n > cfg.MaxEndpointsPerService {
				t.Errorf("distinct endpoints %d above the cap %d", n, cfg.MaxEndpointsPerService)
			}
			st := p.Stats()
			if st.TrackedValues > cfg.MaxTrackedValues {
				t.Errorf("tracked values %d", st.TrackedValues)
			}
			overflow := testutil.ToFloat64(p.overflow.WithLabelValues(reasonEndpointCap))
			if !adaptive && overflow != total-float64(cfg.MaxEndpointsPerService) {
				t.Errorf("overflow counted %v, want %d", overflow, total-cfg.MaxEndpointsPerService)
			}
			growth := int64(after) - int64(before)
			t.Logf("endpoints=%d tracked_values=%d overflow=%v heap growth=%d bytes", n, st.TrackedValues, overflow, growth)
			if growth > 4<<20 {
				t.Errorf("heap grew by %d bytes for 1M unique paths; bound is 4 MiB", growth)
			}
			p.ProcessCalls(context.Background(), []model.Call{httpCall("GET", "/x")})
			runtime.KeepAlive(p)
		})
	}
}

func TestServiceCap(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxServices = 2
	p := mustNew(t, cfg)
	var got []string
	for _, s := range []string{"a", "b", "c"} {
		c := []model.Call{{Destination: model.Identity{Service: s}, Protocol: model.ProtocolHTTP, Method: "GET", Path: "/x"}}
		p.ProcessCalls(context.Background(), c)
		got = append(got, c[0].Endpoint)
	}
	if strings.Join(got, " ") != "GET:/x GET:/x {overflow}" {
		t.Errorf("got %v", got)
	}
	if v := testutil.ToFloat64(p.overflow.WithLabelValues(reasonServiceCap)); v != 1 {
		t.Errorf("service_cap overflow %v", v)
	}
}

func TestValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	bad := DefaultConfig()
	bad.MaxEndpointsPerService = 0
	if bad.Validate() == nil {
		t.Error("zero cap accepted")
	}
	bad = DefaultConfig()
	bad.AdaptiveThreshold = 0
	if bad.Validate() == nil {
		t.Error("zero threshold accepted with adaptive on")
	}
}

// FuzzTemplate checks the path templater on arbitrary input: no panic, a
// "METHOD:/" prefix, no query string, bounded length.
func FuzzTemplate(f *testing.F) {
	for _, s := range []string{"/reviews/0?x=1", "", "/", "//", "/a//b/", "/api/users/5d1c6f0e-9a3b-4c1e-8e0f-123456789abc",
		"/%2F%2e%2e/", "*", "/x#y?z", strings.Repeat("/a", 200)} {
		f.Add("GET", s)
	}
	cfg := DefaultConfig()
	cfg.AdaptiveThreshold = 3
	p := mustNew(f, cfg)
	f.Fuzz(func(t *testing.T, method, path string) {
		if len(method) > 16 {
			method = method[:16]
		}
		c := []model.Call{httpCall(method, path)}
		p.ProcessCalls(context.Background(), c)
		e := c[0].Endpoint
		if e == OverflowEndpoint {
			return
		}
		if method == "" && stripQuery(path) == "" {
			if e != "" {
				t.Fatalf("nothing to name, got %q", e)
			}
			return
		}
		if !strings.HasPrefix(e, method+":/") {
			t.Fatalf("endpoint %q lacks %q prefix", e, method+":/")
		}
		rest := e[len(method)+1:]
		if strings.ContainsAny(rest, "?#") {
			t.Fatalf("query kept: %q", e)
		}
		if len(rest) > maxPathBytes+maxLiteralSegment+len(RestPlaceholder)+2 {
			t.Fatalf("endpoint too long: %d bytes", len(e))
		}
	})
}

func BenchmarkProcessCalls(b *testing.B) {
	p := mustNew(b, DefaultConfig())
	calls := make([]model.Call, 100)
	for i := range calls {
		calls[i] = httpCall("GET", "/reviews/"+letters(i%3)+"/"+strings.Repeat("1", i%5+1)+"?q=1")
	}
	b.ReportAllocs()
	for b.Loop() {
		for i := range calls {
			calls[i].Endpoint = ""
		}
		p.ProcessCalls(context.Background(), calls)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(calls)), "ns/call")
}

// TestConcurrentWorkers runs ProcessCalls from several goroutines, as the
// queue's workers do (run with -race).
func TestConcurrentWorkers(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxEndpointsPerService = 50
	cfg.AdaptiveThreshold = 10
	p := mustNew(t, cfg)
	done := make(chan struct{})
	for w := 0; w < 4; w++ {
		go func(w int) {
			defer func() { done <- struct{}{} }()
			calls := make([]model.Call, 20)
			for i := 0; i < 200; i++ {
				for j := range calls {
					calls[j] = httpCall("GET", "/w/"+letters(w*1000+i*20+j)+"/x")
				}
				p.ProcessCalls(context.Background(), calls)
			}
		}(w)
	}
	for w := 0; w < 4; w++ {
		<-done
	}
	if n := p.EndpointCount(reviews.ServiceID()); n > cfg.MaxEndpointsPerService {
		t.Errorf("%d endpoints above cap", n)
	}
}
