package spancalls

import (
	"container/list"
	"context"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// SpanMetric is one span as the span-metrics aggregator counts it: the
// dimensions of traces_span_metrics_calls_total and
// traces_span_metrics_duration_milliseconds, plus the observed duration.
// Every span yields one SpanMetric, whatever its kind.
type SpanMetric struct {
	// ServiceName is the resource's service.name, verbatim (as Tempo and the
	// OpenTelemetry spanmetrics connector label it), so that Grafana can
	// link a series to the traces.
	ServiceName string
	SpanName    string
	// SpanKind is "SPAN_KIND_SERVER", "SPAN_KIND_CLIENT", "SPAN_KIND_INTERNAL",
	// "SPAN_KIND_PRODUCER", "SPAN_KIND_CONSUMER" or "SPAN_KIND_UNSPECIFIED".
	SpanKind string
	// StatusCode is "STATUS_CODE_UNSET", "STATUS_CODE_OK" or "STATUS_CODE_ERROR".
	StatusCode string
	Duration   time.Duration
	// Tenant is the span's model.TenantAttribute (multi-tenancy on).
	Tenant string
}

// Connection types of a GraphEdge, as Tempo's service-graph processor
// names them in the connection_type label ("" for a plain request).
const (
	ConnNone        = ""
	ConnMessaging   = "messaging_system"
	ConnDatabase    = "database"
	ConnVirtualNode = "virtual_node"
)

// VirtualUser is the client name given to root server spans (requests from
// outside any traced service), as in Tempo.
const VirtualUser = "user"

// GraphEdge is one request between two services, paired from a CLIENT (or
// PRODUCER) span and its SERVER (or CONSUMER) span: the observation behind
// traces_service_graph_request_total (+1), _request_failed_total (+1 when
// Failed), _request_client_seconds (ClientDuration) and
// _request_server_seconds (ServerDuration), labelled client, server and
// connection_type.
//
// Edges to a virtual node have one measured side: a database edge and an
// expired client edge carry the client duration as both durations; a
// root server span ("user" client) carries the server duration as both.
type GraphEdge struct {
	// Tenant is the tenant both halves belong to (multi-tenancy on).
	Tenant         string
	Client, Server string
	ConnectionType string
	ClientDuration time.Duration
	ServerDuration time.Duration
	Failed         bool
}

// SpanMetricsConsumer receives span metrics and service-graph edges. It is
// implemented by the metrics aggregator, which turns them into the
// traces_span_metrics_* and traces_service_graph_* series. Slices are only
// valid during the call.
type SpanMetricsConsumer interface {
	ConsumeSpanMetrics(ctx context.Context, spans []SpanMetric, edges []GraphEdge) error
}

// SpanMetricsConsumerFunc adapts a function to SpanMetricsConsumer.
type SpanMetricsConsumerFunc func(ctx context.Context, spans []SpanMetric, edges []GraphEdge) error

// ConsumeSpanMetrics calls f.
func (f SpanMetricsConsumerFunc) ConsumeSpanMetrics(ctx context.Context, spans []SpanMetric, edges []GraphEdge) error {
	return f(ctx, spans, edges)
}

// SpanKindLabel renders a kind as the span_kind label.
func SpanKindLabel(k ptrace.SpanKind) string {
	switch k {
	case ptrace.SpanKindServer:
		return "SPAN_KIND_SERVER"
	case ptrace.SpanKindClient:
		return "SPAN_KIND_CLIENT"
	case ptrace.SpanKindInternal:
		return "SPAN_KIND_INTERNAL"
	case ptrace.SpanKindProducer:
		return "SPAN_KIND_PRODUCER"
	case ptrace.SpanKindConsumer:
		return "SPAN_KIND_CONSUMER"
	}
	return "SPAN_KIND_UNSPECIFIED"
}

// StatusCodeLabel renders a status as the status_code label.
func StatusCodeLabel(c ptrace.StatusCode) string {
	switch c {
	case ptrace.StatusCodeOk:
		return "STATUS_CODE_OK"
	case ptrace.StatusCodeError:
		return "STATUS_CODE_ERROR"
	}
	return "STATUS_CODE_UNSET"
}

// PairerStats counts what the pairer did with halves it could not pair.
type PairerStats struct {
	Paired int64
	// Expired halves whose other half never came within the TTL; those of a
	// client with a known peer became virtual-node edges.
	Expired     int64
	VirtualEdge int64
	// Evicted halves pushed out because the store was full.
	Evicted int64
	Pending int
}

// pairKey includes the tenant: halves sent by two tenants never pair, even
// with the same trace and span ids.
type pairKey struct {
	tenant string
	trace  pcommon.TraceID
	span   pcommon.SpanID
}

// Half is one side of a prospective edge, as fed to a Pairer.
type Half struct {
	TraceID pcommon.TraceID
	// Key is the span id both halves share: the client (or producer) span's
	// own id. A server half uses its own id when it is the shared half of an
	// Envoy span, else its parent id.
	Key      pcommon.SpanID
	Client   bool
	Service  string
	Duration time.Duration
	Failed   bool
	// Conn is the connection type (ConnMessaging for producer/consumer).
	Conn string
	// Peer names the other side as the client sees it (peer.service,
	// server.address, upstream cluster), for a virtual-node edge when the
	// server half never comes.
	Peer string
	// Tenant is the tenant that sent the span (multi-tenancy on).
	Tenant string
}

type pending struct {
	key     pairKey
	half    Half
	expires time.Time
}

// Pairer joins client and server halves into GraphEdges. Halves wait at
// most TTL for their partner and at most MaxPending wait at once; past
// either bound the oldest are expired. It is not safe for concurrent use.
type Pairer struct {
	ttl   time.Duration
	max   int
	byKey map[pairKey]*list.Element
	fifo  *list.List // of *pending, oldest first (the TTL is constant)
	stats PairerStats
}

// NewPairer returns a Pairer; ttl and max must be positive.
func NewPairer(ttl time.Duration, max int) *Pairer {
	return &Pairer{ttl: ttl, max: max, byKey: make(map[pairKey]*list.Element), fifo: list.New()}
}

// Add feeds one half at time now and appends the edge it completes, if
// any, to edges.
func (p *Pairer) Add(h Half, now time.Time, edges []GraphEdge) []GraphEdge {
	k := pairKey{h.Tenant, h.TraceID, h.Key}
	if el, ok := p.byKey[k]; ok {
		other := el.Value.(*pending)
		if other.half.Client != h.Client {
			p.fifo.Remove(el)
			delete(p.byKey, k)
			p.stats.Paired++
			c, s := other.half, h
			if h.Client {
				c, s = h, other.half
			}
			conn := c.Conn
			if conn == ConnNone {
				conn = s.Conn
			}
			return append(edges, GraphEdge{
				Tenant: h.Tenant, Client: c.Service, Server: s.Service, ConnectionType: conn,
				ClientDuration: c.Duration, ServerDuration: s.Duration, Failed: c.Failed || s.Failed,
			})
		}
		// A duplicate of the same side (a retried export): keep the first.
		return edges
	}
	for p.fifo.Len() >= p.max {
		edges = p.expireFront(&p.stats.Evicted, edges)
	}
	p.byKey[k] = p.fifo.PushBack(&pending{key: k, half: h, expires: now.Add(p.ttl)})
	return edges
}

func (p *Pairer) expireFront(counter *int64, edges []GraphEdge) []GraphEdge {
	el := p.fifo.Front()
	pd := el.Value.(*pending)
	p.fifo.Remove(el)
	delete(p.byKey, pd.key)
	*counter++
	if pd.half.Client && pd.half.Peer != "" {
		p.stats.VirtualEdge++
		conn := pd.half.Conn
		if conn == ConnNone {
			conn = ConnVirtualNode
		}
		edges = append(edges, GraphEdge{
			Tenant: pd.half.Tenant, Client: pd.half.Service, Server: pd.half.Peer, ConnectionType: conn,
			ClientDuration: pd.half.Duration, ServerDuration: pd.half.Duration, Failed: pd.half.Failed,
		})
	}
	return edges
}

// Expire drops halves older than the TTL at now, appending the
// virtual-node edges of expired clients with a known peer.
func (p *Pairer) Expire(now time.Time, edges []GraphEdge) []GraphEdge {
	for p.fifo.Len() > 0 && !now.Before(p.fifo.Front().Value.(*pending).expires) {
		edges = p.expireFront(&p.stats.Expired, edges)
	}
	return edges
}

// Stats returns the counters so far.
func (p *Pairer) Stats() PairerStats {
	s := p.stats
	s.Pending = p.fifo.Len()
	return s
}
