package topology

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"

	"github.com/meshlens/meshlens/query/promapi"
)

// Sample interval and history of the fixture. Counters grow linearly, so
// rate() over any window inside the history is exactly the slope.
const (
	step    = 10 * time.Second
	history = 30 * time.Minute
)

var istioBuckets = []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000}
var scopeBuckets = []float64{1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 7500, 10000, 15000, 30000, 60000}

type writer struct {
	tb  testing.TB
	app storage.Appender
	t0  time.Time
}

// counter writes a series growing at rate per second.
func (w *writer) counter(rate float64, kv ...string) {
	w.tb.Helper()
	l := labels.FromStrings(kv...)
	var ref storage.SeriesRef
	for d := time.Duration(0); d <= history; d += step {
		var err error
		ref, err = w.app.Append(ref, l, w.t0.Add(d).UnixMilli(), rate*d.Seconds())
		if err != nil {
			w.tb.Fatalf("append %s: %v", l, err)
		}
	}
}

// histogram writes cumulative bucket counters for a distribution given as
// rate per bucket upper bound (non-cumulative).
func (w *writer) histogram(name string, bounds []float64, dist map[float64]float64, kv ...string) {
	w.tb.Helper()
	cum := 0.0
	for _, le := range append(slices.Clone(bounds), math.Inf(1)) {
		cum += dist[le]
		w.counter(cum, append(slices.Clone(kv), "__name__", name, "le", strconv.FormatFloat(le, 'f', -1, 64))...)
	}
}

type istioEdgeSpec struct {
	srcNS, src, dstNS, dst string
	protocol               string
	// rate per (code, flags) for the destination reporter; the source
	// reporter reports srcFactor times as much so a test can tell which
	// side's figures an edge carries.
	rates     map[[2]string]float64
	srcFactor float64
	reporters []string
	policy    string
	latency   map[float64]float64
}

func peerLabels(e istioEdgeSpec, reporter string) []string {
	policy := e.policy
	if reporter == "source" {
		policy = "unknown"
	}
	kv := []string{
		"reporter", reporter,
		"source_workload", e.src + "-v1", "source_workload_namespace", e.srcNS,
		"source_canonical_service", e.src, "source_app", e.src,
		"destination_workload", e.dst + "-v1", "destination_workload_namespace", e.dstNS,
		"destination_canonical_service", e.dst, "destination_app", e.dst,
		"destination_service_name", e.dst, "destination_service_namespace", e.dstNS,
		"destination_service", e.dst + "." + e.dstNS + ".svc.cluster.local",
		"request_protocol", e.protocol,
		"connection_security_policy", policy,
	}
	if e.dst == "unknown" {
		kv[9], kv[11], kv[13], kv[15], kv[17], kv[19] = "unknown", "unknown", "unknown", "unknown", "unknown", "unknown"
		kv[21] = "unknown"
	}
	return kv
}

const (
	ns   = "bookinfo"
	gwNS = "istio-system"
)

// bookinfo is the test mesh: ingress -> productpage -> details, reviews;
// reviews -> ratings (plaintext), reviews -> an unresolved external peer
// (client side only); ratings -> mongodb over TCP.
var bookinfo = []istioEdgeSpec{
	{srcNS: gwNS, src: "istio-ingressgateway", dstNS: ns, dst: "productpage", protocol: "http", policy: "mutual_tls",
		rates: map[[2]string]float64{{"200", "-"}: 10}, srcFactor: 1.1, reporters: []string{"source", "destination"},
		latency: map[float64]float64{50: 5, 100: 5}},
	{srcNS: ns, src: "productpage", dstNS: ns, dst: "details", protocol: "http", policy: "mutual_tls",
		rates: map[[2]string]float64{{"200", "-"}: 10}, srcFactor: 1.1, reporters: []string{"source", "destination"},
		latency: map[float64]float64{5: 10}},
	{srcNS: ns, src: "productpage", dstNS: ns, dst: "reviews", protocol: "http", policy: "mutual_tls",
		rates: map[[2]string]float64{{"200", "-"}: 9, {"503", "-"}: 1}, srcFactor: 1.1, reporters: []string{"source", "destination"},
		latency: map[float64]float64{25: 5, 50: 4.5, 100: 0.5}},
	{srcNS: ns, src: "reviews", dstNS: ns, dst: "ratings", protocol: "grpc", policy: "none",
		rates: map[[2]string]float64{{"200", "-"}: 4, {"200", "URX"}: 1}, srcFactor: 1.1, reporters: []string{"source", "destination"},
		latency: map[float64]float64{10: 2, 25: 2, 50: 1}},
	{srcNS: ns, src: "reviews", dstNS: "", dst: "unknown", protocol: "http", policy: "unknown",
		rates: map[[2]string]float64{{"200", "-"}: 1.5, {"0", "UH"}: 0.5}, srcFactor: 1, reporters: []string{"source"},
		latency: map[float64]float64{250: 2}},
}

func loadBookinfo(tb testing.TB, t0 time.Time) *tsdb.DB {
	tb.Helper()
	db, err := tsdb.Open(tb.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)), nil, tsdb.DefaultOptions(), nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	w := &writer{tb: tb, app: db.Appender(context.Background()), t0: t0}
	for _, e := range bookinfo {
		for _, rep := range e.reporters {
			factor := 1.0
			if rep == "source" {
				factor = e.srcFactor
			}
			base := peerLabels(e, rep)
			for cf, r := range e.rates {
				grpc := ""
				if e.protocol == "grpc" {
					grpc = "0"
				}
				w.counter(r*factor, append(slices.Clone(base), "__name__", "istio_requests_total",
					"response_code", cf[0], "response_flags", cf[1], "grpc_response_status", grpc)...)
			}
			scaled := map[float64]float64{}
			for le, r := range e.latency {
				scaled[le] = r * factor
			}
			w.histogram("istio_request_duration_milliseconds_bucket", istioBuckets, scaled,
				append(slices.Clone(base), "response_code", "200")...)
		}
	}
	// Client-side failures on productpage -> reviews: UH never reached
	// reviews and counts; URX did reach it (reviews reported the 503s it
	// returned) and must not count twice.
	pr := peerLabels(bookinfo[2], "source")
	w.counter(0.3, append(slices.Clone(pr), "__name__", "istio_requests_total", "response_code", "503", "response_flags", "UH", "grpc_response_status", "")...)
	w.counter(0.2, append(slices.Clone(pr), "__name__", "istio_requests_total", "response_code", "503", "response_flags", "URX", "grpc_response_status", "")...)

	// TCP: ratings -> mongodb, both sides, mTLS.
	tcp := istioEdgeSpec{srcNS: ns, src: "ratings", dstNS: ns, dst: "mongodb", protocol: "tcp", policy: "mutual_tls"}
	for _, rep := range []string{"source", "destination"} {
		f := 1.0
		if rep == "source" {
			f = 1.1
		}
		base := peerLabels(tcp, rep)
		w.counter(0.2*f, append(slices.Clone(base), "__name__", "istio_tcp_connections_opened_total", "response_flags", "-")...)
		w.counter(1000*f, append(slices.Clone(base), "__name__", "istio_tcp_sent_bytes_total", "response_flags", "-")...)
		w.counter(5000*f, append(slices.Clone(base), "__name__", "istio_tcp_received_bytes_total", "response_flags", "-")...)
	}

	// Instance relations: reviews-v1 pod -> ratings pod seen from both
	// sides (the client side overstated), reviews -> unknown client only.
	for _, svc := range [][2]string{{"reviews", ns}, {"ratings", ns}, {"productpage", ns}} {
		w.counter(1, "__name__", "meshlens_instance_calls_total", "service", svc[0], "namespace", svc[1],
			"instance", svc[0]+"-v1-abc", "version", "v1", "detect_point", "server")
		w.counter(1, "__name__", "meshlens_endpoint_calls_total", "service", svc[0], "namespace", svc[1],
			"endpoint", "GET:/"+svc[0], "detect_point", "server")
	}
	inst := func(dp string, f float64, dst, dstInst, tls string) {
		kv := []string{"source_service", "reviews", "source_instance", "reviews-v1-abc",
			"destination_service", dst, "destination_instance", dstInst, "detect_point", dp, "protocol", "http", "tls", tls}
		w.counter(5*f, append(slices.Clone(kv), "__name__", "meshlens_instance_relation_calls_total")...)
		w.counter(0.5*f, append(slices.Clone(kv), "__name__", "meshlens_instance_relation_errors_total")...)
		w.histogram("meshlens_instance_relation_latency_milliseconds_bucket", scopeBuckets,
			map[float64]float64{20: 2.5 * f, 30: 2.5 * f}, kv...)
	}
	inst("server", 1, "ratings", "ratings-v1-abc", "mtls")
	inst("client", 1.1, "ratings", "ratings-v1-abc", "mtls")
	inst("client", 0.4, "unknown", "", "none")

	ep := func(dp string, f float64, srcEP, dst, dstEP string) {
		kv := []string{"source_service", "productpage", "source_endpoint", srcEP,
			"destination_service", dst, "destination_endpoint", dstEP, "detect_point", dp}
		w.counter(3*f, append(slices.Clone(kv), "__name__", "meshlens_endpoint_relation_calls_total")...)
		w.counter(0.3*f, append(slices.Clone(kv), "__name__", "meshlens_endpoint_relation_errors_total")...)
		w.histogram("meshlens_endpoint_relation_latency_milliseconds_bucket", scopeBuckets,
			map[float64]float64{100: 3 * f}, kv...)
	}
	ep("server", 1, "", "reviews", "GET:/reviews/{id}")
	ep("client", 2, "GET:/productpage", "reviews", "GET:/reviews/{id}")
	if err := w.app.Commit(); err != nil {
		tb.Fatal(err)
	}
	return db
}

func newServer(t *testing.T, mod func(*Options)) (string, time.Time) {
	t.Helper()
	t0 := time.Now().Add(-history - time.Minute).Truncate(time.Minute)
	db := loadBookinfo(t, t0)
	// Share the Prometheus API's engine, as the server wires it.
	prom := promapi.New(promapi.Options{Queryable: db})
	t.Cleanup(func() { prom.Close() })
	opts := Options{Engine: prom.Engine(), Queryable: prom.Queryable()}
	if mod != nil {
		mod(&opts)
	}
	mux := http.NewServeMux()
	New(opts).Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL, t0
}

func get(t *testing.T, u string, v any) int {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if v != nil && resp.StatusCode == 200 {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("decode %s: %v", body, err)
		}
	}
	if resp.StatusCode != 200 {
		t.Logf("%s: %d %s", u, resp.StatusCode, body)
	}
	return resp.StatusCode
}

// window returns start/end parameters of a 10 minute range inside the
// history, off the sample grid.
func window(t0 time.Time) url.Values {
	end := t0.Add(25*time.Minute + 3*time.Second)
	return url.Values{
		"start": {end.Add(-10 * time.Minute).Format(time.RFC3339Nano)},
		"end":   {strconv.FormatFloat(float64(end.UnixMilli())/1000, 'f', 3, 64)},
	}
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-6*math.Max(1, math.Abs(b)) }

func findNode(g *Graph, id string) *Node {
	for i := range g.Nodes {
		if g.Nodes[i].ID == id {
			return &g.Nodes[i]
		}
	}
	return nil
}

func findEdge(g *Graph, id string) *Edge {
	for i := range g.Edges {
		if g.Edges[i].ID == id {
			return &g.Edges[i]
		}
	}
	return nil
}

func ids[T any](xs []T, id func(T) string) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = id(x)
	}
	slices.Sort(out)
	return out
}

func TestServiceGraph(t *testing.T) {
	base, t0 := newServer(t, nil)
	var g Graph
	if code := get(t, base+TopologyPath+"?"+window(t0).Encode(), &g); code != 200 {
		t.Fatalf("status %d", code)
	}
	wantNodes := []string{"bookinfo/details", "bookinfo/mongodb", "bookinfo/productpage", "bookinfo/ratings", "bookinfo/reviews", "istio-system/istio-ingressgateway", "unknown"}
	if got := ids(g.Nodes, func(n Node) string { return n.ID }); !slices.Equal(got, wantNodes) {
		t.Fatalf("nodes %v, want %v", got, wantNodes)
	}
	wantEdges := []string{
		"bookinfo/productpage->bookinfo/details:http",
		"bookinfo/productpage->bookinfo/reviews:http",
		"bookinfo/ratings->bookinfo/mongodb:tcp",
		"bookinfo/reviews->bookinfo/ratings:grpc",
		"bookinfo/reviews->unknown:http",
		"istio-system/istio-ingressgateway->bookinfo/productpage:http",
	}
	if got := ids(g.Edges, func(e Edge) string { return e.ID }); !slices.Equal(got, wantEdges) {
		t.Fatalf("edges %v, want %v", got, wantEdges)
	}
	if g.Truncated {
		t.Error("truncated")
	}

	tests := []struct {
		edge               string
		rps, eps           float64
		reporter, mtls     string
		reporters          []string
		p50, p95, p99      [2]float64 // bucket each must fall in
		exact50, exact99   float64
		noLatency, wantTCP bool
	}{
		// Destination figures, not the 10% higher source figures, and not
		// their sum.
		{edge: "bookinfo/productpage->bookinfo/reviews:http", rps: 10.3, eps: 1.3, reporter: "destination", mtls: "mutual_tls",
			reporters: []string{"destination", "source"}, p50: [2]float64{10, 25}, p95: [2]float64{25, 50}, p99: [2]float64{50, 100}, exact50: 25, exact99: 90},
		{edge: "bookinfo/productpage->bookinfo/details:http", rps: 10, eps: 0, reporter: "destination", mtls: "mutual_tls",
			reporters: []string{"destination", "source"}, p50: [2]float64{1, 5}, p95: [2]float64{1, 5}, p99: [2]float64{1, 5}, exact50: 3, exact99: 4.96},
		// Plaintext, errors from a response flag.
		{edge: "bookinfo/reviews->bookinfo/ratings:grpc", rps: 5, eps: 1, reporter: "destination", mtls: "none",
			reporters: []string{"destination", "source"}, p50: [2]float64{10, 25}, p95: [2]float64{25, 50}, p99: [2]float64{25, 50}, exact50: 13.75, exact99: 48.75},
		// Only the client side saw it: its figures, mTLS unknown.
		{edge: "bookinfo/reviews->unknown:http", rps: 2, eps: 0.5, reporter: "source", mtls: "unknown",
			reporters: []string{"source"}, p50: [2]float64{100, 250}, p95: [2]float64{100, 250}, p99: [2]float64{100, 250}, exact50: 175, exact99: 248.5},
		{edge: "bookinfo/ratings->bookinfo/mongodb:tcp", rps: 0, eps: 0, reporter: "destination", mtls: "mutual_tls",
			reporters: []string{"destination", "source"}, noLatency: true, wantTCP: true},
	}
	for _, tc := range tests {
		e := findEdge(&g, tc.edge)
		if e == nil {
			t.Errorf("no edge %s", tc.edge)
			continue
		}
		if !near(e.RequestRate, tc.rps) || !near(e.ErrorRate, tc.eps) {
			t.Errorf("%s: rate %v errors %v, want %v %v", tc.edge, e.RequestRate, e.ErrorRate, tc.rps, tc.eps)
		}
		if tc.rps > 0 && !near(e.ErrorRatio, tc.eps/tc.rps) {
			t.Errorf("%s: error ratio %v", tc.edge, e.ErrorRatio)
		}
		if e.Reporter != tc.reporter || e.MTLS != tc.mtls || !slices.Equal(e.Reporters, tc.reporters) {
			t.Errorf("%s: reporter %s %v mtls %s, want %s %v %s", tc.edge, e.Reporter, e.Reporters, e.MTLS, tc.reporter, tc.reporters, tc.mtls)
		}
		if tc.noLatency {
			if e.LatencyMs != nil {
				t.Errorf("%s: latency %+v, want none", tc.edge, e.LatencyMs)
			}
		} else if e.LatencyMs == nil {
			t.Errorf("%s: no latency", tc.edge)
		} else {
			l := e.LatencyMs
			for _, c := range []struct {
				name string
				v    float64
				b    [2]float64
			}{{"p50", l.P50, tc.p50}, {"p95", l.P95, tc.p95}, {"p99", l.P99, tc.p99}} {
				if c.v < c.b[0] || c.v > c.b[1] {
					t.Errorf("%s: %s %v outside bucket %v", tc.edge, c.name, c.v, c.b)
				}
			}
			if !near(l.P50, tc.exact50) || !near(l.P99, tc.exact99) {
				t.Errorf("%s: p50 %v p99 %v, want %v %v", tc.edge, l.P50, l.P99, tc.exact50, tc.exact99)
			}
		}
		if tc.wantTCP {
			if e.TCP == nil || !near(e.TCP.ConnectionsOpened, 0.2) || !near(e.TCP.SentBytes, 1000) || !near(e.TCP.ReceivedBytes, 5000) {
				t.Errorf("%s: tcp %+v", tc.edge, e.TCP)
			}
		}
	}

	// Node RED is the inbound traffic.
	reviews := findNode(&g, "bookinfo/reviews")
	if reviews == nil || !near(reviews.Inbound.RequestRate, 10.3) || !near(reviews.Inbound.ErrorRate, 1.3) || !near(reviews.OutboundRequestRate, 7) {
		t.Errorf("reviews node %+v", reviews)
	}
	if reviews.Namespace != ns || reviews.Kind != LevelService || reviews.Unknown {
		t.Errorf("reviews node %+v", reviews)
	}
	pp := findNode(&g, "bookinfo/productpage")
	if pp == nil || !near(pp.Inbound.RequestRate, 10) || !near(pp.OutboundRequestRate, 20.3) || pp.Inbound.LatencyMs == nil {
		t.Errorf("productpage node %+v", pp)
	} else if l := pp.Inbound.LatencyMs; !near(l.P50, 50) || l.P99 < 50 || l.P99 > 100 {
		t.Errorf("productpage latency %+v", l)
	}
	unknown := findNode(&g, "unknown")
	if unknown == nil || !unknown.Unknown || !near(unknown.Inbound.RequestRate, 2) {
		t.Errorf("unknown node %+v", unknown)
	}
	mongo := findNode(&g, "bookinfo/mongodb")
	if mongo == nil || mongo.Inbound.TCP == nil || !near(mongo.Inbound.TCP.SentBytes, 1000) || mongo.Inbound.RequestRate != 0 {
		t.Errorf("mongodb node %+v", mongo)
	}
	gw := findNode(&g, "istio-system/istio-ingressgateway")
	if gw == nil || gw.Inbound.RequestRate != 0 || !near(gw.OutboundRequestRate, 10) || gw.Inbound.LatencyMs != nil {
		t.Errorf("gateway node %+v", gw)
	}
}

func TestNamespaceFilter(t *testing.T) {
	base, t0 := newServer(t, nil)
	v := window(t0)
	v.Set("namespace", gwNS)
	var g Graph
	get(t, base+TopologyPath+"?"+v.Encode(), &g)
	if got := ids(g.Nodes, func(n Node) string { return n.ID }); !slices.Equal(got, []string{"bookinfo/productpage", "istio-system/istio-ingressgateway"}) {
		t.Errorf("istio-system nodes %v", got)
	}
	if len(g.Edges) != 1 || !near(g.Edges[0].RequestRate, 10) {
		t.Errorf("istio-system edges %+v", g.Edges)
	}
	// The peer keeps only the traffic that crossed into the namespace.
	if pp := findNode(&g, "bookinfo/productpage"); pp == nil || pp.OutboundRequestRate != 0 {
		t.Errorf("productpage %+v", pp)
	}

	v.Set("namespace", "nosuch,"+gwNS)
	get(t, base+TopologyPath+"?"+v.Encode(), &g)
	if len(g.Edges) != 1 {
		t.Errorf("two namespaces: %d edges", len(g.Edges))
	}
	v.Set("namespace", "nosuch")
	get(t, base+TopologyPath+"?"+v.Encode(), &g)
	if len(g.Nodes) != 0 || len(g.Edges) != 0 || g.Nodes == nil {
		t.Errorf("empty namespace: %+v", g)
	}
	v.Set("namespace", ns)
	get(t, base+TopologyPath+"?"+v.Encode(), &g)
	if len(g.Edges) != 6 {
		t.Errorf("bookinfo: %d edges", len(g.Edges))
	}
}

func TestInstanceAndEndpointLevels(t *testing.T) {
	base, t0 := newServer(t, nil)
	v := window(t0)
	v.Set("level", "instance")
	var g Graph
	get(t, base+TopologyPath+"?"+v.Encode(), &g)
	if got := ids(g.Nodes, func(n Node) string { return n.ID }); !slices.Equal(got, []string{"bookinfo/ratings#ratings-v1-abc", "bookinfo/reviews#reviews-v1-abc", "unknown"}) {
		t.Fatalf("instance nodes %v", got)
	}
	e := findEdge(&g, "bookinfo/reviews#reviews-v1-abc->bookinfo/ratings#ratings-v1-abc:http")
	if e == nil || !near(e.RequestRate, 5) || !near(e.ErrorRate, 0.5) || e.Reporter != "destination" || e.MTLS != "mutual_tls" ||
		!slices.Equal(e.Reporters, []string{"destination", "source"}) {
		t.Fatalf("instance edge %+v", e)
	}
	if e.LatencyMs == nil || !near(e.LatencyMs.P50, 20) || e.LatencyMs.P99 < 20 || e.LatencyMs.P99 > 30 {
		t.Errorf("instance latency %+v", e.LatencyMs)
	}
	e = findEdge(&g, "bookinfo/reviews#reviews-v1-abc->unknown:http")
	if e == nil || !near(e.RequestRate, 2) || e.Reporter != "source" || e.MTLS != "none" {
		t.Errorf("instance edge to unknown %+v", e)
	}
	n := findNode(&g, "bookinfo/ratings#ratings-v1-abc")
	if n == nil || n.Name != "ratings-v1-abc" || n.Service != "ratings" || n.Kind != LevelInstance || !near(n.Inbound.RequestRate, 5) {
		t.Errorf("instance node %+v", n)
	}

	v.Set("level", "endpoint")
	get(t, base+TopologyPath+"?"+v.Encode(), &g)
	if got := ids(g.Nodes, func(n Node) string { return n.ID }); !slices.Equal(got, []string{
		"bookinfo/productpage", "bookinfo/productpage#GET:/productpage", "bookinfo/reviews#GET:/reviews/{id}"}) {
		t.Fatalf("endpoint nodes %v", got)
	}
	// Server side reported with no source endpoint, client side with one:
	// two different edges, each from its only reporter.
	e = findEdge(&g, "bookinfo/productpage->bookinfo/reviews#GET:/reviews/{id}")
	if e == nil || !near(e.RequestRate, 3) || e.Reporter != "destination" || e.MTLS != "unknown" {
		t.Errorf("endpoint edge %+v", e)
	}
	e = findEdge(&g, "bookinfo/productpage#GET:/productpage->bookinfo/reviews#GET:/reviews/{id}")
	if e == nil || !near(e.RequestRate, 6) || e.Reporter != "source" {
		t.Errorf("endpoint edge from endpoint %+v", e)
	}
	if n := findNode(&g, "bookinfo/productpage"); n == nil || n.Kind != LevelService {
		t.Errorf("service node at endpoint level %+v", n)
	}
}

func TestLimitsAndErrors(t *testing.T) {
	base, t0 := newServer(t, func(o *Options) { o.MaxEdges = 2 })
	var g Graph
	get(t, base+TopologyPath+"?"+window(t0).Encode(), &g)
	if !g.Truncated || len(g.Edges) > 2 {
		t.Fatalf("truncated %v with %d edges", g.Truncated, len(g.Edges))
	}
	// The busiest edges stay.
	for _, e := range g.Edges {
		if e.RequestRate < 10 {
			t.Errorf("kept a quiet edge %s (%v)", e.ID, e.RequestRate)
		}
	}

	for _, q := range []string{"start=yesterday", "end=abc", "level=cluster", "start=100&end=50", "start=0&end=1e10"} {
		if code := get(t, base+TopologyPath+"?"+q, nil); code != http.StatusBadRequest {
			t.Errorf("%s: status %d", q, code)
		}
	}
	// Defaults: end now, start 5m before; the fixture ended a minute ago.
	if code := get(t, base+TopologyPath, &g); code != 200 {
		t.Errorf("defaults: %d", code)
	}
}

func TestNodeGraph(t *testing.T) {
	base, t0 := newServer(t, nil)
	if code := get(t, base+NodeGraphBase+"/api/health", nil); code != 200 {
		t.Fatalf("health %d", code)
	}
	var fields NodeGraphFields
	get(t, base+NodeGraphBase+"/api/graph/fields", &fields)
	names := func(fs []NodeGraphField) []string {
		out := []string{}
		for _, f := range fs {
			out = append(out, f.Name)
		}
		return out
	}
	for _, want := range []string{"id", "title", "subTitle", "mainStat", "secondaryStat", "arc__success", "arc__errors"} {
		if !slices.Contains(names(fields.Nodes), want) {
			t.Errorf("nodes_fields lacks %s", want)
		}
	}
	for _, want := range []string{"id", "source", "target", "mainStat", "secondaryStat"} {
		if !slices.Contains(names(fields.Edges), want) {
			t.Errorf("edges_fields lacks %s", want)
		}
	}

	// Raw JSON so the field names are what the plugin reads.
	var data struct {
		Nodes []map[string]any `json:"nodes"`
		Edges []map[string]any `json:"edges"`
	}
	get(t, base+NodeGraphBase+"/api/graph/data?"+window(t0).Encode(), &data)
	if len(data.Nodes) != 7 || len(data.Edges) != 6 {
		t.Fatalf("node graph: %d nodes %d edges", len(data.Nodes), len(data.Edges))
	}
	// Every node and edge carries every declared field.
	for _, n := range data.Nodes {
		for _, f := range fields.Nodes {
			if _, ok := n[f.Name]; !ok {
				t.Errorf("node %v lacks %s", n["id"], f.Name)
			}
		}
		if n["id"] == "bookinfo/reviews" {
			if n["title"] != "reviews" || n["subTitle"] != ns || !near(n["mainStat"].(float64), 10.3) ||
				!near(n["arc__errors"].(float64), 1.3/10.3) || !near(n["arc__success"].(float64), 9/10.3) {
				t.Errorf("reviews node %v", n)
			}
			if p95 := n["secondaryStat"].(float64); p95 < 25 || p95 > 50 {
				t.Errorf("reviews p95 %v", p95)
			}
		}
		if s, e := n["arc__success"].(float64), n["arc__errors"].(float64); s+e > 1+1e-9 {
			t.Errorf("arcs of %v sum over 1", n["id"])
		}
	}
	nodeIDs := map[any]bool{}
	for _, n := range data.Nodes {
		nodeIDs[n["id"]] = true
	}
	for _, e := range data.Edges {
		for _, f := range fields.Edges {
			if _, ok := e[f.Name]; !ok {
				t.Errorf("edge %v lacks %s", e["id"], f.Name)
			}
		}
		if !nodeIDs[e["source"]] || !nodeIDs[e["target"]] {
			t.Errorf("edge %v ends outside the nodes", e["id"])
		}
		if e["id"] == "bookinfo/productpage->bookinfo/reviews:http" && (!near(e["mainStat"].(float64), 10.3) || !near(e["secondaryStat"].(float64), 100*1.3/10.3)) {
			t.Errorf("edge %v", e)
		}
	}
	if code := get(t, base+NodeGraphBase+"/api/graph/data?level=bogus", nil); code != 400 {
		t.Errorf("bad level: %d", code)
	}
}

func TestPercentiles(t *testing.T) {
	inf := math.Inf(1)
	tests := []struct {
		name    string
		buckets map[float64]float64
		ok      bool
		want    Latency
	}{
		{"empty", nil, false, Latency{}},
		{"no inf", map[float64]float64{1: 1, 2: 2}, false, Latency{}},
		{"no traffic", map[float64]float64{1: 0, inf: 0}, false, Latency{}},
		{"first bucket from zero", map[float64]float64{10: 100, inf: 100}, true, Latency{P50: 5, P95: 9.5, P99: 9.9}},
		{"rank in +Inf answers the top bound", map[float64]float64{10: 1, 20: 1, inf: 100}, true, Latency{P50: 20, P95: 20, P99: 20}},
		{"non-monotonic rates are fixed", map[float64]float64{10: 50, 20: 40, 30: 100, inf: 100}, true, Latency{P50: 10, P95: 29, P99: 29.8}},
	}
	for _, tc := range tests {
		got, ok := percentiles(tc.buckets)
		if ok != tc.ok || !near(got.P50, tc.want.P50) || !near(got.P95, tc.want.P95) || !near(got.P99, tc.want.P99) {
			t.Errorf("%s: %+v %v, want %+v %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}
