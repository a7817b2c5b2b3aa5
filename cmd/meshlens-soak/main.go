// Command meshlens-soak runs the real meshlens binary under a steady mixed
// load (Envoy ALS streams and Zipkin spans) at a fraction of the capacity it
// measures first, for a long time, and checks that nothing drifts: memory
// (linear fit over the second half), goroutines, and acknowledgement
// latency. It writes its summary as Markdown (docs/soak.md) and exits 1 when
// a check fails.
//
//	make soak                   # 10 minutes
//	make soak DURATION=1h
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/meshlens/meshlens/demo"
)

// The trace store's 64 MiB memtable fills, then flushes: at the default
// span ratio it turns over every few minutes, so that the second-half
// memory slope sees a sawtooth rather than one long fill.

type options struct {
	binary      string
	duration    time.Duration
	window      time.Duration
	rate        float64
	fraction    float64
	serverCPU   int
	streams     int
	spanRatio   float64
	rampStep    time.Duration
	out         string
	maxHeapMiB  float64 // MiB per minute
	maxRSSMiB   float64 // MiB per minute
	maxGorGrow  float64
	maxP99Ratio float64
	// blockDuration is the server's storage.metrics.block_duration.
	blockDuration time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.binary, "binary", "bin/meshlens", "meshlens binary to soak")
	flag.DurationVar(&o.duration, "duration", 10*time.Minute, "how long to hold the load")
	flag.DurationVar(&o.window, "window", time.Minute, "one table row: throughput and latency per window")
	flag.Float64Var(&o.rate, "rate", 0, "ALS entries per second to hold; 0 = -fraction of the capacity measured by a step ramp first")
	flag.Float64Var(&o.fraction, "fraction", 0.7, "share of the measured capacity to hold")
	flag.IntVar(&o.serverCPU, "server-cpu", 1, "CPU the server is pinned to (taskset)")
	flag.IntVar(&o.streams, "streams", 8, "concurrent ALS streams")
	flag.Float64Var(&o.spanRatio, "span-ratio", 0.25, "spans sent per ALS entry")
	flag.DurationVar(&o.rampStep, "ramp-step", 10*time.Second, "length of one capacity ramp step")
	flag.StringVar(&o.out, "out", "docs/soak.md", "Markdown summary to write")
	flag.DurationVar(&o.blockDuration, "block-duration", time.Minute, "the server's storage.metrics.block_duration: the TSDB head grows for 1.5x this, then is compacted; short enough that the soak sees several head compactions")
	flag.Float64Var(&o.maxHeapMiB, "max-heap-slope", 4, "fail when the heap grows faster than this many MiB per minute over the second half")
	flag.Float64Var(&o.maxRSSMiB, "max-rss-slope", 8, "fail when anonymous RSS grows faster than this many MiB per minute over the second half")
	flag.Float64Var(&o.maxGorGrow, "max-goroutine-growth", 25, "fail when the median goroutine count of the last third exceeds the first third's by more")
	flag.Float64Var(&o.maxP99Ratio, "max-p99-ratio", 2, "fail when the median ALS ack p99 of the last third exceeds the first third's by this factor (and by 25ms)")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "meshlens-soak:", err)
		os.Exit(1)
	}
}

// server is the meshlens process under test.
type server struct {
	cmd   *exec.Cmd
	addrs map[string]string
	dir   string
}

var listenRE = regexp.MustCompile(`listening (\w+)=(\S+) \(`)

func startServer(o options) (*server, error) {
	dir, err := os.MkdirTemp("", "meshlens-soak")
	if err != nil {
		return nil, err
	}
	argv := []string{"-c", strconv.Itoa(o.serverCPU), o.binary, "serve", "--storage.path=" + dir,
		"--listen.http=127.0.0.1:0", "--listen.grpc=127.0.0.1:0", "--listen.zipkin=127.0.0.1:0",
		"--listen.otlp_grpc=", "--listen.otlp_http=",
		"--storage.metrics.block_duration=" + o.blockDuration.String()}
	cmd := exec.Command("taskset", argv...)
	out, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s (is taskset installed?): %w", o.binary, err)
	}
	s := &server{cmd: cmd, addrs: map[string]string{}, dir: dir}
	lines := make(chan string, 128)
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
		close(lines)
	}()
	deadline := time.After(60 * time.Second)
	for s.addrs["http"] == "" || s.addrs["grpc"] == "" || s.addrs["zipkin"] == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				return nil, fmt.Errorf("%s exited before listening", o.binary)
			}
			if m := listenRE.FindStringSubmatch(l); m != nil {
				s.addrs[m[1]] = m[2]
			}
		case <-deadline:
			s.stop()
			return nil, fmt.Errorf("%s did not listen within 60s", o.binary)
		}
	}
	go func() {
		for range lines {
		}
	}()
	return s, nil
}

func (s *server) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
	os.RemoveAll(s.dir)
}

// procStatus reads a field of /proc/PID/status in bytes (the kB values).
func (s *server) procStatus(field string) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		return math.NaN()
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, field+":") {
			f := strings.Fields(l)
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb * 1024
		}
	}
	return math.NaN()
}

// cpuSeconds is the process's user+system CPU time.
func (s *server) cpuSeconds() float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid))
	if err != nil {
		return math.NaN()
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

// metrics scrapes /metrics and sums the samples of each wanted name.
func (s *server) metrics(names ...string) (map[string]float64, error) {
	resp, err := http.Get("http://" + s.addrs["http"] + "/metrics")
	if err != nil {
		return nil, fmt.Errorf("scrape /metrics: %w", err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		for _, n := range names {
			if strings.HasPrefix(l, n+" ") || strings.HasPrefix(l, n+"{") {
				f := strings.Fields(l)
				v, _ := strconv.ParseFloat(f[len(f)-1], 64)
				out[n] += v
			}
		}
	}
	return out, sc.Err()
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:3], " ")
}

// spanLoad posts Zipkin traces of spansPerTrace spans at a given rate and
// keeps the latencies and answers of the current window.
type spanLoad struct {
	addr string
	rate func() float64 // spans per second, read at every request

	mu      sync.Mutex
	lat     []time.Duration
	spans   int
	refused int
	failed  int
}

const spansPerTrace = 5

func (l *spanLoad) run(ctx context.Context, workers int) {
	client := &http.Client{Timeout: 10 * time.Second}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := time.Now()
			for seq := 0; ctx.Err() == nil; seq++ {
				r := l.rate()
				if r <= 0 {
					time.Sleep(100 * time.Millisecond)
					next = time.Now()
					continue
				}
				next = next.Add(time.Duration(float64(time.Second) * spansPerTrace * float64(workers) / r))
				if d := time.Until(next); d > 0 {
					select {
					case <-ctx.Done():
						return
					case <-time.After(d):
					}
				} else if d < -time.Second {
					next = time.Now()
				}
				l.post(ctx, client, w, seq)
			}
		}()
	}
	wg.Wait()
}

var services = []string{"productpage", "reviews", "ratings", "details", "istio-ingressgateway"}

func (l *spanLoad) post(ctx context.Context, client *http.Client, worker, seq int) {
	id := fmt.Sprintf("%016x%08x%08x", time.Now().UnixNano(), worker, seq)
	now := time.Now().UnixMicro()
	spans := make([]map[string]any, 0, spansPerTrace)
	for k := range spansPerTrace {
		sp := map[string]any{
			"traceId": id, "id": fmt.Sprintf("%016x", k+1), "name": "get /soak",
			"timestamp": now + int64(k*100), "duration": 2000 - k*100, "kind": "SERVER",
			"localEndpoint": map[string]any{"serviceName": services[k%len(services)]},
			"tags":          map[string]string{"http.status_code": "200", "http.method": "GET"},
		}
		if k > 0 {
			sp["parentId"] = fmt.Sprintf("%016x", k)
		}
		spans = append(spans, sp)
	}
	body, _ := json.Marshal(spans)
	req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+l.addr+"/api/v2/spans", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	t0 := time.Now()
	resp, err := client.Do(req)
	d := time.Since(t0)
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case err != nil:
		if ctx.Err() == nil {
			l.failed++
		}
	case resp.StatusCode == http.StatusAccepted:
		l.lat = append(l.lat, d)
		l.spans += spansPerTrace
	case resp.StatusCode == http.StatusTooManyRequests:
		l.refused++
	default:
		l.failed++
	}
	if resp != nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// take returns and resets the window's figures.
func (l *spanLoad) take() (lat []time.Duration, spans, refused, failed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lat, spans, refused, failed = l.lat, l.spans, l.refused, l.failed
	l.lat, l.spans, l.refused, l.failed = nil, 0, 0, 0
	slices.Sort(lat)
	return
}

func pct(s []time.Duration, p int) time.Duration {
	if len(s) == 0 {
		return 0
	}
	return s[(len(s)-1)*p/100]
}

// step is one capacity ramp step.
type step struct {
	offered, achieved float64 // ALS entries/s
	ackP99            time.Duration
	errors            uint64
	spanP99           time.Duration
	ok                bool
}

// row is one soak window.
type row struct {
	at                 time.Duration
	entries            float64 // per second
	ackP50, ackP99     time.Duration
	alsErrors          uint64
	spans              float64 // per second
	spanP50, spanP99   time.Duration
	spanRef, spanFail  int
	rss, rssAnon, heap float64
	goroutines         float64
	headSeries         float64
	headChunks         float64
	truncations        float64
	cpuPerSec          float64 // server CPU seconds per wall second
	load               string
}

// sample is one memory / goroutine reading.
type sample struct {
	at                       time.Duration
	rss, rssAnon, heap, gors float64
	// pebble is the trace store's memory outside the Go heap (block cache
	// and memtables, bounded by their settings): part of anonymous RSS.
	pebble float64
	// headSeries and headChunks are the TSDB head's; truncations counts
	// head compactions so far.
	headSeries, headChunks, truncations float64
}

func run(o options) error {
	if o.duration < 2*o.window {
		return fmt.Errorf("-duration %s: must be at least two windows (-window %s)", o.duration, o.window)
	}
	mesh := demo.NewMesh(1, time.Now)
	logs := mesh.Pregenerate(20000, 50)
	var msgs, entries int
	for _, l := range logs {
		msgs += len(l.Messages)
		entries += l.Entries
	}
	perMsg := float64(entries) / float64(msgs)

	srv, err := startServer(o)
	if err != nil {
		return err
	}
	defer srv.stop()
	startLoad := loadavg()
	began := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var spanRate atomicFloat
	sl := &spanLoad{addr: srv.addrs["zipkin"], rate: spanRate.load}
	spanDone := make(chan struct{})
	go func() { sl.run(ctx, 4); close(spanDone) }()

	blast := func(rate float64, d time.Duration) (demo.BlastResult, error) {
		cfg := demo.BlastConfig{Addr: srv.addrs["grpc"], Streams: o.streams, Duration: d, ChunkMessages: 20}
		if rate > 0 {
			cfg.Rate = rate / perMsg
		}
		return demo.Blast(ctx, cfg, logs)
	}

	// Capacity: offered rates ×1.5 until the server no longer keeps up
	// (achieved < 95% of offered, errors, or ack p99 > 1s).
	var ramp []step
	target := o.rate
	if target <= 0 {
		if _, err := blast(1000, 5*time.Second); err != nil { // warm-up
			return fmt.Errorf("warm-up: %w", err)
		}
		capacity := 0.0
		for offered := 1000.0; offered < 2e6; offered *= 1.5 {
			spanRate.store(offered * o.spanRatio)
			sl.take()
			res, err := blast(offered, o.rampStep)
			if err != nil {
				return fmt.Errorf("ramp step %.0f entries/s: %w", offered, err)
			}
			lat, _, _, _ := sl.take()
			st := step{offered: offered, achieved: res.EntriesPerSecond, ackP99: res.AckP99, errors: res.Errors, spanP99: pct(lat, 99)}
			st.ok = st.achieved >= 0.95*offered && st.errors == 0 && st.ackP99 <= time.Second
			ramp = append(ramp, st)
			fmt.Printf("ramp: offered %.0f entries/s, achieved %.0f, ack p99 %s, errors %d, ok %v\n", offered, st.achieved, st.ackP99, st.errors, st.ok)
			if !st.ok {
				break
			}
			capacity = st.achieved
		}
		if capacity == 0 {
			return errors.New("capacity ramp: the server did not keep up with the first step (1000 entries/s)")
		}
		target = o.fraction * capacity
	}
	spanRate.store(target * o.spanRatio)
	fmt.Printf("soak: %.0f ALS entries/s + %.0f spans/s for %s (server on CPU %d)\n", target, target*o.spanRatio, o.duration, o.serverCPU)

	// Memory and goroutines every 5s.
	var (
		smu     sync.Mutex
		samples []sample
	)
	soakStart := time.Now()
	sampleCtx, stopSampling := context.WithCancel(ctx)
	defer stopSampling()
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			m, err := srv.metrics("go_gc_heap_live_bytes", "go_goroutines", "meshlens_tracestore_pebble_memory_bytes",
				"prometheus_tsdb_head_series", "prometheus_tsdb_head_chunks", "prometheus_tsdb_head_truncations_total")
			if err == nil {
				smu.Lock()
				samples = append(samples, sample{at: time.Since(soakStart), rss: srv.procStatus("VmRSS"), rssAnon: srv.procStatus("RssAnon"),
					heap: m["go_gc_heap_live_bytes"], gors: m["go_goroutines"], pebble: m["meshlens_tracestore_pebble_memory_bytes"],
					headSeries: m["prometheus_tsdb_head_series"], headChunks: m["prometheus_tsdb_head_chunks"], truncations: m["prometheus_tsdb_head_truncations_total"]})
				smu.Unlock()
			}
			select {
			case <-sampleCtx.Done():
				return
			case <-t.C:
			}
		}
	}()

	var rows []row
	sl.take()
	for time.Since(soakStart) < o.duration {
		d := min(o.window, o.duration-time.Since(soakStart))
		if d < o.window/2 {
			break
		}
		cpu0, t0 := srv.cpuSeconds(), time.Now()
		res, err := blast(target, d)
		if err != nil {
			return fmt.Errorf("soak window at %s: %w", time.Since(soakStart).Round(time.Second), err)
		}
		wall := time.Since(t0).Seconds()
		lat, spans, ref, fail := sl.take()
		r := row{at: time.Since(soakStart), entries: res.EntriesPerSecond, ackP50: res.AckP50, ackP99: res.AckP99, alsErrors: res.Errors,
			spans: float64(spans) / wall, spanP50: pct(lat, 50), spanP99: pct(lat, 99), spanRef: ref, spanFail: fail,
			cpuPerSec: (srv.cpuSeconds() - cpu0) / wall, load: loadavg()}
		smu.Lock()
		if n := len(samples); n > 0 {
			last := samples[n-1]
			r.rss, r.rssAnon, r.heap, r.goroutines = last.rss, last.rssAnon, last.heap, last.gors
			r.headSeries, r.headChunks, r.truncations = last.headSeries, last.headChunks, last.truncations
		}
		smu.Unlock()
		rows = append(rows, r)
		fmt.Printf("%6s  %7.0f entries/s ack p50 %6s p99 %6s  %6.0f spans/s p99 %6s  rss %4.0f MiB live heap %4.0f MiB  goroutines %.0f  load %s\n",
			r.at.Round(time.Second), r.entries, r.ackP50.Round(time.Millisecond), r.ackP99.Round(time.Millisecond), r.spans,
			r.spanP99.Round(time.Millisecond), r.rss/(1<<20), r.heap/(1<<20), r.goroutines, r.load)
	}
	stopSampling()
	<-sampled
	cancel()
	<-spanDone
	endLoad := loadavg()

	v := judge(o, rows, samples)
	md := report(o, began, startLoad, endLoad, perMsg, ramp, target, rows, samples, v)
	if err := os.WriteFile(o.out, []byte(md), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", o.out, err)
	}
	fmt.Printf("wrote %s\n", o.out)
	if !v.pass {
		return fmt.Errorf("soak failed: %s", strings.Join(v.failures, "; "))
	}
	return nil
}

type atomicFloat struct {
	mu sync.Mutex
	v  float64
}

func (a *atomicFloat) load() float64   { a.mu.Lock(); defer a.mu.Unlock(); return a.v }
func (a *atomicFloat) store(v float64) { a.mu.Lock(); a.v = v; a.mu.Unlock() }

// verdict is the outcome of the drift checks.
type verdict struct {
	// heapSlope and rssSlope are the slopes, in MiB per minute over the
	// second half, of the floor of the live heap and of anonymous RSS
	// less Pebble's off-heap memory (see floorSlope); they decide.
	heapSlope, rssSlope float64
	// rawHeapSlope and rawRSSSlope are the plain least-squares slopes of
	// every sample, reported only: the TSDB head's sawtooth skews them
	// whichever way the window happens to cut it.
	rawHeapSlope, rawRSSSlope float64
	pebbleSlope               float64 // of the trace store's off-heap memory, reported only
	pebbleLast                float64 // MiB at the end
	floors                    int     // floor windows behind the slopes
	gorFirst, gorLast         float64
	p99First, p99Last         time.Duration
	errors, spanFail, spanRef int
	pass                      bool
	failures                  []string
}

// slope is the least-squares slope of ys over xs.
func slope(xs, ys []float64) float64 {
	n := float64(len(xs))
	if n < 2 {
		return 0
	}
	var sx, sy, sxx, sxy float64
	for i := range xs {
		sx += xs[i]
		sy += ys[i]
		sxx += xs[i] * xs[i]
		sxy += xs[i] * ys[i]
	}
	den := n*sxx - sx*sx
	if den == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / den
}

// floorSlope is the least-squares slope of the minima of ys over
// consecutive windows of width w (in the units of xs). A leak raises the
// floor; the TSDB head, which fills for 1.5 block durations and then is
// compacted, and garbage awaiting collection raise only the peaks. Each
// window should hold at least one head compaction, so w is the block
// duration.
func floorSlope(xs, ys []float64, w float64) (float64, int) {
	if len(xs) == 0 || w <= 0 {
		return 0, 0
	}
	var fx, fy []float64
	start := xs[0]
	for i := 0; i < len(xs); {
		end := start + w
		bx, by := -1.0, 0.0
		for ; i < len(xs) && xs[i] < end; i++ {
			if bx < 0 || ys[i] < by {
				bx, by = xs[i], ys[i]
			}
		}
		// A trailing window shorter than w has not seen its compaction.
		if bx >= 0 && (i < len(xs) || xs[len(xs)-1]-start >= w*0.9) {
			fx, fy = append(fx, bx), append(fy, by)
		}
		start = end
	}
	return slope(fx, fy), len(fx)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func judge(o options, rows []row, samples []sample) verdict {
	var v verdict
	half := o.duration / 2
	var xs, heap, rss, rssGo, pebble []float64
	for _, s := range samples {
		if s.at >= half {
			xs = append(xs, s.at.Minutes())
			heap = append(heap, s.heap/(1<<20))
			rss = append(rss, s.rssAnon/(1<<20))
			// Pebble's block cache and memtables are allocated outside
			// the Go heap and fill up to their configured sizes; they
			// are reported on their own.
			rssGo = append(rssGo, (s.rssAnon-s.pebble)/(1<<20))
			pebble = append(pebble, s.pebble/(1<<20))
		}
	}
	w := o.blockDuration.Minutes()
	v.heapSlope, v.floors = floorSlope(xs, heap, w)
	v.rssSlope, _ = floorSlope(xs, rssGo, w)
	v.rawHeapSlope, v.rawRSSSlope, v.pebbleSlope = slope(xs, heap), slope(xs, rss), slope(xs, pebble)
	if len(pebble) > 0 {
		v.pebbleLast = pebble[len(pebble)-1]
	}
	var first, last []float64
	for _, s := range samples {
		switch {
		case s.at < o.duration/3:
			first = append(first, s.gors)
		case s.at >= 2*o.duration/3:
			last = append(last, s.gors)
		}
	}
	v.gorFirst, v.gorLast = median(first), median(last)
	var p1, p3 []float64
	for _, r := range rows {
		switch {
		case r.at <= o.duration/3+o.window/2:
			p1 = append(p1, float64(r.ackP99))
		case r.at >= 2*o.duration/3:
			p3 = append(p3, float64(r.ackP99))
		}
		v.errors += int(r.alsErrors)
		v.spanFail += r.spanFail
		v.spanRef += r.spanRef
	}
	v.p99First, v.p99Last = time.Duration(median(p1)), time.Duration(median(p3))
	if v.heapSlope > o.maxHeapMiB {
		v.failures = append(v.failures, fmt.Sprintf("the live heap's floor grows %.2f MiB/min over the second half (limit %.1f)", v.heapSlope, o.maxHeapMiB))
	}
	if v.rssSlope > o.maxRSSMiB {
		v.failures = append(v.failures, fmt.Sprintf("the floor of anonymous RSS less Pebble's off-heap memory grows %.2f MiB/min over the second half (limit %.1f)", v.rssSlope, o.maxRSSMiB))
	}
	if v.gorLast-v.gorFirst > o.maxGorGrow {
		v.failures = append(v.failures, fmt.Sprintf("goroutines grew from %.0f to %.0f (median, first vs last third; limit +%.0f)", v.gorFirst, v.gorLast, o.maxGorGrow))
	}
	if len(p1) > 0 && len(p3) > 0 && float64(v.p99Last) > o.maxP99Ratio*float64(v.p99First) && v.p99Last-v.p99First > 25*time.Millisecond {
		v.failures = append(v.failures, fmt.Sprintf("ALS ack p99 drifted from %s to %s (median, first vs last third; limit ×%.1f)", v.p99First, v.p99Last, o.maxP99Ratio))
	}
	if v.errors > 0 || v.spanFail > 0 || v.spanRef > 0 {
		v.failures = append(v.failures, fmt.Sprintf("%d ALS stream errors, %d span POSTs failed, %d refused (429) at %.0f%% of capacity", v.errors, v.spanFail, v.spanRef, o.fraction*100))
	}
	v.pass = len(v.failures) == 0
	return v
}

func report(o options, began time.Time, startLoad, endLoad string, perMsg float64, ramp []step, target float64, rows []row, samples []sample, v verdict) string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	p("# Soak test\n\n")
	p("Written by `make soak` (`cmd/meshlens-soak`); do not edit by hand.\n\n")
	verdictWord := "**PASS**"
	if !v.pass {
		verdictWord = "**FAIL**: " + strings.Join(v.failures, "; ")
	}
	p("Result: %s\n\n", verdictWord)
	p("* started %s, %s of load after the capacity ramp; %s\n", began.UTC().Format("2006-01-02 15:04 MST"), o.duration, machine())
	p("* server: `%s serve --storage.metrics.block_duration=%s` on CPU %d (taskset), embedded storage in a temporary directory; load generator in this process (Envoy ALS over gRPC, %d streams closed every 20 messages of %.1f entries on average; Zipkin JSON, 4 workers, %d spans per trace, %.0f%% as many spans as ALS entries)\n",
		o.binary, o.blockDuration, o.serverCPU, o.streams, perMsg, spansPerTrace, o.spanRatio*100)
	p("* load average (1/5/15 min) at start %s, at end %s: the machine is shared, so latency figures carry other processes' noise\n", startLoad, endLoad)
	p("* memory is judged by its floor: the TSDB head block holds every sample of the last 1–1.5 block durations in memory and is then written to disk, so heap and RSS rise and fall with it (with the default 2h block, over 3 hours). The soak shortens the block to %s so that the head is compacted inside the run, and fits the slope of the minimum of each %s window: a leak raises the floor, the head only the peaks. The heap is the live heap the last GC marked (go_gc_heap_live_bytes), not the heap in use, which also holds garbage awaiting collection and rises and falls with the GC's pacing. Pebble's block cache and memtables live outside the Go heap and fill up to their configured sizes; they are subtracted from RSS and reported on their own.\n", o.blockDuration, o.blockDuration)
	if len(ramp) > 0 {
		p("\n## Capacity ramp (%s per step, ALS entries/s with spans at the same ratio)\n\n", o.rampStep)
		p("| offered | achieved | ack p99 | errors | span POST p99 | kept up |\n|---|---|---|---|---|---|\n")
		for _, s := range ramp {
			p("| %.0f | %.0f | %s | %d | %s | %v |\n", s.offered, s.achieved, s.ackP99.Round(time.Millisecond), s.errors, s.spanP99.Round(time.Millisecond), s.ok)
		}
		p("\nCapacity: the last step kept up (achieved ≥ 95%% of offered, no errors, ack p99 ≤ 1s). Soak rate: %.0f%% of it = **%.0f ALS entries/s + %.0f spans/s**.\n", o.fraction*100, target, target*o.spanRatio)
	} else {
		p("\nSoak rate (given with -rate): **%.0f ALS entries/s + %.0f spans/s**.\n", target, target*o.spanRatio)
	}
	p("\n## Per %s\n\n", o.window)
	p("| at | ALS entries/s | ack p50 | ack p99 | spans/s | span POST p50 | p99 | server CPU s/s | RSS | anon RSS | live heap | goroutines | TSDB head series / chunks / compactions | load avg |\n")
	p("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		p("| %s | %.0f | %s | %s | %.0f | %s | %s | %.2f | %.0f MiB | %.0f MiB | %.0f MiB | %.0f | %.0f / %.0f / %.0f | %s |\n", r.at.Round(time.Second), r.entries,
			r.ackP50.Round(time.Millisecond), r.ackP99.Round(time.Millisecond), r.spans, r.spanP50.Round(time.Millisecond), r.spanP99.Round(time.Millisecond),
			r.cpuPerSec, r.rss/(1<<20), r.rssAnon/(1<<20), r.heap/(1<<20), r.goroutines, r.headSeries, r.headChunks, r.truncations, r.load)
	}
	var totalEntries, totalCPU, wall float64
	for i, r := range rows {
		dt := o.window.Seconds()
		if i > 0 {
			dt = (r.at - rows[i-1].at).Seconds()
		}
		totalEntries += r.entries * dt
		totalCPU += r.cpuPerSec * dt
		wall += dt
	}
	p("\n## Checks\n\n")
	p("| check | measured | limit | ok |\n|---|---|---|---|\n")
	p("| live heap (marked by the last GC): slope of its floor (the minimum of each %s window, %d windows) over the second half (%d samples every 5s) | %+.2f MiB/min | %.1f MiB/min | %v |\n", o.blockDuration, v.floors, countAfter(samples, o.duration/2), v.heapSlope, o.maxHeapMiB, v.heapSlope <= o.maxHeapMiB)
	p("| anonymous RSS less Pebble's off-heap memory: slope of its floor, same windows | %+.2f MiB/min | %.1f MiB/min | %v |\n", v.rssSlope, o.maxRSSMiB, v.rssSlope <= o.maxRSSMiB)
	p("| live heap / anonymous RSS: plain least-squares slope of every second-half sample | %+.2f / %+.2f MiB/min | reported only | |\n", v.rawHeapSlope, v.rawRSSSlope)
	p("| Pebble's off-heap memory (block cache + memtables, bounded by their settings): slope, value at the end | %+.2f MiB/min, %.0f MiB | reported only | |\n", v.pebbleSlope, v.pebbleLast)
	p("| goroutines, median of the first vs last third | %.0f → %.0f | +%.0f | %v |\n", v.gorFirst, v.gorLast, o.maxGorGrow, v.gorLast-v.gorFirst <= o.maxGorGrow)
	p("| ALS ack p99, median of the first vs last third | %s → %s | ×%.1f | %v |\n", v.p99First.Round(time.Millisecond), v.p99Last.Round(time.Millisecond), o.maxP99Ratio,
		!(float64(v.p99Last) > o.maxP99Ratio*float64(v.p99First) && v.p99Last-v.p99First > 25*time.Millisecond))
	p("| ALS stream errors, span POSTs failed / refused | %d, %d / %d | 0 | %v |\n", v.errors, v.spanFail, v.spanRef, v.errors == 0 && v.spanFail == 0 && v.spanRef == 0)
	if totalCPU > 0 {
		p("\nServer CPU: %.1f s for %.0f ALS entries (plus spans) over %.0f s: %.1f µs of CPU per entry, %.2f CPU-seconds per second.\n",
			totalCPU, totalEntries, wall, totalCPU/totalEntries*1e6, totalCPU/wall)
	}
	return b.String()
}

func countAfter(s []sample, t time.Duration) int {
	n := 0
	for _, x := range s {
		if x.at >= t {
			n++
		}
	}
	return n
}

func machine() string {
	model, cpus := runtime.GOARCH, 0
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				model = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				cpus++
			}
		}
	}
	return fmt.Sprintf("%s, %d CPUs in the machine, %s", model, cpus, runtime.Version())
}
