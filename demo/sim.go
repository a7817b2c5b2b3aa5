package demo

import (
	"encoding/hex"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	alsdata "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	zipkin "github.com/openzipkin/zipkin-go/model"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Recurring incidents, driven by the clock so that every meshlens instance
// watching the demo sees them at the same wall-clock minutes.
const (
	// RatingsSlowFactor multiplies ratings' own processing time during the
	// ratings slowdown.
	RatingsSlowFactor = 10
	// DetailsOutageErrorRate is the share of details requests answered 503
	// during a details outage.
	DetailsOutageErrorRate = 0.3
)

// RatingsSlow reports whether t falls in the ratings slowdown: minutes 5 to 8
// of every quarter hour.
func RatingsSlow(t time.Time) bool {
	s := t.Unix() % 900
	return s >= 300 && s < 480
}

// DetailsOutage reports whether t falls in a details 503 burst: minute 2 of
// every ten minutes.
func DetailsOutage(t time.Time) bool {
	s := t.Unix() % 600
	return s >= 120 && s < 180
}

// Entry is one access log entry and the proxy that logs it. Exactly one of
// HTTP and TCP is set.
type Entry struct {
	Pod  *Pod
	HTTP *alsdata.HTTPAccessLogEntry
	TCP  *alsdata.TCPAccessLogEntry
}

// Span is one Zipkin span and the proxy that reports it.
type Span struct {
	Pod   *Pod
	Model zipkin.SpanModel
}

// Request is everything one ingress request produced in the mesh.
type Request struct {
	// ID is the x-request-id every entry and span of the request carries.
	ID      string
	TraceID zipkin.TraceID
	// Sampled says whether the request was traced; Spans is empty if not.
	Sampled bool
	// Start and Duration are those of the outermost hop (the gateway's or
	// the out-of-namespace caller's entry).
	Start    time.Time
	Duration time.Duration
	// Status is the HTTP status the original caller received.
	Status int
	// Entries are in the order the proxies log them: when a stream ends,
	// so children before parents.
	Entries []Entry
	Spans   []Span
}

// Mesh is the simulated Bookinfo mesh. It is deterministic for a seed and a
// clock, and not safe for concurrent use.
type Mesh struct {
	topo     *topology
	rng      *rand.Rand
	clock    func() time.Time
	sampling float64

	edges meshEdges
}

type meshEdges struct {
	gateway, loadgen, details, reviews, ratingsHTTP, ratingsGRPC, mongodb *edge
}

// edge is a client→service route with its transport and failure odds.
type edge struct {
	svc     *service
	mtls    bool
	grpc    bool
	timeout time.Duration // route timeout, 0 for none
	// Probabilities of each proxy-level failure per request.
	pNR, pUH, pUF, pUT float64
}

// NewMesh returns the Bookinfo mesh seeded with seed. clock gives the time a
// simulated request ends at and drives the incidents; nil means time.Now.
func NewMesh(seed int64, clock func() time.Time) *Mesh {
	if clock == nil {
		clock = time.Now
	}
	t := newTopology()
	m := &Mesh{
		topo:     t,
		rng:      rand.New(rand.NewPCG(uint64(seed), uint64(seed)^0x9e3779b97f4a7c15)),
		clock:    clock,
		sampling: 1,
	}
	m.edges = meshEdges{
		gateway:     &edge{svc: t.productpage, mtls: true, pUH: 0.0005, pUF: 0.0005},
		loadgen:     &edge{svc: t.productpage, mtls: false, pUF: 0.001},
		details:     &edge{svc: t.details, mtls: true, pUF: 0.003},
		reviews:     &edge{svc: t.reviews, mtls: true, timeout: 2500 * time.Millisecond, pNR: 0.004, pUH: 0.003, pUT: 0.002},
		ratingsHTTP: &edge{svc: t.ratings, mtls: true, timeout: time.Second, pUF: 0.002, pUT: 0.001},
		ratingsGRPC: &edge{svc: t.ratings, mtls: true, grpc: true, timeout: time.Second, pUF: 0.002, pUT: 0.001},
		mongodb:     &edge{svc: t.mongodb, mtls: false, pUF: 0.003},
	}
	return m
}

// SetTraceSampling sets the fraction (0..1) of requests that are traced.
func (m *Mesh) SetTraceSampling(f float64) { m.sampling = min(max(f, 0), 1) }

// Pods returns every simulated pod, gateway first.
func (m *Mesh) Pods() []*Pod { return m.topo.pods }

// hopReq is what a client app sends.
type hopReq struct {
	method    corev3.RequestMethod
	path      string
	authority string
	userAgent string
	reqBody   uint64
	forwarded string // x-forwarded-for, gateway only
}

// hopResult is what the client app gets back.
type hopResult struct {
	status     int // HTTP status, 0 if none
	grpcStatus int // -1 unless gRPC
	dur        time.Duration
}

func (r hopResult) failed() bool {
	return r.status == 0 || r.status >= 500 || r.grpcStatus > 0
}

// reqSim simulates one request; timestamps are offsets from its start and are
// made absolute once the outermost duration is known.
type reqSim struct {
	m         *Mesh
	now       time.Time
	req       *Request
	entryOffs []time.Duration
	spanOffs  []time.Duration
	ratingsX  float64
	detailsDn bool
}

// Simulate plays one request entering the mesh and returns the entries and
// spans every proxy on its way logs. The request ends at the clock's now.
func (m *Mesh) Simulate() *Request {
	s := &reqSim{m: m, now: m.clock(), req: &Request{}, ratingsX: 1}
	if RatingsSlow(s.now) {
		s.ratingsX = RatingsSlowFactor
	}
	s.detailsDn = DetailsOutage(s.now)
	r := s.req
	r.ID = m.uuid()
	r.TraceID = zipkin.TraceID{High: m.rng.Uint64(), Low: m.rng.Uint64() | 1}
	r.Sampled = m.sampling >= 1 || m.rng.Float64() < m.sampling

	var res hopResult
	if m.rng.Float64() < 0.08 {
		// fortio in namespace tools hammering productpage over plaintext.
		hr := hopReq{method: corev3.RequestMethod_GET, path: "/productpage?u=test", authority: "productpage.default:9080",
			userAgent: "fortio.org/fortio-1.60.3"}
		res = s.call(m.topo.loadgen, nil, m.edges.loadgen, hr, 0)
	} else {
		hr := hopReq{method: corev3.RequestMethod_GET, authority: "bookinfo.meshlens.local",
			userAgent: browserUA[m.rng.IntN(len(browserUA))], forwarded: "10.244.0.1"}
		u := m.rng.Float64()
		switch {
		case u < 0.005:
			hr.path = "/admin" // not in the bookinfo VirtualService: gateway NR
		case u < 0.145:
			hr.path = "/api/v1/products/" + strconv.Itoa(m.productID()) + "/reviews"
		case u < 0.245:
			hr.path = "/api/v1/products/" + strconv.Itoa(m.productID())
		default:
			hr.path = "/productpage?u=" + users[m.rng.IntN(len(users))]
		}
		e := m.edges.gateway
		if hr.path == "/admin" {
			e = &edge{svc: e.svc, mtls: true, pNR: 1}
		}
		res = s.call(m.topo.gateway, nil, e, hr, 0)
	}
	r.Status = res.status
	r.Duration = res.dur
	r.Start = s.now.Add(-res.dur)
	for i := range r.Entries {
		ts := timestamppb.New(r.Start.Add(s.entryOffs[i]))
		if h := r.Entries[i].HTTP; h != nil {
			h.CommonProperties.StartTime = ts
		} else {
			r.Entries[i].TCP.CommonProperties.StartTime = ts
		}
	}
	for i := range r.Spans {
		r.Spans[i].Model.Timestamp = r.Start.Add(s.spanOffs[i])
	}
	return r
}

var (
	users     = []string{"normal", "normal", "normal", "test", "jason"}
	browserUA = []string{
		"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
		"curl/8.5.0",
	}
)

// productID picks a product: mostly 0 as the page uses, a few unknown ones.
func (m *Mesh) productID() int {
	u := m.rng.Float64()
	switch {
	case u < 0.6:
		return 0
	case u < 0.9:
		return 1 + m.rng.IntN(5)
	case u < 0.95:
		return 7
	}
	return 123
}

// unknownProduct is what details and reviews answer 404 for.
func unknownProduct(id int) bool { return id >= 100 }

func pathID(path string) int {
	i := strings.LastIndexByte(path, '/')
	n, err := strconv.Atoi(path[i+1:])
	if err != nil {
		return 0
	}
	return n
}

// lat draws a log-normal latency with the given median and a rare long tail
// (GC pauses, noisy neighbours).
func (m *Mesh) lat(median time.Duration, sigma float64) time.Duration {
	f := math.Exp(sigma * m.rng.NormFloat64())
	if m.rng.Float64() < 0.01 {
		u := m.rng.Float64()
		f *= 2 + 18*u*u
	}
	return time.Duration(float64(median) * f)
}

func (m *Mesh) ephemeral() uint32 { return uint32(32768 + m.rng.IntN(28232)) }

func (m *Mesh) uuid() string {
	var b [16]byte
	hi, lo := m.rng.Uint64(), m.rng.Uint64()
	for i := range 8 {
		b[i] = byte(hi >> (8 * i))
		b[8+i] = byte(lo >> (8 * i))
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:], b[10:])
	return string(out[:])
}

func (m *Mesh) spanID() zipkin.ID {
	for {
		if id := zipkin.ID(m.rng.Uint64()); id != 0 {
			return id
		}
	}
}

// pickServer load-balances over the service's pods; reviews splits evenly
// over its three versions as the Bookinfo default route does.
func (m *Mesh) pickServer(svc *service) *Pod {
	if svc == m.topo.reviews {
		var v []*Pod
		switch m.rng.IntN(3) {
		case 0:
			v = m.topo.reviewsV1
		case 1:
			v = m.topo.reviewsV2
		default:
			v = m.topo.reviewsV3
		}
		return v[m.rng.IntN(len(v))]
	}
	return svc.pods[m.rng.IntN(len(svc.pods))]
}

type failure uint8

const (
	failNone failure = iota
	failNR
	failUH
	failUF
	failUT
)

func (m *Mesh) pickFailure(e *edge) failure {
	u := m.rng.Float64()
	switch {
	case u < e.pNR:
		return failNR
	case u < e.pNR+e.pUH:
		return failUH
	case u < e.pNR+e.pUH+e.pUF:
		return failUF
	case u < e.pNR+e.pUH+e.pUF+e.pUT:
		return failUT
	}
	return failNone
}

// appResult is what a server app answers.
type appResult struct {
	status     int
	grpcStatus int
	dur        time.Duration
	respBody   uint64
}

// call plays one HTTP or gRPC hop from client's sidecar (or the gateway) to
// the edge's service, starting at offset at, and logs it from both sides.
func (s *reqSim) call(client *Pod, parent *zipkin.ID, e *edge, hr hopReq, at time.Duration) hopResult {
	m := s.m
	fail := m.pickFailure(e)
	var server *Pod
	if fail != failNR && fail != failUH {
		server = m.pickServer(e.svc)
	}
	o1, o2 := m.lat(350*time.Microsecond, 0.4), m.lat(300*time.Microsecond, 0.4)
	net := m.lat(120*time.Microsecond, 0.5)

	var spanID zipkin.ID
	if s.req.Sampled {
		spanID = m.spanID()
	}
	reqHdr := uint64(380 + m.rng.IntN(160) + len(hr.path) + len(hr.userAgent))
	grpcSt := -1
	if e.grpc {
		grpcSt = 0
	}

	cl := httpSide{
		pod: client, start: at, req: hr, reqHdr: reqHdr, details: "via_upstream",
		cluster: e.svc.outbound, grpcStatus: grpcSt,
		downRemote: sockAddr(client.IP, m.ephemeral()),
		downLocal:  sockAddr(e.svc.clusterIP, e.svc.port),
	}
	if client.Kind == Router {
		cl.downRemote = sockAddr(hr.forwarded, m.ephemeral())
		cl.downLocal = sockAddr(client.IP, 8080)
	}
	cl.downDirect = cl.downRemote
	upLocalPort := m.ephemeral()

	var sv *httpSide
	switch fail {
	case failNR:
		cl.cluster = ""
		cl.dur = o1 * 6 / 10
		cl.status, cl.details, cl.flags = 404, "route_not_found", &alsdata.ResponseFlags{NoRouteFound: true}
		cl.respHdr, cl.respBody = 80, 0
		if e.grpc {
			cl.status, cl.grpcStatus, cl.grpcInHeaders = 200, 12, true
		}
	case failUH:
		cl.dur = o1 * 8 / 10
		cl.status, cl.details, cl.flags = 503, "no_healthy_upstream", &alsdata.ResponseFlags{NoHealthyUpstream: true}
		cl.respHdr, cl.respBody = 90, 19
	case failUF:
		cl.dur = o1 + m.lat(time.Millisecond, 0.5)
		cl.upRemote = sockAddr(server.IP, e.svc.port)
		cl.status, cl.details, cl.flags = 503, "upstream_reset_before_response_started{connection_failure}",
			&alsdata.ResponseFlags{UpstreamConnectionFailure: true}
		cl.failureReason = "delayed connect error: 111"
		cl.respHdr, cl.respBody = 90, 91
	default:
		sv = &httpSide{
			pod: server, start: at + o1 + net, req: hr, reqHdr: reqHdr + 250 + uint64(m.rng.IntN(40)),
			cluster: e.svc.inbound, details: "via_upstream", grpcStatus: grpcSt,
			downRemote: sockAddr(client.IP, upLocalPort), downLocal: sockAddr(server.IP, e.svc.port),
			upRemote: sockAddr(server.IP, e.svc.port), upLocal: sockAddr("127.0.0.6", m.ephemeral()),
			firstUpTx: o2 / 2,
		}
		sv.downDirect = sv.downRemote
		if e.mtls {
			sv.tls = mtlsProps(server, client, e.svc)
		}
		cl.upRemote = sockAddr(server.IP, e.svc.port)
		cl.upLocal = sockAddr(client.IP, upLocalPort)
		cl.firstUpTx = o1 / 2

		var app appResult
		if fail == failUT {
			// The server hangs past the route timeout; the client sidecar
			// gives up and resets, which the server sidecar sees as a
			// downstream disconnect.
			app = appResult{dur: e.timeout}
		} else {
			app = s.handle(server, spanID, hr, sv.start+o2/2)
		}
		sv.dur = app.dur + o2
		sv.status, sv.respBody = app.status, app.respBody
		sv.respHdr = uint64(140 + m.rng.IntN(60))
		if e.grpc {
			sv.grpcStatus = app.grpcStatus
		}
		sv.firstUpRx = sv.dur - o2/3
		cl.dur = sv.dur + o1 + 2*net
		cl.firstUpRx = cl.dur - o1/2
		cl.status, cl.respHdr, cl.respBody, cl.grpcStatus = sv.status, sv.respHdr-40, sv.respBody, sv.grpcStatus
		if e.timeout > 0 && cl.dur > e.timeout {
			fail = failUT
		}
		if fail == failUT {
			cl.dur = e.timeout + o1/2
			cl.firstUpRx = 0
			cl.status, cl.details, cl.flags = 504, "response_timeout", &alsdata.ResponseFlags{UpstreamRequestTimeout: true}
			cl.respHdr, cl.respBody = 90, 24
			sv.dur = e.timeout - net
			sv.firstUpRx = 0
			sv.status, sv.respHdr, sv.respBody = 0, 0, 0
			sv.details, sv.flags = "downstream_remote_disconnect", &alsdata.ResponseFlags{DownstreamConnectionTermination: true}
			if e.grpc {
				sv.grpcStatus = -1
			}
		}
	}
	if e.grpc && fail != failNone && fail != failNR {
		// Envoy answers a gRPC request with a trailers-only 200 carrying the
		// gRPC status mapped from the HTTP one (503/504 → UNAVAILABLE).
		cl.status, cl.grpcStatus, cl.grpcInHeaders = 200, 14, true
	}

	// Metadata exchange: the server learns the client from request headers,
	// the client learns the server only from a response that came from it.
	if sv != nil {
		sv.filterState = map[string]*anypb.Any{"downstream_peer": client.peer}
		if fail == failNone {
			cl.filterState = map[string]*anypb.Any{"upstream_peer": server.peer}
		}
	}

	// Children end before parents, so the server logs first.
	if sv != nil {
		s.addHTTP(sv)
		if s.req.Sampled {
			s.addSpan(sv, zipkin.Server, spanID, parent, client, e)
		}
	}
	s.addHTTP(&cl)
	if s.req.Sampled {
		s.addSpan(&cl, zipkin.Client, spanID, parent, server, e)
	}
	return hopResult{status: cl.status, grpcStatus: cl.grpcStatus, dur: cl.dur}
}

// handle is the server app: its own work and the calls it makes.
func (s *reqSim) handle(p *Pod, span zipkin.ID, hr hopReq, at time.Duration) appResult {
	m := s.m
	pspan := &span
	if !s.req.Sampled {
		pspan = nil
	}
	switch p.App {
	case "productpage":
		if m.rng.Float64() < 0.005 {
			return appResult{status: 500, dur: m.lat(2*time.Millisecond, 0.5), respBody: 290}
		}
		pre := m.lat(2*time.Millisecond, 0.5)
		child := hopReq{method: corev3.RequestMethod_GET, userAgent: "python-requests/2.32.3"}
		switch {
		case strings.HasPrefix(hr.path, "/productpage"):
			child.path, child.authority = "/details/0", "details:9080"
			d := s.call(p, pspan, m.edges.details, child, at+pre)
			gap := m.lat(150*time.Microsecond, 0.5)
			child.path, child.authority = "/reviews/0", "reviews:9080"
			rv := s.call(p, pspan, m.edges.reviews, child, at+pre+d.dur+gap)
			post := m.lat(5*time.Millisecond, 0.6)
			// The page degrades gracefully: a failed backend only removes
			// its section.
			body := uint64(4100 + m.rng.IntN(400))
			if d.status != 200 {
				body -= 600
			}
			if rv.status != 200 {
				body -= 900
			}
			return appResult{status: 200, dur: pre + d.dur + gap + rv.dur + post, respBody: body}
		case strings.HasSuffix(hr.path, "/reviews"):
			id := strings.TrimSuffix(strings.TrimPrefix(hr.path, "/api/v1/products/"), "/reviews")
			child.path, child.authority = "/reviews/"+id, "reviews:9080"
			rv := s.call(p, pspan, m.edges.reviews, child, at+pre)
			post := m.lat(600*time.Microsecond, 0.5)
			return appResult{status: propagate(rv.status), dur: pre + rv.dur + post, respBody: 420}
		default:
			child.path, child.authority = "/details/"+strconv.Itoa(pathID(hr.path)), "details:9080"
			d := s.call(p, pspan, m.edges.details, child, at+pre)
			post := m.lat(500*time.Microsecond, 0.5)
			return appResult{status: propagate(d.status), dur: pre + d.dur + post, respBody: 178}
		}
	case "details":
		dur := m.lat(1200*time.Microsecond, 0.5)
		switch {
		case unknownProduct(pathID(hr.path)):
			return appResult{status: 404, dur: dur / 2, respBody: 53}
		case s.detailsDn && m.rng.Float64() < DetailsOutageErrorRate:
			return appResult{status: 503, dur: dur / 3, respBody: 19}
		case m.rng.Float64() < 0.01:
			return appResult{status: 500, dur: dur, respBody: 21}
		}
		return appResult{status: 200, dur: dur, respBody: 178}
	case "reviews":
		id := pathID(hr.path)
		if unknownProduct(id) {
			return appResult{status: 404, dur: m.lat(3*time.Millisecond, 0.4), respBody: 0}
		}
		if m.rng.Float64() < 0.008 {
			return appResult{status: 500, dur: m.lat(4*time.Millisecond, 0.5), respBody: 0}
		}
		if p.Version == "v1" {
			return appResult{status: 200, dur: m.lat(9*time.Millisecond, 0.45), respBody: 358}
		}
		pre := m.lat(5*time.Millisecond, 0.45)
		var rt hopResult
		if p.Version == "v2" {
			rt = s.call(p, pspan, m.edges.ratingsHTTP, hopReq{method: corev3.RequestMethod_GET,
				path: "/ratings/" + strconv.Itoa(id), authority: "ratings:9080", userAgent: "Apache-CXF/3.1.18"}, at+pre)
		} else {
			rt = s.call(p, pspan, m.edges.ratingsGRPC, hopReq{method: corev3.RequestMethod_POST,
				path: "/ratings.Ratings/GetRating", authority: "ratings:9080", userAgent: "grpc-java-netty/1.68.1", reqBody: 7}, at+pre)
		}
		post := m.lat(time.Millisecond, 0.4)
		// Reviews shows "ratings unavailable" instead of failing.
		body := uint64(436)
		if rt.failed() {
			body = 380
		}
		return appResult{status: 200, dur: pre + rt.dur + post, respBody: body}
	case "ratings":
		grpc := hr.method == corev3.RequestMethod_POST
		x := s.ratingsX
		pre := time.Duration(float64(m.lat(2500*time.Microsecond, 0.5)) * x)
		db := s.tcp(p, m.edges.mongodb, at+pre)
		post := time.Duration(float64(m.lat(time.Millisecond, 0.4)) * x)
		res := appResult{status: 200, dur: pre + db.dur + post, respBody: 48}
		if grpc {
			res.respBody = 17
		}
		if db.failed || m.rng.Float64() < 0.01 {
			// ratings-v2 answers 500 when it cannot reach its database.
			res.status, res.respBody = 500, 52
			if grpc {
				res.status, res.grpcStatus, res.respBody = 200, 13, 0
			}
		}
		return res
	}
	return appResult{status: 404, dur: m.lat(time.Millisecond, 0.3)}
}

// propagate is how productpage's API maps a backend status to its own.
func propagate(st int) int {
	switch {
	case st == 0:
		return 502
	case st >= 400:
		return st
	}
	return 200
}

type tcpResult struct {
	dur    time.Duration
	failed bool
}

// tcp plays one short TCP connection (ratings-v2 connects to mongodb per
// request) logged by both sidecars when it closes.
func (s *reqSim) tcp(client *Pod, e *edge, at time.Duration) tcpResult {
	m := s.m
	server := m.pickServer(e.svc)
	o1, o2 := m.lat(200*time.Microsecond, 0.4), m.lat(200*time.Microsecond, 0.4)
	net := m.lat(120*time.Microsecond, 0.5)
	upLocalPort := m.ephemeral()
	cl := &alsdata.AccessLogCommon{
		DownstreamRemoteAddress:     sockAddr(client.IP, m.ephemeral()),
		DownstreamLocalAddress:      sockAddr(e.svc.clusterIP, e.svc.port),
		UpstreamRemoteAddress:       sockAddr(server.IP, e.svc.port),
		UpstreamCluster:             e.svc.outbound,
		UpstreamRequestAttemptCount: 1,
		AccessLogType:               alsdata.AccessLogType_TcpConnectionEnd,
	}
	cl.DownstreamDirectRemoteAddress = cl.DownstreamRemoteAddress
	if m.pickFailure(e) == failUF {
		d := o1 + m.lat(time.Millisecond, 0.5)
		cl.ResponseFlags = &alsdata.ResponseFlags{UpstreamConnectionFailure: true}
		cl.UpstreamTransportFailureReason = "delayed connect error: 111"
		cl.TimeToLastDownstreamTxByte = durationpb.New(d)
		cl.Duration = durationpb.New(d)
		cl.ConnectionTerminationDetails = "upstream_connection_failure"
		s.addTCP(client, cl, &alsdata.ConnectionProperties{}, at)
		return tcpResult{dur: d, failed: true}
	}
	query := m.lat(1200*time.Microsecond, 0.6)
	svDur := query + o2
	clDur := svDur + o1 + 2*net
	rx, tx := uint64(260+m.rng.IntN(140)), uint64(310+m.rng.IntN(400))
	cl.UpstreamLocalAddress = sockAddr(client.IP, upLocalPort)
	cl.TimeToLastDownstreamTxByte = durationpb.New(clDur - o1/3)
	cl.Duration = durationpb.New(clDur)
	sv := &alsdata.AccessLogCommon{
		DownstreamRemoteAddress:     sockAddr(client.IP, upLocalPort),
		DownstreamLocalAddress:      sockAddr(server.IP, e.svc.port),
		UpstreamRemoteAddress:       sockAddr(server.IP, e.svc.port),
		UpstreamLocalAddress:        sockAddr("127.0.0.6", m.ephemeral()),
		UpstreamCluster:             e.svc.inbound,
		UpstreamRequestAttemptCount: 1,
		AccessLogType:               alsdata.AccessLogType_TcpConnectionEnd,
		TimeToLastDownstreamTxByte:  durationpb.New(svDur - o2/3),
		Duration:                    durationpb.New(svDur),
	}
	sv.DownstreamDirectRemoteAddress = sv.DownstreamRemoteAddress
	s.addTCP(server, sv, &alsdata.ConnectionProperties{ReceivedBytes: rx, SentBytes: tx}, at+o1+net)
	s.addTCP(client, cl, &alsdata.ConnectionProperties{ReceivedBytes: rx, SentBytes: tx}, at)
	return tcpResult{dur: clDur}
}

func (s *reqSim) addTCP(p *Pod, c *alsdata.AccessLogCommon, cp *alsdata.ConnectionProperties, at time.Duration) {
	c.SampleRate = 1
	s.req.Entries = append(s.req.Entries, Entry{Pod: p, TCP: &alsdata.TCPAccessLogEntry{CommonProperties: c, ConnectionProperties: cp}})
	s.entryOffs = append(s.entryOffs, at)
}

// httpSide is one proxy's view of an HTTP hop.
type httpSide struct {
	pod        *Pod
	start, dur time.Duration
	// firstUpTx and firstUpRx are the times to the first byte sent to and
	// received from upstream; zero when there was no upstream exchange.
	firstUpTx, firstUpRx time.Duration

	downRemote, downLocal, downDirect, upRemote, upLocal *corev3.Address
	cluster                                              string
	tls                                                  *alsdata.TLSProperties
	filterState                                          map[string]*anypb.Any
	flags                                                *alsdata.ResponseFlags
	failureReason                                        string

	req           hopReq
	reqHdr        uint64
	status        int
	respHdr       uint64
	respBody      uint64
	details       string
	grpcStatus    int
	grpcInHeaders bool
}

func (s *reqSim) addHTTP(h *httpSide) {
	c := &alsdata.AccessLogCommon{
		SampleRate:                     1,
		DownstreamRemoteAddress:        h.downRemote,
		DownstreamLocalAddress:         h.downLocal,
		DownstreamDirectRemoteAddress:  h.downDirect,
		TlsProperties:                  h.tls,
		TimeToLastRxByte:               durationpb.New(20*time.Microsecond + time.Duration(h.req.reqBody)*100),
		UpstreamRemoteAddress:          h.upRemote,
		UpstreamLocalAddress:           h.upLocal,
		UpstreamCluster:                h.cluster,
		ResponseFlags:                  h.flags,
		UpstreamTransportFailureReason: h.failureReason,
		RouteName:                      "default",
		Duration:                       durationpb.New(h.dur),
		UpstreamRequestAttemptCount:    1,
		AccessLogType:                  alsdata.AccessLogType_DownstreamEnd,
		FilterStateObjects:             h.filterState,
	}
	if h.cluster == "" {
		c.RouteName = ""
	}
	if h.firstUpTx > 0 {
		c.TimeToFirstUpstreamTxByte = durationpb.New(h.firstUpTx)
		c.TimeToLastUpstreamTxByte = durationpb.New(h.firstUpTx + 15*time.Microsecond)
	}
	if h.firstUpRx > 0 {
		c.TimeToFirstUpstreamRxByte = durationpb.New(h.firstUpRx)
		c.TimeToLastUpstreamRxByte = durationpb.New(h.firstUpRx + (h.dur-h.firstUpRx)/2)
		c.TimeToFirstDownstreamTxByte = durationpb.New(h.firstUpRx + (h.dur-h.firstUpRx)/3)
	} else if h.status != 0 {
		c.TimeToFirstDownstreamTxByte = durationpb.New(h.dur)
	}
	if h.status != 0 {
		c.TimeToLastDownstreamTxByte = durationpb.New(h.dur)
	}
	proto := alsdata.HTTPAccessLogEntry_HTTP11
	if h.grpcStatus >= 0 || h.req.method == corev3.RequestMethod_POST {
		proto = alsdata.HTTPAccessLogEntry_HTTP2
	}
	req := &alsdata.HTTPRequestProperties{
		RequestMethod:       h.req.method,
		Scheme:              "http",
		Authority:           h.req.authority,
		Path:                h.req.path,
		UserAgent:           h.req.userAgent,
		ForwardedFor:        h.req.forwarded,
		RequestId:           s.req.ID,
		RequestHeadersBytes: h.reqHdr,
		RequestBodyBytes:    h.req.reqBody,
	}
	resp := &alsdata.HTTPResponseProperties{
		ResponseHeadersBytes: h.respHdr,
		ResponseBodyBytes:    h.respBody,
		ResponseCodeDetails:  h.details,
	}
	if h.status != 0 {
		resp.ResponseCode = wrapperspb.UInt32(uint32(h.status))
	}
	if h.grpcStatus >= 0 {
		st := map[string]string{"grpc-status": strconv.Itoa(h.grpcStatus)}
		if h.grpcInHeaders {
			resp.ResponseHeaders = st
		} else {
			resp.ResponseTrailers = st
			resp.ResponseHeaders = map[string]string{"content-type": "application/grpc"}
		}
	}
	s.req.Entries = append(s.req.Entries, Entry{Pod: h.pod, HTTP: &alsdata.HTTPAccessLogEntry{
		CommonProperties: c, ProtocolVersion: proto, Request: req, Response: resp,
	}})
	s.entryOffs = append(s.entryOffs, h.start)
}

// addSpan reports h as Envoy's Zipkin tracer does: the client and server
// halves of a hop share one span id (shared_span_context).
func (s *reqSim) addSpan(h *httpSide, kind zipkin.Kind, id zipkin.ID, parent *zipkin.ID, peer *Pod, e *edge) {
	p := h.pod
	name := e.svc.spanName
	if h.cluster == "" {
		name = h.req.authority + h.req.path
	}
	proto := "HTTP/1.1"
	if h.grpcStatus >= 0 {
		proto = "HTTP/2"
	}
	flags := ResponseFlagsString(h.flags)
	tags := map[string]string{
		"component":                "proxy",
		"node_id":                  p.NodeID(),
		"guid:x-request-id":        s.req.ID,
		"http.url":                 "http://" + h.req.authority + h.req.path,
		"http.method":              h.req.method.String(),
		"http.protocol":            proto,
		"downstream_cluster":       "-",
		"user_agent":               h.req.userAgent,
		"request_size":             strconv.FormatUint(h.req.reqBody, 10),
		"response_size":            strconv.FormatUint(h.respBody, 10),
		"response_flags":           flags,
		"http.status_code":         strconv.Itoa(h.status),
		"upstream_cluster":         h.cluster,
		"upstream_cluster.name":    h.cluster,
		"istio.canonical_service":  p.App,
		"istio.canonical_revision": p.Version,
		"istio.namespace":          p.Namespace,
		"istio.mesh_id":            MeshID,
		"peer.address":             addrIP(h.downRemote),
	}
	if h.cluster == "" {
		tags["upstream_cluster"], tags["upstream_cluster.name"] = "-", "-"
	}
	if h.grpcStatus >= 0 {
		tags["grpc.status_code"] = strconv.Itoa(h.grpcStatus)
		tags["grpc.path"] = h.req.path
		tags["grpc.authority"] = h.req.authority
	}
	if h.status == 0 || h.status >= 500 || h.grpcStatus > 0 {
		tags["error"] = "true"
	}
	sm := zipkin.SpanModel{
		SpanContext:   zipkin.SpanContext{TraceID: s.req.TraceID, ID: id, ParentID: parent},
		Name:          name,
		Kind:          kind,
		Duration:      h.dur,
		Shared:        kind == zipkin.Server,
		LocalEndpoint: &zipkin.Endpoint{ServiceName: p.ServiceCluster(), IPv4: p.ip},
		Tags:          tags,
	}
	if peer != nil {
		sm.RemoteEndpoint = &zipkin.Endpoint{ServiceName: peer.ServiceCluster(), IPv4: peer.ip}
		if kind == zipkin.Client {
			sm.RemoteEndpoint.Port = uint16(e.svc.port)
		}
	}
	s.req.Spans = append(s.req.Spans, Span{Pod: p, Model: sm})
	s.spanOffs = append(s.spanOffs, h.start)
}

// mtlsProps is what the server sidecar logs about an Istio mTLS connection.
func mtlsProps(server, client *Pod, svc *service) *alsdata.TLSProperties {
	san := func(uri string) *alsdata.TLSProperties_CertificateProperties {
		return &alsdata.TLSProperties_CertificateProperties{SubjectAltName: []*alsdata.TLSProperties_CertificateProperties_SubjectAltName{
			{San: &alsdata.TLSProperties_CertificateProperties_SubjectAltName_Uri{Uri: uri}},
		}}
	}
	return &alsdata.TLSProperties{
		TlsVersion:                 alsdata.TLSProperties_TLSv1_3,
		TlsCipherSuite:             wrapperspb.UInt32(0x1301), // TLS_AES_128_GCM_SHA256
		TlsSniHostname:             "outbound_." + strconv.Itoa(int(svc.port)) + "_._." + svc.fqdn,
		LocalCertificateProperties: san(server.Principal()),
		PeerCertificateProperties:  san(client.Principal()),
	}
}

func sockAddr(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

func addrIP(a *corev3.Address) string {
	if sa := a.GetSocketAddress(); sa != nil {
		return sa.GetAddress()
	}
	return ""
}

// ResponseFlagsString renders the flags this generator sets in Envoy's short
// form ("UH", "UF", "UT", "NR", "DC"), or "-" when there are none.
func ResponseFlagsString(f *alsdata.ResponseFlags) string {
	if f == nil {
		return "-"
	}
	var out []string
	add := func(on bool, s string) {
		if on {
			out = append(out, s)
		}
	}
	add(f.GetNoHealthyUpstream(), "UH")
	add(f.GetUpstreamConnectionFailure(), "UF")
	add(f.GetUpstreamRequestTimeout(), "UT")
	add(f.GetNoRouteFound(), "NR")
	add(f.GetDownstreamConnectionTermination(), "DC")
	if len(out) == 0 {
		return "-"
	}
	return strings.Join(out, ",")
}
