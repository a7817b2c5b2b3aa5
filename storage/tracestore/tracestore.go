// Package tracestore is the contract between span ingest and the trace query
// APIs: a Writer that is itself a pipeline.TraceConsumer, a Reader that
// answers every query the Jaeger and Zipkin APIs need, and the helpers
// (query matching, dependency linking, trace assembly) that every backend
// shares so that all backends give the same answers.
package tracestore

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// Limits every backend applies.
const (
	// DefaultLimit is the number of traces a search returns when the query
	// names no limit.
	DefaultLimit = 20
	// MaxLimit is the most traces one search may return.
	MaxLimit = 1500
	// DefaultMaxSpansPerTrace caps the spans GetTrace returns for one trace;
	// a trace cut short carries a warning.
	DefaultMaxSpansPerTrace = 50000
	// DefaultTTL is how long spans are kept.
	DefaultTTL = 72 * time.Hour
	// MaxTagLen is the longest tag key or value a backend must index; a
	// query naming a longer one is still answered, by filtering.
	MaxTagLen = 256
)

// ErrTraceNotFound is returned by GetTrace for an unknown trace id.
var ErrTraceNotFound = errors.New("trace not found")

// ErrClosed is returned by a store after Close.
var ErrClosed = errors.New("trace store closed")

// Writer stores spans. WriteTraces is idempotent: writing a span again with
// the same trace id, span id, kind and start time replaces it.
type Writer interface {
	WriteTraces(ctx context.Context, td ptrace.Traces) error
}

// Reader answers trace queries.
type Reader interface {
	// GetTrace returns every stored span of the trace, or ErrTraceNotFound.
	GetTrace(ctx context.Context, id pcommon.TraceID) (*Trace, error)
	// GetServices lists the services that reported spans, sorted.
	GetServices(ctx context.Context) ([]string, error)
	// GetOperations lists the span names of service, sorted; spanKind
	// ("server", "client", "producer", "consumer", "internal") filters
	// them when not empty.
	GetOperations(ctx context.Context, service, spanKind string) ([]Operation, error)
	// GetRemoteServices lists the peer services (attribute peer.service)
	// that service's spans name, sorted.
	GetRemoteServices(ctx context.Context, service string) ([]string, error)
	// GetTagValues lists the values stored for an autocomplete tag key.
	GetTagValues(ctx context.Context, key string) ([]string, error)
	// FindTraces returns the traces holding a span that matches q, newest
	// first.
	FindTraces(ctx context.Context, q Query) ([]*Trace, error)
	// FindTraceIDs is FindTraces without loading the traces.
	FindTraceIDs(ctx context.Context, q Query) ([]pcommon.TraceID, error)
	// GetDependencies returns the service call graph of spans that started
	// in (endTs-lookback, endTs], derived from parent/child span pairs
	// whose services differ.
	GetDependencies(ctx context.Context, endTs time.Time, lookback time.Duration) ([]DependencyLink, error)
}

// Store is a complete trace storage backend.
type Store interface {
	Writer
	Reader
	// ConsumeTraces is WriteTraces, so a store can end a trace pipeline.
	ConsumeTraces(ctx context.Context, td ptrace.Traces) error
	Capabilities() Capabilities
	Close() error
}

// Capabilities says what a backend supports, so query APIs can tell users
// what they cannot get rather than return silently empty answers.
type Capabilities struct {
	// Durable: acknowledged writes survive a crash.
	Durable bool
	// TTL is the retention, zero when spans are never expired.
	TTL time.Duration
	// MaxLookback bounds how far back a search looks.
	MaxLookback time.Duration
	// MaxSpansPerTrace is the cap GetTrace applies.
	MaxSpansPerTrace int
	// AutocompleteKeys are the tag keys whose values GetTagValues knows.
	AutocompleteKeys []string
}

// Trace is the stored spans of one trace.
type Trace struct {
	ID    pcommon.TraceID
	Spans ptrace.Traces
	// Warnings explain why the trace may be incomplete (span cap reached).
	Warnings []string
}

// Operation is one span name of a service.
type Operation struct {
	Name string
	// SpanKind is "server", "client", "producer", "consumer", "internal"
	// or "" when unspecified.
	SpanKind string
}

// DependencyLink is a service call edge.
type DependencyLink struct {
	Parent    string
	Child     string
	CallCount uint64
}

// Query selects traces: a trace matches when one of its spans satisfies
// every predicate set (Jaeger's and Zipkin's semantics).
type Query struct {
	// Service is the span's resource service.name.
	Service string
	// Operation is the span name.
	Operation string
	// SpanKind restricts spans to one kind ("server", "client", ...).
	SpanKind string
	// RemoteService is the span's peer.service attribute (Zipkin's
	// remoteEndpoint.serviceName).
	RemoteService string
	// Tags must all be present with these values, as span, resource or
	// event attributes. "error"="true" also matches a span with an error
	// status; "span.kind" and "otel.status_code" match the span's kind and
	// status.
	Tags map[string]string
	// Annotations must all be present as an attribute key or an event name
	// (Zipkin's annotationQuery terms without "=").
	Annotations []string
	// StartMin and StartMax bound the span start time; zero means unbounded
	// (within the backend's lookback).
	StartMin, StartMax time.Time
	// DurationMin and DurationMax bound the span duration; zero means
	// unbounded.
	DurationMin, DurationMax time.Duration
	// Limit is the most traces returned: DefaultLimit when zero, at most
	// MaxLimit.
	Limit int
}

// ErrBadQuery wraps the reason a query is invalid (query APIs answer 400).
var ErrBadQuery = errors.New("bad query")
