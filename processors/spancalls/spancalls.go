// Package spancalls turns spans into what a mesh's access logs would have
// given: model.Call records (RED metrics and topology for a mesh that only
// sends traces), span metrics and service-graph edges.
//
// Calls. A SERVER span is a server-side call (DetectServer): the
// destination is the span's own service, the source the service of the
// CLIENT span that made the request when it is in the same batch (the
// half sharing the span id for Envoy's shared spans, else the parent),
// else what the span says about its peer (peer.service, addresses), else
// unknown. A CLIENT span is a client-side call (DetectClient): the source
// is its service, the destination the SERVER span of the same batch that
// served it, else peer.service, Istio's upstream_cluster, server.address /
// net.peer.name. Unresolved peers are left to processors/identity (the IP,
// UpstreamCluster and Authority fields are filled for it). Other kinds make
// no call.
//
// Identity. Istio's Envoy names its spans' service "<canonical>.<namespace>"
// and tags istio.canonical_service, istio.namespace and node_id; those win
// over resource attributes (k8s.*, service.*). Instances are the pod
// (k8s.pod.name, the pod in node_id), else host.name, else the IP.
//
// Errors. model.Call has no error flag: a call's error is its status code.
// A span whose status is ERROR but which carries no HTTP or gRPC status
// (a reset, a timeout before any response) gets ResponseFlags
// SpanErrorFlag so that Call.IsError still counts it.
//
// Span metrics and the service graph are documented on SpanMetric,
// GraphEdge and Pairer.
package spancalls

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/meshlens/meshlens/model"
	"github.com/meshlens/meshlens/pipeline"
)

// SpanErrorFlag is put in Call.ResponseFlags for a failed span that has no
// status code (see the package comment).
const SpanErrorFlag = "SPAN_ERROR"

// Config tunes the processor.
type Config struct {
	// PairingTTL is how long a client or server half waits for the other
	// in the service-graph pairer. Default 10 s (Tempo's wait).
	PairingTTL time.Duration
	// MaxPendingEdges bounds the halves waiting at once. Default 100 000.
	MaxPendingEdges int
	// SharedAttr is the boolean span attribute marking the server half of
	// a span whose id its client also uses. Default "zipkin.shared", which
	// receivers/zipkin sets.
	SharedAttr string
}

func (c Config) withDefaults() Config {
	if c.PairingTTL <= 0 {
		c.PairingTTL = 10 * time.Second
	}
	if c.MaxPendingEdges <= 0 {
		c.MaxPendingEdges = 100_000
	}
	if c.SharedAttr == "" {
		c.SharedAttr = "zipkin.shared"
	}
	return c
}

// Processor is a pipeline.TraceConsumer that derives calls, span metrics
// and service-graph edges from spans. Safe for concurrent use.
type Processor struct {
	cfg     Config
	calls   pipeline.CallConsumer
	metrics SpanMetricsConsumer
	tel     *pipeline.Telemetry
	logger  *slog.Logger
	now     func() time.Time

	batches sync.Pool // *batch

	mu     sync.Mutex
	pairer *Pairer
	last   PairerStats
}

// New returns a Processor handing calls to calls and span metrics and
// edges to metrics; either may be nil to skip that output. tel and logger
// may be nil.
func New(cfg Config, calls pipeline.CallConsumer, metrics SpanMetricsConsumer, tel *pipeline.Telemetry, logger *slog.Logger) *Processor {
	cfg = cfg.withDefaults()
	if tel == nil {
		tel = pipeline.NewTelemetry(prometheus.NewRegistry())
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Processor{
		cfg: cfg, calls: calls, metrics: metrics, tel: tel, logger: logger, now: time.Now,
		pairer: NewPairer(cfg.PairingTTL, cfg.MaxPendingEdges),
	}
}

// info is what one span contributes, extracted once.
type info struct {
	span     ptrace.Span
	a        attrs
	traceID  pcommon.TraceID
	spanID   pcommon.SpanID
	parentID pcommon.SpanID
	kind     ptrace.SpanKind
	shared   bool
	hasLocal bool
	service  string // service.name verbatim
	tenant   string // model.TenantAttribute of the resource
	local    model.Identity
	// sameID and sameParent chain, in batch order, the batch's spans with
	// this span's id and the SERVER spans with its parent (-1 ends).
	sameID, sameParent int32
}

func (in *info) identity() model.Identity {
	if !in.hasLocal {
		in.local, in.hasLocal = localIdentity(in.a), true
	}
	return in.local
}

type idKey struct {
	trace pcommon.TraceID
	span  pcommon.SpanID
}

// batch indexes a batch's spans for same-batch lookups. Batches are
// recycled (Processor.batches): what a batch of spans allocated per span
// was most of this processor's garbage.
type batch struct {
	infos []info
	// byID maps (trace, span id) to the first span with that id (one, or
	// two for Envoy's shared client/server halves, chained by sameID).
	byID map[idKey]int32
	// serverChild maps (trace, parent id) to the first SERVER span with
	// that parent (chained by sameParent).
	serverChild map[idKey]int32
	calls       []model.Call
	metrics     []SpanMetric
	edges       []GraphEdge
}

// maxKeptBatch is the most spans whose buffers a recycled batch keeps.
const maxKeptBatch = 1 << 14

func (p *Processor) index(td ptrace.Traces) *batch {
	b, _ := p.batches.Get().(*batch)
	if b == nil {
		b = &batch{byID: map[idKey]int32{}, serverChild: map[idKey]int32{}}
	}
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		rs := rss.At(i)
		res := rs.Resource().Attributes()
		svc := str(res, keyServiceName)
		tenant := str(res, model.TenantAttribute)
		sss := rs.ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			spans := sss.At(j).Spans()
			for k := 0; k < spans.Len(); k++ {
				sp := spans.At(k)
				in := info{
					span: sp, a: attrs{span: sp.Attributes(), res: res},
					traceID: sp.TraceID(), spanID: sp.SpanID(), parentID: sp.ParentSpanID(),
					kind: sp.Kind(), service: svc, tenant: tenant, sameID: -1, sameParent: -1,
				}
				if v, ok := in.a.span.Get(p.cfg.SharedAttr); ok {
					in.shared = v.Bool() || v.Str() == "true"
				}
				b.infos = append(b.infos, in)
			}
		}
	}
	// Backwards, so that each chain runs in batch order.
	for i := len(b.infos) - 1; i >= 0; i-- {
		in := &b.infos[i]
		k := idKey{in.traceID, in.spanID}
		if j, ok := b.byID[k]; ok {
			in.sameID = j
		}
		b.byID[k] = int32(i)
		if in.kind == ptrace.SpanKindServer && !in.shared && !in.parentID.IsEmpty() {
			pk := idKey{in.traceID, in.parentID}
			if j, ok := b.serverChild[pk]; ok {
				in.sameParent = j
			}
			b.serverChild[pk] = int32(i)
		}
	}
	return b
}

// release returns b to the pool, dropping its references to the spans.
func (p *Processor) release(b *batch) {
	if cap(b.infos) > maxKeptBatch {
		return
	}
	clear(b.infos)
	clear(b.calls)
	clear(b.metrics)
	clear(b.edges)
	b.infos, b.calls, b.metrics, b.edges = b.infos[:0], b.calls[:0], b.metrics[:0], b.edges[:0]
	clear(b.byID)
	clear(b.serverChild)
	p.batches.Put(b)
}

// withID calls fn on the spans with key k until it returns true.
func (b *batch) withID(k idKey, fn func(*info) bool) *info {
	j, ok := b.byID[k]
	for ok && j >= 0 {
		if in := &b.infos[j]; fn(in) {
			return in
		}
		j = b.infos[j].sameID
	}
	return nil
}

// clientOf finds the CLIENT span that made the request a SERVER span
// served, in the same batch.
func (b *batch) clientOf(in *info) *info {
	if in.shared {
		return b.withID(idKey{in.traceID, in.spanID}, func(c *info) bool { return c.kind == ptrace.SpanKindClient })
	}
	if in.parentID.IsEmpty() {
		return nil
	}
	// The parent is the client span, or with in-process instrumentation
	// that does not make client spans, any span of another service.
	return b.withID(idKey{in.traceID, in.parentID}, func(c *info) bool {
		return c.kind == ptrace.SpanKindClient || (c.kind != ptrace.SpanKindServer && c.service != in.service)
	})
}

// serverOf finds the SERVER span that served a CLIENT span's request.
func (b *batch) serverOf(in *info) *info {
	k := idKey{in.traceID, in.spanID}
	if s := b.withID(k, func(s *info) bool { return s.kind == ptrace.SpanKindServer && s.shared }); s != nil {
		return s
	}
	if j, ok := b.serverChild[k]; ok {
		return &b.infos[j]
	}
	return nil
}

// ConsumeTraces derives calls, span metrics and edges from td and hands
// them on. It does not modify or keep td. Both consumers are tried; the
// first error is returned.
func (p *Processor) ConsumeTraces(ctx context.Context, td ptrace.Traces) error {
	if td.SpanCount() == 0 {
		return nil
	}
	b := p.index(td)
	defer p.release(b)
	if p.calls != nil {
		for i := range b.infos {
			in := &b.infos[i]
			switch in.kind {
			case ptrace.SpanKindServer:
				b.calls = append(b.calls, p.serverCall(b, in))
			case ptrace.SpanKindClient:
				b.calls = append(b.calls, p.clientCall(b, in))
			}
		}
	}
	var errs []error
	if len(b.calls) > 0 {
		// CallConsumer does not keep the slice: b.calls is reused.
		if err := p.calls.ConsumeCalls(ctx, b.calls); err != nil {
			errs = append(errs, fmt.Errorf("span calls: %w", err))
		}
	}
	if p.metrics != nil {
		metrics, edges := p.graph(b)
		b.metrics, b.edges = metrics, edges
		if err := p.metrics.ConsumeSpanMetrics(ctx, metrics, edges); err != nil {
			errs = append(errs, fmt.Errorf("span metrics: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Run expires unpaired service-graph halves every second until ctx ends,
// handing virtual-node edges of expired clients to the metrics consumer.
func (p *Processor) Run(ctx context.Context) {
	if p.metrics == nil {
		return
	}
	t := time.NewTicker(min(time.Second, p.cfg.PairingTTL/2))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.ExpireNow(ctx)
		}
	}
}

// ExpireNow expires unpaired halves older than the TTL and emits their
// virtual-node edges.
func (p *Processor) ExpireNow(ctx context.Context) {
	p.mu.Lock()
	edges := p.pairer.Expire(p.now(), nil)
	p.countLocked()
	p.mu.Unlock()
	if len(edges) > 0 {
		if err := p.metrics.ConsumeSpanMetrics(ctx, nil, edges); err != nil {
			p.logger.Warn("service-graph edges dropped", "edges", len(edges), "err", err)
			p.tel.Dropped("spancalls", "edges_refused", len(edges))
		}
	}
}

// PairerStats returns the service-graph pairer's counters.
func (p *Processor) PairerStats() PairerStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pairer.Stats()
}

// countLocked reports newly expired/evicted halves as pipeline drops.
func (p *Processor) countLocked() {
	s := p.pairer.Stats()
	if d := s.Expired - s.VirtualEdge - (p.last.Expired - p.last.VirtualEdge); d > 0 {
		p.tel.Dropped("spancalls_graph", "unpaired", int(d))
	}
	if d := s.Evicted - p.last.Evicted; d > 0 {
		p.tel.Dropped("spancalls_graph", "pairing_store_full", int(d))
	}
	p.last = s
}

func durationOf(sp ptrace.Span) time.Duration {
	if s, e := sp.StartTimestamp(), sp.EndTimestamp(); e > s {
		return time.Duration(e - s)
	}
	return 0
}

func failed(sp ptrace.Span) bool { return sp.Status().Code() == ptrace.StatusCodeError }

// graph builds span metrics for every span and feeds the pairer.
func (p *Processor) graph(b *batch) ([]SpanMetric, []GraphEdge) {
	metrics := append(b.metrics[:0], make([]SpanMetric, len(b.infos))...)
	edges := b.edges[:0]
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	edges = p.pairer.Expire(now, edges)
	for i := range b.infos {
		in := &b.infos[i]
		dur := durationOf(in.span)
		metrics[i] = SpanMetric{
			ServiceName: in.service, SpanName: in.span.Name(),
			SpanKind: SpanKindLabel(in.kind), StatusCode: StatusCodeLabel(in.span.Status().Code()),
			Duration: dur, Tenant: in.tenant,
		}
		h := Half{TraceID: in.traceID, Service: in.service, Duration: dur, Failed: failed(in.span), Tenant: in.tenant}
		switch in.kind {
		case ptrace.SpanKindClient, ptrace.SpanKindProducer:
			h.Client, h.Key = true, in.spanID
			if in.kind == ptrace.SpanKindProducer {
				h.Conn = ConnMessaging
				h.Peer = in.a.get(keyMessagingSystem)
			} else {
				h.Peer = peerName(in.a)
			}
			if db := in.a.get(keyDBSystem); db != "" && in.kind == ptrace.SpanKindClient {
				// Databases are not traced: the edge is complete now.
				server := in.a.first(keyPeerService, keyDBName)
				if server == "" {
					server = db
				}
				edges = append(edges, GraphEdge{Tenant: in.tenant, Client: in.service, Server: server, ConnectionType: ConnDatabase,
					ClientDuration: dur, ServerDuration: dur, Failed: h.Failed})
				continue
			}
		case ptrace.SpanKindServer, ptrace.SpanKindConsumer:
			h.Key = in.parentID
			if in.shared {
				h.Key = in.spanID
			}
			if in.kind == ptrace.SpanKindConsumer {
				h.Conn = ConnMessaging
			}
			if h.Key.IsEmpty() {
				// A root: the request came from outside any traced service.
				edges = append(edges, GraphEdge{Tenant: in.tenant, Client: VirtualUser, Server: in.service, ConnectionType: ConnVirtualNode,
					ClientDuration: dur, ServerDuration: dur, Failed: h.Failed})
				continue
			}
		default:
			continue
		}
		edges = p.pairer.Add(h, now, edges)
	}
	p.countLocked()
	return metrics, edges
}

// peerName is how a client span names its server, for a virtual node.
func peerName(a attrs) string {
	if s := a.get(keyPeerService); s != "" {
		return s
	}
	if svc, ns, ok := parseUpstreamCluster(a.get(keyUpstream)); ok {
		return svc + "." + ns
	}
	return hostOnly(a.first(keyServerAddress, keyNetPeerName))
}

// call fills what a span says about the request itself.
func requestOf(in *info, c *model.Call) {
	sp := in.span
	a := in.a
	c.Start = sp.StartTimestamp().AsTime()
	c.Duration = durationOf(sp)
	c.GRPCStatus = -1
	c.Method = a.first(keyHTTPMethod, keyHTTPRequestMethod)
	host, path := "", a.first(keyURLPath, keyHTTPTarget, keyHTTPPath)
	if raw := a.first(keyHTTPURL, keyURLFull); raw != "" {
		h, p := urlParts(raw)
		host = h
		if path == "" {
			path = p
		}
	}
	if q := strings.IndexByte(path, '?'); q >= 0 {
		path = path[:q]
	}
	c.Path = path
	c.Authority = a.first(keyHTTPHost)
	if c.Authority == "" {
		c.Authority = host
	}
	if c.Authority == "" && in.kind == ptrace.SpanKindClient {
		c.Authority = a.first(keyServerAddress, keyNetPeerName)
	}
	if n, ok := a.int(keyHTTPStatus, keyHTTPRespStatus); ok {
		c.StatusCode = n
	}
	c.Protocol = model.ProtocolHTTP
	if n, ok := a.int(keyRPCGRPCStatus, keyEnvoyGRPCStatus); ok {
		c.GRPCStatus = n
		c.Protocol = model.ProtocolGRPC
	}
	rpcSvc, rpcMethod := a.get(keyRPCService), a.get(keyRPCMethod)
	if a.get(keyRPCSystem) == "grpc" {
		c.Protocol = model.ProtocolGRPC
	}
	switch {
	case c.Protocol == model.ProtocolGRPC && rpcSvc != "" && rpcMethod != "":
		c.Endpoint = "/" + rpcSvc + "/" + rpcMethod
	case c.Protocol == model.ProtocolGRPC && strings.Count(path, "/") == 2:
		c.Endpoint = path
	case c.Method != "" && path != "":
		c.Endpoint = c.Method + ":" + path
	case c.Method != "" && a.get(keyHTTPRoute) != "":
		c.Endpoint = c.Method + ":" + a.get(keyHTTPRoute)
	default:
		c.Endpoint = sp.Name()
	}
	if f := a.get(keyResponseFlags); f != "-" {
		c.ResponseFlags = f
	}
	c.UpstreamCluster = a.get(keyUpstream)
	c.RequestID = a.get(keyRequestID)
	if n, ok := a.int(keyRequestSize, keyReqBodySize); ok && n > 0 {
		c.RequestBytes = uint64(n)
	}
	if n, ok := a.int(keyResponseSize, keyRespBodySize); ok && n > 0 {
		c.ResponseBytes = uint64(n)
	}
	if failed(sp) && c.StatusCode == 0 && c.GRPCStatus <= 0 && c.ResponseFlags == "" {
		if c.Protocol == model.ProtocolGRPC {
			c.GRPCStatus = 2 // UNKNOWN
		} else {
			c.ResponseFlags = SpanErrorFlag
		}
	}
}

func (p *Processor) serverCall(b *batch, in *info) model.Call {
	c := model.Call{DetectPoint: model.DetectServer, Destination: in.identity(), Tenant: in.tenant}
	requestOf(in, &c)
	if client := b.clientOf(in); client != nil {
		c.Source = client.identity()
		return c
	}
	a := in.a
	c.Source.IP = hostOnly(a.first(keyNetPeerIP, keyNetworkPeerAddr, keyClientAddress, keyEnvoyPeerAddr))
	if !isIP(c.Source.IP) {
		c.Source.IP = ""
	}
	if ps := a.get(keyPeerService); ps != "" {
		c.Source.Service, c.Source.Namespace = peerService(ps, a)
	}
	if c.Source.Service == "" && c.Source.IP == "" {
		c.Source.Service = model.Unknown
	}
	return c
}

func (p *Processor) clientCall(b *batch, in *info) model.Call {
	c := model.Call{DetectPoint: model.DetectClient, Source: in.identity(), Tenant: in.tenant}
	requestOf(in, &c)
	if server := b.serverOf(in); server != nil {
		c.Destination = server.identity()
		return c
	}
	a := in.a
	db := a.get(keyDBSystem)
	if db != "" && c.Method == "" && c.Protocol != model.ProtocolGRPC {
		c.Protocol = model.ProtocolTCP
	}
	if ps := a.get(keyPeerService); ps != "" {
		c.Destination.Service, c.Destination.Namespace = peerService(ps, a)
	} else if db != "" {
		// Databases are not traced; name them as the service graph does.
		c.Destination.Service = a.first(keyDBName)
		if c.Destination.Service == "" {
			c.Destination.Service = db
		}
	} else if svc, ns, ok := parseUpstreamCluster(c.UpstreamCluster); ok {
		c.Destination.Service, c.Destination.Namespace = svc, ns
	} else if host := hostOnly(a.first(keyServerAddress, keyNetPeerName)); isFQDNService(host) {
		c.Destination.Service, c.Destination.Namespace = splitService(host)
	} else if host != "" && !isIP(host) && !strings.Contains(host, ".") {
		// A bare name is a Kubernetes service in the caller's namespace.
		c.Destination.Service = host
	}
	ip := hostOnly(a.first(keyNetPeerIP, keyNetworkPeerAddr, keyServerAddress))
	if isIP(ip) {
		c.Destination.IP = ip
	}
	if c.Destination.Service == "" && c.Destination.IP == "" && c.UpstreamCluster == "" && c.Authority == "" {
		c.Destination.Service = model.Unknown
	}
	return c
}

// peerService splits a peer.service value the way the local side names
// services: "reviews.default" is service and namespace for mesh spans.
func peerService(ps string, a attrs) (string, string) {
	if a.isMesh() || isFQDNService(ps) {
		return splitService(ps)
	}
	return ps, ""
}
