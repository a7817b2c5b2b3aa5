package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// tsdbPeer is a Prometheus-API server that receives meshlens's samples by
// remote write.
type tsdbPeer struct {
	name, base string
	proc       *proc
}

// startTSDBs starts Prometheus and VictoriaMetrics (whichever is installed)
// pinned to the server CPU, and returns them with the meshlens configuration
// that remote-writes every stored sample to both.
func (h *harness) startTSDBs(ctx context.Context) ([]*tsdbPeer, string) {
	var out []*tsdbPeer
	cfg := "storage:\n  remote_write:\n    targets:\n"
	if bin := filepath.Join(h.peers, "bin", "prometheus"); fileExists(bin) && portsFree(portPrometheus) == nil {
		dir, _ := h.newDir("prometheus")
		pcfg := filepath.Join(h.workDir, "prometheus.yml")
		_ = os.WriteFile(pcfg, []byte("global:\n  scrape_interval: 1h\nscrape_configs: []\n"), 0o644)
		p, err := startProc("prometheus", h.serverCPU, nil, dir, filepath.Join(h.logDir, "prometheus.log"), bin,
			"--config.file="+pcfg, "--storage.tsdb.path="+dir, "--web.listen-address="+portPrometheus,
			"--web.enable-remote-write-receiver")
		if err == nil {
			err = waitReady(ctx, p, "http://"+portPrometheus+"/-/ready", portPrometheus)
		}
		if err != nil {
			h.note("Prometheus not started: %v", err)
			if p != nil {
				p.stop()
			}
		} else {
			out = append(out, &tsdbPeer{name: "prometheus", base: "http://" + portPrometheus, proc: p})
			cfg += "      - url: http://" + portPrometheus + "/api/v1/write\n        name: prometheus\n"
		}
	} else {
		h.note("Prometheus not installed or its port is busy: PromQL comparison without it")
	}
	if bin := filepath.Join(h.peers, "bin", "victoria-metrics"); fileExists(bin) && portsFree(portVictoria) == nil {
		dir, _ := h.newDir("victoria")
		p, err := startProc("victoria-metrics", h.serverCPU, nil, dir, filepath.Join(h.logDir, "victoria-metrics.log"), bin,
			"-httpListenAddr="+portVictoria, "-storageDataPath="+dir, "-retentionPeriod=1d", "-search.latencyOffset=1s",
			"-search.disableCache")
		if err == nil {
			err = waitReady(ctx, p, "http://"+portVictoria+"/health", portVictoria)
		}
		if err != nil {
			h.note("VictoriaMetrics not started: %v", err)
			if p != nil {
				p.stop()
			}
		} else {
			out = append(out, &tsdbPeer{name: "victoria-metrics", base: "http://" + portVictoria, proc: p})
			cfg += "      - url: http://" + portVictoria + "/api/v1/write\n        name: victoria-metrics\n"
		}
	}
	if len(out) == 0 {
		return nil, ""
	}
	return out, cfg
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// dashboardQueries are the panels of a RED / service-graph dashboard over
// the span-derived metrics (the names Grafana's and Jaeger's SPM read) and
// meshlens's own service scope.
var dashboardQueries = []struct{ name, q string }{
	{"request rate by service", `sum by (service_name) (rate(traces_span_metrics_calls_total{span_kind="SPAN_KIND_SERVER"}[1m]))`},
	{"error ratio by service", `sum by (service_name) (rate(traces_span_metrics_calls_total{status_code="STATUS_CODE_ERROR"}[1m])) / sum by (service_name) (rate(traces_span_metrics_calls_total[1m]))`},
	{"p99 latency by service", `histogram_quantile(0.99, sum by (le, service_name) (rate(traces_span_metrics_duration_milliseconds_bucket[1m])))`},
	{"service graph edges", `sum by (client, server) (rate(traces_service_graph_request_total[1m]))`},
	{"p95 by service (meshlens scope)", `histogram_quantile(0.95, sum by (le, service) (rate(meshlens_service_latency_milliseconds_bucket[1m])))`},
}

// promqlPhase waits until the TSDBs hold what meshlens holds, then runs every
// dashboard query as an instant and as a range query against each server in
// turn and records latency percentiles and series counts.
func (h *harness) promqlPhase(ctx context.Context, tsdbs []*tsdbPeer, from time.Time) {
	meshlens := &tsdbPeer{name: "meshlens", base: "http://" + portQuery}
	servers := append([]*tsdbPeer{meshlens}, tsdbs...)
	// meshlens flushes its aggregates every 10 s; wait for the last flush
	// and for remote write to deliver it.
	time.Sleep(12 * time.Second)
	probe := `sum(traces_span_metrics_calls_total)`
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		now := time.Now()
		want, _, _, err := promQuery(meshlens.base, probe, now, time.Time{})
		synced := err == nil && want > 0
		for _, s := range tsdbs {
			got, _, _, err := promQuery(s.base, probe, now, time.Time{})
			synced = synced && err == nil && got == want
		}
		if synced {
			break
		}
		time.Sleep(2 * time.Second)
	}
	at := time.Now()
	reps := 30
	if h.short {
		reps = 5
	}
	h.res.PromQLNote = fmt.Sprintf("instant queries at the end of ingest; range queries over the %s of ingest with a 15s step; %d runs per query and server, interleaved",
		at.Sub(from).Round(time.Second), reps)
	for _, dq := range dashboardQueries {
		for _, isRange := range []bool{false, true} {
			r := promqlResult{Name: dq.name, Query: dq.q, Range: isRange, Lat: map[string][2]time.Duration{}, Series: map[string]int{}}
			lats := map[string][]time.Duration{}
			for range reps {
				for _, s := range servers {
					start := time.Time{}
					if isRange {
						start = from
					}
					_, n, lat, err := promQuery(s.base, dq.q, at, start)
					if err != nil {
						continue
					}
					lats[s.name] = append(lats[s.name], lat)
					r.Series[s.name] = n
				}
			}
			for name, l := range lats {
				r.Lat[name] = [2]time.Duration{Percentile(l, 50), Percentile(l, 99)}
			}
			logf("  promql %-34s range=%-5v meshlens p50 %s (%d series) | prometheus p50 %s (%d) | victoria p50 %s (%d)", dq.name, isRange,
				r.Lat["meshlens"][0], r.Series["meshlens"], r.Lat["prometheus"][0], r.Series["prometheus"], r.Lat["victoria-metrics"][0], r.Series["victoria-metrics"])
			h.res.PromQL = append(h.res.PromQL, r)
		}
	}
}

// promQuery runs an instant query at t, or a range query from start to t,
// and returns the first value, the number of series and the latency.
func promQuery(base, q string, t, start time.Time) (float64, int, time.Duration, error) {
	v := url.Values{"query": {q}}
	path := "/api/v1/query"
	if start.IsZero() {
		v.Set("time", strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', 3, 64))
	} else {
		path = "/api/v1/query_range"
		v.Set("start", strconv.FormatFloat(float64(start.UnixMilli())/1000, 'f', 3, 64))
		v.Set("end", strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', 3, 64))
		v.Set("step", "15")
	}
	t0 := time.Now()
	resp, err := http.PostForm(base+path, v)
	if err != nil {
		return 0, 0, 0, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Value  []any   `json:"value"`
				Values [][]any `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	err = json.NewDecoder(resp.Body).Decode(&body)
	lat := time.Since(t0)
	if err != nil {
		return 0, 0, 0, err
	}
	if body.Status != "success" {
		return 0, 0, 0, fmt.Errorf("%s: %s", base, body.Error)
	}
	val := 0.0
	if len(body.Data.Result) > 0 && len(body.Data.Result[0].Value) == 2 {
		s, _ := body.Data.Result[0].Value[1].(string)
		val, _ = strconv.ParseFloat(s, 64)
	}
	return val, len(body.Data.Result), lat, nil
}
