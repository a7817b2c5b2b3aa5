package spancalls

import (
	"net"
	"net/url"
	"strconv"
	"strings"

	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/meshlens/meshlens/model"
)

// Attribute keys read from spans and resources: OpenTelemetry semantic
// conventions (old and new names), Zipkin tags as translated by
// receivers/zipkin, and the tags Istio's Envoy adds to its spans.
const (
	keyServiceName      = "service.name"
	keyServiceNamespace = "service.namespace"
	keyServiceVersion   = "service.version"
	keyServiceInstance  = "service.instance.id"
	keyK8sPod           = "k8s.pod.name"
	keyK8sNamespace     = "k8s.namespace.name"
	keyK8sDeployment    = "k8s.deployment.name"
	keyK8sCluster       = "k8s.cluster.name"
	keyHostName         = "host.name"
	keyHostIP           = "host.ip"
	keyNetHostIP        = "net.host.ip"

	keyIstioService   = "istio.canonical_service"
	keyIstioRevision  = "istio.canonical_revision"
	keyIstioNamespace = "istio.namespace"
	keyIstioCluster   = "istio.cluster_id"
	keyNodeID         = "node_id"
	keyUpstream       = "upstream_cluster"
	keyResponseFlags  = "response_flags"
	keyRequestID      = "guid:x-request-id"
	keyRequestSize    = "request_size"
	keyResponseSize   = "response_size"
	keyEnvoyPeerAddr  = "peer.address"

	keyPeerService     = "peer.service"
	keyNetPeerIP       = "net.peer.ip"
	keyNetPeerName     = "net.peer.name"
	keyNetworkPeerAddr = "network.peer.address"
	keyServerAddress   = "server.address"
	keyClientAddress   = "client.address"

	keyHTTPMethod        = "http.method"
	keyHTTPRequestMethod = "http.request.method"
	keyHTTPStatus        = "http.status_code"
	keyHTTPRespStatus    = "http.response.status_code"
	keyHTTPURL           = "http.url"
	keyURLFull           = "url.full"
	keyURLPath           = "url.path"
	keyHTTPTarget        = "http.target"
	keyHTTPPath          = "http.path"
	keyHTTPRoute         = "http.route"
	keyHTTPHost          = "http.host"
	keyReqBodySize       = "http.request.body.size"
	keyRespBodySize      = "http.response.body.size"
	keyRPCSystem         = "rpc.system"
	keyRPCService        = "rpc.service"
	keyRPCMethod         = "rpc.method"
	keyRPCGRPCStatus     = "rpc.grpc.status_code"
	keyEnvoyGRPCStatus   = "grpc.status_code"
	keyDBSystem          = "db.system"
	keyDBName            = "db.name"
	keyMessagingSystem   = "messaging.system"
)

// attrs looks a key up in the span's attributes, then its resource's.
type attrs struct{ span, res pcommon.Map }

func str(m pcommon.Map, k string) string {
	v, ok := m.Get(k)
	if !ok {
		return ""
	}
	if v.Type() == pcommon.ValueTypeStr {
		return v.Str()
	}
	return v.AsString()
}

func (a attrs) get(k string) string {
	if s := str(a.span, k); s != "" {
		return s
	}
	return str(a.res, k)
}

// first returns the first non-empty value among keys.
func (a attrs) first(keys ...string) string {
	for _, k := range keys {
		if s := a.get(k); s != "" {
			return s
		}
	}
	return ""
}

func (a attrs) int(keys ...string) (int, bool) {
	for _, k := range keys {
		v, ok := a.span.Get(k)
		if !ok {
			continue
		}
		switch v.Type() {
		case pcommon.ValueTypeInt:
			return int(v.Int()), true
		case pcommon.ValueTypeDouble:
			return int(v.Double()), true
		case pcommon.ValueTypeStr:
			if n, err := strconv.Atoi(strings.TrimSpace(v.Str())); err == nil {
				return n, true
			}
		}
	}
	return 0, false
}

// nodeID is what Istio's Envoy node id tells: "sidecar~10.0.0.9~reviews-v1-545db77b95-abcde.default~default.svc.cluster.local".
type nodeID struct{ ip, pod, namespace string }

func parseNodeID(s string) nodeID {
	// Four "~"-separated fields; Cut, not Split: this runs for every span.
	_, rest, ok1 := strings.Cut(s, "~")
	ip, rest, ok2 := strings.Cut(rest, "~")
	podNS, domain, ok3 := strings.Cut(rest, "~")
	if !ok1 || !ok2 || !ok3 || strings.Contains(domain, "~") {
		return nodeID{}
	}
	n := nodeID{ip: ip}
	if pod, ns, ok := strings.Cut(podNS, "."); ok {
		n.pod, n.namespace = pod, ns
	} else {
		n.pod = podNS
	}
	if n.namespace == "" {
		n.namespace, _, _ = strings.Cut(domain, ".")
	}
	return n
}

// isMesh reports whether a span comes from an Istio/Envoy proxy, whose
// service names are "<service>.<namespace>".
func (a attrs) isMesh() bool {
	for _, k := range []string{keyIstioService, keyIstioNamespace, keyNodeID, keyUpstream} {
		if _, ok := a.span.Get(k); ok {
			return true
		}
	}
	return false
}

// localIdentity is who emitted the span.
func localIdentity(a attrs) model.Identity {
	node := parseNodeID(str(a.span, keyNodeID))
	id := model.Identity{
		Namespace: a.first(keyIstioNamespace, keyK8sNamespace, keyServiceNamespace),
		Version:   a.first(keyIstioRevision, keyServiceVersion),
		Cluster:   a.first(keyIstioCluster, keyK8sCluster),
		Workload:  a.first(keyK8sDeployment),
		IP:        a.first(keyNetHostIP, keyHostIP),
	}
	if id.Namespace == "" {
		id.Namespace = node.namespace
	}
	if id.IP == "" {
		id.IP = node.ip
	}
	id.Service = a.get(keyIstioService)
	if id.Service == "" {
		name := str(a.res, keyServiceName)
		if id.Namespace != "" && strings.HasSuffix(name, "."+id.Namespace) {
			name = strings.TrimSuffix(name, "."+id.Namespace)
		} else if id.Namespace == "" && a.isMesh() {
			name, id.Namespace = splitService(name)
		}
		id.Service = name
	}
	if id.Service == "" {
		id.Service = model.Unknown
	}
	id.Instance = a.first(keyK8sPod)
	if id.Instance == "" {
		id.Instance = node.pod
	}
	if id.Instance == "" {
		id.Instance = a.first(keyHostName, keyServiceInstance)
	}
	if id.Instance == "" {
		id.Instance = id.IP
	}
	return id
}

// splitService splits "reviews.default" or
// "reviews.default.svc.cluster.local" into service and namespace.
func splitService(name string) (service, namespace string) {
	svc, rest, ok := strings.Cut(name, ".")
	if !ok || rest == "" {
		return name, ""
	}
	ns, _, _ := strings.Cut(rest, ".")
	return svc, ns
}

// isFQDNService reports whether host is a Kubernetes service name
// ("reviews.default.svc.cluster.local", "reviews.default.svc").
func isFQDNService(host string) bool {
	return strings.HasSuffix(host, ".svc.cluster.local") || strings.HasSuffix(host, ".svc")
}

// parseUpstreamCluster reads Istio's "outbound|9080|v1|reviews.default.svc.cluster.local".
func parseUpstreamCluster(c string) (service, namespace string, ok bool) {
	dir, rest, ok1 := strings.Cut(c, "|")
	_, rest, ok2 := strings.Cut(rest, "|")
	_, host, ok3 := strings.Cut(rest, "|")
	if !ok1 || !ok2 || !ok3 || strings.Contains(host, "|") || dir != "outbound" || host == "" {
		return "", "", false
	}
	s, ns := splitService(host)
	return s, ns, true
}

func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}

// urlParts returns host and path of a URL attribute.
func urlParts(raw string) (host, path string) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", ""
	}
	return u.Host, u.EscapedPath()
}

func isIP(s string) bool { return s != "" && net.ParseIP(s) != nil }
