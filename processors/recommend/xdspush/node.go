package xdspush

import (
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
)

// Istio sidecar metadata read to find a node's service.
const (
	labelCanonicalName = "service.istio.io/canonical-name"
	labelApp           = "app"
)

// ServiceOf returns the service an Envoy node belongs to, in the engine's
// naming ("reviews.default"), or "" when the node names none. Istio
// sidecars carry it in their node metadata: the canonical-name label,
// else the app label, else WORKLOAD_NAME, in the namespace NAMESPACE
// (none given: the bare name). Other Envoys are mapped by node.cluster,
// which is used as is (Istio sets it to "<service>.<namespace>" too).
func ServiceOf(n *corev3.Node) string {
	if n == nil {
		return ""
	}
	md := n.GetMetadata().GetFields()
	labels := md["LABELS"].GetStructValue().GetFields()
	name := labels[labelCanonicalName].GetStringValue()
	if name == "" {
		name = labels[labelApp].GetStringValue()
	}
	if name == "" {
		name = md["WORKLOAD_NAME"].GetStringValue()
	}
	if name == "" {
		return strings.TrimSpace(n.GetCluster())
	}
	if ns := md["NAMESPACE"].GetStringValue(); ns != "" {
		return name + "." + ns
	}
	return name
}

// nodeHash keys the snapshot cache by service, so every sidecar of a
// service shares one snapshot. It also tells the pusher about services it
// has not served yet, which then get the pass-through config (see
// passThrough). It runs under the cache's lock: it must not call the
// cache.
type nodeHash struct{ p *Pusher }

func (h nodeHash) ID(n *corev3.Node) string {
	svc := ServiceOf(n)
	if svc != "" {
		h.p.noteService(svc)
	}
	return svc
}
