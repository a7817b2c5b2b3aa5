// Package jaeger receives spans over Jaeger's api_v2 gRPC collector
// protocol (jaeger.api_v2.CollectorService/PostSpans), translates them into
// ptrace.Traces and hands them to a pipeline.TraceConsumer.
//
// Invalid spans (zero trace or span id, no process): like the Zipkin
// receiver, the valid spans of the batch are stored and the call fails with
// INVALID_ARGUMENT naming the dropped spans. PostSpansResponse has no
// partial-success field, and INVALID_ARGUMENT is not retried by Jaeger
// clients, so the stored spans are not sent twice.
package jaeger

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/jaegertracing/jaeger-idl/proto-gen/api_v2"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshlens/meshlens/pipeline"
	"github.com/meshlens/meshlens/receivers/utf8guard"
)

// Config bounds what one request may cost.
type Config struct {
	// MaxSpansPerBatch refuses batches with more spans (INVALID_ARGUMENT);
	// 0 means no cap beyond the gRPC message size. The gRPC server should be
	// created with grpc.MaxRecvMsgSize to bound the message itself.
	MaxSpansPerBatch int
}

// Receiver implements api_v2.CollectorServiceServer.
type Receiver struct {
	cfg    Config
	next   pipeline.TraceConsumer
	tel    *pipeline.ReceiverTelemetry
	logger *slog.Logger
}

var _ api_v2.CollectorServiceServer = (*Receiver)(nil)

// New returns a Receiver handing spans to next. tel and logger may be nil.
func New(cfg Config, next pipeline.TraceConsumer, tel *pipeline.Telemetry, logger *slog.Logger) *Receiver {
	if tel == nil {
		tel = pipeline.NewTelemetry(prometheus.NewRegistry())
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Receiver{cfg: cfg, next: next, tel: tel.Receiver("jaeger", "grpc"), logger: logger}
}

// Register registers the collector service on s.
func (r *Receiver) Register(s *grpc.Server) { api_v2.RegisterCollectorServiceServer(s, r) }

// PostSpans implements api_v2.CollectorServiceServer.
func (r *Receiver) PostSpans(ctx context.Context, req *api_v2.PostSpansRequest) (*api_v2.PostSpansResponse, error) {
	n := len(req.Batch.Spans)
	if max := r.cfg.MaxSpansPerBatch; max > 0 && n > max {
		r.tel.Refused(n, "too_large")
		return nil, status.Errorf(codes.InvalidArgument, "batch of %d spans exceeds the limit of %d", n, max)
	}
	td, rejected := BatchToTraces(&req.Batch)
	// Invalid UTF-8 would make the stored trace unreadable over gRPC.
	utf8guard.Traces(td)
	if kept := td.SpanCount(); kept > 0 {
		if err := r.next.ConsumeTraces(ctx, td); err != nil {
			r.tel.RefusedErr(kept, err)
			r.logger.Debug("jaeger spans refused", "spans", kept, "err", err)
			return nil, pipeline.GRPCStatus(fmt.Errorf("spans not stored: %w", err))
		}
		r.tel.Accepted(kept)
	}
	if len(rejected) > 0 {
		r.tel.Refused(len(rejected), "malformed")
		return nil, status.Error(codes.InvalidArgument, rejectedMessage(n-len(rejected), rejected))
	}
	return &api_v2.PostSpansResponse{}, nil
}

func rejectedMessage(kept int, rejected []Rejected) string {
	var b strings.Builder
	fmt.Fprintf(&b, "dropped %d invalid span(s), kept %d: ", len(rejected), kept)
	for i, rj := range rejected {
		if i == 10 {
			fmt.Fprintf(&b, "; and %d more", len(rejected)-10)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(rj.String())
	}
	return b.String()
}
