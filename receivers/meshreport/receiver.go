package meshreport

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/meshlens/meshlens/model"
	"github.com/meshlens/meshlens/pipeline"
	"github.com/meshlens/meshlens/receivers/meshreport/meshpb"
)

// Config bounds what one stream may send. Message size is bounded by the
// gRPC server's MaxRecvMsgSize, which the server package sets.
type Config struct {
	// MaxMetricsPerMessage is the largest batch accepted in one stream
	// message; a larger message is refused whole (counted and logged, the
	// stream goes on). Default 10000.
	MaxMetricsPerMessage int
}

func (c Config) withDefaults() Config {
	if c.MaxMetricsPerMessage <= 0 {
		c.MaxMetricsPerMessage = 10000
	}
	return c
}

// Receiver serves skywalking.v3.ServiceMeshMetricService.
type Receiver struct {
	meshpb.UnimplementedServiceMeshMetricServiceServer

	cfg    Config
	next   pipeline.CallConsumer
	tel    *pipeline.ReceiverTelemetry
	logger *slog.Logger
	now    func() time.Time
	warns  pipeline.LogThrottle
}

// New returns a receiver that hands every stream message's calls to next.
// tel may be nil in tests that do not look at self-metrics; logger may be
// nil to discard logs.
func New(cfg Config, next pipeline.CallConsumer, tel *pipeline.Telemetry, logger *slog.Logger) *Receiver {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	r := &Receiver{
		cfg:    cfg.withDefaults(),
		next:   next,
		logger: logger.With("receiver", "meshreport"),
		now:    time.Now,
		warns:  pipeline.LogThrottle{Interval: 10 * time.Second},
	}
	if tel != nil {
		r.tel = tel.Receiver("meshreport", "grpc")
	}
	return r
}

// Register adds the service to s.
func (r *Receiver) Register(s *grpc.Server) {
	meshpb.RegisterServiceMeshMetricServiceServer(s, r)
}

// Collect reads the stream to its end. Each message's valid metrics go to
// the next stage as one batch; invalid ones (and a whole message over
// Config.MaxMetricsPerMessage, or a legacy metric that does not decode) are
// counted, logged with the field at fault, and skipped; an empty message is
// ignored. A pipeline error ends the stream with the status
// pipeline.GRPCStatus gives it, so the probe knows whether to retry.
func (r *Receiver) Collect(stream grpc.ClientStreamingServer[meshpb.ServiceMeshMetrics, meshpb.MeshProbeDownstream]) error {
	ctx := stream.Context()
	var calls []model.Call
	for {
		// Received as raw bytes (every field of an Empty is unknown, so
		// nothing is checked but the wire format) and decoded here, so
		// that invalid UTF-8 in one name loses neither the batch nor the
		// stream; see unmarshalLenient.
		var raw emptypb.Empty
		err := stream.RecvMsg(&raw)
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&meshpb.MeshProbeDownstream{})
		}
		if err != nil {
			return err
		}
		msg := new(meshpb.ServiceMeshMetrics)
		replaced, err := unmarshalLenient(raw.ProtoReflect().GetUnknown(), msg)
		if err != nil {
			r.refused(1, "malformed")
			if ok, n := r.warns.Allow(r.now()); ok {
				r.logger.Warn("refused stream message", "error", err, "warnings_suppressed", n)
			}
			continue
		}
		if replaced > 0 {
			if ok, n := r.warns.Allow(r.now()); ok {
				r.logger.Warn("replaced invalid UTF-8 with U+FFFD", "strings", replaced, "warnings_suppressed", n)
			}
		}
		calls, err = r.convert(msg, calls[:0])
		if err != nil {
			// One unusable message does not end the stream: the probe
			// cannot fix it by retrying, and later messages may be fine.
			r.refused(max(1, countMetrics(msg)), "malformed")
			if ok, n := r.warns.Allow(r.now()); ok {
				r.logger.Warn("refused stream message", "error", err, "warnings_suppressed", n)
			}
			continue
		}
		if len(calls) == 0 {
			continue
		}
		if err := r.next.ConsumeCalls(ctx, calls); err != nil {
			if r.tel != nil {
				r.tel.RefusedErr(len(calls), err)
			}
			return pipeline.GRPCStatus(fmt.Errorf("meshreport: %w", err))
		}
		if r.tel != nil {
			r.tel.Accepted(len(calls))
		}
	}
}

func (r *Receiver) refused(n int, reason string) {
	if r.tel != nil && n > 0 {
		r.tel.Refused(n, reason)
	}
}

// convert appends the valid calls of msg to calls. It fails only when the
// message as a whole is unusable; invalid metrics are skipped and logged.
func (r *Receiver) convert(msg *meshpb.ServiceMeshMetrics, calls []model.Call) ([]model.Call, error) {
	now := r.now()
	var (
		bad      int
		firstErr error
	)
	note := func(i int, err error) {
		bad++
		if firstErr == nil {
			firstErr = fmt.Errorf("metric %d: %w", i, err)
		}
	}
	switch {
	case msg.GetHttpMetrics() != nil:
		ms := msg.GetHttpMetrics().GetMetrics()
		if len(ms) > r.cfg.MaxMetricsPerMessage {
			return calls, fmt.Errorf("httpMetrics holds %d metrics, more than the limit of %d", len(ms), r.cfg.MaxMetricsPerMessage)
		}
		for i, m := range ms {
			calls = append(calls, model.Call{})
			if err := convertHTTP(m, now, &calls[len(calls)-1]); err != nil {
				calls = calls[:len(calls)-1]
				note(i, err)
			}
		}
	case msg.GetTcpMetrics() != nil:
		ms := msg.GetTcpMetrics().GetMetrics()
		if len(ms) > r.cfg.MaxMetricsPerMessage {
			return calls, fmt.Errorf("tcpMetrics holds %d metrics, more than the limit of %d", len(ms), r.cfg.MaxMetricsPerMessage)
		}
		for i, m := range ms {
			calls = append(calls, model.Call{})
			if err := convertTCP(m, now, &calls[len(calls)-1]); err != nil {
				calls = calls[:len(calls)-1]
				note(i, err)
			}
		}
	default:
		legacy, err := legacyMetric(msg)
		if err != nil {
			return calls, err
		}
		if legacy == nil {
			// An empty message carries nothing; it is not an error.
			return calls, nil
		}
		calls = append(calls, model.Call{})
		if err := convertHTTP(legacy, now, &calls[len(calls)-1]); err != nil {
			calls = calls[:len(calls)-1]
			note(0, err)
		}
	}
	if bad > 0 {
		r.refused(bad, "malformed")
		if ok, n := r.warns.Allow(now); ok {
			r.logger.Warn("skipped invalid service mesh metrics", "invalid", bad, "kept", len(calls),
				"first_error", firstErr, "warnings_suppressed", n)
		}
	}
	return calls, nil
}

// Convert decodes one stream message into calls, skipping invalid metrics.
// It returns the calls kept and one error per skipped metric (naming the
// field at fault), or a single error when the message itself is unusable.
// It is what Collect does per message, exposed for tools and tests.
func Convert(msg *meshpb.ServiceMeshMetrics, now time.Time) ([]model.Call, []error) {
	var (
		calls []model.Call
		errs  []error
	)
	add := func(i int, conv func(*model.Call) error) {
		var c model.Call
		if err := conv(&c); err != nil {
			errs = append(errs, fmt.Errorf("metric %d: %w", i, err))
			return
		}
		calls = append(calls, c)
	}
	switch {
	case msg.GetHttpMetrics() != nil:
		for i, m := range msg.GetHttpMetrics().GetMetrics() {
			add(i, func(c *model.Call) error { return convertHTTP(m, now, c) })
		}
	case msg.GetTcpMetrics() != nil:
		for i, m := range msg.GetTcpMetrics().GetMetrics() {
			add(i, func(c *model.Call) error { return convertTCP(m, now, c) })
		}
	default:
		legacy, err := legacyMetric(msg)
		if err != nil {
			return nil, []error{err}
		}
		if legacy == nil {
			return nil, nil
		}
		add(0, func(c *model.Call) error { return convertHTTP(legacy, now, c) })
	}
	return calls, errs
}

func countMetrics(msg *meshpb.ServiceMeshMetrics) int {
	return len(msg.GetHttpMetrics().GetMetrics()) + len(msg.GetTcpMetrics().GetMetrics())
}
