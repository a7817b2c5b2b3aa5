package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/prometheus/common/model"
	"google.golang.org/grpc"

	"github.com/meshlens/meshlens/storage/remotewrite"
	"github.com/meshlens/meshlens/storage/tracestore"
)

// Mode is the part of meshlens a process runs (docs/scaleout.md).
type Mode string

// Modes, one per command of the binary.
const (
	// ModeAll runs everything in one process: receivers, processors,
	// embedded storage, query APIs and UI (`meshlens serve`).
	ModeAll Mode = "serve"
	// ModeCollector receives and aggregates, remote-writes every series
	// with a collector label and serves no queries (`meshlens collector`).
	ModeCollector Mode = "collector"
	// ModeQuery serves the query APIs and UI from shared storage and
	// receives nothing (`meshlens query`).
	ModeQuery Mode = "query"
)

// CollectorLabel is the external label a collector adds to every series it
// remote-writes, so that the series of several collectors stay apart in the
// shared store; every meshlens query sums it away.
const CollectorLabel = "collector"

// CollectorConfig names a collector.
type CollectorConfig struct {
	// Name is the value of the collector label; empty means the host name
	// (the pod name in Kubernetes), which is unique per replica.
	Name string `yaml:"name"`
}

// RemoteReadConfig is the Prometheus remote-read endpoint of the store the
// collectors write to (Prometheus /api/v1/read, Mimir
// /prometheus/api/v1/read).
type RemoteReadConfig struct {
	URL     string        `yaml:"url"`
	Timeout time.Duration `yaml:"timeout"`
	// Headers are added to every request (X-Scope-OrgID for Mimir, ...).
	Headers map[string]string `yaml:"headers"`
	// BearerTokenFile authenticates the requests.
	BearerTokenFile string `yaml:"bearer_token_file"`
}

// validate checks the endpoint; an empty URL is valid (not configured).
func (c RemoteReadConfig) validate() error {
	if c.URL == "" {
		return nil
	}
	var errs []error
	if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("storage.remote_read.url: %q is not an http(s) URL such as http://prometheus:9090/api/v1/read", c.URL))
	}
	if c.Timeout <= 0 {
		errs = append(errs, errors.New("storage.remote_read.timeout: must be positive"))
	}
	return errors.Join(errs...)
}

// redacted is c as /api/v1/status/config shows it: header values and the
// URL's password may be credentials.
func (c RemoteReadConfig) redacted() RemoteReadConfig {
	if len(c.Headers) > 0 {
		h := make(map[string]string, len(c.Headers))
		for k := range c.Headers {
			h[k] = "<redacted>"
		}
		c.Headers = h
	}
	if u, err := url.Parse(c.URL); err == nil && u.User != nil {
		u.User = url.User(u.User.Username())
		c.URL = u.String()
	}
	return c
}

// ValidateMode checks what mode needs beyond Validate. Settings another
// mode reads are accepted, so collectors and query nodes can share one
// file.
func (c Config) ValidateMode(mode Mode) error {
	var errs []error
	if err := c.Storage.RemoteRead.validate(); err != nil {
		errs = append(errs, err)
	}
	switch mode {
	case ModeAll:
	case ModeCollector:
		if len(c.Storage.RemoteWrite.Targets) == 0 {
			errs = append(errs, errors.New("storage.remote_write.targets: collector mode needs at least one remote-write target, the shared store the query nodes read (e.g. url: http://prometheus:9090/api/v1/write); see docs/scaleout.md"))
		}
		if v, ok := c.Storage.RemoteWrite.ExternalLabels[CollectorLabel]; ok && c.Collector.Name != "" && v != c.Collector.Name {
			errs = append(errs, fmt.Errorf("collector.name: %q contradicts storage.remote_write.external_labels.%s %q; set one of them", c.Collector.Name, CollectorLabel, v))
		}
		if c.Collector.Name != "" && !model.LabelValue(c.Collector.Name).IsValid() {
			errs = append(errs, fmt.Errorf("collector.name: %q is not valid UTF-8", c.Collector.Name))
		}
	case ModeQuery:
		if c.Storage.RemoteRead.URL == "" {
			errs = append(errs, errors.New("storage.remote_read.url: query mode needs the remote-read endpoint of the store the collectors write to (e.g. http://prometheus:9090/api/v1/read); see docs/scaleout.md"))
		}
		if c.Demo.Enabled {
			errs = append(errs, errors.New("demo.enabled (--demo): query mode has no receivers to send demo traffic to; run the demo against a collector"))
		}
	default:
		errs = append(errs, fmt.Errorf("mode %q is not serve, collector or query", mode))
	}
	return errors.Join(errs...)
}

// collectorName is the collector label's value: collector.name, else the
// external label set by hand, else the host name.
func (c Config) collectorName() (string, error) {
	if c.Collector.Name != "" {
		return c.Collector.Name, nil
	}
	if v := c.Storage.RemoteWrite.ExternalLabels[CollectorLabel]; v != "" {
		return v, nil
	}
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "", fmt.Errorf("collector.name is empty and the host name is unknown (%v): set collector.name", err)
	}
	return h, nil
}

// remoteWriteConfig is the remote-write configuration of the mode: a
// collector adds its collector label to the external labels.
func (s *Server) remoteWriteConfig() (remotewrite.Config, error) {
	rw := s.cfg.Storage.RemoteWrite
	if s.flags.Mode != ModeCollector {
		return rw, nil
	}
	name, err := s.cfg.collectorName()
	if err != nil {
		return rw, err
	}
	ext := make(map[string]string, len(rw.ExternalLabels)+1)
	for k, v := range rw.ExternalLabels {
		ext[k] = v
	}
	ext[CollectorLabel] = name
	rw.ExternalLabels = ext
	return rw, nil
}

// httpWhat describes the HTTP listener for the start-up log.
func (s *Server) httpWhat() string {
	switch s.flags.Mode {
	case ModeCollector:
		what := "/metrics, /healthz, /readyz"
		if s.cfg.Receivers.Zipkin.Enabled {
			what += ", zipkin ingest"
		}
		return what
	case ModeQuery:
		return "ui, prometheus api, jaeger api, zipkin api, meshlens api, /metrics (query mode)"
	}
	return "ui, prometheus api, jaeger api, zipkin api, meshlens api, /metrics"
}

// newQueryNode builds `meshlens query`: no receivers, no pipeline, metrics
// read through remote read, traces from Cassandra when configured.
func (s *Server) newQueryNode() error {
	// Nothing is received, so no receiver listener is bound either.
	s.cfg.Receivers = ReceiversConfig{}
	s.cfg.Listen.Zipkin, s.cfg.Listen.OTLPGRPC, s.cfg.Listen.OTLPHTTP = "", "", ""
	q, err := newRemoteQueryable(s.cfg.Storage.RemoteRead)
	if err != nil {
		return err
	}
	s.queryable = q
	if err := s.loadTLS(); err != nil {
		return err
	}
	if err := s.newAuth(); err != nil {
		return err
	}
	var store tracestore.Store
	if s.cfg.Storage.Traces.Backend == "cassandra" {
		if store, err = s.openTraceStore(); err != nil {
			return err
		}
		// The Jaeger remote-storage API serves the shared trace store too.
		s.grpcServer = grpc.NewServer(s.grpcOptions()...)
	}
	return s.buildQueryAPIs(store)
}

// Answer formats of unavailable.
const (
	jaegerError = iota // Jaeger's {"errors":[{"code","msg"}]}, shown by its UI and Grafana
	meshlensError
	textError // Zipkin's API answers errors in plain text
)

// unavailable answers every request with 503 and says why: the data of
// this API lives in another process than a query node.
func unavailable(format int, why string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		var body []byte
		switch format {
		case jaegerError:
			w.Header().Set("Content-Type", "application/json")
			body, _ = json.Marshal(map[string]any{"data": nil, "errors": []map[string]any{{"code": http.StatusServiceUnavailable, "msg": why}}})
		case meshlensError:
			w.Header().Set("Content-Type", "application/json")
			body, _ = json.Marshal(map[string]string{"status": "error", "error": why})
		default:
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			body = []byte(why)
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write(append(body, '\n'))
	}
}

const (
	// noTraceStore is why the trace APIs of a query node answer 503.
	noTraceStore = "no shared trace store is configured: a query node reads traces only from Cassandra (storage.traces.backend: cassandra, the store the collectors write to); see docs/scaleout.md"
	// inMemoryOnly is why the error-record and recommendation APIs of a
	// query node answer 503.
	inMemoryOnly = "not available on a query node: this API is computed from the call records a meshlens serve process receives and keeps in memory; collectors and query nodes keep none (docs/scaleout.md)"
)

// registerNoTraces answers every Jaeger and Zipkin query path with 503.
func registerNoTraces(mux *http.ServeMux) {
	jaeger := unavailable(jaegerError, noTraceStore)
	for _, p := range []string{"/api/services", "/api/services/", "/api/operations", "/api/traces", "/api/traces/", "/api/dependencies", "/api/v3/"} {
		mux.Handle("GET "+p, jaeger)
	}
	mux.Handle("GET /api/v2/", unavailable(textError, noTraceStore))
}
