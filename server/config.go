// Package server assembles meshlens from its parts: it loads and validates
// the one configuration, opens storage, builds the pipeline from receivers
// to storage, serves the query APIs and the UI, and shuts everything down in
// order so that nothing accepted is lost.
package server

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/meshlens/meshlens/processors/endpoints"
	"github.com/meshlens/meshlens/processors/identity"
	"github.com/meshlens/meshlens/processors/redmetrics"
	"github.com/meshlens/meshlens/processors/tracesampling"
	"github.com/meshlens/meshlens/receivers/envoyals"
	"github.com/meshlens/meshlens/server/security"
	"github.com/meshlens/meshlens/server/tenancy"
	"github.com/meshlens/meshlens/storage/downsample"
	"github.com/meshlens/meshlens/storage/metricstore"
	"github.com/meshlens/meshlens/storage/remotewrite"
	"github.com/meshlens/meshlens/storage/tracestore"
)

// Config is meshlens's whole configuration. It is read from one YAML file
// (deploy/meshlens.yaml documents every field); every scalar field can be
// overridden by an environment variable MESHLENS_<PATH> and a flag --<path>,
// where <path> is the dotted YAML path (listen.http, storage.path, ...).
type Config struct {
	Listen     ListenConfig     `yaml:"listen"`
	Storage    StorageConfig    `yaml:"storage"`
	Pipeline   PipelineConfig   `yaml:"pipeline"`
	Processors ProcessorsConfig `yaml:"processors"`
	Receivers  ReceiversConfig  `yaml:"receivers"`
	Query      QueryConfig      `yaml:"query"`
	// Auth protects the HTTP query API and UI (docs/security.md).
	Auth security.AuthConfig `yaml:"auth"`
	// MultiTenancy isolates tenants by a header (docs/security.md).
	MultiTenancy tenancy.Config `yaml:"multi_tenancy"`
	Demo         DemoConfig     `yaml:"demo"`
	Log          LogConfig      `yaml:"log"`
	// Collector names this process when it runs as `meshlens collector`
	// (docs/scaleout.md).
	Collector CollectorConfig `yaml:"collector"`
}

// ListenConfig holds every listener address. An empty address turns the
// listener off; port 0 picks a free port (the chosen address is logged).
type ListenConfig struct {
	// HTTP serves the UI and every query API.
	HTTP string `yaml:"http"`
	// GRPC serves Envoy ALS, Envoy Metrics Service, SkyWalking mesh reports
	// and the Jaeger collector.
	GRPC string `yaml:"grpc"`
	// Zipkin serves Zipkin span ingest (and the Zipkin query API).
	Zipkin string `yaml:"zipkin"`
	// OTLPGRPC and OTLPHTTP serve OTLP traces.
	OTLPGRPC string `yaml:"otlp_grpc"`
	OTLPHTTP string `yaml:"otlp_http"`
	// Pprof serves Go's profiling endpoints (/debug/pprof/) on a listener
	// of their own, off by default. It has no authentication, so it must
	// be a loopback address.
	Pprof string `yaml:"pprof"`
	// TLS turns on TLS (and mutual TLS) per listener; certificates are
	// re-read when their files change.
	TLS ListenTLSConfig `yaml:"tls"`
}

// ListenTLSConfig is the TLS setting of each listener, by listener name.
type ListenTLSConfig struct {
	HTTP     security.TLSConfig `yaml:"http"`
	GRPC     security.TLSConfig `yaml:"grpc"`
	Zipkin   security.TLSConfig `yaml:"zipkin"`
	OTLPGRPC security.TLSConfig `yaml:"otlp_grpc"`
	OTLPHTTP security.TLSConfig `yaml:"otlp_http"`
}

// byName returns the TLS setting of the listener with config name name.
func (c ListenTLSConfig) byName(name string) security.TLSConfig {
	switch name {
	case "http":
		return c.HTTP
	case "grpc":
		return c.GRPC
	case "zipkin":
		return c.Zipkin
	case "otlp_grpc":
		return c.OTLPGRPC
	case "otlp_http":
		return c.OTLPHTTP
	}
	return security.TLSConfig{}
}

// StorageConfig places and bounds the embedded storage.
type StorageConfig struct {
	// Path is the data directory; metrics go to <path>/metrics, traces to
	// <path>/traces.
	Path    string               `yaml:"path"`
	Metrics MetricsStorageConfig `yaml:"metrics"`
	Traces  TraceStorageConfig   `yaml:"traces"`
	// MinFreeBytes is the free space the data directory's file system must
	// keep: below it, writes to the TSDB and the Pebble trace store are
	// refused with UNAVAILABLE / 503 until space returns, because neither
	// survives a write failing half-way (docs/durability.md). 0 = off.
	MinFreeBytes int64 `yaml:"min_free_bytes"`
	// RemoteWrite sends every stored sample on to Prometheus remote-write
	// receivers (Prometheus, Mimir, VictoriaMetrics, Thanos receive).
	RemoteWrite remotewrite.Config `yaml:"remote_write"`
	// RemoteRead is where `meshlens query` reads the metrics collectors
	// remote-write (docs/scaleout.md).
	RemoteRead RemoteReadConfig `yaml:"remote_read"`
}

// MetricsStorageConfig bounds the embedded TSDB.
type MetricsStorageConfig struct {
	Retention time.Duration `yaml:"retention"`
	MaxBytes  int64         `yaml:"max_bytes"`
	// BlockDuration is how much time the in-memory head block covers
	// before it is compacted to disk (Prometheus's
	// --storage.tsdb.min-block-duration, default 2h). Head memory grows for
	// 1.5× this long, then drops; shorter values bound it lower at the cost
	// of more, smaller blocks. The soak test uses a short one so that head
	// compaction happens inside its window.
	BlockDuration time.Duration `yaml:"block_duration"`
	// Downsample keeps coarser copies for longer and serves them
	// transparently for ranges the raw samples no longer cover.
	Downsample downsample.Config `yaml:"downsample"`
}

// TraceStorageConfig bounds the embedded trace store.
type TraceStorageConfig struct {
	// Backend is "pebble" (embedded, the default) or "cassandra".
	Backend   string        `yaml:"backend"`
	Retention time.Duration `yaml:"retention"`
	MaxBytes  int64         `yaml:"max_bytes"`
	// WALSyncInterval is how often the pebble backend fsyncs its
	// write-ahead log. An acknowledged span is always in the log file and
	// survives the process being killed; a power loss or kernel crash can
	// lose the last interval of them. 0 fsyncs before every
	// acknowledgement, which ties ingest latency to the disk's worst fsync.
	WALSyncInterval time.Duration          `yaml:"wal_sync_interval"`
	Cassandra       CassandraStorageConfig `yaml:"cassandra"`
}

// CassandraStorageConfig connects the Cassandra trace backend. The schema
// is applied by `meshlens cassandra migrate` (deploy/cassandra).
type CassandraStorageConfig struct {
	// Hosts is a comma-separated list of host:port.
	Hosts        string        `yaml:"hosts"`
	Keyspace     string        `yaml:"keyspace"`
	Consistency  string        `yaml:"consistency"`
	LocalDC      string        `yaml:"local_dc"`
	Username     string        `yaml:"username"`
	PasswordFile string        `yaml:"password_file"`
	Timeout      time.Duration `yaml:"timeout"`
}

// PipelineConfig sizes the queues between receivers and processors.
type PipelineConfig struct {
	// QueueCapacity is the number of batches (one ALS message, one span
	// batch) a queue holds before receivers answer RESOURCE_EXHAUSTED / 429.
	QueueCapacity int `yaml:"queue_capacity"`
	// Workers drain each queue; 0 means one per CPU.
	Workers int `yaml:"workers"`
	// EnqueueWait is how long a receiver may wait for queue room.
	EnqueueWait time.Duration `yaml:"enqueue_wait"`
	// MaxRecvMsgBytes caps one gRPC message.
	MaxRecvMsgBytes int `yaml:"max_recv_msg_bytes"`
	// MaxConcurrentStreams caps gRPC streams per connection.
	MaxConcurrentStreams int `yaml:"max_concurrent_streams"`
	// DurableAck makes the answer to an ALS or mesh-report stream wait
	// until its records are committed to the TSDB WAL (docs/durability.md);
	// off, the answer only means "queued in memory".
	DurableAck bool `yaml:"durable_ack"`
	// AckTimeout bounds that wait; past it the stream ends UNAVAILABLE.
	AckTimeout time.Duration `yaml:"ack_timeout"`
	// HTTPReadTimeout bounds reading one HTTP request, body included, on
	// every HTTP port: a client that stalls mid-body is cut off.
	HTTPReadTimeout time.Duration `yaml:"http_read_timeout"`
	// HTTPReadHeaderTimeout bounds reading the request line and headers: a
	// slowloris client trickling header bytes is cut off after it.
	HTTPReadHeaderTimeout time.Duration `yaml:"http_read_header_timeout"`
	// HTTPIdleTimeout closes a keep-alive HTTP connection with no request.
	HTTPIdleTimeout time.Duration `yaml:"http_idle_timeout"`
	// GRPCStreamIdleTimeout closes a client stream (ALS, Metrics Service,
	// mesh report) on which nothing arrived for this long, with
	// UNAVAILABLE; Envoy opens a new stream for its next message. 0 = off.
	GRPCStreamIdleTimeout time.Duration `yaml:"grpc_stream_idle_timeout"`
	// GRPCMaxConnectionIdle closes a gRPC connection with no open stream
	// for this long (GOAWAY). 0 = off.
	GRPCMaxConnectionIdle time.Duration `yaml:"grpc_max_connection_idle"`
	// GRPCMaxConnectionAge makes a client reconnect after this long (GOAWAY,
	// then a minute of grace for open streams), spreading sidecars over
	// replicas behind a load balancer. 0 = off.
	GRPCMaxConnectionAge time.Duration `yaml:"grpc_max_connection_age"`
	// MaxInflightSpanBatches bounds the span batches (one Zipkin or OTLP
	// request, one Jaeger batch) being stored at once; past it a batch
	// waits up to EnqueueWait, then is refused with 429 / RESOURCE_EXHAUSTED.
	MaxInflightSpanBatches int `yaml:"max_inflight_span_batches"`
	// MemoryLimit is the Go runtime's soft memory limit in bytes
	// (debug.SetMemoryLimit, what GOMEMLIMIT sets); 0 leaves GOMEMLIMIT or
	// no limit. The queues are bounded in batches, not bytes: size
	// queue_capacity × a typical batch and max_inflight_span_batches ×
	// a typical request well below it (docs/durability.md).
	MemoryLimit int64 `yaml:"memory_limit"`
}

// ProcessorsConfig configures what happens between receivers and storage.
type ProcessorsConfig struct {
	Metrics    redmetrics.Config    `yaml:"metrics"`
	Identity   identity.Config      `yaml:"identity"`
	Kubernetes KubernetesConfig     `yaml:"kubernetes"`
	Endpoints  endpoints.Config     `yaml:"endpoints"`
	Errors     ErrorLogConfig       `yaml:"errors"`
	Sampling   tracesampling.Config `yaml:"trace_sampling"`
	Recommend  RecommendConfig      `yaml:"recommendations"`
}

// KubernetesConfig turns on IP -> pod/service resolution from the
// Kubernetes API (pods, services, endpoints; get/list/watch).
type KubernetesConfig struct {
	Enabled bool `yaml:"enabled"`
	// Kubeconfig is a kubeconfig file; empty means in-cluster credentials.
	Kubeconfig string `yaml:"kubeconfig"`
	// ClusterID names the cluster in identities (Istio's CLUSTER_ID).
	ClusterID string `yaml:"cluster_id"`
}

// ErrorLogConfig bounds the sampled error records.
type ErrorLogConfig struct {
	Capacity      int     `yaml:"capacity"`
	RatePerSecond float64 `yaml:"rate_per_second"`
	Burst         int     `yaml:"burst"`
}

// RecommendConfig configures the timeout / retry / rate-limit engine.
type RecommendConfig struct {
	Enabled bool `yaml:"enabled"`
	// IstioConfigDir holds the VirtualService / DestinationRule /
	// EnvoyFilter YAML in force, to compare recommendations against.
	IstioConfigDir     string        `yaml:"istio_config_dir"`
	Window             time.Duration `yaml:"window"`
	RecomputeEvery     time.Duration `yaml:"recompute_every"`
	TargetFalseTimeout float64       `yaml:"target_false_timeout"`
	// XDSPush serves the recommended local rate limits to Envoy over xDS.
	XDSPush XDSPushConfig `yaml:"xds_push"`
}

// ReceiversConfig turns receivers on and off and bounds their input. A
// zero limit keeps the receiver's own default.
type ReceiversConfig struct {
	EnvoyALS     ALSConfig          `yaml:"envoy_als"`
	EnvoyMetrics EnvoyMetricsConfig `yaml:"envoy_metrics"`
	MeshReport   MeshReportConfig   `yaml:"mesh_report"`
	Zipkin       HTTPReceiverConfig `yaml:"zipkin"`
	OTLP         HTTPReceiverConfig `yaml:"otlp"`
	Jaeger       JaegerConfig       `yaml:"jaeger"`
}

// EnvoyMetricsConfig configures the Envoy Metrics Service receiver.
type EnvoyMetricsConfig struct {
	Enabled           bool `yaml:"enabled"`
	MaxSeriesPerProxy int  `yaml:"max_series_per_proxy"`
	MaxSeriesTotal    int  `yaml:"max_series_total"`
	// IstioMetricNames stores the proxies' own Istio stats (istiocustom.*)
	// under Istio's names (istio_requests_total, ...). Off by default:
	// meshlens computes those series from access logs, and a proxy that
	// also streams its stats would count every request twice; they are then
	// kept as envoy_istiocustom_*. Turn it on for a mesh that sends no
	// access logs.
	IstioMetricNames bool `yaml:"istio_metric_names"`
	// MaxFutureSkew and MaxSampleAge refuse samples stamped further ahead
	// of / behind the receive time (a proxy with a wrong clock); see
	// envoymetrics.Config.
	MaxFutureSkew time.Duration `yaml:"max_future_skew"`
	MaxSampleAge  time.Duration `yaml:"max_sample_age"`
}

// MeshReportConfig configures the SkyWalking ServiceMeshMetric receiver.
type MeshReportConfig struct {
	Enabled              bool `yaml:"enabled"`
	MaxMetricsPerMessage int  `yaml:"max_metrics_per_message"`
}

// HTTPReceiverConfig configures a span receiver taking HTTP bodies.
type HTTPReceiverConfig struct {
	Enabled         bool  `yaml:"enabled"`
	MaxRequestBytes int64 `yaml:"max_request_bytes"`
}

// JaegerConfig configures the Jaeger api_v2 collector.
type JaegerConfig struct {
	Enabled          bool `yaml:"enabled"`
	MaxSpansPerBatch int  `yaml:"max_spans_per_batch"`
}

// ALSConfig configures the Envoy ALS receiver.
type ALSConfig struct {
	Enabled bool `yaml:"enabled"`
	// AllowedSPIFFEIDs, when not empty, accepts access logs only from
	// clients whose verified certificate carries a matching SPIFFE ID
	// ("*" matches one path segment); others get PERMISSION_DENIED. It needs
	// listen.tls.grpc with a client_ca_file.
	AllowedSPIFFEIDs []string `yaml:"allowed_spiffe_ids"`
	envoyals.Config  `yaml:",inline"`
}

// QueryConfig bounds query cost.
type QueryConfig struct {
	Timeout    time.Duration `yaml:"timeout"`
	MaxSamples int           `yaml:"max_samples"`
	// MaxSeries caps the series one Prometheus API query (or series or
	// federate request) may touch; 0 = no cap.
	MaxSeries int `yaml:"max_series"`
	// Traces bounds the Jaeger and Zipkin trace searches.
	Traces TraceQueryConfig `yaml:"traces"`
}

// TraceQueryConfig bounds one trace search. A search over a limit is
// refused with HTTP 400 naming the limit (docs/hostile-input.md), never
// silently cut short.
type TraceQueryConfig struct {
	// MaxSearchRange is the longest start-to-end window of a search, after
	// the part older than storage.traces.retention is clipped off.
	MaxSearchRange time.Duration `yaml:"max_search_range"`
	// MaxResults is the most traces one search may ask for (at most 1500).
	MaxResults int `yaml:"max_results"`
	// Timeout bounds one search or trace fetch; past it the API answers 503.
	Timeout time.Duration `yaml:"timeout"`
}

// DemoConfig drives the built-in Bookinfo traffic generator.
type DemoConfig struct {
	// Enabled starts the generator against this server's own listeners.
	Enabled bool `yaml:"enabled"`
	// Rate is ingress requests per second.
	Rate float64 `yaml:"rate"`
	// Seed makes the demo reproducible.
	Seed int64 `yaml:"seed"`
}

// LogConfig selects the log output.
type LogConfig struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// DefaultConfig is the configuration used where the file is silent.
func DefaultConfig() Config {
	return Config{
		Listen: ListenConfig{
			HTTP:     ":8088",
			GRPC:     ":11800",
			Zipkin:   ":9411",
			OTLPGRPC: ":4317",
			OTLPHTTP: ":4318",
		},
		Storage: StorageConfig{
			Path:         "./data",
			MinFreeBytes: 256 << 20,
			Metrics:      MetricsStorageConfig{Retention: 7 * 24 * time.Hour, BlockDuration: 2 * time.Hour, Downsample: downsample.DefaultConfig()},
			Traces: TraceStorageConfig{Backend: "pebble", Retention: 72 * time.Hour, MaxBytes: 10 << 30, WALSyncInterval: 100 * time.Millisecond,
				Cassandra: CassandraStorageConfig{Keyspace: "meshlens", Consistency: "LOCAL_QUORUM", Timeout: 5 * time.Second}},
			RemoteRead: RemoteReadConfig{Timeout: time.Minute},
		},
		Pipeline: PipelineConfig{
			QueueCapacity:          1024,
			EnqueueWait:            50 * time.Millisecond,
			MaxRecvMsgBytes:        16 << 20,
			MaxConcurrentStreams:   1024,
			DurableAck:             true,
			AckTimeout:             10 * time.Second,
			HTTPReadTimeout:        time.Minute,
			HTTPReadHeaderTimeout:  10 * time.Second,
			HTTPIdleTimeout:        2 * time.Minute,
			GRPCStreamIdleTimeout:  10 * time.Minute,
			GRPCMaxConnectionIdle:  30 * time.Minute,
			MaxInflightSpanBatches: 64,
		},
		Processors: ProcessorsConfig{
			Metrics:   redmetrics.DefaultConfig(),
			Identity:  identity.DefaultConfig(),
			Endpoints: endpoints.DefaultConfig(),
			Errors:    ErrorLogConfig{Capacity: 10000, RatePerSecond: 10, Burst: 50},
			Sampling:  tracesampling.DefaultConfig(),
			Recommend: RecommendConfig{Enabled: true, Window: 30 * time.Minute, RecomputeEvery: 30 * time.Second, TargetFalseTimeout: 0.001,
				XDSPush: XDSPushConfig{Listen: "127.0.0.1:18000", DryRun: true}},
		},
		Receivers: ReceiversConfig{
			EnvoyALS:     ALSConfig{Enabled: true, Config: envoyals.DefaultConfig()},
			EnvoyMetrics: EnvoyMetricsConfig{Enabled: true, MaxSeriesPerProxy: 20000, MaxSeriesTotal: 1000000, MaxFutureSkew: 5 * time.Minute, MaxSampleAge: time.Hour},
			MeshReport:   MeshReportConfig{Enabled: true, MaxMetricsPerMessage: 10000},
			Zipkin:       HTTPReceiverConfig{Enabled: true, MaxRequestBytes: 16 << 20},
			OTLP:         HTTPReceiverConfig{Enabled: true, MaxRequestBytes: 16 << 20},
			Jaeger:       JaegerConfig{Enabled: true, MaxSpansPerBatch: 10000},
		},
		Query: QueryConfig{Timeout: 2 * time.Minute, MaxSamples: 50_000_000, MaxSeries: 1_000_000,
			Traces: TraceQueryConfig{MaxSearchRange: 72 * time.Hour, MaxResults: tracestore.MaxLimit, Timeout: time.Minute}},
		Auth:         security.AuthConfig{PermissionsClaim: "scope"},
		MultiTenancy: tenancy.DefaultConfig(),
		Demo:         DemoConfig{Rate: 20, Seed: 1},
		Log:          LogConfig{Level: "info", Format: "text"},
	}
}

// MetricStore returns the metric store's own configuration.
func (c Config) MetricStore() metricstore.Config {
	return metricstore.Config{
		Path:          filepath.Join(c.Storage.Path, "metrics"),
		Retention:     c.Storage.Metrics.Retention,
		MaxBytes:      c.Storage.Metrics.MaxBytes,
		BlockDuration: c.Storage.Metrics.BlockDuration,
		MinFreeBytes:  c.Storage.MinFreeBytes,
	}
}

// Validate checks the whole configuration and reports every problem at
// once, each naming its field.
func (c Config) Validate() error {
	var errs []error
	for name, addr := range map[string]string{
		"listen.http": c.Listen.HTTP, "listen.grpc": c.Listen.GRPC, "listen.zipkin": c.Listen.Zipkin,
		"listen.otlp_grpc": c.Listen.OTLPGRPC, "listen.otlp_http": c.Listen.OTLPHTTP,
	} {
		if addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Errorf("%s: %q is not host:port (%v)", name, addr, err))
		}
	}
	if c.Listen.HTTP == "" {
		errs = append(errs, errors.New("listen.http: must be set; the health, query and UI endpoints live there"))
	}
	if a := c.Listen.Pprof; a != "" {
		host, _, err := net.SplitHostPort(a)
		if ip := net.ParseIP(host); err != nil || (host != "localhost" && (ip == nil || !ip.IsLoopback())) {
			errs = append(errs, fmt.Errorf("listen.pprof: %q must be host:port on a loopback address (e.g. 127.0.0.1:6060): profiles expose memory contents and have no authentication", a))
		}
	}
	for _, name := range []string{"http", "grpc", "zipkin", "otlp_grpc", "otlp_http"} {
		if err := c.Listen.TLS.byName(name).Validate("listen.tls." + name); err != nil {
			errs = append(errs, err)
		}
	}
	if ids := c.Receivers.EnvoyALS.AllowedSPIFFEIDs; len(ids) > 0 {
		if c.Listen.TLS.GRPC.ClientCAFile == "" {
			errs = append(errs, errors.New("receivers.envoy_als.allowed_spiffe_ids: needs listen.tls.grpc with client_ca_file (the SPIFFE ID comes from the client certificate)"))
		}
		if _, err := security.NewSPIFFEAllowList(ids, nil); err != nil {
			errs = append(errs, fmt.Errorf("receivers.envoy_als.allowed_spiffe_ids: %w", err))
		}
	}
	if c.Storage.Path == "" {
		errs = append(errs, errors.New("storage.path: must name a directory"))
	}
	if err := c.MetricStore().Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Storage.Metrics.Downsample.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Storage.RemoteWrite.Validate(); err != nil {
		errs = append(errs, err)
	}
	switch c.Storage.Traces.Backend {
	case "pebble":
	case "cassandra":
		if strings.TrimSpace(c.Storage.Traces.Cassandra.Hosts) == "" {
			errs = append(errs, errors.New("storage.traces.cassandra.hosts: the cassandra backend needs at least one host:port"))
		}
	default:
		errs = append(errs, fmt.Errorf("storage.traces.backend: %q is not pebble or cassandra", c.Storage.Traces.Backend))
	}
	if c.Storage.Traces.Retention < time.Minute {
		errs = append(errs, fmt.Errorf("storage.traces.retention: %s is shorter than the 1m minimum", c.Storage.Traces.Retention))
	}
	if w := c.Storage.Traces.WALSyncInterval; w < 0 || w > 10*time.Second {
		errs = append(errs, fmt.Errorf("storage.traces.wal_sync_interval: %s is outside 0 (fsync every acknowledgement) to 10s", w))
	}
	if c.Pipeline.QueueCapacity <= 0 {
		errs = append(errs, errors.New("pipeline.queue_capacity: must be positive"))
	}
	if c.Pipeline.Workers < 0 {
		errs = append(errs, errors.New("pipeline.workers: must not be negative (0 = one per CPU)"))
	}
	if c.Pipeline.MaxRecvMsgBytes < 1024 {
		errs = append(errs, errors.New("pipeline.max_recv_msg_bytes: must be at least 1024"))
	}
	if c.Pipeline.DurableAck && c.Pipeline.AckTimeout <= 0 {
		errs = append(errs, errors.New("pipeline.ack_timeout: must be positive when durable_ack is on"))
	}
	if c.Pipeline.HTTPReadTimeout <= 0 {
		errs = append(errs, errors.New("pipeline.http_read_timeout: must be positive"))
	}
	if c.Pipeline.HTTPReadHeaderTimeout <= 0 || c.Pipeline.HTTPIdleTimeout <= 0 {
		errs = append(errs, errors.New("pipeline.http_read_header_timeout and pipeline.http_idle_timeout: must be positive"))
	}
	if c.Pipeline.GRPCStreamIdleTimeout < 0 || c.Pipeline.GRPCMaxConnectionIdle < 0 || c.Pipeline.GRPCMaxConnectionAge < 0 {
		errs = append(errs, errors.New("pipeline.grpc_stream_idle_timeout, grpc_max_connection_idle and grpc_max_connection_age: must not be negative (0 = off)"))
	}
	if c.Pipeline.MaxInflightSpanBatches <= 0 {
		errs = append(errs, errors.New("pipeline.max_inflight_span_batches: must be positive"))
	}
	if c.Pipeline.MemoryLimit < 0 {
		errs = append(errs, errors.New("pipeline.memory_limit: must not be negative (0 = GOMEMLIMIT or none)"))
	}
	if c.Pipeline.MaxConcurrentStreams <= 0 {
		errs = append(errs, errors.New("pipeline.max_concurrent_streams: must be positive"))
	}
	if err := c.Receivers.EnvoyALS.Validate(); err != nil {
		errs = append(errs, err)
	}
	for _, v := range []interface{ Validate() error }{c.Processors.Identity, c.Processors.Endpoints, c.Processors.Sampling} {
		if err := v.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if e := c.Processors.Errors; e.Capacity <= 0 || e.RatePerSecond <= 0 || e.Burst <= 0 {
		errs = append(errs, errors.New("processors.errors: capacity, rate_per_second and burst must be positive"))
	}
	if r := c.Processors.Recommend; r.Enabled && (r.Window < time.Minute || r.RecomputeEvery <= 0 || r.TargetFalseTimeout <= 0 || r.TargetFalseTimeout >= 0.5) {
		errs = append(errs, errors.New("processors.recommendations: window must be at least 1m, recompute_every positive, target_false_timeout in (0, 0.5)"))
	}
	if err := c.Processors.Recommend.validateXDSPush(map[string]string{"listen.http": c.Listen.HTTP, "listen.grpc": c.Listen.GRPC,
		"listen.zipkin": c.Listen.Zipkin, "listen.otlp_grpc": c.Listen.OTLPGRPC, "listen.otlp_http": c.Listen.OTLPHTTP}); err != nil {
		errs = append(errs, err)
	}
	if k := c.Processors.Kubernetes; k.Enabled && k.Kubeconfig != "" {
		if _, err := os.Stat(k.Kubeconfig); err != nil {
			errs = append(errs, fmt.Errorf("processors.kubernetes.kubeconfig: %w", err))
		}
	}
	if p := c.Processors.Identity.StaticIdentities; p != "" {
		if _, err := os.Stat(p); err != nil {
			errs = append(errs, fmt.Errorf("processors.identity.static_identities (--static-identities): %w", err))
		}
	}
	for name, v := range map[string]int64{
		"receivers.envoy_metrics.max_series_per_proxy":  int64(c.Receivers.EnvoyMetrics.MaxSeriesPerProxy),
		"receivers.envoy_metrics.max_series_total":      int64(c.Receivers.EnvoyMetrics.MaxSeriesTotal),
		"receivers.mesh_report.max_metrics_per_message": int64(c.Receivers.MeshReport.MaxMetricsPerMessage),
		"receivers.envoy_metrics.max_future_skew":       int64(c.Receivers.EnvoyMetrics.MaxFutureSkew),
		"receivers.envoy_metrics.max_sample_age":        int64(c.Receivers.EnvoyMetrics.MaxSampleAge),
		"receivers.zipkin.max_request_bytes":            c.Receivers.Zipkin.MaxRequestBytes,
		"receivers.otlp.max_request_bytes":              c.Receivers.OTLP.MaxRequestBytes,
		"receivers.jaeger.max_spans_per_batch":          int64(c.Receivers.Jaeger.MaxSpansPerBatch),
		"storage.traces.max_bytes (0 = no cap, or > 0)": max(0, c.Storage.Traces.MaxBytes),
		"storage.min_free_bytes":                        c.Storage.MinFreeBytes,
	} {
		if v < 0 {
			errs = append(errs, fmt.Errorf("%s: must not be negative", name))
		}
	}
	if err := c.Processors.Metrics.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Auth.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Query.Timeout <= 0 {
		errs = append(errs, errors.New("query.timeout: must be positive"))
	}
	if err := c.MultiTenancy.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Query.MaxSeries < 0 {
		errs = append(errs, errors.New("query.max_series: must not be negative (0 = no cap)"))
	}
	if c.Query.MaxSamples <= 0 {
		errs = append(errs, errors.New("query.max_samples: must be positive"))
	}
	if t := c.Query.Traces; t.MaxSearchRange <= 0 || t.Timeout <= 0 || t.MaxResults <= 0 || t.MaxResults > tracestore.MaxLimit {
		errs = append(errs, fmt.Errorf("query.traces: max_search_range and timeout must be positive, max_results in [1, %d]", tracestore.MaxLimit))
	}
	if c.Demo.Rate <= 0 || c.Demo.Rate > 100_000 {
		errs = append(errs, fmt.Errorf("demo.rate: %v must be in (0, 100000]", c.Demo.Rate))
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log.level: %q is not one of debug, info, warn, error", c.Log.Level))
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("log.format: %q is not text or json", c.Log.Format))
	}
	return errors.Join(errs...)
}

// Flags are the command-line options of `meshlens serve` that are not
// configuration fields.
type Flags struct {
	// Mode is the command: serve (all-in-one), collector or query.
	Mode             Mode
	ConfigFile       string
	Demo             bool
	StaticIdentities string
}

// LoadConfig builds the configuration of `meshlens serve` from defaults,
// the config file, MESHLENS_* environment variables and flags, in that
// order, and validates it.
func LoadConfig(args []string, environ []string, stderr io.Writer) (Config, Flags, error) {
	return LoadModeConfig(ModeAll, args, environ, stderr)
}

// LoadModeConfig is LoadConfig for `meshlens <mode>`; it also checks what
// the mode needs (ValidateMode).
func LoadModeConfig(mode Mode, args []string, environ []string, stderr io.Writer) (Config, Flags, error) {
	fl := Flags{Mode: mode}
	fs := flag.NewFlagSet("meshlens "+string(mode), flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&fl.ConfigFile, "config", "", "YAML configuration file (see deploy/meshlens.yaml)")
	fs.BoolVar(&fl.Demo, "demo", false, "also generate Bookinfo demo traffic against this server")
	fs.StringVar(&fl.StaticIdentities, "static-identities", "", "YAML file mapping IPs to services (see deploy/static-identities.example.yaml)")
	defaults := DefaultConfig()
	given := registerLeafFlags(fs, &defaults)
	if err := fs.Parse(args); err != nil {
		return Config{}, fl, err
	}
	if fs.NArg() > 0 {
		return Config{}, fl, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	cfg := DefaultConfig()
	if fl.ConfigFile != "" {
		data, err := os.ReadFile(fl.ConfigFile)
		if err != nil {
			return Config{}, fl, fmt.Errorf("read config: %w", err)
		}
		if err := decodeYAML(data, &cfg); err != nil {
			return Config{}, fl, fmt.Errorf("config file %s: %w", fl.ConfigFile, err)
		}
	}
	if err := applyEnv(&cfg, environ); err != nil {
		return Config{}, fl, err
	}
	if err := applyFlags(&cfg, *given); err != nil {
		return Config{}, fl, err
	}
	if fl.Demo {
		cfg.Demo.Enabled = true
	}
	if fl.StaticIdentities != "" {
		cfg.Processors.Identity.StaticIdentities = fl.StaticIdentities
	}
	if err := errors.Join(cfg.Validate(), cfg.ValidateMode(mode)); err != nil {
		return Config{}, fl, fmt.Errorf("invalid configuration:\n%w", err)
	}
	return cfg, fl, nil
}

// decodeYAML decodes strictly: an unknown or misspelt key is an error that
// names the line, not a silently ignored setting.
func decodeYAML(data []byte, cfg *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return nameFields(data, err)
	}
	return nil
}

var yamlLineRE = regexp.MustCompile(`line (\d+): `)

// nameFields adds the dotted field path to each "line N:" of a YAML error,
// so that a person reads "storage.metrics.retention" and not only a line.
func nameFields(data []byte, err error) error {
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil {
		return err
	}
	paths := map[int]string{}
	var walk func(n *yaml.Node, prefix string)
	walk = func(n *yaml.Node, prefix string) {
		switch n.Kind {
		case yaml.DocumentNode, yaml.SequenceNode:
			for _, c := range n.Content {
				walk(c, prefix)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := k.Value
				if prefix != "" {
					p = prefix + "." + k.Value
				}
				paths[k.Line] = p
				if v.Line != k.Line {
					paths[v.Line] = p
				}
				walk(v, p)
			}
		}
	}
	walk(&root, "")
	msg := yamlLineRE.ReplaceAllStringFunc(err.Error(), func(m string) string {
		line, _ := strconv.Atoi(yamlLineRE.FindStringSubmatch(m)[1])
		if p, ok := paths[line]; ok {
			return fmt.Sprintf("line %d (%s): ", line, p)
		}
		return m
	})
	return errors.New(msg)
}
