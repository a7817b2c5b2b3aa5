package identity

import (
	"net/netip"
	"strconv"
	"strings"
)

// ClusterKind classifies an Envoy upstream cluster name as Istio builds it.
type ClusterKind uint8

// Cluster kinds.
const (
	// ClusterOther is a name Istio does not generate (a user-defined
	// cluster, or garbage).
	ClusterOther ClusterKind = iota
	// ClusterOutbound is "outbound|PORT|SUBSET|HOST" (also the SNI form
	// "outbound_.PORT_.SUBSET_.HOST" and ambient's "inbound-vip|...").
	ClusterOutbound
	// ClusterInbound is "inbound|PORT|NAME|HOST" (HOST usually empty): the
	// server side of a sidecar.
	ClusterInbound
	// ClusterPassthrough is "PassthroughCluster": traffic to a destination
	// outside the mesh registry, forwarded as is.
	ClusterPassthrough
	// ClusterInboundPassthrough is "InboundPassthroughClusterIpv4/6".
	ClusterInboundPassthrough
	// ClusterBlackHole is "BlackHoleCluster": traffic Istio refused to route.
	ClusterBlackHole
)

// Cluster is a parsed upstream cluster name.
type Cluster struct {
	Kind   ClusterKind
	Port   int
	Subset string
	// Host is the FQDN ("reviews.default.svc.cluster.local") or external
	// host ("api.example.com") of an outbound cluster.
	Host string
	// Service and Namespace are derived from Host: a Kubernetes service
	// FQDN gives its name and namespace; any other host is its own service
	// name with an empty namespace.
	Service, Namespace string
}

// ParseUpstreamCluster parses an Envoy upstream_cluster as Istio names
// them. ok is false for names it does not recognise.
func ParseUpstreamCluster(s string) (c Cluster, ok bool) {
	switch {
	case s == "":
		return c, false
	case s == "PassthroughCluster":
		return Cluster{Kind: ClusterPassthrough}, true
	case s == "BlackHoleCluster":
		return Cluster{Kind: ClusterBlackHole}, true
	case strings.HasPrefix(s, "InboundPassthroughCluster"):
		return Cluster{Kind: ClusterInboundPassthrough}, true
	}
	var parts [4]string
	var sep string
	switch {
	case strings.HasPrefix(s, "outbound|"), strings.HasPrefix(s, "inbound|"), strings.HasPrefix(s, "inbound-vip|"):
		sep = "|"
	case strings.HasPrefix(s, "outbound_."), strings.HasPrefix(s, "inbound_."):
		sep = "_."
	default:
		return c, false
	}
	rest := s
	for i := 0; i < 3; i++ {
		p, r, found := strings.Cut(rest, sep)
		if !found {
			return c, false
		}
		parts[i], rest = p, r
	}
	parts[3] = rest
	port, err := strconv.Atoi(parts[1])
	if err != nil || port < 0 || port > 65535 {
		return c, false
	}
	c.Port = port
	c.Subset = parts[2]
	if sep == "_." && c.Subset == "_" {
		c.Subset = ""
	}
	switch parts[0] {
	case "outbound", "inbound-vip":
		c.Kind = ClusterOutbound
	default:
		c.Kind = ClusterInbound
	}
	c.Host = parts[3]
	if strings.ContainsAny(c.Host, "|/ ") {
		return Cluster{}, false
	}
	c.Service, c.Namespace = hostService(c.Host)
	return c, true
}

// hostService names the service of an FQDN: "NAME.NAMESPACE.svc.DOMAIN"
// gives NAME and NAMESPACE; an IP gives nothing; any other host is its own
// service (a ServiceEntry host such as "api.example.com").
func hostService(host string) (svc, ns string) {
	if host == "" || isIP(host) {
		return "", ""
	}
	name, rest, ok := strings.Cut(host, ".")
	if ok {
		nsPart, rest2, ok2 := strings.Cut(rest, ".")
		if ok2 && (rest2 == "svc" || strings.HasPrefix(rest2, "svc.")) && name != "" && nsPart != "" {
			return name, nsPart
		}
	}
	return host, ""
}

func isIP(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

// publicSuffixes are the last labels that make "a.b" an external host
// rather than Kubernetes' "service.namespace" short form.
var publicSuffixes = map[string]bool{
	"com": true, "org": true, "net": true, "io": true, "dev": true, "app": true, "co": true,
	"edu": true, "gov": true, "info": true, "biz": true, "cloud": true, "ai": true, "me": true,
	"local": true, "internal": true, "localhost": true,
}

// Authority is what a request authority says of the destination.
type Authority struct {
	// IP is set when the authority is an address literal.
	IP   string
	Port int
	// Service and Namespace: Namespace is empty for a short name
	// ("reviews:9080", which resolves in the caller's namespace) and for
	// external hosts.
	Service, Namespace string
	// External is set for hosts outside the cluster DNS ("api.example.com").
	External bool
}

// ParseAuthority reads an HTTP authority ("reviews:9080",
// "reviews.default.svc.cluster.local", "details.default", "10.0.0.5:8080",
// "[fd00::1]:80", "api.example.com"). ok is false for an empty or invalid one.
func ParseAuthority(s string) (a Authority, ok bool) {
	host := s
	if strings.HasPrefix(host, "[") {
		end := strings.IndexByte(host, ']')
		if end < 0 {
			return a, false
		}
		if rest := host[end+1:]; rest != "" {
			p, ok := parsePort(rest)
			if !ok {
				return a, false
			}
			a.Port = p
		}
		host = host[1:end]
		if !isIP(host) {
			return Authority{}, false
		}
		a.IP = host
		return a, true
	}
	if i := strings.LastIndexByte(host, ':'); i >= 0 {
		if strings.Count(host, ":") > 1 {
			// A bare IPv6 address.
			if !isIP(host) {
				return a, false
			}
			a.IP = host
			return a, true
		}
		p, ok := parsePort(host[i:])
		if !ok {
			return a, false
		}
		a.Port = p
		host = host[:i]
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "" || len(host) > 253 || strings.ContainsAny(host, "/@ ?#|\\") {
		return Authority{}, false
	}
	if isIP(host) {
		a.IP = host
		return a, true
	}
	labels := strings.Split(host, ".")
	for _, l := range labels {
		if l == "" {
			return Authority{}, false
		}
	}
	switch {
	case len(labels) == 1:
		a.Service = host
	case len(labels) >= 3 && labels[2] == "svc":
		a.Service, a.Namespace = labels[0], labels[1]
	case len(labels) == 2 && !publicSuffixes[labels[1]]:
		a.Service, a.Namespace = labels[0], labels[1]
	default:
		a.Service, a.External = host, true
	}
	return a, true
}

func parsePort(s string) (int, bool) {
	if len(s) < 2 || s[0] != ':' {
		return 0, false
	}
	p, err := strconv.Atoi(s[1:])
	if err != nil || p < 0 || p > 65535 {
		return 0, false
	}
	return p, true
}

// splitHostPort splits an Instance of the form "ip:port" or "[ip6]:port".
func splitHostPort(s string) (string, int) {
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return s, 0
		}
		p, _ := parsePort(s[end+1:])
		return s[1:end], p
	}
	if strings.Count(s, ":") == 1 {
		i := strings.IndexByte(s, ':')
		if p, ok := parsePort(s[i:]); ok {
			return s[:i], p
		}
	}
	return s, 0
}
