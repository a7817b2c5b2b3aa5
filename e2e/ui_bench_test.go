package e2e

import (
	"fmt"
	"math"
	"slices"
	"testing"
	"time"
)

// The UI performance budgets, measured in real headless Chromium against
// a stub API server (ui_stub_test.go) that answers the topology API with a
// synthetic 200-service mesh and the Jaeger API with a 5,000-span trace:
// the real binary cannot produce either on demand.

// topologyTimes loads the topology page once and returns, in milliseconds
// since navigation start, when the graph data arrived and when the graph
// was drawn (performance marks set by topology.js).
func topologyTimes(t testing.TB, b *browser, base string) (data, drawn float64) {
	t.Helper()
	b.navigate(t, "about:blank")
	b.navigate(t, base+"/#/topology?range=15m")
	b.waitJS(t, "graph drawn", `performance.getEntriesByName('meshlens:graph-rendered').length > 0`, 30*time.Second)
	v := evalJS[[]float64](t, b, `[performance.getEntriesByName('meshlens:graph-data')[0].startTime, performance.getEntriesByName('meshlens:graph-rendered')[0].startTime]`)
	return v[0], v[1]
}

func TestUITopology200Services(t *testing.T) {
	if testing.Short() {
		t.Skip("browser benchmark; skipped in -short")
	}
	stub := &stubAPIs{topology: syntheticMesh(200, 1)}
	base := stub.serve(t)
	b := newBrowser(t, 3*time.Minute)
	dir := artifactDir(t)
	var render []float64
	for range 5 {
		data, drawn := topologyTimes(t, b, base)
		render = append(render, drawn-data)
		t.Logf("navigation -> data %.0f ms, data -> graph drawn %.0f ms", data, drawn-data)
	}
	nodes := evalJS[int](t, b, `document.querySelectorAll('svg.graph .node').length`)
	edges := evalJS[int](t, b, `document.querySelectorAll('svg.graph .edge').length`)
	want := len(stub.topology["edges"].([]map[string]any))
	if nodes != 200 || edges != want {
		t.Errorf("drawn %d nodes, %d edges; want 200, %d", nodes, edges, want)
	}
	b.screenshot(t, dir, "topology-200")
	slices.Sort(render)
	med := render[len(render)/2]
	t.Logf("200-service topology: data -> drawn median %.0f ms, max %.0f ms over %d loads (budget 1000 ms)", med, render[len(render)-1], len(render))
	if med > 1000 {
		t.Errorf("topology of 200 services drawn in %.0f ms after the data arrived (median), budget 1000 ms", med)
	}
	b.checkConsole(t)
}

// scrollFrames scrolls the waterfall by step pixels per animation frame
// for n frames and returns the frame intervals in milliseconds.
const scrollFrames = `new Promise((resolve) => {
  const sc = document.querySelector(%q);
  const out = []; let last = 0, n = 0;
  const step = (ts) => {
    if (last) out.push(ts - last);
    last = ts;
    sc.scrollTop += 48;
    if (sc.scrollTop + sc.clientHeight >= sc.scrollHeight - 1) sc.scrollTop = 0;
    if (++n <= 360) requestAnimationFrame(step); else resolve(out);
  };
  requestAnimationFrame(step);
})`

type frameStats struct {
	frames            int
	p50, p95, max     float64
	dropped, longTask int
}

func (st frameStats) String() string {
	return fmt.Sprintf("%d frames, interval p50 %.1f ms p95 %.1f ms max %.1f ms, %d dropped, %d over 50 ms",
		st.frames, st.p50, st.p95, st.max, st.dropped, st.longTask)
}

// controlPage is a plain scrolling list with no script of its own: the
// same scroll loop on it shows what the (shared, loaded) machine allows.
const controlPage = "data:text/html,<div id=s style='height:540px;overflow:auto'><div style='height:120000px;background:repeating-linear-gradient(%23fff 0 23px,%23ccc 23px 24px)'></div></div>"

func measureScroll(t testing.TB, b *browser, selector string) frameStats {
	t.Helper()
	// Idle baseline: the frame interval of this headless browser.
	idle := evalJS[[]float64](t, b, `new Promise((r) => { const o = []; let l = 0, n = 0; const f = (ts) => { if (l) o.push(ts - l); l = ts; if (++n < 60) requestAnimationFrame(f); else r(o); }; requestAnimationFrame(f); })`)
	slices.Sort(idle)
	period := idle[len(idle)/2]
	d := evalJS[[]float64](t, b, fmt.Sprintf(scrollFrames, selector))
	s := slices.Clone(d)
	slices.Sort(s)
	st := frameStats{frames: len(d), p50: s[len(s)/2], p95: s[len(s)*95/100], max: s[len(s)-1]}
	for _, x := range d {
		// A frame that took k periods dropped k-1 frames.
		if k := int(math.Round(x / period)); k > 1 {
			st.dropped += k - 1
		}
		if x > 50 {
			st.longTask++
		}
	}
	return st
}

func TestUIWaterfall5000Spans(t *testing.T) {
	if testing.Short() {
		t.Skip("browser benchmark; skipped in -short")
	}
	const id = "0000000000000000000000000000b16"
	stub := &stubAPIs{traces: map[string]map[string]any{id: syntheticTrace(id, 5000, "productpage", nil)}}
	base := stub.serve(t)
	b := newBrowser(t, 3*time.Minute)
	dir := artifactDir(t)
	start := time.Now()
	b.navigate(t, base+"/#/trace?id="+id)
	b.waitJS(t, "waterfall", `document.querySelector('.wf-summary[data-spans="5000"]')`, 60*time.Second)
	t.Logf("5,000-span waterfall shown %.0f ms after navigation", float64(time.Since(start).Milliseconds()))
	rows := evalJS[int](t, b, `document.querySelectorAll('.wf-row:not([hidden])').length`)
	if rows == 0 || rows > 200 {
		t.Errorf("%d row elements in the DOM for 5,000 spans; want a virtualised window of tens", rows)
	}
	b.screenshot(t, dir, "waterfall-5000")
	// Alternate the waterfall with the control page so both see the same
	// machine load. The machine is shared, so one round can be disturbed:
	// the budget holds when, in the best of three rounds, the waterfall
	// drops no more than 10% of frames beyond what the control page drops
	// (software raster of text costs more than the control's gradient; on
	// an idle machine both drop none), and the redraw script itself stays
	// under half a frame.
	var drawP95, drawMax float64
	bestExcess := math.MaxInt
	var wfAll, ctlAll frameStats
	for round := range 3 {
		if round > 0 {
			b.navigate(t, base+"/#/trace?id="+id)
			b.waitJS(t, "waterfall", `document.querySelector('.wf-summary[data-spans="5000"]')`, 60*time.Second)
		}
		// Let the parse and first draw's garbage be collected first.
		time.Sleep(time.Second)
		w := measureScroll(t, b, ".wf-scroll")
		perf := evalJS[[]float64](t, b, `(() => { const p = document.querySelector('.wf-scroll').wfPerf; const s = p.samples.slice().sort((a, b) => a - b); return [s[Math.floor(s.length * 0.95)], p.maxMs]; })()`)
		drawP95, drawMax = max(drawP95, perf[0]), max(drawMax, perf[1])
		b.navigate(t, controlPage)
		c := measureScroll(t, b, "#s")
		t.Logf("round %d: waterfall %s; control page %s", round+1, w, c)
		bestExcess = min(bestExcess, w.dropped-c.dropped)
		wfAll.frames += w.frames
		wfAll.dropped += w.dropped
		ctlAll.frames += c.frames
		ctlAll.dropped += c.dropped
	}
	t.Logf("5,000-span waterfall scroll: %d of %d frames dropped (control page with no script: %d of %d); best round %+d frames vs control; redraw script time p95 %.2f ms, max %.2f ms per frame",
		wfAll.dropped, wfAll.frames, ctlAll.dropped, ctlAll.frames, bestExcess, drawP95, drawMax)
	if drawP95 > 8 {
		t.Errorf("waterfall redraw takes %.1f ms per frame (p95), over half of a 16.7 ms frame", drawP95)
	}
	if bestExcess > 360/10 {
		t.Errorf("scrolling the waterfall dropped %d frames more than the control page in its best round, over 10%% of 360 frames", bestExcess)
	}
	b.checkConsole(t)
}

func BenchmarkUITopology200Services(b *testing.B) {
	stub := &stubAPIs{topology: syntheticMesh(200, 1)}
	base := stub.serve(b)
	br := newBrowser(b, 10*time.Minute)
	b.ReportAllocs()
	var total float64
	b.ResetTimer()
	for b.Loop() {
		data, drawn := topologyTimes(b, br, base)
		total += drawn - data
	}
	b.ReportMetric(total/float64(b.N), "ms-to-draw")
}

func BenchmarkUIWaterfall5000Scroll(b *testing.B) {
	const id = "0000000000000000000000000000b16"
	stub := &stubAPIs{traces: map[string]map[string]any{id: syntheticTrace(id, 5000, "productpage", nil)}}
	base := stub.serve(b)
	br := newBrowser(b, 10*time.Minute)
	br.navigate(b, base+"/#/trace?id="+id)
	br.waitJS(b, "waterfall", `document.querySelector('.wf-summary[data-spans="5000"]')`, 60*time.Second)
	var dropped, frames int
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		st := measureScroll(b, br, ".wf-scroll")
		dropped += st.dropped
		frames += st.frames
	}
	b.ReportMetric(float64(dropped)/float64(b.N), "dropped-frames/op")
	b.ReportMetric(float64(frames)/float64(b.N), "frames/op")
}
