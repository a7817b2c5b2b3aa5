package main

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
)

// queryResult is the query-latency and disk measurement of one server.
type queryResult struct {
	Target, Workload     string
	Spans                int64 // spans acknowledged (and, for Jaeger, saved) before querying
	IngestSeconds        float64
	ByIDP50, ByIDP99     time.Duration
	ByIDN, ByIDFound     int
	SearchP50, SearchP99 time.Duration
	SearchN, SearchFound int
	// ShiftTimestamps: the stored spans carry their send time rather than
	// the template's; SearchStart/SearchEnd is the window searched (the
	// end of the last search).
	ShiftTimestamps        bool
	SearchStart, SearchEnd time.Time
	Disk                   int64 // apparent bytes of the data directory after stop
	DiskAlloc              int64 // blocks allocated to it (includes pre-allocation)
	DiskEmpty              int64 // same for a server that stored nothing (fixed overhead)
	DiskTraces             int64 // meshlens: <path>/traces only
	QueryErrors            int
	FirstQueryErr          string
	Err                    string
}

// promqlResult is one dashboard query run against meshlens and against the
// TSDBs that received the same samples by remote write.
type promqlResult struct {
	Name, Query string
	Range       bool
	Lat         map[string][2]time.Duration // server -> p50, p99
	Series      map[string]int
}

// queryPhase stores querySpans spans in a fresh t, then measures trace-by-id
// and search latency on its Jaeger query API, stops it and measures its disk.
// With promql set (meshlens) it also forwards meshlens's metrics by remote
// write to Prometheus and VictoriaMetrics and compares dashboard queries.
func (h *harness) queryPhase(ctx context.Context, t *target, wl string, payloads []*payload, promql bool) queryResult {
	q := queryResult{Target: t.Name, Workload: wl, ShiftTimestamps: h.shiftTS}
	dir, err := h.newDir(t.Name + "-query")
	if err != nil {
		q.Err = err.Error()
		return q
	}
	defer h.removeDir(dir)
	var tsdbs []*tsdbPeer
	extra := ""
	if promql {
		tsdbs, extra = h.startTSDBs(ctx)
		defer func() {
			for _, p := range tsdbs {
				p.proc.stop()
			}
		}()
	}
	p, err := t.start(ctx, h, dir, extra)
	if err != nil {
		q.Err = err.Error()
		if p != nil {
			p.stop()
		}
		return q
	}
	defer p.stop()
	snd, err := h.sender("otlp")
	if err != nil {
		q.Err = err.Error()
		return q
	}
	defer snd.Close()
	var (
		mu   sync.Mutex
		refs []sentRef
		seq  atomic.Uint64
	)
	seq.Store(1 << 50)
	loop := &openLoop{snd: snd, payloads: payloads, maxInflight: 8, seq: &seq, shift: h.shiftTS, record: func(r sentRef) {
		mu.Lock()
		refs = append(refs, r)
		mu.Unlock()
	}}
	logf("query phase %s: storing %d spans (OTLP, offered at %s)", t.Name, h.querySpans, map[bool]string{true: fmt.Sprintf("%.0f/s", h.queryRate), false: "the default pace"}[h.queryRate > 0])
	t0 := time.Now()
	ingestStart := time.Now()
	rate := 0.0 // as fast as 8 requests in flight go
	if promql {
		// Spread the ingest over 45 s so that meshlens's 10 s metric flushes
		// leave enough samples for rate(...[1m]) on every server.
		rate = float64(h.querySpans) / 45
		if h.short {
			rate = float64(h.querySpans) / 20
		}
		loop.maxInflight = h.maxInflight
	}
	if h.queryRate > 0 {
		rate, loop.maxInflight = h.queryRate, h.maxInflight
	}
	r := loop.run(ctx, rate, 0, h.querySpans)
	q.IngestSeconds = time.Since(t0).Seconds()
	q.Spans = int64(r.AcceptedItems)
	if t.stored != nil {
		// Wait for the collector queue to drain into storage.
		last := -1.0
		for range 120 {
			time.Sleep(500 * time.Millisecond)
			n := t.stored()
			if n == last {
				break
			}
			last = n
		}
		q.Spans = int64(min(float64(q.Spans), last))
	}
	logf("  %d spans stored in %.1fs", q.Spans, q.IngestSeconds)
	time.Sleep(2 * time.Second)

	// Trace by id: ids recomputed from acknowledged sends.
	var ids [][16]byte
	for _, ref := range sample(refs, 300) {
		for _, tid := range payloads[ref.Payload].IDs {
			ids = append(ids, SentID(tid, ref.Seq))
		}
	}
	rand.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	nByID, nSearch := 300, 100
	if h.short {
		nByID, nSearch = 100, 30
	}
	ids = ids[:min(len(ids), nByID)]
	var byID []time.Duration
	for _, id := range ids {
		lat, n, err := jaegerGet(t.QueryURL + "/api/traces/" + traceIDHex(id))
		if err != nil {
			q.queryErr(err)
			continue
		}
		q.ByIDN++
		if n > 0 {
			q.ByIDFound++
		}
		byID = append(byID, lat)
	}
	q.ByIDP50, q.ByIDP99 = Percentile(byID, 50), Percentile(byID, 99)
	// Search: the Jaeger UI's form (service, limit 20) over the last hour,
	// its default lookback, widened back to the earliest span start
	// actually sent when that is older: shifted spans spread over the whole
	// ingest, which may exceed an hour, and replayed template times lie in
	// the minute the workload was generated, possibly hours ago.
	earliest := sentSince(payloads, refs)
	services := jaegerServices(t.QueryURL)
	var search []time.Duration
	searchStart := time.Now()
	for i := range nSearch {
		// A slow store (Jaeger's memory storage scans every trace) could
		// take many minutes; a minute of searches is enough for a p99.
		if len(services) == 0 || (i >= 20 && time.Since(searchStart) > time.Minute) {
			break
		}
		svc := services[i%len(services)]
		start, end := searchWindow(earliest, time.Now())
		q.SearchStart, q.SearchEnd = start, end
		lat, n, err := jaegerGet(t.QueryURL + "/api/traces?" + url.Values{"service": {svc}, "lookback": {"custom"}, "limit": {"20"},
			"start": {strconv.FormatInt(start.UnixMicro(), 10)}, "end": {strconv.FormatInt(end.UnixMicro(), 10)}}.Encode())
		if err != nil {
			q.queryErr(err)
			continue
		}
		q.SearchN++
		if n > 0 {
			q.SearchFound++
		}
		search = append(search, lat)
	}
	q.SearchP50, q.SearchP99 = Percentile(search, 50), Percentile(search, 99)
	logf("  trace by id p50 %s p99 %s (%d/%d found); search p50 %s p99 %s (%d/%d non-empty, %d services)",
		q.ByIDP50, q.ByIDP99, q.ByIDFound, q.ByIDN, q.SearchP50, q.SearchP99, q.SearchFound, q.SearchN, len(services))
	if promql && len(tsdbs) > 0 {
		h.promqlPhase(ctx, tsdbs, ingestStart)
	}
	p.stop()
	q.Disk, q.DiskAlloc = diskUsage(dir)
	if t.Name == "meshlens" {
		q.DiskTraces = diskBytes(filepath.Join(dir, "traces"))
	}
	q.DiskEmpty = h.emptyDisk(ctx, t)
	logf("  disk %d bytes (%d allocated), %d when empty: %.1f B/span", q.Disk, q.DiskAlloc, q.DiskEmpty, float64(q.Disk-q.DiskEmpty)/float64(max(q.Spans, 1)))
	return q
}

// sentSince is the earliest span start of the acknowledged sends refs (zero
// if none), from the times each was actually stamped with.
func sentSince(payloads []*payload, refs []sentRef) time.Time {
	var earliest time.Time
	for _, ref := range refs {
		first, _ := payloads[ref.Payload].sentWindow(ref.At)
		if earliest.IsZero() || first.Before(earliest) {
			earliest = first
		}
	}
	return earliest
}

// searchWindow is the search range ending at now: the UI's default hour,
// or from earliest (floored to the millisecond) when that is older.
func searchWindow(earliest, now time.Time) (start, end time.Time) {
	start = now.Add(-time.Hour)
	if !earliest.IsZero() && earliest.Before(start) {
		start = earliest.Truncate(time.Millisecond)
	}
	return start, now
}

func (q *queryResult) queryErr(err error) {
	q.QueryErrors++
	if q.FirstQueryErr == "" {
		q.FirstQueryErr = err.Error()
		logf("  query error: %v", err)
	}
}

// emptyDisk starts t with an empty data directory, stops it and returns the
// allocated size of what it left: the fixed cost (pre-allocated WAL and
// chunk files, manifests) that disk per span must not be charged with.
func (h *harness) emptyDisk(ctx context.Context, t *target) int64 {
	dir, err := h.newDir(t.Name + "-empty")
	if err != nil {
		return 0
	}
	defer h.removeDir(dir)
	p, err := t.start(ctx, h, dir, "")
	if p != nil {
		time.Sleep(2 * time.Second)
		p.stop()
	}
	if err != nil {
		return 0
	}
	return diskBytes(dir)
}

// jaegerGet fetches a Jaeger API answer and returns its latency and the
// number of traces in it.
func jaegerGet(u string) (time.Duration, int, error) {
	t0 := time.Now()
	resp, err := http.Get(u)
	if err != nil {
		return 0, 0, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	lat := time.Since(t0)
	if err != nil {
		return 0, 0, err
	}
	if resp.StatusCode == http.StatusNotFound {
		return lat, 0, nil
	}
	if resp.StatusCode != 200 {
		return 0, 0, fmt.Errorf("%s: HTTP %d: %.200s", u, resp.StatusCode, body)
	}
	var v struct {
		Data []json.RawMessage `json:"data"`
	}
	_ = json.Unmarshal(body, &v)
	return lat, len(v.Data), nil
}

func jaegerServices(base string) []string {
	resp, err := http.Get(base + "/api/services")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var v struct {
		Data []string `json:"data"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&v)
	return v.Data
}

// captureHotROD runs Jaeger's HotROD example with its OTLP/HTTP exporter
// pointed at a capturing endpoint in this process, sends n /dispatch requests
// and returns the spans it reported as a workload.
func captureHotROD(ctx context.Context, h *harness, n int) (workload, error) {
	bin := filepath.Join(h.peers, "bin", "hotrod")
	if _, err := os.Stat(bin); err != nil {
		return workload{}, fmt.Errorf("%s not installed (scripts/install-peers.sh)", bin)
	}
	ports := []string{"127.0.0.1:28080", "127.0.0.1:28081", "127.0.0.1:28082", "127.0.0.1:28083"}
	if err := portsFree(ports...); err != nil {
		return workload{}, err
	}
	var mu sync.Mutex
	all := ptrace.NewTraces()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return workload{}, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var rd io.Reader = http.MaxBytesReader(w, r.Body, 32<<20)
		if r.Header.Get("Content-Encoding") == "gzip" {
			gz, err := gzip.NewReader(rd)
			if err != nil {
				http.Error(w, err.Error(), 400)
				return
			}
			rd = gz
		}
		b, err := io.ReadAll(rd)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		req := ptraceotlp.NewExportRequest()
		if err := req.UnmarshalProto(b); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		mu.Lock()
		req.Traces().ResourceSpans().MoveAndAppendTo(all.ResourceSpans())
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := ptraceotlp.NewExportResponse().MarshalProto()
		_, _ = w.Write(out)
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	env := []string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + ln.Addr().String(), "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://" + ln.Addr().String() + "/v1/traces"}
	// The "fix" flags (-D 5ms -M -W 50) remove HotROD's simulated lock
	// contention so the capture is quick; the trace shape is unchanged.
	p, err := startProc("hotrod", 0, env, "", filepath.Join(h.logDir, "hotrod.log"), bin, "all",
		"--frontend-service-hostname=127.0.0.1", "--customer-service-hostname=127.0.0.1",
		"--driver-service-hostname=127.0.0.1", "--route-service-hostname=127.0.0.1",
		"--frontend-service-port=28080", "--customer-service-port=28081", "--driver-service-port=28082", "--route-service-port=28083",
		"--jaeger-ui=http://127.0.0.1:26686", "-D", "5ms", "-M", "-W", "50")
	if err != nil {
		return workload{}, err
	}
	defer p.stop()
	if err := waitReady(ctx, p, "http://127.0.0.1:28080/config", ports...); err != nil {
		return workload{}, err
	}
	customers := []string{"123", "392", "731", "567"}
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			resp, err := http.Get("http://127.0.0.1:28080/dispatch?customer=" + customers[i%4] + "&nonse=" + strconv.Itoa(i))
			if err != nil {
				failed.Add(1)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}()
	}
	wg.Wait()
	p.stop() // flushes HotROD's batch span processors
	time.Sleep(500 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	w := fromPdata(all, "hotrod", fmt.Sprintf("Jaeger HotROD %s: spans captured from %d /dispatch requests (frontend, customer, driver, route, mysql, redis)", h.versions["hotrod"], n))
	if len(w.Traces) == 0 {
		return w, fmt.Errorf("HotROD reported no spans (see %s)", filepath.Join(h.logDir, "hotrod.log"))
	}
	// Keep only the /dispatch traces (HotROD also traces its own start-up).
	var keep []trace
	for _, t := range w.Traces {
		if len(t) >= 10 {
			keep = append(keep, t)
		}
	}
	if len(keep) > 0 {
		w.Traces = keep
	}
	logf("HotROD: %d traces, %d spans captured", len(w.Traces), w.spans())
	return w, nil
}
