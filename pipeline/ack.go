package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Tracker follows the batches one request (an ALS stream) handed to a
// Queue until the queue's workers have passed them to the next stage. A
// receiver never sees it: it travels in the request's context, and
// Queue.ConsumeCalls picks it up.
type Tracker struct {
	mu      sync.Mutex
	pending int
	used    bool          // a batch was ever enqueued
	idle    chan struct{} // closed while pending == 0
}

// NewTracker returns a tracker with nothing pending.
func NewTracker() *Tracker {
	ch := make(chan struct{})
	close(ch)
	return &Tracker{idle: ch}
}

func (t *Tracker) add() {
	t.mu.Lock()
	if t.pending == 0 {
		t.idle = make(chan struct{})
	}
	t.pending++
	t.used = true
	t.mu.Unlock()
}

// Used reports whether a batch was ever enqueued under t (one that was
// then refused counts too: its stream fails anyway).
func (t *Tracker) Used() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.used
}

func (t *Tracker) done() {
	t.mu.Lock()
	t.pending--
	if t.pending == 0 {
		close(t.idle)
	}
	t.mu.Unlock()
}

// Wait returns once every batch tracked so far has been handed on, or ctx
// ends.
func (t *Tracker) Wait(ctx context.Context) error {
	t.mu.Lock()
	ch := t.idle
	t.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

type trackerKey struct{}

// WithTracker returns a context whose batches t follows.
func WithTracker(ctx context.Context, t *Tracker) context.Context {
	return context.WithValue(ctx, trackerKey{}, t)
}

// TrackerFrom returns the tracker of ctx, or nil.
func TrackerFrom(ctx context.Context) *Tracker {
	t, _ := ctx.Value(trackerKey{}).(*Tracker)
	return t
}

// DurableAck makes the acknowledgement of client-streaming gRPC calls mean
// "in storage": when the client closes its side of a stream, the server's
// answer waits until every batch the stream enqueued has been processed and
// Barrier has returned (for call records: an aggregator flush that includes
// them has committed to the TSDB WAL). If that takes longer than Timeout, or
// Barrier fails (storage error, disk full), the stream ends with UNAVAILABLE
// so that the client keeps its data and retries.
type DurableAck struct {
	// Methods are the full gRPC method names the barrier applies to.
	Methods map[string]bool
	// Barrier commits everything handed on so far; see redmetrics.Aggregator.Sync.
	Barrier func(ctx context.Context) error
	// Timeout bounds the wait at the end of a stream.
	Timeout time.Duration

	wait     prometheus.Histogram
	failures *prometheus.CounterVec
}

// NewDurableAck returns the interceptor's state with its self-metrics
// registered on reg.
func NewDurableAck(methods []string, barrier func(ctx context.Context) error, timeout time.Duration, reg prometheus.Registerer) *DurableAck {
	d := &DurableAck{
		Methods: map[string]bool{},
		Barrier: barrier,
		Timeout: timeout,
		wait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "meshlens_durable_ack_wait_seconds",
			Help:    "Time a stream's acknowledgement waited for its data to reach storage.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 9),
		}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_durable_ack_failures_total",
			Help: "Streams answered UNAVAILABLE because their data did not reach storage in time (timeout) or storage failed (error).",
		}, []string{"reason"}),
	}
	for _, m := range methods {
		d.Methods[m] = true
	}
	reg.MustRegister(d.wait, d.failures)
	return d
}

// StreamInterceptor is the grpc.StreamServerInterceptor to install.
func (d *DurableAck) StreamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if !d.Methods[info.FullMethod] {
		return handler(srv, ss)
	}
	tr := NewTracker()
	return handler(srv, &durableStream{ServerStream: ss, ctx: WithTracker(ss.Context(), tr), tr: tr, d: d})
}

// Sync waits for tr's batches and the barrier, bounded by Timeout.
func (d *DurableAck) Sync(ctx context.Context, tr *Tracker) error {
	if !tr.Used() {
		return nil // nothing of this stream to make durable: no forced flush
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.Timeout)
	defer cancel()
	err := tr.Wait(ctx)
	if err == nil {
		err = d.Barrier(ctx)
	}
	d.wait.Observe(time.Since(start).Seconds())
	if err == nil {
		return nil
	}
	reason := "error"
	if errors.Is(err, context.DeadlineExceeded) {
		reason = "timeout"
	}
	d.failures.WithLabelValues(reason).Inc()
	return status.Error(codes.Unavailable, fmt.Sprintf(
		"meshlens: the stream's records did not reach storage (%v); nothing was acknowledged, retry", err))
}

// durableStream delays the end of the client's stream (io.EOF from
// RecvMsg) until the stream's data is durable, so that the handler's
// SendAndClose, the acknowledgement, follows it.
type durableStream struct {
	grpc.ServerStream
	ctx context.Context
	tr  *Tracker
	d   *DurableAck
}

func (s *durableStream) Context() context.Context { return s.ctx }

func (s *durableStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if errors.Is(err, io.EOF) {
		if serr := s.d.Sync(s.ctx, s.tr); serr != nil {
			return serr
		}
	}
	return err
}
