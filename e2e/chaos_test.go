package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// chaosCycles is how many kill -9 / restart cycles TestKill9KeepsAcknowledgedData
// runs: a few in make test, 20 or more in make bench-chaos
// (go test ./e2e -run Kill9 -chaos.cycles=20, or MESHLENS_CHAOS_CYCLES=20).
var chaosCycles = flag.Int("chaos.cycles", 0, "kill -9 cycles of TestKill9KeepsAcknowledgedData (0: $MESHLENS_CHAOS_CYCLES, else 3)")

func cyclesWanted() int {
	if *chaosCycles > 0 {
		return *chaosCycles
	}
	if n, err := strconv.Atoi(os.Getenv("MESHLENS_CHAOS_CYCLES")); err == nil && n > 0 {
		return n
	}
	return 3
}

// alsOutcome is what a load worker knows about one ALS stream it sent.
type alsOutcome struct {
	service string // source canonical service, unique per stream
	sent    int    // entries sent
	acked   bool   // CloseAndRecv returned OK
}

// traceOutcome is one Zipkin POST.
type traceOutcome struct {
	id    string
	spans int
	acked bool // answered 202
}

type chaosLedger struct {
	mu     sync.Mutex
	als    []alsOutcome
	traces []traceOutcome
	// ms holds the Metrics Service samples (its own lock).
	ms ledger
}

const (
	chaosMsgsPerStream  = 5
	chaosEntriesPerMsg  = 20
	chaosSpansPerTrace  = 4
	chaosALSWorkers     = 4
	chaosZipkinWorkers  = 2
	chaosMetricsWorkers = 1
)

// metricsLoad sends Metrics Service streams of one counter sample, each from
// its own proxy, until ctx ends.
func metricsLoad(ctx context.Context, t *testing.T, addr string, cycle, worker int, led *chaosLedger) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Error(err)
		return
	}
	defer conn.Close()
	for seq := 0; ctx.Err() == nil; seq++ {
		sendSampleStream(ctx, conn, fmt.Sprintf("mschaos-c%d-w%d-s%d", cycle, worker, seq), float64(seq+1), &led.ms)
	}
}

// alsClient opens a stream like openALS, returning the error instead of
// failing the test (it runs on load goroutines).
func alsClient(ctx context.Context, conn *grpc.ClientConn, n *corev3.Node) (*alsStream, error) {
	s, err := alsv3.NewAccessLogServiceClient(conn).StreamAccessLogs(ctx)
	if err != nil {
		return nil, err
	}
	return &alsStream{stream: s, first: true, node: n}, nil
}

// alsLoad sends streams of chaosMsgsPerStream messages until ctx ends, each
// stream from its own source service so that its count can be checked alone.
func alsLoad(ctx context.Context, t *testing.T, addr string, cycle, worker int, led *chaosLedger) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Error(err)
		return
	}
	defer conn.Close()
	for seq := 0; ctx.Err() == nil; seq++ {
		svc := fmt.Sprintf("alschaos-c%d-w%d-s%d", cycle, worker, seq)
		out := alsOutcome{service: svc}
		func() {
			sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			s, err := alsClient(sctx, conn, node(svc+"-pod", svc, "v1", productpageIP))
			if err != nil {
				return
			}
			for m := 0; m < chaosMsgsPerStream; m++ {
				var entries []*accesslogv3.HTTPAccessLogEntry
				for j := 0; j < chaosEntriesPerMsg; j++ {
					entries = append(entries, httpEntry(time.Now(), time.Millisecond, 200,
						"outbound|9080||reviews.default.svc.cluster.local", reviewsIP, "127.0.0.6", productpageIP))
				}
				if s.send(entries...) != nil {
					return
				}
				out.sent += len(entries)
			}
			out.acked = s.close() == nil
		}()
		if out.sent == 0 {
			continue // nothing reached the server (it is down)
		}
		led.mu.Lock()
		led.als = append(led.als, out)
		led.mu.Unlock()
	}
}

// zipkinLoad posts traces of chaosSpansPerTrace spans until ctx ends.
func zipkinLoad(ctx context.Context, base string, cycle, worker int, led *chaosLedger) {
	client := &http.Client{Timeout: 20 * time.Second}
	for seq := 0; ctx.Err() == nil; seq++ {
		id := fmt.Sprintf("%08x%04x%04x", 0xc4a05000+cycle, worker, seq)
		now := time.Now().UnixMicro()
		var spans []map[string]any
		for k := 0; k < chaosSpansPerTrace; k++ {
			sp := map[string]any{
				"traceId": id, "id": fmt.Sprintf("%016x", k+1), "name": "get /chaos",
				"timestamp": now, "duration": 1000, "kind": "SERVER",
				"localEndpoint": map[string]any{"serviceName": "zkchaos"},
			}
			if k > 0 {
				sp["parentId"] = fmt.Sprintf("%016x", k)
			}
			spans = append(spans, sp)
		}
		body, _ := json.Marshal(spans)
		out := traceOutcome{id: id, spans: chaosSpansPerTrace}
		req, _ := http.NewRequestWithContext(ctx, "POST", base+"/api/v2/spans", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if resp, err := client.Do(req); err == nil {
			out.acked = resp.StatusCode == http.StatusAccepted
			resp.Body.Close()
		}
		led.mu.Lock()
		led.traces = append(led.traces, out)
		led.mu.Unlock()
	}
}

// TestKill9KeepsAcknowledgedData kills the server with SIGKILL at a random
// moment under ALS and Zipkin load, restarts it on the same data directory
// and checks that every acknowledged access-log record and span is
// queryable exactly once. A stream or POST that was not acknowledged may
// be stored in full, in part (ALS) or not at all, but never more than once.
func TestKill9KeepsAcknowledgedData(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short mode: kill -9 cycles start the binary repeatedly")
	}
	cycles := cyclesWanted()
	seed := time.Now().UnixNano()
	t.Logf("%d cycles, seed %d", cycles, seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	dir := t.TempDir()
	// A 1s flush interval mixes periodic and forced (acknowledgement)
	// flushes; stale_after keeps every chaos series in instant queries.
	flags := []string{"--processors.metrics.flush_interval=1s", "--processors.metrics.stale_after=1h", "--processors.metrics.evict_after=2h"}
	// MESHLENS_CHAOS_FLAGS adds server flags, e.g. --pipeline.durable_ack=false
	// to watch the test catch acknowledged records being lost.
	if extra := os.Getenv("MESHLENS_CHAOS_FLAGS"); extra != "" {
		flags = append(flags, strings.Fields(extra)...)
	}
	led := &chaosLedger{}
	var killedAt []time.Duration
	// After each restart the traces of the cycle just killed are checked
	// (every stream is, one query does them all); after the last, all.
	tracesFrom := 0
	for cycle := 0; cycle < cycles; cycle++ {
		in := start(t, dir, flags...)
		if cycle > 0 {
			verifyChaos(t, in, led, tracesFrom, false)
		}
		led.mu.Lock()
		tracesFrom = len(led.traces)
		led.mu.Unlock()
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for w := 0; w < chaosALSWorkers; w++ {
			wg.Add(1)
			go func() { defer wg.Done(); alsLoad(ctx, t, in.addrs["grpc"], cycle, w, led) }()
		}
		for w := 0; w < chaosZipkinWorkers; w++ {
			wg.Add(1)
			go func() { defer wg.Done(); zipkinLoad(ctx, "http://"+in.addrs["zipkin"], cycle, w, led) }()
		}
		for w := 0; w < chaosMetricsWorkers; w++ {
			wg.Add(1)
			go func() { defer wg.Done(); metricsLoad(ctx, t, in.addrs["grpc"], cycle, w, led) }()
		}
		d := time.Duration(300+rng.IntN(1200)) * time.Millisecond
		time.Sleep(d)
		in.kill() // SIGKILL
		killedAt = append(killedAt, d)
		cancel()
		wg.Wait()
	}
	in := start(t, dir, flags...)
	acked, ackedTraces := verifyChaos(t, in, led, 0, true)
	led.ms.mu.Lock()
	samples := led.ms.samples
	led.ms.mu.Unlock()
	ackedSamples := verifySamples(t, in, samples)
	if ackedSamples == 0 {
		t.Errorf("no Metrics Service sample was acknowledged in %d attempts: the test proves nothing", len(samples))
	}
	t.Logf("survived %d kill -9 cycles (killed after %v); %d ALS streams (%d acknowledged, %d records), %d traces (%d acknowledged) and %d Metrics Service samples (%d acknowledged) checked; lost: %s",
		cycles, killedAt, len(led.als), acked, acked*chaosMsgsPerStream*chaosEntriesPerMsg, len(led.traces), ackedTraces, len(samples), ackedSamples,
		map[bool]string{true: "0", false: "see errors above"}[!t.Failed()])
}

// verifyChaos checks every stream, and the traces from tracesFrom on, in
// the ledger against the restarted server and returns how many were
// acknowledged.
func verifyChaos(t *testing.T, in *instance, led *chaosLedger, tracesFrom int, final bool) (ackedStreams, ackedTraces int) {
	t.Helper()
	led.mu.Lock()
	defer led.mu.Unlock()
	got := map[string]float64{}
	for _, s := range in.query(`sum by (source_canonical_service) (last_over_time(istio_requests_total{reporter="source",source_canonical_service=~"alschaos-.*"}[2h]))`) {
		got[s.Metric["source_canonical_service"]] = s.float(t)
	}
	lost, dup, partial := 0, 0, 0
	for _, o := range led.als {
		v := got[o.service]
		switch {
		case o.acked:
			ackedStreams++
			if v != float64(o.sent) {
				if v < float64(o.sent) {
					lost++
				} else {
					dup++
				}
				t.Errorf("acknowledged stream %s: %v records stored, want exactly %d", o.service, v, o.sent)
			}
		case v > float64(o.sent):
			dup++
			t.Errorf("unacknowledged stream %s: %v records stored, more than the %d sent", o.service, v, o.sent)
		case v > 0:
			partial++
		}
	}
	for _, tr := range led.traces[tracesFrom:] {
		n := traceSpans(t, in, tr.id)
		if tr.acked {
			ackedTraces++
			if n != tr.spans {
				t.Errorf("acknowledged trace %s: %d spans stored, want exactly %d", tr.id, n, tr.spans)
			}
		} else if n > tr.spans {
			t.Errorf("unacknowledged trace %s: %d spans stored, more than the %d sent", tr.id, n, tr.spans)
		}
	}
	if final && ackedStreams == 0 {
		t.Errorf("no ALS stream was acknowledged in %d attempts: the test proves nothing", len(led.als))
	}
	if final {
		t.Logf("ALS streams: %d acknowledged (lost %d, duplicated %d), %d unacknowledged of which %d stored in part or full",
			ackedStreams, lost, dup, len(led.als)-ackedStreams, partial)
	}
	return ackedStreams, ackedTraces
}

// traceSpans counts the spans of trace id over the Jaeger query API; 0 if
// it is not stored.
func traceSpans(t *testing.T, in *instance, id string) int {
	t.Helper()
	resp, err := http.Get(in.url("/api/traces/" + id))
	if err != nil {
		t.Fatalf("get trace %s: %v", id, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return 0
	}
	var body struct {
		Data []struct {
			Spans []json.RawMessage `json:"spans"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("get trace %s: status %d: %v", id, resp.StatusCode, err)
	}
	n := 0
	for _, d := range body.Data {
		n += len(d.Spans)
	}
	return n
}

// TestOverloadRefusesAndRecovers floods a server whose queue holds one
// batch: the excess is refused with RESOURCE_EXHAUSTED and counted, what was
// acknowledged is stored exactly, and once the flood stops the server
// serves normally.
func TestOverloadRefusesAndRecovers(t *testing.T) {
	in := start(t, t.TempDir(), "--pipeline.queue_capacity=1", "--pipeline.workers=1", "--pipeline.enqueue_wait=1ms", fastFlush)
	ctx := ctxTimeout(t, 2*time.Minute)
	conn, err := grpc.NewClient(in.addrs["grpc"], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const streams, msgs, perMsg = 48, 10, 500
	var entries []*accesslogv3.HTTPAccessLogEntry
	for j := 0; j < perMsg; j++ {
		entries = append(entries, httpEntry(time.Now(), time.Millisecond, 200,
			"outbound|9080||reviews.default.svc.cluster.local", reviewsIP, "127.0.0.6", productpageIP))
	}
	var mu sync.Mutex
	codeCount := map[codes.Code]int{}
	ackedBy := map[string]int{}
	var wg sync.WaitGroup
	for i := 0; i < streams; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			svc := fmt.Sprintf("flood-%d", i)
			s, err := alsClient(ctx, conn, node(svc+"-pod", svc, "v1", productpageIP))
			if err != nil {
				return
			}
			for m := 0; m < msgs; m++ {
				if s.send(entries...) != nil {
					break
				}
			}
			err = s.close()
			mu.Lock()
			codeCount[status.Code(err)]++
			if err == nil {
				ackedBy[svc] = msgs * perMsg
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	t.Logf("flood of %d streams x %d entries: %v", streams, msgs*perMsg, codeCount)
	if codeCount[codes.ResourceExhausted] == 0 {
		t.Fatalf("no stream was refused with RESOURCE_EXHAUSTED by a one-batch queue: %v", codeCount)
	}
	for c := range codeCount {
		if c != codes.OK && c != codes.ResourceExhausted {
			t.Errorf("a stream ended with %v; overload must answer RESOURCE_EXHAUSTED", c)
		}
	}
	metrics := httpGetText(t, in.url("/metrics"))
	if !strings.Contains(metrics, `meshlens_receiver_refused_items_total{reason="overloaded",receiver="envoy_als",transport="grpc"}`) {
		t.Errorf("/metrics does not count the refused entries as overloaded")
	}
	// What was acknowledged is stored exactly, at once.
	got := map[string]float64{}
	for _, s := range in.query(`sum by (source_canonical_service) (istio_requests_total{reporter="source",source_canonical_service=~"flood-.*"})`) {
		got[s.Metric["source_canonical_service"]] = s.float(t)
	}
	for svc, n := range ackedBy {
		if got[svc] != float64(n) {
			t.Errorf("acknowledged stream %s: %v stored, want %d", svc, got[svc], n)
		}
	}
	// The flood is over: a normal stream is served and stored.
	start := time.Now()
	sendBookinfoHop(t, ctx, in.addrs["grpc"], 100)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("after the flood a 100-request stream took %v to be acknowledged", d)
	}
	if v := in.scalar(`sum(istio_requests_total{reporter="destination",destination_service_name="reviews"})`); v != 100 {
		t.Errorf("after the flood: %v requests stored, want 100", v)
	}
}

// TestStalledHTTPClientIsCutOff: a client that sends headers and part of a
// body, then stalls, holds its connection only for pipeline.http_read_timeout.
func TestStalledHTTPClientIsCutOff(t *testing.T) {
	in := start(t, t.TempDir(), "--pipeline.http_read_timeout=1s")
	conn, err := net.Dial("tcp", in.addrs["zipkin"])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t0 := time.Now()
	if _, err := io.WriteString(conn, "POST /api/v2/spans HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n[{\"traceId\":"); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = io.ReadAll(conn) // whatever the answer, the server must close
	if d := time.Since(t0); err != nil || d > 5*time.Second {
		t.Fatalf("stalled client still connected after %v (err %v); want it cut off after ~1s", d, err)
	}
	if !in.isReady() {
		t.Fatal("server not ready after the stalled client")
	}
}
