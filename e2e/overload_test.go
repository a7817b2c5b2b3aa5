package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// rssSampler records the highest VmRSS of a process, read every 50ms.
type rssSampler struct {
	max  atomic.Int64
	stop chan struct{}
	done chan struct{}
}

func sampleRSS(pid int) *rssSampler {
	s := &rssSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			if v := vmRSS(pid); v > s.max.Load() {
				s.max.Store(v)
			}
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *rssSampler) peak() int64 { close(s.stop); <-s.done; return s.max.Load() }

func vmRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			kb, _ := strconv.ParseInt(strings.Fields(l)[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// counter reads one self-metric series from /metrics (0 when absent).
func counter(t *testing.T, in *instance, series string) float64 {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`)
	m := re.FindStringSubmatch(httpGetText(t, in.url("/metrics")))
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// alsPhase is what one phase of ALS load achieved.
type alsPhase struct {
	acked, refused, other int // streams
	ackedEntries          int
	lat                   []time.Duration // CloseAndRecv of acknowledged streams
	codes                 map[codes.Code]int
	elapsed               time.Duration
}

func (p alsPhase) rate() float64 { return float64(p.ackedEntries) / p.elapsed.Seconds() }

func (p alsPhase) p99() time.Duration {
	if len(p.lat) == 0 {
		return 0
	}
	s := slices.Clone(p.lat)
	slices.Sort(s)
	return s[(len(s)-1)*99/100]
}

const (
	overloadPerMsg = 50 // entries per ALS message
	overloadMsgs   = 4  // messages per stream
)

// alsStreams runs n closed-loop ALS senders for d: each sends streams of
// overloadMsgs messages and closes them, as fast as they are answered.
func alsStreams(ctx context.Context, t *testing.T, conn *grpc.ClientConn, n int, d time.Duration) alsPhase {
	var entries []*accesslogv3.HTTPAccessLogEntry
	for j := 0; j < overloadPerMsg; j++ {
		entries = append(entries, httpEntry(time.Now(), time.Millisecond, 200,
			"outbound|9080||reviews.default.svc.cluster.local", reviewsIP, "127.0.0.6", productpageIP))
	}
	var mu sync.Mutex
	ph := alsPhase{codes: map[codes.Code]int{}}
	start := time.Now()
	end := start.Add(d)
	var wg sync.WaitGroup
	for w := 0; w < n; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			svc := fmt.Sprintf("overload-w%d", w)
			for time.Now().Before(end) && ctx.Err() == nil {
				s, err := alsClient(ctx, conn, node(svc+"-pod", svc, "v1", productpageIP))
				if err != nil {
					continue
				}
				for m := 0; m < overloadMsgs; m++ {
					if s.send(entries...) != nil {
						break
					}
				}
				t0 := time.Now()
				err = s.close()
				d := time.Since(t0)
				mu.Lock()
				ph.codes[status.Code(err)]++
				switch status.Code(err) {
				case codes.OK:
					ph.acked++
					ph.ackedEntries += overloadMsgs * overloadPerMsg
					ph.lat = append(ph.lat, d)
				case codes.ResourceExhausted:
					ph.refused++
				default:
					ph.other++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	ph.elapsed = time.Since(start)
	return ph
}

// TestOverloadTenTimesSustainable offers ten times the load a server
// sustains: its memory stays under pipeline.memory_limit, the excess is
// refused with RESOURCE_EXHAUSTED (ALS, OTLP gRPC) / 429 (Zipkin) and
// counted exactly as the clients saw it, acknowledged streams keep a
// bounded latency, and once the load drops the server takes the sustained
// rate again within seconds.
func TestOverloadTenTimesSustainable(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short mode: runs ~30s of load")
	}
	const memLimit = 384 << 20
	in := start(t, t.TempDir(), fastFlush, "--pipeline.memory_limit="+strconv.Itoa(memLimit),
		"--pipeline.queue_capacity=8", "--pipeline.workers=1", "--pipeline.enqueue_wait=5ms",
		"--pipeline.max_inflight_span_batches=4")
	rss := sampleRSS(in.cmd.Process.Pid)
	ctx := ctxTimeout(t, 3*time.Minute)
	conn, err := grpc.NewClient(in.addrs["grpc"], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	const sustainStreams = 2
	base := alsStreams(ctx, t, conn, sustainStreams, 4*time.Second)
	if base.acked == 0 || base.refused > 0 {
		t.Fatalf("sustainable phase (%d streams): %v; want every stream acknowledged", sustainStreams, base.codes)
	}
	t.Logf("sustained: %.0f entries/s over %d streams, ack p99 %v", base.rate(), sustainStreams, base.p99())

	alsSeries := `meshlens_receiver_refused_items_total{reason="overloaded",receiver="envoy_als",transport="grpc"}`
	refused0 := counter(t, in, alsSeries)
	flood := alsStreams(ctx, t, conn, 10*sustainStreams, 8*time.Second)
	refusedEntries := counter(t, in, alsSeries) - refused0
	t.Logf("10x streams: %v; %.0f entries/s acknowledged, ack p99 %v; server counted %.0f refused entries",
		flood.codes, flood.rate(), flood.p99(), refusedEntries)
	if flood.refused == 0 {
		t.Errorf("ten times the sustained load was never refused with RESOURCE_EXHAUSTED: %v", flood.codes)
	}
	if flood.other > 0 {
		t.Errorf("%d streams ended with a code other than OK / RESOURCE_EXHAUSTED: %v", flood.other, flood.codes)
	}
	// The receiver refuses the message that found the queue full and ends
	// the stream: one message per refused stream.
	if want := float64(flood.refused * overloadPerMsg); refusedEntries != want {
		t.Errorf("server counted %.0f refused entries, clients saw %d refused streams (%v entries)", refusedEntries, flood.refused, want)
	}
	if p99 := flood.p99(); flood.acked > 0 && p99 > 5*time.Second {
		t.Errorf("acknowledged streams under overload: ack p99 %v, want < 5s", p99)
	}

	// Load back to the sustained level: throughput recovers at once.
	after := alsStreams(ctx, t, conn, sustainStreams, 3*time.Second)
	t.Logf("after the flood: %.0f entries/s, %v, ack p99 %v", after.rate(), after.codes, after.p99())
	if after.refused > 0 || after.other > 0 {
		t.Errorf("after the flood, at the sustained load, streams were refused: %v", after.codes)
	}
	if after.rate() < 0.5*base.rate() {
		t.Errorf("after the flood: %.0f entries/s, want at least half the %.0f sustained before", after.rate(), base.rate())
	}

	// Spans: many concurrent Zipkin POSTs and OTLP gRPC exports against 4
	// span batches in flight.
	zkSeries := `meshlens_receiver_refused_items_total{reason="overloaded",receiver="zipkin",transport="http"}`
	otSeries := `meshlens_receiver_refused_items_total{reason="overloaded",receiver="otlp",transport="grpc"}`
	zk0, ot0 := counter(t, in, zkSeries), counter(t, in, otSeries)
	otConn, err := grpc.NewClient(in.addrs["otlp_grpc"], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer otConn.Close()
	otClient := ptraceotlp.NewGRPCClient(otConn)
	const spansPer, workers = 20, 20
	var zk429, zkOK, zkOther, ot429, otOK, otOther atomic.Int64
	var wg sync.WaitGroup
	end := time.Now().Add(4 * time.Second)
	client := &http.Client{Timeout: 20 * time.Second}
	for w := 0; w < workers; w++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(end); i++ {
				body := zipkinTrace(fmt.Sprintf("0f100d%010x%016x", w, i), "overload-zk", spansPer)
				resp, err := client.Post("http://"+in.addrs["zipkin"]+"/api/v2/spans", "application/json", bytes.NewReader(body))
				switch {
				case err != nil:
					zkOther.Add(1)
				case resp.StatusCode == http.StatusAccepted:
					zkOK.Add(1)
				case resp.StatusCode == http.StatusTooManyRequests:
					zk429.Add(1)
				default:
					zkOther.Add(1)
				}
				if resp != nil {
					resp.Body.Close()
				}
			}
		}()
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(end); i++ {
				req := ptraceotlp.NewExportRequest()
				if err := req.UnmarshalProto(otlpTrace(fmt.Sprintf("0f100e%010x%016x", w, i), "overload-otlp", spansPer)); err != nil {
					t.Error(err)
					return
				}
				_, err := otClient.Export(ctx, req)
				switch status.Code(err) {
				case codes.OK:
					otOK.Add(1)
				case codes.ResourceExhausted:
					ot429.Add(1)
				default:
					otOther.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	zkRef, otRef := counter(t, in, zkSeries)-zk0, counter(t, in, otSeries)-ot0
	t.Logf("spans, %d Zipkin + %d OTLP gRPC workers: Zipkin %d accepted / %d 429 / %d other; OTLP %d accepted / %d RESOURCE_EXHAUSTED / %d other; server counted %.0f / %.0f refused spans",
		workers, workers, zkOK.Load(), zk429.Load(), zkOther.Load(), otOK.Load(), ot429.Load(), otOther.Load(), zkRef, otRef)
	if zk429.Load() == 0 || ot429.Load() == 0 {
		t.Errorf("span flood not refused: Zipkin %d x 429, OTLP %d x RESOURCE_EXHAUSTED", zk429.Load(), ot429.Load())
	}
	if zkOther.Load() > 0 || otOther.Load() > 0 {
		t.Errorf("span flood answered with other codes: Zipkin %d, OTLP %d", zkOther.Load(), otOther.Load())
	}
	if zkRef != float64(zk429.Load()*spansPer) || otRef != float64(ot429.Load()*spansPer) {
		t.Errorf("refused spans counted %.0f (Zipkin) / %.0f (OTLP), clients saw %d / %d", zkRef, otRef, zk429.Load()*spansPer, ot429.Load()*spansPer)
	}

	peak := rss.peak()
	t.Logf("peak RSS %d MiB (pipeline.memory_limit %d MiB)", peak>>20, memLimit>>20)
	if peak == 0 || peak >= memLimit {
		t.Errorf("peak RSS %d MiB, want under the %d MiB limit", peak>>20, memLimit>>20)
	}
}
