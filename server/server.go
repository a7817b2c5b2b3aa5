package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/prometheus/storage"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/meshlens/meshlens/model"
	"github.com/meshlens/meshlens/pipeline"
	"github.com/meshlens/meshlens/processors/errorlog"
	"github.com/meshlens/meshlens/processors/identity"
	"github.com/meshlens/meshlens/processors/recommend"
	"github.com/meshlens/meshlens/processors/recommend/xdspush"
	"github.com/meshlens/meshlens/processors/redmetrics"
	"github.com/meshlens/meshlens/processors/spancalls"
	"github.com/meshlens/meshlens/server/security"
	"github.com/meshlens/meshlens/storage/downsample"
	"github.com/meshlens/meshlens/storage/metricstore"
	"github.com/meshlens/meshlens/storage/remotewrite"
)

// Server is one running meshlens: storage, pipeline, receivers and APIs.
type Server struct {
	cfg    Config
	flags  Flags
	logger *slog.Logger
	reg    *prometheus.Registry
	tel    *pipeline.Telemetry

	metrics *metricstore.Store
	// app is where every writer appends: the TSDB, teed to remote write
	// when configured.
	app storage.Appendable
	// queryable is what every query reads: the TSDB, with downsampled
	// levels behind it when enabled.
	queryable  storage.Queryable
	downsample *downsample.Store
	agg        *redmetrics.Aggregator
	queue      *pipeline.Queue

	procs     []pipeline.CallProcessor
	sinks     fanout
	errors    *errorlog.Log
	recommend *recommend.Engine
	xds       *xdspush.Pusher // nil unless processors.recommendations.xds_push is on
	spans     *spancalls.Processor
	kube      *identity.KubeResolver

	grpcServer *grpc.Server
	otlpGRPC   *grpc.Server
	mux        *http.ServeMux
	extra      map[string]*httpMux // protocol-specific HTTP listeners
	httpSrvs   []*http.Server
	listeners  []boundListener

	stopDemo context.CancelFunc
	cancel   context.CancelFunc // stops the background loops

	tls  map[string]*security.Reloader // by listener name, for listeners with TLS
	auth *security.Authenticator       // nil: HTTP ports open

	closers []func(context.Context) error // run in reverse order after the pipeline drained
	ready   atomic.Bool
	wg      sync.WaitGroup
}

// boundListener is a listener with the description logged at start-up.
type boundListener struct {
	proto string // "http" or "grpc"
	name  string // config name, e.g. "http", "otlp_grpc"
	what  string // what it serves
	ln    net.Listener
}

// Addr is the address a listener is bound to, by its config name ("http",
// "grpc", "zipkin", "otlp_grpc", "otlp_http"); empty if it is off.
func (s *Server) Addr(name string) string {
	for _, l := range s.listeners {
		if l.name == name {
			return l.ln.Addr().String()
		}
	}
	return ""
}

// New opens storage and builds every component, but serves nothing yet.
func New(ctx context.Context, cfg Config, flags Flags, logger *slog.Logger) (_ *Server, err error) {
	s := &Server{cfg: cfg, flags: flags, logger: logger, reg: prometheus.NewRegistry(), mux: http.NewServeMux()}
	if cfg.Pipeline.MemoryLimit > 0 {
		debug.SetMemoryLimit(cfg.Pipeline.MemoryLimit)
	}
	defer func() {
		if err != nil {
			s.closeAll(context.Background())
		}
	}()
	// go_gc_heap_live_bytes (the heap marked live by the last GC) is what
	// tells a leak from garbage awaiting collection; go_memstats_heap_inuse
	// rises and falls with the GC's pacing. go_sched_latencies_seconds (time
	// runnable goroutines waited for a CPU) tells an ingest tail caused by
	// CPU queueing from one caused by the disk.
	s.reg.MustRegister(collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(
		collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^/gc/heap/live:bytes$|^/sched/latencies:seconds$`)})),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.tel = pipeline.NewTelemetry(s.reg)
	if flags.Mode == ModeQuery {
		if err := s.newQueryNode(); err != nil {
			return nil, err
		}
		s.routes()
		return s, nil
	}

	s.metrics, err = metricstore.Open(cfg.MetricStore(), logger, s.reg)
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, func(context.Context) error { return s.metrics.Close() })

	s.queryable = s.metrics
	// A collector serves no queries: its TSDB is only the remote-write WAL.
	if ds := cfg.Storage.Metrics.Downsample; ds.Enabled && len(ds.Levels) > 0 && flags.Mode != ModeCollector {
		s.downsample, err = downsample.Open(ds, filepath.Join(cfg.Storage.Path, "metrics-downsampled"), s.metrics,
			cfg.Storage.Metrics.Retention, logger, s.reg)
		if err != nil {
			return nil, err
		}
		s.closers = append(s.closers, func(context.Context) error { return s.downsample.Close() })
		s.queryable = s.downsample
	}

	restore, err := s.metrics.LastValues(ctx, redmetrics.SeriesPattern, 24*time.Hour)
	if err != nil {
		return nil, fmt.Errorf("restore counters: %w", err)
	}
	s.app = s.metrics
	if len(cfg.Storage.RemoteWrite.Targets) > 0 {
		rwc, err := s.remoteWriteConfig()
		if err != nil {
			return nil, err
		}
		rw, err := remotewrite.New(rwc, cfg.MetricStore().Path, logger, s.reg)
		if err != nil {
			return nil, err
		}
		// Closed after the final flush, before the TSDB (closers run in
		// reverse): the queues get their flush deadline to send the rest.
		s.closers = append(s.closers, func(context.Context) error { return rw.Close() })
		s.app = rw.Tee(s.metrics)
	}
	s.agg = redmetrics.New(cfg.Processors.Metrics, s.app, restore, s.reg, logger.With("component", "aggregator"))

	if err := s.buildProcessors(); err != nil {
		return nil, err
	}
	workers := cfg.Pipeline.Workers
	if workers == 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	s.queue = pipeline.NewQueue(pipeline.QueueConfig{
		Name: "calls", Capacity: cfg.Pipeline.QueueCapacity, Workers: workers, EnqueueWait: cfg.Pipeline.EnqueueWait,
	}, s.tel, s.sinks, s.procs...)

	if err := s.loadTLS(); err != nil {
		return nil, err
	}
	if err := s.newAuth(); err != nil {
		return nil, err
	}
	grpcOpts := s.grpcOptions()
	if ids := cfg.Receivers.EnvoyALS.AllowedSPIFFEIDs; len(ids) > 0 {
		allow, err := security.NewSPIFFEAllowList(ids, []string{"/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs"})
		if err != nil {
			return nil, fmt.Errorf("receivers.envoy_als.allowed_spiffe_ids: %w", err)
		}
		grpcOpts = append(grpcOpts, grpc.ChainStreamInterceptor(allow.StreamInterceptor))
	}
	if cfg.Pipeline.DurableAck {
		// Streams of call records are answered once their records are in
		// the TSDB WAL (docs/durability.md).
		ack := pipeline.NewDurableAck([]string{
			"/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs",
			"/skywalking.v3.ServiceMeshMetricService/collect",
		}, s.agg.Sync, cfg.Pipeline.AckTimeout, s.reg)
		grpcOpts = append(grpcOpts, grpc.ChainStreamInterceptor(ack.StreamInterceptor))
	}
	// Innermost, so that the idle clock runs only while the receiver
	// waits in Recv.
	grpcOpts = append(grpcOpts, grpc.ChainStreamInterceptor(streamIdle{
		timeout: cfg.Pipeline.GRPCStreamIdleTimeout, setting: "pipeline.grpc_stream_idle_timeout"}.StreamInterceptor))
	grpcOpts = append(grpcOpts, s.tenantGRPCOptions()...)
	s.grpcServer = grpc.NewServer(grpcOpts...)
	if err := s.buildComponents(ctx); err != nil {
		return nil, err
	}
	s.routes()
	return s, nil
}

// grpcOptions are the limits, keepalive and TLS of the gRPC listener.
func (s *Server) grpcOptions() []grpc.ServerOption {
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(s.cfg.Pipeline.MaxRecvMsgBytes),
		grpc.MaxConcurrentStreams(uint32(s.cfg.Pipeline.MaxConcurrentStreams)),
		// Sidecars keep ALS streams open for hours; make dead peers go away.
		grpc.KeepaliveParams(keepaliveParams(s.cfg.Pipeline)),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	}
	if r := s.tls["grpc"]; r != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(r.TLSConfig())))
	}
	return opts
}

// newAuth builds the authenticator when auth is configured.
func (s *Server) newAuth() error {
	if !s.cfg.Auth.Enabled() {
		return nil
	}
	var err error
	s.auth, err = security.NewAuthenticator(s.cfg.Auth, s.logger.With("component", "auth"))
	return err
}

// loadTLS reads the certificates of every listener with TLS; a file that
// does not load stops start-up.
func (s *Server) loadTLS() error {
	s.tls = map[string]*security.Reloader{}
	for _, name := range []string{"http", "grpc", "zipkin", "otlp_grpc", "otlp_http"} {
		c := s.cfg.Listen.TLS.byName(name)
		if !c.Enabled() {
			continue
		}
		protos := []string{"http/1.1"}
		if name == "grpc" || name == "otlp_grpc" {
			protos = []string{"h2"}
		}
		r, err := security.NewReloader(c, protos, s.logger.With("listener", name))
		if err != nil {
			return fmt.Errorf("listen.tls.%s: %w", name, err)
		}
		s.tls[name] = r
	}
	return nil
}

// protect adds the common response headers and, when auth is configured,
// the permission check rule asks for.
func (s *Server) protect(h http.Handler, rule security.Rule) http.Handler {
	// The tenant is resolved after authentication: a request without a
	// credential gets 401 for that first.
	h = s.tenantHTTP(h)
	if s.auth != nil {
		h = s.auth.Middleware(h, rule)
	}
	return security.Headers(h)
}

// fanout hands every batch to each consumer in turn.
type fanout []pipeline.CallConsumer

func (f fanout) ConsumeCalls(ctx context.Context, calls []model.Call) error {
	var errs []error
	for _, c := range f {
		if err := c.ConsumeCalls(ctx, calls); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (s *Server) routes() {
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{Registry: s.reg}))
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	s.mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !s.ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready\n"))
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
}

// Start binds every listener and starts serving. It returns once all
// listeners are bound, logging one line per listener.
func (s *Server) Start(ctx context.Context) error {
	// Background loops end with Shutdown, whatever happens to the caller's ctx.
	ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	if s.queue != nil {
		s.queue.Start()
	}
	bind := func(proto, name, addr, what string) (net.Listener, error) {
		if addr == "" {
			return nil, nil
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("listen.%s: bind %s: %w", name, addr, err)
		}
		if r := s.tls[name]; r != nil {
			what += ", " + tlsMode(s.cfg.Listen.TLS.byName(name))
			if proto == "http" {
				ln = tls.NewListener(ln, r.TLSConfig())
			}
		}
		s.listeners = append(s.listeners, boundListener{proto: proto, name: name, what: what, ln: ln})
		return ln, nil
	}
	httpLn, err := bind("http", "http", s.cfg.Listen.HTTP, s.httpWhat())
	if err != nil {
		return err
	}
	s.serveHTTP(httpLn, s.protect(s.mux, security.QueryPortRule))
	if s.grpcServer != nil {
		if grpcLn, err := bind("grpc", "grpc", s.cfg.Listen.GRPC, strings.Join(s.grpcServices(), ", ")); err != nil {
			return err
		} else if grpcLn != nil {
			s.serveGRPC(s.grpcServer, grpcLn)
		}
	}
	if err := s.startExtraListeners(bind); err != nil {
		return err
	}
	if ln, err := bind("http", "pprof", s.cfg.Listen.Pprof, "Go profiling, /debug/pprof/"); err != nil {
		return err
	} else if ln != nil {
		s.serveHTTP(ln, pprofMux())
	}
	// One line per listener, "listening <name>=<addr> (<what>)", where the
	// name is the config key (http, grpc, zipkin, otlp_grpc, otlp_http), so
	// scripts and tests can find every port when they asked for port 0.
	for _, l := range s.listeners {
		what := l.what
		if l.name != l.proto {
			what = l.proto + ": " + what
		}
		s.logger.Info(fmt.Sprintf("listening %s=%s (%s)", l.name, l.ln.Addr(), what))
	}

	if s.agg != nil {
		s.goBackground(func() { s.agg.Run(ctx) })
	}
	if s.downsample != nil {
		s.goBackground(func() { s.downsample.Run(ctx) })
	}
	if err := s.startBackground(ctx); err != nil {
		return err
	}
	s.ready.Store(true)
	return nil
}

func tlsMode(c security.TLSConfig) string {
	switch {
	case c.RequireClientCert:
		return "mutual tls"
	case c.ClientCAFile != "":
		return "tls, client certificates verified when given"
	}
	return "tls"
}

// goBackground runs f until Shutdown cancels the background context.
func (s *Server) goBackground(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

func (s *Server) serveGRPC(srv *grpc.Server, ln net.Listener) {
	s.goBackground(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			s.logger.Error("grpc server stopped", "addr", ln.Addr(), "err", err)
		}
	})
}

// pprofMux serves net/http/pprof's handlers without registering them on
// http.DefaultServeMux.
func pprofMux() http.Handler {
	m := http.NewServeMux()
	m.HandleFunc("/debug/pprof/", pprof.Index)
	m.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	m.HandleFunc("/debug/pprof/profile", pprof.Profile)
	m.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	m.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return m
}

// httpMux is the handler of an HTTP listener.
type httpMux = http.ServeMux

func newHTTPMux() *httpMux { return http.NewServeMux() }

func (s *Server) serveHTTP(ln net.Listener, h http.Handler) {
	if ln == nil {
		return
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: s.cfg.Pipeline.HTTPReadHeaderTimeout,
		ReadTimeout:       s.cfg.Pipeline.HTTPReadTimeout,
		IdleTimeout:       s.cfg.Pipeline.HTTPIdleTimeout,
		MaxHeaderBytes:    1 << 20,
	}
	s.httpSrvs = append(s.httpSrvs, srv)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.logger.Error("http server stopped", "addr", ln.Addr(), "err", err)
		}
	}()
}

// Shutdown stops accepting data, drains every queue into the aggregator,
// writes a final flush and closes storage, so that everything a receiver
// acknowledged before the shutdown began is in storage afterwards.
func (s *Server) Shutdown(ctx context.Context) error {
	s.ready.Store(false)
	var errs []error
	s.stopBackground()
	// Stop receivers first. Streams that do not end by themselves (ALS,
	// Metrics Service) are cut after a grace period.
	for _, srv := range []*grpc.Server{s.grpcServer, s.otlpGRPC} {
		if srv == nil {
			continue
		}
		stopped := make(chan struct{})
		go func() { srv.GracefulStop(); close(stopped) }()
		grace := time.NewTimer(2 * time.Second)
		select {
		case <-stopped:
		case <-grace.C:
			srv.Stop()
			<-stopped
		case <-ctx.Done():
			srv.Stop()
			<-stopped
		}
		grace.Stop()
	}
	for _, srv := range s.httpSrvs {
		if err := srv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("http shutdown: %w", err))
		}
	}
	if s.queue != nil {
		if err := s.queue.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
	if s.agg != nil {
		if err := s.agg.Flush(ctx, time.Now()); err != nil {
			errs = append(errs, fmt.Errorf("final flush: %w", err))
		}
	}
	errs = append(errs, s.closeAll(ctx))
	return errors.Join(errs...)
}

func (s *Server) closeAll(ctx context.Context) error {
	var errs []error
	for i := len(s.closers) - 1; i >= 0; i-- {
		if err := s.closers[i](ctx); err != nil {
			errs = append(errs, err)
		}
	}
	s.closers = nil
	return errors.Join(errs...)
}

// URL is an http:// URL on the HTTP listener, with a loopback host when the
// listener is bound to all interfaces.
func (s *Server) URL(path string) string {
	addr := s.Addr("http")
	if addr == "" {
		return ""
	}
	return "http://" + loopback(addr) + path
}
