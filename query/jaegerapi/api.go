// Package jaegerapi serves the Jaeger query HTTP API (the one Jaeger UI and
// Grafana's Jaeger data source call) and Jaeger's api_v3 HTTP gateway from a
// tracestore.Reader.
package jaegerapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/meshlens/meshlens/storage/tracestore"
)

// Bounds on request parameters.
const (
	// DefaultLookback is the search window when neither start nor lookback
	// is given (Jaeger UI's default).
	DefaultLookback = time.Hour
	// DefaultDependencyLookback is /api/dependencies' default window.
	DefaultDependencyLookback = 24 * time.Hour
	maxTraceIDs               = 100
	maxTags                   = 32
)

// API serves the Jaeger query endpoints.
type API struct {
	r   tracestore.Reader
	log *slog.Logger
	now func() time.Time
	lim tracestore.SearchLimits
	// pool holds *answerScratch.
	pool sync.Pool
}

// New returns the API over r; logger may be nil.
func New(r tracestore.Reader, logger *slog.Logger) *API {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &API{r: r, log: logger, now: time.Now}
}

// WithLimits makes searches over l answer 400 naming the limit, and
// bounds every read by l.Timeout; it returns a.
func (a *API) WithLimits(l tracestore.SearchLimits) *API {
	a.lim = l
	return a
}

// Register adds the Jaeger routes to mux.
func (a *API) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/services", a.services)
	mux.HandleFunc("GET /api/services/{service}/operations", a.serviceOperations)
	mux.HandleFunc("GET /api/operations", a.operations)
	mux.HandleFunc("GET /api/traces", a.findTraces)
	mux.HandleFunc("GET /api/traces/{id}", a.getTrace)
	mux.HandleFunc("GET /api/dependencies", a.dependencies)

	mux.HandleFunc("GET /api/v3/services", a.v3Services)
	mux.HandleFunc("GET /api/v3/operations", a.v3Operations)
	mux.HandleFunc("GET /api/v3/traces", a.v3FindTraces)
	mux.HandleFunc("GET /api/v3/traces/{trace_id}", a.v3GetTrace)
}

type envelope struct {
	Data   any         `json:"data"`
	Total  int         `json:"total"`
	Limit  int         `json:"limit"`
	Offset int         `json:"offset"`
	Errors []respError `json:"errors"`
}

type respError struct {
	Code    int    `json:"code,omitempty"`
	Msg     string `json:"msg"`
	TraceID string `json:"traceID,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (a *API) ok(w http.ResponseWriter, data any, total int) {
	writeJSON(w, http.StatusOK, envelope{Data: data, Total: total})
}

// fail answers with Jaeger's error envelope; the status comes from err
// unless given.
func (a *API) fail(w http.ResponseWriter, err error) {
	status := tracestore.HTTPStatus(err)
	if status == http.StatusInternalServerError {
		a.log.Error("jaeger query failed", "err", err)
	}
	writeJSON(w, status, envelope{Errors: []respError{{Code: status, Msg: err.Error()}}})
}

func badParam(name string, err error) error {
	return fmt.Errorf("%w: cannot parse %s: %w", tracestore.ErrBadQuery, name, err)
}

func (a *API) services(w http.ResponseWriter, r *http.Request) {
	svcs, err := a.r.GetServices(r.Context())
	if err != nil {
		a.fail(w, err)
		return
	}
	a.ok(w, svcs, len(svcs))
}

func (a *API) serviceOperations(w http.ResponseWriter, r *http.Request) {
	ops, err := a.r.GetOperations(r.Context(), r.PathValue("service"), "")
	if err != nil {
		a.fail(w, err)
		return
	}
	names := []string{}
	seen := map[string]bool{}
	for _, o := range ops {
		if !seen[o.Name] {
			seen[o.Name] = true
			names = append(names, o.Name)
		}
	}
	a.ok(w, names, len(names))
}

func (a *API) operations(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	service := q.Get("service")
	if service == "" {
		a.fail(w, fmt.Errorf("%w: parameter 'service' is required", tracestore.ErrBadQuery))
		return
	}
	ops, err := a.r.GetOperations(r.Context(), service, q.Get("spanKind"))
	if err != nil {
		a.fail(w, err)
		return
	}
	out := make([]uiOperation, len(ops))
	for i, o := range ops {
		out[i] = uiOperation{Name: o.Name, SpanKind: o.SpanKind}
	}
	a.ok(w, out, len(out))
}

func (a *API) getTrace(w http.ResponseWriter, r *http.Request) {
	id, err := tracestore.ParseTraceID(r.PathValue("id"))
	if err != nil {
		a.fail(w, err)
		return
	}
	ctx, cancel := a.lim.Context(r.Context())
	defer cancel()
	sc := a.scratch()
	defer a.release(sc)
	t, err := a.getUITrace(ctx, sc, id, keepSharedIDs(r))
	if err != nil {
		a.fail(w, a.lim.TimeoutError(ctx, err))
		return
	}
	writeTraces(w, []uiTrace{t}, nil)
}

// storedReader is a store that hands out traces as the OTLP protobuf it
// keeps them in (pebblestore): they are decoded straight into the answer
// (protoui.go) rather than into pdata first. The chunks are appended to
// arena, returned grown.
type storedReader interface {
	GetStoredTrace(ctx context.Context, id pcommon.TraceID, arena []byte) (tracestore.StoredTrace, []byte, error)
	FindStoredTraces(ctx context.Context, q tracestore.Query, arena []byte) ([]tracestore.StoredTrace, []byte, error)
}

// answerScratch is what one trace answer needs while it is built and
// written: the chunks, the decoder and the lazy spans. Kept in a pool
// for the next answer, a search allocates little but the answer's
// strings, so it rarely starts a GC cycle (each one scans the whole
// metrics head).
type answerScratch struct {
	arena []byte
	dec   storedDecoder
}

// maxPooledArena bounds what an idle pooled scratch holds.
const maxPooledArena = 16 << 20

func (a *API) scratch() *answerScratch {
	if s, ok := a.pool.Get().(*answerScratch); ok {
		return s
	}
	return &answerScratch{}
}

// release returns s to the pool once its answer is written.
func (a *API) release(s *answerScratch) {
	if cap(s.arena) > maxPooledArena || cap(s.dec.lazyArena) > maxPooledArena/64 {
		return
	}
	s.arena = s.arena[:0]
	s.dec.reset()
	a.pool.Put(s)
}

func (a *API) getUITrace(ctx context.Context, sc *answerScratch, id pcommon.TraceID, keepShared bool) (uiTrace, error) {
	sr, ok := a.r.(storedReader)
	if !ok {
		t, err := a.r.GetTrace(ctx, id)
		if err != nil {
			return uiTrace{}, err
		}
		return toUI(t, keepShared), nil
	}
	st, arena, err := sr.GetStoredTrace(ctx, id, sc.arena)
	sc.arena = arena
	if err != nil {
		return uiTrace{}, err
	}
	return a.storedToUI(&sc.dec, &st, keepShared)
}

// storedToUI converts a stored trace, through pdata when the direct
// decoder gives up; ErrTraceNotFound when no span decodes.
func (a *API) storedToUI(d *storedDecoder, st *tracestore.StoredTrace, keepShared bool) (uiTrace, error) {
	if t, ok := d.ui(st, keepShared); ok {
		return t, nil
	}
	t, err := st.Trace(func(_ int, err error) {
		a.log.Warn("corrupt trace chunk", "trace", st.ID.String(), "err", err)
	})
	if err != nil {
		return uiTrace{}, err
	}
	return toUI(t, keepShared), nil
}

// findUITraces is FindTraces converted for the answer.
func (a *API) findUITraces(ctx context.Context, sc *answerScratch, q tracestore.Query, keepShared bool) ([]uiTrace, error) {
	sr, ok := a.r.(storedReader)
	if !ok {
		traces, err := a.r.FindTraces(ctx, q)
		if err != nil {
			return nil, err
		}
		out := make([]uiTrace, 0, len(traces))
		for _, t := range traces {
			out = append(out, toUI(t, keepShared))
		}
		return out, nil
	}
	stored, arena, err := sr.FindStoredTraces(ctx, q, sc.arena)
	sc.arena = arena
	if err != nil {
		return nil, err
	}
	out := make([]uiTrace, 0, len(stored))
	for i := range stored {
		if t, err := a.storedToUI(&sc.dec, &stored[i], keepShared); err == nil {
			out = append(out, t)
		}
	}
	return out, nil
}

// keepSharedIDs reports the meshlens extension sharedSpanIDs=keep: the
// answer keeps the one span ID a Zipkin client and server half share
// instead of renaming the server half as Jaeger does. meshlens's own UI asks
// for it, because it shows both halves as one hop.
func keepSharedIDs(r *http.Request) bool { return r.URL.Query().Get("sharedSpanIDs") == "keep" }

func (a *API) findTraces(w http.ResponseWriter, r *http.Request) {
	now := a.now()
	p, err := parseTraceQuery(r.URL.Query(), now)
	if err != nil {
		a.fail(w, err)
		return
	}
	ctx, cancel := a.lim.Context(r.Context())
	defer cancel()
	var out []uiTrace
	var errs []respError
	keep := keepSharedIDs(r)
	sc := a.scratch()
	defer a.release(sc)
	if len(p.traceIDs) > 0 {
		for _, id := range p.traceIDs {
			t, err := a.getUITrace(ctx, sc, id, keep)
			if err != nil {
				if !errors.Is(err, tracestore.ErrTraceNotFound) {
					a.fail(w, a.lim.TimeoutError(ctx, err))
					return
				}
				errs = append(errs, respError{Code: http.StatusNotFound, Msg: err.Error(), TraceID: tracestore.TraceIDString(id)})
				continue
			}
			out = append(out, t)
		}
	} else {
		q, err := a.lim.Check(p.query, now)
		if err != nil {
			a.fail(w, err)
			return
		}
		if out, err = a.findUITraces(ctx, sc, q, keep); err != nil {
			a.fail(w, a.lim.TimeoutError(ctx, err))
			return
		}
	}
	if out == nil {
		out = []uiTrace{}
	}
	writeTraces(w, out, errs)
}

type traceParams struct {
	query    tracestore.Query
	traceIDs []pcommon.TraceID
}

// parseTraceQuery reads /api/traces parameters as Jaeger's query service
// does: start/end in Unix microseconds, durations as Go durations, tags as
// JSON objects (tags=) or key:value pairs (tag=), service required unless
// traceID is given.
func parseTraceQuery(q url.Values, now time.Time) (traceParams, error) {
	var p traceParams
	for _, s := range q["traceID"] {
		if len(p.traceIDs) >= maxTraceIDs {
			return p, fmt.Errorf("%w: more than %d traceID parameters", tracestore.ErrBadQuery, maxTraceIDs)
		}
		id, err := tracestore.ParseTraceID(s)
		if err != nil {
			return p, err
		}
		p.traceIDs = append(p.traceIDs, id)
	}
	qq := &p.query
	qq.Service = q.Get("service")
	qq.Operation = q.Get("operation")
	if qq.Service == "" && len(p.traceIDs) == 0 {
		return p, fmt.Errorf("%w: parameter 'service' is required", tracestore.ErrBadQuery)
	}
	tags, err := parseTags(q["tags"], q["tag"])
	if err != nil {
		return p, err
	}
	if len(tags) > 0 {
		qq.Tags = tags
	}
	end := now
	if s := q.Get("end"); s != "" {
		us, err := strconv.ParseInt(s, 10, 64)
		if err != nil || us < 0 {
			return p, badParam("end", fmt.Errorf("want Unix microseconds, got %q", s))
		}
		end = time.UnixMicro(us)
	}
	lookback := DefaultLookback
	if s := q.Get("lookback"); s != "" && s != "custom" {
		d, err := parseDuration(s)
		if err != nil || d <= 0 {
			return p, badParam("lookback", fmt.Errorf("want a positive duration like 1h, got %q", s))
		}
		lookback = d
	}
	start := end.Add(-lookback)
	if s := q.Get("start"); s != "" {
		us, err := strconv.ParseInt(s, 10, 64)
		if err != nil || us < 0 {
			return p, badParam("start", fmt.Errorf("want Unix microseconds, got %q", s))
		}
		start = time.UnixMicro(us)
	}
	if end.Before(start) {
		return p, fmt.Errorf("%w: end is before start", tracestore.ErrBadQuery)
	}
	qq.StartMin, qq.StartMax = start, end
	for _, d := range []struct {
		name string
		dst  *time.Duration
	}{{"minDuration", &qq.DurationMin}, {"maxDuration", &qq.DurationMax}} {
		if s := q.Get(d.name); s != "" {
			v, err := parseDuration(s)
			if err != nil || v < 0 {
				return p, badParam(d.name, fmt.Errorf("want a duration like 1.2s or 100ms, got %q", s))
			}
			*d.dst = v
		}
	}
	if qq.DurationMax > 0 && qq.DurationMax < qq.DurationMin {
		return p, fmt.Errorf("%w: maxDuration must be at least minDuration", tracestore.ErrBadQuery)
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return p, badParam("limit", fmt.Errorf("want a non-negative integer, got %q", s))
		}
		// Not clamped: SearchLimits.Check refuses a limit over the
		// configured maximum rather than answering fewer traces silently.
		qq.Limit = n
	}
	return p, nil
}

// parseDuration accepts Go durations and Jaeger UI's "µs" spelling.
func parseDuration(s string) (time.Duration, error) {
	return time.ParseDuration(strings.ReplaceAll(s, "μs", "us"))
}

// parseTags merges JSON objects (tags={"k":"v"}) and key:value pairs
// (tag=k:v). JSON values may be strings, numbers or booleans.
func parseTags(jsonTags, pairs []string) (map[string]string, error) {
	out := map[string]string{}
	for _, js := range jsonTags {
		var m map[string]any
		dec := json.NewDecoder(strings.NewReader(js))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil {
			return nil, badParam("tags", fmt.Errorf("want a JSON object like {\"http.method\":\"GET\"}: %w", err))
		}
		for k, v := range m {
			switch v := v.(type) {
			case string:
				out[k] = v
			case json.Number:
				out[k] = v.String()
			case bool:
				out[k] = strconv.FormatBool(v)
			default:
				return nil, badParam("tags", fmt.Errorf("value of %q must be a string, number or boolean", k))
			}
		}
	}
	for _, kv := range pairs {
		k, v, ok := strings.Cut(kv, ":")
		if !ok || k == "" {
			return nil, badParam("tag", fmt.Errorf("want key:value, got %q", kv))
		}
		out[k] = v
	}
	if len(out) > maxTags {
		return nil, fmt.Errorf("%w: more than %d tags", tracestore.ErrBadQuery, maxTags)
	}
	return out, nil
}

func (a *API) dependencies(w http.ResponseWriter, r *http.Request) {
	end, lookback, err := parseDependencyParams(r.URL.Query(), a.now())
	if err != nil {
		a.fail(w, err)
		return
	}
	links, err := a.r.GetDependencies(r.Context(), end, lookback)
	if err != nil {
		a.fail(w, err)
		return
	}
	out := make([]uiDependency, len(links))
	for i, l := range links {
		out[i] = uiDependency{Parent: l.Parent, Child: l.Child, CallCount: l.CallCount}
	}
	a.ok(w, out, len(out))
}

// parseDependencyParams reads endTs and lookback, both in milliseconds.
func parseDependencyParams(q url.Values, now time.Time) (time.Time, time.Duration, error) {
	end := now
	if s := q.Get("endTs"); s != "" {
		ms, err := strconv.ParseInt(s, 10, 64)
		if err != nil || ms < 0 {
			return end, 0, badParam("endTs", fmt.Errorf("want Unix milliseconds, got %q", s))
		}
		end = time.UnixMilli(ms)
	}
	lookback := DefaultDependencyLookback
	if s := q.Get("lookback"); s != "" {
		ms, err := strconv.ParseInt(s, 10, 64)
		if err != nil || ms <= 0 {
			return end, 0, badParam("lookback", fmt.Errorf("want positive milliseconds, got %q", s))
		}
		lookback = time.Duration(ms) * time.Millisecond
	}
	return end, lookback, nil
}
