package pipeline

import (
	"context"
	"errors"
	"net/http"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// GRPCStatus maps a pipeline error to the gRPC status a receiver returns,
// so that every receiver gives clients the same retry semantics.
func GRPCStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok && !isPipelineErr(err) {
		return err
	}
	return status.Error(GRPCCode(err), err.Error())
}

// GRPCCode is the gRPC code for err (see GRPCStatus).
func GRPCCode(err error) codes.Code {
	switch {
	case err == nil:
		return codes.OK
	case errors.Is(err, ErrOverloaded):
		return codes.ResourceExhausted
	case errors.Is(err, ErrShuttingDown):
		return codes.Unavailable
	case IsPermanent(err):
		return codes.InvalidArgument
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	}
	if s, ok := status.FromError(err); ok {
		return s.Code()
	}
	return codes.Unavailable
}

// HTTPStatus is the HTTP status a receiver answers for err: 429 when
// overloaded, 503 when stopping or on a transient failure, 400 for bad input.
func HTTPStatus(err error) int {
	switch {
	case err == nil:
		return http.StatusOK
	case errors.Is(err, ErrOverloaded):
		return http.StatusTooManyRequests
	case IsPermanent(err):
		return http.StatusBadRequest
	}
	return http.StatusServiceUnavailable
}

func isPipelineErr(err error) bool {
	return errors.Is(err, ErrOverloaded) || errors.Is(err, ErrShuttingDown) || IsPermanent(err)
}
