package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
)

// sender delivers one pre-encoded request and reports whether the server
// acknowledged it with success (gRPC OK, HTTP 2xx).
type sender interface {
	Send(ctx context.Context, body []byte) error
	Close()
}

// rawCodec sends bytes that are already a serialised protobuf message, so the
// load generator spends no CPU on encoding; replies are discarded.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }
func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}
func (rawCodec) Unmarshal(mem.BufferSlice, any) error { return nil }

type otlpGRPCSender struct{ cc *grpc.ClientConn }

func newOTLPGRPC(addr string) (*otlpGRPCSender, error) {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{})))
	if err != nil {
		return nil, err
	}
	return &otlpGRPCSender{cc: cc}, nil
}

func (s *otlpGRPCSender) Send(ctx context.Context, body []byte) error {
	var reply []byte
	return s.cc.Invoke(ctx, "/opentelemetry.proto.collector.trace.v1.TraceService/Export", &body, &reply)
}
func (s *otlpGRPCSender) Close() { _ = s.cc.Close() }

// httpSender POSTs bodies (Zipkin v2 JSON or OTLP/HTTP protobuf).
type httpSender struct {
	url, contentType string
	c                *http.Client
}

func newHTTPSender(url, contentType string, conns int) *httpSender {
	tr := &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns, IdleConnTimeout: time.Minute}
	return &httpSender{url: url, contentType: contentType, c: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

func (s *httpSender) Send(ctx context.Context, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", s.contentType)
	resp, err := s.c.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return nil
}
func (s *httpSender) Close() { s.c.CloseIdleConnections() }

// sentRef identifies an acknowledged request: which payload and which send
// sequence, from which its trace ids can be recomputed (SentID).
type sentRef struct {
	Payload int
	Seq     uint64
	At      time.Time // send time its span times were shifted to; zero if not shifted
}

// openLoop drives payloads at a fixed rate. The schedule does not wait for
// answers (open loop), but at most maxInflight requests are outstanding: a
// request due while the bound is reached is not sent and counts as offered
// but not accepted, so an overloaded server shows up as lost throughput and
// cannot slow the generator down (no coordinated omission).
type openLoop struct {
	snd         sender
	payloads    []*payload
	maxInflight int
	seq         *atomic.Uint64
	next        int // next payload index
	// shift moves every send's span times to the send time (payload.Stamp)
	// rather than replaying the template's.
	shift bool
	// record, when set, receives every acknowledged request.
	record func(sentRef)
}

type stepResult struct {
	OfferedItems, AcceptedItems int
	Latencies                   []time.Duration
	Errors, Skipped             int
	FirstErr                    error
	Elapsed                     time.Duration
}

// run offers rate items/s for d; rate 0 means as fast as maxInflight allows
// (closed loop), and maxItems > 0 stops after that many items are offered.
func (l *openLoop) run(ctx context.Context, rate float64, d time.Duration, maxItems int) stepResult {
	avg := 0.0
	for _, p := range l.payloads {
		avg += float64(p.Spans)
	}
	avg /= float64(len(l.payloads))
	var interval time.Duration
	if rate > 0 {
		interval = time.Duration(float64(time.Second) * avg / rate)
	}
	var (
		mu  sync.Mutex
		res stepResult
		wg  sync.WaitGroup
	)
	sem := make(chan struct{}, l.maxInflight)
	bufs := sync.Pool{New: func() any { return new([]byte) }}
	start := time.Now()
	end := start.Add(d)
	if d <= 0 {
		end = start.Add(24 * time.Hour)
	}
	for i := 0; ; i++ {
		if maxItems > 0 && res.OfferedItems >= maxItems {
			break
		}
		if ctx.Err() != nil {
			break
		}
		if interval > 0 {
			due := start.Add(time.Duration(i) * interval)
			if !due.Before(end) {
				break
			}
			if w := time.Until(due); w > 0 {
				time.Sleep(w)
			}
		} else if d > 0 && time.Now().After(end) {
			break
		}
		pi := l.next
		l.next = (l.next + 1) % len(l.payloads)
		p := l.payloads[pi]
		mu.Lock()
		res.OfferedItems += p.Spans
		mu.Unlock()
		if interval > 0 {
			select {
			case sem <- struct{}{}:
			default:
				mu.Lock()
				res.Skipped++
				mu.Unlock()
				continue
			}
		} else {
			sem <- struct{}{}
		}
		seq := l.seq.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			bp := bufs.Get().(*[]byte)
			var at time.Time
			if l.shift {
				at = time.Now()
			}
			*bp = p.Stamp(*bp, seq, at)
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			t0 := time.Now()
			err := l.snd.Send(cctx, *bp)
			lat := time.Since(t0)
			cancel()
			bufs.Put(bp)
			mu.Lock()
			if err != nil {
				res.Errors++
				if res.FirstErr == nil {
					res.FirstErr = err
				}
			} else {
				res.AcceptedItems += p.Spans
				res.Latencies = append(res.Latencies, lat)
			}
			mu.Unlock()
			if err == nil && l.record != nil {
				l.record(sentRef{Payload: pi, Seq: seq, At: at})
			}
		}()
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	if rate > 0 && d > 0 {
		res.Elapsed = d // offered and accepted are per scheduled second
	}
	return res
}

var errNoPayloads = errors.New("no payloads")
