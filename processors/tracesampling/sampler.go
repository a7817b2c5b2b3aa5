// Package tracesampling thins spans at ingest with a per-service policy:
// a probabilistic share of traces, plus every failed span and every slow
// span whatever the share.
//
// The probabilistic decision is a function of the trace id alone, so it is
// the same for every span of a trace, in every batch, on every service and
// on every meshlens replica: a trace is either kept whole or dropped whole
// by services sampled at the same percentage, and a trace kept at p% is
// also kept by every service sampled above p%. Keep-errors and keep-slow
// are per span (a sampler at ingest cannot wait for the rest of a trace),
// so a dropped trace can leave its failed or slow spans behind: that is
// the point, they are what one wants to look at.
package tracesampling

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/meshlens/meshlens/pipeline"
)

// Policy is how one service's spans are sampled.
type Policy struct {
	// Percent of traces kept, 0 to 100.
	Percent float64 `yaml:"percent"`
	// KeepErrors keeps every span whose status is ERROR.
	KeepErrors bool `yaml:"keep_errors"`
	// SlowThreshold keeps every span at least this long; 0 disables.
	SlowThreshold time.Duration `yaml:"slow_threshold"`
}

// Config is the policy of each service, by service.name, and the default.
type Config struct {
	Default  Policy            `yaml:"default"`
	Services map[string]Policy `yaml:"services"`
}

// DefaultConfig keeps everything.
func DefaultConfig() Config { return Config{Default: Policy{Percent: 100, KeepErrors: true}} }

// Validate reports a policy out of range.
func (c Config) Validate() error {
	check := func(name string, p Policy) error {
		if p.Percent < 0 || p.Percent > 100 || p.Percent != p.Percent {
			return fmt.Errorf("tracesampling: %s: percent %v not in [0, 100]", name, p.Percent)
		}
		if p.SlowThreshold < 0 {
			return fmt.Errorf("tracesampling: %s: negative slow_threshold", name)
		}
		return nil
	}
	if err := check("default", c.Default); err != nil {
		return err
	}
	for svc, p := range c.Services {
		if err := check("service "+svc, p); err != nil {
			return err
		}
	}
	return nil
}

// Decision reasons, the "reason" label of the self-metric.
const (
	ReasonSampled = "probabilistic"
	ReasonError   = "error"
	ReasonSlow    = "slow"
	ReasonDropped = "dropped"
)

type compiled struct {
	threshold uint64 // keep when hash < threshold; all when keepAll
	keepAll   bool
	p         Policy
	label     string
}

func compile(label string, p Policy) compiled {
	c := compiled{p: p, label: label}
	switch {
	case p.Percent >= 100:
		c.keepAll = true
	case p.Percent > 0:
		c.threshold = uint64(p.Percent / 100 * (1 << 64))
	}
	return c
}

// Sampler is a pipeline.TraceConsumer that drops unsampled spans and hands
// the rest to the next consumer.
type Sampler struct {
	next     pipeline.TraceConsumer
	def      compiled
	services map[string]compiled
	// spans counts decisions by policy ("default" or the service name the
	// config names, so the label set is bounded by the config) and reason.
	spans *prometheus.CounterVec
}

// New returns a Sampler. Self-metrics (meshlens_tracesampling_spans_total)
// are registered on reg.
func New(cfg Config, next pipeline.TraceConsumer, reg prometheus.Registerer) (*Sampler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Sampler{
		next:     next,
		def:      compile("default", cfg.Default),
		services: make(map[string]compiled, len(cfg.Services)),
		spans: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_tracesampling_spans_total",
			Help: "Spans seen by the ingest sampler, by policy and decision (probabilistic, error, slow: kept; dropped).",
		}, []string{"policy", "reason"}),
	}
	for svc, p := range cfg.Services {
		s.services[svc] = compile(svc, p)
	}
	if reg != nil {
		if err := reg.Register(s.spans); err != nil {
			return nil, fmt.Errorf("tracesampling: registering metrics: %w", err)
		}
	}
	return s, nil
}

// TraceHash maps a trace id to a uniform 64-bit value. Only the lower 8
// bytes are random in a Zipkin 64-bit id (padded) and in W3C ids, so they
// carry the decision; the upper bytes are mixed in too so 128-bit ids that
// differ only there are still spread.
func TraceHash(id pcommon.TraceID) uint64 {
	lo := binary.BigEndian.Uint64(id[8:])
	hi := binary.BigEndian.Uint64(id[:8])
	return mix(lo ^ mix(hi))
}

// mix is the splitmix64 finaliser: a bijection that spreads every input
// bit over the output.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// Keep says whether policy p keeps a span, and why.
func (c *compiled) keep(sp ptrace.Span) (bool, string) {
	if c.keepAll || (c.threshold > 0 && TraceHash(sp.TraceID()) < c.threshold) {
		return true, ReasonSampled
	}
	if c.p.KeepErrors && sp.Status().Code() == ptrace.StatusCodeError {
		return true, ReasonError
	}
	if c.p.SlowThreshold > 0 && sp.EndTimestamp() > sp.StartTimestamp() &&
		time.Duration(sp.EndTimestamp()-sp.StartTimestamp()) >= c.p.SlowThreshold {
		return true, ReasonSlow
	}
	return false, ReasonDropped
}

func (s *Sampler) policy(res pcommon.Map) *compiled {
	if len(s.services) > 0 {
		if v, ok := res.Get("service.name"); ok {
			if c, ok := s.services[v.Str()]; ok {
				return &c
			}
		}
	}
	return &s.def
}

// ConsumeTraces drops unsampled spans from td (in place) and hands the
// rest on; when nothing is left it does not call the next consumer.
func (s *Sampler) ConsumeTraces(ctx context.Context, td ptrace.Traces) error {
	if td.IsReadOnly() {
		cp := ptrace.NewTraces()
		td.CopyTo(cp)
		td = cp
	}
	type key struct{ policy, reason string }
	counts := make(map[key]int, 4)
	td.ResourceSpans().RemoveIf(func(rs ptrace.ResourceSpans) bool {
		pol := s.policy(rs.Resource().Attributes())
		rs.ScopeSpans().RemoveIf(func(ss ptrace.ScopeSpans) bool {
			if pol.keepAll {
				counts[key{pol.label, ReasonSampled}] += ss.Spans().Len()
				return ss.Spans().Len() == 0
			}
			ss.Spans().RemoveIf(func(sp ptrace.Span) bool {
				keep, reason := pol.keep(sp)
				counts[key{pol.label, reason}]++
				return !keep
			})
			return ss.Spans().Len() == 0
		})
		return rs.ScopeSpans().Len() == 0
	})
	for k, n := range counts {
		s.spans.WithLabelValues(k.policy, k.reason).Add(float64(n))
	}
	if td.ResourceSpans().Len() == 0 {
		return nil
	}
	return s.next.ConsumeTraces(ctx, td)
}
