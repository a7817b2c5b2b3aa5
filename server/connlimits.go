package server

import (
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
)

// keepaliveParams are the gRPC server's connection limits: pings find
// dead peers (sidecars keep ALS streams open for hours), MaxConnectionIdle
// closes connections that hold no stream, MaxConnectionAge (when set)
// makes clients reconnect so that they spread over replicas.
func keepaliveParams(p PipelineConfig) keepalive.ServerParameters {
	kp := keepalive.ServerParameters{Time: 2 * time.Minute, Timeout: 20 * time.Second,
		MaxConnectionIdle: p.GRPCMaxConnectionIdle, MaxConnectionAge: p.GRPCMaxConnectionAge}
	if kp.MaxConnectionAge > 0 {
		kp.MaxConnectionAgeGrace = time.Minute
	}
	return kp
}

// streamIdle closes client-streaming RPCs (ALS, Metrics Service, mesh
// report) whose client has sent no message for timeout. gRPC keepalive
// only proves the connection is alive; a proxy that keeps a stream open
// and never writes would otherwise hold its stream, goroutine and
// per-stream state forever.
type streamIdle struct {
	timeout time.Duration
	setting string // the configuration key, named in the status message
}

// StreamInterceptor runs the handler in its own goroutine so that it can
// answer for the handler when the stream goes idle: returning ends the
// RPC with the status, and gRPC then cancels the stream, which unblocks
// the handler's pending Recv.
func (i streamIdle) StreamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if i.timeout <= 0 || !info.IsClientStream {
		return handler(srv, ss)
	}
	s := &idleStream{ServerStream: ss}
	s.last.Store(time.Now().UnixNano())
	done := make(chan error, 1)
	go func() { done <- handler(srv, s) }()
	// Check a few times per timeout: a stream is closed between 1 and
	// 1.25 timeouts after its last message.
	tick := time.NewTicker(max(i.timeout/4, time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			return err
		case <-ss.Context().Done():
			// The client went away; the handler's Recv fails and returns.
			return <-done
		case now := <-tick.C:
			if !s.waiting.Load() {
				continue // the handler is working, not waiting on the client
			}
			idle := now.Sub(time.Unix(0, s.last.Load()))
			if idle < i.timeout {
				continue
			}
			s.expire()
			return status.Errorf(codes.Unavailable,
				"%s: no message on this stream for %v (%s is %v); stream closed, open a new one to send more",
				info.FullMethod, idle.Round(time.Millisecond), i.setting, i.timeout)
		}
	}
}

// idleStream records when the client last sent a message, and refuses
// sends once the interceptor has answered for the handler (gRPC forbids
// SendMsg after the RPC ended).
type idleStream struct {
	grpc.ServerStream
	last    atomic.Int64 // UnixNano of the last Recv start or end
	waiting atomic.Bool  // inside RecvMsg
	mu      sync.Mutex
	expired bool
}

func (s *idleStream) RecvMsg(m any) error {
	s.last.Store(time.Now().UnixNano())
	s.waiting.Store(true)
	err := s.ServerStream.RecvMsg(m)
	s.waiting.Store(false)
	s.last.Store(time.Now().UnixNano())
	return err
}

func (s *idleStream) SendMsg(m any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.expired {
		return status.Error(codes.Unavailable, "stream closed as idle")
	}
	return s.ServerStream.SendMsg(m)
}

func (s *idleStream) expire() {
	s.mu.Lock()
	s.expired = true
	s.mu.Unlock()
}
