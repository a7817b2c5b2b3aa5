package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/promql/parser"
	corev1 "k8s.io/api/core/v1"
	sigsyaml "sigs.k8s.io/yaml"
)

// emptyForDemo lists dashboard panels that may legitimately return nothing
// for the built-in Bookinfo demo, keyed "dashboard uid / panel title",
// with the reason. Keep it short: everything else must return data.
var emptyForDemo = map[string]string{}

// TestDashboardQueries loads every shipped Grafana dashboard, resolves its
// template variables from meshlens's label values the way Grafana does,
// and runs every panel query against meshlens with demo traffic: each must
// parse with the PromQL parser and return data.
func TestDashboardQueries(t *testing.T) {
	files, err := filepath.Glob("../deploy/grafana/dashboards/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards: %v", err)
	}
	in := start(t, t.TempDir(), "--demo", "--demo.rate=50", "--processors.metrics.flush_interval=1s")
	waitForDemoTraffic(t, in)

	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboard
		if err := json.Unmarshal(data, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		t.Run(d.UID, func(t *testing.T) {
			values := resolveVariables(t, in, d)
			t.Logf("variables: %v", values)
			for _, p := range d.allPanels() {
				key := d.UID + " / " + p.Title
				for _, tg := range p.Targets {
					expr := grafanaSubstitute(tg.Expr, values)
					if _, err := promqlParser.ParseExpr(expr); err != nil {
						t.Errorf("%s %s: %q does not parse: %v", key, tg.RefID, expr, err)
						continue
					}
					var n int
					var err error
					if tg.Instant {
						n, err = instantQuery(in, expr)
					} else {
						n, err = rangeQuery(in, expr, 2*time.Minute, 15*time.Second)
					}
					switch {
					case err != nil:
						t.Errorf("%s %s: %q: %v", key, tg.RefID, expr, err)
					case n == 0 && emptyForDemo[key] == "":
						t.Errorf("%s %s: %q returned no data", key, tg.RefID, expr)
					case n > 0 && emptyForDemo[key] != "":
						t.Logf("%s is on the empty-for-demo list (%s) but returned data; remove the entry", key, emptyForDemo[key])
					}
				}
			}
		})
	}

	// What Grafana's "Save & test" asks of each provisioned datasource
	// (all on meshlens's HTTP port): Prometheus evaluates 1+1, Jaeger and
	// Zipkin list services, which must include the demo's traced ones.
	t.Run("datasource health", func(t *testing.T) {
		if _, err := instantQuery(in, "1+1"); err != nil {
			t.Errorf("prometheus: 1+1: %v", err)
		}
		for path, field := range map[string]string{"/api/services": "data", "/api/v2/services": ""} {
			resp, err := http.Get(in.url(path))
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var services []string
			if field == "" {
				err = json.Unmarshal(raw, &services)
			} else {
				var body map[string]json.RawMessage
				if err = json.Unmarshal(raw, &body); err == nil {
					err = json.Unmarshal(body[field], &services)
				}
			}
			if resp.StatusCode != 200 || err != nil || !slices.ContainsFunc(services, func(s string) bool { return strings.HasPrefix(s, "productpage") }) {
				t.Errorf("GET %s: %s, services %v (%v): %.200s", path, resp.Status, services, err, raw)
			}
		}
	})

	// The trace-to-metrics links of the provisioned trace datasources: a
	// span of productpage opens these queries, with $__tags replaced by
	// the span's tags mapped to labels (service.name -> service_name).
	t.Run("tracesToMetrics", func(t *testing.T) {
		data, err := os.ReadFile("../deploy/grafana/provisioning/datasources/meshlens.yaml")
		if err != nil {
			t.Fatal(err)
		}
		var prov struct {
			Datasources []struct {
				Name     string `json:"name"`
				JSONData struct {
					TracesToMetrics struct {
						Queries []struct {
							Name  string `json:"name"`
							Query string `json:"query"`
						} `json:"queries"`
					} `json:"tracesToMetrics"`
				} `json:"jsonData"`
			} `json:"datasources"`
		}
		if err := sigsyaml.Unmarshal(data, &prov); err != nil {
			t.Fatal(err)
		}
		// The span's service.name as Istio's proxies report it
		// (productpage.default), taken from what meshlens stored.
		resp, err := http.Get(in.url("/api/v1/label/service_name/values"))
		if err != nil {
			t.Fatal(err)
		}
		var names struct {
			Data []string `json:"data"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&names)
		resp.Body.Close()
		i := slices.IndexFunc(names.Data, func(s string) bool { return strings.HasPrefix(s, "productpage") })
		if i < 0 {
			t.Fatalf("no span-derived series for productpage: service_name values %v", names.Data)
		}
		tags := fmt.Sprintf("service_name=%q", names.Data[i])
		var n int
		for _, ds := range prov.Datasources {
			for _, q := range ds.JSONData.TracesToMetrics.Queries {
				n++
				// $$ is the provisioning file's escape for a literal $.
				expr := strings.ReplaceAll(q.Query, "$$__tags", tags)
				if _, err := promqlParser.ParseExpr(expr); err != nil {
					t.Errorf("%s %q: %v", ds.Name, q.Name, err)
					continue
				}
				res, err := instantQuery(in, expr)
				if err != nil || res == 0 {
					t.Errorf("%s %q: %s returned %d series (%v); span-derived metrics come from traces", ds.Name, q.Name, expr, res, err)
				}
			}
		}
		if n == 0 {
			t.Error("no tracesToMetrics queries provisioned")
		}
	})
}

// TestGrafanaServiceGraph sends the queries Grafana's Service Graph view
// sends to its Prometheus datasource (Tempo datasource, serviceMap) and
// checks that they draw the Bookinfo topology from access-log traffic
// alone.
func TestGrafanaServiceGraph(t *testing.T) {
	// Trace receivers off: the graph must come from access logs alone.
	in := start(t, t.TempDir(), "--demo", "--demo.rate=50", "--processors.metrics.flush_interval=1s",
		"--receivers.zipkin.enabled=false", "--receivers.otlp.enabled=false", "--receivers.jaeger.enabled=false")
	waitForDemoTraffic(t, in)
	// Grafana first checks that the series exist at all.
	resp, err := http.Get(in.url("/api/v1/labels?" + url.Values{"match[]": {
		`{__name__=~"traces_service_graph_request_server_seconds_sum|traces_service_graph_request_total|traces_service_graph_request_failed_total"}`}}.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	var labels struct {
		Data []string `json:"data"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&labels)
	resp.Body.Close()
	if !slices.Contains(labels.Data, "client") || !slices.Contains(labels.Data, "server") {
		t.Fatalf("service-graph series have labels %v, want client and server", labels.Data)
	}
	edges := map[string]bool{}
	for _, metric := range []string{"traces_service_graph_request_server_seconds_sum", "traces_service_graph_request_total", "traces_service_graph_request_failed_total"} {
		expr := fmt.Sprintf("sum by (client, server) (rate(%s[5m]))", metric)
		res := in.query(expr)
		if len(res) == 0 && metric != "traces_service_graph_request_failed_total" {
			t.Errorf("%s returned nothing", expr)
		}
		if metric == "traces_service_graph_request_total" {
			for _, s := range res {
				edges[s.Metric["client"]+" -> "+s.Metric["server"]] = true
			}
		}
	}
	for _, e := range []string{"istio-ingressgateway -> productpage", "productpage -> details", "productpage -> reviews", "reviews -> ratings", "ratings -> mongodb"} {
		if !edges[e] {
			t.Errorf("service graph has no edge %s; edges: %v", e, sortedKeys(edges))
		}
	}
	// The p-quantile Grafana shows on edges.
	if res := in.query(`histogram_quantile(0.9, sum by (client, server, le) (rate(traces_service_graph_request_server_seconds_bucket[5m])))`); len(res) == 0 {
		t.Error("no service-graph latency quantile")
	}
}

// waitForDemoTraffic waits until Bookinfo traffic has been aggregated long
// enough for 1m rates (and the 5m windows Kiali and Grafana use) to hold
// several points.
func waitForDemoTraffic(t *testing.T, in *instance) {
	t.Helper()
	eventually(t, 60*time.Second, "demo traffic in istio_requests_total", func() (bool, string) {
		res := in.query(`sum(rate(istio_requests_total{destination_service_name="ratings"}[1m]))`)
		return len(res) == 1 && res[0].float(t) > 0, fmt.Sprint(res)
	})
	time.Sleep(20 * time.Second)
}

type dashboard struct {
	UID        string           `json:"uid"`
	Panels     []dashboardPanel `json:"panels"`
	Templating struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Multi      bool            `json:"multi"`
			IncludeAll bool            `json:"includeAll"`
		} `json:"list"`
	} `json:"templating"`
}

type dashboardPanel struct {
	Title   string `json:"title"`
	Type    string `json:"type"`
	Targets []struct {
		RefID   string `json:"refId"`
		Expr    string `json:"expr"`
		Instant bool   `json:"instant"`
	} `json:"targets"`
	Panels []dashboardPanel `json:"panels"`
}

func (d dashboard) allPanels() []dashboardPanel {
	var out []dashboardPanel
	var walk func([]dashboardPanel)
	walk = func(ps []dashboardPanel) {
		for _, p := range ps {
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			out = append(out, p)
		}
	}
	walk(d.Panels)
	return out
}

var labelValuesRE = regexp.MustCompile(`^label_values\((.*?)(?:,\s*)?(\w+)\)$`)

// preferred picks, among a variable's values, the one a person looking at
// Bookinfo would pick, so that the test looks at a busy service.
var preferred = []string{"default", "reviews", "productpage", "reviews-v2", "productpage-v1"}

// resolveVariables fills each query variable, in order, from
// /api/v1/label/<label>/values?match[]=<selector> with the previous
// variables substituted, as Grafana's Prometheus datasource does.
func resolveVariables(t *testing.T, in *instance, d dashboard) map[string]string {
	t.Helper()
	values := map[string]string{}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q string
		if json.Unmarshal(v.Query, &q) != nil {
			var o struct {
				Query string `json:"query"`
			}
			_ = json.Unmarshal(v.Query, &o)
			q = o.Query
		}
		m := labelValuesRE.FindStringSubmatch(q)
		if m == nil {
			t.Fatalf("variable %s: %q is not label_values(...)", v.Name, q)
		}
		params := url.Values{}
		if m[1] != "" {
			params.Set("match[]", grafanaSubstitute(m[1], values))
		}
		resp, err := http.Get(in.url("/api/v1/label/" + m[2] + "/values?" + params.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Data []string `json:"data"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		vals := slices.DeleteFunc(body.Data, func(s string) bool { return s == "unknown" })
		if len(vals) == 0 {
			t.Fatalf("variable %s: %s has no values (match %q)", v.Name, m[2], params.Get("match[]"))
		}
		switch {
		case v.IncludeAll:
			// Grafana's "All" for a regex matcher: every value, escaped.
			esc := make([]string, len(vals))
			for i, s := range vals {
				esc[i] = regexp.QuoteMeta(s)
			}
			values[v.Name] = "(" + strings.Join(esc, "|") + ")"
		default:
			values[v.Name] = vals[0]
			for _, p := range preferred {
				if slices.Contains(vals, p) {
					values[v.Name] = p
					break
				}
			}
		}
	}
	return values
}

var grafanaVarRE = regexp.MustCompile(`\$(?:\{(\w+)(?::\w+)?\}|(\w+))|\[\[(\w+)\]\]`)

// grafanaSubstitute replaces template variables with values and Grafana's
// interval variables with what Grafana sends for a short time range.
func grafanaSubstitute(expr string, values map[string]string) string {
	return grafanaVarRE.ReplaceAllStringFunc(expr, func(m string) string {
		sm := grafanaVarRE.FindStringSubmatch(m)
		name := sm[1] + sm[2] + sm[3]
		switch name {
		case "__rate_interval":
			return "1m"
		case "__range", "__interval":
			return "5m"
		case "__range_s":
			return "300"
		}
		if v, ok := values[name]; ok {
			return v
		}
		return m
	})
}

var promqlParser = parser.NewParser(parser.Options{})

// instantQuery runs expr at now and returns the number of series.
func instantQuery(in *instance, expr string) (int, error) {
	return promAPI(in, "/api/v1/query", url.Values{"query": {expr}})
}

// rangeQuery runs expr over the last span at step, as a Grafana time
// series panel or Kiali's metrics page does, and returns the number of
// series.
func rangeQuery(in *instance, expr string, span, step time.Duration) (int, error) {
	now := time.Now()
	return promAPI(in, "/api/v1/query_range", url.Values{
		"query": {expr},
		"start": {fmt.Sprint(now.Add(-span).Unix())},
		"end":   {fmt.Sprint(now.Unix())},
		"step":  {fmt.Sprint(int(step.Seconds()))},
	})
}

func promAPI(in *instance, path string, params url.Values) (int, error) {
	resp, err := http.PostForm(in.url(path), params)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return 0, fmt.Errorf("decode: %w", err)
	}
	if body.Status != "success" {
		return 0, fmt.Errorf("%s", body.Error)
	}
	return len(body.Data.Result), nil
}

func sortedKeys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestDeployConfigMapsStart runs the real binary with the meshlens.yaml of
// each shipped Kubernetes ConfigMap (listeners and data directory moved to
// loopback and a temp dir by flags, as the pod's own paths do not exist
// here). For the scaled-out collectors it also plays the init container:
// __POD_NAME__ becomes a pod name and the remote-write URL a local
// receiver, which must then receive meshlens's series carrying the
// collector label.
func TestDeployConfigMapsStart(t *testing.T) {
	configMap := func(path, key string) string {
		t.Helper()
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var cm corev1.ConfigMap
		if err := sigsyaml.Unmarshal(data, &cm); err != nil {
			t.Fatal(err)
		}
		if cm.Data[key] == "" {
			t.Fatalf("%s has no key %s", path, key)
		}
		return cm.Data[key]
	}
	write := func(content string) string {
		f := filepath.Join(t.TempDir(), "meshlens.yaml")
		if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}

	t.Run("all-in-one", func(t *testing.T) {
		cfg := configMap("../deploy/kubernetes/overlays/all-in-one/configmap.yaml", "meshlens.yaml")
		// No cluster here: the in-cluster identity resolver stays off.
		in := start(t, t.TempDir(), "--config", write(cfg), "--processors.kubernetes.enabled=false")
		in.stop()
	})

	t.Run("scaled-out", func(t *testing.T) {
		var mu sync.Mutex
		collectors := map[string]int{}
		rw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			raw, err := snappy.Decode(nil, body)
			var req prompb.WriteRequest
			if err == nil {
				err = req.Unmarshal(raw)
			}
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			mu.Lock()
			for _, ts := range req.Timeseries {
				for _, l := range ts.Labels {
					if l.Name == "collector" {
						collectors[l.Value]++
					}
				}
			}
			mu.Unlock()
			w.WriteHeader(http.StatusNoContent)
		}))
		defer rw.Close()

		tmpl := configMap("../deploy/kubernetes/overlays/scaled-out/configmap.yaml", "meshlens.yaml.tmpl")
		// What the init container's sed does, plus the local receiver.
		cfg := strings.ReplaceAll(tmpl, "__POD_NAME__", "meshlens-collector-7d9f-abcde")
		urlRE := regexp.MustCompile(`url: http://\S+/api/v1/write`)
		if !urlRE.MatchString(cfg) {
			t.Fatal("no remote-write url in the collector template")
		}
		cfg = urlRE.ReplaceAllString(cfg, "url: "+rw.URL+"/api/v1/write")
		start(t, t.TempDir(), "--config", write(cfg), "--processors.kubernetes.enabled=false",
			"--demo", "--demo.rate=20", "--processors.metrics.flush_interval=1s")
		eventually(t, 60*time.Second, "remote-written series labelled collector=<pod name>", func() (bool, string) {
			mu.Lock()
			defer mu.Unlock()
			return collectors["meshlens-collector-7d9f-abcde"] > 0 && len(collectors) == 1, fmt.Sprint(collectors)
		})
	})
}
