// Package model holds the types every stage of meshlens shares: the
// Service / Instance / Endpoint identities of a service mesh, the relations
// between them, and Call, the one normalised record of "a request happened"
// that every receiver produces and every processor consumes.
//
// The package imports nothing from the rest of the repository so that any
// receiver, processor or storage package can depend on it.
package model

import (
	"time"
)

// DetectPoint says which side observed a call. A sidecar's outbound listener
// sees the client side, its inbound listener the server side; a gateway
// (Istio's "router") is a proxy in the middle that sees both.
type DetectPoint uint8

// Detect points, in the order SkyWalking numbers them on the wire.
const (
	DetectClient DetectPoint = iota
	DetectServer
	DetectProxy
)

// String returns the lower-case name used in labels and APIs.
func (d DetectPoint) String() string {
	switch d {
	case DetectClient:
		return "client"
	case DetectServer:
		return "server"
	case DetectProxy:
		return "proxy"
	}
	return "unknown"
}

// Reporter is Istio's name for the side that reported a metric: "source"
// for client-side (and gateway) observations, "destination" for server-side.
func (d DetectPoint) Reporter() string {
	if d == DetectServer {
		return "destination"
	}
	return "source"
}

// Protocol is the application protocol of a call.
type Protocol uint8

// Protocols meshlens distinguishes.
const (
	ProtocolHTTP Protocol = iota
	ProtocolGRPC
	ProtocolTCP
)

// String returns the lower-case name Istio uses in request_protocol.
func (p Protocol) String() string {
	switch p {
	case ProtocolHTTP:
		return "http"
	case ProtocolGRPC:
		return "grpc"
	case ProtocolTCP:
		return "tcp"
	}
	return "unknown"
}

// TLSMode is the transport security of a connection.
type TLSMode uint8

// TLS modes. MTLS means the peer presented a certificate too.
const (
	TLSNone TLSMode = iota
	TLSSimple
	TLSMutual
)

// String returns "none", "tls" or "mtls".
func (t TLSMode) String() string {
	switch t {
	case TLSSimple:
		return "tls"
	case TLSMutual:
		return "mtls"
	}
	return "none"
}

// SecurityPolicy is Istio's connection_security_policy label for a call
// observed from side d: only the server side can know, so client-side
// observations say "unknown".
func (t TLSMode) SecurityPolicy(d DetectPoint) string {
	if d != DetectServer {
		return "unknown"
	}
	if t == TLSMutual {
		return "mutual_tls"
	}
	return "none"
}

// Unknown is the name given to a service, workload or namespace that could
// not be resolved. Unresolved peers are kept under this name rather than
// dropped, so that traffic from outside the mesh is still visible.
const Unknown = "unknown"

// Identity names one side of a call: the service it belongs to and the
// instance (pod, VM, host:port) that served or sent it.
type Identity struct {
	// Service is the canonical service name (Istio's canonical-name label,
	// else the app label, else the workload name).
	Service string
	// Namespace is the Kubernetes namespace or an equivalent grouping.
	Namespace string
	// Cluster is the mesh cluster ID (Istio's CLUSTER_ID).
	Cluster string
	// Workload is the deployment-level name (Istio's WORKLOAD_NAME).
	Workload string
	// Version is the service version label (Istio's version label).
	Version string
	// Instance names one running copy: a pod name, or an ip:port.
	Instance string
	// Principal is the SPIFFE identity of the peer certificate, if known.
	Principal string
	// IP is the address the instance was seen at, if known.
	IP string
}

// IsUnknown reports whether the identity could not be resolved to a service.
func (id Identity) IsUnknown() bool { return id.Service == "" || id.Service == Unknown }

// ServiceID returns the service this identity belongs to.
func (id Identity) ServiceID() ServiceID {
	return ServiceID{Name: id.Service, Namespace: id.Namespace, Cluster: id.Cluster}
}

// InstanceID returns the instance this identity names.
func (id Identity) InstanceID() InstanceID {
	return InstanceID{Service: id.ServiceID(), Name: id.Instance, Version: id.Version}
}

// ServiceID identifies a Service: the logical unit of a mesh that many
// instances serve, such as "reviews" in namespace "default".
type ServiceID struct {
	Name      string
	Namespace string
	Cluster   string
}

// InstanceID identifies one Instance of a service.
type InstanceID struct {
	Service ServiceID
	Name    string
	Version string
}

// EndpointID identifies an Endpoint: one operation a service offers, such
// as "GET:/reviews/{id}" or the gRPC method "/hipstershop.Cart/GetCart".
type EndpointID struct {
	Service ServiceID
	Name    string
}

// ServiceRelation is a directed service→service edge as seen from one side.
type ServiceRelation struct {
	Source, Destination ServiceID
	DetectPoint         DetectPoint
	Protocol            Protocol
	TLS                 TLSMode
}

// InstanceRelation is a directed instance→instance edge as seen from one side.
type InstanceRelation struct {
	Source, Destination InstanceID
	DetectPoint         DetectPoint
	Protocol            Protocol
	TLS                 TLSMode
}

// EndpointRelation is a directed endpoint→endpoint edge as seen from one
// side. The source endpoint is often unknown for access logs (the proxy does
// not know which operation of the caller made the request) and is then empty.
type EndpointRelation struct {
	Source, Destination EndpointID
	DetectPoint         DetectPoint
}

// Origin says which kind of telemetry a call was derived from.
type Origin uint8

// Origins. The zero value is an access log, the mesh's own account of a
// request; spans describe the same requests again when a mesh sends both.
const (
	OriginAccessLog Origin = iota
	OriginMeshReport
	OriginSpan
)

// Call is the normalised record of one request (or, for TCP, one
// connection) between two identities, as observed from DetectPoint.
type Call struct {
	Source      Identity
	Destination Identity
	// Endpoint is the destination operation: "METHOD:/path" for HTTP (the
	// path templated, see processors/endpoints), the gRPC method for gRPC,
	// empty for TCP.
	Endpoint string

	// Start is when the request started (downstream start for Envoy).
	Start time.Time
	// Duration is the time until the last byte of the response was sent.
	Duration time.Duration

	// StatusCode is the HTTP status; 0 for TCP or when no response was sent.
	StatusCode int
	// GRPCStatus is the gRPC status code, or -1 when the call is not gRPC or
	// the status is not known.
	GRPCStatus int
	// ResponseFlags are Envoy's short response flags, comma-separated
	// ("UH", "UT,URX"), or empty when there were none.
	ResponseFlags string

	// RequestBytes and ResponseBytes are wire bytes (headers and body).
	RequestBytes  uint64
	ResponseBytes uint64

	Protocol    Protocol
	TLS         TLSMode
	DetectPoint DetectPoint

	// Method, Path and Authority are the raw HTTP request attributes.
	Method    string
	Path      string
	Authority string
	// RequestID is the x-request-id header, for correlation with traces.
	RequestID string
	// UpstreamCluster is Envoy's upstream cluster name, for example
	// "outbound|9080||reviews.default.svc.cluster.local".
	UpstreamCluster string

	// TCP connection lifecycle: a TCP record may report a connection opening,
	// closing, or both (a short connection logged once at its end).
	ConnOpened bool
	ConnClosed bool

	// Origin is the kind of telemetry the call was derived from.
	Origin Origin

	// Tenant is the tenant that sent the call when multi-tenancy is on
	// (docs/security.md), empty otherwise. It becomes the TenantLabel of
	// every series the call is counted in.
	Tenant string
}

// TenantLabel is the label every series written for a tenant carries when
// multi-tenancy is on; queries of that tenant are confined to it.
const TenantLabel = "tenant"

// TenantAttribute is the resource attribute that records, on every stored
// span, the tenant that sent it. Ingest overwrites whatever the client put
// there, so a tenant cannot write as another.
const TenantAttribute = "meshlens.tenant"

// IsError reports whether the call failed: an HTTP status of 500 or more, a
// non-OK gRPC status, or (for TCP) any response flag.
func (c *Call) IsError() bool {
	switch c.Protocol {
	case ProtocolTCP:
		return c.ResponseFlags != ""
	case ProtocolGRPC:
		if c.GRPCStatus > 0 {
			return true
		}
	}
	return c.StatusCode >= 500 || (c.StatusCode == 0 && c.ResponseFlags != "")
}
