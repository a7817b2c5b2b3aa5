package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	alsdata "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	zipkin "github.com/openzipkin/zipkin-go/model"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
)

// Config configures Run.
type Config struct {
	// ALSAddr is the host:port of an Envoy ALS v3 gRPC server; "" disables
	// access logs.
	ALSAddr string
	// ZipkinURL is the base URL of a Zipkin collector (spans go to
	// <ZipkinURL>/api/v2/spans); "" disables spans.
	ZipkinURL string
	// Rate is the number of requests per second entering the mesh; 0 means 10.
	Rate float64
	// Seed makes the traffic reproducible.
	Seed int64
	// TraceSampling is the fraction (0..1] of requests that send spans; 0
	// means 1.
	TraceSampling float64

	// Clock stamps the simulated traffic and drives the incidents; nil means
	// time.Now. Pacing always follows the real clock.
	Clock func() time.Time
	// FlushInterval is how often each Envoy flushes its access log buffer;
	// 0 means 100 ms. A buffer is also flushed when it reaches 16 KiB, as
	// Envoy's buffer_size_bytes default.
	FlushInterval time.Duration
}

// Stats counts what a Generator has done. Entries and spans count as sent
// once written to the stream or accepted by the collector.
type Stats struct {
	Requests       uint64 // simulated ingress requests
	EntriesSent    uint64 // ALS entries written to a stream
	MessagesSent   uint64 // ALS messages written to a stream
	StreamsOpened  uint64 // ALS streams opened, reconnects included
	SpansSent      uint64 // spans the collector accepted
	EntriesDropped uint64 // entries lost to a failed or full stream
	SpansDropped   uint64 // spans lost to a failed POST or full queue
	Errors         uint64 // failed stream opens, sends and POSTs
}

const (
	alsBufferBytes   = 16 << 10 // Envoy's default buffer_size_bytes
	alsQueueMessages = 64       // per stream, between generator and sender
	spanFlush        = time.Second
	spanBatchMax     = 500
	zipkinQueue      = 64
	zipkinWorkers    = 2
	shutdownGrace    = 5 * time.Second
	maxBackoff       = 30 * time.Second
	failureLogEvery  = time.Minute
	statsLogEvery    = time.Minute
)

// Generator runs the Bookinfo demo against real endpoints.
type Generator struct {
	cfg  Config
	log  *slog.Logger
	mesh *Mesh

	requests, entriesSent, messagesSent, streamsOpened atomic.Uint64
	spansSent, entriesDropped, spansDropped, errs      atomic.Uint64

	limiter logLimiter
	started atomic.Bool
}

// NewGenerator validates cfg and returns a generator ready to Run.
func NewGenerator(cfg Config, logger *slog.Logger) (*Generator, error) {
	if cfg.ALSAddr == "" && cfg.ZipkinURL == "" {
		return nil, errors.New("demo: neither ALSAddr nor ZipkinURL is set, nothing to send to")
	}
	if cfg.Rate < 0 {
		return nil, fmt.Errorf("demo: negative rate %g", cfg.Rate)
	}
	if cfg.Rate == 0 {
		cfg.Rate = 10
	}
	if cfg.TraceSampling < 0 || cfg.TraceSampling > 1 {
		return nil, fmt.Errorf("demo: trace sampling %g is outside 0..1", cfg.TraceSampling)
	}
	if cfg.TraceSampling == 0 {
		cfg.TraceSampling = 1
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = 100 * time.Millisecond
	}
	if cfg.ZipkinURL != "" && !strings.HasPrefix(cfg.ZipkinURL, "http://") && !strings.HasPrefix(cfg.ZipkinURL, "https://") {
		return nil, fmt.Errorf("demo: zipkin URL %q is not an http(s) URL", cfg.ZipkinURL)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m := NewMesh(cfg.Seed, cfg.Clock)
	m.SetTraceSampling(cfg.TraceSampling)
	return &Generator{cfg: cfg, log: logger, mesh: m}, nil
}

// Run is NewGenerator(cfg, logger).Run(ctx).
func Run(ctx context.Context, cfg Config, logger *slog.Logger) error {
	g, err := NewGenerator(cfg, logger)
	if err != nil {
		return err
	}
	return g.Run(ctx)
}

// Stats returns the counters so far; safe to call while Run runs.
func (g *Generator) Stats() Stats {
	return Stats{
		Requests:       g.requests.Load(),
		EntriesSent:    g.entriesSent.Load(),
		MessagesSent:   g.messagesSent.Load(),
		StreamsOpened:  g.streamsOpened.Load(),
		SpansSent:      g.spansSent.Load(),
		EntriesDropped: g.entriesDropped.Load(),
		SpansDropped:   g.spansDropped.Load(),
		Errors:         g.errs.Load(),
	}
}

// streamKey names one Envoy access logger: a pod has one for HTTP and, if it
// proxies TCP, one for TCP, each with its own stream as in Envoy.
type streamKey struct {
	pod *Pod
	tcp bool
}

// alsBuffer is one logger's entries waiting for the next flush.
type alsBuffer struct {
	http  []*alsdata.HTTPAccessLogEntry
	tcp   []*alsdata.TCPAccessLogEntry
	bytes int
	ch    chan *accesslogv3.StreamAccessLogsMessage
}

// Run sends traffic until ctx ends, then flushes what is buffered (for at
// most a few seconds) and returns nil. A Generator runs once. Stream and collector failures are
// retried and logged, never returned.
func (g *Generator) Run(ctx context.Context) error {
	if g.started.Swap(true) {
		return errors.New("demo: a Generator runs only once")
	}
	// Senders outlive ctx a little so the last flush is delivered.
	sendCtx, cancelSend := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSend()

	var wg sync.WaitGroup
	conns := map[*Pod]*grpc.ClientConn{}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	buffers := map[streamKey]*alsBuffer{}
	if g.cfg.ALSAddr != "" {
		for _, p := range g.mesh.Pods() {
			// One connection per Envoy, as each sidecar dials on its own.
			cc, err := grpc.NewClient(g.cfg.ALSAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				return fmt.Errorf("demo: ALS client for %s: %w", g.cfg.ALSAddr, err)
			}
			conns[p] = cc
			for _, k := range []streamKey{{p, false}, {p, true}} {
				if (!k.tcp && !p.httpLogs) || (k.tcp && !p.tcpLogs) {
					continue
				}
				b := &alsBuffer{ch: make(chan *accesslogv3.StreamAccessLogsMessage, alsQueueMessages)}
				buffers[k] = b
				wg.Add(1)
				go func() {
					defer wg.Done()
					g.sendALS(sendCtx, accesslogv3.NewAccessLogServiceClient(cc), k, b.ch)
				}()
			}
		}
	}

	spanBufs := map[*Pod][]zipkin.SpanModel{}
	var spanCh chan []zipkin.SpanModel
	if g.cfg.ZipkinURL != "" {
		spanCh = make(chan []zipkin.SpanModel, zipkinQueue)
		client := &http.Client{Timeout: 10 * time.Second}
		url := strings.TrimSuffix(g.cfg.ZipkinURL, "/") + "/api/v2/spans"
		for range zipkinWorkers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for batch := range spanCh {
					g.postSpans(sendCtx, client, url, batch)
				}
			}()
		}
	}

	flushALS := func(k streamKey, b *alsBuffer) {
		if len(b.http) == 0 && len(b.tcp) == 0 {
			return
		}
		msg := &accesslogv3.StreamAccessLogsMessage{}
		n := len(b.http)
		if k.tcp {
			n = len(b.tcp)
			msg.LogEntries = &accesslogv3.StreamAccessLogsMessage_TcpLogs{
				TcpLogs: &accesslogv3.StreamAccessLogsMessage_TCPAccessLogEntries{LogEntry: b.tcp}}
		} else {
			msg.LogEntries = &accesslogv3.StreamAccessLogsMessage_HttpLogs{
				HttpLogs: &accesslogv3.StreamAccessLogsMessage_HTTPAccessLogEntries{LogEntry: b.http}}
		}
		b.http, b.tcp, b.bytes = nil, nil, 0
		select {
		case b.ch <- msg:
		default:
			// The stream cannot keep up; Envoy drops too rather than block
			// the data path.
			g.entriesDropped.Add(uint64(n))
		}
	}
	flushSpans := func(p *Pod) {
		batch := spanBufs[p]
		if len(batch) == 0 {
			return
		}
		spanBufs[p] = nil
		select {
		case spanCh <- batch:
		default:
			g.spansDropped.Add(uint64(len(batch)))
		}
	}
	flushAll := func() {
		for k, b := range buffers {
			flushALS(k, b)
		}
		for p := range spanBufs {
			flushSpans(p)
		}
	}

	tick := min(g.cfg.FlushInterval/4, 20*time.Millisecond)
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	start := time.Now()
	lastALS, lastSpans, lastReport := start, start, start
	next := start
	mean := float64(time.Second) / g.cfg.Rate
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case now := <-ticker.C:
			if now.Sub(next) > time.Second {
				// Far behind (machine busy): skip rather than burst.
				next = now
			}
			for !next.After(now) {
				if ctx.Err() != nil {
					// A slow machine may be far behind; stop promptly.
					break loop
				}
				g.emit(g.mesh.Simulate(), buffers, spanBufs, flushALS, flushSpans)
				next = next.Add(time.Duration(g.mesh.rng.ExpFloat64() * mean))
			}
			if now.Sub(lastALS) >= g.cfg.FlushInterval {
				for k, b := range buffers {
					flushALS(k, b)
				}
				lastALS = now
			}
			if now.Sub(lastReport) >= statsLogEvery {
				g.logStats("demo traffic")
				lastReport = now
			}
			if now.Sub(lastSpans) >= spanFlush {
				for p := range spanBufs {
					flushSpans(p)
				}
				lastSpans = now
			}
		}
	}

	flushAll()
	for _, b := range buffers {
		close(b.ch)
	}
	if spanCh != nil {
		close(spanCh)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(shutdownGrace):
		cancelSend()
		<-done
	}
	g.logStats("demo stopped")
	return nil
}

func (g *Generator) logStats(msg string) {
	st := g.Stats()
	g.log.Info(msg, "requests", st.Requests, "entries_sent", st.EntriesSent, "spans_sent", st.SpansSent,
		"streams_opened", st.StreamsOpened, "entries_dropped", st.EntriesDropped, "spans_dropped", st.SpansDropped,
		"errors", st.Errors)
}

func (g *Generator) emit(r *Request, buffers map[streamKey]*alsBuffer, spanBufs map[*Pod][]zipkin.SpanModel,
	flushALS func(streamKey, *alsBuffer), flushSpans func(*Pod)) {
	g.requests.Add(1)
	if len(buffers) > 0 {
		for _, e := range r.Entries {
			k := streamKey{pod: e.Pod, tcp: e.TCP != nil}
			b := buffers[k]
			if b == nil {
				continue
			}
			if e.TCP != nil {
				b.tcp = append(b.tcp, e.TCP)
				b.bytes += proto.Size(e.TCP)
			} else {
				b.http = append(b.http, e.HTTP)
				b.bytes += proto.Size(e.HTTP)
			}
			if b.bytes >= alsBufferBytes {
				flushALS(k, b)
			}
		}
	}
	if g.cfg.ZipkinURL != "" {
		for _, s := range r.Spans {
			spanBufs[s.Pod] = append(spanBufs[s.Pod], s.Model)
			if len(spanBufs[s.Pod]) >= spanBatchMax {
				flushSpans(s.Pod)
			}
		}
	}
}

// sendALS owns one Envoy access logger's stream: it opens the stream on the
// first batch, puts the identifier on the first message of every stream, and
// reopens with backoff after a failure, dropping what arrives meanwhile.
func (g *Generator) sendALS(ctx context.Context, client accesslogv3.AccessLogServiceClient, k streamKey,
	ch <-chan *accesslogv3.StreamAccessLogsMessage) {
	logName := HTTPLogName
	if k.tcp {
		logName = TCPLogName
	}
	ident := &accesslogv3.StreamAccessLogsMessage_Identifier{Node: k.pod.Node(), LogName: logName}
	var (
		stream    grpc.ClientStreamingClient[accesslogv3.StreamAccessLogsMessage, accesslogv3.StreamAccessLogsResponse]
		cancel    context.CancelFunc = func() {}
		first     bool
		backoff   = 100 * time.Millisecond
		retryAt   time.Time
		streamErr = func(err error) {
			g.errs.Add(1)
			g.limiter.warn(g.log, "als", "demo: ALS stream failed; retrying with backoff",
				"addr", g.cfg.ALSAddr, "node", k.pod.NodeID(), "log_name", logName, "err", err)
			retryAt = time.Now().Add(backoff)
			backoff = min(backoff*2, maxBackoff)
		}
	)
	defer func() { cancel() }()
	for msg := range ch {
		n := uint64(entryCount(msg))
		if stream == nil {
			if time.Now().Before(retryAt) || ctx.Err() != nil {
				g.entriesDropped.Add(n)
				continue
			}
			var err error
			stream, cancel, err = openALS(ctx, client)
			if err != nil {
				g.entriesDropped.Add(n)
				streamErr(err)
				continue
			}
			g.streamsOpened.Add(1)
			first = true
		}
		if first {
			msg.Identifier = ident
		}
		if err := stream.Send(msg); err != nil {
			if errors.Is(err, io.EOF) {
				// The server ended the stream; its status says why.
				_, err = stream.CloseAndRecv()
				if err == nil {
					err = errors.New("server closed the stream")
				}
			}
			cancel()
			stream = nil
			g.entriesDropped.Add(n)
			if ctx.Err() == nil {
				streamErr(err)
			}
			continue
		}
		first = false
		backoff = 100 * time.Millisecond
		g.entriesSent.Add(n)
		g.messagesSent.Add(1)
	}
	if stream != nil {
		if _, err := stream.CloseAndRecv(); err != nil && ctx.Err() == nil {
			g.limiter.warn(g.log, "als-close", "demo: closing ALS stream", "node", k.pod.NodeID(), "err", err)
		}
	}
}

func openALS(ctx context.Context, client accesslogv3.AccessLogServiceClient) (
	grpc.ClientStreamingClient[accesslogv3.StreamAccessLogsMessage, accesslogv3.StreamAccessLogsResponse], context.CancelFunc, error) {
	sctx, cancel := context.WithCancel(ctx)
	s, err := client.StreamAccessLogs(sctx)
	if err != nil {
		cancel()
		return nil, func() {}, err
	}
	return s, cancel, nil
}

func entryCount(m *accesslogv3.StreamAccessLogsMessage) int {
	return len(m.GetHttpLogs().GetLogEntry()) + len(m.GetTcpLogs().GetLogEntry())
}

// postSpans sends one Envoy's batch of spans as Zipkin v2 JSON.
func (g *Generator) postSpans(ctx context.Context, client *http.Client, url string, batch []zipkin.SpanModel) {
	err := func() error {
		body, err := json.Marshal(batch)
		if err != nil {
			return fmt.Errorf("encoding spans: %w", err)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("POST %s: %s: %s", url, resp.Status, strings.TrimSpace(string(msg)))
		}
		return nil
	}()
	if err != nil {
		g.spansDropped.Add(uint64(len(batch)))
		if ctx.Err() != nil {
			return // the shutdown grace ran out; not the collector's fault
		}
		g.errs.Add(1)
		g.limiter.warn(g.log, "zipkin", "demo: sending spans failed", "url", url, "spans", len(batch), "err", err)
		return
	}
	g.spansSent.Add(uint64(len(batch)))
}

// logLimiter logs each kind of failure at most once per minute, with the
// number of occurrences it kept quiet about.
type logLimiter struct {
	mu         sync.Mutex
	last       map[string]time.Time
	suppressed map[string]int
}

func (l *logLimiter) warn(log *slog.Logger, key, msg string, args ...any) {
	l.mu.Lock()
	if l.last == nil {
		l.last, l.suppressed = map[string]time.Time{}, map[string]int{}
	}
	now := time.Now()
	if t, ok := l.last[key]; ok && now.Sub(t) < failureLogEvery {
		l.suppressed[key]++
		l.mu.Unlock()
		return
	}
	n := l.suppressed[key]
	l.last[key], l.suppressed[key] = now, 0
	l.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed_since_last_log", n)
	}
	log.Warn(msg, args...)
}
