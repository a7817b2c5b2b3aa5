// Command meshlens-benchpeers measures meshlens against the systems people
// would run instead — Jaeger all-in-one (badger and memory storage), the
// OpenTelemetry Collector with the span-metrics and service-graph connectors,
// Prometheus and VictoriaMetrics — on the same machine, with the same load,
// in the same run, and writes docs/benchmarks.md and SVG plots.
//
// Method: each server runs alone, pinned to one core (taskset -c <server-cpu>),
// on 127.0.0.1 ports of its own; this process generates the load and should
// itself be pinned to another core (make bench-peers runs it under
// taskset -c 0). Load is open loop: a fixed rate per step with a bound on
// requests in flight, from pre-encoded payloads whose trace ids are rewritten
// per send, as are span times (moved to the send time unless
// -shift-timestamps=false). Each step records offered and accepted items/s, ack latency
// percentiles, server CPU and RSS. Saturation is the highest offered rate
// with accepted >= 99% of offered and p99 ack latency < 100 ms. Every sweep
// is repeated; medians and spread are reported, and ratios against the
// peers measured in the same run are the headline.
//
//	meshlens-benchpeers [-short] [-repeats 3] [-targets meshlens,jaeger-badger,otelcol] ...
//
// Peers are installed by scripts/install-peers.sh under $MESHLENS_PEERS.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/meshlens/meshlens/demo"
)

// harness holds the configuration of one benchmark run.
type harness struct {
	short         bool
	repeats       int
	ladderRatio   float64
	stepDur       time.Duration
	warmup        time.Duration
	serverCPU     int
	batchSpans    int
	maxInflight   int
	querySpans    int
	queryRate     float64
	shiftTS       bool // -shift-timestamps
	targetList    string
	protocols     []string
	workloadNames []string
	peers         string
	meshlensBin   string
	otelcolConfig string
	logDir        string
	workDir       string
	outMD, outSVG string
	outJSON       string
	keep          bool
	versions      map[string]string

	res results
}

// results is everything a run measured; it is also written as JSON.
type results struct {
	Started, Finished time.Time
	Machine           machine
	Versions          map[string]string
	Settings          map[string]string
	Workloads         []workloadInfo
	Sweeps            []sweep
	Queries           []queryResult
	PromQL            []promqlResult
	PromQLNote        string
	Notes             []string
	Params            params
	DiskProbes        []diskProbe `json:",omitempty"`
}

// params are the harness settings the report needs, kept in the JSON so
// that -from-json can rewrite the report without measuring again.
type params struct {
	Short                  bool
	Repeats, ServerCPU     int
	Batch, Inflight, Query int
	Step, Warmup           time.Duration
	FailsToStop            int
	LadderRatio            float64 `json:",omitempty"`
	QueryRate              float64 `json:",omitempty"`
	// ShiftTimestamps: every send's span times were moved to the send
	// time (false in results from before the setting existed, which all
	// replayed the template times).
	ShiftTimestamps bool
}

type machine struct {
	CPU, Kernel, Go string
	CPUs            int
	MemTotal        string
	LoadAvg         string
}

type workloadInfo struct {
	Name, Description string
	Traces, Spans     int
	SpansPerReq       float64
	OTLPBytesPerSpan  float64
	ZipkinBytesPerSpn float64
}

// sweep is one server, protocol and workload from the lowest step to past
// saturation.
type sweep struct {
	Workload, Target, Protocol string
	Repeat                     int
	Steps                      []Step
	Sat                        int     // index into Steps, -1 if none sustained
	SatRate                    float64 // accepted items/s at saturation
	SatCPU                     float64
	SatRSS                     int64
	PeakRSS                    int64 // VmHWM at the end
	AcceptedTotal              int64
	Disk                       int64
	// PerCPUSecond is the best accepted items per second of server CPU
	// time over the sustained steps: throughput per core that other
	// processes competing for the same core do not distort.
	PerCPUSecond float64
	LoadAvg      string // machine load average when the sweep ended
	Err          string
}

func main() {
	h := &harness{versions: map[string]string{}}
	var protocols, workloads string
	flag.BoolVar(&h.short, "short", false, "short mode: one peer, one workload, one repeat, short steps (< 3 minutes)")
	flag.IntVar(&h.repeats, "repeats", 3, "repeats of every sweep")
	flag.Float64Var(&h.ladderRatio, "ladder-ratio", 1.5, "ratio between consecutive offered-load steps (> 1; smaller places saturation more finely, with more steps)")
	flag.DurationVar(&h.stepDur, "step", 10*time.Second, "duration of each offered-load step")
	flag.DurationVar(&h.warmup, "warmup", 5*time.Second, "warm-up load before each sweep")
	flag.IntVar(&h.serverCPU, "server-cpu", 1, "CPU every server is pinned to")
	flag.IntVar(&h.batchSpans, "batch", 100, "spans per request")
	flag.IntVar(&h.maxInflight, "inflight", 64, "most requests in flight")
	flag.IntVar(&h.querySpans, "query-spans", 1_000_000, "spans stored before the query-latency and disk measurements")
	flag.Float64Var(&h.queryRate, "query-rate", 0, "offered spans/s while storing the query-phase spans, the same for every target (0: as fast as 8 requests in flight go, meshlens spread over 45 s; Jaeger drops what its queue cannot take, so a fixed rate it can store gives equal span counts)")
	flag.BoolVar(&h.shiftTS, "shift-timestamps", true, "move every send's span start/end and event times by one delta so the payload's latest span start is the send time, as a live mesh's spans are; false replays the template times (all spans start within one minute: the backfill shape)")
	flag.StringVar(&h.targetList, "targets", "meshlens,jaeger-badger,jaeger-memory,otelcol", "servers to measure")
	flag.StringVar(&protocols, "protocols", "otlp,zipkin,als", "ingest protocols")
	flag.StringVar(&workloads, "workloads", "synthetic100,bookinfo,hotrod", "span workloads")
	flag.StringVar(&h.peers, "peers", envOr("MESHLENS_PEERS", filepath.Join(os.Getenv("HOME"), ".cache", "meshlens-peers")), "peer install root (scripts/install-peers.sh)")
	flag.StringVar(&h.meshlensBin, "meshlens", "bin/meshlens", "meshlens binary")
	flag.StringVar(&h.otelcolConfig, "otelcol-config", "cmd/meshlens-benchpeers/peers/otelcol.yaml", "collector peer configuration")
	flag.StringVar(&h.outMD, "out", "docs/benchmarks.md", "report to write")
	flag.StringVar(&h.outSVG, "svg-dir", "docs/benchmarks", "directory for the SVG plots")
	flag.StringVar(&h.outJSON, "json", "", "also write the raw results as JSON here")
	flag.BoolVar(&h.keep, "keep", false, "keep the servers' data directories (for inspection)")
	flag.StringVar(&h.logDir, "logs", filepath.Join(os.TempDir(), "meshlens-benchpeers-logs"), "directory for the servers' logs (kept after the run)")
	fromJSON := flag.String("from-json", "", "only rewrite the report and plots from the results of an earlier -json run")
	flag.Parse()
	if !(h.ladderRatio > 1) {
		fmt.Fprintf(os.Stderr, "meshlens-benchpeers: -ladder-ratio=%g: want a ratio above 1 (1.5 is the default; 1.25 doubles the steps)\n", h.ladderRatio)
		os.Exit(2)
	}
	if *fromJSON != "" {
		if err := h.rewrite(*fromJSON); err != nil {
			fmt.Fprintln(os.Stderr, "meshlens-benchpeers:", err)
			os.Exit(1)
		}
		return
	}
	if h.short {
		// Under 3 minutes: meshlens against Jaeger-badger, OTLP and Zipkin,
		// one workload, one repeat, short steps, a small query set.
		if !flagSet("repeats") {
			h.repeats = 1
		}
		if !flagSet("step") {
			h.stepDur = 3 * time.Second
		}
		if !flagSet("warmup") {
			h.warmup = 2 * time.Second
		}
		if !flagSet("targets") {
			h.targetList = "meshlens,jaeger-badger"
		}
		if !flagSet("workloads") {
			workloads = "synthetic100"
		}
		if !flagSet("protocols") {
			protocols = "otlp,zipkin"
		}
		if !flagSet("query-spans") {
			h.querySpans = 20_000
		}

	}
	h.protocols = splitList(protocols)
	h.workloadNames = splitList(workloads)

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if err := h.run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "meshlens-benchpeers:", err)
		os.Exit(1)
	}
}

func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func logf(format string, args ...any) {
	fmt.Printf("[%s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func (h *harness) run(ctx context.Context) error {
	h.res.Started = time.Now().UTC()
	var err error
	if h.workDir, err = os.MkdirTemp("", "meshlens-benchpeers"); err != nil {
		return err
	}
	defer h.removeDir(h.workDir)
	if err := os.MkdirAll(h.logDir, 0o755); err != nil {
		return err
	}
	if err := portsFree(allPorts()...); err != nil {
		return err
	}
	h.recordVersions()
	h.res.Machine = describeMachine()
	h.res.Versions = h.versions
	h.res.Settings = map[string]string{
		"mode": map[bool]string{true: "short (SHORT=1)", false: "full"}[h.short], "repeats": fmt.Sprint(h.repeats),
		"step": h.stepDur.String(), "warm-up": h.warmup.String(), "server CPU": fmt.Sprint(h.serverCPU),
		"spans per request": fmt.Sprint(h.batchSpans), "max requests in flight": fmt.Sprint(h.maxInflight),
		"targets": h.targetList, "protocols": strings.Join(h.protocols, ","), "workloads": strings.Join(h.workloadNames, ","),
		"query-phase spans": fmt.Sprint(h.querySpans), "load generator affinity": affinity(),
		"span timestamps": timestampMode(h.shiftTS),
	}
	logf("machine: %s; server on CPU %d, load generator affinity %s", h.res.Machine.CPU, h.serverCPU, affinity())

	var wls []workload
	for _, name := range h.workloadNames {
		var w workload
		switch name {
		case "synthetic100":
			w = syntheticWorkload(150_000, 100, 7)
		case "bookinfo":
			w = bookinfoWorkload(150_000, 1)
		case "hotrod":
			logf("capturing HotROD traces (/dispatch) ...")
			w, err = captureHotROD(ctx, h, 60)
			if err != nil {
				h.note("HotROD workload skipped: %v", err)
				continue
			}
		default:
			return fmt.Errorf("unknown workload %q", name)
		}
		wls = append(wls, w)
	}
	if len(wls) == 0 {
		return fmt.Errorf("no workload")
	}
	targets := h.targets()
	enc := map[string]map[string][]*payload{}
	for _, w := range wls {
		o, err := encodeOTLP(w, h.batchSpans)
		if err != nil {
			return err
		}
		z, err := encodeZipkin(w, h.batchSpans)
		if err != nil {
			return err
		}
		enc[w.Name] = map[string][]*payload{"otlp": o, "zipkin": z}
		info := workloadInfo{Name: w.Name, Description: w.Description, Traces: len(w.Traces), Spans: w.spans(),
			SpansPerReq: float64(w.spans()) / float64(len(o))}
		info.OTLPBytesPerSpan = float64(totalBytes(o)) / float64(w.spans())
		info.ZipkinBytesPerSpn = float64(totalBytes(z)) / float64(w.spans())
		h.res.Workloads = append(h.res.Workloads, info)
		logf("workload %s: %d traces, %d spans, %.0f B/span OTLP, %.0f B/span Zipkin JSON", w.Name, info.Traces, info.Spans,
			info.OTLPBytesPerSpan, info.ZipkinBytesPerSpn)
	}

	h.probeDisk("at start")
	for r := 1; r <= h.repeats; r++ {
		for _, w := range wls {
			for _, proto := range h.protocols {
				if proto == "als" {
					continue
				}
				for _, t := range targets {
					if !t.speaks(proto) {
						continue
					}
					if ctx.Err() != nil {
						return ctx.Err()
					}
					s := h.spanSweep(ctx, t, w.Name, proto, enc[w.Name][proto], r)
					h.res.Sweeps = append(h.res.Sweeps, s)
				}
			}
		}
		if contains(h.protocols, "als") {
			for _, t := range targets {
				if t.speaks("als") {
					h.res.Sweeps = append(h.res.Sweeps, h.alsSweep(ctx, t, r))
				}
			}
		}
	}

	// Query latency, disk per span and PromQL on the first workload;
	// -query-spans 0 skips the phase (a load loop given 0 items would run
	// unbounded).
	w := wls[0]
	for _, t := range targets {
		if h.querySpans <= 0 || t.QueryURL == "" || !t.speaks("otlp") || ctx.Err() != nil {
			continue
		}
		q := h.queryPhase(ctx, t, w.Name, enc[w.Name]["otlp"], t.Name == "meshlens")
		h.res.Queries = append(h.res.Queries, q)
	}

	h.probeDisk("at end")
	h.res.Finished = time.Now().UTC()
	h.res.Params = params{Short: h.short, Repeats: h.repeats, ServerCPU: h.serverCPU, Batch: h.batchSpans, Inflight: h.maxInflight,
		Query: h.querySpans, Step: h.stepDur, Warmup: h.warmup, FailsToStop: h.failsToStop(), LadderRatio: h.ladderRatio, QueryRate: h.queryRate,
		ShiftTimestamps: h.shiftTS}
	if h.outJSON != "" {
		b, _ := json.MarshalIndent(h.res, "", "  ")
		_ = os.WriteFile(h.outJSON, b, 0o644)
	}
	return h.writeReport()
}

// rewrite loads the results of earlier runs (comma-separated JSON files)
// and writes the report again. The first file gives the machine, versions
// and settings; the sweeps, queries and notes of the others are added, so a
// protocol measured in a separate run (say, ALS alone) joins the report.
func (h *harness) rewrite(paths string) error {
	for i, path := range splitList(paths) {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var r results
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if i == 0 {
			h.res = r
			continue
		}
		h.res.Sweeps = append(h.res.Sweeps, r.Sweeps...)
		h.res.Queries = append(h.res.Queries, r.Queries...)
		if len(h.res.PromQL) == 0 {
			h.res.PromQL, h.res.PromQLNote = r.PromQL, r.PromQLNote
		}
		h.res.Notes = append(h.res.Notes, r.Notes...)
		h.res.Notes = append(h.res.Notes, fmt.Sprintf("Merged from a second run started %s (settings: %s).",
			r.Started.Format("15:04 UTC"), settingsLine(r.Settings)))
		if r.Finished.After(h.res.Finished) {
			h.res.Finished = r.Finished
		}
	}
	p := h.res.Params
	h.short, h.repeats, h.serverCPU, h.batchSpans, h.maxInflight, h.querySpans, h.stepDur, h.warmup =
		p.Short, p.Repeats, p.ServerCPU, p.Batch, p.Inflight, p.Query, p.Step, p.Warmup
	if p.LadderRatio > 0 { // older results were all 1.5
		h.ladderRatio = p.LadderRatio
	}
	h.queryRate = p.QueryRate
	h.shiftTS = p.ShiftTimestamps
	return h.writeReport()
}

// timestampMode describes the -shift-timestamps setting for the settings table.
func timestampMode(shift bool) string {
	if shift {
		return "shifted to each send's time (-shift-timestamps)"
	}
	return "template times replayed (-shift-timestamps=false)"
}

func settingsLine(m map[string]string) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	var out []string
	for _, k := range ks {
		out = append(out, k+"="+m[k])
	}
	return strings.Join(out, ", ")
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func totalBytes(ps []*payload) int {
	n := 0
	for _, p := range ps {
		n += len(p.Body)
	}
	return n
}

func (h *harness) note(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	logf("NOTE: %s", s)
	h.res.Notes = append(h.res.Notes, s)
}

// ladder is the offered-load steps of a protocol, in items/s.
func (h *harness) ladder(proto string) []float64 {
	lo := 1000.0
	if h.short {
		lo = 2000 // fewer steps to stay under 3 minutes
	}
	switch proto {
	case "zipkin":
		return Ladder(lo, 400_000, h.ladderRatio)
	case "als":
		return Ladder(10*lo, 2_000_000, h.ladderRatio)
	default:
		return Ladder(lo, 800_000, h.ladderRatio)
	}
}

// failsToStop is how many consecutive unsustained steps end a sweep: three,
// so that a latency spike from another process on a shared machine does not
// end a sweep far below the real saturation point; one in short mode.
func (h *harness) failsToStop() int {
	if h.res.Params.FailsToStop > 0 { // a report rewritten from an earlier run
		return h.res.Params.FailsToStop
	}
	if h.short {
		return 1
	}
	return 3
}

func (h *harness) removeDir(dir string) {
	if !h.keep {
		_ = os.RemoveAll(dir)
	}
}

func (h *harness) newDir(name string) (string, error) {
	return os.MkdirTemp(h.workDir, name+"-")
}

func (h *harness) sender(proto string) (sender, error) {
	switch proto {
	case "otlp":
		return newOTLPGRPC(portOTLPGRPC)
	case "otlp-http":
		return newHTTPSender("http://"+portOTLPHTTP+"/v1/traces", "application/x-protobuf", h.maxInflight), nil
	case "zipkin":
		return newHTTPSender("http://"+portZipkin+"/api/v2/spans", "application/json", h.maxInflight), nil
	}
	return nil, fmt.Errorf("unknown protocol %q", proto)
}

// spanSweep starts t, warms it up and steps the offered load until two
// consecutive steps are not sustained, then stops t and measures its disk.
func (h *harness) spanSweep(ctx context.Context, t *target, wl, proto string, payloads []*payload, repeat int) sweep {
	s := sweep{Workload: wl, Target: t.Name, Protocol: proto, Repeat: repeat, Sat: -1}
	dir, err := h.newDir(t.Name)
	if err != nil {
		s.Err = err.Error()
		return s
	}
	defer h.removeDir(dir)
	p, err := t.start(ctx, h, dir, "")
	if err != nil {
		s.Err = err.Error()
		logf("%s: %v", t.Name, err)
		if p != nil {
			p.stop()
		}
		return s
	}
	defer p.stop()
	snd, err := h.sender(proto)
	if err != nil {
		s.Err = err.Error()
		return s
	}
	defer snd.Close()
	var seq atomic.Uint64
	seq.Store(uint64(repeat) << 40)
	loop := &openLoop{snd: snd, payloads: payloads, maxInflight: h.maxInflight, seq: &seq, shift: h.shiftTS}
	ladder := h.ladder(proto)
	logf("sweep %s %s %s repeat %d: warm-up %s at %.0f/s", t.Name, proto, wl, repeat, h.warmup, ladder[0])
	wr := loop.run(ctx, ladder[0], h.warmup, 0)
	s.AcceptedTotal += int64(wr.AcceptedItems)
	var storedBase float64
	if t.stored != nil {
		time.Sleep(500 * time.Millisecond)
		storedBase = t.stored()
	}
	fails := 0
	for _, rate := range ladder {
		if ctx.Err() != nil || p.exited() {
			break
		}
		cpu0, t0 := p.cpuSeconds(), time.Now()
		var fsync0, write0, sched0 map[float64]float64
		if t.Name == "meshlens" {
			fsync0, write0 = scrapeBuckets(selfMetrics, "meshlens_tracestore_wal_fsync_seconds"), scrapeBuckets(selfMetrics, "meshlens_tracestore_write_duration_seconds")
			sched0 = scrapeBuckets(selfMetrics, "go_sched_latencies_seconds")
		}
		smp := startSampler(p)
		r := loop.run(ctx, rate, h.stepDur, 0)
		wall := time.Since(t0).Seconds()
		st := Step{Offered: float64(r.OfferedItems) / r.Elapsed.Seconds(), Accepted: float64(r.AcceptedItems) / r.Elapsed.Seconds(),
			P50: Percentile(r.Latencies, 50), P99: Percentile(r.Latencies, 99), Errors: r.Errors, Skipped: r.Skipped,
			CPU: (p.cpuSeconds() - cpu0) / wall}
		storeNote := ""
		if fsync0 != nil {
			var n float64
			st.StoreFsyncP99, n = bucketQuantile(fsync0, scrapeBuckets(selfMetrics, "meshlens_tracestore_wal_fsync_seconds"), 0.99)
			st.StoreWriteP99, _ = bucketQuantile(write0, scrapeBuckets(selfMetrics, "meshlens_tracestore_write_duration_seconds"), 0.99)
			st.StoreFsyncs = n / wall
			st.SchedP99, _ = bucketQuantile(sched0, scrapeBuckets(selfMetrics, "go_sched_latencies_seconds"), 0.99)
			storeNote = fmt.Sprintf(" store: fsync p99 ≤%s (%.0f/s), commit p99 ≤%s; goroutine run-queue wait p99 ≤%s", st.StoreFsyncP99, st.StoreFsyncs, st.StoreWriteP99, st.SchedP99)
		}
		if len(r.Latencies) == 0 {
			st.P99 = time.Hour // nothing acknowledged: never sustained
		}
		if t.stored != nil {
			// The server acknowledges before it stores: count what it stored.
			time.Sleep(300 * time.Millisecond)
			now := t.stored()
			stored := (now - storedBase) / r.Elapsed.Seconds()
			storedBase = now
			st.Accepted = min(st.Accepted, stored)
		}
		st.RSS = smp.finish()
		s.AcceptedTotal += int64(st.Accepted * r.Elapsed.Seconds())
		s.Steps = append(s.Steps, st)
		errNote := ""
		if r.FirstErr != nil {
			errNote = " first error: " + r.FirstErr.Error()
		}
		logf("  offered %8.0f/s accepted %8.0f/s p50 %7s p99 %7s cpu %.2f rss %4d MiB skipped %d errors %d%s%s", st.Offered, st.Accepted,
			st.P50.Round(10*time.Microsecond), st.P99.Round(10*time.Microsecond), st.CPU, st.RSS>>20, st.Skipped, st.Errors, storeNote, errNote)
		if st.Sustained() {
			fails = 0
		} else if fails++; fails >= h.failsToStop() {
			break
		}
	}
	s.finish()
	_, s.PeakRSS = p.memory()
	if p.exited() {
		s.Err = fmt.Sprintf("%s exited during the sweep (see its log)", t.Name)
	}
	p.stop()
	if t.Stores {
		s.Disk = diskBytes(dir)
	}
	logf("  saturation %.0f %s spans/s (%s)", s.SatRate, proto, t.Name)
	return s
}

// alsSweep steps Envoy ALS load (demo.Blast of pre-generated Bookinfo access
// logs) against a server that speaks ALS. Accepted entries are the server's
// own receiver counter; latency is the stream acknowledgement.
func (h *harness) alsSweep(ctx context.Context, t *target, repeat int) sweep {
	s := sweep{Workload: "bookinfo-als", Target: t.Name, Protocol: "als", Repeat: repeat, Sat: -1}
	dir, err := h.newDir(t.Name)
	if err != nil {
		s.Err = err.Error()
		return s
	}
	defer h.removeDir(dir)
	p, err := t.start(ctx, h, dir, "")
	if err != nil {
		s.Err = err.Error()
		if p != nil {
			p.stop()
		}
		return s
	}
	defer p.stop()
	logs := demo.NewMesh(1, time.Now).Pregenerate(20000, 50)
	msgs, entries := 0, 0
	for _, l := range logs {
		msgs += len(l.Messages)
		entries += l.Entries
	}
	perMsg := float64(entries) / float64(msgs)
	metrics := selfMetrics
	accepted := func() float64 {
		return scrape(metrics, "meshlens_receiver_accepted_items_total", `receiver="envoy_als"`)
	}
	if accepted() <= 0 {
		accepted = func() float64 { return scrape(metrics, "meshlens_receiver_accepted_items_total") }
	}
	// Streams of 100 messages, as the existing ALS benchmark uses: Envoy
	// keeps its streams open, and each new stream costs an identifier with
	// the node metadata. The server counts entries as they arrive, so a
	// stream cut off when the step ends loses no count.
	cfg := demo.BlastConfig{Addr: portALS, Streams: 16, Conns: 4}
	ladder := h.ladder("als")
	logf("sweep %s als bookinfo repeat %d: warm-up", t.Name, repeat)
	cfg.Rate, cfg.Duration = ladder[0]/perMsg, h.warmup
	_, _ = demo.Blast(ctx, cfg, logs)
	fails := 0
	for _, rate := range ladder {
		if ctx.Err() != nil || p.exited() {
			break
		}
		a0, cpu0, t0 := accepted(), p.cpuSeconds(), time.Now()
		smp := startSampler(p)
		cfg.Rate, cfg.Duration = rate/perMsg, h.stepDur
		res, err := demo.Blast(ctx, cfg, logs)
		wall := time.Since(t0).Seconds()
		time.Sleep(300 * time.Millisecond)
		acc := accepted() - a0
		st := Step{Offered: rate, Accepted: acc / h.stepDur.Seconds(), P50: res.AckP50, P99: res.AckP99,
			CPU: (p.cpuSeconds() - cpu0) / wall, Errors: int(res.Errors)}
		if err != nil || res.Chunks == 0 {
			st.P99 = time.Hour
		}
		st.RSS = smp.finish()
		s.AcceptedTotal += int64(acc)
		s.Steps = append(s.Steps, st)
		logf("  offered %8.0f/s accepted %8.0f/s ack p50 %7s p99 %7s cpu %.2f rss %4d MiB errors %d", st.Offered, st.Accepted,
			st.P50.Round(10*time.Microsecond), st.P99.Round(10*time.Microsecond), st.CPU, st.RSS>>20, st.Errors)
		if st.Sustained() {
			fails = 0
		} else if fails++; fails >= h.failsToStop() {
			break
		}
	}
	s.finish()
	_, s.PeakRSS = p.memory()
	p.stop()
	logf("  saturation %.0f ALS entries/s (%s)", s.SatRate, t.Name)
	return s
}

// finish derives the saturation figures from the steps.
func (s *sweep) finish() {
	s.Sat = Saturation(s.Steps)
	if s.Sat >= 0 {
		st := s.Steps[s.Sat]
		s.SatRate, s.SatCPU, s.SatRSS = st.Accepted, st.CPU, st.RSS
	}
	for _, st := range s.Steps {
		if st.Sustained() && st.CPU > 0.05 {
			s.PerCPUSecond = max(s.PerCPUSecond, st.Accepted/st.CPU)
		}
	}
	s.LoadAvg = loadAvg()
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

func (h *harness) recordVersions() {
	if b, err := exec.Command("git", "describe", "--always", "--dirty").Output(); err == nil {
		h.versions["meshlens"] = "git " + strings.TrimSpace(string(b))
	}
	for _, kv := range [][2]string{{"jaeger", "jaeger-all-in-one"}, {"hotrod", "hotrod"}, {"otelcol", "otelcol-meshlens-peer"}, {"telemetrygen", "telemetrygen"}} {
		if b, err := os.ReadFile(filepath.Join(h.peers, "stamps", kv[1])); err == nil {
			h.versions[kv[0]] = strings.Fields(string(b))[0]
		}
	}
	for _, pkg := range []string{"prometheus", "victoria-metrics"} {
		if b, err := exec.Command("dpkg-query", "-W", "-f=${Version}", pkg).Output(); err == nil && len(b) > 0 {
			h.versions[pkg] = "Debian " + string(b)
		}
	}
	h.versions["go (harness)"] = runtime.Version()
}

func describeMachine() machine {
	// runtime.NumCPU counts only the CPUs this process may run on (one,
	// under taskset), so count the machine's from /proc/cpuinfo.
	m := machine{CPU: runtime.GOARCH, CPUs: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		n := 0
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				m.CPU = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				n++
			}
		}
		m.CPUs = max(n, 1)
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if f := strings.Fields(strings.SplitN(string(b), "\n", 2)[0]); len(f) >= 2 {
			kb, _ := strconv.ParseFloat(f[1], 64)
			m.MemTotal = fmt.Sprintf("%.1f GiB", kb/(1<<20))
		}
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		m.LoadAvg = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	if n, err := os.ReadFile("/sys/fs/cgroup/cpu.max"); err == nil {
		m.Kernel += ", cgroup cpu.max " + strings.TrimSpace(string(n))
	}
	return m
}

func affinity() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "Cpus_allowed_list:") {
			return strings.TrimSpace(strings.TrimPrefix(l, "Cpus_allowed_list:"))
		}
	}
	return "?"
}

// sample picks up to n refs at random.
func sample(refs []sentRef, n int) []sentRef {
	out := append([]sentRef(nil), refs...)
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	if len(out) > n {
		out = out[:n]
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
	return out
}
