package envoyals

import (
	"errors"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"

	"github.com/meshlens/meshlens/model"
)

// Reasons an entry is refused, used in logs and the refused counter.
var (
	errNoStartTime = errors.New("entry has no common_properties.start_time")
	errBadStart    = errors.New("entry's common_properties.start_time is out of range")
	errNotFinal    = errors.New("entry is an intermediate log (not the end of the request)")
)

// reasonOf names a conversion error for the refused counter.
func reasonOf(err error) string {
	switch err {
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

	strs interner
	e    entry
	msg  message
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
		strs:  interner{m: make(map[string]string), max: maxInterned},
	}
}

// maxInterned bounds the per-stream string interner.
const maxInterned = 2048

func (c *converter) flagString(m uint32) string {
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

// peer decodes (with caching) a peer metadata filter state object, or
// reports false.
func (c *converter) peer(v fsValue) (model.Identity, bool) {
	var slot int
	switch v.typeURL {
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
	if r, ok := m[string(v.value)]; ok {
		return r.id, r.ok
	}
	id, err := decodePeerRaw(v.typeURL, v.value, c.cfg.ServiceLabels)
	r := peerResult{id: id, ok: err == nil}
	if m == nil {
		m = make(map[string]peerResult)
		c.peers[slot] = m
	}
	if len(m) >= c.cfg.PeerCacheSize {
		clear(m)
	}
	m[string(v.value)] = r
	return r.id, r.ok
}

// side says where an entry sits relative to the proxy that logged it.
type side uint8

const (
	sideOutbound side = iota
	sideInbound
	sideGateway
	sideWaypoint
)

func (c *converter) sideOf(e *entry) side {
	switch c.proxy.role {
	case RoleGateway:
		return sideGateway
	case RoleWaypoint:
		return sideWaypoint
	}
	uc := e.upstreamCluster
	if strings.HasPrefix(uc, "inbound|") || strings.HasPrefix(uc, "InboundPassthroughCluster") {
		return sideInbound
	}
	// No route (NR): the ALS message has no traffic direction, but inbound
	// traffic was addressed to one of the proxy's own IPs.
	if uc == "" && e.downLocalIP != "" && c.proxy.isOwnIP(e.downLocalIP) {
		return sideInbound
	}
	return sideOutbound
}

// downstreamPeer is what the entry says of the connection's client.
func (c *converter) downstreamPeer(e *entry) model.Identity {
	id, ok := c.peer(e.downPeer)
	if !ok {
		// The client's port is ephemeral: the instance is named by IP only.
		id = model.Identity{IP: e.downRemoteIP, Instance: e.downRemoteIP}
	} else if id.IP == "" {
		id.IP = e.downRemoteIP
	}
	if e.peerPrincipal != "" {
		id.Principal = e.peerPrincipal
	}
	return id
}

// upstreamPeer is what the entry says of the host the proxy forwarded to.
func (c *converter) upstreamPeer(e *entry) model.Identity {
	id, ok := c.peer(e.upPeer)
	if !ok {
		id = model.Identity{IP: e.upRemoteIP, Instance: c.hostPort(e.upRemoteIP, e.upRemotePort)}
	} else if id.IP == "" {
		id.IP = e.upRemoteIP
	}
	return id
}

// self is the proxy's own identity as seen on this entry's connection.
func (c *converter) self(e *entry, inbound bool) model.Identity {
	id := c.proxy.self
	if inbound && e.localPri != "" {
		id.Principal = e.localPri
	}
	return id
}

// maxDurationSec keeps durations inside time.Duration.
const maxDurationSec = 1 << 33

func toDuration(d durationParts) time.Duration {
	if d.sec < 0 || d.sec >= maxDurationSec || d.nanos < 0 {
		return 0
	}
	return time.Duration(d.sec)*time.Second + time.Duration(d.nanos)
}

// common fills the fields every entry type has.
func (c *converter) common(e *entry, call *model.Call) error {
	if !e.hasStart {
		return errNoStartTime
	}
	if e.startSec < 0 || e.startSec > 253402300799 || e.startNanos < 0 || e.startNanos > 999999999 {
		return errBadStart
	}
	call.Start = time.Unix(e.startSec, int64(e.startNanos))
	switch {
	case e.hasTTLDTx:
		call.Duration = toDuration(e.ttldtx)
	case e.hasDur:
		call.Duration = toDuration(e.dur)
	}
	call.ResponseFlags = c.flagString(e.flags)
	call.UpstreamCluster = e.upstreamCluster
	call.TLS = e.tls
	call.GRPCStatus = -1
	return nil
}

// emit appends the call(s) one entry yields given which side logged it:
// one for a sidecar or waypoint, two for a gateway.
func (c *converter) emit(dst []model.Call, call *model.Call, e *entry) []model.Call {
	switch c.sideOf(e) {
	case sideInbound:
		call.DetectPoint = model.DetectServer
		call.Source = c.downstreamPeer(e)
		call.Destination = c.self(e, true)
		return append(dst, *call)
	case sideOutbound:
		call.DetectPoint = model.DetectClient
		call.Source = c.self(e, false)
		call.Destination = c.upstreamPeer(e)
		return append(dst, *call)
	case sideWaypoint:
		call.DetectPoint = model.DetectProxy
		call.Source = c.downstreamPeer(e)
		call.Destination = c.upstreamPeer(e)
		return append(dst, *call)
	}
	// Gateway: the downstream leg (client -> gateway) as the gateway's
	// server side, then the upstream leg (gateway -> backend) as its client
	// side, which is how Istio reports gateway traffic (reporter="source").
	down := *call
	down.DetectPoint = model.DetectServer
	down.Source = c.downstreamPeer(e)
	down.Destination = c.self(e, true)
	call.DetectPoint = model.DetectClient
	call.Source = c.self(e, false)
	call.Destination = c.upstreamPeer(e)
	// Envoy logs the downstream connection's TLS only; it belongs to the
	// downstream leg.
	call.TLS = model.TLSNone
	return append(dst, down, *call)
}

// appendHTTP converts one decoded HTTP entry.
func (c *converter) appendHTTP(dst []model.Call, e *entry) ([]model.Call, error) {
	switch accesslogv3.AccessLogType(e.logType) {
	case accesslogv3.AccessLogType_NotSet, accesslogv3.AccessLogType_DownstreamEnd:
		if e.intermediate {
			return dst, errNotFinal
		}
	default:
		return dst, errNotFinal
	}
	var call model.Call
	if err := c.common(e, &call); err != nil {
		return dst, err
	}
	if e.method >= 0 && int(e.method) < len(methods) {
		call.Method = methods[e.method]
	}
	call.Path = e.path
	call.Authority = e.authority
	call.RequestID = e.requestID
	call.StatusCode = int(e.respCode)
	call.RequestBytes = e.reqBytes
	call.ResponseBytes = e.respBytes
	call.Protocol = model.ProtocolHTTP
	if g, st := c.grpcOf(e); g {
		call.Protocol = model.ProtocolGRPC
		call.GRPCStatus = st
	}
	return c.emit(dst, &call, e), nil
}

// grpcOf says whether an HTTP entry is gRPC, and its status (-1 unknown).
func (c *converter) grpcOf(e *entry) (bool, int) {
	if e.grpcInHdr {
		n, err := strconv.Atoi(e.grpcStatus)
		if err != nil || n < 0 || n > 16 {
			return true, -1
		}
		return true, n
	}
	if strings.HasPrefix(e.contentType, "application/grpc") {
		return true, -1
	}
	if c.cfg.GRPCPathHeuristic && e.method == int32(corev3.RequestMethod_POST) &&
		e.protoVersion == int32(accesslogv3.HTTPAccessLogEntry_HTTP2) && looksLikeGRPCPath(e.path) {
		return true, -1
	}
	return false, -1
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

// appendTCP converts one decoded TCP entry.
func (c *converter) appendTCP(dst []model.Call, e *entry) ([]model.Call, error) {
	var call model.Call
	if err := c.common(e, &call); err != nil {
		return dst, err
	}
	call.Protocol = model.ProtocolTCP
	call.RequestBytes = e.received
	call.ResponseBytes = e.sent
	switch accesslogv3.AccessLogType(e.logType) {
	case accesslogv3.AccessLogType_TcpUpstreamConnected, accesslogv3.AccessLogType_TcpConnectionStart:
		call.ConnOpened = true
	case accesslogv3.AccessLogType_TcpPeriodic:
	case accesslogv3.AccessLogType_TcpConnectionEnd:
		call.ConnClosed = true
		call.ConnOpened = !c.cfg.TCPOpenLoggedSeparately
	default:
		// Envoy before access_log_type: intermediate entries are periodic,
		// the last one ends the connection.
		if !e.intermediate {
			call.ConnClosed = true
			call.ConnOpened = !c.cfg.TCPOpenLoggedSeparately
		}
	}
	return c.emit(dst, &call, e), nil
}
