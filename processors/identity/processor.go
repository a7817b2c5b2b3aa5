// Package identity fills the sides of a call that the receiver could not
// name, so that every call has a source and a destination service.
//
// For a side whose Service is empty, the chain is:
//
//  1. peer metadata (already applied by the receiver: the side is named);
//  2. the destination's Envoy upstream cluster
//     ("outbound|9080|v1|reviews.default.svc.cluster.local" -> reviews in
//     default; BlackHoleCluster is named as such);
//  3. the request authority when there is no upstream cluster (no route,
//     "reviews:9080" resolves in the caller's namespace);
//  4. IP resolvers in order: the static file, then Kubernetes;
//  5. the authority host of passthrough traffic, else model.Unknown.
//
// Sources are named only by 4 and 5: the cluster and authority describe
// the destination. A resolved IP also fills workload, version and instance
// of a side named by its cluster or authority.
package identity

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/meshlens/meshlens/model"
)

// Well-known workload labels.
const (
	LabelCanonicalName     = "service.istio.io/canonical-name"
	LabelCanonicalRevision = "service.istio.io/canonical-revision"
	LabelApp               = "app"
)

// Naming chooses a service name for a workload found by IP.
type Naming struct {
	// Labels are tried in order; the workload name is the fallback.
	// Default: Istio's canonical-name label, then app.
	Labels []string `yaml:"labels"`
	// QualifyNamespace names services "name.namespace" everywhere (for
	// meshes where the same short name lives in several namespaces).
	QualifyNamespace bool `yaml:"qualify_namespace"`
}

func (n Naming) withDefaults() Naming {
	if n.Labels == nil {
		n.Labels = []string{LabelCanonicalName, LabelApp}
	}
	return n
}

// ServiceName applies the label rules to a workload's labels. Namespace
// qualification is applied later, once, to every side of a call.
func (n Naming) ServiceName(labels map[string]string, workload string) string {
	for _, k := range n.Labels {
		if v := labels[k]; v != "" {
			return v
		}
	}
	return workload
}

func (n Naming) qualify(name, namespace string) string {
	if !n.QualifyNamespace || namespace == "" || name == "" || name == model.Unknown {
		return name
	}
	return name + "." + namespace
}

// Config configures the processor.
type Config struct {
	Naming Naming `yaml:"naming"`
	// StaticIdentities is the path of a YAML static identity list
	// (--static-identities); empty for none.
	StaticIdentities string `yaml:"static_identities"`
	// ClusterCacheSize bounds the cache of parsed upstream cluster names.
	ClusterCacheSize int `yaml:"cluster_cache_size"`
}

// DefaultConfig is Istio's naming and a 4096-entry cluster cache.
func DefaultConfig() Config {
	return Config{Naming: Naming{}.withDefaults(), ClusterCacheSize: 4096}
}

// Validate reports an unusable configuration.
func (c Config) Validate() error {
	if c.ClusterCacheSize < 0 {
		return fmt.Errorf("identity: cluster_cache_size must not be negative, got %d", c.ClusterCacheSize)
	}
	for _, l := range c.Naming.Labels {
		if l == "" {
			return fmt.Errorf("identity: naming.labels contains an empty label key")
		}
	}
	return nil
}

// Processor resolves unnamed sides of calls. It is safe for concurrent use
// by the queue's workers.
type Processor struct {
	cfg       Config
	naming    Naming
	resolvers []IPResolver
	logger    *slog.Logger

	mu       sync.RWMutex
	clusters map[string]clusterEntry
}

type clusterEntry struct {
	c  Cluster
	ok bool
}

// New returns a processor. When cfg.StaticIdentities is set the file is
// loaded and consulted first; resolvers (for example a *KubeResolver)
// follow in the order given.
func New(cfg Config, logger *slog.Logger, resolvers ...IPResolver) (*Processor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ClusterCacheSize == 0 {
		cfg.ClusterCacheSize = DefaultConfig().ClusterCacheSize
	}
	p := &Processor{
		cfg:      cfg,
		naming:   cfg.Naming.withDefaults(),
		logger:   logger,
		clusters: make(map[string]clusterEntry),
	}
	if cfg.StaticIdentities != "" {
		s, err := LoadStaticFile(cfg.StaticIdentities)
		if err != nil {
			return nil, err
		}
		logger.Info("loaded static identities", "file", cfg.StaticIdentities, "entries", s.Len())
		p.resolvers = append(p.resolvers, s)
	}
	for _, r := range resolvers {
		if r != nil {
			p.resolvers = append(p.resolvers, r)
		}
	}
	return p, nil
}

// ProcessCalls implements pipeline.CallProcessor.
func (p *Processor) ProcessCalls(_ context.Context, calls []model.Call) {
	for i := range calls {
		p.resolve(&calls[i])
	}
}

func (p *Processor) cluster(name string) (Cluster, bool) {
	if name == "" {
		return Cluster{}, false
	}
	p.mu.RLock()
	e, hit := p.clusters[name]
	p.mu.RUnlock()
	if hit {
		return e.c, e.ok
	}
	c, ok := ParseUpstreamCluster(name)
	p.mu.Lock()
	if len(p.clusters) >= p.cfg.ClusterCacheSize {
		// Cluster names are few in a mesh; a full cache means churn, and
		// starting over keeps memory bounded without LRU bookkeeping.
		clear(p.clusters)
	}
	p.clusters[name] = clusterEntry{c, ok}
	p.mu.Unlock()
	return c, ok
}

func (p *Processor) resolveIP(id *model.Identity) bool {
	if id.IP == "" || len(p.resolvers) == 0 {
		return false
	}
	_, port := splitHostPort(id.Instance)
	for _, r := range p.resolvers {
		if got, ok := r.ResolveIP(id.IP, port); ok {
			merge(id, got)
			return true
		}
	}
	return false
}

// merge copies what a resolver found into the empty fields of id.
func merge(id *model.Identity, got model.Identity) {
	if id.Service == "" {
		id.Service = got.Service
		if id.Namespace == "" {
			id.Namespace = got.Namespace
		}
	}
	if id.Workload == "" {
		id.Workload = got.Workload
	}
	if id.Version == "" {
		id.Version = got.Version
	}
	if id.Cluster == "" {
		id.Cluster = got.Cluster
	}
	if got.Instance != "" && (id.Instance == "" || id.Instance == id.IP || isAddr(id.Instance)) {
		id.Instance = got.Instance
	}
}

func isAddr(s string) bool {
	h, _ := splitHostPort(s)
	return isIP(h)
}

func (p *Processor) resolve(c *model.Call) {
	if c.Destination.Service == "" {
		p.resolveDestination(c)
	}
	if c.Source.Service == "" {
		if !p.resolveIP(&c.Source) {
			c.Source.Service = model.Unknown
		}
	}
	finish(&c.Source, p.naming)
	finish(&c.Destination, p.naming)
}

func (p *Processor) resolveDestination(c *model.Call) {
	d := &c.Destination
	cl, ok := p.cluster(c.UpstreamCluster)
	if ok && cl.Kind == ClusterOutbound && cl.Service != "" {
		d.Service, d.Namespace = cl.Service, cl.Namespace
		p.resolveIP(d) // enrich workload/version/instance
		return
	}
	if c.UpstreamCluster == "" {
		if a, ok := ParseAuthority(c.Authority); ok {
			if a.Service != "" {
				d.Service, d.Namespace = a.Service, a.Namespace
				if d.Namespace == "" && !a.External {
					// A short name resolves in the caller's namespace.
					d.Namespace = c.Source.Namespace
				}
				p.resolveIP(d)
				return
			}
			if d.IP == "" {
				d.IP = a.IP
			}
		}
	}
	if p.resolveIP(d) {
		return
	}
	switch {
	case ok && cl.Kind == ClusterBlackHole:
		d.Service = "BlackHoleCluster"
	case ok && cl.Kind == ClusterPassthrough:
		if a, aok := ParseAuthority(c.Authority); aok && a.Service != "" {
			d.Service, d.Namespace = a.Service, a.Namespace
		} else {
			d.Service = model.Unknown
		}
	default:
		d.Service = model.Unknown
	}
}

// finish applies naming to a resolved side and names unresolved parts.
func finish(id *model.Identity, n Naming) {
	if id.Service == model.Unknown {
		if id.Namespace == "" {
			// An mTLS peer's certificate still says its namespace.
			id.Namespace = spiffeNamespace(id.Principal)
		}
		if id.Namespace == "" {
			id.Namespace = model.Unknown
		}
	} else if n.QualifyNamespace {
		id.Service = n.qualify(id.Service, id.Namespace)
	}
	if id.Instance == "" {
		id.Instance = id.IP
	}
}

// spiffeNamespace returns NS from "spiffe://TRUST_DOMAIN/ns/NS/sa/SA".
func spiffeNamespace(p string) string {
	rest, ok := strings.CutPrefix(p, "spiffe://")
	if !ok {
		return ""
	}
	_, path, ok := strings.Cut(rest, "/")
	if !ok {
		return ""
	}
	ns, ok := strings.CutPrefix(path, "ns/")
	if !ok {
		return ""
	}
	ns, _, ok = strings.Cut(ns, "/")
	if !ok {
		return ""
	}
	return ns
}
