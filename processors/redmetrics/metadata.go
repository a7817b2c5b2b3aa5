package redmetrics

import "strings"

// Meta describes one metric family for the Prometheus metadata API.
type Meta struct {
	Type, Help, Unit string
}

var helps = map[string]string{
	"istio_requests_total":                        "Requests, by reporter and source/destination workload (Istio standard metric).",
	"istio_request_duration_milliseconds":         "Request duration in milliseconds (Istio standard metric).",
	"istio_request_bytes":                         "Request size in wire bytes (Istio standard metric).",
	"istio_response_bytes":                        "Response size in wire bytes (Istio standard metric).",
	"istio_tcp_sent_bytes_total":                  "Bytes sent during responses on TCP connections (Istio standard metric).",
	"istio_tcp_received_bytes_total":              "Bytes received during requests on TCP connections (Istio standard metric).",
	"istio_tcp_connections_opened_total":          "TCP connections opened (Istio standard metric).",
	"istio_tcp_connections_closed_total":          "TCP connections closed (Istio standard metric).",
	"traces_service_graph_request_total":          "Requests between two services, counted once per request.",
	"traces_service_graph_request_failed_total":   "Failed requests between two services.",
	"traces_service_graph_request_server_seconds": "Request duration seen by the server, in seconds.",
	"traces_service_graph_request_client_seconds": "Request duration seen by the client, in seconds.",
}

// Metadata describes every family the aggregator writes, keyed by metric
// family name (histograms without their _bucket/_sum/_count suffixes).
func Metadata() map[string]Meta {
	out := map[string]Meta{}
	f := newFamilies(1)
	f.each(func(_ string, l *layout, _ func(func(*entity) bool), _ uint64, _ int) {
		for _, p := range l.parts {
			m := Meta{Type: "counter", Help: helps[p.name]}
			if p.bounds != nil {
				m.Type = "histogram"
			}
			switch {
			case strings.HasSuffix(p.name, "_milliseconds"):
				m.Unit = "milliseconds"
			case strings.HasSuffix(p.name, "_seconds"):
				m.Unit = "seconds"
			case strings.HasSuffix(p.name, "_bytes"), strings.HasSuffix(p.name, "_bytes_total"):
				m.Unit = "bytes"
			}
			if m.Help == "" {
				m.Help = scopeHelp(p.name)
			}
			out[p.name] = m
		}
	})
	return out
}

func scopeHelp(name string) string {
	scope := strings.TrimPrefix(name, "meshlens_")
	for _, suffix := range []string{"calls_total", "errors_total", "latency_milliseconds", "apdex_satisfied_total", "apdex_tolerating_total"} {
		if s, ok := strings.CutSuffix(scope, "_"+suffix); ok {
			what := map[string]string{
				"calls_total":            "Calls",
				"errors_total":           "Failed calls (5xx, non-OK gRPC status or an Envoy response flag)",
				"latency_milliseconds":   "Call latency in milliseconds",
				"apdex_satisfied_total":  "Calls within the Apdex threshold T",
				"apdex_tolerating_total": "Calls within 4T but over T",
			}[suffix]
			return what + " per " + strings.ReplaceAll(s, "_", " ") + ", by the side that observed them."
		}
	}
	return ""
}
