// Package promapi serves the Prometheus HTTP API (/api/v1/...) on the real
// PromQL engine over meshlens' metric storage, so that Grafana, Kiali and
// any other Prometheus client can read what meshlens stores.
//
// The handlers follow Prometheus' wire format: the same JSON envelope, value
// encoding, parameter parsing and error types with their HTTP statuses.
package promapi

import (
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
)

// Defaults applied by New to zero Options fields.
const (
	DefaultQueryTimeout     = 2 * time.Minute
	DefaultMaxSamples       = 50_000_000
	DefaultLookbackDelta    = 5 * time.Minute
	DefaultMaxSeries        = 10_000
	DefaultMaxRequestBytes  = 8 << 20
	DefaultSubqueryInterval = time.Minute
	DefaultMaxConcurrent    = 20
)

// BuildInfo is what /api/v1/status/buildinfo reports. Grafana reads Version
// as a Prometheus version; left empty it is the version of the linked
// Prometheus engine.
type BuildInfo struct {
	Version   string `json:"version"`
	Revision  string `json:"revision"`
	Branch    string `json:"branch"`
	BuildUser string `json:"buildUser"`
	BuildDate string `json:"buildDate"`
	GoVersion string `json:"goVersion"`
}

// RuntimeInfo is what /api/v1/status/runtimeinfo reports.
type RuntimeInfo struct {
	StartTime           time.Time `json:"startTime"`
	CWD                 string    `json:"CWD"`
	Hostname            string    `json:"hostname"`
	ServerTime          time.Time `json:"serverTime"`
	ReloadConfigSuccess bool      `json:"reloadConfigSuccess"`
	LastConfigTime      time.Time `json:"lastConfigTime"`
	CorruptionCount     int64     `json:"corruptionCount"`
	GoroutineCount      int       `json:"goroutineCount"`
	GOMAXPROCS          int       `json:"GOMAXPROCS"`
	GOMEMLIMIT          int64     `json:"GOMEMLIMIT"`
	GOGC                string    `json:"GOGC"`
	GODEBUG             string    `json:"GODEBUG"`
	StorageRetention    string    `json:"storageRetention"`
}

// MetadataEntry describes one metric family in /api/v1/metadata.
type MetadataEntry struct {
	Type string `json:"type"`
	Help string `json:"help"`
	Unit string `json:"unit"`
}

// Options configures an API. Only Queryable is required.
type Options struct {
	// Queryable is the metric storage, typically the embedded *tsdb.DB.
	Queryable storage.Queryable
	Logger    *slog.Logger
	// Registerer receives the PromQL engine's own metrics; nil skips them.
	Registerer prometheus.Registerer

	// QueryTimeout bounds every query (default 2m); a request's timeout
	// parameter can only shorten it.
	QueryTimeout time.Duration
	// MaxSamples is the most samples one query may hold in memory (default 50e6).
	MaxSamples int
	// LookbackDelta is how far back an instant selector looks (default 5m).
	LookbackDelta time.Duration
	// MaxSeries caps the answers of /series, /labels and /label/{name}/values
	// (default 10000); a longer answer is truncated with a warning.
	MaxSeries int
	// MaxRequestBytes bounds a POST body (default 8 MiB).
	MaxRequestBytes int64
	// MaxConcurrentQueries bounds the queries evaluated at once (default
	// 20); more wait for a slot until their timeout.
	MaxConcurrentQueries int

	// BuildInfo is served by /api/v1/status/buildinfo.
	BuildInfo BuildInfo
	// ConfigYAML returns the running configuration for /api/v1/status/config.
	ConfigYAML func() string
	// Flags returns the command-line flags for /api/v1/status/flags.
	Flags func() map[string]string
	// RuntimeInfo returns /api/v1/status/runtimeinfo; nil reports the
	// process's own figures.
	RuntimeInfo func() RuntimeInfo
	// Metadata returns metric metadata keyed by metric name for /api/v1/metadata.
	Metadata func() map[string][]MetadataEntry

	// Now returns the current time; tests set it. Defaults to time.Now.
	Now func() time.Time
}

// API serves the Prometheus HTTP API. Create it with New.
type API struct {
	opts      Options
	logger    *slog.Logger
	engine    *promql.Engine
	parser    parser.Parser
	queryable storage.Queryable
	now       func() time.Time
	startTime time.Time
	// slots holds one token per query being evaluated.
	slots chan struct{}
}

// New returns an API with its own PromQL engine. Call Close when done.
func New(opts Options) *API {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.QueryTimeout <= 0 {
		opts.QueryTimeout = DefaultQueryTimeout
	}
	if opts.MaxSamples <= 0 {
		opts.MaxSamples = DefaultMaxSamples
	}
	if opts.LookbackDelta <= 0 {
		opts.LookbackDelta = DefaultLookbackDelta
	}
	if opts.MaxSeries <= 0 {
		opts.MaxSeries = DefaultMaxSeries
	}
	if opts.MaxRequestBytes <= 0 {
		opts.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if opts.MaxConcurrentQueries <= 0 {
		opts.MaxConcurrentQueries = DefaultMaxConcurrent
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	p := parser.NewParser(parser.Options{})
	engine := promql.NewEngine(promql.EngineOpts{
		Logger:        opts.Logger,
		Reg:           opts.Registerer,
		MaxSamples:    opts.MaxSamples,
		Timeout:       opts.QueryTimeout,
		LookbackDelta: opts.LookbackDelta,
		// Subqueries without a step use this resolution, as Prometheus uses
		// its global evaluation interval.
		NoStepSubqueryIntervalFn: func(int64) int64 { return DefaultSubqueryInterval.Milliseconds() },
		EnableAtModifier:         true,
		EnableNegativeOffset:     true,
		Parser:                   p,
	})
	return &API{
		opts:      opts,
		logger:    opts.Logger,
		engine:    engine,
		parser:    p,
		queryable: opts.Queryable,
		now:       opts.Now,
		startTime: opts.Now(),
		slots:     make(chan struct{}, opts.MaxConcurrentQueries),
	}
}

// Engine returns the PromQL engine so that other query packages (topology)
// share its limits instead of creating their own.
func (a *API) Engine() *promql.Engine { return a.engine }

// Queryable returns the storage the API reads.
func (a *API) Queryable() storage.Queryable { return a.queryable }

// Close releases the engine.
func (a *API) Close() error { return a.engine.Close() }

// Register installs the /api/v1 handlers on mux. Query endpoints accept GET
// and form-encoded POST, as Grafana and Kiali send both.
func (a *API) Register(mux *http.ServeMux) {
	both := func(path string, f apiFunc) {
		h := a.wrap(f)
		mux.Handle("GET "+path, h)
		mux.Handle("POST "+path, h)
	}
	get := func(path string, f apiFunc) {
		mux.Handle("GET "+path, a.wrap(f))
	}
	both("/api/v1/query", a.query)
	both("/api/v1/query_range", a.queryRange)
	both("/api/v1/query_exemplars", a.queryExemplars)
	both("/api/v1/format_query", a.formatQuery)
	both("/api/v1/parse_query", a.parseQuery)
	both("/api/v1/series", a.series)
	both("/api/v1/labels", a.labelNames)
	both("/api/v1/label/{name}/values", a.labelValues)
	get("/api/v1/metadata", a.metadata)
	get("/api/v1/status/buildinfo", a.buildInfo)
	get("/api/v1/status/config", a.config)
	get("/api/v1/status/runtimeinfo", a.runtimeInfo)
	get("/api/v1/status/flags", a.flags)
	get("/api/v1/targets", a.targets)
	get("/api/v1/targets/metadata", a.emptyList)
	get("/api/v1/rules", a.rules)
	get("/api/v1/alerts", a.alerts)
	get("/api/v1/alertmanagers", a.alertmanagers)
	mux.HandleFunc("GET /federate", a.federate)
}
