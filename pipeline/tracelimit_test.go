package pipeline

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"
	"google.golang.org/grpc/codes"
)

func TestTraceLimiter(t *testing.T) {
	for _, tc := range []struct {
		name     string
		max      int
		wait     time.Duration
		blocked  int  // batches holding a slot when the probe arrives
		release  bool // a slot frees up while the probe waits
		wantErr  error
		wantCode codes.Code
		wantHTTP int
	}{
		{name: "free slot", max: 2, blocked: 1, wantCode: codes.OK, wantHTTP: http.StatusOK},
		{name: "full, no wait", max: 2, blocked: 2, wantErr: ErrOverloaded, wantCode: codes.ResourceExhausted, wantHTTP: http.StatusTooManyRequests},
		{name: "full, wait expires", max: 1, wait: 20 * time.Millisecond, blocked: 1, wantErr: ErrOverloaded, wantCode: codes.ResourceExhausted, wantHTTP: http.StatusTooManyRequests},
		{name: "full, slot frees within wait", max: 1, wait: 5 * time.Second, blocked: 1, release: true, wantCode: codes.OK, wantHTTP: http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gate := make(chan struct{})
			var calls sync.WaitGroup
			entered := make(chan struct{}, tc.blocked+1)
			next := TraceConsumerFunc(func(ctx context.Context, td ptrace.Traces) error {
				entered <- struct{}{}
				if td.SpanCount() == 0 { // the blockers carry no spans
					<-gate
				}
				return nil
			})
			l := NewTraceLimiter(next, tc.max, tc.wait)
			for i := 0; i < tc.blocked; i++ {
				calls.Add(1)
				go func() { defer calls.Done(); _ = l.ConsumeTraces(context.Background(), ptrace.NewTraces()) }()
				<-entered
			}
			probe := ptrace.NewTraces()
			probe.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty()
			if tc.release {
				time.AfterFunc(20*time.Millisecond, func() { gate <- struct{}{} })
			}
			err := l.ConsumeTraces(context.Background(), probe)
			close(gate)
			calls.Wait()
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if got := GRPCCode(err); got != tc.wantCode {
				t.Errorf("gRPC code %v, want %v", got, tc.wantCode)
			}
			if got := HTTPStatus(err); got != tc.wantHTTP {
				t.Errorf("HTTP status %d, want %d", got, tc.wantHTTP)
			}
			// Every slot is free again.
			for i := 0; i < tc.max; i++ {
				select {
				case l.sem <- struct{}{}:
				default:
					t.Fatalf("slot %d still held after every call returned", i)
				}
			}
		})
	}
}
