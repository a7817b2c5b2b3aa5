package recommend

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// populate fills an engine with a mesh of services and edges as if it had
// seen 7 days of traffic: every edge a full 30-minute window of latency
// slots, every service a week of hourly history and a load profile.
func populate(tb testing.TB, services, edges int, now time.Time) *Engine {
	tb.Helper()
	e, err := New(Config{MaxEdges: 2 * edges, MaxServices: 2 * services, MaxEndpoints: -1, Now: func() time.Time { return now }}, nil, nil)
	if err != nil {
		tb.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	nowSlot := now.UnixNano() / int64(e.cfg.Slot)
	nowHour := now.Unix() / 3600
	name := func(i int) string { return fmt.Sprintf("svc-%04d", i) }
	fill := func(s *series, median float64, perSlot uint32) {
		s.cur, s.first, s.lastSeen = nowSlot, nowSlot-int64(e.slots), nowSlot
		var h Histogram
		for i := range s.ring {
			h.Reset()
			for k := 0; k < 64; k++ {
				h.RecordN(time.Duration(median*math.Exp(0.4*rng.NormFloat64())*float64(time.Millisecond)), perSlot/64)
			}
			sl := &s.ring[i]
			sl.idx = nowSlot - int64(e.slots) + int64(i)
			sl.h.fromDense(&h)
			sl.c = counts{total: h.Count(), success: h.Count(), idem: h.Count()}
			s.winH.Add(&h)
			s.winC.add(&sl.c)
		}
		s.hours = make([]hour, HistoryHours)
		for i := range s.hours {
			s.hours[i] = hour{idx: nowHour - int64(i), reqs: perSlot * 60, peakMin: perSlot + uint32(rng.IntN(int(perSlot)))}
		}
		s.minute.idx = now.Unix() / 60
	}
	seen := map[[2]int]bool{}
	for len(seen) < edges {
		src := rng.IntN(services - 1)
		dst := src + 1 + rng.IntN(min(services-src-1, 50))
		if seen[[2]int{src, dst}] {
			continue
		}
		seen[[2]int{src, dst}] = true
		s := newSeries(e.slots, false)
		fill(s, 5+50*rng.Float64(), 2048)
		e.edges[edgeKey{srcName: name(src), srcNS: "bench", dstName: name(dst), dstNS: "bench"}] = s
	}
	for i := 0; i < services; i++ {
		s := newSeries(e.slots, true)
		fill(s, 20, 4096)
		for b := 100; b < 160; b++ {
			s.profile.minutes[b] = 100
			s.profile.latUs[b] = 100 * 20000 * (1 + math.Max(0, float64(b-150))/3)
		}
		e.svcs[svcKey{name: name(i), ns: "bench", view: viewServer}] = s
	}
	return e
}

func BenchmarkRecomputeAll(b *testing.B) {
	now := time.Date(2026, 11, 9, 12, 0, 0, 0, time.UTC)
	e := populate(b, 1000, 10000, now)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	state := float64(ms.HeapInuse) / (1 << 20)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for b.Loop() {
		e.Recompute(now)
	}
	b.StopTimer()
	// The machine is shared: CPU time per recomputation shows the cost
	// without the wait for a core.
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N)/1e6, "cpu-ms/op")
	b.ReportMetric(state, "MB-heap-state")
	if n := len(e.Recommendations(Filter{Kind: KindTimeout})); n < 9000 {
		b.Fatalf("only %d timeouts recommended for 10,000 edges", n)
	}
}

func BenchmarkConsumeCalls(b *testing.B) {
	now := time.Date(2026, 11, 9, 12, 0, 0, 0, time.UTC)
	e, _ := New(Config{Now: func() time.Time { return now }}, nil, nil)
	rng := rand.New(rand.NewPCG(2, 2))
	calls := make([]model_Call, 1000)
	for i := range calls {
		calls[i] = benchCall(rng, now, i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		_ = e.ConsumeCalls(b.Context(), calls)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(calls)), "ns/call")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
