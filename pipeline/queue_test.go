package pipeline

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"

	"github.com/meshlens/meshlens/model"
)

func TestQueueRefusesWhenFullAndDrainsOnShutdown(t *testing.T) {
	tel := NewTelemetry(prometheus.NewRegistry())
	release := make(chan struct{})
	var got atomic.Int64
	sink := CallConsumerFunc(func(_ context.Context, calls []model.Call) error {
		<-release
		got.Add(int64(len(calls)))
		return nil
	})
	q := NewQueue(QueueConfig{Name: "t", Capacity: 2, Workers: 1, EnqueueWait: 10 * time.Millisecond}, tel, sink)
	q.Start()
	batch := make([]model.Call, 3)
	// One batch is taken by the blocked worker, two fill the queue.
	accepted := 0
	var refused error
	for i := 0; i < 10; i++ {
		if err := q.ConsumeCalls(context.Background(), batch); err != nil {
			refused = err
			break
		}
		accepted++
	}
	if refused == nil || !errors.Is(refused, ErrOverloaded) {
		t.Fatalf("full queue answered %v, want ErrOverloaded", refused)
	}
	if accepted < 2 || accepted > 3 {
		t.Fatalf("accepted %d batches into a queue of 2 with one worker", accepted)
	}
	if c := GRPCCode(refused); c != codes.ResourceExhausted {
		t.Errorf("overload maps to %v, want RESOURCE_EXHAUSTED", c)
	}
	if s := HTTPStatus(refused); s != 429 {
		t.Errorf("overload maps to HTTP %d, want 429", s)
	}
	close(release)
	if err := q.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := got.Load(); n != int64(accepted*3) {
		t.Errorf("drained %d calls, want every accepted one (%d)", n, accepted*3)
	}
	err := q.ConsumeCalls(context.Background(), batch)
	if !errors.Is(err, ErrShuttingDown) || GRPCCode(err) != codes.Unavailable {
		t.Errorf("after shutdown: %v (code %v), want ErrShuttingDown/UNAVAILABLE", err, GRPCCode(err))
	}
}

func TestQueueCopiesTheBatch(t *testing.T) {
	tel := NewTelemetry(prometheus.NewRegistry())
	var mu sync.Mutex
	var seen []string
	sink := CallConsumerFunc(func(_ context.Context, calls []model.Call) error {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range calls {
			seen = append(seen, c.Endpoint)
		}
		return nil
	})
	q := NewQueue(QueueConfig{Name: "t", Capacity: 8, Workers: 1}, tel, sink)
	q.Start()
	buf := []model.Call{{Endpoint: "a"}}
	if err := q.ConsumeCalls(context.Background(), buf); err != nil {
		t.Fatal(err)
	}
	buf[0].Endpoint = "changed by the receiver after handing over"
	if err := q.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1 || seen[0] != "a" {
		t.Errorf("queue saw %v: the receiver's reuse of its buffer leaked into the queue", seen)
	}
}

func TestErrorMapping(t *testing.T) {
	cases := []struct {
		err  error
		code codes.Code
		http int
	}{
		{nil, codes.OK, 200},
		{Permanentf("entry 3: no start_time"), codes.InvalidArgument, 400},
		{ErrOverloaded, codes.ResourceExhausted, 429},
		{ErrShuttingDown, codes.Unavailable, 503},
		{errors.New("disk full"), codes.Unavailable, 503},
		{context.DeadlineExceeded, codes.DeadlineExceeded, 503},
	}
	for _, c := range cases {
		if got := GRPCCode(c.err); got != c.code {
			t.Errorf("GRPCCode(%v) = %v, want %v", c.err, got, c.code)
		}
		if got := HTTPStatus(c.err); got != c.http {
			t.Errorf("HTTPStatus(%v) = %d, want %d", c.err, got, c.http)
		}
	}
}
