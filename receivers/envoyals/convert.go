package envoyals

import (
	"errors"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshlens/meshlens/model"
)

// Reasons an entry is refused, used in logs and the refused counter.
var (
	errNoCommon    = errors.New("entry has no common_properties")
	errNoStartTime = errors.New("entry has no common_properties.start_time")
	errBadStart    = errors.New("entry's common_properties.start_time is out of range")
	errNotFinal    = errors.New("entry is an intermediate log (not the end of the request)")
)

// reasonOf names a conversion error for the refused counter.
func reasonOf(err error) string {
	switch err {
	case errNoCommon:
		return "missing_common_properties"
	case errNoStartTime:
		return "missing_start_time"
	case errBadStart:
		return "bad_start_time"
	case errNotFinal:
		return "intermediate_entry"
	}
	return "malformed"
}

// methods maps Envoy's RequestMethod enum to constant strings so the hot
// path never allocates for them.
var methods = [...]string{"", "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}

// cache bounds for per-stream lookups.
const (
	maxFlagCache = 256
	maxAddrCache = 4096
)

type addrKey struct {
	ip   string
	port uint32
}

// converter turns the entries of one stream into calls. It belongs to one
// stream goroutine, so its caches need no locking; they are bounded and
// simply dropped when full.
type converter struct {
	cfg   *Config
	proxy proxyInfo

	flags map[uint32]string
	addrs map[addrKey]string
	// peer caches are keyed by the raw filter state bytes, one per
	// encoding; proxies send the same few peers over and over.
	peers [3]map[string]peerResult
}

type peerResult struct {
	id model.Identity
	ok bool
}

func newConverter(cfg *Config, p proxyInfo) *converter {
	return &converter{
		cfg:   cfg,
		proxy: p,
		flags: make(map[uint32]string),
		addrs: make(map[addrKey]string),
	}
}

func (c *converter) flagString(f *accesslogv3.ResponseFlags) string {
	m := flagMask(f)
	if m == 0 {
		return ""
	}
	if s, ok := c.flags[m]; ok {
		return s
	}
	s := flagString(m)
	if len(c.flags) >= maxFlagCache {
		clear(c.flags)
	}
	c.flags[m] = s
	return s
}

// hostPort returns "ip:port" for a socket address, interned per stream.
func (c *converter) hostPort(ip string, port uint32) string {
	if port == 0 {
		return ip
	}
	k := addrKey{ip, port}
	if s, ok := c.addrs[k]; ok {
		return s
	}
	var s string
	if strings.IndexByte(ip, ':') >= 0 {
		s = "[" + ip + "]:" + strconv.FormatUint(uint64(port), 10)
	} else {
		s = ip + ":" + strconv.FormatUint(uint64(port), 10)
	}
	if len(c.addrs) >= maxAddrCache {
		clear(c.addrs)
	}
	c.addrs[k] = s
	return s
}

// peer decodes (with caching) the peer metadata under key, or reports false.
func (c *converter) peer(fs map[string]*anypb.Any, key, wasmKey string) (model.Identity, bool) {
	a := fs[key]
	if a == nil {
		a = fs[wasmKey]
		if a == nil {
			return model.Identity{}, false
		}
	}
	var slot int
	switch a.GetTypeUrl() {
	case typeStruct:
		slot = 0
	case typeBytesValue:
		slot = 1
	case typeStringValue:
		slot = 2
	default:
		return model.Identity{}, false
	}
	m := c.peers[slot]
	if r, ok := m[string(a.GetValue())]; ok {
		return r.id, r.ok
	}
	id, err := decodePeer(a, c.cfg.ServiceLabels)
	r := peerResult{id: id, ok: err == nil}
	if m == nil {
		m = make(map[string]peerResult)
		c.peers[slot] = m
	}
	if len(m) >= c.cfg.PeerCacheSize {
		clear(m)
	}
	m[string(a.GetValue())] = r
	return r.id, r.ok
}

// socket returns the IP and port of an Envoy address.
func socket(a *corev3.Address) (string, uint32) {
	s := a.GetSocketAddress()
	return s.GetAddress(), s.GetPortValue()
}

// side says where an entry sits relative to the proxy that logged it.
type side uint8

const (
	sideOutbound side = iota
	sideInbound
	sideGateway
	sideWaypoint
)

func (c *converter) sideOf(cm *accesslogv3.AccessLogCommon) side {
	switch c.proxy.role {
	case RoleGateway:
		return sideGateway
	case RoleWaypoint:
		return sideWaypoint
	}
	uc := cm.GetUpstreamCluster()
	if strings.HasPrefix(uc, "inbound|") {
		return sideInbound
	}
	if uc == "" || strings.HasPrefix(uc, "InboundPassthroughCluster") {
		// No route (NR) or passthrough: the ALS message has no traffic
		// direction, but inbound traffic was addressed to the proxy's own IP.
		if ip, _ := socket(cm.GetDownstreamLocalAddress()); ip != "" && c.proxy.isOwnIP(ip) {
			return sideInbound
		}
		if strings.HasPrefix(uc, "InboundPassthroughCluster") {
			return sideInbound
		}
	}
	return sideOutbound
}

// downstreamPeer is what the entry says of the connection's client.
func (c *converter) downstreamPeer(cm *accesslogv3.AccessLogCommon) model.Identity {
	id, ok := c.peer(cm.GetFilterStateObjects(), fsDownstreamPeer, fsWasmDownstreamPeer)
	ip, _ := socket(cm.GetDownstreamRemoteAddress())
	if !ok {
		// The client's port is ephemeral: the instance is named by IP only.
		id = model.Identity{IP: ip, Instance: ip}
	} else if id.IP == "" {
		id.IP = ip
	}
	if p := peerPrincipal(cm.GetTlsProperties()); p != "" {
		id.Principal = p
	}
	return id
}

// upstreamPeer is what the entry says of the host the proxy forwarded to.
func (c *converter) upstreamPeer(cm *accesslogv3.AccessLogCommon) model.Identity {
	id, ok := c.peer(cm.GetFilterStateObjects(), fsUpstreamPeer, fsWasmUpstreamPeer)
	ip, port := socket(cm.GetUpstreamRemoteAddress())
	if !ok {
		id = model.Identity{IP: ip, Instance: c.hostPort(ip, port)}
	} else if id.IP == "" {
		id.IP = ip
	}
	return id
}

// self is the proxy's own identity as seen on this entry's connection.
func (c *converter) self(cm *accesslogv3.AccessLogCommon, inbound bool) model.Identity {
	id := c.proxy.self
	if inbound {
		if p := localPrincipal(cm.GetTlsProperties()); p != "" {
			id.Principal = p
		}
	}
	return id
}

func uriSAN(cp *accesslogv3.TLSProperties_CertificateProperties) string {
	for _, san := range cp.GetSubjectAltName() {
		if u := san.GetUri(); u != "" {
			return u
		}
	}
	return ""
}

func peerPrincipal(t *accesslogv3.TLSProperties) string {
	return uriSAN(t.GetPeerCertificateProperties())
}

func localPrincipal(t *accesslogv3.TLSProperties) string {
	return uriSAN(t.GetLocalCertificateProperties())
}

// tlsMode reads the downstream connection's security: mutual when the peer
// presented a certificate.
func tlsMode(t *accesslogv3.TLSProperties) model.TLSMode {
	if t == nil {
		return model.TLSNone
	}
	if pc := t.GetPeerCertificateProperties(); pc != nil && (len(pc.GetSubjectAltName()) > 0 || pc.GetSubject() != "") {
		return model.TLSMutual
	}
	if t.GetTlsVersion() != accesslogv3.TLSProperties_VERSION_UNSPECIFIED || t.GetTlsSniHostname() != "" ||
		t.GetTlsCipherSuite() != nil || t.GetLocalCertificateProperties() != nil {
		return model.TLSSimple
	}
	return model.TLSNone
}

// common fills the fields every entry type has.
func (c *converter) common(cm *accesslogv3.AccessLogCommon, call *model.Call) error {
	if cm == nil {
		return errNoCommon
	}
	st := cm.GetStartTime()
	if st == nil {
		return errNoStartTime
	}
	if st.GetSeconds() < 0 || st.GetSeconds() > 253402300799 || st.GetNanos() < 0 || st.GetNanos() > 999999999 {
		return errBadStart
	}
	call.Start = time.Unix(st.GetSeconds(), int64(st.GetNanos()))
	d := cm.GetTimeToLastDownstreamTxByte()
	if d == nil {
		d = cm.GetDuration()
	}
	if d != nil && d.GetSeconds() >= 0 && d.GetSeconds() < 1<<33 {
		call.Duration = time.Duration(d.GetSeconds())*time.Second + time.Duration(d.GetNanos())
	}
	call.ResponseFlags = c.flagString(cm.GetResponseFlags())
	call.UpstreamCluster = cm.GetUpstreamCluster()
	call.TLS = tlsMode(cm.GetTlsProperties())
	call.GRPCStatus = -1
	return nil
}

// emit appends the call(s) one entry yields given which side logged it:
// one for a sidecar or waypoint, two for a gateway.
func (c *converter) emit(dst []model.Call, call *model.Call, cm *accesslogv3.AccessLogCommon) []model.Call {
	switch c.sideOf(cm) {
	case sideInbound:
		call.DetectPoint = model.DetectServer
		call.Source = c.downstreamPeer(cm)
		call.Destination = c.self(cm, true)
		return append(dst, *call)
	case sideOutbound:
		call.DetectPoint = model.DetectClient
		call.Source = c.self(cm, false)
		call.Destination = c.upstreamPeer(cm)
		return append(dst, *call)
	case sideWaypoint:
		call.DetectPoint = model.DetectProxy
		call.Source = c.downstreamPeer(cm)
		call.Destination = c.upstreamPeer(cm)
		return append(dst, *call)
	}
	// Gateway: the downstream leg (client -> gateway) as the gateway's
	// server side, then the upstream leg (gateway -> backend) as its client
	// side, which is how Istio reports gateway traffic (reporter="source").
	down := *call
	down.DetectPoint = model.DetectServer
	down.Source = c.downstreamPeer(cm)
	down.Destination = c.self(cm, true)
	call.DetectPoint = model.DetectClient
	call.Source = c.self(cm, false)
	call.Destination = c.upstreamPeer(cm)
	// The upstream leg left over TLS Envoy does not log; the downstream
	// connection's mode belongs to the downstream leg only.
	call.TLS = model.TLSNone
	return append(dst, down, *call)
}

// appendHTTP converts one HTTP entry.
func (c *converter) appendHTTP(dst []model.Call, e *accesslogv3.HTTPAccessLogEntry) ([]model.Call, error) {
	cm := e.GetCommonProperties()
	switch cm.GetAccessLogType() {
	case accesslogv3.AccessLogType_NotSet, accesslogv3.AccessLogType_DownstreamEnd:
		if cm.GetIntermediateLogEntry() {
			return dst, errNotFinal
		}
	default:
		return dst, errNotFinal
	}
	var call model.Call
	if err := c.common(cm, &call); err != nil {
		return dst, err
	}
	req, resp := e.GetRequest(), e.GetResponse()
	if m := int(req.GetRequestMethod()); m >= 0 && m < len(methods) {
		call.Method = methods[m]
	}
	call.Path = req.GetPath()
	call.Authority = req.GetAuthority()
	call.RequestID = req.GetRequestId()
	call.StatusCode = int(resp.GetResponseCode().GetValue())
	call.RequestBytes = req.GetRequestHeadersBytes() + req.GetRequestBodyBytes()
	call.ResponseBytes = resp.GetResponseHeadersBytes() + resp.GetResponseBodyBytes()
	call.Protocol = model.ProtocolHTTP
	if g, st := c.grpcOf(e, req, resp); g {
		call.Protocol = model.ProtocolGRPC
		call.GRPCStatus = st
	}
	return c.emit(dst, &call, cm), nil
}

// grpcOf says whether an HTTP entry is gRPC, and its status (-1 unknown).
func (c *converter) grpcOf(e *accesslogv3.HTTPAccessLogEntry, req *accesslogv3.HTTPRequestProperties, resp *accesslogv3.HTTPResponseProperties) (bool, int) {
	st, found := grpcStatus(resp.GetResponseTrailers())
	if !found {
		st, found = grpcStatus(resp.GetResponseHeaders())
	}
	if found {
		return true, st
	}
	if strings.HasPrefix(req.GetRequestHeaders()["content-type"], "application/grpc") {
		return true, -1
	}
	if c.cfg.GRPCPathHeuristic && req.GetRequestMethod() == corev3.RequestMethod_POST &&
		e.GetProtocolVersion() == accesslogv3.HTTPAccessLogEntry_HTTP2 && looksLikeGRPCPath(req.GetPath()) {
		return true, -1
	}
	return false, -1
}

func grpcStatus(h map[string]string) (int, bool) {
	v, ok := h["grpc-status"]
	if !ok {
		return -1, false
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > 16 {
		return -1, true
	}
	return n, true
}

// looksLikeGRPCPath matches "/package.Service/Method": two segments, the
// first with a dot, no query string.
func looksLikeGRPCPath(p string) bool {
	if len(p) < 4 || p[0] != '/' {
		return false
	}
	svc, method, ok := strings.Cut(p[1:], "/")
	if !ok || method == "" || strings.IndexByte(svc, '.') <= 0 || strings.HasSuffix(svc, ".") {
		return false
	}
	return strings.IndexAny(method, "/?.") < 0
}

// appendTCP converts one TCP entry.
func (c *converter) appendTCP(dst []model.Call, e *accesslogv3.TCPAccessLogEntry) ([]model.Call, error) {
	cm := e.GetCommonProperties()
	var call model.Call
	if err := c.common(cm, &call); err != nil {
		return dst, err
	}
	call.Protocol = model.ProtocolTCP
	cp := e.GetConnectionProperties()
	call.RequestBytes = cp.GetReceivedBytes()
	call.ResponseBytes = cp.GetSentBytes()
	switch cm.GetAccessLogType() {
	case accesslogv3.AccessLogType_TcpUpstreamConnected, accesslogv3.AccessLogType_TcpConnectionStart:
		call.ConnOpened = true
	case accesslogv3.AccessLogType_TcpPeriodic:
	case accesslogv3.AccessLogType_TcpConnectionEnd:
		call.ConnClosed = true
		call.ConnOpened = !c.cfg.TCPOpenLoggedSeparately
	default:
		// Envoy before access_log_type: intermediate entries are periodic,
		// the last one ends the connection.
		if !cm.GetIntermediateLogEntry() {
			call.ConnClosed = true
			call.ConnOpened = !c.cfg.TCPOpenLoggedSeparately
		}
	}
	return c.emit(dst, &call, cm), nil
}
