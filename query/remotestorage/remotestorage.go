// Package remotestorage serves Jaeger's remote storage API v2
// (jaeger.storage.v2 TraceReader, DependencyReader and Capabilities, from
// jaeger-idl v0.14.0) over any tracestore.Reader, so that Jaeger v2 can use
// meshlens as its storage backend. Writes reach meshlens as OTLP, through
// the OTLP receiver, as the API intends.
//
// jaeger-idl v0.14.0 ships the storage v2 protos but no generated Go for
// them; storagev2 is generated (make proto-remotestorage) from a copy
// trimmed as described in proto/storage_v2.proto.
package remotestorage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/meshlens/meshlens/query/remotestorage/storagev2"
	"github.com/meshlens/meshlens/storage/tracestore"
)

// Limits of one request.
const (
	// MaxTraceIDsPerRequest bounds GetTraces.
	MaxTraceIDsPerRequest = 1000
	// DefaultChunkSpans is the most spans one streamed TracesData holds.
	DefaultChunkSpans = 1000
)

// Server implements the storage v2 gRPC services over a tracestore.Reader.
type Server struct {
	storagev2.UnimplementedTraceReaderServer
	storagev2.UnimplementedDependencyReaderServer
	storagev2.UnimplementedCapabilitiesServer
	r          tracestore.Reader
	logger     *slog.Logger
	chunkSpans int
}

// New returns a server reading from r.
func New(r tracestore.Reader, logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Server{r: r, logger: logger, chunkSpans: DefaultChunkSpans}
}

// Register adds the TraceReader, DependencyReader and Capabilities
// services to g.
func (s *Server) Register(g *grpc.Server) {
	storagev2.RegisterTraceReaderServer(g, s)
	storagev2.RegisterDependencyReaderServer(g, s)
	storagev2.RegisterCapabilitiesServer(g, s)
}

func grpcErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, tracestore.ErrBadQuery):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, tracestore.ErrClosed):
		return status.Error(codes.Unavailable, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

// GetTraces streams each found trace in one or more consecutive chunks;
// unknown ids are skipped.
func (s *Server) GetTraces(req *storagev2.GetTracesRequest, stream grpc.ServerStreamingServer[storagev2.TracesData]) error {
	if len(req.GetQuery()) > MaxTraceIDsPerRequest {
		return status.Errorf(codes.InvalidArgument, "%d trace ids in one request; at most %d", len(req.GetQuery()), MaxTraceIDsPerRequest)
	}
	ids := make([]pcommon.TraceID, 0, len(req.GetQuery()))
	for i, q := range req.GetQuery() {
		if len(q.GetTraceId()) != 16 {
			return status.Errorf(codes.InvalidArgument, "query %d: trace_id has %d bytes, want 16", i, len(q.GetTraceId()))
		}
		ids = append(ids, pcommon.TraceID(q.GetTraceId()))
	}
	for _, id := range ids {
		tr, err := s.r.GetTrace(stream.Context(), id)
		if errors.Is(err, tracestore.ErrTraceNotFound) {
			continue
		}
		if err != nil {
			return grpcErr(err)
		}
		if err := s.send(stream, tr.Spans); err != nil {
			return err
		}
	}
	return nil
}

// send streams td in chunks of at most chunkSpans spans.
func (s *Server) send(stream grpc.ServerStreamingServer[storagev2.TracesData], td ptrace.Traces) error {
	for _, chunk := range Chunks(td, s.chunkSpans) {
		msg, err := ToWire(chunk)
		if err != nil {
			return status.Error(codes.Internal, err.Error())
		}
		if err := stream.Send(msg); err != nil {
			return err
		}
	}
	return nil
}

// Chunks splits td into pieces of at most n spans, each keeping its spans'
// resources and scopes; an empty td gives no chunks.
func Chunks(td ptrace.Traces, n int) []ptrace.Traces {
	if td.SpanCount() <= n {
		if td.SpanCount() == 0 {
			return nil
		}
		return []ptrace.Traces{td}
	}
	var out []ptrace.Traces
	cur, count := ptrace.NewTraces(), 0
	for i := 0; i < td.ResourceSpans().Len(); i++ {
		rs := td.ResourceSpans().At(i)
		for j := 0; j < rs.ScopeSpans().Len(); j++ {
			ss := rs.ScopeSpans().At(j)
			var dst ptrace.SpanSlice
			open := false
			for k := 0; k < ss.Spans().Len(); k++ {
				if count == n {
					out = append(out, cur)
					cur, count, open = ptrace.NewTraces(), 0, false
				}
				if !open {
					nrs := cur.ResourceSpans().AppendEmpty()
					rs.Resource().CopyTo(nrs.Resource())
					nrs.SetSchemaUrl(rs.SchemaUrl())
					nss := nrs.ScopeSpans().AppendEmpty()
					ss.Scope().CopyTo(nss.Scope())
					nss.SetSchemaUrl(ss.SchemaUrl())
					dst, open = nss.Spans(), true
				}
				ss.Spans().At(k).CopyTo(dst.AppendEmpty())
				count++
			}
		}
	}
	if count > 0 {
		out = append(out, cur)
	}
	return out
}

var (
	marshaler   = &ptrace.ProtoMarshaler{}
	unmarshaler = &ptrace.ProtoUnmarshaler{}
)

// ToWire encodes td as OTLP TracesData: each ResourceSpans as the bytes of
// field 1.
func ToWire(td ptrace.Traces) (*storagev2.TracesData, error) {
	b, err := marshaler.MarshalTraces(td)
	if err != nil {
		return nil, fmt.Errorf("encode traces: %w", err)
	}
	out := &storagev2.TracesData{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, fmt.Errorf("encode traces: %w", protowire.ParseError(n))
		}
		b = b[n:]
		if num == 1 && typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return nil, fmt.Errorf("encode traces: %w", protowire.ParseError(m))
			}
			out.ResourceSpans = append(out.ResourceSpans, v)
			b = b[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return nil, fmt.Errorf("encode traces: %w", protowire.ParseError(m))
		}
		b = b[m:]
	}
	return out, nil
}

// FromWire decodes a TracesData received from the API.
func FromWire(m *storagev2.TracesData) (ptrace.Traces, error) {
	var b []byte
	for _, rs := range m.GetResourceSpans() {
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendBytes(b, rs)
	}
	return unmarshaler.UnmarshalTraces(b)
}

// GetServices implements TraceReader.
func (s *Server) GetServices(ctx context.Context, _ *storagev2.GetServicesRequest) (*storagev2.GetServicesResponse, error) {
	svcs, err := s.r.GetServices(ctx)
	if err != nil {
		return nil, grpcErr(err)
	}
	return &storagev2.GetServicesResponse{Services: svcs}, nil
}

// GetOperations implements TraceReader.
func (s *Server) GetOperations(ctx context.Context, req *storagev2.GetOperationsRequest) (*storagev2.GetOperationsResponse, error) {
	ops, err := s.r.GetOperations(ctx, req.GetService(), req.GetSpanKind())
	if err != nil {
		return nil, grpcErr(err)
	}
	out := &storagev2.GetOperationsResponse{Operations: make([]*storagev2.Operation, len(ops))}
	for i, o := range ops {
		out.Operations[i] = &storagev2.Operation{Name: o.Name, SpanKind: o.SpanKind}
	}
	return out, nil
}

// Query converts the API's query parameters: attributes become tags
// compared as strings; search_depth (or pagination.page_size, served as
// a single page) is the limit.
func Query(p *storagev2.TraceQueryParameters) (tracestore.Query, error) {
	if p == nil {
		return tracestore.Query{}, fmt.Errorf("%w: query is missing", tracestore.ErrBadQuery)
	}
	q := tracestore.Query{Service: p.GetServiceName(), Operation: p.GetOperationName()}
	for _, kv := range p.GetAttributes() {
		if q.Tags == nil {
			q.Tags = map[string]string{}
		}
		v, err := attrString(kv.GetValue())
		if err != nil {
			return q, fmt.Errorf("%w: attribute %q: %v", tracestore.ErrBadQuery, kv.GetKey(), err)
		}
		q.Tags[kv.GetKey()] = v
	}
	q.StartMin = timeOf(p.GetStartTimeMin())
	q.StartMax = timeOf(p.GetStartTimeMax())
	if d := p.GetDurationMin(); d != nil {
		q.DurationMin = d.AsDuration()
	}
	if d := p.GetDurationMax(); d != nil {
		q.DurationMax = d.AsDuration()
	}
	q.Limit = int(p.GetSearchDepth())
	if pg := p.GetPagination(); pg != nil {
		if pg.GetPageToken() != "" {
			return q, fmt.Errorf("%w: page_token %q: this backend serves single pages (SearchCapabilities.paginated is false)", tracestore.ErrBadQuery, pg.GetPageToken())
		}
		if pg.GetPageSize() == 0 {
			return q, fmt.Errorf("%w: pagination.page_size is zero", tracestore.ErrBadQuery)
		}
		q.Limit = int(min(pg.GetPageSize(), math.MaxInt32))
	}
	return q, nil
}

// timeOf treats a missing timestamp, and one at or before the Unix epoch,
// as unset: Jaeger's gogo-generated client encodes an unset time.Time as
// 0001-01-01 rather than leaving the field out.
func timeOf(ts *timestamppb.Timestamp) time.Time {
	if ts == nil || ts.GetSeconds() <= 0 {
		return time.Time{}
	}
	return ts.AsTime()
}

func attrString(v *storagev2.AnyValue) (string, error) {
	switch x := v.GetValue().(type) {
	case *storagev2.AnyValue_StringValue:
		return x.StringValue, nil
	case *storagev2.AnyValue_BoolValue:
		return strconv.FormatBool(x.BoolValue), nil
	case *storagev2.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10), nil
	case *storagev2.AnyValue_DoubleValue:
		return pcommon.NewValueDouble(x.DoubleValue).AsString(), nil
	case nil:
		return "", errors.New("no value")
	}
	return "", fmt.Errorf("%T values cannot be searched", v.GetValue())
}

// FindTraces implements TraceReader.
func (s *Server) FindTraces(req *storagev2.FindTracesRequest, stream grpc.ServerStreamingServer[storagev2.TracesData]) error {
	q, err := Query(req.GetQuery())
	if err != nil {
		return grpcErr(err)
	}
	traces, err := s.r.FindTraces(stream.Context(), q)
	if err != nil {
		return grpcErr(err)
	}
	for _, tr := range traces {
		if err := s.send(stream, tr.Spans); err != nil {
			return err
		}
	}
	return nil
}

// FindTraceIDs implements TraceReader.
func (s *Server) FindTraceIDs(ctx context.Context, req *storagev2.FindTraceIDsRequest) (*storagev2.FindTraceIDsResponse, error) {
	q, err := Query(req.GetQuery())
	if err != nil {
		return nil, grpcErr(err)
	}
	ids, err := s.r.FindTraceIDs(ctx, q)
	if err != nil {
		return nil, grpcErr(err)
	}
	out := &storagev2.FindTraceIDsResponse{TraceIds: make([]*storagev2.FoundTraceID, len(ids))}
	for i, id := range ids {
		out.TraceIds[i] = &storagev2.FoundTraceID{TraceId: append([]byte(nil), id[:]...)}
	}
	return out, nil
}

// GetDependencies implements DependencyReader over (start_time, end_time]
// (default: the last 24 hours).
func (s *Server) GetDependencies(ctx context.Context, req *storagev2.GetDependenciesRequest) (*storagev2.GetDependenciesResponse, error) {
	end := timeOf(req.GetEndTime())
	if end.IsZero() {
		end = time.Now()
	}
	start := timeOf(req.GetStartTime())
	if start.IsZero() {
		start = end.Add(-24 * time.Hour)
	}
	if !start.Before(end) {
		return nil, status.Errorf(codes.InvalidArgument, "start_time %v is not before end_time %v", start, end)
	}
	links, err := s.r.GetDependencies(ctx, end, end.Sub(start))
	if err != nil {
		return nil, grpcErr(err)
	}
	out := &storagev2.GetDependenciesResponse{Dependencies: make([]*storagev2.Dependency, len(links))}
	for i, l := range links {
		out.Dependencies[i] = &storagev2.Dependency{Parent: l.Parent, Child: l.Child, CallCount: l.CallCount}
	}
	return out, nil
}

// GetCapabilities implements Capabilities: searches without a service
// name work, and all predicates hold on one span.
func (s *Server) GetCapabilities(context.Context, *storagev2.GetCapabilitiesRequest) (*storagev2.GetCapabilitiesResponse, error) {
	return &storagev2.GetCapabilitiesResponse{Search: &storagev2.SearchCapabilities{WithoutServiceName: true, SameSpanConjunction: true}}, nil
}
