package pebblestore

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/meshlens/meshlens/storage/tracestore"
	"github.com/meshlens/meshlens/storage/tracestore/tracestoretest"
)

// gen produces Istio/Envoy-like traces: 5 spans per trace (ingress,
// productpage, reviews client+server halves sharing an id, ratings), about
// ten tags per span including a unique x-request-id.
type gen struct {
	rng      *rand.Rand
	services []string
	paths    []string
	n        uint64
}

func newGen(seed uint64) *gen {
	g := &gen{rng: rand.New(rand.NewPCG(seed, 1))}
	for i := 0; i < 20; i++ {
		g.services = append(g.services, fmt.Sprintf("svc-%02d", i))
	}
	for i := 0; i < 15; i++ {
		g.paths = append(g.paths, fmt.Sprintf("/api/v1/resource%02d/{id}", i))
	}
	return g
}

const spansPerTrace = 5

// trace appends one trace starting at start to td and returns its id.
func (g *gen) trace(td ptrace.Traces, start time.Time) pcommon.TraceID {
	g.n++
	id := tracestoretest.TraceID(g.rng.Uint64(), g.rng.Uint64())
	reqID := fmt.Sprintf("%016x-%08x", g.rng.Uint64(), g.n)
	chain := []string{g.services[g.rng.IntN(4)], g.services[4+g.rng.IntN(4)], g.services[8+g.rng.IntN(6)], g.services[14+g.rng.IntN(6)]}
	path := g.paths[g.rng.IntN(len(g.paths))]
	method := []string{"GET", "GET", "GET", "POST", "PUT"}[g.rng.IntN(5)]
	status := int64(200)
	if g.rng.IntN(100) == 0 {
		status = 503
	}
	total := time.Duration(1+g.rng.ExpFloat64()*20) * time.Millisecond
	type sp struct {
		svc    string
		id     uint64
		parent uint64
		kind   ptrace.SpanKind
		off    time.Duration
		dur    time.Duration
		peer   string
	}
	ids := []uint64{g.rng.Uint64() | 1, g.rng.Uint64() | 1, g.rng.Uint64() | 1, g.rng.Uint64() | 1}
	spans := []sp{
		{chain[0], ids[0], 0, ptrace.SpanKindServer, 0, total, ""},
		{chain[1], ids[1], ids[0], ptrace.SpanKindServer, total / 10, total * 8 / 10, ""},
		{chain[1], ids[2], ids[1], ptrace.SpanKindClient, total / 5, total / 2, chain[2]},
		{chain[2], ids[2], ids[1], ptrace.SpanKindServer, total/5 + time.Microsecond*50, total/2 - time.Microsecond*100, ""},
		{chain[3], ids[3], ids[2], ptrace.SpanKindServer, total / 4, total / 5, ""},
	}
	for _, s := range spans {
		rs := td.ResourceSpans().AppendEmpty()
		ra := rs.Resource().Attributes()
		ra.PutStr("service.name", s.svc)
		ra.PutStr("net.host.ip", fmt.Sprintf("10.1.%d.%d", len(s.svc), g.rng.IntN(20)))
		ss := rs.ScopeSpans().AppendEmpty()
		ss.Scope().SetName("envoy")
		p := ss.Spans().AppendEmpty()
		p.SetTraceID(id)
		p.SetSpanID(tracestoretest.SpanID(s.id))
		if s.parent != 0 {
			p.SetParentSpanID(tracestoretest.SpanID(s.parent))
		}
		p.SetName(method + " " + path)
		p.SetKind(s.kind)
		st := start.Add(s.off)
		p.SetStartTimestamp(pcommon.NewTimestampFromTime(st))
		p.SetEndTimestamp(pcommon.NewTimestampFromTime(st.Add(s.dur)))
		a := p.Attributes()
		a.PutStr("http.method", method)
		a.PutStr("http.url", "http://"+s.svc+":9080"+path)
		a.PutStr("http.protocol", "HTTP/1.1")
		a.PutInt("http.status_code", status)
		a.PutStr("guid:x-request-id", reqID)
		a.PutStr("node_id", "sidecar~10.1.2.3~"+s.svc+"-v1-7d9f8.default~default.svc.cluster.local")
		a.PutStr("upstream_cluster", "inbound|9080||")
		a.PutStr("user_agent", "curl/8.5.0")
		a.PutStr("component", "proxy")
		a.PutInt("response_size", int64(g.rng.IntN(5000)))
		if s.peer != "" {
			a.PutStr("peer.service", s.peer)
		}
		if s.kind == ptrace.SpanKindServer && s.parent != 0 && s.svc == chain[2] {
			a.PutBool("zipkin.shared", true)
		}
		if status >= 500 {
			p.Status().SetCode(ptrace.StatusCodeError)
		}
	}
	return id
}

func dirSize(dir string) int64 {
	var n int64
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if info, err := e.Info(); err == nil && !e.IsDir() {
			n += info.Size()
		}
	}
	return n
}

// BenchmarkWriteTraces measures write throughput with 32 x GOMAXPROCS
// concurrent writers of 100-span batches: sync=commit fsyncs the WAL
// before each acknowledgement, sync=100ms acknowledges once the commit is
// in the WAL file and fsyncs every 100 ms (the server's default),
// sync=none is Pebble's NoSync (acknowledged from Pebble's buffer).
func BenchmarkWriteTraces(b *testing.B) {
	for _, mode := range []struct {
		name string
		cfg  Config
	}{
		{"commit", Config{}},
		{"100ms", Config{WALSyncInterval: 100 * time.Millisecond}},
		{"none", Config{NoSync: true}},
	} {
		b.Run("sync="+mode.name, func(b *testing.B) {
			b.ReportAllocs()
			s := openTest(b, mode.cfg)
			var batches []ptrace.Traces
			g := newGen(1)
			start := time.Now().Add(-30 * time.Minute)
			for i := 0; i < 64; i++ {
				td := ptrace.NewTraces()
				for j := 0; j < 100/spansPerTrace; j++ {
					g.trace(td, start.Add(time.Duration(i*20+j)*time.Millisecond))
				}
				batches = append(batches, td)
			}
			var next atomic.Int64
			b.ResetTimer()
			cpu0 := cpuTime()
			b.SetParallelism(32) // 32 x GOMAXPROCS writers: a server has many requests in flight
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := next.Add(1)
					if err := s.WriteTraces(context.Background(), batches[i%int64(len(batches))]); err != nil {
						b.Error(err)
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "spans/s")
			// CPU time includes Pebble's background flushes and
			// compactions that ran meanwhile: the cost the server pays.
			b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/1000/float64(b.N*100), "cpu-µs/span")
		})
	}
}

// TestLoad writes MESHLENS_TRACESTORE_LOAD spans (e.g. 1000000) spread over
// MESHLENS_TRACESTORE_LOAD_HOURS hours (default 72, one bucket per hour),
// then reports write throughput, bytes per span after compaction, and
// p50/p99 latencies of GetTrace and of searches. It is a measurement, not a
// check: run it by hand, see docs/tracestore.md.
func TestLoad(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("MESHLENS_TRACESTORE_LOAD"))
	if n == 0 {
		t.Skip("set MESHLENS_TRACESTORE_LOAD=<spans>")
	}
	hours, _ := strconv.Atoi(os.Getenv("MESHLENS_TRACESTORE_LOAD_HOURS"))
	if hours == 0 {
		hours = 72
	}
	dir := os.Getenv("MESHLENS_TRACESTORE_LOAD_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	// MESHLENS_TRACESTORE_LOAD_REUSE=1 skips writing and queries the
	// store already in MESHLENS_TRACESTORE_LOAD_DIR (to profile queries).
	reuse := os.Getenv("MESHLENS_TRACESTORE_LOAD_REUSE") == "1"
	cfg := Config{Dir: dir, RetentionInterval: time.Hour}
	// MESHLENS_TRACESTORE_LOAD_COMPRESSION compares Pebble's presets.
	switch c := os.Getenv("MESHLENS_TRACESTORE_LOAD_COMPRESSION"); c {
	case "":
	case "balanced":
		cfg.compression = func() pebble.DBCompressionSettings { return pebble.DBCompressionBalanced }
	case "good":
		cfg.compression = func() pebble.DBCompressionSettings { return pebble.DBCompressionGood }
	case "fastest":
		cfg.compression = func() pebble.DBCompressionSettings { return pebble.DBCompressionFastest }
	default:
		t.Fatalf("MESHLENS_TRACESTORE_LOAD_COMPRESSION=%q: want balanced, good or fastest", c)
	}
	if v := os.Getenv("MESHLENS_TRACESTORE_LOAD_BLOCK_KB"); v != "" {
		kb, err := strconv.Atoi(v)
		if err != nil || kb <= 0 {
			t.Fatalf("MESHLENS_TRACESTORE_LOAD_BLOCK_KB=%q: want a positive number of KiB", v)
		}
		cfg.blockSize = kb << 10
	}
	// Retention must not drop the oldest buckets when a reuse run comes
	// hours after the write.
	cfg.TTL = time.Duration(hours+24) * time.Hour
	s := openTest(t, cfg)
	ctx := context.Background()
	// The data ends at the write run's clock; a reuse run queries relative
	// to that moment ("last 1 h" must still mean the newest hour of data).
	now := time.Now()
	nowFile := filepath.Join(dir, "load-now.txt")
	if reuse {
		b, err := os.ReadFile(nowFile)
		if err != nil {
			t.Fatalf("reuse: %v (written by the run that filled the store)", err)
		}
		if now, err = time.Parse(time.RFC3339Nano, strings.TrimSpace(string(b))); err != nil {
			t.Fatal(err)
		}
	} else if err := os.WriteFile(nowFile, []byte(now.Format(time.RFC3339Nano)), 0o644); err != nil {
		t.Fatal(err)
	}
	first := now.Add(-time.Duration(hours) * time.Hour)
	traces := n / spansPerTrace
	step := time.Duration(hours) * time.Hour / time.Duration(traces)
	const batchTraces = 200 // 1000 spans per batch
	const writers = 4
	var sample []pcommon.TraceID
	var sampleMu sync.Mutex
	var wg sync.WaitGroup
	var next atomic.Int64
	t0 := time.Now()
	cpu0 := cpuTime()
	for w := 0; w < writers && !reuse; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			g := newGen(uint64(w + 1))
			for {
				b := int(next.Add(1) - 1)
				if b*batchTraces >= traces {
					return
				}
				td := ptrace.NewTraces()
				for j := 0; j < batchTraces; j++ {
					k := b*batchTraces + j
					id := g.trace(td, first.Add(time.Duration(k)*step))
					if k%997 == 0 {
						sampleMu.Lock()
						sample = append(sample, id)
						sampleMu.Unlock()
					}
				}
				if err := s.WriteTraces(ctx, td); err != nil {
					t.Error(err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	if !reuse {
		writeDur := time.Since(t0)
		cpu := cpuTime() - cpu0
		// The generator's own cost, measured alone, is subtracted to give
		// the store's.
		cpuGen0 := cpuTime()
		g := newGen(99)
		for b := 0; b*batchTraces < traces; b++ {
			td := ptrace.NewTraces()
			for j := 0; j < batchTraces; j++ {
				g.trace(td, first)
			}
		}
		gen := cpuTime() - cpuGen0
		spans := float64(traces * spansPerTrace)
		t.Logf("write CPU time %v (generator alone %v): store %.1f µs CPU per span = %.0f spans per CPU-second (the machine is shared: wall-clock throughput depends on load)",
			cpu.Round(time.Millisecond), gen.Round(time.Millisecond), float64((cpu-gen).Microseconds())/spans, spans/(cpu-gen).Seconds())
		t.Logf("wrote %d spans in %v: %.0f spans/s (synced batches of %d spans, %d writers)",
			traces*spansPerTrace, writeDur.Round(time.Millisecond), spans/writeDur.Seconds(), batchTraces*spansPerTrace, writers)
	} else {
		sample = sampleTraceIDs(t, s, 400)
	}

	if err := s.DB().Flush(); err != nil {
		t.Fatal(err)
	}
	t1 := time.Now()
	if err := s.DB().Compact(ctx, []byte{0}, []byte{0xff}, true); err != nil {
		t.Fatal(err)
	}
	keys := countKeys(t, s)
	t.Logf("full compaction %v; sstables %d bytes = %.0f bytes/span; %d keys = %.2f keys/span; directory %d bytes",
		time.Since(t1).Round(time.Millisecond), s.TableBytes(), float64(s.TableBytes())/float64(traces*spansPerTrace),
		keys, float64(keys)/float64(traces*spansPerTrace), dirSize(dir))

	pct := func(d []time.Duration) string {
		slices.Sort(d)
		return fmt.Sprintf("p50 %v p99 %v max %v (n=%d)", d[len(d)/2].Round(time.Microsecond), d[len(d)*99/100].Round(time.Microsecond), d[len(d)-1].Round(time.Microsecond), len(d))
	}
	var lat []time.Duration
	cpu0 = cpuTime()
	for i, id := range sample {
		if i >= 2000 {
			break
		}
		t0 := time.Now()
		tr, err := s.GetTrace(ctx, id)
		lat = append(lat, time.Since(t0))
		if err != nil || tr.Spans.SpanCount() != spansPerTrace {
			t.Fatalf("GetTrace %s: %v", id, err)
		}
	}
	t.Logf("GetTrace over %d buckets: %s, %.0f µs CPU/op", hours, pct(lat), float64((cpuTime()-cpu0).Microseconds())/float64(len(lat)))

	rng := rand.New(rand.NewPCG(9, 9))
	svc := func() string { return fmt.Sprintf("svc-%02d", rng.IntN(20)) }
	queries := []struct {
		name string
		q    func() tracestore.Query
	}{
		{"service, last 1h", func() tracestore.Query { return tracestore.Query{Service: svc(), StartMin: now.Add(-time.Hour)} }},
		{"service, all 72h", func() tracestore.Query { return tracestore.Query{Service: svc()} }},
		{"service+operation", func() tracestore.Query {
			return tracestore.Query{Service: svc(), Operation: "GET /api/v1/resource03/{id}", StartMin: now.Add(-time.Hour)}
		}},
		{"service+tag", func() tracestore.Query {
			return tracestore.Query{Service: svc(), Tags: map[string]string{"http.method": "PUT"}, StartMin: now.Add(-time.Hour)}
		}},
		{"service+tag+minDuration", func() tracestore.Query {
			return tracestore.Query{Service: svc(), Tags: map[string]string{"http.method": "GET"}, DurationMin: 40 * time.Millisecond, StartMin: now.Add(-time.Hour)}
		}},
		{"service+error=true (1%)+duration, 72h", func() tracestore.Query {
			return tracestore.Query{Service: svc(), Tags: map[string]string{"error": "true"}, DurationMin: 10 * time.Millisecond}
		}},
		{"service+minDuration 80ms (rare), 72h", func() tracestore.Query { return tracestore.Query{Service: svc(), DurationMin: 80 * time.Millisecond} }},
		{"x-request-id (unique), 72h", func() tracestore.Query {
			return tracestore.Query{Service: "svc-00", Tags: map[string]string{"guid:x-request-id": "nope"}}
		}},
	}
	for _, qc := range queries {
		var lat []time.Duration
		found := 0
		cpu0 := cpuTime()
		for i := 0; i < 100; i++ {
			q := qc.q()
			t0 := time.Now()
			trs, err := s.FindTraces(ctx, q)
			lat = append(lat, time.Since(t0))
			if err != nil {
				t.Fatal(err)
			}
			found += len(trs)
		}
		t.Logf("FindTraces %-40s %s, %.2f ms CPU/query, %.1f traces/query", qc.name+":", pct(lat),
			float64((cpuTime()-cpu0).Microseconds())/100/1000, float64(found)/100)
	}
	bc := s.DB().Metrics().BlockCache
	t.Logf("block cache after the queries: %d hits, %d misses, %d bytes", bc.Hits, bc.Misses, bc.Size)
	t2 := time.Now()
	cpu0 = cpuTime()
	deps, err := s.GetDependencies(ctx, now, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("GetDependencies 24h: %d links in %v, %v CPU (first call, uncached)", len(deps), time.Since(t2).Round(time.Millisecond), (cpuTime() - cpu0).Round(time.Millisecond))
	t2 = time.Now()
	_, _ = s.GetDependencies(ctx, now, 24*time.Hour)
	t.Logf("GetDependencies 24h again: %v (closed buckets cached)", time.Since(t2).Round(time.Millisecond))
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// countKeys counts every live key of the store.
func countKeys(t *testing.T, s *Store) int {
	it, err := s.DB().NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		n++
	}
	return n
}

// sampleTraceIDs takes up to n trace ids from the locators, spread over
// the key space.
func sampleTraceIDs(t *testing.T, s *Store, n int) []pcommon.TraceID {
	it, err := s.DB().NewIter(&pebble.IterOptions{LowerBound: []byte{pfxLocate}, UpperBound: []byte{pfxLocate + 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var out []pcommon.TraceID
	k := 0
	for ok := it.First(); ok && len(out) < n; ok = it.Next() {
		k++
		if k%997 != 0 {
			continue
		}
		key := it.Key()
		if len(key) != 1+4+16+4 {
			continue
		}
		// Skip buckets retention dropped since the data was written (their
		// locators live until the epoch ends).
		s.mu.RLock()
		_, live := s.buckets[binary.BigEndian.Uint32(key[21:])]
		s.mu.RUnlock()
		if !live {
			continue
		}
		var id pcommon.TraceID
		copy(id[:], key[5:21])
		out = append(out, id)
	}
	return out
}
