// Package endpoints names the destination operation of every call
// (model.Call.Endpoint) and keeps the number of distinct endpoints bounded.
//
// HTTP calls are named "METHOD:/path" with the query string dropped and
// high-cardinality segments templated ("GET:/api/users/{id}"); gRPC calls
// by their method path ("/hipstershop.CartService/GetCart"); TCP calls get
// no endpoint. Templating applies, in order: configured regex rules (per
// service or global), the automatic identifier rule (numbers, UUIDs, hex
// hashes, long tokens, dates -> {id}), and an adaptive rule: once a path
// position under a given prefix has seen more than AdaptiveThreshold
// distinct values, it becomes {param}.
//
// Memory is bounded by hard caps: distinct endpoints per service, in total,
// tracked services, and the adaptive state. Calls that would exceed a cap
// are named OverflowEndpoint and counted in
// meshlens_endpoints_overflow_total{reason}.
package endpoints

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshlens/meshlens/model"
)

// Rule rewrites paths before automatic templating.
type Rule struct {
	// Service limits the rule to one destination service; empty for all.
	Service string `yaml:"service"`
	// Match is a regular expression (RE2) on the path without query.
	Match string `yaml:"match"`
	// Replace is the replacement, with $1-style group references.
	Replace string `yaml:"replace"`
}

// Config bounds the endpoint state. Start from DefaultConfig.
type Config struct {
	// MaxEndpointsPerService is the cap of distinct endpoints per service.
	MaxEndpointsPerService int `yaml:"max_endpoints_per_service"`
	// MaxServices is the number of services whose endpoints are tracked;
	// further services' calls go to OverflowEndpoint.
	MaxServices int `yaml:"max_services"`
	// MaxEndpointsTotal caps endpoints across all services.
	MaxEndpointsTotal int `yaml:"max_endpoints_total"`
	// AdaptiveThreshold is the number of distinct values a path position
	// (under one prefix) may take before it collapses to {param}.
	AdaptiveThreshold int `yaml:"adaptive_threshold"`
	// DisableAdaptive turns the adaptive rule off.
	DisableAdaptive bool `yaml:"disable_adaptive"`
	// MaxPrefixesPerService bounds the positions the adaptive rule watches
	// per service.
	MaxPrefixesPerService int `yaml:"max_prefixes_per_service"`
	// MaxTrackedValues caps the distinct segment values remembered by the
	// adaptive rule across all services.
	MaxTrackedValues int `yaml:"max_tracked_values"`
	// MaxSegments is the number of path segments kept; the rest becomes
	// {rest}.
	MaxSegments int `yaml:"max_segments"`
	// Rules are applied in order; the first that matches rewrites the path.
	Rules []Rule `yaml:"rules"`
}

// DefaultConfig: 1000 endpoints per service, 10,000 services, 200,000
// endpoints in all, adaptive collapse past 50 distinct values.
func DefaultConfig() Config {
	return Config{
		MaxEndpointsPerService: 1000,
		MaxServices:            10000,
		MaxEndpointsTotal:      200000,
		AdaptiveThreshold:      50,
		MaxPrefixesPerService:  512,
		MaxTrackedValues:       500000,
		MaxSegments:            32,
	}
}

// Validate checks the limits and compiles nothing (New compiles the rules).
func (c Config) Validate() error {
	for name, v := range map[string]int{
		"max_endpoints_per_service": c.MaxEndpointsPerService,
		"max_services":              c.MaxServices,
		"max_endpoints_total":       c.MaxEndpointsTotal,
		"max_prefixes_per_service":  c.MaxPrefixesPerService,
		"max_tracked_values":        c.MaxTrackedValues,
		"max_segments":              c.MaxSegments,
	} {
		if v <= 0 {
			return fmt.Errorf("endpoints: %s must be positive, got %d", name, v)
		}
	}
	if !c.DisableAdaptive && c.AdaptiveThreshold <= 0 {
		return fmt.Errorf("endpoints: adaptive_threshold must be positive, got %d", c.AdaptiveThreshold)
	}
	for i, r := range c.Rules {
		if _, err := regexp.Compile(r.Match); err != nil {
			return fmt.Errorf("endpoints: rule %d: match %q: %w", i+1, r.Match, err)
		}
	}
	return nil
}

type compiledRule struct {
	service string
	re      *regexp.Regexp
	replace string
}

type position struct {
	values    map[string]struct{}
	collapsed bool
}

type service struct {
	endpoints map[string]string // interned names
	prefixes  map[string]*position
}

// Processor implements pipeline.CallProcessor. It is safe for concurrent
// use; the queue's workers share its state under one mutex.
type Processor struct {
	cfg    Config
	rules  []compiledRule
	logger *slog.Logger

	overflow *prometheus.CounterVec

	mu       sync.Mutex
	services map[model.ServiceID]*service
	total    int // endpoints across services
	values   int // adaptive values across services
	buf      []byte
}

// Overflow reasons.
const (
	reasonEndpointCap = "endpoint_cap"
	reasonTotalCap    = "total_cap"
	reasonServiceCap  = "service_cap"
)

// New returns a processor; reg receives meshlens_endpoints_overflow_total
// (nil: not registered).
func New(cfg Config, reg prometheus.Registerer, logger *slog.Logger) (*Processor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	p := &Processor{
		cfg:      cfg,
		logger:   logger,
		services: make(map[model.ServiceID]*service),
		overflow: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_endpoints_overflow_total",
			Help: "Calls named {overflow} because an endpoint cardinality cap was reached, by cap.",
		}, []string{"reason"}),
	}
	for _, r := range cfg.Rules {
		p.rules = append(p.rules, compiledRule{service: r.Service, re: regexp.MustCompile(r.Match), replace: r.Replace})
	}
	if reg != nil {
		if err := reg.Register(p.overflow); err != nil {
			return nil, fmt.Errorf("endpoints: register self-metrics: %w", err)
		}
	}
	return p, nil
}

// Stats reports the tracked state, for tests and debugging.
type Stats struct {
	Services, Endpoints, TrackedValues int
}

// Stats returns the current sizes.
func (p *Processor) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Stats{Services: len(p.services), Endpoints: p.total, TrackedValues: p.values}
}

// EndpointCount is the number of distinct endpoints of one service.
func (p *Processor) EndpointCount(id model.ServiceID) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s := p.services[id]; s != nil {
		return len(s.endpoints)
	}
	return 0
}

// ProcessCalls implements pipeline.CallProcessor.
func (p *Processor) ProcessCalls(_ context.Context, calls []model.Call) {
	for i := range calls {
		c := &calls[i]
		if c.Protocol == model.ProtocolTCP {
			c.Endpoint = ""
			continue
		}
		path := stripQuery(c.Path)
		if c.Endpoint == "" && path == "" && c.Method == "" {
			continue // nothing to name (a gRPC/HTTP record without request line)
		}
		if c.Protocol == model.ProtocolHTTP && c.Endpoint == "" {
			path = p.applyRules(c.Destination.Service, path)
		}
		p.mu.Lock()
		c.Endpoint = p.name(c, path)
		p.mu.Unlock()
	}
}

func (p *Processor) applyRules(svc, path string) string {
	for _, r := range p.rules {
		if r.service != "" && r.service != svc {
			continue
		}
		if r.re.MatchString(path) {
			return r.re.ReplaceAllString(path, r.replace)
		}
	}
	return path
}

// name builds and interns the endpoint of one call. Called with p.mu held.
func (p *Processor) name(c *model.Call, path string) string {
	sid := c.Destination.ServiceID()
	s := p.services[sid]
	if s == nil {
		if len(p.services) >= p.cfg.MaxServices {
			p.overflow.WithLabelValues(reasonServiceCap).Inc()
			return OverflowEndpoint
		}
		s = &service{endpoints: make(map[string]string), prefixes: make(map[string]*position)}
		p.services[sid] = s
	}
	b := p.buf[:0]
	switch {
	case c.Endpoint != "":
		// Already named upstream (for example by a SkyWalking receiver):
		// only the cap applies.
		b = append(b, c.Endpoint...)
	case c.Protocol == model.ProtocolGRPC && path != "":
		b = append(b, path...)
	default:
		b = p.template(b, s, c.Method, path)
	}
	p.buf = b
	if name, ok := s.endpoints[string(b)]; ok {
		return name
	}
	if len(s.endpoints) >= p.cfg.MaxEndpointsPerService {
		p.overflow.WithLabelValues(reasonEndpointCap).Inc()
		return OverflowEndpoint
	}
	if p.total >= p.cfg.MaxEndpointsTotal {
		p.overflow.WithLabelValues(reasonTotalCap).Inc()
		return OverflowEndpoint
	}
	name := string(b)
	s.endpoints[name] = name
	p.total++
	return name
}

// maxPathBytes bounds the templated path; longer ones end in {rest}.
const maxPathBytes = 512

// template appends "METHOD:/templated/path" to b.
func (p *Processor) template(b []byte, s *service, method, path string) []byte {
	b = append(b, method...)
	b = append(b, ':')
	if path == "" || path[0] != '/' {
		b = append(b, '/')
		if path == "" {
			return b
		}
	} else {
		path = path[1:]
		b = append(b, '/')
	}
	for seg := 0; ; seg++ {
		part := path
		last := true
		for i := 0; i < len(path); i++ {
			if path[i] == '/' {
				part, path, last = path[:i], path[i+1:], false
				break
			}
		}
		if (seg >= p.cfg.MaxSegments && !(last && part == "")) || len(b) > maxPathBytes {
			return append(b, RestPlaceholder...)
		}
		switch {
		case isIDSegment(part):
			b = append(b, IDPlaceholder...)
		case part == "" || p.cfg.DisableAdaptive:
			b = append(b, part...)
		default:
			b = p.adaptive(b, s, part)
		}
		if last {
			return b
		}
		b = append(b, '/')
	}
}

// adaptive appends part, or {param} when its position (the prefix already
// in b) has seen too many distinct values.
func (p *Processor) adaptive(b []byte, s *service, part string) []byte {
	pos := s.prefixes[string(b)]
	if pos == nil {
		if len(s.prefixes) >= p.cfg.MaxPrefixesPerService {
			return append(b, part...) // untracked: the endpoint cap still applies
		}
		pos = &position{values: make(map[string]struct{})}
		s.prefixes[string(b)] = pos
	}
	if pos.collapsed {
		return append(b, ParamPlaceholder...)
	}
	if _, ok := pos.values[part]; ok {
		return append(b, part...)
	}
	if len(pos.values) >= p.cfg.AdaptiveThreshold {
		p.values -= len(pos.values)
		pos.values = nil
		pos.collapsed = true
		return append(b, ParamPlaceholder...)
	}
	if p.values >= p.cfg.MaxTrackedValues {
		return append(b, part...)
	}
	pos.values[part] = struct{}{}
	p.values++
	return append(b, part...)
}
