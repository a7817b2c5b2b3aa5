package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"gopkg.in/yaml.v3"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/meshlens/meshlens/demo"
	"github.com/meshlens/meshlens/model"
	"github.com/meshlens/meshlens/pipeline"
	"github.com/meshlens/meshlens/processors/endpoints"
	"github.com/meshlens/meshlens/processors/errorlog"
	"github.com/meshlens/meshlens/processors/identity"
	"github.com/meshlens/meshlens/processors/recommend"
	"github.com/meshlens/meshlens/processors/recommend/xdspush"
	"github.com/meshlens/meshlens/processors/redmetrics"
	"github.com/meshlens/meshlens/processors/spancalls"
	"github.com/meshlens/meshlens/processors/tracesampling"
	"github.com/meshlens/meshlens/query/errorapi"
	"github.com/meshlens/meshlens/query/jaegerapi"
	"github.com/meshlens/meshlens/query/promapi"
	"github.com/meshlens/meshlens/query/recommendapi"
	"github.com/meshlens/meshlens/query/remotestorage"
	"github.com/meshlens/meshlens/query/topology"
	"github.com/meshlens/meshlens/query/zipkinapi"
	"github.com/meshlens/meshlens/receivers/envoyals"
	"github.com/meshlens/meshlens/receivers/envoymetrics"
	"github.com/meshlens/meshlens/receivers/jaeger"
	"github.com/meshlens/meshlens/receivers/meshreport"
	"github.com/meshlens/meshlens/receivers/otlp"
	"github.com/meshlens/meshlens/receivers/zipkin"
	"github.com/meshlens/meshlens/server/security"
	"github.com/meshlens/meshlens/storage/diskguard"
	"github.com/meshlens/meshlens/storage/remotewrite"
	"github.com/meshlens/meshlens/storage/tracestore"
	"github.com/meshlens/meshlens/storage/tracestore/cassandra"
	"github.com/meshlens/meshlens/storage/tracestore/pebblestore"
	"github.com/meshlens/meshlens/ui"
)

// This file is the one registration list: every receiver, processor and API
// meshlens runs is created and wired here, and nowhere else.

// buildProcessors creates the call processors and sinks; it runs before the
// queue exists, which needs them.
func (s *Server) buildProcessors() error {
	var resolvers []identity.IPResolver
	if k := s.cfg.Processors.Kubernetes; k.Enabled {
		var rc *rest.Config
		var err error
		if k.Kubeconfig != "" {
			rc, err = clientcmd.BuildConfigFromFlags("", k.Kubeconfig)
		} else {
			rc, err = rest.InClusterConfig()
		}
		if err != nil {
			return fmt.Errorf("processors.kubernetes: %w", err)
		}
		client, err := kubernetes.NewForConfig(rc)
		if err != nil {
			return fmt.Errorf("processors.kubernetes: %w", err)
		}
		kr, err := identity.NewKubeResolver(client, identity.KubeConfig{ClusterID: k.ClusterID}, s.cfg.Processors.Identity.Naming, s.logger)
		if err != nil {
			return err
		}
		s.kube = kr
		resolvers = append(resolvers, kr)
	}
	if s.cfg.Demo.Enabled {
		// The demo's pods are known, as a cluster's are to the Kubernetes
		// resolver: resolve their IPs the same way.
		var entries []identity.StaticEntry
		for _, p := range demo.NewMesh(s.cfg.Demo.Seed, time.Now).Pods() {
			entries = append(entries, identity.StaticEntry{IP: p.IP, Service: p.App, Namespace: p.Namespace, Instance: p.Name, Version: p.Version})
		}
		sr, err := identity.NewStaticResolver(entries)
		if err != nil {
			return fmt.Errorf("demo identities: %w", err)
		}
		resolvers = append(resolvers, sr)
	}
	id, err := identity.New(s.cfg.Processors.Identity, s.logger.With("component", "identity"), resolvers...)
	if err != nil {
		return err
	}
	ep, err := endpoints.New(s.cfg.Processors.Endpoints, s.reg, s.logger.With("component", "endpoints"))
	if err != nil {
		return err
	}
	s.procs = []pipeline.CallProcessor{id, ep}
	s.sinks = fanout{s.agg}
	if s.flags.Mode == ModeCollector {
		// Error records and recommendations live in this process's memory
		// for its own APIs, which a collector does not serve.
		return nil
	}

	e := s.cfg.Processors.Errors
	s.errors = errorlog.New(errorlog.Config{Capacity: e.Capacity, RatePerSecond: e.RatePerSecond, Burst: e.Burst}, s.tel, s.logger)
	s.sinks = append(s.sinks, s.errors)
	if r := s.cfg.Processors.Recommend; s.recommendationsOn() {
		s.recommend, err = recommend.New(recommend.Config{
			Window: r.Window, RecomputeEvery: r.RecomputeEvery, TargetFalseTimeout: r.TargetFalseTimeout,
		}, s.logger.With("component", "recommend"), s.reg)
		if err != nil {
			return fmt.Errorf("processors.recommendations: %w", err)
		}
		if r.IstioConfigDir != "" {
			cur, err := recommend.LoadIstioDir(r.IstioConfigDir)
			if err != nil {
				return fmt.Errorf("processors.recommendations.istio_config_dir: %w", err)
			}
			if err := s.recommend.SetCurrentConfig(cur); err != nil {
				return fmt.Errorf("processors.recommendations.istio_config_dir: %w", err)
			}
		}
		s.sinks = append(s.sinks, s.recommend)
		if err := s.buildXDSPush(); err != nil {
			return err
		}
	}
	return nil
}

// spanOrigin marks calls derived from spans before they join the queue, so
// the aggregator never counts a request twice when a mesh sends both.
type spanOrigin struct{ next pipeline.CallConsumer }

func (o spanOrigin) ConsumeCalls(ctx context.Context, calls []model.Call) error {
	for i := range calls {
		calls[i].Origin = model.OriginSpan
	}
	return o.next.ConsumeCalls(ctx, calls)
}

// traceFanout derives calls and span metrics from every span, then samples
// and stores. Only the store's answer reaches the client: a span is
// acknowledged once it is durable.
type traceFanout struct {
	derive pipeline.TraceConsumer
	store  pipeline.TraceConsumer
	tel    *pipeline.Telemetry
}

func (f traceFanout) ConsumeTraces(ctx context.Context, td ptrace.Traces) error {
	if err := f.derive.ConsumeTraces(ctx, td); err != nil {
		f.tel.Dropped("spancalls", pipeline.Reason(err), td.SpanCount())
	}
	return f.store.ConsumeTraces(ctx, td)
}

func (s *Server) buildComponents(ctx context.Context) error {
	r := s.cfg.Receivers
	if r.EnvoyALS.Enabled {
		envoyals.New(r.EnvoyALS.Config, s.tenantCalls(s.queue), s.tel, s.logger).Register(s.grpcServer)
	}
	if r.MeshReport.Enabled {
		meshreport.New(meshreport.Config{MaxMetricsPerMessage: r.MeshReport.MaxMetricsPerMessage}, s.tenantCalls(s.queue), s.tel, s.logger).Register(s.grpcServer)
	}
	if r.EnvoyMetrics.Enabled {
		mc := envoymetrics.Config{MaxSeriesPerProxy: r.EnvoyMetrics.MaxSeriesPerProxy, MaxSeriesTotal: r.EnvoyMetrics.MaxSeriesTotal,
			MaxFutureSkew: r.EnvoyMetrics.MaxFutureSkew, MaxSampleAge: r.EnvoyMetrics.MaxSampleAge}
		if !r.EnvoyMetrics.IstioMetricNames {
			mc.CustomNamespaces = []string{} // keep the envoy_istiocustom_ prefix
		}
		envoymetrics.New(mc, s.tenantAppendable(s.app), s.tel, s.logger).Register(s.grpcServer)
	}

	// Traces.
	store, err := s.openTraceStore()
	if err != nil {
		return err
	}
	sampler, err := tracesampling.New(s.cfg.Processors.Sampling, store, s.reg)
	if err != nil {
		return fmt.Errorf("processors.trace_sampling: %w", err)
	}
	s.spans = spancalls.New(spancalls.Config{}, spanOrigin{s.queue}, s.agg, s.tel, s.logger.With("component", "spancalls"))
	var guard diskguard.Guard
	if s.cfg.Storage.Traces.Backend == "pebble" {
		guard = diskguard.Guard{Path: s.cfg.Storage.Path, MinFreeBytes: uint64(max(0, s.cfg.Storage.MinFreeBytes))}
	}
	traces := pipeline.NewTraceLimiter(s.tenantTraces(traceFanout{derive: s.spans, store: diskguard.Traces(sampler, guard, s.logger.With("component", "tracestore")), tel: s.tel}),
		s.cfg.Pipeline.MaxInflightSpanBatches, s.cfg.Pipeline.EnqueueWait)

	zipkinMux := s.extraMux("zipkin")
	if r.Zipkin.Enabled {
		z := zipkin.New(zipkin.Config{MaxRequestBytes: r.Zipkin.MaxRequestBytes}, traces, s.tel, s.logger)
		z.Register(s.mux)
		z.Register(zipkinMux)
	}
	if r.OTLP.Enabled {
		oc := otlp.Config{MaxRequestBytes: r.OTLP.MaxRequestBytes}
		o := otlp.New(oc, traces, s.tel, s.logger)
		o.Register(s.extraMux("otlp_http"))
		opts := append(oc.GRPCServerOptions(), grpc.MaxConcurrentStreams(uint32(s.cfg.Pipeline.MaxConcurrentStreams)))
		opts = append(opts, s.tenantGRPCOptions()...)
		opts = append(opts, grpc.KeepaliveParams(keepaliveParams(s.cfg.Pipeline)))
		if r := s.tls["otlp_grpc"]; r != nil {
			opts = append(opts, grpc.Creds(credentials.NewTLS(r.TLSConfig())))
		}
		s.otlpGRPC = grpc.NewServer(opts...)
		o.RegisterGRPC(s.otlpGRPC)
	}
	if r.Jaeger.Enabled {
		jaeger.New(jaeger.Config{MaxSpansPerBatch: r.Jaeger.MaxSpansPerBatch}, traces, s.tel, s.logger).Register(s.grpcServer)
	}

	if s.flags.Mode == ModeCollector {
		if s.cfg.Storage.Traces.Backend == "pebble" {
			s.logger.Warn("collector mode: spans go to this collector's own Pebble store, which no query node reads; use storage.traces.backend: cassandra (docs/scaleout.md)")
		}
		return nil
	}
	return s.buildQueryAPIs(store)
}

// buildQueryAPIs registers the query APIs and the UI. store is nil on a
// query node without a shared trace store: the trace APIs then answer 503.
func (s *Server) buildQueryAPIs(store tracestore.Store) error {
	prom := promapi.New(promapi.Options{
		Queryable:    security.LimitSeries(s.tenantQueryable(s.queryable), s.cfg.Query.MaxSeries),
		Logger:       s.logger.With("component", "promapi"),
		Registerer:   s.reg,
		QueryTimeout: s.cfg.Query.Timeout,
		MaxSamples:   s.cfg.Query.MaxSamples,
		BuildInfo:    buildInfo(),
		Metadata: func() map[string][]promapi.MetadataEntry {
			out := map[string][]promapi.MetadataEntry{}
			for name, m := range redmetrics.Metadata() {
				out[name] = []promapi.MetadataEntry{{Type: m.Type, Help: m.Help, Unit: m.Unit}}
			}
			return out
		},
		ConfigYAML: func() string {
			out, _ := yaml.Marshal(redacted(s.cfg))
			return string(out)
		},
	})
	prom.Register(s.mux)
	s.closers = append(s.closers, func(context.Context) error { return prom.Close() })
	topology.New(topology.Options{
		Engine:    prom.Engine(),
		Queryable: s.tenantQueryable(s.queryable),
		Logger:    s.logger.With("component", "topology"),
	}).Register(s.mux)
	if store != nil {
		jaegerapi.New(s.tenantTraceReader(store), s.logger).WithLimits(s.traceSearchLimits()).Register(s.mux)
		// Jaeger v2 can use meshlens as its storage (remote storage API v2).
		remotestorage.New(s.tenantTraceReader(store), s.logger).Register(s.grpcServer)
		zk := zipkinapi.New(s.tenantTraceReader(store), autocompleteKeys, s.logger).WithLimits(s.traceSearchLimits())
		zk.Register(s.mux)
		zk.Register(s.extraMux("zipkin"))
	} else {
		registerNoTraces(s.mux)
	}
	if s.errors != nil {
		errorapi.New(s.tenantErrors(s.errors), s.logger).Register(s.mux)
	} else {
		s.mux.Handle("GET /api/meshlens/v1/errors", unavailable(meshlensError, inMemoryOnly))
	}
	if s.recommend != nil {
		recommendapi.New(s.recommend, s.logger).Register(s.mux)
		s.mux.Handle("GET "+xdsPushPath, xdspush.Handler(s.xds))
	} else if s.flags.Mode == ModeQuery {
		s.mux.Handle("GET "+recommendapi.Base+"/", unavailable(meshlensError, inMemoryOnly))
		s.mux.Handle("GET "+recommendapi.Base, unavailable(meshlensError, inMemoryOnly))
	}
	ui.Register(s.mux)
	return nil
}

// redacted is cfg as /api/v1/status/config shows it: remote-write header
// values and URL passwords may be credentials and are replaced.
func redacted(cfg Config) Config {
	targets := make([]remotewrite.Target, len(cfg.Storage.RemoteWrite.Targets))
	for i, t := range cfg.Storage.RemoteWrite.Targets {
		if len(t.Headers) > 0 {
			h := make(map[string]string, len(t.Headers))
			for k := range t.Headers {
				h[k] = "<redacted>"
			}
			t.Headers = h
		}
		if u, err := url.Parse(t.URL); err == nil && u.User != nil {
			u.User = url.User(u.User.Username())
			t.URL = u.String()
		}
		targets[i] = t
	}
	cfg.Storage.RemoteWrite.Targets = targets
	cfg.Storage.RemoteRead = cfg.Storage.RemoteRead.redacted()
	return cfg
}

// openTraceStore opens the configured trace backend.
func (s *Server) openTraceStore() (tracestore.Store, error) {
	tc := s.cfg.Storage.Traces
	if tc.Backend == "cassandra" {
		c := tc.Cassandra
		cc := cassandra.ClusterConfig{Consistency: c.Consistency, LocalDC: c.LocalDC, Username: c.Username, Timeout: c.Timeout}
		for _, h := range strings.Split(c.Hosts, ",") {
			if h = strings.TrimSpace(h); h != "" {
				cc.Hosts = append(cc.Hosts, h)
			}
		}
		if c.PasswordFile != "" {
			pw, err := os.ReadFile(c.PasswordFile)
			if err != nil {
				return nil, fmt.Errorf("storage.traces.cassandra.password_file: %w", err)
			}
			cc.Password = strings.TrimSpace(string(pw))
		}
		sess, err := cassandra.Dial(cc, c.Keyspace)
		if err != nil {
			return nil, fmt.Errorf("storage.traces.cassandra: %w", err)
		}
		store, err := cassandra.New(sess, cassandra.Config{
			Keyspace: c.Keyspace, TTL: tc.Retention, AutocompleteKeys: autocompleteKeys,
			Logger: s.logger.With("component", "tracestore"), Registerer: s.reg,
		})
		if err != nil {
			sess.Close()
			return nil, fmt.Errorf("storage.traces.cassandra: %w", err)
		}
		s.closers = append(s.closers, func(context.Context) error { return store.Close() })
		return store, nil
	}
	store, err := pebblestore.Open(pebblestore.Config{
		Dir:              filepath.Join(s.cfg.Storage.Path, "traces"),
		TTL:              tc.Retention,
		MaxDiskBytes:     tc.MaxBytes,
		WALSyncInterval:  tc.WALSyncInterval,
		AutocompleteKeys: autocompleteKeys,
		Logger:           s.logger.With("component", "tracestore"),
		Registerer:       s.reg,
	})
	if err != nil {
		return nil, fmt.Errorf("open trace store: %w", err)
	}
	s.closers = append(s.closers, func(ctx context.Context) error {
		return closeWithin(ctx, "trace store", "every acknowledged span is in its write-ahead log file and is replayed at the next start", store.Close)
	})
	return store, nil
}

// closeWithin runs closeFn but stops waiting for it when ctx ends. Pebble's
// Close waits for the compaction under way, which on one busy core can take
// a minute after a burst of writes, longer than an orchestrator's grace
// period; a store that is crash-safe loses nothing when the process exits
// mid-compaction, so waiting past the shutdown deadline only risks a
// SIGKILL in the middle of closing the stores after it. why says what makes
// leaving safe.
func closeWithin(ctx context.Context, name, why string, closeFn func() error) error {
	done := make(chan error, 1)
	go func() { done <- closeFn() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("%s still closing at the shutdown deadline (%w); leaving it: %s", name, ctx.Err(), why)
	}
}

// autocompleteKeys are the span tags whose values Zipkin's autocomplete
// offers: the ones Envoy and Istio set on every span.
var autocompleteKeys = []string{"http.method", "http.status_code", "response_flags", "upstream_cluster", "istio.canonical_service", "istio.namespace"}

// extraMux returns the handler mux of a protocol-specific HTTP listener.
func (s *Server) extraMux(name string) *httpMux {
	if s.extra == nil {
		s.extra = map[string]*httpMux{}
	}
	if m, ok := s.extra[name]; ok {
		return m
	}
	m := newHTTPMux()
	s.extra[name] = m
	return m
}

// grpcServices names what the gRPC listener serves, for the start-up log.
func (s *Server) grpcServices() []string {
	var out []string
	for name := range s.grpcServer.GetServiceInfo() {
		out = append(out, name)
	}
	return out
}

// startExtraListeners binds the protocol-specific listeners.
func (s *Server) startExtraListeners(bind func(proto, name, addr, what string) (net.Listener, error)) error {
	if s.cfg.Receivers.Zipkin.Enabled {
		what := "zipkin ingest and query api"
		if s.flags.Mode == ModeCollector {
			what = "zipkin ingest"
		}
		ln, err := bind("http", "zipkin", s.cfg.Listen.Zipkin, what)
		if err != nil {
			return err
		}
		s.serveHTTP(ln, s.protect(s.extraMux("zipkin"), security.IngestPortRule))
	}
	if s.cfg.Receivers.OTLP.Enabled {
		ln, err := bind("http", "otlp_http", s.cfg.Listen.OTLPHTTP, "otlp traces over http")
		if err != nil {
			return err
		}
		s.serveHTTP(ln, s.protect(s.extraMux("otlp_http"), security.IngestPortRule))
		gln, err := bind("grpc", "otlp_grpc", s.cfg.Listen.OTLPGRPC, "otlp traces over grpc")
		if err != nil {
			return err
		}
		if gln != nil {
			s.serveGRPC(s.otlpGRPC, gln)
		}
	}
	return nil
}

// startBackground starts work that runs beside the servers: informers,
// span pairing, recommendations and the demo traffic generator.
func (s *Server) startBackground(ctx context.Context) error {
	if s.kube != nil {
		if err := s.kube.Start(ctx); err != nil {
			return fmt.Errorf("processors.kubernetes: %w", err)
		}
	}
	if s.spans != nil {
		s.goBackground(func() { s.spans.Run(ctx) })
	}
	if s.recommend != nil {
		s.goBackground(func() {
			if err := s.recommend.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				s.logger.Error("recommendations stopped", "err", err)
			}
		})
		if err := s.startXDSPush(ctx); err != nil {
			return err
		}
	}
	if !s.cfg.Demo.Enabled {
		return nil
	}
	cfg := demo.Config{Rate: s.cfg.Demo.Rate, Seed: s.cfg.Demo.Seed}
	if s.cfg.Receivers.EnvoyALS.Enabled {
		cfg.ALSAddr = loopback(s.Addr("grpc"))
	}
	if s.cfg.Receivers.Zipkin.Enabled && s.Addr("zipkin") != "" {
		cfg.ZipkinURL = "http://" + loopback(s.Addr("zipkin"))
	}
	g, err := demo.NewGenerator(cfg, s.logger.With("component", "demo"))
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	dctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	// The demo flushes what it buffered when stopped; it must finish while
	// the receivers still listen.
	s.stopDemo = func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
		}
	}
	s.goBackground(func() {
		defer close(done)
		if err := g.Run(dctx); err != nil {
			s.logger.Error("demo traffic stopped", "err", err)
		}
	})
	s.logger.Info("demo traffic started: Istio Bookinfo", "rate", cfg.Rate, "als", cfg.ALSAddr, "zipkin", cfg.ZipkinURL)
	return nil
}

// stopBackground stops the demo, and waits for its last flush, before the
// receivers shut down.
func (s *Server) stopBackground() {
	if s.stopDemo != nil {
		s.stopDemo()
	}
}

// loopback turns a bound address into one a local client can dial.
func loopback(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

func buildInfo() promapi.BuildInfo {
	// Grafana reads the version as a Prometheus version; leaving it empty
	// reports the linked PromQL engine's version instead.
	bi := promapi.BuildInfo{Branch: "main"}
	if info, ok := debug.ReadBuildInfo(); ok {
		bi.GoVersion = info.GoVersion
		if info.Main.Version != "" && info.Main.Version != "(devel)" {
			bi.Version = info.Main.Version
		}
		for _, st := range info.Settings {
			switch st.Key {
			case "vcs.revision":
				bi.Revision = st.Value
			case "vcs.time":
				bi.BuildDate = st.Value
			}
		}
	}
	return bi
}

// Version is the module version the binary was built from.
func Version() string {
	bi := buildInfo()
	if bi.Version == "" {
		bi.Version = "dev"
	}
	if bi.Revision != "" {
		return bi.Version + " (" + bi.Revision + ")"
	}
	return bi.Version
}
