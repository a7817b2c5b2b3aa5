package redmetrics

import (
	"strings"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/meshlens/meshlens/model"
)

// istioBuckets are Envoy's default histogram bounds, which Istio uses for
// request duration (ms) and request/response size (bytes).
var istioBuckets = []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000}

// scopeBuckets are finer latency bounds (ms) for meshlens's scope metrics so
// that percentiles merged across instances stay within a few percent.
var scopeBuckets = []float64{1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 7500, 10000, 15000, 30000, 60000}

// graphBuckets (seconds) are the OpenTelemetry service-graph connector's
// defaults, so Grafana's service graph reads the same shape either way.
var graphBuckets = []float64{0.002, 0.004, 0.006, 0.008, 0.01, 0.05, 0.1, 0.2, 0.4, 0.8, 1, 1.4, 2, 5, 10, 15}

// peer holds Istio's per-side workload labels.
type peer struct {
	workload, namespace, principal, app, version, cluster, canonical, revision string
}

// istioKey is the label set Istio's standard metrics carry.
type istioKey struct {
	tenant                                   string
	reporter                                 string
	src, dst                                 peer
	dstService, dstServiceName, dstServiceNS string
	protocol, code, grpc, flags, policy      string
}

func (k istioKey) labels(tcp bool) labels.Labels {
	b := labels.NewScratchBuilder(32)
	add := func(n, v string) {
		if v != "" {
			b.Add(n, v)
		}
	}
	add("reporter", k.reporter)
	for _, s := range []struct {
		prefix string
		p      peer
	}{{"source_", k.src}, {"destination_", k.dst}} {
		add(s.prefix+"workload", s.p.workload)
		add(s.prefix+"workload_namespace", s.p.namespace)
		add(s.prefix+"principal", s.p.principal)
		add(s.prefix+"app", s.p.app)
		add(s.prefix+"version", s.p.version)
		add(s.prefix+"cluster", s.p.cluster)
		add(s.prefix+"canonical_service", s.p.canonical)
		add(s.prefix+"canonical_revision", s.p.revision)
	}
	add("destination_service", k.dstService)
	add("destination_service_name", k.dstServiceName)
	add("destination_service_namespace", k.dstServiceNS)
	add("request_protocol", k.protocol)
	if !tcp {
		add("response_code", k.code)
		add("grpc_response_status", k.grpc)
	}
	add("response_flags", k.flags)
	add("connection_security_policy", k.policy)
	add(model.TenantLabel, k.tenant)
	b.Sort()
	return b.Labels()
}

type scopeKey struct {
	tenant                                          string
	service, namespace, instance, version, endpoint string
	dp                                              model.DetectPoint
}

type relKey struct {
	tenant                    string
	srcService, srcNS, srcSub string // srcSub: instance or endpoint
	dstService, dstNS, dstSub string
	dp                        model.DetectPoint
	proto                     model.Protocol
	tls                       model.TLSMode
}

type graphKey struct{ tenant, client, server, connType string }

type spanKey struct{ tenant, service, name, kind, status string }

// spanBuckets (ms) are the OpenTelemetry spanmetrics connector's defaults.
var spanBuckets = []float64{2, 4, 6, 8, 10, 50, 100, 200, 400, 800, 1000, 1400, 2000, 5000, 10000, 15000}

// families holds every metric family the aggregator maintains.
type families struct {
	status *statusText

	istioHTTP *table[istioKey]
	istioTCP  *table[istioKey]
	service   *table[scopeKey]
	instance  *table[scopeKey]
	endpoint  *table[scopeKey]
	svcRel    *table[relKey]
	instRel   *table[relKey]
	epRel     *table[relKey]
	graph     *table[graphKey]
	spans     *table[spanKey]

	// Offsets resolved once from the layouts.
	ihReq, ihDur, ihReqB, ihRespB   part
	itSent, itRecv, itOpen, itClose int
	scCalls, scErrors, scSat, scTol int
	scLat                           part
	gReq, gFailed                   int
	gServer, gClient                part
	smCalls                         int
	smDur                           part
}

func scopeLayout(prefix string) *layout {
	return newLayout(
		part{name: prefix + "calls_total"},
		part{name: prefix + "errors_total"},
		part{name: prefix + "latency_milliseconds", bounds: scopeBuckets},
		part{name: prefix + "apdex_satisfied_total"},
		part{name: prefix + "apdex_tolerating_total"},
	)
}

func partOf(l *layout, name string) part {
	for _, p := range l.parts {
		if p.name == name {
			return p
		}
	}
	panic("redmetrics: unknown part " + name)
}

func newFamilies(max int) families {
	ih := newLayout(
		part{name: "istio_requests_total"},
		part{name: "istio_request_duration_milliseconds", bounds: istioBuckets},
		part{name: "istio_request_bytes", bounds: istioBuckets},
		part{name: "istio_response_bytes", bounds: istioBuckets},
	)
	it := newLayout(
		part{name: "istio_tcp_sent_bytes_total"},
		part{name: "istio_tcp_received_bytes_total"},
		part{name: "istio_tcp_connections_opened_total"},
		part{name: "istio_tcp_connections_closed_total"},
	)
	g := newLayout(
		part{name: "traces_service_graph_request_total"},
		part{name: "traces_service_graph_request_failed_total"},
		part{name: "traces_service_graph_request_server_seconds", bounds: graphBuckets},
		part{name: "traces_service_graph_request_client_seconds", bounds: graphBuckets},
	)
	sm := newLayout(
		part{name: "traces_span_metrics_calls_total"},
		part{name: "traces_span_metrics_duration_milliseconds", bounds: spanBuckets},
	)
	svcL := scopeLayout("meshlens_service_")
	f := families{
		status:    newStatusText(),
		istioHTTP: newTable("istio_http", ih, max, func(k istioKey) labels.Labels { return k.labels(false) }),
		istioTCP:  newTable("istio_tcp", it, max, func(k istioKey) labels.Labels { return k.labels(true) }),
		service: newTable("service", svcL, max, func(k scopeKey) labels.Labels {
			return withTenant(k.tenant, "service", k.service, "namespace", k.namespace, "detect_point", k.dp.String())
		}),
		instance: newTable("instance", scopeLayout("meshlens_instance_"), max, func(k scopeKey) labels.Labels {
			return withTenant(k.tenant, "service", k.service, "namespace", k.namespace, "instance", k.instance,
				"version", k.version, "detect_point", k.dp.String())
		}),
		endpoint: newTable("endpoint", scopeLayout("meshlens_endpoint_"), max, func(k scopeKey) labels.Labels {
			return withTenant(k.tenant, "service", k.service, "namespace", k.namespace, "endpoint", k.endpoint,
				"detect_point", k.dp.String())
		}),
		svcRel: newTable("service_relation", scopeLayout("meshlens_service_relation_"), max, func(k relKey) labels.Labels {
			return withTenant(k.tenant, "source_service", k.srcService, "source_namespace", k.srcNS,
				"destination_service", k.dstService, "destination_namespace", k.dstNS,
				"detect_point", k.dp.String(), "protocol", k.proto.String(), "tls", k.tls.String())
		}),
		instRel: newTable("instance_relation", scopeLayout("meshlens_instance_relation_"), max, func(k relKey) labels.Labels {
			return withTenant(k.tenant, "source_service", k.srcService, "source_instance", k.srcSub,
				"destination_service", k.dstService, "destination_instance", k.dstSub,
				"detect_point", k.dp.String(), "protocol", k.proto.String(), "tls", k.tls.String())
		}),
		epRel: newTable("endpoint_relation", scopeLayout("meshlens_endpoint_relation_"), max, func(k relKey) labels.Labels {
			return withTenant(k.tenant, "source_service", k.srcService, "source_endpoint", k.srcSub,
				"destination_service", k.dstService, "destination_endpoint", k.dstSub,
				"detect_point", k.dp.String())
		}),
		graph: newTable("service_graph", g, max, func(k graphKey) labels.Labels {
			return withTenant(k.tenant, "client", k.client, "server", k.server, "connection_type", k.connType)
		}),
		spans: newTable("span_metrics", sm, max, func(k spanKey) labels.Labels {
			return withTenant(k.tenant, "service_name", k.service, "span_name", k.name, "span_kind", k.kind, "status_code", k.status)
		}),
	}
	f.smCalls = sm.offset("traces_span_metrics_calls_total")
	f.smDur = partOf(sm, "traces_span_metrics_duration_milliseconds")
	f.ihReq = partOf(ih, "istio_requests_total")
	f.ihDur = partOf(ih, "istio_request_duration_milliseconds")
	f.ihReqB = partOf(ih, "istio_request_bytes")
	f.ihRespB = partOf(ih, "istio_response_bytes")
	f.itSent = it.offset("istio_tcp_sent_bytes_total")
	f.itRecv = it.offset("istio_tcp_received_bytes_total")
	f.itOpen = it.offset("istio_tcp_connections_opened_total")
	f.itClose = it.offset("istio_tcp_connections_closed_total")
	f.scCalls = svcL.offset("meshlens_service_calls_total")
	f.scErrors = svcL.offset("meshlens_service_errors_total")
	f.scLat = partOf(svcL, "meshlens_service_latency_milliseconds")
	f.scSat = svcL.offset("meshlens_service_apdex_satisfied_total")
	f.scTol = svcL.offset("meshlens_service_apdex_tolerating_total")
	f.gReq = g.offset("traces_service_graph_request_total")
	f.gFailed = g.offset("traces_service_graph_request_failed_total")
	f.gServer = partOf(g, "traces_service_graph_request_server_seconds")
	f.gClient = partOf(g, "traces_service_graph_request_client_seconds")
	return f
}

// each visits every family; keep returns false to evict an entity.
func (f *families) each(visit func(name string, l *layout, m func(func(*entity) bool), overflow uint64, size int)) {
	visitTable(f.istioHTTP, visit)
	visitTable(f.istioTCP, visit)
	visitTable(f.service, visit)
	visitTable(f.instance, visit)
	visitTable(f.endpoint, visit)
	visitTable(f.svcRel, visit)
	visitTable(f.instRel, visit)
	visitTable(f.epRel, visit)
	visitTable(f.graph, visit)
	visitTable(f.spans, visit)
}

func visitTable[K comparable](t *table[K], visit func(string, *layout, func(func(*entity) bool), uint64, int)) {
	visit(t.name, t.layout, func(keep func(*entity) bool) {
		for k, e := range t.m {
			if !keep(e) {
				delete(t.m, k)
			}
		}
	}, t.overflow, len(t.m))
}

// withTenant is labels.FromStrings with the tenant label added when there
// is a tenant (multi-tenancy on).
func withTenant(tenant string, ss ...string) labels.Labels {
	if tenant != "" {
		ss = append(ss, model.TenantLabel, tenant)
	}
	return labels.FromStrings(ss...)
}

func orUnknown(s string) string {
	if s == "" {
		return model.Unknown
	}
	return s
}

func (a *Aggregator) peerOf(id *model.Identity) peer {
	p := peer{
		workload:  orUnknown(id.Workload),
		namespace: orUnknown(id.Namespace),
		app:       orUnknown(id.Service),
		version:   orUnknown(id.Version),
		cluster:   orUnknown(id.Cluster),
		canonical: orUnknown(id.Service),
		principal: orUnknown(id.Principal),
		revision:  id.Version,
	}
	if id.Workload == "" && !id.IsUnknown() {
		p.workload = id.Service
	}
	if p.revision == "" {
		p.revision = "latest"
	}
	return p
}

// destinationService is Istio's destination_service: the FQDN of the
// service the client addressed, taken from Envoy's upstream cluster when
// present.
func destinationService(c *model.Call) string {
	if uc := c.UpstreamCluster; strings.HasPrefix(uc, "outbound|") {
		if i := strings.LastIndexByte(uc, '|'); i >= 0 && i+1 < len(uc) {
			return uc[i+1:]
		}
	}
	if c.Destination.IsUnknown() {
		if c.Authority != "" {
			return c.Authority
		}
		return model.Unknown
	}
	if c.Destination.Namespace == "" {
		return c.Destination.Service
	}
	return c.Destination.Service + "." + c.Destination.Namespace + ".svc.cluster.local"
}

func (f *families) add(c *model.Call, a *Aggregator) {
	epoch := a.epoch
	restore := a.restore
	src, dst := &c.Source, &c.Destination
	if c.Origin == model.OriginSpan {
		// A mesh that sends access logs and spans describes each request
		// twice; the access logs win for every service they cover.
		if a.loggedRecently(c.Tenant, src.Service) || a.loggedRecently(c.Tenant, dst.Service) {
			return
		}
	} else {
		a.markLogged(c.Tenant, src.Service)
		a.markLogged(c.Tenant, dst.Service)
	}
	tenant := c.Tenant
	isErr := c.IsError()
	ms := float64(c.Duration) / 1e6

	// Istio standard metrics.
	k := istioKey{
		tenant:         tenant,
		reporter:       c.DetectPoint.Reporter(),
		src:            a.peerOf(src),
		dst:            a.peerOf(dst),
		dstService:     destinationService(c),
		dstServiceName: orUnknown(dst.Service),
		dstServiceNS:   orUnknown(dst.Namespace),
		protocol:       c.Protocol.String(),
		flags:          c.ResponseFlags,
		policy:         c.TLS.SecurityPolicy(c.DetectPoint),
	}
	if k.flags == "" {
		k.flags = "-"
	}
	if c.Protocol == model.ProtocolTCP {
		if e := f.istioTCP.get(k, epoch, restore); e != nil {
			e.add(f.itSent, float64(c.ResponseBytes))
			e.add(f.itRecv, float64(c.RequestBytes))
			opened, closed := c.ConnOpened, c.ConnClosed
			if !opened && !closed {
				opened, closed = true, true
			}
			if opened {
				e.add(f.itOpen, 1)
			}
			if closed {
				e.add(f.itClose, 1)
			}
		}
	} else {
		k.code = f.status.get(c.StatusCode)
		if c.Protocol == model.ProtocolGRPC && c.GRPCStatus >= 0 {
			k.grpc = f.status.get(c.GRPCStatus)
		}
		if e := f.istioHTTP.get(k, epoch, restore); e != nil {
			e.add(f.ihReq.off, 1)
			e.observe(&f.ihDur, ms)
			e.observe(&f.ihReqB, float64(c.RequestBytes))
			e.observe(&f.ihRespB, float64(c.ResponseBytes))
		}
	}

	// Scope metrics: the observed entity is the destination.
	dp := c.DetectPoint
	tcp := c.Protocol == model.ProtocolTCP
	apdexT := a.apdexT(dst.Service)
	scope := func(e *entity) {
		if e == nil {
			return
		}
		e.add(f.scCalls, 1)
		if isErr {
			e.add(f.scErrors, 1)
		}
		if tcp {
			return
		}
		e.observe(&f.scLat, ms)
		if !isErr {
			if ms <= apdexT {
				e.add(f.scSat, 1)
			} else if ms <= 4*apdexT {
				e.add(f.scTol, 1)
			}
		}
	}
	dstSvc, dstNS := orUnknown(dst.Service), orUnknown(dst.Namespace)
	srcSvc, srcNS := orUnknown(src.Service), orUnknown(src.Namespace)
	scope(f.service.get(scopeKey{tenant: tenant, service: dstSvc, namespace: dstNS, dp: dp}, epoch, restore))
	if dst.Instance != "" {
		scope(f.instance.get(scopeKey{tenant: tenant, service: dstSvc, namespace: dstNS, instance: dst.Instance, version: dst.Version, dp: dp}, epoch, restore))
	}
	if c.Endpoint != "" {
		scope(f.endpoint.get(scopeKey{tenant: tenant, service: dstSvc, namespace: dstNS, endpoint: c.Endpoint, dp: dp}, epoch, restore))
	}
	rk := relKey{tenant: tenant, srcService: srcSvc, srcNS: srcNS, dstService: dstSvc, dstNS: dstNS, dp: dp, proto: c.Protocol, tls: c.TLS}
	scope(f.svcRel.get(rk, epoch, restore))
	rk.srcSub, rk.dstSub = orUnknown(src.Instance), orUnknown(dst.Instance)
	scope(f.instRel.get(rk, epoch, restore))
	if c.Endpoint != "" {
		scope(f.epRel.get(relKey{tenant: tenant, srcService: srcSvc, dstService: dstSvc, dstSub: c.Endpoint, dp: dp}, epoch, restore))
	}

	if c.Origin == model.OriginSpan {
		return // span edges come paired, through ConsumeSpanMetrics
	}

	// Service graph, in the shape of Tempo / the OpenTelemetry connector.
	// A request seen from both sides is counted once: from the server side,
	// or from the client side only while no server-side report has been
	// seen for that edge (an external or sidecar-less destination).
	// connection_type stays empty: access logs cannot tell a database from
	// any other TCP peer (traces can, from db.system).
	gk := graphKey{tenant: tenant, client: srcSvc, server: dstSvc}
	if e := f.graph.get(gk, epoch, restore); e != nil {
		sec := ms / 1000
		count := false
		if dp == model.DetectServer {
			e.serverSeen = epoch
			e.observe(&f.gServer, sec)
			count = true
		} else {
			e.observe(&f.gClient, sec)
			staleEpochs := uint64(a.cfg.StaleAfter / a.cfg.FlushInterval)
			count = e.serverSeen == 0 || epoch-e.serverSeen > staleEpochs
		}
		if count {
			e.add(f.gReq, 1)
			if isErr {
				e.add(f.gFailed, 1)
			}
		}
	}
}
