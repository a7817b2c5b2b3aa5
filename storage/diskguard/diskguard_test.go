package diskguard

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"testing"

	"go.opentelemetry.io/collector/pdata/ptrace"
	"google.golang.org/grpc/codes"

	"github.com/meshlens/meshlens/pipeline"
)

func TestGuardCheck(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name    string
		g       Guard
		wantLow bool
	}{
		{"off", Guard{Path: dir}, false},
		{"one byte reserve", Guard{Path: dir, MinFreeBytes: 1}, false},
		{"reserve larger than any disk", Guard{Path: dir, MinFreeBytes: 1 << 62}, true},
		{"unknown path is not refused", Guard{Path: dir + "/missing", MinFreeBytes: 1 << 62}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.g.Check()
			if got := errors.Is(err, ErrLowDisk); got != tc.wantLow {
				t.Fatalf("Check() = %v, low disk %v, want %v", err, got, tc.wantLow)
			}
			if tc.wantLow {
				if c := pipeline.GRPCCode(err); c != codes.Unavailable {
					t.Errorf("gRPC code %v, want UNAVAILABLE (retryable)", c)
				}
				if s := pipeline.HTTPStatus(err); s != http.StatusServiceUnavailable {
					t.Errorf("HTTP status %d, want 503", s)
				}
			}
		})
	}
}

func TestTraces(t *testing.T) {
	low := Guard{Path: t.TempDir(), MinFreeBytes: 1 << 62}
	logger := slog.New(slog.DiscardHandler)
	for _, tc := range []struct {
		name      string
		g         Guard
		next      func() error // nil: panics
		wantCalls int          // over two writes
		wantErr   [2]error
	}{
		{"passes through", Guard{}, func() error { return nil }, 2, [2]error{nil, nil}},
		{"store error passes through", Guard{}, func() error { return errors.New("boom") }, 2, [2]error{errors.New("boom"), errors.New("boom")}},
		{"low disk refuses before the store", low, func() error { return nil }, 0, [2]error{ErrLowDisk, ErrLowDisk}},
		{"a panic fails this and every later write", Guard{}, nil, 1, [2]error{ErrStoreFailed, ErrStoreFailed}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			next := pipeline.TraceConsumerFunc(func(context.Context, ptrace.Traces) error {
				calls++
				if tc.next == nil {
					panic("pebble: fatal commit error: no space left on device")
				}
				return tc.next()
			})
			c := Traces(next, tc.g, logger)
			for i, want := range tc.wantErr {
				err := c.ConsumeTraces(context.Background(), ptrace.NewTraces())
				switch {
				case want == nil && err != nil,
					want != nil && err == nil,
					want != nil && !errors.Is(err, want) && err.Error() != want.Error():
					t.Errorf("write %d: %v, want %v", i, err, want)
				}
			}
			if calls != tc.wantCalls {
				t.Errorf("store called %d times, want %d", calls, tc.wantCalls)
			}
		})
	}
}
