// Package otlp receives OpenTelemetry traces over OTLP/gRPC
// (opentelemetry.proto.collector.trace.v1.TraceService/Export) and
// OTLP/HTTP (POST /v1/traces, protobuf or JSON) and hands them to a
// pipeline.TraceConsumer unchanged.
//
// Partial success: spans with an all-zero trace_id or span_id are invalid
// per the OTLP spec; they are removed, the rest is stored, and the answer
// is a success carrying partial_success{rejected_spans, error_message}, as
// the spec prescribes. Pipeline errors map to the retry semantics of the
// spec: RESOURCE_EXHAUSTED with RetryInfo / HTTP 429 with Retry-After when
// overloaded, UNAVAILABLE / 503 when stopping, INVALID_ARGUMENT / 400 for
// input that will never be accepted.
package otlp

import (
	"bytes"
	"context"
	"fmt"
	"github.com/meshlens/meshlens/receivers/httpbody"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	_ "google.golang.org/grpc/encoding/gzip" // OTLP exporters compress with gzip by default.
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/meshlens/meshlens/pipeline"
	"github.com/meshlens/meshlens/receivers/utf8guard"
)

// Config bounds what one request may cost.
type Config struct {
	// MaxRequestBytes caps an HTTP body as sent and, through
	// GRPCServerOptions, a gRPC message. Default 16 MiB.
	MaxRequestBytes int64
	// MaxDecompressedBytes caps a gzip HTTP body once inflated. Default
	// 4 × MaxRequestBytes.
	MaxDecompressedBytes int64
	// MaxJSONDepth caps JSON nesting (OTLP's AnyValue nests). Default 64.
	MaxJSONDepth int
	// RetryAfter is the delay suggested to clients when overloaded.
	// Default 1 s.
	RetryAfter time.Duration
}

// Defaults.
const (
	DefaultMaxRequestBytes = 16 << 20
	DefaultMaxJSONDepth    = 64
)

func (c Config) withDefaults() Config {
	if c.MaxRequestBytes <= 0 {
		c.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if c.MaxDecompressedBytes <= 0 {
		c.MaxDecompressedBytes = 4 * c.MaxRequestBytes
	}
	if c.MaxJSONDepth <= 0 {
		c.MaxJSONDepth = DefaultMaxJSONDepth
	}
	if c.RetryAfter <= 0 {
		c.RetryAfter = time.Second
	}
	return c
}

// GRPCServerOptions are the options the gRPC server that hosts this
// receiver should be created with: gRPC checks the message size limit
// after decompression, so it also bounds gzip bombs.
func (c Config) GRPCServerOptions() []grpc.ServerOption {
	c = c.withDefaults()
	return []grpc.ServerOption{grpc.MaxRecvMsgSize(int(min(c.MaxDecompressedBytes, 1<<31-1)))}
}

// Receiver serves OTLP trace export over gRPC and HTTP.
type Receiver struct {
	ptraceotlp.UnimplementedGRPCServer

	cfg     Config
	next    pipeline.TraceConsumer
	grpcTel *pipeline.ReceiverTelemetry
	httpTel *pipeline.ReceiverTelemetry
	logger  *slog.Logger
	bufs    sync.Pool
}

// New returns a Receiver handing traces to next. tel and logger may be nil.
func New(cfg Config, next pipeline.TraceConsumer, tel *pipeline.Telemetry, logger *slog.Logger) *Receiver {
	if tel == nil {
		tel = pipeline.NewTelemetry(prometheus.NewRegistry())
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	r := &Receiver{
		cfg:     cfg.withDefaults(),
		next:    next,
		grpcTel: tel.Receiver("otlp", "grpc"),
		httpTel: tel.Receiver("otlp", "http"),
		logger:  logger,
	}
	r.bufs.New = func() any { return new(bytes.Buffer) }
	return r
}

// RegisterGRPC registers the OTLP TraceService on s.
func (r *Receiver) RegisterGRPC(s *grpc.Server) { ptraceotlp.RegisterGRPCServer(s, r) }

// Register adds POST /v1/traces to mux.
func (r *Receiver) Register(mux *http.ServeMux) { mux.HandleFunc("POST /v1/traces", r.handleHTTP) }

// Export implements ptraceotlp.GRPCServer.
func (r *Receiver) Export(ctx context.Context, req ptraceotlp.ExportRequest) (ptraceotlp.ExportResponse, error) {
	resp, err := r.consume(ctx, req.Traces(), r.grpcTel)
	if err != nil {
		return resp, r.grpcError(err)
	}
	return resp, nil
}

func (r *Receiver) grpcError(err error) error {
	code := pipeline.GRPCCode(err)
	st := status.New(code, err.Error())
	if code == codes.ResourceExhausted {
		// Without RetryInfo an OTLP client must not retry RESOURCE_EXHAUSTED.
		if withInfo, derr := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(r.cfg.RetryAfter)}); derr == nil {
			st = withInfo
		}
	}
	return st.Err()
}

// consume removes invalid spans, hands the rest on and builds the response.
func (r *Receiver) consume(ctx context.Context, td ptrace.Traces, tel *pipeline.ReceiverTelemetry) (ptraceotlp.ExportResponse, error) {
	resp := ptraceotlp.NewExportResponse()
	rejected := DropInvalid(td)
	// Invalid UTF-8 would make the stored trace unreadable over gRPC.
	utf8guard.Traces(td)
	if rejected > 0 {
		tel.Refused(rejected, "malformed")
		resp.PartialSuccess().SetRejectedSpans(int64(rejected))
		resp.PartialSuccess().SetErrorMessage(fmt.Sprintf("%d span(s) with an all-zero trace_id or span_id were rejected", rejected))
	}
	n := td.SpanCount()
	if n == 0 {
		return resp, nil
	}
	if err := r.next.ConsumeTraces(ctx, td); err != nil {
		tel.RefusedErr(n, err)
		r.logger.Debug("otlp spans refused", "spans", n, "err", err)
		return resp, fmt.Errorf("spans not stored: %w", err)
	}
	tel.Accepted(n)
	return resp, nil
}

// DropInvalid removes spans whose trace or span id is all zero (invalid
// per the OTLP spec) and returns how many it removed. Emptied scopes and
// resources are removed too.
func DropInvalid(td ptrace.Traces) int {
	dropped := 0
	td.ResourceSpans().RemoveIf(func(rs ptrace.ResourceSpans) bool {
		rs.ScopeSpans().RemoveIf(func(ss ptrace.ScopeSpans) bool {
			ss.Spans().RemoveIf(func(s ptrace.Span) bool {
				if s.TraceID().IsEmpty() || s.SpanID().IsEmpty() {
					dropped++
					return true
				}
				return false
			})
			return ss.Spans().Len() == 0
		})
		return rs.ScopeSpans().Len() == 0
	})
	return dropped
}

type encoding int

const (
	encProto encoding = iota
	encJSON
)

func (e encoding) contentType() string {
	if e == encJSON {
		return "application/json"
	}
	return "application/x-protobuf"
}

func (r *Receiver) handleHTTP(w http.ResponseWriter, req *http.Request) {
	var enc encoding
	ct := req.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		mt = ct
	}
	switch strings.ToLower(mt) {
	case "application/x-protobuf", "application/protobuf":
		enc = encProto
	case "application/json":
		enc = encJSON
	default:
		r.httpTel.Refused(1, "unsupported")
		r.writeStatus(w, encProto, http.StatusUnsupportedMediaType, codes.InvalidArgument,
			fmt.Sprintf("unsupported Content-Type %q: /v1/traces takes application/x-protobuf or application/json", ct))
		return
	}

	buf := r.bufs.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= 1<<20 {
			buf.Reset()
			r.bufs.Put(buf)
		}
	}()
	body, err := httpbody.Read(req, buf, r.cfg.MaxRequestBytes, r.cfg.MaxDecompressedBytes)
	if err != nil {
		st := httpbody.StatusOf(err)
		r.httpTel.Refused(1, reasonFor(st))
		r.writeStatus(w, enc, st, codes.InvalidArgument, err.Error())
		return
	}

	otlpReq := ptraceotlp.NewExportRequest()
	switch enc {
	case encProto:
		err = otlpReq.UnmarshalProto(body)
	case encJSON:
		if err = httpbody.CheckJSONDepth(body, r.cfg.MaxJSONDepth); err == nil {
			err = otlpReq.UnmarshalJSON(body)
		}
	}
	if err != nil {
		r.httpTel.Refused(1, "malformed")
		r.writeStatus(w, enc, http.StatusBadRequest, codes.InvalidArgument, "cannot decode ExportTraceServiceRequest: "+err.Error())
		return
	}

	resp, err := r.consume(req.Context(), otlpReq.Traces(), r.httpTel)
	if err != nil {
		r.writeStatus(w, enc, pipeline.HTTPStatus(err), pipeline.GRPCCode(err), err.Error())
		return
	}
	var out []byte
	if enc == encJSON {
		out, err = resp.MarshalJSON()
	} else {
		out, err = resp.MarshalProto()
	}
	if err != nil {
		r.writeStatus(w, enc, http.StatusInternalServerError, codes.Internal, err.Error())
		return
	}
	w.Header().Set("Content-Type", enc.contentType())
	w.WriteHeader(http.StatusOK)
	w.Write(out)
}

// writeStatus answers an error as OTLP/HTTP prescribes: a google.rpc.Status
// in the request's encoding.
func (r *Receiver) writeStatus(w http.ResponseWriter, enc encoding, httpStatus int, code codes.Code, msg string) {
	st := status.New(code, msg).Proto()
	var out []byte
	var err error
	if enc == encJSON {
		out, err = protojson.Marshal(st)
	} else {
		out, err = proto.Marshal(st)
	}
	if err != nil {
		out = []byte(msg)
	}
	w.Header().Set("Content-Type", enc.contentType())
	if httpStatus == http.StatusTooManyRequests || httpStatus == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", fmt.Sprint(int(max(r.cfg.RetryAfter.Seconds(), 1))))
	}
	w.WriteHeader(httpStatus)
	w.Write(out)
}

func reasonFor(status int) string {
	switch status {
	case http.StatusRequestEntityTooLarge:
		return "too_large"
	case http.StatusUnsupportedMediaType:
		return "unsupported"
	}
	return "malformed"
}
