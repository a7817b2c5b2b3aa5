// Package topology serves the service mesh graph: services (or instances,
// or endpoints) as nodes and the calls between them as edges, each with RED
// figures over a time range, computed with PromQL over the series meshlens
// stores (docs/metrics.md). It also serves the same graph in the shape of
// Grafana's Node Graph API data source.
package topology

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
)

// Defaults applied by New to zero Options fields.
const (
	DefaultMaxNodes     = 1000
	DefaultMaxEdges     = 5000
	DefaultQueryTimeout = 30 * time.Second
	DefaultWindow       = 5 * time.Minute
	// MaxWindow bounds the range a graph may cover.
	MaxWindow = 31 * 24 * time.Hour
	// minWindow is the shortest range worth asking: rate needs two samples
	// and meshlens flushes every 10 s by default.
	minWindow = time.Second
)

// Options configures an API. Engine and Queryable are required; pass the
// promapi engine so that both APIs share one set of limits.
type Options struct {
	Engine    promql.QueryEngine
	Queryable storage.Queryable
	Logger    *slog.Logger
	// MaxNodes and MaxEdges bound an answer; the busiest edges are kept and
	// the answer is marked truncated.
	MaxNodes int
	MaxEdges int
	// QueryTimeout bounds the queries of one graph (default 30s).
	QueryTimeout time.Duration
	// Now returns the current time; tests set it.
	Now func() time.Time
}

// API serves /api/meshlens/v1/topology and the Node Graph endpoints.
type API struct {
	opts   Options
	logger *slog.Logger
}

// New returns an API.
func New(opts Options) *API {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.MaxNodes <= 0 {
		opts.MaxNodes = DefaultMaxNodes
	}
	if opts.MaxEdges <= 0 {
		opts.MaxEdges = DefaultMaxEdges
	}
	if opts.QueryTimeout <= 0 {
		opts.QueryTimeout = DefaultQueryTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &API{opts: opts, logger: opts.Logger}
}

// Paths served by Register.
const (
	TopologyPath  = "/api/meshlens/v1/topology"
	NodeGraphBase = "/api/meshlens/v1/nodegraph"
)

// Register installs the handlers on mux.
func (a *API) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET "+TopologyPath, a.serveTopology)
	mux.HandleFunc("GET "+NodeGraphBase+"/api/health", a.serveHealth)
	mux.HandleFunc("GET "+NodeGraphBase+"/api/graph/fields", a.serveFields)
	mux.HandleFunc("GET "+NodeGraphBase+"/api/graph/data", a.serveNodeGraph)
}

// Level is the granularity of a graph.
type Level string

// Levels.
const (
	LevelService  Level = "service"
	LevelInstance Level = "instance"
	LevelEndpoint Level = "endpoint"
)

// Request selects a graph.
type Request struct {
	Start, End time.Time
	// Namespaces keeps the nodes of these namespaces and their direct
	// peers; empty means the whole mesh.
	Namespaces []string
	Level      Level
}

// Latency holds percentiles in milliseconds.
type Latency struct {
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
}

// TCP holds TCP figures per second.
type TCP struct {
	ConnectionsOpened float64 `json:"connectionsOpenedPerSecond"`
	SentBytes         float64 `json:"sentBytesPerSecond"`
	ReceivedBytes     float64 `json:"receivedBytesPerSecond"`
}

// RED is the rate, errors and duration of the traffic a node receives or
// an edge carries, averaged over the range.
type RED struct {
	// RequestRate is requests per second (HTTP and gRPC).
	RequestRate float64 `json:"requestRate"`
	// ErrorRate is failed requests per second: HTTP 5xx, a non-OK gRPC
	// status, or an Envoy response flag.
	ErrorRate float64 `json:"errorRate"`
	// ErrorRatio is ErrorRate / RequestRate, 0 without traffic.
	ErrorRatio float64 `json:"errorRatio"`
	// LatencyMs is nil when no duration histogram covers the traffic.
	LatencyMs *Latency `json:"latencyMs,omitempty"`
	// TCP is set when TCP traffic was seen.
	TCP *TCP `json:"tcp,omitempty"`
}

// Node is a service, instance or endpoint.
type Node struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Namespace string `json:"namespace,omitempty"`
	// Service is the owning service of an instance or endpoint node.
	Service string `json:"service,omitempty"`
	Kind    Level  `json:"kind"`
	// Unknown marks a peer that could not be resolved (model.Unknown).
	Unknown bool `json:"unknown,omitempty"`
	// Inbound is the traffic the node receives.
	Inbound RED `json:"inbound"`
	// OutboundRequestRate is the requests per second the node sends.
	OutboundRequestRate float64 `json:"outboundRequestRate"`
}

// Edge is the traffic from one node to another over one protocol.
type Edge struct {
	ID       string `json:"id"`
	Source   string `json:"source"`
	Target   string `json:"target"`
	Protocol string `json:"protocol"`
	// MTLS is "mutual_tls", "none", "mixed" or "unknown" (only the client
	// side reported, and it cannot know).
	MTLS string `json:"mtls"`
	// MTLSRatio is the share of traffic seen over mutual TLS.
	MTLSRatio float64 `json:"mtlsRatio"`
	// Reporter is the side whose figures the edge carries: "destination"
	// (server side) when it reported, else "source" (client side). The
	// destination's figures also count the failures the client's proxy
	// raised without sending the request (flags UH, UF, UO, NR, RL), which
	// only the source reports.
	Reporter string `json:"reporter"`
	// Reporters lists every side that reported the edge.
	Reporters []string `json:"reporters"`
	RED
}

// Graph is a topology answer.
type Graph struct {
	Level      Level     `json:"level"`
	Start      time.Time `json:"start"`
	End        time.Time `json:"end"`
	Namespaces []string  `json:"namespaces,omitempty"`
	Nodes      []Node    `json:"nodes"`
	Edges      []Edge    `json:"edges"`
	// Truncated says MaxNodes or MaxEdges cut the graph.
	Truncated bool `json:"truncated"`
}

// ErrBadRequest wraps parameter errors.
var ErrBadRequest = errors.New("bad request")

// ParseRequest reads start, end (RFC 3339 or unix seconds; end defaults to
// now, start to end-5m), namespace (comma-separated) and level.
func ParseRequest(r *http.Request, now time.Time) (Request, error) {
	q := r.URL.Query()
	req := Request{End: now, Level: LevelService}
	var err error
	if v := q.Get("end"); v != "" {
		if req.End, err = parseTime(v); err != nil {
			return req, fmt.Errorf("%w: end: %w", ErrBadRequest, err)
		}
	}
	req.Start = req.End.Add(-DefaultWindow)
	if v := q.Get("start"); v != "" {
		if req.Start, err = parseTime(v); err != nil {
			return req, fmt.Errorf("%w: start: %w", ErrBadRequest, err)
		}
	}
	w := req.End.Sub(req.Start)
	switch {
	case w < minWindow:
		return req, fmt.Errorf("%w: start must be at least %s before end", ErrBadRequest, minWindow)
	case w > MaxWindow:
		return req, fmt.Errorf("%w: range longer than %s", ErrBadRequest, MaxWindow)
	}
	for _, ns := range q["namespace"] {
		for _, n := range strings.Split(ns, ",") {
			if n = strings.TrimSpace(n); n != "" {
				if len(n) > 253 {
					return req, fmt.Errorf("%w: namespace longer than 253 bytes", ErrBadRequest)
				}
				req.Namespaces = append(req.Namespaces, n)
			}
		}
	}
	if len(req.Namespaces) > 100 {
		return req, fmt.Errorf("%w: more than 100 namespaces", ErrBadRequest)
	}
	if v := q.Get("level"); v != "" {
		switch Level(v) {
		case LevelService, LevelInstance, LevelEndpoint:
			req.Level = Level(v)
		default:
			return req, fmt.Errorf("%w: level must be service, instance or endpoint, not %q", ErrBadRequest, v)
		}
	}
	return req, nil
}

func parseTime(s string) (time.Time, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 1e11 {
			return time.Time{}, fmt.Errorf("timestamp %q out of range", s)
		}
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(math.Round(frac*1000))*int64(time.Millisecond)).UTC(), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("cannot parse %q as RFC 3339 or unix seconds", s)
	}
	return t, nil
}

func (a *API) serveTopology(w http.ResponseWriter, r *http.Request) {
	req, err := ParseRequest(r, a.opts.Now())
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	g, err := a.Graph(r.Context(), req)
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	writeJSON(w, http.StatusOK, g)
}

func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrBadRequest):
		return http.StatusBadRequest
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable
	}
	var (
		eqt promql.ErrQueryTimeout
		eqc promql.ErrQueryCanceled
	)
	if errors.As(err, &eqt) || errors.As(err, &eqc) {
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func writeError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, map[string]string{"status": "error", "error": err.Error()})
}
