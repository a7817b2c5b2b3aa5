// Package pipeline joins receivers to processors and storage: the consumer
// contracts each stage implements, bounded queues between stages, the
// errors that carry retry meaning to the wire, and self-metrics.
package pipeline

import (
	"context"
	"errors"
	"fmt"

	"github.com/meshlens/meshlens/model"
)

// CallConsumer is the next stage for normalised call records. After
// ConsumeCalls returns, the consumer must not keep a reference to calls: the
// caller may reuse the slice.
type CallConsumer interface {
	ConsumeCalls(ctx context.Context, calls []model.Call) error
}

// CallConsumerFunc adapts a function to CallConsumer.
type CallConsumerFunc func(ctx context.Context, calls []model.Call) error

// ConsumeCalls calls f.
func (f CallConsumerFunc) ConsumeCalls(ctx context.Context, calls []model.Call) error {
	return f(ctx, calls)
}

// CallProcessor transforms calls in place before they go further (identity
// resolution, endpoint grouping). It runs on the queue's worker goroutines.
type CallProcessor interface {
	ProcessCalls(ctx context.Context, calls []model.Call)
}

// ErrOverloaded is returned (wrapped) when a bounded queue or limiter is
// full. Receivers map it to gRPC RESOURCE_EXHAUSTED or HTTP 429: the client
// should retry later.
var ErrOverloaded = errors.New("overloaded")

// ErrShuttingDown is returned when a stage no longer accepts data because
// the server is stopping. Receivers map it to gRPC UNAVAILABLE / HTTP 503.
var ErrShuttingDown = errors.New("shutting down")

// PermanentError marks input that will never be accepted, however often it
// is retried (malformed, too large, missing required fields). Receivers map
// it to gRPC INVALID_ARGUMENT / HTTP 400.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err as a PermanentError.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// Permanentf formats a PermanentError.
func Permanentf(format string, args ...any) error {
	return &PermanentError{Err: fmt.Errorf(format, args...)}
}

// IsPermanent reports whether err is or wraps a PermanentError.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}
