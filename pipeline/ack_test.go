package pipeline

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshlens/meshlens/model"
)

func TestTrackerFollowsBatchesThroughTheQueue(t *testing.T) {
	tel := NewTelemetry(prometheus.NewRegistry())
	release := make(chan struct{})
	taken := make(chan struct{}, 8)
	sink := CallConsumerFunc(func(context.Context, []model.Call) error { taken <- struct{}{}; <-release; return nil })
	q := NewQueue(QueueConfig{Name: "t", Capacity: 1, Workers: 1}, tel, sink)
	q.Start()
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
		_ = q.Shutdown(context.Background())
	}()
	tr := NewTracker()
	ctx := WithTracker(context.Background(), tr)
	batch := make([]model.Call, 2)
	if err := q.ConsumeCalls(ctx, batch); err != nil {
		t.Fatal(err)
	}
	<-taken // the worker holds the first batch
	if err := q.ConsumeCalls(ctx, batch); err != nil {
		t.Fatal(err)
	}
	// The queue is now full: a refused batch must not stay pending.
	if err := q.ConsumeCalls(ctx, batch); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("third batch: %v, want ErrOverloaded", err)
	}
	short, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if err := tr.Wait(short); err == nil {
		t.Fatal("Wait returned while the stream's batches were still queued")
	}
	close(release)
	wctx, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	if err := tr.Wait(wctx); err != nil {
		t.Fatalf("Wait after the batches were handed on: %v", err)
	}
}

func TestDurableAckAnswersUnavailableOnBarrierFailure(t *testing.T) {
	used := NewTracker()
	used.add()
	used.done()
	d := NewDurableAck(nil, func(context.Context) error { return errors.New("no space left on device") }, time.Second, prometheus.NewRegistry())
	if err := d.Sync(context.Background(), NewTracker()); err != nil {
		t.Fatalf("a stream that enqueued nothing waited for the barrier: %v", err)
	}
	err := d.Sync(context.Background(), used)
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("barrier failure answered %v, want UNAVAILABLE", err)
	}
	d = NewDurableAck(nil, func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }, 20*time.Millisecond, prometheus.NewRegistry())
	if err := d.Sync(context.Background(), used); status.Code(err) != codes.Unavailable {
		t.Fatalf("barrier timeout answered %v, want UNAVAILABLE", err)
	}
}
