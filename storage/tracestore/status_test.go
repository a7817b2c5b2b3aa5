package tracestore

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestHTTPStatus(t *testing.T) {
	for _, c := range []struct {
		err  error
		want int
	}{
		{fmt.Errorf("%w: limit must be positive", ErrBadQuery), 400},
		{fmt.Errorf("trace 1: %w", ErrTraceNotFound), 404},
		{context.DeadlineExceeded, 503},
		{errors.New("disk on fire"), 500},
	} {
		if got := HTTPStatus(c.err); got != c.want {
			t.Errorf("HTTPStatus(%v) = %d, want %d", c.err, got, c.want)
		}
	}
}
