package topology

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/meshlens/meshlens/model"
)

// nodeRef names a node: a service, or an instance or endpoint of one.
type nodeRef struct {
	namespace, service, sub string
}

func (n nodeRef) id() string {
	s := n.service
	if n.namespace != "" {
		s = n.namespace + "/" + s
	}
	if n.sub != "" {
		s += "#" + n.sub
	}
	return s
}

type edgeKey struct {
	src, dst nodeRef
	protocol string
}

// observation is what one side reported about an edge.
type observation struct {
	requests, errors float64
	// unreached is the part of requests (all of them failures) that the
	// client's proxy failed before sending: the server side cannot have
	// seen them, so they add to its figures without double counting.
	unreached float64
	// buckets maps an upper bound to the cumulative rate of its bucket.
	buckets map[float64]float64
	// security weighs the traffic by its mTLS state: "mutual_tls", "none"
	// or "unknown"; seen records the states present even at a zero rate.
	security map[string]float64
	seen     map[string]bool
	tcp      *TCP
}

func (o *observation) addBucket(le, v float64) {
	if o.buckets == nil {
		o.buckets = map[float64]float64{}
	}
	o.buckets[le] += v
}

func (o *observation) addSecurity(policy string, v float64) {
	if o.security == nil {
		o.security, o.seen = map[string]float64{}, map[string]bool{}
	}
	o.security[policy] += v
	o.seen[policy] = true
}

type edgeAcc struct {
	key    edgeKey
	byside map[string]*observation
}

// collector gathers the observations of every edge from both sides.
type collector struct {
	edges map[edgeKey]*edgeAcc
	// sides is the preference order of reporters: the first that reported
	// an edge gives its figures, so a request seen from both sides counts
	// once.
	sides []string
	// outName maps a side to the reporter name in the answer.
	outName func(string) string
	// keep filters edges (namespace filter); nil keeps everything.
	keep func(edgeKey) bool
}

// obs returns the observation of edge k from side, creating it. The key's
// strings may point into query memory: they are cloned when stored. An
// unknown side or a filtered edge gives nil.
func (c *collector) obs(k edgeKey, side string) *observation {
	i := slices.Index(c.sides, side)
	if i < 0 || (c.keep != nil && !c.keep(k)) {
		return nil
	}
	side = c.sides[i]
	e := c.edges[k]
	if e == nil {
		k = k.clone()
		e = &edgeAcc{key: k, byside: map[string]*observation{}}
		c.edges[k] = e
	}
	o := e.byside[side]
	if o == nil {
		o = &observation{}
		e.byside[side] = o
	}
	return o
}

func (n nodeRef) clone() nodeRef {
	return nodeRef{strings.Clone(n.namespace), strings.Clone(n.service), strings.Clone(n.sub)}
}

func (k edgeKey) clone() edgeKey {
	return edgeKey{src: k.src.clone(), dst: k.dst.clone(), protocol: strings.Clone(k.protocol)}
}

// Graph computes the graph req asks for.
func (a *API) Graph(ctx context.Context, req Request) (*Graph, error) {
	if a.opts.Engine == nil || a.opts.Queryable == nil {
		return nil, errors.New("topology: Options.Engine and Options.Queryable are required")
	}
	ctx, cancel := context.WithTimeout(ctx, a.opts.QueryTimeout)
	defer cancel()
	q := querier{api: a, ts: req.End, window: req.End.Sub(req.Start)}
	var (
		c   *collector
		err error
	)
	switch req.Level {
	case LevelInstance, LevelEndpoint:
		c, err = q.scope(ctx, req)
	default:
		c, err = q.services(ctx, req)
	}
	if err != nil {
		return nil, err
	}
	g := c.build(req, a.opts.MaxNodes, a.opts.MaxEdges)
	return g, nil
}

// querier runs instant queries at the end of the range over the window.
type querier struct {
	api    *API
	ts     time.Time
	window time.Duration
}

// row is one sample of a query answer. Its labels point into the
// engine's memory and are valid only during the callback: whatever is kept
// is cloned (see collector.obs).
type row struct {
	m labels.Labels
	v float64
}

// each runs an instant query and calls fn for every float sample.
func (q querier) each(ctx context.Context, qs string, fn func(row)) error {
	qry, err := q.api.opts.Engine.NewInstantQuery(ctx, q.api.opts.Queryable, nil, qs, q.ts)
	if err != nil {
		return fmt.Errorf("topology query %s: %w", qs, err)
	}
	defer qry.Close()
	res := qry.Exec(ctx)
	if res.Err != nil {
		return fmt.Errorf("topology query %s: %w", qs, res.Err)
	}
	vec, err := res.Vector()
	if err != nil {
		return fmt.Errorf("topology query %s: %w", qs, err)
	}
	for _, s := range vec {
		if s.H == nil && !math.IsNaN(s.F) {
			fn(row{m: s.Metric, v: s.F})
		}
	}
	return nil
}

// rangeSel is the PromQL range of the window, in milliseconds so that any
// window is exact.
func (q querier) rangeSel() string {
	return "[" + strconv.FormatInt(q.window.Milliseconds(), 10) + "ms]"
}

// sumRate builds sum by (by) (rate(metric{sel}[window])). With a namespace
// selection, it is the union of the traffic whose source or whose
// destination is in the namespaces; series matching both appear on both
// sides with the same labels and "or" keeps one.
func (q querier) sumRate(metric string, by []string, nsLabels [2]string, namespaces []string) string {
	one := func(sel string) string {
		return "sum by (" + strings.Join(by, ", ") + ") (rate(" + metric + sel + q.rangeSel() + "))"
	}
	if len(namespaces) == 0 || nsLabels[0] == "" {
		return one("")
	}
	re := namespaceRegexp(namespaces)
	return one("{"+nsLabels[0]+"=~"+re+"}") + " or " + one("{"+nsLabels[1]+"=~"+re+"}")
}

func namespaceRegexp(namespaces []string) string {
	quoted := make([]string, len(namespaces))
	for i, n := range namespaces {
		quoted[i] = regexp.QuoteMeta(n)
	}
	return strconv.Quote(strings.Join(quoted, "|"))
}

func inNamespaces(namespaces []string) func(edgeKey) bool {
	if len(namespaces) == 0 {
		return nil
	}
	return func(k edgeKey) bool {
		return slices.Contains(namespaces, k.src.namespace) || slices.Contains(namespaces, k.dst.namespace)
	}
}

// Istio label groups.
var (
	istioSourceLabels = []string{"source_workload_namespace", "source_canonical_service", "source_app", "source_workload"}
	istioDestLabels   = []string{"destination_service_namespace", "destination_service_name", "destination_canonical_service", "destination_app", "destination_workload", "destination_workload_namespace"}
	istioNSLabels     = [2]string{"destination_service_namespace", "source_workload_namespace"}
)

func firstKnown(m labels.Labels, names ...string) string {
	for _, n := range names {
		if v := m.Get(n); v != "" && v != model.Unknown {
			return v
		}
	}
	return ""
}

// istioEdge maps Istio labels to an edge: the canonical service names the
// source (else its app, else workload) and the destination service names
// the destination; what cannot be resolved is model.Unknown.
func istioEdge(m labels.Labels, protocol string) edgeKey {
	src := nodeRef{
		namespace: firstKnown(m, "source_workload_namespace"),
		service:   firstKnown(m, "source_canonical_service", "source_app", "source_workload"),
	}
	dst := nodeRef{
		namespace: firstKnown(m, "destination_service_namespace", "destination_workload_namespace"),
		service:   firstKnown(m, "destination_service_name", "destination_canonical_service", "destination_app", "destination_workload"),
	}
	for _, n := range []*nodeRef{&src, &dst} {
		if n.service == "" {
			*n = nodeRef{service: model.Unknown}
		}
	}
	if protocol == "" {
		protocol = m.Get("request_protocol")
	}
	return edgeKey{src: src, dst: dst, protocol: protocol}
}

func istioPolicy(m labels.Labels) string {
	switch m.Get("connection_security_policy") {
	case "mutual_tls":
		return "mutual_tls"
	case "none":
		return "none"
	}
	return "unknown"
}

func with(base []string, extra ...string) []string {
	return append(slices.Clip(base), extra...)
}

// services builds the service graph from Istio's standard metrics.
func (q querier) services(ctx context.Context, req Request) (*collector, error) {
	c := &collector{
		edges:   map[edgeKey]*edgeAcc{},
		sides:   []string{"destination", "source"},
		outName: func(s string) string { return s },
		keep:    inNamespaces(req.Namespaces),
	}
	peers := append(slices.Clone(istioSourceLabels), istioDestLabels...)
	ns := req.Namespaces

	if err := q.each(ctx, q.sumRate("istio_requests_total",
		with(peers, "reporter", "request_protocol", "response_code", "grpc_response_status", "response_flags", "connection_security_policy"),
		istioNSLabels, ns), func(r row) {
		o := c.obs(istioEdge(r.m, ""), r.m.Get("reporter"))
		if o == nil {
			return
		}
		o.requests += r.v
		if istioError(r.m) {
			o.errors += r.v
		}
		if code := r.m.Get("response_code"); (code == "0" || strings.HasPrefix(code, "5")) && neverSent(r.m.Get("response_flags")) {
			o.unreached += r.v
		}
		o.addSecurity(istioPolicy(r.m), r.v)
	}); err != nil {
		return nil, err
	}

	if err := q.each(ctx, q.sumRate("istio_request_duration_milliseconds_bucket",
		with(peers, "reporter", "request_protocol", "le"), istioNSLabels, ns), func(r row) {
		le, err := strconv.ParseFloat(r.m.Get("le"), 64)
		if err != nil {
			return
		}
		if o := c.obs(istioEdge(r.m, ""), r.m.Get("reporter")); o != nil {
			o.addBucket(le, r.v)
		}
	}); err != nil {
		return nil, err
	}

	// TCP: connections opened (errors are those with a response flag),
	// bytes each way.
	tcpBy := with(peers, "reporter")
	tcpOf := func(r row) *observation {
		o := c.obs(istioEdge(r.m, "tcp"), r.m.Get("reporter"))
		if o != nil && o.tcp == nil {
			o.tcp = &TCP{}
		}
		return o
	}
	if err := q.each(ctx, q.sumRate("istio_tcp_connections_opened_total",
		with(tcpBy, "response_flags", "connection_security_policy"), istioNSLabels, ns), func(r row) {
		if o := tcpOf(r); o != nil {
			o.tcp.ConnectionsOpened += r.v
			if f := r.m.Get("response_flags"); f != "" && f != "-" {
				o.errors += r.v
			}
			o.addSecurity(istioPolicy(r.m), r.v)
		}
	}); err != nil {
		return nil, err
	}
	for _, metric := range []string{"istio_tcp_sent_bytes_total", "istio_tcp_received_bytes_total"} {
		if err := q.each(ctx, q.sumRate(metric, with(tcpBy, "connection_security_policy"), istioNSLabels, ns), func(r row) {
			o := tcpOf(r)
			if o == nil {
				return
			}
			if metric == "istio_tcp_sent_bytes_total" {
				o.tcp.SentBytes += r.v
			} else {
				o.tcp.ReceivedBytes += r.v
			}
			o.addSecurity(istioPolicy(r.m), 0)
		}); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// neverSent says whether Envoy's response flags mean the client's proxy
// failed the request without it reaching the server's proxy: no healthy
// upstream (UH), connection failure (UF), circuit breaker overflow (UO), no
// route (NR) or local rate limit (RL).
func neverSent(flags string) bool {
	if flags == "" || flags == "-" {
		return false
	}
	for f := range strings.SplitSeq(flags, ",") {
		switch f {
		case "UH", "UF", "UO", "NR", "RL":
			return true
		}
	}
	return false
}

// istioError says whether a request series counts failures: an HTTP 5xx, a
// non-OK gRPC status, or an Envoy response flag (the proxy failed the
// request itself: no upstream, timeout, circuit open...).
func istioError(m labels.Labels) bool {
	if code := m.Get("response_code"); len(code) == 3 && code[0] == '5' {
		return true
	}
	if g := m.Get("grpc_response_status"); g != "" && g != "0" && m.Get("request_protocol") == "grpc" {
		return true
	}
	f := m.Get("response_flags")
	return f != "" && f != "-"
}

// scope builds the instance or endpoint graph from meshlens' relation
// families, where the detect point says which side reported.
func (q querier) scope(ctx context.Context, req Request) (*collector, error) {
	prefix, subLabel := "meshlens_instance_relation_", "instance"
	scopeMetric := "meshlens_instance_calls_total"
	if req.Level == LevelEndpoint {
		prefix, subLabel = "meshlens_endpoint_relation_", "endpoint"
		scopeMetric = "meshlens_endpoint_calls_total"
	}
	// The relation families carry no namespace; the scope family does.
	nsOf := map[string]string{}
	if err := q.each(ctx, "count by (service, namespace) (count_over_time("+scopeMetric+q.rangeSel()+"))", func(r row) {
		svc, ns := r.m.Get("service"), r.m.Get("namespace")
		// A service name in several namespaces takes the first in order.
		if cur, ok := nsOf[svc]; !ok || ns < cur {
			nsOf[strings.Clone(svc)] = strings.Clone(ns)
		}
	}); err != nil {
		return nil, err
	}
	c := &collector{
		edges: map[edgeKey]*edgeAcc{},
		sides: []string{"server", "client", "proxy"},
		outName: func(s string) string {
			if s == "server" {
				return "destination"
			}
			return "source"
		},
		keep: inNamespaces(req.Namespaces),
	}
	ref := func(service, sub string) nodeRef {
		if service == "" {
			service = model.Unknown
		}
		ns := nsOf[service]
		if service == model.Unknown {
			ns = ""
		}
		return nodeRef{namespace: ns, service: service, sub: sub}
	}
	by := []string{"source_service", "source_" + subLabel, "destination_service", "destination_" + subLabel, "detect_point"}
	if req.Level == LevelInstance {
		by = append(by, "protocol", "tls")
	}
	keyOf := func(m labels.Labels) edgeKey {
		return edgeKey{
			src:      ref(m.Get("source_service"), m.Get("source_"+subLabel)),
			dst:      ref(m.Get("destination_service"), m.Get("destination_"+subLabel)),
			protocol: m.Get("protocol"),
		}
	}
	var none [2]string
	for _, part := range []string{"calls_total", "errors_total", "latency_milliseconds_bucket"} {
		groupBy := by
		if part == "latency_milliseconds_bucket" {
			groupBy = with(by, "le")
		}
		if err := q.each(ctx, q.sumRate(prefix+part, groupBy, none, nil), func(r row) {
			o := c.obs(keyOf(r.m), r.m.Get("detect_point"))
			if o == nil {
				return
			}
			switch part {
			case "calls_total":
				o.requests += r.v
				if req.Level == LevelInstance {
					o.addSecurity(scopeSecurity(r.m.Get("tls")), r.v)
				}
			case "errors_total":
				o.errors += r.v
			default:
				if le, err := strconv.ParseFloat(r.m.Get("le"), 64); err == nil {
					o.addBucket(le, r.v)
				}
			}
		}); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func scopeSecurity(tls string) string {
	switch tls {
	case "mtls":
		return "mutual_tls"
	case "none", "tls":
		return "none"
	}
	return "unknown"
}

// nodeAcc sums the traffic a node receives.
type nodeAcc struct {
	ref      nodeRef
	in       observation
	hasTCP   bool
	outbound float64
	weight   float64
}

// build picks one side per edge, sums node traffic and bounds the answer.
func (c *collector) build(req Request, maxNodes, maxEdges int) *Graph {
	g := &Graph{Level: req.Level, Start: req.Start, End: req.End, Namespaces: req.Namespaces, Nodes: []Node{}, Edges: []Edge{}}
	nodes := map[nodeRef]*nodeAcc{}
	node := func(r nodeRef) *nodeAcc {
		n := nodes[r]
		if n == nil {
			n = &nodeAcc{ref: r}
			nodes[r] = n
		}
		return n
	}
	type built struct {
		edge   Edge
		weight float64
	}
	var edges []built
	for _, e := range c.edges {
		var (
			chosen *observation
			side   string
			sides  []string
		)
		for _, s := range c.sides {
			if o := e.byside[s]; o != nil {
				sides = append(sides, c.outName(s))
				if chosen == nil {
					chosen, side = o, s
				}
			}
		}
		if chosen == nil {
			continue
		}
		// The duration histogram of the chosen side; the other side's only
		// when the chosen one has none.
		buckets := chosen.buckets
		for _, s := range c.sides {
			if len(buckets) > 0 {
				break
			}
			if o := e.byside[s]; o != nil {
				buckets = o.buckets
			}
		}
		requests, errs := chosen.requests, chosen.errors
		if side == c.sides[0] {
			// Failures only the client side can know of.
			for _, s := range c.sides[1:] {
				if o := e.byside[s]; o != nil {
					requests += o.unreached
					errs += o.unreached
				}
			}
		}
		ed := Edge{
			ID:        e.key.src.id() + "->" + e.key.dst.id(),
			Source:    e.key.src.id(),
			Target:    e.key.dst.id(),
			Protocol:  e.key.protocol,
			Reporter:  c.outName(side),
			Reporters: slices.Compact(sides),
			RED:       red(requests, errs, buckets, chosen.tcp),
		}
		if ed.Protocol != "" {
			ed.ID += ":" + ed.Protocol
		}
		ed.MTLS, ed.MTLSRatio = security(chosen.security, chosen.seen)
		src, dst := node(e.key.src), node(e.key.dst)
		src.outbound += requests
		dst.in.requests += requests
		dst.in.errors += errs
		for le, v := range buckets {
			dst.in.addBucket(le, v)
		}
		if chosen.tcp != nil {
			dst.hasTCP = true
			if dst.in.tcp == nil {
				dst.in.tcp = &TCP{}
			}
			dst.in.tcp.ConnectionsOpened += chosen.tcp.ConnectionsOpened
			dst.in.tcp.SentBytes += chosen.tcp.SentBytes
			dst.in.tcp.ReceivedBytes += chosen.tcp.ReceivedBytes
		}
		w := requests
		if chosen.tcp != nil {
			w += chosen.tcp.ConnectionsOpened
		}
		src.weight += w
		dst.weight += w
		edges = append(edges, built{edge: ed, weight: w})
	}

	// Keep the busiest edges, then the busiest nodes; drop edges whose
	// ends were dropped.
	slices.SortFunc(edges, func(x, y built) int {
		if c := cmp.Compare(y.weight, x.weight); c != 0 {
			return c
		}
		return strings.Compare(x.edge.ID, y.edge.ID)
	})
	if len(edges) > maxEdges {
		edges = edges[:maxEdges]
		g.Truncated = true
	}
	ranked := make([]*nodeAcc, 0, len(nodes))
	for _, n := range nodes {
		ranked = append(ranked, n)
	}
	slices.SortFunc(ranked, func(x, y *nodeAcc) int {
		if c := cmp.Compare(y.weight, x.weight); c != 0 {
			return c
		}
		return strings.Compare(x.ref.id(), y.ref.id())
	})
	if len(ranked) > maxNodes {
		ranked = ranked[:maxNodes]
		g.Truncated = true
	}
	kept := map[string]bool{}
	for _, n := range ranked {
		kept[n.ref.id()] = true
	}
	for _, e := range edges {
		if kept[e.edge.Source] && kept[e.edge.Target] {
			g.Edges = append(g.Edges, e.edge)
		} else {
			g.Truncated = true
		}
	}
	slices.SortFunc(g.Edges, func(x, y Edge) int { return strings.Compare(x.ID, y.ID) })
	for _, n := range ranked {
		var tcp *TCP
		if n.hasTCP {
			tcp = n.in.tcp
		}
		kind := req.Level
		if n.ref.sub == "" {
			kind = LevelService
		}
		g.Nodes = append(g.Nodes, Node{
			ID:                  n.ref.id(),
			Name:                cmp.Or(n.ref.sub, n.ref.service),
			Namespace:           n.ref.namespace,
			Service:             serviceOf(n.ref),
			Kind:                kind,
			Unknown:             n.ref.service == model.Unknown,
			Inbound:             red(n.in.requests, n.in.errors, n.in.buckets, tcp),
			OutboundRequestRate: n.outbound,
		})
	}
	slices.SortFunc(g.Nodes, func(x, y Node) int { return strings.Compare(x.ID, y.ID) })
	return g
}

func serviceOf(r nodeRef) string {
	if r.sub == "" {
		return ""
	}
	return r.service
}

func red(requests, errors float64, buckets map[float64]float64, tcp *TCP) RED {
	r := RED{RequestRate: requests, ErrorRate: errors, TCP: tcp}
	total := requests
	if tcp != nil {
		total += tcp.ConnectionsOpened
	}
	if total > 0 {
		r.ErrorRatio = errors / total
	}
	if lat, ok := percentiles(buckets); ok {
		r.LatencyMs = &lat
	}
	return r
}

// security summarises the mTLS state of an edge from the traffic weights
// per policy.
func security(w map[string]float64, seen map[string]bool) (string, float64) {
	m, n := w["mutual_tls"], w["none"]
	if m+n == 0 {
		// No traffic in the range: say what the series say.
		switch {
		case seen["mutual_tls"] && seen["none"]:
			return "mixed", 0.5
		case seen["mutual_tls"]:
			return "mutual_tls", 1
		case seen["none"]:
			return "none", 0
		}
		return "unknown", 0
	}
	switch {
	case n == 0:
		return "mutual_tls", 1
	case m == 0:
		return "none", 0
	}
	return "mixed", m / (m + n)
}
