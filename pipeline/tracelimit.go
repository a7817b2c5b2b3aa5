package pipeline

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"
)

// TraceLimiter bounds how many span batches are being written at once.
// Span receivers have no queue: a batch is written to the trace store
// while the client waits, so without a bound a flood of clients piles up
// goroutines and decoded batches behind the store until memory runs out.
// Past the bound a batch waits at most Wait for a slot and is then refused
// with ErrOverloaded (HTTP 429 / gRPC RESOURCE_EXHAUSTED), as a full call
// queue refuses.
type TraceLimiter struct {
	next TraceConsumer
	sem  chan struct{}
	wait time.Duration
}

// NewTraceLimiter lets at most n batches (at least 1) through to next at
// a time, each waiting at most wait for its turn.
func NewTraceLimiter(next TraceConsumer, n int, wait time.Duration) *TraceLimiter {
	return &TraceLimiter{next: next, sem: make(chan struct{}, max(1, n)), wait: wait}
}

// ConsumeTraces passes td on once a slot is free.
func (l *TraceLimiter) ConsumeTraces(ctx context.Context, td ptrace.Traces) error {
	select {
	case l.sem <- struct{}{}:
	default:
		if err := l.acquire(ctx); err != nil {
			return err
		}
	}
	defer func() { <-l.sem }()
	return l.next.ConsumeTraces(ctx, td)
}

func (l *TraceLimiter) acquire(ctx context.Context) error {
	refused := fmt.Errorf("%d span batches are being stored (pipeline.max_inflight_span_batches); retry later: %w", cap(l.sem), ErrOverloaded)
	if l.wait <= 0 {
		return refused
	}
	t := time.NewTimer(l.wait)
	defer t.Stop()
	select {
	case l.sem <- struct{}{}:
		return nil
	case <-t.C:
		return refused
	case <-ctx.Done():
		return ctx.Err()
	}
}
