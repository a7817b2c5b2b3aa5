package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	"google.golang.org/grpc"
)

// promBinary is Debian's Prometheus (make test-deps installs it), the
// shared metric store of the scale-out test.
const promBinary = "/usr/bin/prometheus"

// startSharedPrometheus starts a real Prometheus on a free loopback port
// with its remote-write receiver on, or skips (fails under
// MESHLENS_REQUIRE_PEERS=1) when it is not installed.
func startSharedPrometheus(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(promBinary); err != nil {
		if os.Getenv("MESHLENS_REQUIRE_PEERS") == "1" {
			t.Fatalf("%s is missing (make test-deps, or apt-get install prometheus) and MESHLENS_REQUIRE_PEERS=1", promBinary)
		}
		t.Skipf("%s is missing: install Debian's prometheus package (make test-deps) to run the scale-out test", promBinary)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte("global:\n  scrape_interval: 1h\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(promBinary, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+addr, "--web.enable-remote-write-receiver")
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	eventually(t, 30*time.Second, "prometheus ready", func() (bool, string) {
		resp, err := http.Get("http://" + addr + "/-/ready")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == 200, resp.Status
	})
	return addr
}

// meshPod is one sidecar of the scale-out traffic.
type meshPod struct {
	name, app, ip string
}

// meshHop is a call from one service to another with the response codes
// of one round, in order (a code repeated weighs more).
type meshHop struct {
	from, to string
	codes    []uint32
}

var (
	scaleoutPods = []meshPod{
		{"productpage-v1-a", "productpage", "10.244.1.11"}, {"productpage-v1-b", "productpage", "10.244.1.12"},
		{"reviews-v1-a", "reviews", "10.244.1.21"}, {"reviews-v1-b", "reviews", "10.244.1.22"},
		{"details-v1-a", "details", "10.244.1.31"}, {"details-v1-b", "details", "10.244.1.32"},
		{"ratings-v1-a", "ratings", "10.244.1.41"}, {"ratings-v1-b", "ratings", "10.244.1.42"},
	}
	scaleoutHops = []meshHop{
		{"productpage", "reviews", []uint32{200, 200, 200, 200, 200, 200, 200, 200, 200, 503}},
		{"productpage", "details", []uint32{200, 200, 200, 200, 404}},
		{"reviews", "ratings", []uint32{200, 200, 200, 200, 200, 200, 500}},
	}
)

// requestsPerRound is how many requests one round of scaleoutHops makes:
// every code of every hop between every client pod and every server pod.
func requestsPerRound() int {
	n := 0
	for _, h := range scaleoutHops {
		n += 4 * len(h.codes) // 2 client pods x 2 server pods
	}
	return n
}

func podsOf(app string) []meshPod {
	var out []meshPod
	for _, p := range scaleoutPods {
		if p.app == app {
			out = append(out, p)
		}
	}
	return out
}

// scaleoutEntry is one access-log entry of a request to service to.
func scaleoutEntry(start time.Time, code uint32, to, upstreamCluster, upstreamIP, downstreamIP, localIP string) *accesslogv3.HTTPAccessLogEntry {
	d := 20 * time.Millisecond
	if code >= 500 {
		d = 300 * time.Millisecond
	}
	e := httpEntry(start, d, code, upstreamCluster, upstreamIP, downstreamIP, localIP)
	e.Request.Path = "/" + to + "/0"
	e.Request.Authority = to + ":9080"
	return e
}

// sendRounds sends rounds of every hop, each request reported by the
// client's and the server's sidecar on that sidecar's own ALS stream.
// target names the meshlens each pod's stream goes to. It returns once
// every stream is acknowledged (durable_ack: the records are in the WAL).
func sendRounds(t *testing.T, ctx context.Context, target func(meshPod) string, rounds int) {
	t.Helper()
	entries := map[string][]*accesslogv3.HTTPAccessLogEntry{}
	start := time.Now().Add(-time.Second)
	for r := 0; r < rounds; r++ {
		for _, h := range scaleoutHops {
			for _, c := range podsOf(h.from) {
				for _, s := range podsOf(h.to) {
					for _, code := range h.codes {
						entries[c.name] = append(entries[c.name], scaleoutEntry(start, code, h.to,
							"outbound|9080||"+h.to+".default.svc.cluster.local", s.ip, "127.0.0.6", c.ip))
						entries[s.name] = append(entries[s.name], scaleoutEntry(start, code, h.to,
							"inbound|9080||", "127.0.0.6", c.ip, s.ip))
					}
				}
			}
		}
	}
	conns := map[string]*grpc.ClientConn{}
	for _, p := range scaleoutPods {
		addr := target(p)
		if conns[addr] == nil {
			conns[addr] = dialALS(t, addr)
		}
		s := openALS(t, ctx, conns[addr], node(p.name, p.app, "v1", p.ip))
		all := entries[p.name]
		for len(all) > 0 {
			n := min(len(all), 200)
			if err := s.send(all[:n]...); err != nil {
				t.Fatalf("%s -> %s: %v", p.name, addr, err)
			}
			all = all[n:]
		}
		if err := s.close(); err != nil {
			t.Fatalf("%s -> %s: stream not acknowledged: %v", p.name, addr, err)
		}
	}
}

// queryAt runs an instant PromQL query evaluated at ts.
func (in *instance) queryAt(q string, ts time.Time) ([]promSample, error) {
	resp, err := http.PostForm(in.url("/api/v1/query"), url.Values{"query": {q}, "time": {unixMillis(ts)}})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []promSample `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("query %s: %s: %w", q, resp.Status, err)
	}
	if body.Status != "success" {
		return nil, fmt.Errorf("query %s: %s", q, body.Error)
	}
	return body.Data.Result, nil
}

func unixMillis(ts time.Time) string {
	return strconv.FormatFloat(float64(ts.UnixMilli())/1000, 'f', 3, 64)
}

// nextFlush is the first multiple of the flush interval after t plus a
// margin: a flush stamped then is at least margin away from now.
func nextFlush(t time.Time, iv, margin time.Duration) time.Time {
	return t.Add(margin).Truncate(iv).Add(iv)
}

// topologyGraph is the part of a topology answer that must not depend on
// how the traffic was spread over collectors.
type topologyGraph struct {
	Nodes []map[string]any `json:"nodes"`
	Edges []map[string]any `json:"edges"`
}

func (in *instance) topology(t *testing.T, level string, start, end time.Time) topologyGraph {
	t.Helper()
	u := in.url("/api/meshlens/v1/topology?level=" + level + "&start=" + unixMillis(start) + "&end=" + unixMillis(end))
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s: %s", u, resp.Status, raw)
	}
	var g topologyGraph
	if err := json.Unmarshal(raw, &g); err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	return g
}

// diffJSON compares two decoded JSON values, numbers with a relative
// tolerance for float rounding, and returns the first difference.
func diffJSON(path string, a, b any) string {
	switch av := a.(type) {
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok {
			return fmt.Sprintf("%s: %v vs %v", path, a, b)
		}
		keys := map[string]bool{}
		for k := range av {
			keys[k] = true
		}
		for k := range bv {
			keys[k] = true
		}
		sorted := make([]string, 0, len(keys))
		for k := range keys {
			sorted = append(sorted, k)
		}
		slices.Sort(sorted)
		for _, k := range sorted {
			if d := diffJSON(path+"."+k, av[k], bv[k]); d != "" {
				return d
			}
		}
	case []any:
		bv, ok := b.([]any)
		if !ok || len(av) != len(bv) {
			return fmt.Sprintf("%s: %v vs %v", path, a, b)
		}
		for i := range av {
			if d := diffJSON(fmt.Sprintf("%s[%d]", path, i), av[i], bv[i]); d != "" {
				return d
			}
		}
	case float64:
		bv, ok := b.(float64)
		if !ok || math.Abs(av-bv) > 1e-9*math.Max(1, math.Max(math.Abs(av), math.Abs(bv))) {
			return fmt.Sprintf("%s: %v vs %v", path, a, b)
		}
	default:
		if fmt.Sprint(a) != fmt.Sprint(b) {
			return fmt.Sprintf("%s: %v vs %v", path, a, b)
		}
	}
	return ""
}

// byID keys the nodes or edges of a graph by their id.
func byID(items []map[string]any) map[string]any {
	out := map[string]any{}
	for _, it := range items {
		out[fmt.Sprint(it["id"])] = it
	}
	return out
}

// TestScaleOutTopologyEqualsSingleNode sends the same access logs to one
// `meshlens serve` and, split by sidecar, to two `meshlens collector`
// processes that remote-write to a real Prometheus, and checks that a
// `meshlens query` node reading that Prometheus by remote read answers the
// same topology (nodes, edges, rates, errors, latencies) as the single node.
func TestScaleOutTopologyEqualsSingleNode(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the scale-out test runs five processes for about a minute")
	}
	promAddr := startSharedPrometheus(t)
	ctx := ctxTimeout(t, 3*time.Minute)

	// Every process resolves peers from the same static identities, as
	// every replica would from the Kubernetes API.
	var ids strings.Builder
	for _, p := range scaleoutPods {
		fmt.Fprintf(&ids, "- {ip: %s, service: %s, namespace: default, instance: %s, version: v1}\n", p.ip, p.app, p.name)
	}
	dir := t.TempDir()
	idsFile := filepath.Join(dir, "identities.yaml")
	collectorCfg := filepath.Join(dir, "collector.yaml")
	if err := os.WriteFile(idsFile, []byte(ids.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(collectorCfg, []byte("storage:\n  remote_write:\n    targets:\n      - url: http://"+promAddr+"/api/v1/write\n        timeout: 5s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const flush = time.Second
	common := []string{"--processors.metrics.flush_interval=" + flush.String(), "--static-identities=" + idsFile}

	single := startMode(t, "serve", t.TempDir(), common...)
	collectors := []*instance{
		startMode(t, "collector", t.TempDir(), append(common, "--config="+collectorCfg, "--collector.name=c-a")...),
		startMode(t, "collector", t.TempDir(), append(common, "--config="+collectorCfg, "--collector.name=c-b")...),
	}
	query := startMode(t, "query", t.TempDir(), "--storage.remote_read.url=http://"+promAddr+"/api/v1/read")
	for _, c := range collectors {
		resp, err := http.Get(c.url("/api/meshlens/v1/topology"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("a collector serves the topology API: %s", resp.Status)
		}
	}

	toSingle := func(meshPod) string { return single.addrs["grpc"] }
	toCollector := func(p meshPod) string {
		// The "-a" sidecars stream to the first collector, the "-b" ones
		// to the second: every edge is seen by both, from both sides.
		if strings.HasSuffix(p.name, "-a") {
			return collectors[0].addrs["grpc"]
		}
		return collectors[1].addrs["grpc"]
	}
	send := func(rounds int) {
		sendRounds(t, ctx, toSingle, rounds)
		sendRounds(t, ctx, toCollector, rounds)
	}

	// One round creates every series in every process; the flush at t0
	// then writes all of them, before the measured traffic. rate() over
	// (t0, t1] reads exactly the traffic sent in between, in both setups.
	send(1)
	t0 := nextFlush(time.Now(), flush, 300*time.Millisecond)
	time.Sleep(time.Until(t0.Add(500 * time.Millisecond)))
	const rounds = 10
	send(rounds)
	t1 := nextFlush(time.Now(), flush, 300*time.Millisecond)
	time.Sleep(time.Until(t1.Add(500 * time.Millisecond)))

	// Wait for the collectors' samples at t1 to reach Prometheus.
	families := []string{"istio_requests_total", "istio_request_duration_milliseconds_bucket"}
	for _, scope := range []string{"instance", "endpoint"} {
		for _, part := range []string{"calls_total", "errors_total", "latency_milliseconds_bucket"} {
			families = append(families, "meshlens_"+scope+"_relation_"+part)
		}
	}
	eventually(t, 60*time.Second, "every series of both collectors has its sample at t1 in Prometheus", func() (bool, string) {
		for _, f := range families {
			res, err := query.queryAt("min by (collector) (timestamp("+f+"))", t1)
			if err != nil {
				return false, err.Error()
			}
			if len(res) != 2 {
				return false, fmt.Sprintf("%s: %d collectors: %v", f, len(res), res)
			}
			for _, r := range res {
				if v := r.float(t); v < float64(t1.UnixMilli())/1000 {
					return false, fmt.Sprintf("%s of collector %s: oldest newest sample at %.3f, t1 %.3f", f, r.Metric["collector"], v, float64(t1.UnixMilli())/1000)
				}
			}
		}
		return true, ""
	})

	// Both collectors hold part of the same edge's traffic: the sums below
	// really add two halves.
	res, err := query.queryAt(`sum by (collector) (istio_requests_total{reporter="destination",destination_service_name="reviews"})`, t1)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 || res[0].float(t) == 0 || res[1].float(t) == 0 {
		t.Fatalf("productpage->reviews by collector: %+v, want two non-zero halves", res)
	}
	// The counters at t0 and t1 are the same in both setups: the flush at
	// t0 came before the measured traffic, the one at t1 after it.
	perRound := float64(requestsPerRound())
	for _, c := range []struct {
		at   time.Time
		want float64
	}{{t0, perRound}, {t1, perRound * (rounds + 1)}} {
		for name, in := range map[string]*instance{"single node": single, "query node": query} {
			r, err := in.queryAt(`sum(istio_requests_total{reporter="destination"})`, c.at)
			if err != nil {
				t.Fatal(err)
			}
			if len(r) != 1 || r[0].float(t) != c.want {
				t.Fatalf("%s: requests stored at %s: %+v, want %v (a flush came late: the machine is overloaded)", name, c.at.Format(time.RFC3339Nano), r, c.want)
			}
		}
	}

	// The window (t0-1ms, t1] holds the samples at t0 and t1.
	start := t0.Add(-time.Millisecond)
	for _, level := range []string{"service", "instance", "endpoint"} {
		want := single.topology(t, level, start, t1)
		got := query.topology(t, level, start, t1)
		if len(want.Edges) == 0 || len(want.Nodes) == 0 {
			t.Fatalf("%s level: the single node's graph is empty", level)
		}
		if d := diffJSON("nodes", byID(got.Nodes), byID(want.Nodes)); d != "" {
			t.Errorf("%s level: query node vs single node: %s", level, d)
		}
		if d := diffJSON("edges", byID(got.Edges), byID(want.Edges)); d != "" {
			t.Errorf("%s level: query node vs single node: %s", level, d)
		}
		t.Logf("%s level: %d nodes, %d edges equal", level, len(want.Nodes), len(want.Edges))
	}

	// The figures are the traffic sent: 10 rounds of 2x2 pod pairs with
	// ten productpage->reviews requests each, one of them a 503.
	g := query.topology(t, "service", start, t1)
	secs := t1.Sub(t0).Seconds()
	for _, e := range g.Edges {
		if e["source"] == "default/productpage" && e["target"] == "default/reviews" {
			rate, errs := e["requestRate"].(float64), e["errorRate"].(float64)
			if math.Abs(rate*secs-rounds*4*10) > 0.5 || math.Abs(errs*secs-rounds*4) > 0.1 {
				t.Errorf("productpage->reviews: %.4f req/s and %.4f err/s over %.3fs, want %d requests and %d errors", rate, errs, secs, rounds*40, rounds*4)
			}
			return
		}
	}
	t.Errorf("no productpage->reviews edge in %+v", g.Edges)
}
