// Package demo plays the Istio Bookinfo mesh and reports its traffic over the
// real wire protocols: Envoy ALS v3 gRPC streams (one per Envoy and access
// log, identifier on the first message only) and Zipkin v2 JSON spans with
// B3 ids and Envoy's shared span context. Nothing is sent to the simulated pod
// addresses; they only appear as data inside the messages.
//
// The model (Mesh) is pure and deterministic for a seed and a clock, so tests
// can assert on it and benchmarks can pre-generate traffic; Run drives it in
// real time, and Blast replays pre-generated messages as fast as a server
// takes them.
package demo

import (
	"fmt"
	"net"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// Istio conventions the simulated proxies follow.
const (
	// MeshID is Istio's default mesh id (the trust domain).
	MeshID = "cluster.local"
	// ClusterID is Istio's default CLUSTER_ID for a single-cluster install.
	ClusterID = "Kubernetes"
	// IstioVersion is the version the proxies claim to run.
	IstioVersion = "1.24.2"

	// HTTPLogName and TCPLogName are the log names Istio's envoy ALS
	// providers configure for HTTP and TCP access logs.
	HTTPLogName = "http_envoy_accesslog"
	TCPLogName  = "tcp_envoy_accesslog"
)

// ProxyKind is what Istio puts first in a node id.
type ProxyKind string

// Proxy kinds.
const (
	Sidecar ProxyKind = "sidecar"
	Router  ProxyKind = "router"
)

// Pod is one simulated workload instance with its Envoy.
type Pod struct {
	Name           string // pod name, e.g. reviews-v2-5d8f9c7b6d-x7k2p
	Namespace      string
	Workload       string // deployment, e.g. reviews-v2
	App            string // app label and canonical service
	Version        string // version label and canonical revision
	IP             string
	ServiceAccount string
	Kind           ProxyKind

	ip       net.IP
	nodeID   string
	cluster  string
	node     *corev3.Node
	peer     *anypb.Any // what metadata exchange tells a peer about this pod
	svc      *service   // the service this pod serves, nil for pure clients
	httpLogs bool       // has an HTTP access log (everything but mongodb)
	tcpLogs  bool       // has a TCP access log (ratings client side, mongodb)
}

// NodeID is the Envoy node id Istio gives the proxy:
// "sidecar~10.244.1.7~reviews-v2-5d8f9c-abcde.default~default.svc.cluster.local".
func (p *Pod) NodeID() string { return p.nodeID }

func (p *Pod) buildNodeID() string {
	return fmt.Sprintf("%s~%s~%s.%s~%s.svc.cluster.local", p.Kind, p.IP, p.Name, p.Namespace, p.Namespace)
}

// ServiceCluster is Envoy's node cluster and the Zipkin service name Istio
// uses: "<canonical service>.<namespace>".
func (p *Pod) ServiceCluster() string { return p.cluster }

// Principal is the SPIFFE id in the pod's workload certificate.
func (p *Pod) Principal() string {
	return "spiffe://" + MeshID + "/ns/" + p.Namespace + "/sa/" + p.ServiceAccount
}

// Node is the Envoy node the pod's proxy sends in its ALS identifier.
func (p *Pod) Node() *corev3.Node { return p.node }

func (p *Pod) buildNode() *corev3.Node {
	labels := map[string]any{
		"app":                                 p.App,
		"version":                             p.Version,
		"service.istio.io/canonical-name":     p.App,
		"service.istio.io/canonical-revision": p.Version,
		"security.istio.io/tlsMode":           "istio",
	}
	if p.Kind == Router {
		labels["istio"] = "ingressgateway"
		delete(labels, "security.istio.io/tlsMode")
	}
	meta := map[string]any{
		"NAME":              p.Name,
		"NAMESPACE":         p.Namespace,
		"LABELS":            labels,
		"WORKLOAD_NAME":     p.Workload,
		"OWNER":             "kubernetes://apis/apps/v1/namespaces/" + p.Namespace + "/deployments/" + p.Workload,
		"CLUSTER_ID":        ClusterID,
		"ISTIO_VERSION":     IstioVersion,
		"INSTANCE_IPS":      p.IP,
		"SERVICE_ACCOUNT":   p.ServiceAccount,
		"MESH_ID":           MeshID,
		"INTERCEPTION_MODE": "REDIRECT",
	}
	if p.Kind == Sidecar {
		meta["APP_CONTAINERS"] = p.App
	}
	st, err := structpb.NewStruct(meta)
	if err != nil {
		// Only strings and string maps go in; a failure is a programming error.
		panic(fmt.Sprintf("demo: node metadata: %v", err))
	}
	return &corev3.Node{
		Id:            p.NodeID(),
		Cluster:       p.ServiceCluster(),
		Metadata:      st,
		UserAgentName: "envoy",
		Locality:      &corev3.Locality{Region: "us-east1", Zone: "us-east1-b"},
	}
}

// buildPeer is the peer metadata Istio's (≥1.24) metadata exchange leaves
// in filter state ("upstream_peer" / "downstream_peer") and the ALS config
// logs: a WorkloadMetadataObject serialised as a google.protobuf.Struct.
func (p *Pod) buildPeer() *anypb.Any {
	st, err := structpb.NewStruct(map[string]any{
		"type": "deployment", "name": p.Name, "namespace": p.Namespace, "cluster": ClusterID,
		"workload": p.Workload, "service": p.App, "revision": p.Version,
		"app": p.App, "version": p.Version, "identity": p.Principal(),
	})
	if err == nil {
		// Deterministic, so that a seed reproduces the exact bytes.
		a := &anypb.Any{}
		if err = anypb.MarshalFrom(a, st, proto.MarshalOptions{Deterministic: true}); err == nil {
			return a
		}
	}
	panic(fmt.Sprintf("demo: peer metadata: %v", err))
}

// service is a Kubernetes service of the mesh.
type service struct {
	name      string
	namespace string
	clusterIP string
	port      uint32
	pods      []*Pod

	// Derived names, computed once: they go into every entry and span.
	fqdn     string // reviews.default.svc.cluster.local
	outbound string // the client sidecar's upstream cluster
	inbound  string // the server sidecar's upstream cluster
	spanName string // Envoy's operation name for the route
}

func (s *service) init() {
	s.fqdn = s.name + "." + s.namespace + ".svc.cluster.local"
	s.outbound = fmt.Sprintf("outbound|%d||%s", s.port, s.fqdn)
	s.inbound = fmt.Sprintf("inbound|%d||", s.port)
	s.spanName = fmt.Sprintf("%s:%d/*", s.fqdn, s.port)
}

// topology is the fixed Bookinfo deployment.
type topology struct {
	pods        []*Pod
	gateway     *Pod
	loadgen     *Pod
	productpage *service
	details     *service
	reviews     *service
	ratings     *service
	mongodb     *service
	// reviews pods by version, for the version-dependent call graph.
	reviewsV1, reviewsV2, reviewsV3 []*Pod
}

type podSpec struct {
	workload, app, version, ns, sa string
	kind                           ProxyKind
	ips                            []string
	hashes                         []string
}

func newTopology() *topology {
	t := &topology{
		productpage: &service{name: "productpage", namespace: "default", clusterIP: "10.96.113.41", port: 9080},
		details:     &service{name: "details", namespace: "default", clusterIP: "10.96.27.160", port: 9080},
		reviews:     &service{name: "reviews", namespace: "default", clusterIP: "10.96.214.9", port: 9080},
		ratings:     &service{name: "ratings", namespace: "default", clusterIP: "10.96.88.201", port: 9080},
		mongodb:     &service{name: "mongodb", namespace: "default", clusterIP: "10.96.140.77", port: 27017},
	}
	specs := []struct {
		podSpec
		svc *service
	}{
		{podSpec{"istio-ingressgateway", "istio-ingressgateway", "latest", "istio-system", "istio-ingressgateway-service-account", Router,
			[]string{"10.244.0.9"}, []string{"6b7c9f8d5-q4wzt"}}, nil},
		{podSpec{"loadgen", "loadgen", "v1", "tools", "loadgen", Sidecar,
			[]string{"10.244.3.40"}, []string{"84d6c5b9f7-m2xkr"}}, nil},
		{podSpec{"productpage-v1", "productpage", "v1", "default", "bookinfo-productpage", Sidecar,
			[]string{"10.244.1.11", "10.244.2.11"}, []string{"7f9c8b6d4-kx2mz", "7f9c8b6d4-p8q4n"}}, t.productpage},
		{podSpec{"details-v1", "details", "v1", "default", "bookinfo-details", Sidecar,
			[]string{"10.244.1.12", "10.244.2.12"}, []string{"5f4d584748-h7vzc", "5f4d584748-wq9tn"}}, t.details},
		{podSpec{"reviews-v1", "reviews", "v1", "default", "bookinfo-reviews", Sidecar,
			[]string{"10.244.1.13", "10.244.2.13"}, []string{"5b5d6494f4-2lbt8", "5b5d6494f4-vx6jd"}}, t.reviews},
		{podSpec{"reviews-v2", "reviews", "v2", "default", "bookinfo-reviews", Sidecar,
			[]string{"10.244.1.14", "10.244.2.14"}, []string{"5d8f9c7b6d-abcde", "5d8f9c7b6d-x7k2p"}}, t.reviews},
		{podSpec{"reviews-v3", "reviews", "v3", "default", "bookinfo-reviews", Sidecar,
			[]string{"10.244.1.15", "10.244.2.15"}, []string{"7dc4d7d8b4-gz5rm", "7dc4d7d8b4-n8c2s"}}, t.reviews},
		{podSpec{"ratings-v2", "ratings", "v2", "default", "bookinfo-ratings", Sidecar,
			[]string{"10.244.1.16", "10.244.2.16"}, []string{"6c8f7d9b5-fk4lp", "6c8f7d9b5-t9wqh"}}, t.ratings},
		{podSpec{"mongodb-v1", "mongodb", "v1", "default", "bookinfo-mongodb", Sidecar,
			[]string{"10.244.3.17"}, []string{"7d8f6b9c4-z2mvd"}}, t.mongodb},
	}
	for _, s := range []*service{t.productpage, t.details, t.reviews, t.ratings, t.mongodb} {
		s.init()
	}
	for _, s := range specs {
		for i, ip := range s.ips {
			p := &Pod{
				Name: s.workload + "-" + s.hashes[i], Namespace: s.ns, Workload: s.workload,
				App: s.app, Version: s.version, IP: ip, ServiceAccount: s.sa, Kind: s.kind,
				ip: net.ParseIP(ip).To4(), svc: s.svc,
				httpLogs: s.app != "mongodb",
				tcpLogs:  s.app == "ratings" || s.app == "mongodb",
			}
			p.nodeID, p.cluster = p.buildNodeID(), p.App+"."+p.Namespace
			p.node = p.buildNode()
			p.peer = p.buildPeer()
			t.pods = append(t.pods, p)
			if s.svc != nil {
				s.svc.pods = append(s.svc.pods, p)
			}
			switch s.workload {
			case "istio-ingressgateway":
				t.gateway = p
			case "loadgen":
				t.loadgen = p
			case "reviews-v1":
				t.reviewsV1 = append(t.reviewsV1, p)
			case "reviews-v2":
				t.reviewsV2 = append(t.reviewsV2, p)
			case "reviews-v3":
				t.reviewsV3 = append(t.reviewsV3, p)
			}
		}
	}
	return t
}
