package pipeline

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/meshlens/meshlens/model"
)

// QueueConfig sizes a Queue.
type QueueConfig struct {
	// Name labels the queue's self-metrics.
	Name string
	// Capacity is the number of batches the queue holds before it refuses.
	Capacity int
	// Workers is the number of goroutines draining the queue.
	Workers int
	// EnqueueWait is how long a producer may wait for room before it is
	// refused with ErrOverloaded; it absorbs short bursts.
	EnqueueWait time.Duration
}

// Queue is a bounded queue of call batches between a receiver and the
// processors. It is the backpressure point of the pipeline: when full it
// refuses with ErrOverloaded instead of growing.
type Queue struct {
	cfg   QueueConfig
	procs []CallProcessor
	next  CallConsumer
	tel   *Telemetry

	mu     sync.RWMutex
	closed bool
	ch     chan queued
	wg     sync.WaitGroup
	// bufs recycles the batches' copies: neither processors nor consumers
	// keep a batch after their call returns.
	bufs sync.Pool // *[]model.Call
}

// maxKeptBuf is the most calls a recycled batch buffer holds.
const maxKeptBuf = 1 << 14

// queued is one batch with the tracker of the request that sent it.
type queued struct {
	calls []model.Call
	tr    *Tracker
}

// NewQueue returns a queue that runs procs in order on each batch and then
// hands it to next. Call Start before use.
func NewQueue(cfg QueueConfig, tel *Telemetry, next CallConsumer, procs ...CallProcessor) *Queue {
	if cfg.Capacity <= 0 {
		cfg.Capacity = 1
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 1
	}
	return &Queue{cfg: cfg, procs: procs, next: next, tel: tel, ch: make(chan queued, cfg.Capacity)}
}

// Start launches the workers. They stop when Shutdown has drained the queue.
func (q *Queue) Start() {
	for i := 0; i < q.cfg.Workers; i++ {
		q.wg.Add(1)
		go q.work()
	}
}

func (q *Queue) work() {
	defer q.wg.Done()
	// Workers are not tied to a request: a batch already accepted must be
	// processed even while the server is shutting down.
	ctx := context.Background()
	for item := range q.ch {
		batch := item.calls
		q.tel.queueDepth.WithLabelValues(q.cfg.Name).Set(float64(len(q.ch)))
		start := time.Now()
		for _, p := range q.procs {
			p.ProcessCalls(ctx, batch)
		}
		if err := q.next.ConsumeCalls(ctx, batch); err != nil {
			q.tel.dropped.WithLabelValues(q.cfg.Name, "consumer_error").Add(float64(len(batch)))
		}
		if item.tr != nil {
			item.tr.done()
		}
		if cap(batch) <= maxKeptBuf {
			clear(batch) // drop the strings the calls refer to
			batch = batch[:0]
			q.bufs.Put(&batch)
		}
		q.tel.stageLatency.WithLabelValues(q.cfg.Name).Observe(time.Since(start).Seconds())
	}
}

// ConsumeCalls copies calls into the queue. It waits at most EnqueueWait for
// room and then returns an error wrapping ErrOverloaded. When ctx carries a
// Tracker (see WithTracker), the tracker follows the batch until a worker
// has handed it to the next stage.
func (q *Queue) ConsumeCalls(ctx context.Context, calls []model.Call) (err error) {
	if len(calls) == 0 {
		return nil
	}
	item := queued{tr: TrackerFrom(ctx)}
	if buf, ok := q.bufs.Get().(*[]model.Call); ok {
		item.calls = append(*buf, calls...)
	} else {
		item.calls = append(make([]model.Call, 0, len(calls)), calls...)
	}

	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.closed {
		return fmt.Errorf("queue %s: %w", q.cfg.Name, ErrShuttingDown)
	}
	// Counted before the send so that a fast worker cannot finish the batch
	// first; undone if the batch is refused.
	if item.tr != nil {
		item.tr.add()
		defer func() {
			if err != nil {
				item.tr.done()
			}
		}()
	}
	select {
	case q.ch <- item:
		return nil
	default:
	}
	if q.cfg.EnqueueWait > 0 {
		t := time.NewTimer(q.cfg.EnqueueWait)
		defer t.Stop()
		select {
		case q.ch <- item:
			return nil
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return fmt.Errorf("queue %s is full (%d batches; raise pipeline.queue_capacity or add cores): %w",
		q.cfg.Name, q.cfg.Capacity, ErrOverloaded)
}

// Len is the number of batches waiting.
func (q *Queue) Len() int { return len(q.ch) }

// Shutdown stops accepting batches and waits until every accepted batch has
// been handed to the next stage, or ctx ends.
func (q *Queue) Shutdown(ctx context.Context) error {
	q.mu.Lock()
	if !q.closed {
		q.closed = true
		close(q.ch)
	}
	q.mu.Unlock()
	done := make(chan struct{})
	go func() { q.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("queue %s: %d batches not drained: %w", q.cfg.Name, len(q.ch), ctx.Err())
	}
}
