package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// Kiali's PromQL, reproduced from Kiali's graph generator
// (graph/telemetry/istio: the namespace traffic queries and the response
// time and security policy appenders) and its metrics page
// (business/metrics: the labels builder and the rate / histogram queries).
// Kiali asks for a namespace's graph with three request-traffic queries
// (unserviced incoming, incoming by destination telemetry, outgoing by
// source telemetry) and the same for TCP bytes, grouped by the full Istio
// label set, then decorates edges with response times.

const (
	kialiGroupBy = "source_cluster,source_workload_namespace,source_workload,source_canonical_service,source_canonical_revision," +
		"destination_cluster,destination_service_namespace,destination_service,destination_service_name,destination_workload_namespace," +
		"destination_workload,destination_canonical_service,destination_canonical_revision,request_protocol,response_code,grpc_response_status,response_flags"
	kialiTCPGroupBy = "app,source_cluster,source_workload_namespace,source_workload,source_canonical_service,source_canonical_revision," +
		"destination_cluster,destination_service_namespace,destination_service,destination_service_name,destination_workload_namespace," +
		"destination_workload,destination_canonical_service,destination_canonical_revision,response_flags"
	kialiRTGroupBy = "le,source_cluster,source_workload_namespace,source_workload,source_canonical_service,source_canonical_revision," +
		"destination_cluster,destination_service_namespace,destination_service,destination_service_name,destination_workload_namespace," +
		"destination_workload,destination_canonical_service,destination_canonical_revision,request_protocol"
	kialiSecGroupBy = "source_cluster,source_workload_namespace,source_workload,source_canonical_service,source_canonical_revision," +
		"destination_cluster,destination_service_namespace,destination_service,destination_service_name,destination_workload_namespace," +
		"destination_workload,destination_canonical_service,destination_canonical_revision,connection_security_policy"
)

// kialiRequired are the labels without which Kiali skips a series
// ("missing expected TS labels").
var kialiRequired = []string{"source_workload_namespace", "source_workload", "source_canonical_service", "source_canonical_revision",
	"destination_service_namespace", "destination_service", "destination_service_name", "destination_workload_namespace",
	"destination_workload", "destination_canonical_service", "destination_canonical_revision"}

// kialiGraphQueries returns the graph page's queries for namespace ns over
// a duration of secs seconds, by purpose.
func kialiGraphQueries(ns string, secs int) map[string]string {
	q := map[string]string{}
	// Request traffic.
	q["http unserviced incoming"] = fmt.Sprintf(`sum(rate(istio_requests_total{reporter="source",source_workload_namespace!="%s",destination_workload_namespace="unknown",destination_workload="unknown",destination_service=~"^.+\\.%s\\..+$"} [%ds])) by (%s) > 0`, ns, ns, secs, kialiGroupBy)
	q["http incoming"] = fmt.Sprintf(`sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace="%s"} [%ds])) by (%s) > 0`, ns, secs, kialiGroupBy)
	q["http outgoing"] = fmt.Sprintf(`sum(rate(istio_requests_total{reporter="source",source_workload_namespace="%s"} [%ds])) by (%s) > 0`, ns, secs, kialiGroupBy)
	// TCP traffic (Kiali's default rate is total: sent and received bytes).
	for _, m := range []string{"istio_tcp_received_bytes_total", "istio_tcp_sent_bytes_total"} {
		q["tcp incoming "+m] = fmt.Sprintf(`sum(rate(%s{reporter="destination",destination_workload_namespace="%s"} [%ds])) by (%s) > 0`, m, ns, secs, kialiTCPGroupBy)
		q["tcp outgoing "+m] = fmt.Sprintf(`sum(rate(%s{reporter="source",source_workload_namespace="%s"} [%ds])) by (%s) > 0`, m, ns, secs, kialiTCPGroupBy)
	}
	// Response time appender: quantile (default 95) and average.
	q["response time p95 incoming"] = fmt.Sprintf(`histogram_quantile(0.95, sum(rate(istio_request_duration_milliseconds_bucket{reporter=~"destination|waypoint",destination_service_namespace="%s"}[%ds])) by (%s)) > 0`, ns, secs, kialiRTGroupBy)
	q["response time p95 outgoing"] = fmt.Sprintf(`histogram_quantile(0.95, sum(rate(istio_request_duration_milliseconds_bucket{reporter=~"source|waypoint",source_workload_namespace="%s"}[%ds])) by (%s)) > 0`, ns, secs, kialiRTGroupBy)
	avgBy := strings.TrimPrefix(kialiRTGroupBy, "le,")
	q["response time avg incoming"] = fmt.Sprintf(`sum(rate(istio_request_duration_milliseconds_sum{reporter=~"destination|waypoint",destination_service_namespace="%[1]s"}[%[2]ds])) by (%[3]s) / sum(rate(istio_request_duration_milliseconds_count{reporter=~"destination|waypoint",destination_service_namespace="%[1]s"}[%[2]ds])) by (%[3]s) > 0`, ns, secs, avgBy)
	// Security policy appender (mTLS badges on edges).
	q["security policy"] = fmt.Sprintf(`sum(rate(istio_requests_total{reporter="destination",destination_service_namespace="%s"}[%ds])) by (%s) > 0`, ns, secs, kialiSecGroupBy)
	return q
}

// kialiMetricsQueries returns the metrics page's queries for one target
// (labels as Kiali's labels builder writes them) at rate interval ri.
func kialiMetricsQueries(labels, ri string, tcp bool) map[string]string {
	q := map[string]string{}
	if tcp {
		for _, m := range []string{"istio_tcp_received_bytes_total", "istio_tcp_sent_bytes_total", "istio_tcp_connections_opened_total", "istio_tcp_connections_closed_total"} {
			q[m] = fmt.Sprintf(`sum(rate(%s{%s}[%s]))`, m, labels, ri)
		}
		return q
	}
	errs := `response_code=~"^0$|^[4-5]\\d\\d$"`
	q["request_count"] = fmt.Sprintf(`sum(rate(istio_requests_total{%s}[%s]))`, labels, ri)
	q["request_error_count"] = fmt.Sprintf(`sum(rate(istio_requests_total{%[1]s,%[3]s}[%[2]s])) OR sum(rate(istio_requests_total{%[1]s,grpc_response_status=~"^[1-9]$|^1[0-6]$",response_code!~"^0$|^[4-5]\\d\\d$"}[%[2]s]))`, labels, ri, errs)
	for _, h := range []string{"istio_request_duration_milliseconds", "istio_request_bytes", "istio_response_bytes"} {
		q[h+" avg"] = fmt.Sprintf(`sum(rate(%[1]s_sum{%[2]s}[%[3]s])) / sum(rate(%[1]s_count{%[2]s}[%[3]s]))`, h, labels, ri)
		for _, p := range []string{"0.5", "0.95", "0.99"} {
			q[h+" "+p] = fmt.Sprintf(`histogram_quantile(%s, sum(rate(%s_bucket{%s}[%s])) by (le))`, p, h, labels, ri)
		}
	}
	return q
}

// TestKialiQueries runs the PromQL Kiali's graph and metrics pages send
// against meshlens with Bookinfo demo traffic, and checks that the answers
// carry the labels Kiali needs and build the Bookinfo graph.
func TestKialiQueries(t *testing.T) {
	in := start(t, t.TempDir(), "--demo", "--demo.rate=50", "--processors.metrics.flush_interval=1s")
	waitForDemoTraffic(t, in)

	// Kiali reads the Prometheus configuration and flags at start-up.
	for _, p := range []string{"/api/v1/status/config", "/api/v1/status/buildinfo"} {
		resp, err := http.Get(in.url(p))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("GET %s: %s (Kiali reads it at start-up)", p, resp.Status)
		}
	}

	type edge struct{ from, to, protocol string }
	edges := map[edge]bool{}
	for name, expr := range kialiGraphQueries("default", 60) {
		res, err := kialiQuery(in, expr)
		if err != nil {
			t.Errorf("graph %s: %v", name, err)
			continue
		}
		if len(res) == 0 && name != "http unserviced incoming" {
			t.Errorf("graph %s returned nothing: %s", name, expr)
		}
		if !strings.HasPrefix(name, "http incoming") && !strings.HasPrefix(name, "http outgoing") && !strings.HasPrefix(name, "tcp") {
			continue
		}
		for _, s := range res {
			var missing []string
			for _, l := range kialiRequired {
				if s[l] == "" {
					missing = append(missing, l)
				}
			}
			if len(missing) > 0 {
				t.Errorf("graph %s: Kiali skips series %v, missing %v", name, s, missing)
				continue
			}
			proto := s["request_protocol"]
			if strings.HasPrefix(name, "tcp") {
				proto = "tcp"
			} else if s["response_code"] == "" {
				t.Errorf("graph %s: series without response_code: %v", name, s)
			}
			edges[edge{s["source_canonical_service"], s["destination_service_name"], proto}] = true
		}
	}
	for _, want := range []edge{
		{"istio-ingressgateway", "productpage", "http"},
		{"productpage", "details", "http"},
		{"productpage", "reviews", "http"},
		{"reviews", "ratings", "http"},
		{"reviews", "ratings", "grpc"},
		{"ratings", "mongodb", "tcp"},
	} {
		if !edges[want] {
			var got []string
			for e := range edges {
				got = append(got, fmt.Sprintf("%s->%s(%s)", e.from, e.to, e.protocol))
			}
			t.Errorf("Kiali's graph has no edge %s -> %s (%s); edges: %v", want.from, want.to, want.protocol, got)
		}
	}

	// Tracing tab: Kiali's Jaeger HTTP client lists services and searches
	// traces of "<app>.<namespace>", the service name Istio's proxies give
	// their spans.
	start := time.Now().Add(-5 * time.Minute)
	traces := url.Values{"service": {"productpage.default"}, "limit": {"20"},
		"start": {fmt.Sprint(start.UnixMicro())}, "end": {fmt.Sprint(time.Now().UnixMicro())}}
	resp, err := http.Get(in.url("/api/traces?" + traces.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	var tr struct {
		Data []struct {
			TraceID string `json:"traceID"`
			Spans   []json.RawMessage
		} `json:"data"`
	}
	err = json.NewDecoder(resp.Body).Decode(&tr)
	resp.Body.Close()
	if resp.StatusCode != 200 || err != nil || len(tr.Data) == 0 || len(tr.Data[0].Spans) == 0 {
		t.Errorf("Kiali's trace search GET /api/traces?%s: %s, %d traces (%v)", traces.Encode(), resp.Status, len(tr.Data), err)
	}

	// Metrics page: inbound metrics of app reviews, outbound of workload
	// productpage-v1, inbound TCP of mongodb.
	for target, spec := range map[string]struct {
		labels string
		tcp    bool
	}{
		"app reviews inbound":         {`destination_workload_namespace="default",destination_canonical_service="reviews",reporter="destination"`, false},
		"service reviews inbound":     {`reporter="destination",destination_service_name="reviews",destination_service_namespace="default"`, false},
		"workload productpage-v1 out": {`source_workload_namespace="default",source_workload="productpage-v1",reporter="source"`, false},
		"app mongodb inbound tcp":     {`destination_workload_namespace="default",destination_canonical_service="mongodb",reporter="destination"`, true},
	} {
		for name, expr := range kialiMetricsQueries(spec.labels, "1m", spec.tcp) {
			n, err := rangeQuery(in, expr, 5*time.Minute, 15*time.Second)
			switch {
			case err != nil:
				t.Errorf("metrics %s %s: %v", target, name, err)
			case n == 0:
				t.Errorf("metrics %s %s returned nothing: %s", target, name, expr)
			}
		}
	}
}

// kialiQuery runs an instant query and returns each series' labels.
func kialiQuery(in *instance, expr string) ([]map[string]string, error) {
	resp, err := http.PostForm(in.url("/api/v1/query"), url.Values{"query": {expr}})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, err
	}
	if body.Status != "success" {
		return nil, fmt.Errorf("%s", body.Error)
	}
	var out []map[string]string
	for _, r := range body.Data.Result {
		out = append(out, r.Metric)
	}
	return out, nil
}
