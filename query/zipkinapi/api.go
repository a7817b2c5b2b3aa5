// Package zipkinapi serves Zipkin's v2 query API (the one Zipkin Lens and
// Grafana's Zipkin data source call) from a tracestore.Reader, answering in
// Zipkin v2 JSON.
package zipkinapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	zipkinmodel "github.com/openzipkin/zipkin-go/model"
	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/meshlens/meshlens/receivers/zipkin/translate"
	"github.com/meshlens/meshlens/storage/tracestore"
)

// Defaults and bounds, as Zipkin's server has them.
const (
	DefaultLimit    = 10
	DefaultLookback = 24 * time.Hour
	maxTraceMany    = 100
	maxQueryTerms   = 32
)

// API serves the Zipkin v2 query endpoints.
type API struct {
	r    tracestore.Reader
	keys []string
	log  *slog.Logger
	now  func() time.Time
	lim  tracestore.SearchLimits
}

// New returns the API over r. autocompleteKeys are the tag keys
// /api/v2/autocompleteKeys lists (the store must keep their values, see
// the store's AutocompleteKeys). logger may be nil.
func New(r tracestore.Reader, autocompleteKeys []string, logger *slog.Logger) *API {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if autocompleteKeys == nil {
		autocompleteKeys = []string{}
	}
	return &API{r: r, keys: autocompleteKeys, log: logger, now: time.Now}
}

// WithLimits makes searches over l answer 400 naming the limit, and
// bounds every read by l.Timeout; it returns a.
func (a *API) WithLimits(l tracestore.SearchLimits) *API {
	a.lim = l
	return a
}

// Register adds the Zipkin routes to mux.
func (a *API) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v2/services", a.services)
	mux.HandleFunc("GET /api/v2/spans", a.spans)
	mux.HandleFunc("GET /api/v2/remoteServices", a.remoteServices)
	mux.HandleFunc("GET /api/v2/traces", a.traces)
	mux.HandleFunc("GET /api/v2/trace/{traceId}", a.trace)
	mux.HandleFunc("GET /api/v2/traceMany", a.traceMany)
	mux.HandleFunc("GET /api/v2/dependencies", a.dependencies)
	mux.HandleFunc("GET /api/v2/autocompleteKeys", a.autocompleteKeys)
	mux.HandleFunc("GET /api/v2/autocompleteValues", a.autocompleteValues)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// fail answers as Zipkin does: a status and a plain-text message.
func (a *API) fail(w http.ResponseWriter, err error) {
	status := tracestore.HTTPStatus(err)
	if status == http.StatusInternalServerError {
		a.log.Error("zipkin query failed", "err", err)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	fmt.Fprintln(w, err.Error())
}

func bad(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{tracestore.ErrBadQuery}, args...)...)
}

func (a *API) services(w http.ResponseWriter, r *http.Request) {
	s, err := a.r.GetServices(r.Context())
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, s)
}

func (a *API) spans(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	svc := q.Get("serviceName")
	if svc == "" {
		a.fail(w, bad("serviceName is required"))
		return
	}
	ops, err := a.r.GetOperations(r.Context(), svc, q.Get("spanKind"))
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
	writeJSON(w, names)
}

func (a *API) remoteServices(w http.ResponseWriter, r *http.Request) {
	svc := r.URL.Query().Get("serviceName")
	if svc == "" {
		a.fail(w, bad("serviceName is required"))
		return
	}
	s, err := a.r.GetRemoteServices(r.Context(), svc)
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, s)
}

func toSpans(t *tracestore.Trace) []*zipkinmodel.SpanModel {
	return translate.ToZipkinV2(t.Spans)
}

func (a *API) trace(w http.ResponseWriter, r *http.Request) {
	id, err := tracestore.ParseTraceID(r.PathValue("traceId"))
	if err != nil {
		a.fail(w, err)
		return
	}
	ctx, cancel := a.lim.Context(r.Context())
	defer cancel()
	t, err := a.r.GetTrace(ctx, id)
	if err != nil {
		if errors.Is(err, tracestore.ErrTraceNotFound) {
			err = fmt.Errorf("%s: %w", tracestore.TraceIDString(id), err)
		}
		a.fail(w, a.lim.TimeoutError(ctx, err))
		return
	}
	writeJSON(w, toSpans(t))
}

func (a *API) traceMany(w http.ResponseWriter, r *http.Request) {
	ids, err := parseTraceIDs(r.URL.Query().Get("traceIds"))
	if err != nil {
		a.fail(w, err)
		return
	}
	ctx, cancel := a.lim.Context(r.Context())
	defer cancel()
	out := [][]*zipkinmodel.SpanModel{}
	for _, id := range ids {
		t, err := a.r.GetTrace(ctx, id)
		if errors.Is(err, tracestore.ErrTraceNotFound) {
			continue
		}
		if err != nil {
			a.fail(w, a.lim.TimeoutError(ctx, err))
			return
		}
		out = append(out, toSpans(t))
	}
	writeJSON(w, out)
}

func (a *API) traces(w http.ResponseWriter, r *http.Request) {
	now := a.now()
	q, err := parseQuery(r.URL.Query(), now)
	if err == nil {
		q, err = a.lim.Check(q, now)
	}
	if err != nil {
		a.fail(w, err)
		return
	}
	ctx, cancel := a.lim.Context(r.Context())
	defer cancel()
	traces, err := a.r.FindTraces(ctx, q)
	if err != nil {
		a.fail(w, a.lim.TimeoutError(ctx, err))
		return
	}
	out := make([][]*zipkinmodel.SpanModel, 0, len(traces))
	for _, t := range traces {
		out = append(out, toSpans(t))
	}
	writeJSON(w, out)
}

func (a *API) dependencies(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	endTs, err := parseMillis(q, "endTs", -1)
	if err != nil {
		a.fail(w, err)
		return
	}
	lookback, err := parseMillis(q, "lookback", DefaultLookback.Milliseconds())
	if err != nil {
		a.fail(w, err)
		return
	}
	if lookback <= 0 {
		a.fail(w, bad("lookback must be positive"))
		return
	}
	links, err := a.r.GetDependencies(r.Context(), time.UnixMilli(endTs), time.Duration(lookback)*time.Millisecond)
	if err != nil {
		a.fail(w, err)
		return
	}
	type link struct {
		Parent    string `json:"parent"`
		Child     string `json:"child"`
		CallCount uint64 `json:"callCount"`
	}
	out := make([]link, len(links))
	for i, l := range links {
		out[i] = link{l.Parent, l.Child, l.CallCount}
	}
	writeJSON(w, out)
}

func (a *API) autocompleteKeys(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, a.keys)
}

func (a *API) autocompleteValues(w http.ResponseWriter, r *http.Request) {
	key := r.URL.Query().Get("key")
	if key == "" {
		a.fail(w, bad("key is required"))
		return
	}
	v, err := a.r.GetTagValues(r.Context(), key)
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, v)
}

// parseMillis reads a non-negative millisecond parameter; def < 0 makes it
// required.
func parseMillis(q url.Values, name string, def int64) (int64, error) {
	s := q.Get(name)
	if s == "" {
		if def < 0 {
			return 0, bad("%s is required", name)
		}
		return def, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 || v > 1<<53 {
		return 0, bad("%s must be epoch milliseconds, got %q", name, s)
	}
	return v, nil
}

func parseMicros(q url.Values, name string) (time.Duration, error) {
	s := q.Get(name)
	if s == "" {
		return 0, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 || v > int64(time.Duration(1<<62)/time.Microsecond) {
		return 0, bad("%s must be microseconds, got %q", name, s)
	}
	return time.Duration(v) * time.Microsecond, nil
}

// parseQuery reads /api/v2/traces parameters with Zipkin's semantics:
// endTs and lookback in epoch milliseconds, durations in microseconds,
// "all" as no filter on spanName.
func parseQuery(v url.Values, now time.Time) (tracestore.Query, error) {
	var q tracestore.Query
	q.Service = v.Get("serviceName")
	q.RemoteService = v.Get("remoteServiceName")
	if s := v.Get("spanName"); s != "all" {
		q.Operation = s
	}
	tags, anns, err := ParseAnnotationQuery(v.Get("annotationQuery"))
	if err != nil {
		return q, err
	}
	if len(tags) > 0 {
		q.Tags = tags
	}
	q.Annotations = anns
	if q.DurationMin, err = parseMicros(v, "minDuration"); err != nil {
		return q, err
	}
	if q.DurationMax, err = parseMicros(v, "maxDuration"); err != nil {
		return q, err
	}
	if q.DurationMax > 0 && q.DurationMax < q.DurationMin {
		return q, bad("maxDuration must be at least minDuration")
	}
	endTs, err := parseMillis(v, "endTs", now.UnixMilli())
	if err != nil {
		return q, err
	}
	lookback, err := parseMillis(v, "lookback", DefaultLookback.Milliseconds())
	if err != nil {
		return q, err
	}
	q.StartMax = time.UnixMilli(endTs)
	q.StartMin = time.UnixMilli(max(endTs-lookback, 0))
	q.Limit = DefaultLimit
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			return q, bad("limit must be a positive integer, got %q", s)
		}
		q.Limit = n // checked against SearchLimits, not clamped
	}
	return q, nil
}

// ParseAnnotationQuery splits Zipkin's annotationQuery ("error and
// http.method=GET") into tag key=value pairs and bare terms (an annotation
// value or a tag key that must be present).
func ParseAnnotationQuery(s string) (map[string]string, []string, error) {
	tags := map[string]string{}
	var anns []string
	if strings.TrimSpace(s) == "" {
		return tags, nil, nil
	}
	terms := strings.Split(s, " and ")
	if len(terms) > maxQueryTerms {
		return nil, nil, bad("annotationQuery has more than %d terms", maxQueryTerms)
	}
	for _, term := range terms {
		term = strings.TrimSpace(term)
		if term == "" {
			continue
		}
		k, v, ok := strings.Cut(term, "=")
		if !ok {
			anns = append(anns, term)
			continue
		}
		k = strings.TrimSpace(k)
		if k == "" {
			return nil, nil, bad("annotationQuery term %q has no key", term)
		}
		tags[k] = v
	}
	return tags, anns, nil
}

func parseTraceIDs(s string) ([]pcommon.TraceID, error) {
	if strings.TrimSpace(s) == "" {
		return nil, bad("traceIds is required")
	}
	parts := strings.Split(s, ",")
	if len(parts) > maxTraceMany {
		return nil, bad("more than %d traceIds", maxTraceMany)
	}
	out := make([]pcommon.TraceID, 0, len(parts))
	for _, p := range parts {
		id, err := tracestore.ParseTraceID(strings.TrimSpace(p))
		if err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, nil
}
