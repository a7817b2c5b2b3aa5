package pipeline

import (
	"context"

	"go.opentelemetry.io/collector/pdata/ptrace"
)

// TraceConsumer is the next stage for spans. Every trace receiver (Zipkin,
// OTLP, Jaeger) translates its wire format into ptrace.Traces and hands it
// here; after ConsumeTraces returns the caller must not touch td.
type TraceConsumer interface {
	ConsumeTraces(ctx context.Context, td ptrace.Traces) error
}

// TraceConsumerFunc adapts a function to TraceConsumer.
type TraceConsumerFunc func(ctx context.Context, td ptrace.Traces) error

// ConsumeTraces calls f.
func (f TraceConsumerFunc) ConsumeTraces(ctx context.Context, td ptrace.Traces) error {
	return f(ctx, td)
}
