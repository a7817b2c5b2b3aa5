package e2e

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	metricsv3 "github.com/envoyproxy/go-control-plane/envoy/service/metrics/v3"
	dto "github.com/prometheus/client_model/go"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// mountTmpfs mounts a tmpfs of sizeMiB at a new directory and unmounts it
// when the test ends. It skips the test when mounting is not allowed.
func mountTmpfs(t *testing.T, sizeMiB int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%dm", sizeMiB), "tmpfs", dir).CombinedOutput()
	if err != nil {
		t.Skipf("needs root to mount a tmpfs (mount -t tmpfs): %v: %s", err, strings.TrimSpace(string(out)))
	}
	// Registered after t.TempDir's cleanup, so it runs before it.
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fillDisk writes a file at path until the file system is full and
// returns how many bytes it wrote.
func fillDisk(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	var n int64
	for size := len(buf); size > 0; {
		w, err := f.Write(buf[:size])
		n += int64(w)
		if err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill %s: %v", path, err)
			}
			size /= 2 // fill the last pages too
		}
	}
	return n
}

// ledger records what a sender was told about each batch it sent.
type ledger struct {
	mu      sync.Mutex
	als     []alsOutcome
	traces  []traceOutcome
	samples []sampleOutcome
	codes   map[string]int // "<protocol> <answer>" -> count
}

// sampleOutcome is one Metrics Service stream of one counter sample.
type sampleOutcome struct {
	proxy string // the proxy's pod name, unique per stream
	value float64
	acked bool
}

func (l *ledger) count(what string) {
	l.mu.Lock()
	if l.codes == nil {
		l.codes = map[string]int{}
	}
	l.codes[what]++
	l.mu.Unlock()
}

func (l *ledger) snapshot() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]int{}
	for k, v := range l.codes {
		out[k] = v
	}
	return out
}

// sendALSStream sends one stream of msgs×perMsg entries from source service
// svc and records the answer.
func sendALSStream(ctx context.Context, conn *grpc.ClientConn, svc string, msgs, perMsg int, led *ledger) {
	out := alsOutcome{service: svc}
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	s, err := alsClient(sctx, conn, node(svc+"-pod", svc, "v1", productpageIP))
	if err != nil {
		led.count("als dial " + status.Code(err).String())
		return
	}
	var entries []*accesslogv3.HTTPAccessLogEntry
	for j := 0; j < perMsg; j++ {
		entries = append(entries, httpEntry(time.Now(), time.Millisecond, 200,
			"outbound|9080||reviews.default.svc.cluster.local", reviewsIP, "127.0.0.6", productpageIP))
	}
	for m := 0; m < msgs; m++ {
		if s.send(entries...) != nil {
			break
		}
		out.sent += len(entries)
	}
	err = s.close()
	out.acked = err == nil
	led.count("als " + status.Code(err).String())
	led.mu.Lock()
	led.als = append(led.als, out)
	led.mu.Unlock()
}

// zipkinTrace is a JSON v2 body of one trace of n spans.
func zipkinTrace(id, service string, n int) []byte {
	now := time.Now().UnixMicro()
	var spans []map[string]any
	for k := 0; k < n; k++ {
		sp := map[string]any{
			"traceId": id, "id": fmt.Sprintf("%016x", k+1), "name": "get /durable",
			"timestamp": now, "duration": 1000, "kind": "SERVER",
			"localEndpoint": map[string]any{"serviceName": service},
		}
		if k > 0 {
			sp["parentId"] = fmt.Sprintf("%016x", k)
		}
		spans = append(spans, sp)
	}
	body, _ := json.Marshal(spans)
	return body
}

// otlpTrace is an OTLP/HTTP protobuf body of one trace of n spans.
func otlpTrace(id, service string, n int) []byte {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", service)
	ss := rs.ScopeSpans().AppendEmpty()
	var tid pcommon.TraceID
	raw, _ := hex.DecodeString(id)
	copy(tid[:], raw)
	now := time.Now()
	for k := 0; k < n; k++ {
		sp := ss.Spans().AppendEmpty()
		sp.SetTraceID(tid)
		sp.SetSpanID(pcommon.SpanID{0, 0, 0, 0, 0, 0, 0, byte(k + 1)})
		if k > 0 {
			sp.SetParentSpanID(pcommon.SpanID{0, 0, 0, 0, 0, 0, 0, byte(k)})
		}
		sp.SetName("get /durable")
		sp.SetKind(ptrace.SpanKindServer)
		sp.SetStartTimestamp(pcommon.NewTimestampFromTime(now))
		sp.SetEndTimestamp(pcommon.NewTimestampFromTime(now.Add(time.Millisecond)))
	}
	body, _ := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	return body
}

// postTrace posts one trace of n spans over Zipkin JSON ("zipkin") or
// OTLP/HTTP protobuf ("otlp") and records the answer.
func postTrace(ctx context.Context, client *http.Client, proto, base, id string, n int, led *ledger) int {
	var req *http.Request
	if proto == "zipkin" {
		req, _ = http.NewRequestWithContext(ctx, "POST", base+"/api/v2/spans", bytes.NewReader(zipkinTrace(id, "durable-zk", n)))
		req.Header.Set("Content-Type", "application/json")
	} else {
		req, _ = http.NewRequestWithContext(ctx, "POST", base+"/v1/traces", bytes.NewReader(otlpTrace(id, "durable-otlp", n)))
		req.Header.Set("Content-Type", "application/x-protobuf")
	}
	out := traceOutcome{id: id, spans: n}
	code := 0
	resp, err := client.Do(req)
	if err == nil {
		code = resp.StatusCode
		out.acked = code == http.StatusAccepted || code == http.StatusOK
		resp.Body.Close()
		led.count(fmt.Sprintf("%s %d", proto, code))
	} else {
		led.count(proto + " transport error")
	}
	led.mu.Lock()
	led.traces = append(led.traces, out)
	led.mu.Unlock()
	return code
}

// sendSampleStream sends one Metrics Service stream of a single counter
// sample from its own proxy and records the answer.
func sendSampleStream(ctx context.Context, conn *grpc.ClientConn, pod string, v float64, led *ledger) {
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	out := sampleOutcome{proxy: pod, value: v}
	s, err := metricsv3.NewMetricsServiceClient(conn).StreamMetrics(sctx)
	if err != nil {
		led.count("metrics dial " + status.Code(err).String())
		return
	}
	fam := &dto.MetricFamily{Name: proto.String("cluster.outbound|9080||reviews.default.svc.cluster.local.upstream_rq_total"),
		Type: dto.MetricType_COUNTER.Enum(), Metric: []*dto.Metric{{Counter: &dto.Counter{Value: proto.Float64(v)},
			TimestampMs: proto.Int64(time.Now().UnixMilli())}}}
	err = s.Send(&metricsv3.StreamMetricsMessage{
		Identifier:   &metricsv3.StreamMetricsMessage_Identifier{Node: node(pod, "durable-metrics", "v1", productpageIP)},
		EnvoyMetrics: []*dto.MetricFamily{fam},
	})
	if err == nil {
		_, err = s.CloseAndRecv()
	}
	out.acked = err == nil
	led.count("metrics " + status.Code(err).String())
	led.mu.Lock()
	led.samples = append(led.samples, out)
	led.mu.Unlock()
}

// verifyLedger checks every record of led against in: acknowledged ALS
// streams, traces and samples are stored exactly; nothing unacknowledged is
// stored more than once. ALS services match svcRE.
func verifyLedger(t *testing.T, in *instance, led *ledger, svcRE string) (ackedALS, ackedTraces, ackedSamples int) {
	t.Helper()
	led.mu.Lock()
	defer led.mu.Unlock()
	got := map[string]float64{}
	for _, s := range in.query(`sum by (source_canonical_service) (last_over_time(istio_requests_total{reporter="source",source_canonical_service=~"` + svcRE + `"}[2h]))`) {
		got[s.Metric["source_canonical_service"]] = s.float(t)
	}
	for _, o := range led.als {
		v := got[o.service]
		switch {
		case o.acked:
			ackedALS++
			if v != float64(o.sent) {
				t.Errorf("acknowledged ALS stream %s: %v records stored, want exactly %d", o.service, v, o.sent)
			}
		case v > float64(o.sent):
			t.Errorf("unacknowledged ALS stream %s: %v records stored, more than the %d sent", o.service, v, o.sent)
		}
	}
	for _, tr := range led.traces {
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
	ackedSamples = verifySamples(t, in, led.samples)
	return ackedALS, ackedTraces, ackedSamples
}

// verifySamples checks Metrics Service samples against in: every
// acknowledged one is stored with its value, an unacknowledged one is
// stored with its value or not at all. It returns how many were
// acknowledged.
func verifySamples(t *testing.T, in *instance, samples []sampleOutcome) (acked int) {
	t.Helper()
	if len(samples) == 0 {
		return 0
	}
	vals := map[string]float64{}
	for _, s := range in.query(`last_over_time(envoy_cluster_upstream_rq_total{service="durable-metrics"}[2h])`) {
		vals[s.Metric["instance"]] = s.float(t)
	}
	for _, o := range samples {
		v, ok := vals[o.proxy]
		switch {
		case o.acked:
			acked++
			if !ok || v != o.value {
				t.Errorf("acknowledged Metrics Service sample of %s: stored %v (present %v), want %v", o.proxy, v, ok, o.value)
			}
		case ok && v != o.value:
			t.Errorf("unacknowledged Metrics Service sample of %s: stored %v, sent %v", o.proxy, v, o.value)
		}
	}
	return acked
}

// TestDiskFullAnswersRetryableAndRecovers runs the server on a small tmpfs,
// fills it while ALS streams, Metrics Service samples, Zipkin and OTLP
// spans arrive, and checks that storage failures are answered with
// retryable codes (gRPC UNAVAILABLE / RESOURCE_EXHAUSTED, HTTP 503 / 429),
// the process stays up, ingestion resumes by itself once space returns,
// and everything acknowledged, before, during and after, is stored exactly
// once, also after a restart.
func TestDiskFullAnswersRetryableAndRecovers(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short mode: fills a tmpfs under load")
	}
	sz := 48
	if os.Getenv("NOFILL") != "" {
		sz = 1024
	}
	dir := mountTmpfs(t, sz)
	data := filepath.Join(dir, "data")
	flags := []string{fastFlush, "--processors.metrics.stale_after=1h", "--processors.metrics.evict_after=2h", "--pipeline.ack_timeout=3s",
		"--storage.min_free_bytes=4194304"}
	in := start(t, data, flags...)
	ctx := ctxTimeout(t, 3*time.Minute)
	conn := dialALS(t, in.addrs["grpc"])
	client := &http.Client{Timeout: 20 * time.Second}
	zk, otlp := "http://"+in.addrs["zipkin"], "http://"+in.addrs["otlp_http"]
	led := &ledger{}
	seq, fullRounds := 0, 0
	round := func(phase string) {
		seq++
		// Every ALS stream and sample is a new series set. While the disk
		// is full only the first few are sent: the first flush after space
		// returns writes every new series to the WAL in one commit, and
		// that commit must fit in the tmpfs (in production: in
		// storage.min_free_bytes; see docs/durability.md).
		if phase == "full" {
			fullRounds++
		}
		if fullRounds <= 10 || phase != "full" {
			sendALSStream(ctx, conn, fmt.Sprintf("diskfull-%s-%d", phase, seq), 5, 20, led)
			sendSampleStream(ctx, conn, fmt.Sprintf("diskfull-%s-%d", phase, seq), float64(seq), led)
		}
		postTrace(ctx, client, "zipkin", zk, fmt.Sprintf("d15cf011%08x%016x", 1, seq), 4, led)
		postTrace(ctx, client, "otlp", otlp, fmt.Sprintf("d15cf011%08x%016x", 2, seq), 4, led)
	}
	for i := 0; i < 5; i++ {
		round("before")
	}
	if c := led.snapshot(); c["als OK"] != 5 || c["metrics OK"] != 5 || c["zipkin 202"] != 5 || c["otlp 200"] != 5 {
		t.Fatalf("before the disk filled up not everything was acknowledged: %v", c)
	}

	filler := filepath.Join(dir, "filler")
	var n int64
	if os.Getenv("NOFILL") == "" {
		n = fillDisk(t, filler)
	} else {
		os.WriteFile(filler, nil, 0o644)
	}
	t.Logf("filler: %d MiB", n>>20)
	// Load until every protocol has been refused, bounded in time: the
	// trace store and the TSDB may hold writes in memory for a while.
	refused := func(c map[string]int) bool {
		return c["als Unavailable"]+c["als ResourceExhausted"] > 0 &&
			c["zipkin 503"]+c["zipkin 429"] > 0 && c["otlp 503"]+c["otlp 429"] > 0
	}
	full := time.Now()
	// At least 3s: several periodic flushes fail meanwhile, and the
	// server must stay up and answer through them.
	for time.Since(full) < 40*time.Second && (time.Since(full) < 3*time.Second || !refused(led.snapshot())) {
		round("full")
		// The filler takes whatever space the server frees (a WAL segment
		// deleted after a checkpoint), so the disk stays full.
		if os.Getenv("NOFILL") == "" {
			fillDisk(t, filler)
		}
	}
	c := led.snapshot()
	t.Logf("answers while the disk was full (%v): %v", time.Since(full).Round(time.Millisecond), c)
	for k, v := range c {
		proto, answer, _ := strings.Cut(k, " ")
		ok := map[string]bool{
			"als":     answer == "OK" || answer == codes.Unavailable.String() || answer == codes.ResourceExhausted.String(),
			"metrics": answer == "OK" || answer == codes.Unavailable.String() || answer == codes.ResourceExhausted.String(),
			"zipkin":  answer == "202" || answer == "503" || answer == "429",
			"otlp":    answer == "200" || answer == "503" || answer == "429",
		}[proto]
		if !ok {
			t.Errorf("%d %s answers: a full disk must be answered with a retryable code", v, k)
		}
	}
	if !refused(c) {
		t.Errorf("not every protocol was refused within 40s of a full disk: %v", c)
	}
	select {
	case <-in.done:
		t.Fatalf("meshlens exited on a full disk:\n%s", in.logs())
	default:
	}
	if resp, err := http.Get(in.url("/healthz")); err != nil || resp.StatusCode != 200 {
		t.Fatalf("/healthz on a full disk: %v %v", resp, err)
	}

	// Space returns: ingestion resumes by itself.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	eventually(t, 20*time.Second, "every protocol acknowledges again after space returned", func() (bool, string) {
		before := led.snapshot()
		round("after")
		after := led.snapshot()
		d := func(k string) int { return after[k] - before[k] }
		var st syscall.Statfs_t
		_ = syscall.Statfs(dir, &st)
		return d("als OK") == 1 && d("metrics OK") == 1 && d("zipkin 202") == 1 && d("otlp 200") == 1,
			fmt.Sprintf("%v; %d bytes free", after, st.Bavail*uint64(st.Bsize))
	})
	t.Logf("recovered %v after space returned", time.Since(freed).Round(time.Millisecond))
	for i := 0; i < 5; i++ {
		round("after")
	}
	a, tr, s := verifyLedger(t, in, led, "diskfull-.*")
	t.Logf("stored exactly: %d acknowledged ALS streams, %d traces, %d Metrics Service samples", a, tr, s)

	// What was written around the failure reads back after a restart.
	in.stop()
	in = start(t, data, flags...)
	verifyLedger(t, in, led, "diskfull-.*")
}
