package envoyals

import (
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/meshlens/meshlens/model"
)

// Role is the kind of proxy that sent a stream, taken from the prefix of
// the Envoy node id Istio assigns ("sidecar~10.0.0.1~pod.ns~ns.svc.cluster.local").
type Role uint8

// Proxy roles.
const (
	// RoleSidecar is an application's sidecar: each entry is either its
	// inbound (server) or outbound (client) side.
	RoleSidecar Role = iota
	// RoleGateway is an ingress/egress gateway (Istio's "router").
	RoleGateway
	// RoleWaypoint is an ambient-mode waypoint proxy.
	RoleWaypoint
)

// String returns the node id prefix of the role.
func (r Role) String() string {
	switch r {
	case RoleGateway:
		return "router"
	case RoleWaypoint:
		return "waypoint"
	}
	return "sidecar"
}

// Istio node metadata keys and labels.
const (
	mdName           = "NAME"
	mdNamespace      = "NAMESPACE"
	mdLabels         = "LABELS"
	mdWorkload       = "WORKLOAD_NAME"
	mdClusterID      = "CLUSTER_ID"
	mdServiceAccount = "SERVICE_ACCOUNT"
	mdInstanceIPs    = "INSTANCE_IPS"

	labelCanonicalName     = "service.istio.io/canonical-name"
	labelCanonicalRevision = "service.istio.io/canonical-revision"
	labelApp               = "app"
	labelVersion           = "version"
)

// proxyInfo is what a stream's node says about the proxy itself. It is
// parsed once per stream and read by every entry of the stream.
type proxyInfo struct {
	role Role
	self model.Identity
	// ips are all the proxy's own addresses (INSTANCE_IPS, or the IP in
	// the node id), used to recognise inbound traffic when the upstream
	// cluster does not say.
	ips []string
	// nodeID is kept for log messages.
	nodeID string
}

// parseNode derives the proxy's identity and role from the Envoy node of a
// stream's identifier. serviceLabels are the label keys tried in order for
// the service name; the workload name is the fallback.
func parseNode(node *corev3.Node, serviceLabels []string, trustDomain string) proxyInfo {
	var p proxyInfo
	if node == nil {
		return p
	}
	p.nodeID = node.GetId()

	// Node id: TYPE~IP~POD.NAMESPACE~NAMESPACE.svc.cluster.local
	parts := strings.SplitN(p.nodeID, "~", 4)
	switch parts[0] {
	case "router":
		p.role = RoleGateway
	case "waypoint":
		p.role = RoleWaypoint
	default:
		p.role = RoleSidecar
	}
	var idIP, idPod, idNS string
	if len(parts) >= 3 {
		idIP = parts[1]
		if pod, ns, ok := strings.Cut(parts[2], "."); ok {
			idPod, idNS = pod, ns
		} else {
			idPod = parts[2]
		}
	}

	md := node.GetMetadata().GetFields()
	str := func(key string) string { return md[key].GetStringValue() }
	labels := md[mdLabels].GetStructValue().GetFields()
	label := func(key string) string { return labels[key].GetStringValue() }

	id := model.Identity{
		Namespace: str(mdNamespace),
		Cluster:   str(mdClusterID),
		Workload:  str(mdWorkload),
		Instance:  str(mdName),
	}
	if id.Namespace == "" {
		id.Namespace = idNS
	}
	if id.Instance == "" {
		id.Instance = idPod
	}
	for _, k := range serviceLabels {
		if v := label(k); v != "" {
			id.Service = v
			break
		}
	}
	if id.Service == "" {
		id.Service = id.Workload
	}
	if id.Service == "" {
		// Not an Istio-injected proxy: Envoy's --service-cluster, which Istio
		// used to set to "app.namespace".
		c := node.GetCluster()
		if name, _, ok := strings.Cut(c, "."); ok {
			c = name
		}
		id.Service = c
	}
	if v := label(labelCanonicalRevision); v != "" {
		id.Version = v
	} else {
		id.Version = label(labelVersion)
	}
	if sa := str(mdServiceAccount); sa != "" && id.Namespace != "" && trustDomain != "" {
		id.Principal = "spiffe://" + trustDomain + "/ns/" + id.Namespace + "/sa/" + sa
	}
	if ips := str(mdInstanceIPs); ips != "" {
		for ip := range strings.SplitSeq(ips, ",") {
			if ip = strings.TrimSpace(ip); ip != "" {
				p.ips = append(p.ips, ip)
			}
		}
	}
	if len(p.ips) == 0 && idIP != "" {
		p.ips = append(p.ips, idIP)
	}
	if len(p.ips) > 0 {
		id.IP = p.ips[0]
	}
	p.self = id
	return p
}

// isOwnIP reports whether ip is one of the proxy's own addresses.
func (p *proxyInfo) isOwnIP(ip string) bool {
	for _, own := range p.ips {
		if own == ip {
			return true
		}
	}
	return false
}
