package jaegerapi

import (
	"bytes"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/meshlens/meshlens/storage/tracestore"
)

// api_v3 HTTP gateway: OTLP JSON traces wrapped in {"result": ...}, errors
// as {"error": {"httpCode": ..., "message": ...}}, like Jaeger's gateway.

type v3Error struct {
	Error v3ErrorDetails `json:"error"`
}

type v3ErrorDetails struct {
	HTTPCode int    `json:"httpCode"`
	Message  string `json:"message"`
}

func (a *API) v3Fail(w http.ResponseWriter, err error) {
	status := tracestore.HTTPStatus(err)
	if status == http.StatusInternalServerError {
		a.log.Error("jaeger api_v3 query failed", "err", err)
	}
	writeJSON(w, status, v3Error{Error: v3ErrorDetails{HTTPCode: status, Message: err.Error()}})
}

func (a *API) v3Traces(w http.ResponseWriter, td ptrace.Traces) {
	m := ptrace.JSONMarshaler{}
	body, err := m.MarshalTraces(td)
	if err != nil {
		a.v3Fail(w, err)
		return
	}
	var buf bytes.Buffer
	buf.Grow(len(body) + 16)
	buf.WriteString(`{"result":`)
	buf.Write(body)
	buf.WriteString("}\n")
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(buf.Bytes())
}

func (a *API) v3GetTrace(w http.ResponseWriter, r *http.Request) {
	id, err := tracestore.ParseTraceID(r.PathValue("trace_id"))
	if err != nil {
		a.v3Fail(w, err)
		return
	}
	ctx, cancel := a.lim.Context(r.Context())
	defer cancel()
	t, err := a.r.GetTrace(ctx, id)
	if err != nil {
		a.v3Fail(w, a.lim.TimeoutError(ctx, err))
		return
	}
	a.v3Traces(w, t.Spans)
}

func (a *API) v3FindTraces(w http.ResponseWriter, r *http.Request) {
	q, err := parseV3Query(r.URL.Query())
	if err == nil {
		q, err = a.lim.Check(q, a.now())
	}
	if err != nil {
		a.v3Fail(w, err)
		return
	}
	ctx, cancel := a.lim.Context(r.Context())
	defer cancel()
	traces, err := a.r.FindTraces(ctx, q)
	if err != nil {
		a.v3Fail(w, a.lim.TimeoutError(ctx, err))
		return
	}
	td := ptrace.NewTraces()
	for _, t := range traces {
		t.Spans.ResourceSpans().MoveAndAppendTo(td.ResourceSpans())
	}
	a.v3Traces(w, td)
}

// parseV3Query reads the gateway's query.* parameters: times RFC 3339
// (both required, as Jaeger requires them), durations Go durations,
// attributes a JSON object.
func parseV3Query(v url.Values) (tracestore.Query, error) {
	var q tracestore.Query
	q.Service = v.Get("query.service_name")
	q.Operation = v.Get("query.operation_name")
	tmin, tmax := v.Get("query.start_time_min"), v.Get("query.start_time_max")
	if tmin == "" || tmax == "" {
		return q, fmt.Errorf("%w: query.start_time_min and query.start_time_max are required", tracestore.ErrBadQuery)
	}
	var err error
	if q.StartMin, err = time.Parse(time.RFC3339Nano, tmin); err != nil {
		return q, badParam("query.start_time_min", err)
	}
	if q.StartMax, err = time.Parse(time.RFC3339Nano, tmax); err != nil {
		return q, badParam("query.start_time_max", err)
	}
	for _, d := range []struct {
		name string
		dst  *time.Duration
	}{{"query.duration_min", &q.DurationMin}, {"query.duration_max", &q.DurationMax}} {
		if s := v.Get(d.name); s != "" {
			if *d.dst, err = time.ParseDuration(s); err != nil || *d.dst < 0 {
				return q, badParam(d.name, fmt.Errorf("want a duration like 100ms, got %q", s))
			}
		}
	}
	for _, name := range []string{"query.num_traces", "query.search_depth"} {
		if s := v.Get(name); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 {
				return q, badParam(name, fmt.Errorf("want a non-negative integer, got %q", s))
			}
			q.Limit = n // checked against SearchLimits, not clamped
		}
	}
	if s := v.Get("query.attributes"); s != "" {
		tags, err := parseTags([]string{s}, nil)
		if err != nil {
			return q, err
		}
		q.Tags = tags
	}
	return q, nil
}

func (a *API) v3Services(w http.ResponseWriter, r *http.Request) {
	svcs, err := a.r.GetServices(r.Context())
	if err != nil {
		a.v3Fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string][]string{"services": svcs})
}

func (a *API) v3Operations(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ops, err := a.r.GetOperations(r.Context(), q.Get("service"), q.Get("span_kind"))
	if err != nil {
		a.v3Fail(w, err)
		return
	}
	out := make([]uiOperation, len(ops))
	for i, o := range ops {
		out[i] = uiOperation{Name: o.Name, SpanKind: o.SpanKind}
	}
	writeJSON(w, http.StatusOK, map[string]any{"operations": out})
}
