package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// target is one server under test.
type target struct {
	Name      string
	Version   string
	Protocols []string // of "otlp", "zipkin", "als"
	// Stores says whether accepted spans are kept (and can be queried).
	Stores bool
	// QueryURL is the base of a Jaeger-compatible query API, "" if none.
	QueryURL string
	start    func(ctx context.Context, h *harness, dir string, extraConfig string) (*proc, error)
	// stored returns the server's own count of spans kept, for servers that
	// acknowledge before storing (Jaeger queues spans after the ack); nil
	// when an acknowledgement already means stored or processed.
	stored func() float64
}

func (t *target) speaks(proto string) bool {
	for _, p := range t.Protocols {
		if p == proto {
			return true
		}
	}
	return false
}

func allPorts() []string {
	return []string{portOTLPGRPC, portOTLPHTTP, portZipkin, portQuery, portALS, portJaegerAdm, portJaegerCG, portJaegerCH, portJaegerQG, portOtelProm}
}

func (h *harness) targets() []*target {
	jaegerFlags := []string{
		"--collector.zipkin.host-port=" + portZipkin,
		"--collector.otlp.enabled=true",
		"--collector.otlp.grpc.host-port=" + portOTLPGRPC,
		"--collector.otlp.http.host-port=" + portOTLPHTTP,
		"--collector.grpc-server.host-port=" + portJaegerCG,
		"--collector.http-server.host-port=" + portJaegerCH,
		"--query.http-server.host-port=" + portQuery,
		"--query.grpc-server.host-port=" + portJaegerQG,
		"--admin.http.host-port=" + portJaegerAdm,
	}
	jaegerStored := func() float64 {
		return scrape("http://"+portJaegerAdm+"/metrics", "jaeger_collector_spans_saved_by_svc_total", `result="ok"`)
	}
	jaeger := func(storage string) *target {
		return &target{
			Name: "jaeger-" + storage, Version: h.versions["jaeger"], Protocols: []string{"otlp", "zipkin"}, Stores: true,
			QueryURL: "http://" + portQuery,
			stored:   jaegerStored,
			start: func(ctx context.Context, h *harness, dir, _ string) (*proc, error) {
				argv := append([]string{filepath.Join(h.peers, "bin", "jaeger-all-in-one")}, jaegerFlags...)
				if storage == "badger" {
					argv = append(argv, "--badger.ephemeral=false", "--badger.directory-key="+dir+"/key",
						"--badger.directory-value="+dir+"/data", "--badger.span-store-ttl=72h")
				} else {
					argv = append(argv, "--memory.max-traces=10000000")
				}
				env := []string{"SPAN_STORAGE_TYPE=" + storage, "OTEL_TRACES_SAMPLER=always_off"}
				p, err := startProc("jaeger-"+storage, h.serverCPU, env, dir, filepath.Join(h.logDir, "jaeger-"+storage+".log"), argv...)
				if err != nil {
					return nil, err
				}
				return p, waitReady(ctx, p, "http://"+portJaegerAdm+"/", portOTLPGRPC, portZipkin, portQuery)
			},
		}
	}
	meshlens := &target{
		Name: "meshlens", Version: h.versions["meshlens"], Protocols: []string{"otlp", "zipkin", "als"}, Stores: true,
		QueryURL: "http://" + portQuery,
		start: func(ctx context.Context, h *harness, dir, extraConfig string) (*proc, error) {
			argv := []string{h.meshlensBin, "serve", "--storage.path=" + dir,
				"--listen.http=" + portQuery, "--listen.grpc=" + portALS, "--listen.zipkin=" + portZipkin,
				"--listen.otlp_grpc=" + portOTLPGRPC, "--listen.otlp_http=" + portOTLPHTTP, "--log.level=warn"}
			if extraConfig != "" {
				cfg := filepath.Join(dir, "..", filepath.Base(dir)+"-meshlens.yaml")
				if err := os.WriteFile(cfg, []byte(extraConfig), 0o644); err != nil {
					return nil, err
				}
				argv = append(argv, "--config="+cfg)
			}
			p, err := startProc("meshlens", h.serverCPU, nil, dir, filepath.Join(h.logDir, "meshlens.log"), argv...)
			if err != nil {
				return nil, err
			}
			return p, waitReady(ctx, p, "http://"+portQuery+"/readyz", portOTLPGRPC, portZipkin, portALS)
		},
	}
	otelcol := &target{
		Name: "otelcol", Version: h.versions["otelcol"], Protocols: []string{"otlp", "zipkin"},
		start: func(ctx context.Context, h *harness, dir, _ string) (*proc, error) {
			env := []string{"BENCH_OTELCOL_OTLP_GRPC=" + portOTLPGRPC, "BENCH_OTELCOL_OTLP_HTTP=" + portOTLPHTTP,
				"BENCH_OTELCOL_ZIPKIN=" + portZipkin, "BENCH_OTELCOL_PROM=" + portOtelProm}
			p, err := startProc("otelcol", h.serverCPU, env, dir, filepath.Join(h.logDir, "otelcol.log"),
				filepath.Join(h.peers, "bin", "otelcol-meshlens-peer"), "--config="+h.otelcolConfig)
			if err != nil {
				return nil, err
			}
			return p, waitReady(ctx, p, "", portOTLPGRPC, portZipkin, portOtelProm)
		},
	}
	all := map[string]*target{"meshlens": meshlens, "jaeger-badger": jaeger("badger"), "jaeger-memory": jaeger("memory"), "otelcol": otelcol}
	var out []*target
	for _, n := range strings.Split(h.targetList, ",") {
		if t, ok := all[strings.TrimSpace(n)]; ok {
			out = append(out, t)
		} else if n != "" {
			fmt.Fprintf(os.Stderr, "meshlens-benchpeers: unknown target %q ignored\n", n)
		}
	}
	return out
}
