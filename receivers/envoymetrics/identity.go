package envoymetrics

import (
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// proxyIdentity is the identity of the Envoy that opened a stream, taken from the
// node in the stream's first message. Its fields become the labels
// service, namespace, instance and workload of every series it sends.
type proxyIdentity struct {
	// ID is the node ID (Istio: "sidecar~10.1.2.3~pod.ns~ns.svc.cluster.local").
	ID        string
	Service   string
	Namespace string
	// Instance is the pod name (Istio's NAME), else the node ID.
	Instance string
	Workload string
}

// Identity labels meshlens adds to every series.
const (
	LabelService   = "service"
	LabelNamespace = "namespace"
	LabelInstance  = "instance"
	LabelWorkload  = "workload"
)

// proxyFromNode reads Istio's node metadata (NAME, NAMESPACE, LABELS,
// WORKLOAD_NAME) and falls back on the node ID and cluster that every Envoy
// sends: Istio's "<service>.<namespace>" cluster, or a plain service-cluster
// for Envoys outside Istio.
func proxyFromNode(node *corev3.Node) proxyIdentity {
	p := proxyIdentity{ID: node.GetId()}
	md := node.GetMetadata().GetFields()
	str := func(f map[string]*structpb.Value, k string) string { return f[k].GetStringValue() }

	p.Instance = str(md, "NAME")
	p.Namespace = str(md, "NAMESPACE")
	p.Workload = str(md, "WORKLOAD_NAME")
	labels := md["LABELS"].GetStructValue().GetFields()
	for _, k := range []string{"service.istio.io/canonical-name", "app.kubernetes.io/name", "app"} {
		if v := str(labels, k); v != "" {
			p.Service = v
			break
		}
	}

	// Istio's node ID: type~ip~pod.namespace~domain.
	if parts := strings.Split(p.ID, "~"); len(parts) == 4 {
		pod, ns, _ := strings.Cut(parts[2], ".")
		if p.Instance == "" {
			p.Instance = pod
		}
		if p.Namespace == "" {
			p.Namespace = ns
		}
	}
	cluster := node.GetCluster()
	if p.Service == "" {
		if svc, ns, ok := strings.Cut(cluster, "."); ok && (p.Namespace == "" || ns == p.Namespace) {
			p.Service = svc
			if p.Namespace == "" {
				p.Namespace = ns
			}
		} else if cluster != "" {
			p.Service = cluster
		} else if p.Workload != "" {
			p.Service = p.Workload
		}
	}
	if p.Instance == "" {
		p.Instance = p.ID
	}
	p.Service = bound(p.Service)
	p.Namespace = bound(p.Namespace)
	p.Instance = bound(p.Instance)
	p.Workload = bound(p.Workload)
	return p
}

// key names the proxy for per-proxy series limits.
func (p proxyIdentity) key() string {
	if p.ID != "" {
		return p.ID
	}
	return p.Namespace + "/" + p.Instance
}

const maxLabelValue = 1024

func bound(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) > maxLabelValue {
		s = strings.ToValidUTF8(s[:maxLabelValue], "")
	}
	return s
}
