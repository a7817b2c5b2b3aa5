package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// Browser tests of the embedded UI in real headless Chromium. They need
// Debian's chromium; see chromiumPath.

const (
	xssScript = `<script>window.__xss=1</script>`
	xssImg    = `<img src=x onerror=window.__xss=1>`
)

// TestUIBookinfo starts the binary with the Bookinfo demo, opens every page
// and checks what is drawn. Screenshots go to e2e/artifacts/TestUIBookinfo.
func TestUIBookinfo(t *testing.T) {
	chromiumPath(t)
	in := start(t, t.TempDir(), "--demo")
	base := uiServer(t, in.url(""))
	dir := artifactDir(t)
	b := newBrowser(t, 8*time.Minute)

	bookinfo := []string{"productpage", "details", "reviews", "ratings"}
	eventually(t, 120*time.Second, "Bookinfo traffic in the metrics", func() (bool, string) {
		res := in.query(`sum by (destination_canonical_service) (rate(istio_requests_total{reporter="destination"}[1m]))`)
		var got []string
		for _, r := range res {
			got = append(got, r.Metric["destination_canonical_service"])
		}
		for _, s := range bookinfo[1:] {
			if !slices.Contains(got, s) {
				return false, fmt.Sprintf("services with traffic: %v", got)
			}
		}
		return true, ""
	})

	t.Run("topology", func(t *testing.T) {
		b.navigate(t, base+"/#/topology?range=5m")
		b.waitJS(t, "graph drawn", `document.body.dataset.graphRendered && document.querySelector('svg.graph')`, 30*time.Second)
		nodes := evalJS[[]string](t, b, `[...document.querySelectorAll('svg.graph .node')].map((n) => n.dataset.name)`)
		for _, s := range bookinfo {
			if !slices.Contains(nodes, s) {
				t.Errorf("graph nodes %v lack %s", nodes, s)
			}
		}
		edges := evalJS[[]string](t, b, `[...document.querySelectorAll('svg.graph .edge')].map((e) => e.dataset.source + '->' + e.dataset.target)`)
		for _, e := range []string{"productpage->details", "productpage->reviews", "reviews->ratings"} {
			if !slices.Contains(edges, e) {
				t.Errorf("graph edges %v lack %s", edges, e)
			}
		}
		labels := evalJS[string](t, b, `[...document.querySelectorAll('svg.graph .edge-label')].map((l) => l.textContent).join(' | ')`)
		if !strings.Contains(labels, "rps") || !strings.Contains(labels, "p95") {
			t.Errorf("edge labels lack rate and p95: %s", labels)
		}
		b.screenshot(t, dir, "01-topology")

		// A node's RED charts, and the selection kept in the URL.
		b.click(t, `svg.graph .node[data-name="reviews"]`)
		b.waitJS(t, "reviews charts", `[...document.querySelectorAll('.panel figure.chart')].some((f) => Number(f.dataset.points) > 0)`, 60*time.Second)
		if hash := evalJS[string](t, b, `location.hash`); !strings.Contains(hash, "sel=n%3A") && !strings.Contains(hash, "sel=n:") {
			t.Errorf("selection not in the URL: %s", hash)
		}
		b.screenshot(t, dir, "02-topology-node-reviews")

		// Deep link: a reload shows the same selection.
		hash := evalJS[string](t, b, `location.hash`)
		b.navigate(t, "about:blank")
		b.navigate(t, base+"/"+hash)
		b.waitJS(t, "panel after reload", `document.querySelector('.panel h2') && document.querySelector('.panel h2').textContent === 'reviews'`, 30*time.Second)
		b.checkConsole(t)
	})

	t.Run("dashboard", func(t *testing.T) {
		// Charts do not refresh by themselves: reload until the rate chart
		// has a few points (one per 10 s flush).
		for deadline := time.Now().Add(90 * time.Second); ; {
			b.navigate(t, "about:blank")
			b.navigate(t, base+"/#/dashboard?service=reviews&range=5m")
			b.waitJS(t, "charts with data", `document.querySelectorAll('figure.chart').length >= 4 && [...document.querySelectorAll('figure.chart')].filter((f) => Number(f.dataset.points) > 0).length >= 3`, 60*time.Second)
			if evalJS[int](t, b, `Number(document.querySelector('figure.chart').dataset.points)`) >= 4 || time.Now().After(deadline) {
				break
			}
			time.Sleep(5 * time.Second)
		}
		pts := evalJS[[]int](t, b, `[...document.querySelectorAll('figure.chart')].map((f) => Number(f.dataset.points))`)
		t.Logf("data points per chart: %v", pts)
		if legend := evalJS[string](t, b, `[...document.querySelectorAll('figure.chart .legend')].map((l) => l.textContent).join(' ')`); !strings.Contains(legend, "p99") || !strings.Contains(legend, "p50") {
			t.Errorf("latency legend lacks percentiles: %s", legend)
		}
		b.waitJS(t, "relations", `[...document.querySelectorAll('.rel table')].length >= 1`, 30*time.Second)

		// Hover reads a value; a drag zooms into a range (start/end in the URL).
		box := evalJS[[]float64](t, b, `(() => { const el = document.querySelector('figure.chart svg'); el.scrollIntoView(); const r = el.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; })()`)
		x0, y, x1 := box[0]+box[2]*0.35, box[1]+box[3]*0.5, box[0]+box[2]*0.9
		if err := chromedp.Do(b.ctx, chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, x1, y)); err != nil {
			t.Fatal(err)
		}
		b.waitJS(t, "hover tooltip", `!document.getElementById('tooltip').hidden && document.getElementById('tooltip').textContent.includes('rate: ')`, 5*time.Second)
		b.screenshot(t, dir, "03-dashboard-reviews")
		if err := chromedp.Do(b.ctx,
			chromedp.MouseEvent(input.DispatchMouseEventTypeMousePressed, x0, y, chromedp.ButtonLeft),
			chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, (x0+x1)/2, y, chromedp.ButtonLeft),
			chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, x1, y, chromedp.ButtonLeft),
			chromedp.MouseEvent(input.DispatchMouseEventTypeMouseReleased, x1, y, chromedp.ButtonLeft)); err != nil {
			t.Fatal(err)
		}
		b.waitJS(t, "zoomed range in the URL", `/[?&]start=\d+/.test(location.hash) && /[?&]end=\d+/.test(location.hash)`, 5*time.Second)
		b.waitJS(t, "charts of the zoomed range", `[...document.querySelectorAll('figure.chart')].some((f) => Number(f.dataset.points) > 0)`, 30*time.Second)
		b.checkConsole(t)
	})

	t.Run("traces", func(t *testing.T) {
		if st := apiStatus(t, in.url(""), "/api/services"); st != http.StatusOK {
			t.Fatalf("the binary does not serve the Jaeger query API (GET /api/services: %d)", st)
		}
		if zipkinAddr(in) == "" {
			t.Fatal("the binary logged no Zipkin listener, so the demo sends no spans")
		}
		// Trace service names may carry the namespace (productpage.default);
		// the page accepts the short name and resolves it.
		eventually(t, 60*time.Second, "demo traces stored", func() (bool, string) {
			var body struct{ Data []string }
			if err := getJSON(in.url("/api/services"), &body); err != nil {
				return false, err.Error()
			}
			return slices.ContainsFunc(body.Data, func(s string) bool { return s == "productpage" || strings.HasPrefix(s, "productpage.") }), fmt.Sprint(body.Data)
		})
		b.navigate(t, base+"/#/traces?service=productpage&range=1h&limit=20")
		b.waitJS(t, "trace results", `document.querySelector('.summary[data-traces]') && document.querySelectorAll('.trace-list li').length > 0`, 60*time.Second)
		n := evalJS[int](t, b, `document.querySelectorAll('.scatter .pt').length`)
		if n == 0 {
			t.Error("the duration scatter plot has no points")
		}
		b.screenshot(t, dir, "04-trace-search")
		id := evalJS[string](t, b, `new URLSearchParams(document.querySelector('.trace-list li a').getAttribute('href').split('?')[1]).get('id')`)
		var tr struct {
			Data []struct {
				Spans []struct{ SpanID string } `json:"spans"`
			}
		}
		// As the waterfall reads it: Envoy's shared client/server span ids kept.
		if err := getJSON(in.url("/api/traces/"+url.PathEscape(id)+"?sharedSpanIDs=keep"), &tr); err != nil || len(tr.Data) != 1 {
			t.Fatalf("GET /api/traces/%s: %v (%d traces)", id, err, len(tr.Data))
		}
		ids := map[string]bool{}
		for _, s := range tr.Data[0].Spans {
			ids[s.SpanID] = true
		}
		b.click(t, `.trace-list li a`)
		b.waitJS(t, "waterfall", `document.querySelector('.wf-summary[data-spans]')`, 30*time.Second)
		spans := evalJS[int](t, b, `Number(document.querySelector('.wf-summary').dataset.spans)`)
		hops := evalJS[int](t, b, `Number(document.querySelector('.wf-summary').dataset.hops)`)
		if spans != len(tr.Data[0].Spans) || hops != len(ids) {
			t.Errorf("waterfall shows %d spans in %d rows; the API has %d spans with %d distinct span ids", spans, hops, len(tr.Data[0].Spans), len(ids))
		}
		b.click(t, `.wf-row.hop`)
		b.waitJS(t, "both sides of a hop", `document.querySelectorAll('.hop-details .span-side').length >= 2`, 10*time.Second)
		b.screenshot(t, dir, "05-trace-waterfall")
		b.checkConsole(t)
	})

	t.Run("recommendations", func(t *testing.T) {
		if st := apiStatus(t, in.url(""), "/api/meshlens/v1/recommendations"); st != http.StatusOK {
			t.Fatalf("the binary does not serve the recommendations API (status %d)", st)
		}
		var count int
		eventually(t, 150*time.Second, "a recommendation", func() (bool, string) {
			var body struct{ Count int }
			if err := getJSON(in.url("/api/meshlens/v1/recommendations"), &body); err != nil {
				return false, err.Error()
			}
			count = body.Count
			return count > 0, "no recommendations yet"
		})
		b.navigate(t, base+"/#/recommendations")
		b.waitJS(t, "recommendations listed", `document.querySelectorAll('article.rec').length > 0`, 30*time.Second)
		b.waitJS(t, "YAML", `document.querySelector('.yaml pre') || document.querySelector('.yaml .state.error')`, 30*time.Second)
		b.screenshot(t, dir, "06-recommendations")
		b.checkConsole(t)
	})

	t.Run("errors", func(t *testing.T) {
		if st := apiStatus(t, in.url(""), "/api/meshlens/v1/errors?service=details"); st != http.StatusOK {
			// The page must say so, not stay blank.
			b.navigate(t, base+"/#/errors?service=details")
			b.waitJS(t, "error shown", `document.querySelector('.error-log .state.error')`, 30*time.Second)
			b.screenshot(t, dir, "07-errors")
			t.Fatalf("the errors API answers %d", st)
		}
		var n int
		eventually(t, 90*time.Second, "error records of details", func() (bool, string) {
			var body struct{ Records []map[string]any }
			if err := getJSON(in.url("/api/meshlens/v1/errors?service=details&code=5xx"), &body); err != nil {
				return false, err.Error()
			}
			n = len(body.Records)
			return n > 0, "no 5xx records yet"
		})
		b.navigate(t, base+"/#/errors?service=details&code=5xx")
		b.waitJS(t, "records listed", `document.querySelectorAll('.errors-table tbody tr').length > 0`, 30*time.Second)
		statuses := evalJS[[]string](t, b, `[...document.querySelectorAll('.errors-table tbody tr')].map((tr) => tr.children[4].textContent)`)
		for _, st := range statuses {
			if !strings.HasPrefix(st, "5") {
				t.Errorf("filter code=5xx shows a record with status %q", st)
				break
			}
		}
		b.screenshot(t, dir, "07-errors")
		b.checkConsole(t)
	})

	t.Run("xss", func(t *testing.T) {
		if zipkinAddr(in) == "" || apiStatus(t, in.url(""), "/api/services") != http.StatusOK {
			t.Fatal("the binary serves no Zipkin receiver or Jaeger query API for the XSS check")
		}
		svc := xssScript + "svc"
		postZipkin(t, "http://"+zipkinAddr(in), svc, xssImg)
		eventually(t, 30*time.Second, "hostile span stored", func() (bool, string) {
			var body struct{ Data []string }
			_ = getJSON(in.url("/api/services"), &body)
			return slices.Contains(body.Data, svc), fmt.Sprint(body.Data)
		})
		checkEscaped(t, b, base, svc, dir)
	})
}

// zipkinAddr is the Zipkin ingest listener's address, from its start-up
// line ("listening http=ADDR (zipkin ..."); the harness names listeners by
// protocol, so it is not under its own name there.
func zipkinAddr(in *instance) string {
	if a := in.addrs["zipkin"]; a != "" {
		return a
	}
	m := regexp.MustCompile(`listening http=(\S+) \(zipkin`).FindStringSubmatch(in.logs())
	if m == nil {
		return ""
	}
	return m[1]
}

func getJSON(u string, v any) error {
	resp, err := http.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// postZipkin sends one Zipkin v2 span whose service name and tag hold markup.
func postZipkin(t *testing.T, base, service, tagValue string) {
	t.Helper()
	now := time.Now().UnixMicro()
	spans := []map[string]any{{
		"traceId": "5af7183fb1d4cf5f5af7183fb1d4cf5f", "id": "6b221d5bc9e6496c", "name": "GET /" + xssScript, "kind": "SERVER",
		"timestamp": now - 5000, "duration": 3000, "localEndpoint": map[string]any{"serviceName": service},
		"tags": map[string]string{"user": tagValue, "error": "true", "http.status_code": "500"},
	}}
	body, _ := json.Marshal(spans)
	resp, err := http.Post(base+"/api/v2/spans", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST zipkin span: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("POST zipkin span: %s", resp.Status)
	}
}

// checkEscaped opens trace search and the waterfall of the hostile
// service's trace and checks the markup is shown as text and never runs.
func checkEscaped(t *testing.T, b *browser, base, svc, dir string) {
	t.Helper()
	noXSS := func(where string) {
		t.Helper()
		if evalJS[bool](t, b, `typeof window.__xss !== 'undefined'`) {
			t.Errorf("%s: injected script ran (window.__xss is set)", where)
		}
		if n := evalJS[int](t, b, `document.querySelectorAll('main img, main script').length`); n != 0 {
			t.Errorf("%s: %d injected img/script elements in the page", where, n)
		}
	}
	b.navigate(t, base+"/#/traces?range=1h&service="+url.QueryEscape(svc))
	b.waitJS(t, "hostile trace listed", `document.querySelectorAll('.trace-list li').length > 0`, 30*time.Second)
	if !evalJS[bool](t, b, `document.querySelector('.trace-list').innerText.includes(`+jsString(xssScript)+`)`) {
		t.Errorf("trace list does not show the service name literally: %q", evalJS[string](t, b, `document.querySelector('.trace-list').innerText`))
	}
	noXSS("trace search")
	b.screenshot(t, dir, "xss-trace-search")
	b.click(t, `.trace-list li a`)
	b.waitJS(t, "waterfall", `document.querySelector('.wf-row')`, 30*time.Second)
	// Keyboard: focus the tree, move down one row, Enter shows its details.
	evalJS[bool](t, b, `(document.querySelector('.wf-scroll').focus(), true)`)
	if err := chromedp.Do(b.ctx, chromedp.KeyEvent(kb.ArrowDown), chromedp.KeyEvent("\r")); err != nil {
		t.Fatal(err)
	}
	b.waitJS(t, "span details by keyboard", `document.querySelector('.wf-details table') && document.querySelector('.wf-row.active').id === (document.querySelectorAll('.wf-row:not([hidden])').length > 1 ? 'wf-1' : 'wf-0')`, 10*time.Second)
	text := evalJS[string](t, b, `document.querySelector('main').innerText`)
	for _, want := range []string{xssScript, xssImg} {
		if !strings.Contains(text, want) {
			t.Errorf("waterfall does not show %q literally", want)
		}
	}
	noXSS("waterfall")
	b.screenshot(t, dir, "xss-waterfall")
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestUIEscapesHostileData serves the UI with stub APIs whose service
// names, span tags, graph nodes and recommendation texts hold markup, and
// checks every page shows it as text and runs none of it.
func TestUIEscapesHostileData(t *testing.T) {
	chromiumPath(t)
	svc := xssScript + "svc"
	const id = "00000000000000000000000000000bad"
	hostileTags := []map[string]any{{"key": "user", "type": "string", "value": xssImg}, {"key": xssScript, "type": "string", "value": "k"}}
	stub := &stubAPIs{
		services: []string{svc, "reviews"},
		traces:   map[string]map[string]any{id: syntheticTrace(id, 9, svc, hostileTags)},
		topology: map[string]any{"level": "service", "nodes": []map[string]any{
			{"id": "default/" + xssScript, "name": xssScript, "namespace": "default", "kind": "service", "inbound": map[string]any{"requestRate": 1, "errorRatio": 0.1}},
			{"id": "default/" + xssImg, "name": xssImg, "namespace": xssImg, "kind": "service", "inbound": map[string]any{"requestRate": 1}},
		}, "edges": []map[string]any{{"id": "e1", "source": "default/" + xssScript, "target": "default/" + xssImg, "protocol": xssImg, "mtls": "mutual_tls", "requestRate": 1, "errorRatio": 0.1, "latencyMs": map[string]any{"p95": 12}}}},
		recs: []map[string]any{{"id": "r1", "kind": "timeout", "service": xssScript, "explanation": xssImg,
			"current": map[string]any{"timeout_ms": 15000, "source": xssImg}, "recommended": map[string]any{"timeout_ms": 900},
			"inconsistencies": []map[string]any{{"kind": "inverted_timeout", "path": []string{xssScript, xssImg}, "detail": xssImg, "have": 1, "need": 2}},
			"evidence":        map[string]any{"samples": 1000, "percentile": 99.9, "marker_ms": 850, "histogram": []map[string]any{{"lower_ms": 0, "upper_ms": 100, "count": 900}, {"lower_ms": 100, "upper_ms": 1000, "count": 100}}}}},
	}
	base := stub.serve(t)
	dir := artifactDir(t)
	b := newBrowser(t, 3*time.Minute)

	checkEscaped(t, b, base, svc, dir)

	b.navigate(t, base+"/#/topology")
	b.waitJS(t, "graph", `document.body.dataset.graphRendered && document.querySelector('svg.graph .node')`, 30*time.Second)
	names := evalJS[string](t, b, `[...document.querySelectorAll('svg.graph .node text.name')].map((n) => n.textContent).join(' ')`)
	if !strings.Contains(names, "<script>") || !strings.Contains(names, "<img") {
		t.Errorf("node names not shown literally: %q", names)
	}
	b.click(t, `svg.graph .edge`)
	b.waitJS(t, "edge panel", `document.querySelector('.panel h2')`, 10*time.Second)
	if got := evalJS[string](t, b, `document.querySelector('.panel h2').textContent`); got != xssScript+" → "+xssImg {
		t.Errorf("edge panel title = %q", got)
	}
	if evalJS[bool](t, b, `typeof window.__xss !== 'undefined' || document.querySelectorAll('main img, main script').length > 0`) {
		t.Error("topology: injected markup ran or became elements")
	}
	b.screenshot(t, dir, "xss-topology")
	// Keyboard: focus a node and press Enter.
	evalJS[bool](t, b, `(document.querySelector('svg.graph .node').focus(), true)`)
	if err := chromedp.Do(b.ctx, chromedp.KeyEvent("\r")); err != nil {
		t.Fatal(err)
	}
	b.waitJS(t, "node panel by keyboard", `document.querySelector('.panel h2') && document.querySelector('.panel h2').textContent === `+jsString(xssScript), 10*time.Second)
	b.click(t, `svg.graph .edge`)
	// The selected edge is in the URL: a reload shows it again.
	hash := evalJS[string](t, b, `location.hash`)
	b.navigate(t, "about:blank")
	b.navigate(t, base+"/"+hash)
	b.waitJS(t, "edge panel after reload", `document.querySelector('.panel h2') && document.querySelector('.panel h2').textContent === `+jsString(xssScript+" → "+xssImg), 10*time.Second)

	b.navigate(t, base+"/#/recommendations")
	b.waitJS(t, "recommendation", `document.querySelector('article.rec')`, 30*time.Second)
	text := evalJS[string](t, b, `document.querySelector('main').innerText`)
	if !strings.Contains(text, xssImg) || !strings.Contains(text, xssScript) {
		t.Errorf("recommendation text not shown literally: %q", text)
	}
	if evalJS[bool](t, b, `typeof window.__xss !== 'undefined' || document.querySelectorAll('main img, main script').length > 0`) {
		t.Error("recommendations: injected markup ran or became elements")
	}
	if n := evalJS[int](t, b, `document.querySelectorAll('.histogram rect.bar').length`); n != 2 {
		t.Errorf("evidence histogram has %d bars, want 2", n)
	}
	b.screenshot(t, dir, "xss-recommendations")
	b.checkConsole(t)
}

// TestUILayout runs the graph layout module in Chromium on graphs with a
// known answer: a tree and a crossing-free DAG must be drawn without
// crossings, cycles and self-loops must not hang it, and every node gets a
// distinct position.
func TestUILayout(t *testing.T) {
	chromiumPath(t)
	base := (&stubAPIs{}).serve(t)
	b := newBrowser(t, 2*time.Minute)
	b.navigate(t, base+"/#/errors")
	type result struct {
		Crossings, Distinct, Nodes, Layers int
	}
	run := func(nodes, edges string) result {
		t.Helper()
		return evalJS[result](t, b, `import('/ui/js/layout.js').then(({layout, crossings}) => {
			const nodes = `+nodes+`.map((id) => ({id}));
			const edges = `+edges+`.map(([source, target]) => ({source, target}));
			const r = layout(nodes, edges);
			const pos = new Set([...r.nodes.values()].map((p) => p.x + ',' + Math.round(p.y)));
			return {Crossings: crossings(r), Distinct: pos.size, Nodes: r.nodes.size, Layers: r.layers};
		})`)
	}
	for _, tc := range []struct {
		name, nodes, edges string
		wantLayers         int
		wantCrossings      int
	}{
		// Edges listed so that the input order alone would cross.
		{"tree", `['a','b','c','d','e','f','g']`, `[['a','b'],['a','c'],['b','g'],['c','d'],['b','e'],['c','f']]`, 3, 0},
		{"bookinfo", `['gw','pp','details','reviews','ratings']`, `[['gw','pp'],['pp','reviews'],['pp','details'],['reviews','ratings']]`, 4, 0},
		{"ladder", `['a1','a2','a3','b1','b2','b3']`, `[['a1','b3'],['a2','b2'],['a3','b1']]`, 2, 0},
		{"cycle and self-loop", `['x','y','z']`, `[['x','y'],['y','z'],['z','x'],['y','y']]`, 3, 0},
		{"long edge", `['a','b','c','d']`, `[['a','b'],['b','c'],['c','d'],['a','d']]`, 4, 0},
	} {
		r := run(tc.nodes, tc.edges)
		if r.Crossings != tc.wantCrossings || r.Layers != tc.wantLayers || r.Distinct != r.Nodes {
			t.Errorf("%s: %+v; want %d crossings, %d layers, every node at its own position", tc.name, r, tc.wantCrossings, tc.wantLayers)
		}
	}
}
