// Package zipkin receives spans over Zipkin's HTTP API (v2 JSON and
// proto3 at /api/v2/spans, v1 JSON at /api/v1/spans), translates them into
// ptrace.Traces (see package translate) and hands them to a
// pipeline.TraceConsumer.
//
// Status codes follow Zipkin's server: 202 on success, 400 for a body that
// cannot be read, 413 when it is too large, 415 for a content type or
// encoding it does not speak, 429/503 when the pipeline is overloaded or
// stopping. One decision differs from Zipkin, which answers 400 and drops
// the whole batch on any bad span: when the body parses but individual
// spans are invalid (no id, no trace id, bad hex), the valid spans are
// stored and the answer is 400 with a message naming each dropped span, so
// that one broken client span does not lose a proxy's whole batch and the
// sender still learns something is wrong.
package zipkin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/meshlens/meshlens/receivers/httpbody"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/meshlens/meshlens/pipeline"
	"github.com/meshlens/meshlens/receivers/zipkin/translate"
)

// Config bounds what one request may cost.
type Config struct {
	// MaxRequestBytes caps the body as sent (compressed or not). Default 16 MiB.
	MaxRequestBytes int64
	// MaxDecompressedBytes caps a gzip body once inflated, against gzip
	// bombs. Default 4 × MaxRequestBytes.
	MaxDecompressedBytes int64
	// MaxJSONDepth caps JSON nesting. Default translate.DefaultMaxJSONDepth.
	MaxJSONDepth int
	// MaxSpansPerRequest caps spans per request (0: no cap beyond the size
	// limits). A larger batch is answered 413.
	MaxSpansPerRequest int
}

// Default limits.
const (
	DefaultMaxRequestBytes = 16 << 20
)

func (c Config) withDefaults() Config {
	if c.MaxRequestBytes <= 0 {
		c.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if c.MaxDecompressedBytes <= 0 {
		c.MaxDecompressedBytes = 4 * c.MaxRequestBytes
	}
	if c.MaxJSONDepth <= 0 {
		c.MaxJSONDepth = translate.DefaultMaxJSONDepth
	}
	return c
}

// Receiver serves Zipkin's span ingest API.
type Receiver struct {
	cfg    Config
	next   pipeline.TraceConsumer
	tel    *pipeline.ReceiverTelemetry
	logger *slog.Logger
	bufs   sync.Pool
}

// New returns a Receiver that hands translated spans to next. tel may be
// nil (self-metrics then go to a private registry); logger may be nil.
func New(cfg Config, next pipeline.TraceConsumer, tel *pipeline.Telemetry, logger *slog.Logger) *Receiver {
	if tel == nil {
		tel = pipeline.NewTelemetry(prometheus.NewRegistry())
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	r := &Receiver{
		cfg:    cfg.withDefaults(),
		next:   next,
		tel:    tel.Receiver("zipkin", "http"),
		logger: logger,
	}
	r.bufs.New = func() any { return new(bytes.Buffer) }
	return r
}

// Register adds the ingest routes to mux.
func (r *Receiver) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/v2/spans", r.handleV2)
	mux.HandleFunc("POST /api/v1/spans", r.handleV1)
}

type format int

const (
	formatV2JSON format = iota
	formatV2Proto
	formatV1JSON
)

func (r *Receiver) handleV2(w http.ResponseWriter, req *http.Request) {
	f, ok := formatV2JSON, true
	switch mediaType(req) {
	case "", "application/json", "text/plain":
	case "application/x-protobuf", "application/protobuf":
		f = formatV2Proto
	default:
		ok = false
	}
	if !ok {
		r.fail(w, http.StatusUnsupportedMediaType, "unsupported Content-Type %q: /api/v2/spans takes application/json or application/x-protobuf", req.Header.Get("Content-Type"))
		return
	}
	r.serve(w, req, f)
}

func (r *Receiver) handleV1(w http.ResponseWriter, req *http.Request) {
	switch mediaType(req) {
	case "", "application/json", "text/plain":
	default:
		r.fail(w, http.StatusUnsupportedMediaType, "unsupported Content-Type %q: /api/v1/spans takes application/json (v1 thrift is not supported)", req.Header.Get("Content-Type"))
		return
	}
	r.serve(w, req, formatV1JSON)
}

func mediaType(req *http.Request) string {
	ct := req.Header.Get("Content-Type")
	if ct == "" {
		return ""
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return ct
	}
	return strings.ToLower(mt)
}

func (r *Receiver) serve(w http.ResponseWriter, req *http.Request, f format) {
	buf := r.bufs.Get().(*bytes.Buffer)
	defer func() {
		// Do not pool the odd huge buffer.
		if buf.Cap() <= 1<<20 {
			buf.Reset()
			r.bufs.Put(buf)
		}
	}()
	body, err := httpbody.Read(req, buf, r.cfg.MaxRequestBytes, r.cfg.MaxDecompressedBytes)
	if err != nil {
		var he *httpbody.Error
		if errors.As(err, &he) {
			r.tel.Refused(1, reasonFor(he.Status))
			r.fail(w, he.Status, "%s", he.Msg)
			return
		}
		r.tel.Refused(1, "malformed")
		r.fail(w, http.StatusBadRequest, "%v", err)
		return
	}

	var td ptrace.Traces
	var rejected []translate.Rejected
	switch f {
	case formatV2JSON:
		td, rejected, err = translate.DecodeV2JSON(body, r.cfg.MaxJSONDepth)
	case formatV2Proto:
		td, rejected, err = translate.DecodeProto3(body)
	case formatV1JSON:
		td, rejected, err = translate.DecodeV1JSON(body, r.cfg.MaxJSONDepth)
	}
	if err != nil {
		r.tel.Refused(1, "malformed")
		r.fail(w, http.StatusBadRequest, "cannot decode spans: %v", err)
		return
	}
	kept := td.SpanCount()
	if max := r.cfg.MaxSpansPerRequest; max > 0 && kept+len(rejected) > max {
		r.tel.Refused(kept+len(rejected), "too_large")
		r.fail(w, http.StatusRequestEntityTooLarge, "%d spans in one request; at most %d allowed", kept+len(rejected), max)
		return
	}
	if status, err := r.consume(req.Context(), td); err != nil {
		r.fail(w, status, "%v", err)
		return
	}
	if len(rejected) > 0 {
		r.tel.Refused(len(rejected), "malformed")
		r.fail(w, http.StatusBadRequest, "%s", RejectedMessage(kept, rejected))
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

func (r *Receiver) consume(ctx context.Context, td ptrace.Traces) (int, error) {
	n := td.SpanCount()
	if n == 0 {
		return 0, nil
	}
	if err := r.next.ConsumeTraces(ctx, td); err != nil {
		r.tel.RefusedErr(n, err)
		r.logger.Debug("zipkin spans refused", "spans", n, "err", err)
		return pipeline.HTTPStatus(err), fmt.Errorf("spans not stored: %w", err)
	}
	r.tel.Accepted(n)
	return 0, nil
}

// RejectedMessage is the 400 answer for a batch whose invalid spans were
// dropped: how many were kept and which were dropped (the first ten).
func RejectedMessage(kept int, rejected []translate.Rejected) string {
	var b strings.Builder
	fmt.Fprintf(&b, "dropped %d invalid span(s), kept %d: ", len(rejected), kept)
	for i, rj := range rejected {
		if i == 10 {
			fmt.Fprintf(&b, "; and %d more", len(rejected)-10)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(rj.String())
	}
	return b.String()
}

func reasonFor(status int) string {
	switch status {
	case http.StatusRequestEntityTooLarge:
		return "too_large"
	case http.StatusUnsupportedMediaType:
		return "unsupported"
	}
	return "malformed"
}

func (r *Receiver) fail(w http.ResponseWriter, status int, format string, args ...any) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	w.WriteHeader(status)
	fmt.Fprintf(w, format, args...)
	io.WriteString(w, "\n")
}
