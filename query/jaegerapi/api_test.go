package jaegerapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshlens/meshlens/query/zipkinapi"
	"github.com/meshlens/meshlens/storage/tracestore"
	"github.com/meshlens/meshlens/storage/tracestore/pebblestore"
	"github.com/meshlens/meshlens/storage/tracestore/tracestoretest"
)

func newServer(t *testing.T) (*httptest.Server, time.Time) {
	t.Helper()
	s, err := pebblestore.Open(pebblestore.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	base := tracestoretest.Base()
	if err := s.WriteTraces(context.Background(), tracestoretest.Fixture(base)); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	New(s, nil).Register(mux)
	srv := httptest.NewServer(mux) // listens on 127.0.0.1
	t.Cleanup(srv.Close)
	return srv, base
}

func get(t *testing.T, srv *httptest.Server, path string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s: Content-Type %q", path, ct)
	}
	return resp.StatusCode, body
}

type env struct {
	Data   json.RawMessage `json:"data"`
	Total  int             `json:"total"`
	Errors []respError     `json:"errors"`
}

func getEnv(t *testing.T, srv *httptest.Server, path string, wantStatus int) env {
	t.Helper()
	code, body := get(t, srv, path)
	if code != wantStatus {
		t.Fatalf("GET %s = %d, want %d: %s", path, code, wantStatus, body)
	}
	var e env
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, body)
	}
	return e
}

// jaegerParams renders a store query as /api/traces parameters; ok is false
// when the query uses a predicate the Jaeger API cannot express.
func jaegerParams(q tracestore.Query, i int) (url.Values, bool) {
	if q.Service == "" || q.SpanKind != "" || q.RemoteService != "" || len(q.Annotations) > 0 {
		return nil, false
	}
	v := url.Values{}
	v.Set("service", q.Service)
	if q.Operation != "" {
		v.Set("operation", q.Operation)
	}
	if len(q.Tags) > 0 {
		if i%2 == 0 {
			b, _ := json.Marshal(q.Tags)
			v.Set("tags", string(b))
		} else {
			for k, val := range q.Tags {
				v.Add("tag", k+":"+val)
			}
		}
	}
	if !q.StartMin.IsZero() {
		v.Set("start", strconv.FormatInt(q.StartMin.UnixMicro(), 10))
	}
	if !q.StartMax.IsZero() {
		v.Set("end", strconv.FormatInt(q.StartMax.UnixMicro(), 10))
	}
	if q.DurationMin > 0 {
		v.Set("minDuration", q.DurationMin.String())
	}
	if q.DurationMax > 0 {
		v.Set("maxDuration", q.DurationMax.String())
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	v.Set("lookback", "custom")
	if q.StartMin.IsZero() {
		v.Set("lookback", "2h")
	}
	return v, true
}

func TestFindTracesSemantics(t *testing.T) {
	srv, base := newServer(t)
	ran := 0
	for i, tc := range tracestoretest.FindCases() {
		v, ok := jaegerParams(tc.Query(base), i)
		if !ok {
			continue
		}
		ran++
		t.Run(tc.Name, func(t *testing.T) {
			e := getEnv(t, srv, "/api/traces?"+v.Encode(), http.StatusOK)
			var traces []uiTrace
			if err := json.Unmarshal(e.Data, &traces); err != nil {
				t.Fatal(err)
			}
			var got, want []string
			for _, tr := range traces {
				got = append(got, tr.TraceID)
			}
			for _, id := range tc.Want {
				want = append(want, tracestore.TraceIDString(id))
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s: traces %v, want %v", v.Encode(), got, want)
			}
			if e.Total != len(want) {
				t.Errorf("total %d, want %d", e.Total, len(want))
			}
		})
	}
	if ran < 15 {
		t.Fatalf("only %d query cases expressible in the Jaeger API", ran)
	}
}

func TestTraceJSONShape(t *testing.T) {
	srv, base := newServer(t)
	e := getEnv(t, srv, "/api/traces/"+tracestoretest.TraceBookinfo.String(), http.StatusOK)
	var raw []map[string]any
	if err := json.Unmarshal(e.Data, &raw); err != nil || len(raw) != 1 {
		t.Fatalf("data: %v %s", err, e.Data)
	}
	tr := raw[0]
	assertKeys(t, "trace", tr, "traceID", "spans", "processes", "warnings")
	if tr["traceID"] != "0af7651916cd43dd8448eb211c80319c" {
		t.Errorf("traceID = %v", tr["traceID"])
	}
	spans := tr["spans"].([]any)
	if len(spans) != 5 {
		t.Fatalf("%d spans", len(spans))
	}
	procs := tr["processes"].(map[string]any)
	var sawShared, sawError bool
	var serverHalf, ratingsParent string
	for _, s := range spans {
		sp := s.(map[string]any)
		assertKeys(t, "span", sp, "traceID", "spanID", "flags", "operationName", "references", "startTime", "duration", "tags", "logs", "processID", "warnings")
		if len(sp["spanID"].(string)) != 16 {
			t.Errorf("spanID %v", sp["spanID"])
		}
		proc, ok := procs[sp["processID"].(string)].(map[string]any)
		if !ok {
			t.Fatalf("processID %v not in processes", sp["processID"])
		}
		assertKeys(t, "process", proc, "serviceName", "tags")
		tags := map[string]map[string]any{}
		for _, kv := range sp["tags"].([]any) {
			m := kv.(map[string]any)
			assertKeys(t, "tag", m, "key", "type", "value")
			tags[m["key"].(string)] = m
		}
		// The server half of the shared span gets an ID of its own and
		// becomes the client half's child, as Jaeger shows it; its child
		// (reviews CLIENT "GET /ratings") follows it.
		if sp["operationName"] == "GET /reviews" && proc["serviceName"] == "reviews" {
			sawShared = true
			if _, ok := tags["zipkin.shared"]; ok || sp["spanID"] == tracestoretest.SpanReviews.String() {
				t.Errorf("shared server half kept its id %v or marker %v", sp["spanID"], tags["zipkin.shared"])
			}
			serverHalf = sp["spanID"].(string)
			refs := sp["references"].([]any)
			if len(refs) != 1 || refs[0].(map[string]any)["refType"] != "CHILD_OF" || refs[0].(map[string]any)["spanID"] != tracestoretest.SpanReviews.String() {
				t.Errorf("references = %v", refs)
			}
			if sp["startTime"] != float64(base.Add(6*time.Millisecond).UnixMicro()) || sp["duration"] != float64(70000) {
				t.Errorf("startTime %v duration %v", sp["startTime"], sp["duration"])
			}
		}
		if sp["operationName"] == "GET /ratings" && proc["serviceName"] == "reviews" {
			sawError = true
			if tags["error"]["value"] != true || tags["http.status_code"]["type"] != "int64" || tags["http.status_code"]["value"] != float64(503) {
				t.Errorf("error span tags = %v", tags)
			}
			if tags["span.kind"]["value"] != "client" || tags["otel.status_description"]["value"] != "upstream reset" {
				t.Errorf("kind/status tags = %v", tags)
			}
			ratingsParent = sp["references"].([]any)[0].(map[string]any)["spanID"].(string)
		}
	}
	if !sawShared || !sawError {
		t.Errorf("shared server half seen=%v, error span seen=%v", sawShared, sawError)
	}
	if ratingsParent != serverHalf {
		t.Errorf("reviews CLIENT's parent %s, want the server half's new id %s", ratingsParent, serverHalf)
	}
	// sharedSpanIDs=keep (meshlens's UI) keeps both halves on one ID.
	for _, path := range []string{"/api/traces/" + tracestoretest.TraceBookinfo.String() + "?sharedSpanIDs=keep",
		"/api/traces?service=reviews&sharedSpanIDs=keep"} {
		var kept []uiTrace
		_ = json.Unmarshal(getEnv(t, srv, path, http.StatusOK).Data, &kept)
		n := 0
		for _, tr := range kept {
			for _, sp := range tr.Spans {
				if sp.SpanID == tracestoretest.SpanReviews.String() {
					n++
				}
			}
		}
		if n != 2 {
			t.Errorf("%s: %d spans with the shared id, want 2", path, n)
		}
	}

	// 64-bit ids print as 16 hex digits and are found by either spelling.
	for _, id := range []string{"00f067aa0ba902b7", "0000000000000000" + "00f067aa0ba902b7", "f067aa0ba902b7"} {
		e := getEnv(t, srv, "/api/traces/"+id, http.StatusOK)
		var tr []uiTrace
		_ = json.Unmarshal(e.Data, &tr)
		if len(tr) != 1 || tr[0].TraceID != "00f067aa0ba902b7" || len(tr[0].Spans[0].Logs) != 1 {
			t.Errorf("GET /api/traces/%s = %s", id, e.Data)
		}
		if f := tr[0].Spans[0].Logs[0].Fields; len(f) == 0 || f[0].Key != "event" || f[0].Value != "cache miss" {
			t.Errorf("log fields %v", f)
		}
	}
}

func assertKeys(t *testing.T, what string, m map[string]any, keys ...string) {
	t.Helper()
	var got []string
	for k := range m {
		got = append(got, k)
	}
	sort.Strings(got)
	sort.Strings(keys)
	if !slices.Equal(got, keys) {
		t.Errorf("%s keys = %v, want %v", what, got, keys)
	}
}

func TestMetadataEndpoints(t *testing.T) {
	srv, _ := newServer(t)
	var svcs []string
	e := getEnv(t, srv, "/api/services", http.StatusOK)
	_ = json.Unmarshal(e.Data, &svcs)
	if !slices.Equal(svcs, []string{"details", "frontend", "productpage", "ratings", "reviews"}) || e.Total != 5 {
		t.Errorf("services = %v total %d", svcs, e.Total)
	}
	var names []string
	e = getEnv(t, srv, "/api/services/frontend/operations", http.StatusOK)
	_ = json.Unmarshal(e.Data, &names)
	if !slices.Equal(names, []string{"GET /", "GET /reviews"}) {
		t.Errorf("operations = %v", names)
	}
	var ops []uiOperation
	e = getEnv(t, srv, "/api/operations?service=frontend&spanKind=server", http.StatusOK)
	_ = json.Unmarshal(e.Data, &ops)
	if !slices.Equal(ops, []uiOperation{{Name: "GET /", SpanKind: "server"}}) {
		t.Errorf("operations?spanKind=server = %v", ops)
	}
	var deps []uiDependency
	e = getEnv(t, srv, fmt.Sprintf("/api/dependencies?endTs=%d&lookback=%d", time.Now().UnixMilli(), time.Hour.Milliseconds()), http.StatusOK)
	_ = json.Unmarshal(e.Data, &deps)
	want := []uiDependency{{"frontend", "reviews", 1}, {"productpage", "details", 1}, {"reviews", "ratings", 1}}
	if !slices.Equal(deps, want) {
		t.Errorf("dependencies = %v", deps)
	}
	code, body := get(t, srv, "/api/dependencies")
	if code != 200 || !strings.Contains(string(body), `"callCount":1`) {
		t.Errorf("dependencies with defaults: %d %s", code, body)
	}
	// traceID search parameter, with one unknown id reported in errors.
	e = getEnv(t, srv, "/api/traces?traceID="+tracestoretest.TraceSlow.String()+"&traceID=abc", http.StatusOK)
	var trs []uiTrace
	_ = json.Unmarshal(e.Data, &trs)
	if len(trs) != 1 || len(e.Errors) != 1 || e.Errors[0].Code != 404 {
		t.Errorf("traceID search: %d traces, errors %v", len(trs), e.Errors)
	}
}

func TestErrors(t *testing.T) {
	srv, _ := newServer(t)
	for _, tc := range []struct {
		path   string
		status int
		msg    string
	}{
		{"/api/traces/0123456789abcdef0123456789abcdef", 404, "not found"},
		{"/api/traces/xyz", 400, "not hex"},
		{"/api/traces/" + strings.Repeat("a", 33), 400, "1 to 32"},
		{"/api/traces", 400, "service"},
		{"/api/traces?service=a&start=yesterday", 400, "start"},
		{"/api/traces?service=a&end=-5", 400, "end"},
		{"/api/traces?service=a&start=2000&end=1000", 400, "before"},
		{"/api/traces?service=a&minDuration=fast", 400, "minDuration"},
		{"/api/traces?service=a&maxDuration=1ms&minDuration=1s", 400, "maxDuration"},
		{"/api/traces?service=a&limit=-1", 400, "limit"},
		{"/api/traces?service=a&limit=ten", 400, "limit"},
		{"/api/traces?service=a&tags=%7Bbad", 400, "tags"},
		{"/api/traces?service=a&tags=%7B%22k%22:%5B1%5D%7D", 400, "tags"},
		{"/api/traces?service=a&tag=novalue", 400, "key:value"},
		{"/api/traces?service=a&lookback=forever", 400, "lookback"},
		{"/api/operations", 400, "service"},
		{"/api/operations?service=a&spanKind=sideways", 400, "span kind"},
		{"/api/dependencies?endTs=now", 400, "endTs"},
		{"/api/dependencies?lookback=0", 400, "lookback"},
	} {
		e := getEnv(t, srv, tc.path, tc.status)
		if len(e.Errors) != 1 || e.Errors[0].Code != tc.status || !strings.Contains(e.Errors[0].Msg, tc.msg) {
			t.Errorf("GET %s: errors %+v, want %d containing %q", tc.path, e.Errors, tc.status, tc.msg)
		}
	}
}

func TestAPIv3(t *testing.T) {
	srv, base := newServer(t)
	code, body := get(t, srv, "/api/v3/traces/"+tracestoretest.TraceBookinfo.String())
	if code != 200 {
		t.Fatalf("v3 get trace: %d %s", code, body)
	}
	var res struct {
		Result struct {
			ResourceSpans []struct {
				Resource   map[string]any `json:"resource"`
				ScopeSpans []struct {
					Spans []struct {
						TraceID           string `json:"traceId"`
						SpanID            string `json:"spanId"`
						Name              string `json:"name"`
						StartTimeUnixNano string `json:"startTimeUnixNano"`
					} `json:"spans"`
				} `json:"scopeSpans"`
			} `json:"resourceSpans"`
		} `json:"result"`
	}
	if err := json.Unmarshal(body, &res); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, rs := range res.Result.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			for _, sp := range ss.Spans {
				n++
				if sp.TraceID != tracestoretest.TraceBookinfo.String() || sp.StartTimeUnixNano == "" {
					t.Errorf("span %+v", sp)
				}
			}
		}
	}
	if n != 5 {
		t.Errorf("v3 trace: %d spans: %s", n, body)
	}
	code, body = get(t, srv, "/api/v3/traces/0123456789abcdef0123456789abcdef")
	if code != 404 || !strings.Contains(string(body), `"httpCode":404`) {
		t.Errorf("v3 unknown trace: %d %s", code, body)
	}

	v := url.Values{}
	v.Set("query.service_name", "frontend")
	v.Set("query.start_time_min", base.Add(-time.Hour).Format(time.RFC3339Nano))
	v.Set("query.start_time_max", time.Now().Format(time.RFC3339Nano))
	v.Set("query.duration_min", "50ms")
	v.Set("query.attributes", `{"http.method":"GET"}`)
	code, body = get(t, srv, "/api/v3/traces?"+v.Encode())
	if code != 200 || strings.Count(string(body), `"spanId"`) != 5 || strings.Contains(string(body), tracestoretest.TraceGetFast.String()) {
		t.Errorf("v3 find (tag+duration): %d %s", code, body)
	}
	v.Del("query.start_time_max")
	code, body = get(t, srv, "/api/v3/traces?"+v.Encode())
	if code != 400 || !strings.Contains(string(body), "start_time_max") {
		t.Errorf("v3 find without start_time_max: %d %s", code, body)
	}
	code, body = get(t, srv, "/api/v3/services")
	if code != 200 || !strings.Contains(string(body), `"services":["details","frontend"`) {
		t.Errorf("v3 services: %d %s", code, body)
	}
	code, body = get(t, srv, "/api/v3/operations?service=frontend&span_kind=client")
	if code != 200 || string(body) != `{"operations":[{"name":"GET /reviews","spanKind":"client"}]}`+"\n" {
		t.Errorf("v3 operations: %d %s", code, body)
	}
}

// The integrator mounts both query APIs on one mux (port 8088): their
// patterns must not conflict (ServeMux panics if they do).
func TestRegistersBesideZipkin(t *testing.T) {
	s, err := pebblestore.Open(pebblestore.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mux := http.NewServeMux()
	New(s, nil).Register(mux)
	zipkinapi.New(s, nil, nil).Register(mux)
	for _, p := range []string{"/api/services", "/api/v2/services", "/api/v3/services", "/api/traces/abc", "/api/v2/trace/abc"} {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest("GET", p, nil))
		if rec.Code == http.StatusNotFound && !strings.Contains(rec.Body.String(), "not found") {
			t.Errorf("%s not routed: %d %s", p, rec.Code, rec.Body)
		}
	}
}
