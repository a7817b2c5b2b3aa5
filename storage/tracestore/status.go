package tracestore

import (
	"context"
	"errors"
	"net/http"
)

// HTTPStatus is the status a query API answers a store error with: 400 for
// a bad query, 404 for a missing trace, 503 when the query ran out of time
// or was cancelled, else 500. Every trace query API shares it.
func HTTPStatus(err error) int {
	switch {
	case errors.Is(err, ErrBadQuery):
		return http.StatusBadRequest
	case errors.Is(err, ErrTraceNotFound):
		return http.StatusNotFound
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}
