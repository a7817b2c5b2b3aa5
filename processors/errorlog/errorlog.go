// Package errorlog keeps a sample of failed calls as log records that can be
// queried with the identities of both sides: every call with an HTTP status
// of 400 or more, a non-OK gRPC status, or any Envoy response flag.
//
// Records are rate-limited per (destination service, code) with a token
// bucket, so that one failing dependency cannot push every other error out,
// and are kept in a bounded in-memory ring: they are lost on restart and
// only the most recent Config.Capacity records are kept. Persisting them is
// left for later.
//
// Log implements pipeline.CallConsumer; it is meant to be one branch of the
// fan-out after identity resolution, so that records carry resolved names.
package errorlog

import (
	"context"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/meshlens/meshlens/model"
	"github.com/meshlens/meshlens/pipeline"
)

// Config sizes the log and its sampling.
type Config struct {
	// Capacity is how many records the ring keeps. Default 10000.
	Capacity int
	// RatePerSecond and Burst set the token bucket of each
	// (destination service, code) pair. Defaults 10 and 50.
	RatePerSecond float64
	Burst         int
	// MaxKeys bounds the number of token buckets; when it is reached, idle
	// buckets are dropped, and records of new pairs are sampled out until
	// room frees. Default 10000.
	MaxKeys int
	// MinStatus is the lowest HTTP status kept. Default 400.
	MinStatus int
}

func (c Config) withDefaults() Config {
	if c.Capacity <= 0 {
		c.Capacity = 10000
	}
	if c.RatePerSecond <= 0 {
		c.RatePerSecond = 10
	}
	if c.Burst <= 0 {
		c.Burst = 50
	}
	if c.MaxKeys <= 0 {
		c.MaxKeys = 10000
	}
	if c.MinStatus <= 0 {
		c.MinStatus = 400
	}
	return c
}

// Identity is one side of a recorded call.
type Identity struct {
	Service   string `json:"service,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	Cluster   string `json:"cluster,omitempty"`
	Workload  string `json:"workload,omitempty"`
	Version   string `json:"version,omitempty"`
	Instance  string `json:"instance,omitempty"`
	Principal string `json:"principal,omitempty"`
	IP        string `json:"ip,omitempty"`
}

// Record is one sampled failed call.
type Record struct {
	Time        time.Time `json:"time"`
	Source      Identity  `json:"source"`
	Destination Identity  `json:"destination"`
	Endpoint    string    `json:"endpoint,omitempty"`
	Method      string    `json:"method,omitempty"`
	Path        string    `json:"path,omitempty"`
	Authority   string    `json:"authority,omitempty"`
	// Status is the HTTP status, 0 when none was sent (TCP, or a reset).
	Status int `json:"status"`
	// GRPCStatus is the gRPC status code, absent when not gRPC or unknown.
	GRPCStatus *int `json:"grpc_status,omitempty"`
	// ResponseFlags are Envoy's short response flags, e.g. ["UF","URX"].
	ResponseFlags   []string `json:"response_flags,omitempty"`
	DurationMs      float64  `json:"duration_ms"`
	RequestID       string   `json:"request_id,omitempty"`
	UpstreamCluster string   `json:"upstream_cluster,omitempty"`
	DetectPoint     string   `json:"detect_point"`
	Protocol        string   `json:"protocol"`
	TLS             string   `json:"tls"`
	// Tenant is the tenant that sent the call (multi-tenancy on), else empty.
	Tenant string `json:"tenant,omitempty"`
}

// Filter selects records. Empty fields match everything.
type Filter struct {
	// Service and Namespace match when either side of the call has them
	// (both on the same side when both are set).
	Service, Namespace string
	// Code matches the HTTP status ("503"), its class ("5xx"), or the gRPC
	// status ("grpc:14").
	Code string
	// Flag matches when the record has this Envoy response flag.
	Flag string
	// Start and End bound the call's start time (inclusive).
	Start, End time.Time
	// Limit caps the number of records returned, newest first.
	Limit int
	// Tenant, when set, keeps only that tenant's records; multi-tenancy
	// sets it from the request, never from the query string.
	Tenant string
}

// Log is the bounded, sampled error log.
type Log struct {
	cfg    Config
	tel    *pipeline.Telemetry
	logger *slog.Logger
	now    func() time.Time

	mu        sync.RWMutex
	ring      []Record
	next      int // index of the slot the next record goes to
	full      bool
	buckets   map[bucketKey]*bucket
	lastPrune time.Time
}

type bucketKey struct {
	// tenant keeps one tenant's errors from using up another's budget.
	tenant, service, namespace, code string
}

type bucket struct {
	tokens float64
	last   time.Time
}

// New returns an empty log. tel may be nil; logger may be nil.
func New(cfg Config, tel *pipeline.Telemetry, logger *slog.Logger) *Log {
	cfg = cfg.withDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Log{
		cfg:     cfg,
		tel:     tel,
		logger:  logger.With("processor", "errorlog"),
		now:     time.Now,
		ring:    make([]Record, cfg.Capacity),
		buckets: map[bucketKey]*bucket{},
	}
}

// IsRecorded reports whether a call is an error the log keeps: an HTTP
// status of at least minStatus, a non-OK gRPC status, or any response flag.
func IsRecorded(c *model.Call, minStatus int) bool {
	return c.StatusCode >= minStatus || c.GRPCStatus > 0 || c.ResponseFlags != ""
}

// ConsumeCalls records the failed calls among calls that their token
// bucket admits. It never fails: the log is a best-effort sample.
func (l *Log) ConsumeCalls(_ context.Context, calls []model.Call) error {
	now := l.now()
	sampledOut := 0
	l.mu.Lock()
	for i := range calls {
		c := &calls[i]
		if !IsRecorded(c, l.cfg.MinStatus) {
			continue
		}
		if !l.admit(c, now) {
			sampledOut++
			continue
		}
		l.ring[l.next] = toRecord(c)
		l.next++
		if l.next == len(l.ring) {
			l.next, l.full = 0, true
		}
	}
	l.mu.Unlock()
	if sampledOut > 0 && l.tel != nil {
		l.tel.Dropped("errorlog", "sampled_out", sampledOut)
	}
	return nil
}

// code names the error for rate limiting: the HTTP status, else the gRPC
// status, else the response flags.
func code(c *model.Call) string {
	switch {
	case c.StatusCode > 0:
		return strconv.Itoa(c.StatusCode)
	case c.GRPCStatus > 0:
		return "grpc:" + strconv.Itoa(c.GRPCStatus)
	}
	return c.ResponseFlags
}

// admit takes a token from the call's bucket. l.mu is held.
func (l *Log) admit(c *model.Call, now time.Time) bool {
	k := bucketKey{tenant: c.Tenant, service: c.Destination.Service, namespace: c.Destination.Namespace, code: code(c)}
	b := l.buckets[k]
	if b == nil {
		if len(l.buckets) >= l.cfg.MaxKeys && !l.prune(now) {
			return false
		}
		b = &bucket{tokens: float64(l.cfg.Burst), last: now}
		l.buckets[k] = b
	}
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = min(float64(l.cfg.Burst), b.tokens+el*l.cfg.RatePerSecond)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// prune drops buckets that have refilled (an idle pair costs nothing to
// recreate), at most once a second. It reports whether room was made.
func (l *Log) prune(now time.Time) bool {
	if now.Sub(l.lastPrune) < time.Second {
		return false
	}
	l.lastPrune = now
	refill := time.Duration(float64(l.cfg.Burst) / l.cfg.RatePerSecond * float64(time.Second))
	for k, b := range l.buckets {
		if now.Sub(b.last) >= refill {
			delete(l.buckets, k)
		}
	}
	return len(l.buckets) < l.cfg.MaxKeys
}

func toRecord(c *model.Call) Record {
	r := Record{
		Time:            c.Start,
		Tenant:          c.Tenant,
		Source:          identity(c.Source),
		Destination:     identity(c.Destination),
		Endpoint:        c.Endpoint,
		Method:          c.Method,
		Path:            c.Path,
		Authority:       c.Authority,
		Status:          c.StatusCode,
		DurationMs:      float64(c.Duration) / float64(time.Millisecond),
		RequestID:       c.RequestID,
		UpstreamCluster: c.UpstreamCluster,
		DetectPoint:     c.DetectPoint.String(),
		Protocol:        c.Protocol.String(),
		TLS:             c.TLS.String(),
	}
	if c.GRPCStatus >= 0 && c.Protocol == model.ProtocolGRPC {
		g := c.GRPCStatus
		r.GRPCStatus = &g
	}
	if c.ResponseFlags != "" {
		r.ResponseFlags = strings.Split(c.ResponseFlags, ",")
	}
	return r
}

func identity(id model.Identity) Identity {
	return Identity{
		Service: id.Service, Namespace: id.Namespace, Cluster: id.Cluster, Workload: id.Workload,
		Version: id.Version, Instance: id.Instance, Principal: id.Principal, IP: id.IP,
	}
}

// Query returns the records that match f, newest first.
func (l *Log) Query(_ context.Context, f Filter) ([]Record, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	n := l.next
	if l.full {
		n = len(l.ring)
	}
	var out []Record
	// Walk back from the newest record.
	for i := 0; i < n; i++ {
		idx := (l.next - 1 - i + len(l.ring)) % len(l.ring)
		r := &l.ring[idx]
		if f.match(r) {
			out = append(out, *r)
		}
	}
	// Calls arrive roughly, not exactly, in time order.
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.After(out[j].Time) })
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}

func (f *Filter) match(r *Record) bool {
	if !f.Start.IsZero() && r.Time.Before(f.Start) {
		return false
	}
	if !f.End.IsZero() && r.Time.After(f.End) {
		return false
	}
	if f.Tenant != "" && r.Tenant != f.Tenant {
		return false
	}
	if f.Service != "" || f.Namespace != "" {
		side := func(id *Identity) bool {
			return (f.Service == "" || id.Service == f.Service) && (f.Namespace == "" || id.Namespace == f.Namespace)
		}
		if !side(&r.Source) && !side(&r.Destination) {
			return false
		}
	}
	if f.Code != "" && !matchCode(f.Code, r) {
		return false
	}
	if f.Flag != "" {
		found := false
		for _, fl := range r.ResponseFlags {
			if fl == f.Flag {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func matchCode(code string, r *Record) bool {
	if g, ok := strings.CutPrefix(code, "grpc:"); ok {
		return r.GRPCStatus != nil && strconv.Itoa(*r.GRPCStatus) == g
	}
	if len(code) == 3 && strings.HasSuffix(code, "xx") {
		return r.Status >= 100 && strconv.Itoa(r.Status)[0] == code[0]
	}
	return strconv.Itoa(r.Status) == code
}
