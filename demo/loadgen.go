package demo

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	alsdata "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// PodLog is the pre-generated traffic of one Envoy access logger: the
// identifier its streams open with and the batches that follow (without
// identifier).
type PodLog struct {
	Identifier *accesslogv3.StreamAccessLogsMessage_Identifier
	Messages   []*accesslogv3.StreamAccessLogsMessage
	Entries    int
}

// Pregenerate simulates requests ingress requests and packs each access
// logger's entries into messages of at most maxEntries entries (0 means 50).
// The result is ordered by pod and log name.
func (m *Mesh) Pregenerate(requests, maxEntries int) []PodLog {
	if maxEntries <= 0 {
		maxEntries = 50
	}
	type acc struct {
		http []*alsdata.HTTPAccessLogEntry
		tcp  []*alsdata.TCPAccessLogEntry
		log  PodLog
	}
	accs := map[streamKey]*acc{}
	get := func(k streamKey) *acc {
		a := accs[k]
		if a == nil {
			name := HTTPLogName
			if k.tcp {
				name = TCPLogName
			}
			a = &acc{log: PodLog{Identifier: &accesslogv3.StreamAccessLogsMessage_Identifier{Node: k.pod.Node(), LogName: name}}}
			accs[k] = a
		}
		return a
	}
	flush := func(a *acc) {
		switch {
		case len(a.http) > 0:
			a.log.Messages = append(a.log.Messages, &accesslogv3.StreamAccessLogsMessage{
				LogEntries: &accesslogv3.StreamAccessLogsMessage_HttpLogs{
					HttpLogs: &accesslogv3.StreamAccessLogsMessage_HTTPAccessLogEntries{LogEntry: a.http}}})
			a.log.Entries += len(a.http)
			a.http = nil
		case len(a.tcp) > 0:
			a.log.Messages = append(a.log.Messages, &accesslogv3.StreamAccessLogsMessage{
				LogEntries: &accesslogv3.StreamAccessLogsMessage_TcpLogs{
					TcpLogs: &accesslogv3.StreamAccessLogsMessage_TCPAccessLogEntries{LogEntry: a.tcp}}})
			a.log.Entries += len(a.tcp)
			a.tcp = nil
		}
	}
	for range requests {
		r := m.Simulate()
		for _, e := range r.Entries {
			a := get(streamKey{pod: e.Pod, tcp: e.TCP != nil})
			if e.TCP != nil {
				a.tcp = append(a.tcp, e.TCP)
			} else {
				a.http = append(a.http, e.HTTP)
			}
			if len(a.http)+len(a.tcp) >= maxEntries {
				flush(a)
			}
		}
	}
	var out []PodLog
	for _, p := range m.Pods() {
		for _, tcp := range []bool{false, true} {
			if a := accs[streamKey{p, tcp}]; a != nil {
				flush(a)
				out = append(out, a.log)
			}
		}
	}
	return out
}

// BlastConfig configures Blast.
type BlastConfig struct {
	// Addr is the ALS server's host:port.
	Addr string
	// Conns is the number of gRPC connections the streams are spread over,
	// as many Envoys would dial; 0 means 1.
	Conns int
	// Streams is the number of concurrent streams; 0 means 1. Stream i
	// replays logs[i%len(logs)], so streams beyond len(logs) act as more
	// replicas of the same Envoys.
	Streams int
	// Rate is the total messages per second over all streams; 0 means as
	// fast as the server takes them.
	Rate float64
	// Duration stops the blast after this long; 0 means until ctx ends or
	// MaxMessages are sent.
	Duration time.Duration
	// MaxMessages stops the blast after this many messages in total; 0
	// means no limit.
	MaxMessages int
	// ChunkMessages is how many messages a stream carries before the client
	// closes it and waits for the server's response; 0 means 100. That wait
	// is the only acknowledgement a client-streaming ALS client sees, and
	// its latency is what BlastResult reports.
	ChunkMessages int
}

// BlastResult is what a blast achieved.
type BlastResult struct {
	Messages uint64
	Entries  uint64
	// Chunks counts streams closed and acknowledged by the server.
	Chunks  uint64
	Errors  uint64
	Elapsed time.Duration
	// EntriesPerSecond is Entries / Elapsed.
	EntriesPerSecond float64
	// Ack latencies: time from CloseSend to the server's response.
	AckP50, AckP90, AckP99, AckMax time.Duration
	// FirstError is the first failure, if any.
	FirstError error
}

// String formats the result for benchmark logs.
func (r BlastResult) String() string {
	return fmt.Sprintf("%d entries in %d messages over %s (%.0f entries/s), %d chunks acked p50=%s p90=%s p99=%s max=%s, %d errors",
		r.Entries, r.Messages, r.Elapsed.Round(time.Millisecond), r.EntriesPerSecond, r.Chunks,
		r.AckP50, r.AckP90, r.AckP99, r.AckMax, r.Errors)
}

const maxAckSamples = 1 << 20

// Blast replays pre-generated access logs over cfg.Streams concurrent ALS
// streams, as fast as possible or at cfg.Rate, and measures throughput and
// stream acknowledgement latency. Messages are encoded once per stream
// worker, so the client spends its CPU on the wire rather than on protobuf.
// It returns an error only if nothing could be sent.
func Blast(ctx context.Context, cfg BlastConfig, logs []PodLog) (BlastResult, error) {
	var res BlastResult
	if cfg.Addr == "" {
		return res, errors.New("demo: blast needs an ALS address")
	}
	var usable []PodLog
	for _, l := range logs {
		if len(l.Messages) > 0 {
			usable = append(usable, l)
		}
	}
	if len(usable) == 0 {
		return res, errors.New("demo: blast has no messages to send")
	}
	if cfg.Streams <= 0 {
		cfg.Streams = 1
	}
	if cfg.ChunkMessages <= 0 {
		cfg.ChunkMessages = 100
	}
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}
	if cfg.Conns <= 0 {
		cfg.Conns = 1
	}
	clients := make([]accesslogv3.AccessLogServiceClient, min(cfg.Conns, cfg.Streams))
	for i := range clients {
		cc, err := grpc.NewClient(cfg.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return res, fmt.Errorf("demo: blast client for %s: %w", cfg.Addr, err)
		}
		defer cc.Close()
		clients[i] = accesslogv3.NewAccessLogServiceClient(cc)
	}

	var (
		mu     sync.Mutex
		acks   []time.Duration
		budget = int64(cfg.MaxMessages)
	)
	// take reserves one message from the global budget.
	take := func() bool {
		if cfg.MaxMessages <= 0 {
			return true
		}
		mu.Lock()
		defer mu.Unlock()
		if budget <= 0 {
			return false
		}
		budget--
		return true
	}
	record := func(w *blastWorker) {
		mu.Lock()
		defer mu.Unlock()
		res.Messages += w.messages
		res.Entries += w.entries
		res.Chunks += w.chunks
		res.Errors += w.errors
		if res.FirstError == nil {
			res.FirstError = w.firstErr
		}
		if room := maxAckSamples - len(acks); room > 0 {
			acks = append(acks, w.acks[:min(room, len(w.acks))]...)
		}
	}

	var interval time.Duration
	if cfg.Rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(cfg.Streams) / cfg.Rate)
	}
	start := time.Now()
	var wg sync.WaitGroup
	for i := range cfg.Streams {
		w := &blastWorker{log: usable[i%len(usable)], client: clients[i%len(clients)], chunk: cfg.ChunkMessages, interval: interval, take: take}
		// Spread the workers over the logs' messages so they do not all
		// send the same batch at once.
		w.next = i / len(usable) % len(w.log.Messages)
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(ctx)
			record(w)
		}()
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	if res.Elapsed > 0 {
		res.EntriesPerSecond = float64(res.Entries) / res.Elapsed.Seconds()
	}
	slices.Sort(acks)
	if n := len(acks); n > 0 {
		res.AckP50 = acks[(n-1)*50/100]
		res.AckP90 = acks[(n-1)*90/100]
		res.AckP99 = acks[(n-1)*99/100]
		res.AckMax = acks[n-1]
	}
	if res.Messages == 0 && res.FirstError != nil {
		return res, fmt.Errorf("demo: blast sent nothing: %w", res.FirstError)
	}
	return res, nil
}

type blastWorker struct {
	log      PodLog
	client   accesslogv3.AccessLogServiceClient
	chunk    int
	interval time.Duration
	take     func() bool
	next     int

	// Encoded once and reused on every stream (same codec, no compressor).
	plain, withID []*grpc.PreparedMsg

	messages, entries, chunks, errors uint64
	firstErr                          error
	acks                              []time.Duration
}

func (w *blastWorker) fail(err error) {
	w.errors++
	if w.firstErr == nil {
		w.firstErr = err
	}
}

func (w *blastWorker) prepared(s grpc.ClientStream, i int, first bool) (*grpc.PreparedMsg, error) {
	if w.plain == nil {
		w.plain = make([]*grpc.PreparedMsg, len(w.log.Messages))
		w.withID = make([]*grpc.PreparedMsg, len(w.log.Messages))
	}
	cache := w.plain
	if first {
		cache = w.withID
	}
	if cache[i] != nil {
		return cache[i], nil
	}
	msg := w.log.Messages[i]
	if first {
		msg = &accesslogv3.StreamAccessLogsMessage{Identifier: w.log.Identifier, LogEntries: msg.LogEntries}
	}
	pm := &grpc.PreparedMsg{}
	if err := pm.Encode(s, msg); err != nil {
		return nil, err
	}
	cache[i] = pm
	return pm, nil
}

func (w *blastWorker) run(ctx context.Context) {
	pace := time.Now()
	// Streams outlive ctx by a grace period so the last chunk is closed and
	// acknowledged rather than cancelled.
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stopGrace := context.AfterFunc(ctx, func() { time.AfterFunc(5*time.Second, cancel) })
	defer stopGrace()
	// reserve paces and budgets the next message; false means stop.
	reserve := func() bool {
		if ctx.Err() != nil || !w.take() {
			return false
		}
		if w.interval > 0 {
			pace = pace.Add(w.interval)
			if d := time.Until(pace); d > 0 {
				return sleepCtx(ctx, d)
			} else if d < -time.Second {
				pace = time.Now() // do not burst to catch up
			}
		}
		return true
	}
	for reserve() {
		// The stream is opened only once there is something to send, so
		// the server never sees an empty stream.
		stream, err := w.client.StreamAccessLogs(sctx)
		if err != nil {
			w.fail(err)
			sleepCtx(ctx, 100*time.Millisecond)
			continue
		}
		sent, sentEntries := 0, 0
		stop, sendFailed := false, false
		for {
			i := w.next
			w.next = (w.next + 1) % len(w.log.Messages)
			pm, err := w.prepared(stream, i, sent == 0)
			if err == nil {
				err = stream.SendMsg(pm)
			}
			if err != nil {
				w.fail(err)
				sendFailed = true
				break
			}
			sent++
			sentEntries += entryCount(w.log.Messages[i])
			if sent >= w.chunk {
				break
			}
			if !reserve() {
				stop = true
				break
			}
		}
		t0 := time.Now()
		_, err = stream.CloseAndRecv()
		ack := time.Since(t0)
		switch {
		case err != nil:
			if !sendFailed {
				w.fail(err)
			}
		case !sendFailed:
			w.chunks++
			w.messages += uint64(sent)
			w.entries += uint64(sentEntries)
			if len(w.acks) < maxAckSamples {
				w.acks = append(w.acks, ack)
			}
		}
		if stop {
			return
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
