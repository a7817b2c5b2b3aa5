// Package xdspush serves the recommended local rate limits to Envoy over
// xDS. It runs a go-control-plane management server (ADS and the
// standalone Extension Config Discovery Service on one gRPC listener)
// whose resources are ECDS TypedExtensionConfigs holding Envoy's
// envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit: a
// sidecar whose HTTP filter chain has a local_ratelimit filter with
// config_discovery pointing here receives its own service's limit.
//
// It is off by default, and dry-run first: in dry-run mode the server
// accepts streams (so operators can see which sidecars connect and what
// service they map to) but serves no resources, and the would-be
// configuration is only recorded and shown (see Handler). docs/recommendations.md
// describes the Envoy and Istio configuration.
package xdspush

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	extensionv3 "github.com/envoyproxy/go-control-plane/envoy/service/extension/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/log"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"

	"github.com/meshlens/meshlens/processors/recommend"
)

// TypeURL is the type of every resource served: ECDS.
const TypeURL = resourcev3.ExtensionConfigType

// Source is where the limits come from: the recommendation engine.
type Source interface {
	Recommendations(recommend.Filter) []recommend.Recommendation
	// LastRecompute changes when the recommendations may have changed.
	LastRecompute() time.Time
}

// Config tunes the pusher. Zero values take the defaults on each field.
type Config struct {
	// DryRun computes and records what would be served but serves nothing.
	DryRun bool
	// SyncEvery is how often the source is checked for a new
	// recomputation (default 1s; a check without one costs nothing).
	SyncEvery time.Duration
	// HistoryLimit bounds the recorded pushes (default 100).
	HistoryLimit int
	// MaxNodes bounds the nodes and services tracked from connections
	// (default 10,000); beyond it new ones are served but not tracked.
	MaxNodes int
	// StopGrace is how long Serve waits for streams to end on shutdown
	// before cutting them (default 2s; xDS streams never end by themselves).
	StopGrace time.Duration
	// ServerOptions are added to the gRPC server's (TLS credentials).
	ServerOptions []grpc.ServerOption
	// Now is the clock (default time.Now).
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.SyncEvery <= 0 {
		c.SyncEvery = time.Second
	}
	if c.HistoryLimit <= 0 {
		c.HistoryLimit = 100
	}
	if c.MaxNodes <= 0 {
		c.MaxNodes = 10000
	}
	if c.StopGrace <= 0 {
		c.StopGrace = 2 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Push is one change of what is (or, in dry-run mode, would be) served.
type Push struct {
	Generation int       `json:"generation"`
	At         time.Time `json:"at"`
	DryRun     bool      `json:"dry_run"`
	// Changed are the services whose limit changed (new, different, or
	// withdrawn and now served the pass-through config).
	Changed []ServiceChange `json:"changed"`
}

// ServiceChange is one service's new version in a Push.
type ServiceChange struct {
	Service string `json:"service"`
	Version string `json:"version"`
	// RatePerSecond is the service-wide limit; 0 means the pass-through
	// config (no limit enforced).
	RatePerSecond  float64 `json:"rate_per_second"`
	EndpointLimits int     `json:"endpoint_limits,omitempty"`
}

// Pusher keeps an xDS snapshot cache in step with the recommended rate
// limits and serves it. Create it with New and run Serve.
type Pusher struct {
	cfg   Config
	src   Source
	log   *slog.Logger
	cache cachev3.SnapshotCache
	wake  chan struct{}

	// syncMu serializes Sync; it is held while calling the cache, so
	// nothing the cache calls back (nodeHash, callbacks) may take it.
	syncMu   sync.Mutex
	lastSeen time.Time

	// mu guards what Sync publishes for readers (the status endpoint).
	mu         sync.RWMutex
	served     map[string]*serviceLimit
	generation int
	history    []Push

	// nodesMu guards what the xDS server's callbacks record.
	nodesMu  sync.Mutex
	services map[string]struct{} // seen from nodes
	newSvc   bool
	nodes    map[string]*NodeStatus
	streams  map[int64]*streamState
}

type streamState struct {
	node     string
	lastSent string // version of the last response on the stream
}

// NodeStatus is what is known of one connected (or once connected) Envoy.
type NodeStatus struct {
	ID        string    `json:"id"`
	Service   string    `json:"service"`
	Connected bool      `json:"connected"`
	LastSeen  time.Time `json:"last_seen"`
	// SentVersion is the last version sent, AckedVersion the last the
	// node accepted; a NACK records the error and the version rejected.
	SentVersion     string    `json:"sent_version,omitempty"`
	AckedVersion    string    `json:"acked_version,omitempty"`
	RejectedVersion string    `json:"rejected_version,omitempty"`
	RejectError     string    `json:"reject_error,omitempty"`
	RejectedAt      time.Time `json:"rejected_at,omitzero"`
}

// New creates a pusher reading limits from src; log may be nil.
func New(cfg Config, src Source, logger *slog.Logger) *Pusher {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	p := &Pusher{
		cfg:      cfg.withDefaults(),
		src:      src,
		log:      logger,
		wake:     make(chan struct{}, 1),
		served:   map[string]*serviceLimit{},
		services: map[string]struct{}{},
		nodes:    map[string]*NodeStatus{},
		streams:  map[int64]*streamState{},
	}
	// Not ADS-consistent: a request naming only one of a snapshot's two
	// names would otherwise never be answered.
	p.cache = cachev3.NewSnapshotCache(false, nodeHash{p}, cacheLogger{logger})
	return p
}

// DryRun reports whether the pusher only records what it would serve.
func (p *Pusher) DryRun() bool { return p.cfg.DryRun }

// Serve serves xDS on ln and keeps the served limits in step with the
// source until ctx ends; it then stops the gRPC server, which closes ln
// and every stream, and returns.
func (p *Pusher) Serve(ctx context.Context, ln net.Listener) error {
	srv := grpc.NewServer(p.cfg.ServerOptions...)
	xds := serverv3.NewServer(ctx, p.cache, p.callbacks())
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(srv, xds)
	extensionv3.RegisterExtensionConfigDiscoveryServiceServer(srv, xds)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	p.Sync()
	t := time.NewTicker(p.cfg.SyncEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			p.Sync()
		case <-p.wake:
			p.Sync()
		case err := <-served:
			return fmt.Errorf("xdspush: serve %s: %w", ln.Addr(), err)
		case <-ctx.Done():
			stopped := make(chan struct{})
			go func() { srv.GracefulStop(); close(stopped) }()
			select {
			case <-stopped:
			case <-time.After(p.cfg.StopGrace):
				srv.Stop()
				<-stopped
			}
			if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				return fmt.Errorf("xdspush: serve %s: %w", ln.Addr(), err)
			}
			return nil
		}
	}
}

// Sync brings the served (or, in dry-run mode, recorded) limits up to
// date with the source. Serve calls it; tests call it directly.
func (p *Pusher) Sync() {
	p.syncMu.Lock()
	defer p.syncMu.Unlock()
	last := p.src.LastRecompute()
	p.nodesMu.Lock()
	newSvc := p.newSvc
	p.newSvc = false
	known := make([]string, 0, len(p.services))
	for s := range p.services {
		known = append(known, s)
	}
	p.nodesMu.Unlock()
	if last.Equal(p.lastSeen) && !newSvc {
		return
	}
	p.lastSeen = last

	want := buildLimits(p.src.Recommendations(recommend.Filter{Kind: recommend.KindRateLimit}))
	p.mu.RLock()
	prev := p.served
	p.mu.RUnlock()
	// Services once limited, or with a node connected, are served the
	// pass-through config when they have no limit.
	for s := range prev {
		if want[s] == nil {
			want[s] = passThrough(s)
		}
	}
	for _, s := range known {
		if want[s] == nil {
			want[s] = passThrough(s)
		}
	}
	var changed []ServiceChange
	for s, sl := range want {
		if old := prev[s]; old != nil && old.version == sl.version {
			want[s] = old
			continue
		}
		changed = append(changed, ServiceChange{Service: s, Version: sl.version, RatePerSecond: sl.rate, EndpointLimits: sl.endpoints})
		if p.cfg.DryRun {
			continue
		}
		if err := p.setSnapshot(sl); err != nil {
			// Keep the old version recorded, so the next sync retries.
			p.log.Error("xds push: snapshot not set", "service", s, "err", err)
			if old := prev[s]; old != nil {
				want[s] = old
			} else {
				delete(want, s)
			}
			changed = changed[:len(changed)-1]
		}
	}
	if len(changed) == 0 {
		return
	}
	sort.Slice(changed, func(i, j int) bool { return changed[i].Service < changed[j].Service })
	now := p.cfg.Now()
	p.mu.Lock()
	p.served = want
	p.generation++
	push := Push{Generation: p.generation, At: now, DryRun: p.cfg.DryRun, Changed: changed}
	if len(p.history) >= p.cfg.HistoryLimit {
		p.history = append(p.history[:0], p.history[1:]...)
	}
	p.history = append(p.history, push)
	p.mu.Unlock()

	limited := 0
	for _, sl := range want {
		if sl.rate > 0 {
			limited++
		}
	}
	msg := "xds push: serving new rate-limit versions"
	if p.cfg.DryRun {
		msg = "xds push (dry run): would serve new rate-limit versions; nothing sent"
	}
	p.log.Info(msg, "generation", push.Generation, "changed", len(changed), "services", len(want),
		"limited", limited, "first", changed[0].Service, "first_version", changed[0].Version)
}

func (p *Pusher) setSnapshot(sl *serviceLimit) error {
	ecs, err := extensionConfigs(sl)
	if err != nil {
		return err
	}
	res := make([]types.Resource, len(ecs))
	for i, ec := range ecs {
		res[i] = ec
	}
	snap, err := cachev3.NewSnapshot(sl.version, map[resourcev3.Type][]types.Resource{TypeURL: res})
	if err != nil {
		return fmt.Errorf("xdspush: snapshot of %s: %w", sl.service, err)
	}
	if err := p.cache.SetSnapshot(context.Background(), sl.service, snap); err != nil {
		return fmt.Errorf("xdspush: set snapshot of %s: %w", sl.service, err)
	}
	return nil
}

// noteService records a service seen from a node; one not served yet
// wakes Serve, so its nodes get the pass-through config at once.
func (p *Pusher) noteService(svc string) {
	p.nodesMu.Lock()
	defer p.nodesMu.Unlock()
	if _, ok := p.services[svc]; ok || len(p.services) >= p.cfg.MaxNodes {
		return
	}
	p.services[svc] = struct{}{}
	p.newSvc = true
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// callbacks record every node's stream, what it was sent and what it
// accepted or rejected.
func (p *Pusher) callbacks() serverv3.Callbacks {
	return serverv3.CallbackFuncs{
		StreamOpenFunc: func(_ context.Context, id int64, _ string) error {
			p.nodesMu.Lock()
			defer p.nodesMu.Unlock()
			p.streams[id] = &streamState{}
			return nil
		},
		StreamClosedFunc: func(id int64, n *corev3.Node) {
			p.nodesMu.Lock()
			defer p.nodesMu.Unlock()
			if st := p.streams[id]; st != nil && p.nodes[st.node] != nil {
				p.nodes[st.node].Connected = false
			}
			delete(p.streams, id)
		},
		StreamRequestFunc: p.onRequest,
		StreamResponseFunc: func(_ context.Context, id int64, _ *discoveryv3.DiscoveryRequest, resp *discoveryv3.DiscoveryResponse) {
			p.nodesMu.Lock()
			defer p.nodesMu.Unlock()
			st := p.streams[id]
			if st == nil {
				return
			}
			st.lastSent = resp.GetVersionInfo()
			if ns := p.nodes[st.node]; ns != nil {
				ns.SentVersion = st.lastSent
			}
		},
	}
}

func (p *Pusher) onRequest(id int64, req *discoveryv3.DiscoveryRequest) error {
	p.nodesMu.Lock()
	defer p.nodesMu.Unlock()
	st := p.streams[id]
	if st == nil {
		return nil
	}
	nodeID := req.GetNode().GetId()
	st.node = nodeID
	ns := p.nodes[nodeID]
	if ns == nil && len(p.nodes) >= p.cfg.MaxNodes {
		// Make room by forgetting a node that has gone away.
		for id, n := range p.nodes {
			if !n.Connected {
				delete(p.nodes, id)
				break
			}
		}
	}
	if ns == nil && len(p.nodes) < p.cfg.MaxNodes {
		ns = &NodeStatus{ID: nodeID, Service: ServiceOf(req.GetNode())}
		p.nodes[nodeID] = ns
	}
	if ns != nil {
		ns.Connected, ns.LastSeen = true, p.cfg.Now()
	}
	switch {
	case req.GetErrorDetail() != nil:
		rejected := st.lastSent
		p.log.Warn("xds push: envoy rejected a rate-limit config", "node", nodeID, "version", rejected,
			"err", req.GetErrorDetail().GetMessage())
		if ns != nil {
			ns.RejectedVersion, ns.RejectError, ns.RejectedAt = rejected, req.GetErrorDetail().GetMessage(), p.cfg.Now()
		}
		// A NACK carries the last version the node accepted, which the
		// cache would take as "behind" and answer at once with the very
		// version just rejected, over and over. Treat the rejected
		// version as the node's: it is sent the next version instead.
		if rejected != "" {
			req.VersionInfo = rejected
		}
	case req.GetResponseNonce() != "" && ns != nil:
		ns.AckedVersion = req.GetVersionInfo()
	}
	return nil
}

// cacheLogger sends go-control-plane's log to slog: its debug lines at
// debug, the rest as they are.
type cacheLogger struct{ l *slog.Logger }

var _ log.Logger = cacheLogger{}

func (c cacheLogger) Debugf(f string, a ...any) { c.l.Debug(fmt.Sprintf(f, a...)) }
func (c cacheLogger) Infof(f string, a ...any)  { c.l.Debug(fmt.Sprintf(f, a...)) }
func (c cacheLogger) Warnf(f string, a ...any)  { c.l.Warn(fmt.Sprintf(f, a...)) }
func (c cacheLogger) Errorf(f string, a ...any) { c.l.Error(fmt.Sprintf(f, a...)) }
