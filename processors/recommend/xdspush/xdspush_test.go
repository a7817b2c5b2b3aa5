package xdspush

import (
	"context"
	"encoding/json"
	"net"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	lrlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	extensionv3 "github.com/envoyproxy/go-control-plane/envoy/service/extension/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshlens/meshlens/processors/recommend"
)

// fakeSource stands in for the engine: tests set the published
// recommendations and mark a recomputation.
type fakeSource struct {
	mu   sync.Mutex
	recs []recommend.Recommendation
	last time.Time
}

func (f *fakeSource) Recommendations(flt recommend.Filter) []recommend.Recommendation {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []recommend.Recommendation
	for _, r := range f.recs {
		if flt.Kind == "" || r.Kind == flt.Kind {
			out = append(out, r)
		}
	}
	return out
}

func (f *fakeSource) LastRecompute() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last
}

func (f *fakeSource) set(recs ...recommend.Recommendation) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.recs = recs
	f.last = f.last.Add(time.Minute)
}

func limit(svc string, rate float64, burst int) recommend.Recommendation {
	return recommend.Recommendation{ID: "ratelimit:" + svc, Kind: recommend.KindRateLimit, Service: svc,
		Recommended: &recommend.Setting{RatePerSecond: rate, Burst: burst, MaxConcurrency: 10}}
}

func epLimit(svc, ep string, rate float64) recommend.Recommendation {
	return recommend.Recommendation{ID: "ratelimit:" + svc + ":" + ep, Kind: recommend.KindRateLimit, Service: svc,
		Edge: &recommend.Edge{Destination: svc, Endpoint: ep}, Recommended: &recommend.Setting{RatePerSecond: rate, Burst: int(rate / 5)}}
}

// start serves p on a loopback port until the test ends and returns the
// address.
func start(t *testing.T, p *Pusher) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after cancel")
		}
	})
	return ln.Addr().String()
}

// istioNode is a node as an Istio sidecar of app in ns presents itself.
func istioNode(t *testing.T, id, app, ns string) *corev3.Node {
	t.Helper()
	md, err := structpb.NewStruct(map[string]any{
		"LABELS":        map[string]any{"app": app, "service.istio.io/canonical-name": app, "version": "v1"},
		"NAMESPACE":     ns,
		"WORKLOAD_NAME": app + "-v1",
	})
	if err != nil {
		t.Fatal(err)
	}
	return &corev3.Node{Id: id, Cluster: app + "." + ns, Metadata: md}
}

// xdsStream is one Envoy-like ADS stream.
type xdsStream struct {
	t    *testing.T
	s    discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	resp chan *discoveryv3.DiscoveryResponse
}

func dialADS(t *testing.T, addr string) *xdsStream {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); conn.Close() })
	s, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	x := &xdsStream{t: t, s: s, resp: make(chan *discoveryv3.DiscoveryResponse, 16)}
	go func() {
		for {
			r, err := s.Recv()
			if err != nil {
				close(x.resp)
				return
			}
			x.resp <- r
		}
	}()
	return x
}

func (x *xdsStream) send(r *discoveryv3.DiscoveryRequest) {
	x.t.Helper()
	if err := x.s.Send(r); err != nil {
		x.t.Fatal(err)
	}
}

func (x *xdsStream) recv() *discoveryv3.DiscoveryResponse {
	x.t.Helper()
	select {
	case r, ok := <-x.resp:
		if !ok {
			x.t.Fatal("stream closed")
		}
		return r
	case <-time.After(5 * time.Second):
		x.t.Fatal("no response in 5s")
	}
	return nil
}

// quiet fails if a response arrives within d.
func (x *xdsStream) quiet(d time.Duration) {
	x.t.Helper()
	select {
	case r := <-x.resp:
		x.t.Fatalf("unexpected response version %q", r.GetVersionInfo())
	case <-time.After(d):
	}
}

// limitOf decodes the one LocalRateLimit in r, checking the envelope.
func limitOf(t *testing.T, r *discoveryv3.DiscoveryResponse, name string) *lrlv3.LocalRateLimit {
	t.Helper()
	if r.GetTypeUrl() != TypeURL || len(r.GetResources()) != 1 {
		t.Fatalf("response type %q with %d resources, want one %s", r.GetTypeUrl(), len(r.GetResources()), TypeURL)
	}
	var ec corev3.TypedExtensionConfig
	if err := r.GetResources()[0].UnmarshalTo(&ec); err != nil {
		t.Fatal(err)
	}
	if ec.GetName() != name {
		t.Fatalf("resource %q, want %q", ec.GetName(), name)
	}
	var l lrlv3.LocalRateLimit
	if err := ec.GetTypedConfig().UnmarshalTo(&l); err != nil {
		t.Fatal(err)
	}
	return &l
}

// checkBucket compares the limit's bucket with what the engine's setting
// exports as (the same numbers as the EnvoyFilter YAML).
func checkBucket(t *testing.T, l *lrlv3.LocalRateLimit, s *recommend.Setting) {
	t.Helper()
	tokens, maxTokens, fill := recommend.EnvoyTokenBucket(s)
	b := l.GetTokenBucket()
	if int(b.GetTokensPerFill().GetValue()) != tokens || int(b.GetMaxTokens()) != maxTokens || b.GetFillInterval().AsDuration() != fill {
		t.Fatalf("bucket %v, want %d tokens per %v, max %d", b, tokens, fill, maxTokens)
	}
	if l.GetFilterEnabled().GetDefaultValue().GetNumerator() != 100 || l.GetFilterEnforced().GetDefaultValue().GetNumerator() != 100 {
		t.Fatalf("filter not enabled and enforced at 100%%: %v / %v", l.GetFilterEnabled(), l.GetFilterEnforced())
	}
}

func request(n *corev3.Node, names ...string) *discoveryv3.DiscoveryRequest {
	return &discoveryv3.DiscoveryRequest{Node: n, TypeUrl: TypeURL, ResourceNames: names}
}

func ack(r *discoveryv3.DiscoveryResponse, names ...string) *discoveryv3.DiscoveryRequest {
	return &discoveryv3.DiscoveryRequest{TypeUrl: TypeURL, ResourceNames: names, VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce()}
}

func TestServesEachNodeItsServiceLimitAndPushesChanges(t *testing.T) {
	src := &fakeSource{}
	reviews := limit("reviews.default", 120, 24)
	src.set(reviews, epLimit("reviews.default", "GET:/reviews/{id}", 30), limit("ratings.default", 8, 2),
		recommend.Recommendation{ID: "timeout:a->reviews.default", Kind: recommend.KindTimeout, Service: "reviews.default"})
	p := New(Config{}, src, nil)
	p.Sync()
	addr := start(t, p)

	x := dialADS(t, addr)
	x.send(request(istioNode(t, "sidecar~10.0.0.1~reviews-v1-abc.default~default.svc.cluster.local", "reviews", "default"), SharedResourceName))
	r1 := x.recv()
	l := limitOf(t, r1, SharedResourceName)
	checkBucket(t, l, reviews.Recommended)
	// 120 req/s: 12 tokens every 100 ms, a bucket of the 24-request burst.
	if b := l.GetTokenBucket(); b.GetTokensPerFill().GetValue() != 12 || b.GetMaxTokens() != 24 {
		t.Fatalf("bucket %v, want 12 per 100ms, max 24", b)
	}
	if len(l.GetDescriptors()) != 1 || l.GetDescriptors()[0].GetEntries()[0].GetValue() != "GET:/reviews/{id}" || len(l.GetRateLimits()) != 1 {
		t.Fatalf("endpoint descriptor missing: %v / %v", l.GetDescriptors(), l.GetRateLimits())
	}
	if got := l.GetRateLimits()[0].GetActions()[0].GetHeaderValueMatch().GetHeaders()[0].GetStringMatch().GetSafeRegex().GetRegex(); got != `/reviews/[^/?]+(\?.*)?` {
		t.Fatalf(":path regex %q", got)
	}

	// Another service's sidecar, over the standalone ECDS service and the
	// per-service name, gets its own limit.
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	es, err := extensionv3.NewExtensionConfigDiscoveryServiceClient(conn).StreamExtensionConfigs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := es.Send(request(istioNode(t, "ratings-1", "ratings", "default"), ServiceResourceName("ratings.default"))); err != nil {
		t.Fatal(err)
	}
	er, err := es.Recv()
	if err != nil {
		t.Fatal(err)
	}
	checkBucket(t, limitOf(t, er, ServiceResourceName("ratings.default")), limit("ratings.default", 8, 2).Recommended)

	// ACK: nothing more until the recommendation changes; a recomputation
	// that changes nothing pushes nothing either.
	x.send(ack(r1, SharedResourceName))
	src.set(src.Recommendations(recommend.Filter{})...)
	p.Sync()
	x.quiet(300 * time.Millisecond)
	st, err := p.Status("reviews")
	if err != nil {
		t.Fatal(err)
	}
	if st.Generation != 1 || len(st.Nodes) != 1 || st.Nodes[0].AckedVersion != r1.GetVersionInfo() || st.Nodes[0].Service != "reviews.default" {
		t.Fatalf("after ACK: generation %d, nodes %+v", st.Generation, st.Nodes)
	}

	reviews2 := limit("reviews.default", 200, 40)
	src.set(reviews2, limit("ratings.default", 8, 2))
	p.Sync()
	r2 := x.recv()
	if r2.GetVersionInfo() == r1.GetVersionInfo() {
		t.Fatalf("version %q did not change", r2.GetVersionInfo())
	}
	l2 := limitOf(t, r2, SharedResourceName)
	checkBucket(t, l2, reviews2.Recommended)
	if len(l2.GetDescriptors()) != 0 {
		t.Fatalf("withdrawn endpoint limit still served: %v", l2.GetDescriptors())
	}
	st, _ = p.Status("")
	if st.Generation != 2 || len(st.History) != 2 || len(st.History[0].Changed) != 1 || st.History[0].Changed[0].Service != "reviews.default" ||
		st.History[0].Changed[0].Version != r2.GetVersionInfo() || st.History[0].DryRun {
		t.Fatalf("history %+v", st.History)
	}
}

func TestNACKRecordedAndRejectedVersionNotResent(t *testing.T) {
	src := &fakeSource{}
	src.set(limit("reviews.default", 50, 10))
	p := New(Config{}, src, nil)
	p.Sync()
	x := dialADS(t, start(t, p))
	x.send(request(istioNode(t, "r1", "reviews", "default"), SharedResourceName))
	r1 := x.recv()
	// Envoy NACKs with the last version it accepted (none) and the nonce.
	x.send(&discoveryv3.DiscoveryRequest{TypeUrl: TypeURL, ResourceNames: []string{SharedResourceName}, ResponseNonce: r1.GetNonce(),
		ErrorDetail: &rpcstatus.Status{Code: 3, Message: "local_ratelimit: bad token bucket"}})
	x.quiet(400 * time.Millisecond)
	st, _ := p.Status("reviews.default")
	if len(st.Nodes) != 1 || st.Nodes[0].RejectedVersion != r1.GetVersionInfo() || st.Nodes[0].RejectError == "" || st.Nodes[0].AckedVersion != "" {
		t.Fatalf("node after NACK: %+v", st.Nodes)
	}
	src.set(limit("reviews.default", 80, 16))
	p.Sync()
	r2 := x.recv()
	if r2.GetVersionInfo() == r1.GetVersionInfo() {
		t.Fatal("the next version did not arrive after a NACK")
	}
	checkBucket(t, limitOf(t, r2, SharedResourceName), limit("reviews.default", 80, 16).Recommended)
}

func TestPassThroughWithoutLimitAndAfterWithdrawal(t *testing.T) {
	src := &fakeSource{}
	src.set(limit("reviews.default", 50, 10))
	p := New(Config{SyncEvery: 20 * time.Millisecond}, src, nil)
	p.Sync()
	addr := start(t, p)

	// A service with no recommendation is answered at once with a config
	// that checks no request, so a sidecar does not keep an old limit.
	d := dialADS(t, addr)
	d.send(request(istioNode(t, "d1", "details", "default"), SharedResourceName))
	if l := limitOf(t, d.recv(), SharedResourceName); l.GetFilterEnabled() != nil || l.GetTokenBucket() != nil {
		t.Fatalf("pass-through config limits: %v", l)
	}

	x := dialADS(t, addr)
	x.send(request(istioNode(t, "r1", "reviews", "default"), SharedResourceName))
	r1 := x.recv()
	x.send(ack(r1, SharedResourceName))
	src.set() // withdrawn
	p.Sync()
	r2 := x.recv()
	if l := limitOf(t, r2, SharedResourceName); l.GetFilterEnabled() != nil || r2.GetVersionInfo() == r1.GetVersionInfo() {
		t.Fatalf("withdrawn limit: version %q, %v", r2.GetVersionInfo(), l)
	}
}

func TestDryRunServesNothingButShowsWouldBeConfig(t *testing.T) {
	src := &fakeSource{}
	src.set(limit("reviews.default", 120, 24))
	p := New(Config{DryRun: true}, src, nil)
	p.Sync()
	x := dialADS(t, start(t, p))
	x.send(request(istioNode(t, "r1", "reviews", "default"), SharedResourceName))
	x.quiet(500 * time.Millisecond)

	rec := httptest.NewRecorder()
	Handler(p).ServeHTTP(rec, httptest.NewRequest("GET", "/api/meshlens/v1/recommendations/xds?service=reviews", nil))
	var st struct {
		DryRun   bool `json:"dry_run"`
		Serving  bool
		Services []struct {
			Service, Version string
			ResourceNames    []string `json:"resource_names"`
			TypedConfig      struct {
				Type        string `json:"@type"`
				TokenBucket struct {
					MaxTokens     int    `json:"max_tokens"`
					TokensPerFill int    `json:"tokens_per_fill"`
					FillInterval  string `json:"fill_interval"`
				} `json:"token_bucket"`
			} `json:"typed_config"`
		}
		History []Push
		Nodes   []NodeStatus
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
		t.Fatalf("%v: %s", err, rec.Body)
	}
	if !st.DryRun || st.Serving || len(st.Services) != 1 || len(st.History) != 1 || !st.History[0].DryRun {
		t.Fatalf("dry-run status: %s", rec.Body)
	}
	s := st.Services[0]
	if s.TypedConfig.Type != "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit" ||
		s.TypedConfig.TokenBucket.MaxTokens != 24 || s.TypedConfig.TokenBucket.TokensPerFill != 12 || s.TypedConfig.TokenBucket.FillInterval != "0.100s" ||
		s.ResourceNames[1] != "meshlens/local_ratelimit/reviews.default" {
		t.Fatalf("would-be config: %s", rec.Body)
	}
	if len(st.Nodes) != 1 || !st.Nodes[0].Connected || st.Nodes[0].Service != "reviews.default" || st.Nodes[0].SentVersion != "" {
		t.Fatalf("nodes: %+v", st.Nodes)
	}

	rec = httptest.NewRecorder()
	Handler(nil).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	var off struct{ Enabled bool }
	if err := json.Unmarshal(rec.Body.Bytes(), &off); err != nil || off.Enabled {
		t.Fatalf("disabled handler: %s", rec.Body)
	}
}

func TestServeClosesListenerOnCancel(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := New(Config{StopGrace: 100 * time.Millisecond}, &fakeSource{}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, ln) }()
	// An open stream must not hold shutdown up past the grace period.
	x := dialADS(t, ln.Addr().String())
	x.send(request(istioNode(t, "r1", "reviews", "default"), SharedResourceName))
	time.Sleep(100 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
	if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Fatal("listener still accepts after shutdown")
	}
}

func TestServiceOf(t *testing.T) {
	md := func(m map[string]any) *structpb.Struct {
		s, err := structpb.NewStruct(m)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	tests := []struct {
		name string
		node *corev3.Node
		want string
	}{
		{"nil", nil, ""},
		{"canonical name wins", &corev3.Node{Metadata: md(map[string]any{"LABELS": map[string]any{"service.istio.io/canonical-name": "reviews", "app": "rev"}, "NAMESPACE": "shop"})}, "reviews.shop"},
		{"app label", &corev3.Node{Metadata: md(map[string]any{"LABELS": map[string]any{"app": "ratings"}, "NAMESPACE": "default"})}, "ratings.default"},
		{"workload name", &corev3.Node{Metadata: md(map[string]any{"WORKLOAD_NAME": "details-v1", "NAMESPACE": "default"})}, "details-v1.default"},
		{"no namespace", &corev3.Node{Metadata: md(map[string]any{"LABELS": map[string]any{"app": "ratings"}})}, "ratings"},
		{"cluster", &corev3.Node{Id: "edge-1", Cluster: "gateway.edge"}, "gateway.edge"},
		{"nothing", &corev3.Node{Id: "x"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ServiceOf(tc.node); got != tc.want {
				t.Fatalf("ServiceOf = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestDeltaADS: Envoys configured with api_type DELTA_GRPC are served by
// the library's delta server from the same snapshots.
func TestDeltaADS(t *testing.T) {
	src := &fakeSource{}
	reviews := limit("reviews.default", 120, 24)
	src.set(reviews)
	p := New(Config{}, src, nil)
	p.Sync()
	conn, err := grpc.NewClient(start(t, p), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&discoveryv3.DeltaDiscoveryRequest{Node: istioNode(t, "r1", "reviews", "default"), TypeUrl: TypeURL,
		ResourceNamesSubscribe: []string{SharedResourceName}}); err != nil {
		t.Fatal(err)
	}
	r, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(r.GetResources()) != 1 || r.GetResources()[0].GetName() != SharedResourceName {
		t.Fatalf("delta response %v", r)
	}
	var ec corev3.TypedExtensionConfig
	var l lrlv3.LocalRateLimit
	if err := r.GetResources()[0].GetResource().UnmarshalTo(&ec); err != nil {
		t.Fatal(err)
	}
	if err := ec.GetTypedConfig().UnmarshalTo(&l); err != nil {
		t.Fatal(err)
	}
	checkBucket(t, &l, reviews.Recommended)
}

func TestNodeStatusBoundedForgetsDisconnected(t *testing.T) {
	src := &fakeSource{}
	src.set(limit("reviews.default", 50, 10))
	p := New(Config{MaxNodes: 2}, src, nil)
	p.Sync()
	addr := start(t, p)
	open := func(id string) *xdsStream {
		x := dialADS(t, addr)
		x.send(request(istioNode(t, id, "reviews", "default"), SharedResourceName))
		x.recv()
		return x
	}
	open("a")
	b := open("b")
	open("c") // over the bound: served, not tracked
	ids := func() []string {
		st, _ := p.Status("")
		var out []string
		for _, n := range st.Nodes {
			out = append(out, n.ID)
		}
		return out
	}
	if got := ids(); len(got) != 2 || got[0] != "a" || got[1] != "b" {
		t.Fatalf("tracked %v, want [a b]", got)
	}
	if err := b.s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, _ := p.Status("")
		if len(st.Nodes) == 2 && !st.Nodes[1].Connected {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("b still connected: %+v", st.Nodes)
		}
		time.Sleep(20 * time.Millisecond)
	}
	open("d")
	if got := ids(); len(got) != 2 || got[0] != "a" || got[1] != "d" {
		t.Fatalf("tracked %v, want [a d]", got)
	}
}
